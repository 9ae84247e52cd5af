# Header-only dependencies, found by header so that a prefix of unpacked .debs (the GPU machine,
# see scripts/device-check.sh) works as well as the system's /usr/include.
function(arcforge_header_only target header)
  find_path(${target}_INCLUDE_DIR ${header} REQUIRED)
  add_library(${target} INTERFACE)
  target_include_directories(${target} SYSTEM INTERFACE ${${target}_INCLUDE_DIR})
endfunction()

arcforge_header_only(dep_json nlohmann/json.hpp)
arcforge_header_only(dep_cli11 CLI/CLI.hpp)
arcforge_header_only(dep_toml toml++/toml.h)
target_compile_definitions(dep_toml INTERFACE TOML_HEADER_ONLY=1 TOML_EXCEPTIONS=1)
