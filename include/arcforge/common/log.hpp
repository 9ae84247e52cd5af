#pragma once
// The one logger: plain lines on stderr with a level prefix. Progress bars live in progress.hpp.
#include <sstream>
#include <string>

namespace arcforge::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level);
Level level();
void write(Level level, const std::string& message);

inline void debug(const std::string& m) { write(Level::debug, m); }
inline void info(const std::string& m) { write(Level::info, m); }
inline void warn(const std::string& m) { write(Level::warn, m); }
inline void error(const std::string& m) { write(Level::error, m); }

// Concatenates any streamable values: log::info(log::cat("step ", step, " loss ", loss)).
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

}  // namespace arcforge::log
