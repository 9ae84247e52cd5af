#pragma once
// The training build makes two binaries: `arcforge`, which holds the commands that run without
// libtorch (the face pipeline, the runtime, galleries, serve, packing), and `arcforge-train` beside
// it, which holds every command. Loading libtorch cost `arcforge verify --help` 0.49 s and 176 MB
// resident against 0.01 s and 19 MB without it (relocations, operator registration), so the
// commands that need no libtorch should not pay it; `arcforge train`
// replaces itself with `arcforge-train` and runs there unchanged (same arguments, same exit code).
#include <CLI/CLI.hpp>

#include <string>

namespace arcforge::cli {

// True when `arcforge-train` must run this command line: a subcommand that `app` does not hold
// (train, eval, export...), top-level help, or no command at all (which prints the full help).
bool belongs_to_train_binary(const CLI::App& app, int argc, const char* const* argv);

// `arcforge-train` in this binary's folder.
std::string train_binary_path();

// Replaces this process with `arcforge-train` and the same arguments. Returns only when that binary
// cannot be started, after printing why (naming the file); the caller exits with 1.
void exec_train_binary(char** argv);

}  // namespace arcforge::cli
