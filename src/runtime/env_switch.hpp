#pragma once
// The runtime's on/off switches in the environment (ARCFORGE_RUNTIME_DEPTHWISE, _QUANTIZE_LOOP),
// read when a shape is planned: "0" turns one of arcforge's own kernels off, so that oneDNN's path
// can be compared and tested.
#include <cstdlib>
#include <cstring>

namespace arcforge::runtime::detail {

inline bool turned_off_by_env(const char* variable) {
  const char* value = std::getenv(variable);
  return value && std::strcmp(value, "0") == 0;
}

}  // namespace arcforge::runtime::detail
