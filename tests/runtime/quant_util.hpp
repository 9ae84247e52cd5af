#pragma once
// Test helpers for the precision modes: integer initializers, bf16 and QuantizeLinear rounding as
// the ONNX specification defines them, cosine similarity.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "onnx_builder.hpp"

namespace arcforge::test {

template <typename T>
void int_initializer(OnnxBuilder& m, const std::string& name, int type, const std::vector<int64_t>& dims,
                     const std::vector<T>& values) {
  auto* t = m.proto().mutable_graph()->add_initializer();
  t->set_name(name);
  t->set_data_type(type);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
}

// float -> bf16 -> float, round to nearest even (what oneDNN's conversion does).
inline double bf16_round(double v) {
  float f = static_cast<float>(v);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7fff + ((bits >> 16) & 1);
  bits &= 0xffff0000u;
  std::memcpy(&f, &bits, 4);
  return f;
}

// ONNX QuantizeLinear: saturate(round_half_even(x / s) + zp).
inline double quantize(double x, double scale, double zp, double lo, double hi) {
  return std::clamp(std::nearbyint(x / scale) + zp, lo, hi);
}

inline double cosine(const float* a, const float* b, std::size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t k = 0; k < n; ++k) {
    ab += static_cast<double>(a[k]) * b[k];
    aa += static_cast<double>(a[k]) * a[k];
    bb += static_cast<double>(b[k]) * b[k];
  }
  return ab / std::sqrt(aa * bb + 1e-30);
}

}  // namespace arcforge::test
