#pragma once
// `arcforge serve`: the face-search HTTP service (arcforge/serve/server.hpp).
#include <CLI/CLI.hpp>

namespace arcforge::cli {

void add_serve_command(CLI::App& app);

}  // namespace arcforge::cli
