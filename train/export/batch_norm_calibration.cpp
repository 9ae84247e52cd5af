#include "train/export/batch_norm_calibration.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <vector>

#include "arcforge/common/error.hpp"
#include "train/export/onnx_writer.hpp"

namespace arcforge::onnx_io {

void calibrate_batch_norm_statistics(nn::Backbone& backbone, uint64_t seed, int64_t batch) {
  if (batch < 2) throw ConfigError("batch norm calibration needs a batch of at least 2");
  // Momentum 1: the running statistics become exactly this batch's.
  std::vector<std::pair<torch::nn::BatchNormOptions*, c10::optional<double>>> saved;
  for (const auto& m : backbone.modules(/*include_self=*/false)) {
    torch::nn::BatchNormOptions* options = nullptr;
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) options = &bn->options;
    if (auto* bn = m->as<torch::nn::BatchNorm1d>()) options = &bn->options;
    if (!options) continue;
    saved.emplace_back(options, options->momentum());
    options->momentum(1.0);
  }
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const torch::Tensor images =
      torch::rand({batch, 3, kInputSize, kInputSize}, generator, torch::kFloat) * 2.0 - 1.0;
  backbone.train();
  {
    torch::NoGradGuard no_grad;
    backbone.forward(images.to(backbone.parameters().front().device()));
  }
  for (auto& [options, momentum] : saved) options->momentum(momentum);
  backbone.eval();
}

}  // namespace arcforge::onnx_io
