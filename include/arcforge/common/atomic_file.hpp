#pragma once
// Crash-safe writes: temp file in the same directory, fsync, rename over the target, fsync the
// directory. A reader sees either the old complete file or the new complete file, never a torn one.
#include <string>
#include <string_view>

namespace arcforge {

void write_file_atomically(const std::string& path, std::string_view bytes);

// Reads a whole file; throws InputError naming the file when it cannot.
std::string read_file(const std::string& path);

}  // namespace arcforge
