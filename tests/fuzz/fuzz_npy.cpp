// libFuzzer target for the .npy reader (`arcforge infer`'s tensor files come from outside).
// Only arcforge::InputError may escape. A parsed array must hold exactly product(shape) values, and
// writing it back with format_npy must parse to the same shape and the same bits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "arcforge/common/error.hpp"
#include "arcforge/common/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  arcforge::NpyArray array;
  try {
    array = arcforge::parse_npy(bytes, "fuzz.npy");
  } catch (const arcforge::InputError&) {
    return 0;
  }
  int64_t count = 1;
  for (const int64_t d : array.shape) {
    if (d < 0) std::abort();
    count *= d;
  }
  if (static_cast<int64_t>(array.data.size()) != count) std::abort();
  const arcforge::NpyArray back = arcforge::parse_npy(arcforge::format_npy(array.shape, array.data.data()), "again.npy");
  if (back.shape != array.shape || back.data.size() != array.data.size()) std::abort();
  if (!back.data.empty() && std::memcmp(back.data.data(), array.data.data(), back.data.size() * sizeof(float)) != 0) {
    std::abort();
  }
  return 0;
}
