#pragma once
// `arcforge gallery ...`: persons and face samples in a database file, searched 1:N.
#include <CLI/CLI.hpp>

namespace arcforge::cli {

void add_gallery_command(CLI::App& app);

}  // namespace arcforge::cli
