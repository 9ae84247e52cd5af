// Hands a command line over to `arcforge-train` (see train_binary.hpp).
#include "train_binary.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

namespace arcforge::cli {

bool belongs_to_train_binary(const CLI::App& app, int argc, const char* const* argv) {
  if (argc < 2) return true;
  const std::string first = argv[1];
  if (first == "--version") return false;  // both binaries print the same
  if (first.empty() || first[0] == '-') return true;  // --help and anything else top-level
  const auto held = app.get_subcommands([&](const CLI::App* sub) { return sub->check_name(first); });
  return held.empty();
}

std::string train_binary_path() {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  return (error ? std::filesystem::path("arcforge-train") : self.parent_path() / "arcforge-train").string();
}

void exec_train_binary(char** argv) {
  const std::string path = train_binary_path();
  ::execv(path.c_str(), argv);
  const int why = errno;
  std::cerr << "arcforge: error: '" << (argv[1] != nullptr ? argv[1] : "--help")
            << "' runs in the training binary " << path << ", which cannot be started: " << std::strerror(why)
            << " (it is built beside arcforge when the build has the training side)\n";
}

}  // namespace arcforge::cli
