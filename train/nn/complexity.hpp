#pragma once
// Parameters and multiply-accumulates of a backbone at a given input size, measured from the
// module itself (never typed in). InsightFace publishes MACs under the name "GFLOPs".
#include <cstdint>

#include "train/nn/backbone.hpp"

namespace arcforge::nn {

struct Complexity {
  int64_t params = 0;  // trainable parameters
  int64_t macs = 0;    // multiply-accumulates for one image
  int64_t flops() const { return 2 * macs; }
};

Complexity measure_complexity(Backbone& backbone, int64_t height = 112, int64_t width = 112);

}  // namespace arcforge::nn
