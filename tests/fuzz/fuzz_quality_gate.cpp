// libFuzzer target for pipeline::parse_quality_gate (--min-quality text) on arbitrary text.
// Only arcforge::Error may escape. An accepted gate holds finite values >= 0 with angles <= 180;
// fields whose key the text never mentions keep the permissive default; and the gate written back
// as "score=...,size=...,yaw=...,pitch=...,blur=..." (%.17g, exact for doubles) parses to itself.
//
// run_fuzzers.sh links only the core sources, so the two pipeline sources the parser needs are
// compiled into this target here (quality.cpp uses the ArcFace template from alignment.cpp).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "arcforge/common/error.hpp"
#include "arcforge/pipeline/quality.hpp"
#include "pipeline/alignment.cpp"
#include "pipeline/quality.cpp"

namespace {

namespace ap = arcforge::pipeline;

void check_gate(const ap::QualityGate& g, const std::string& text) {
  const double values[5] = {g.min_detector_score, g.min_face_size, g.max_abs_yaw, g.max_abs_pitch, g.min_blur};
  for (double v : values) {
    if (!std::isfinite(v) || v < 0) std::abort();
  }
  if (g.max_abs_yaw > 180 || g.max_abs_pitch > 180) std::abort();
  const ap::QualityGate defaults;
  auto keeps_default = [&](const char* key, double value, double fallback) {
    if (text.find(key) == std::string::npos && value != fallback) std::abort();
  };
  keeps_default("score", g.min_detector_score, defaults.min_detector_score);
  keeps_default("size", g.min_face_size, defaults.min_face_size);
  keeps_default("yaw", g.max_abs_yaw, defaults.max_abs_yaw);
  keeps_default("pitch", g.max_abs_pitch, defaults.max_abs_pitch);
  keeps_default("blur", g.min_blur, defaults.min_blur);
}

std::string written(const ap::QualityGate& g) {
  char buffer[512];
  std::snprintf(buffer, sizeof buffer, "score=%.17g,size=%.17g,yaw=%.17g,pitch=%.17g,blur=%.17g", g.min_detector_score,
                g.min_face_size, g.max_abs_yaw, g.max_abs_pitch, g.min_blur);
  return buffer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ap::QualityGate gate;
  try {
    gate = ap::parse_quality_gate(text);
  } catch (const arcforge::Error&) {
    return 0;
  }
  check_gate(gate, text);
  const ap::QualityGate back = ap::parse_quality_gate(written(gate));  // must not throw
  if (back.min_detector_score != gate.min_detector_score || back.min_face_size != gate.min_face_size ||
      back.max_abs_yaw != gate.max_abs_yaw || back.max_abs_pitch != gate.max_abs_pitch || back.min_blur != gate.min_blur) {
    std::abort();
  }
  return 0;
}
