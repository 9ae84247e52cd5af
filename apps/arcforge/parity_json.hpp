#pragma once
// The `parity` object that `arcforge export --json` and `arcforge import --json` print: how far the
// runtime's embeddings are from libtorch's on the file just written or read.
#include <nlohmann/json.hpp>

#include "train/export/runtime_parity.hpp"

namespace arcforge::cli {

inline nlohmann::ordered_json parity_json(const onnx_io::ParityResult& parity) {
  return {{"batch", parity.batch},
          {"max_abs_diff", parity.max_abs_diff},
          {"output_scale", parity.output_scale},
          {"relative", parity.relative()}};
}

}  // namespace arcforge::cli
