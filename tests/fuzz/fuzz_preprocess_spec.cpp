// libFuzzer target for pipeline::parse_preprocess_spec (the recognizer's --spec text) on arbitrary
// text. Only arcforge::Error may escape. An accepted spec has source "spec", every std > 0 (never
// NaN), a size within 16..1024 (112x112 unless the text says "size="), and describe() of it parses
// back to the same spec: channel order and size exactly, mean and std to describe's 6 significant
// digits (checked where every value is 0 or of magnitude 1e-30..1e30; describe's rounding can push a
// value next to FLT_MIN into the subnormals, which std::stof refuses).
//
// run_fuzzers.sh links only the core sources, so preprocess_spec.cpp is compiled into this target
// here; it needs model_sidecar (core) and recognizer.hpp's declarations only.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "arcforge/common/error.hpp"
#include "arcforge/pipeline/recognizer.hpp"
#include "pipeline/preprocess_spec.cpp"

namespace {

namespace ap = arcforge::pipeline;

bool plain(float v) { return v == 0 || (std::isfinite(v) && std::abs(v) >= 1e-30f && std::abs(v) <= 1e30f); }

bool close(float a, float b) { return std::abs(a - b) <= 1e-5f * std::max(std::abs(a), std::abs(b)); }

void check_spec(const ap::PreprocessSpec& spec, const std::string& text) {
  if (spec.source != "spec") std::abort();
  for (float s : spec.std) {
    if (!(s > 0)) std::abort();
  }
  if (spec.width < 16 || spec.width > 1024 || spec.height < 16 || spec.height > 1024) std::abort();
  if (text.find("size=") == std::string::npos && (spec.width != 112 || spec.height != 112)) std::abort();
}

void check_round_trip(const ap::PreprocessSpec& spec) {
  for (int c = 0; c < 3; ++c) {
    if (!plain(spec.mean[c]) || !plain(spec.std[c])) return;
  }
  const ap::PreprocessSpec back = ap::parse_preprocess_spec(ap::describe(spec));  // must not throw
  if (back.bgr != spec.bgr || back.width != spec.width || back.height != spec.height) std::abort();
  for (int c = 0; c < 3; ++c) {
    if (!close(back.mean[c], spec.mean[c]) || !close(back.std[c], spec.std[c])) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ap::PreprocessSpec spec;
  try {
    spec = ap::parse_preprocess_spec(text);
  } catch (const arcforge::Error&) {
    return 0;
  }
  check_spec(spec, text);
  check_round_trip(spec);
  return 0;
}
