#pragma once
// One exception family for the whole library; the CLI turns any of them into one line and exit 1.
#include <stdexcept>
#include <string>

namespace arcforge {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad or unreadable input that came from outside (a file, a flag, a request body).
class InputError : public Error {
 public:
  using Error::Error;
};

// A configuration key or value that does not make sense.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Builds "path: what" so that every file error names the file.
inline std::string file_message(const std::string& path, const std::string& what) {
  return path + ": " + what;
}

}  // namespace arcforge
