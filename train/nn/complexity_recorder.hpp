#pragma once
// Counts multiply-accumulates (MACs) during one forward pass, for measure_complexity().
//
// libtorch has no forward hooks, so the backbones call their leaf layers through metered(), which
// runs the layer and, when a MacRecorder is active on this thread, adds the layer's cost for one
// image. Outside a measurement the cost is one thread-local load per layer.
//
// Counting rules are those of ptflops, the tool behind InsightFace's published "GFLOPs" (which are
// MACs): conv = output elements * in_channels/groups * kh*kw (+ output elements for a bias),
// linear = in * out (+ out for a bias), batch norm and layer norm = elements (x2 when affine),
// PReLU = elements. Layers that are functions (ReLU6, attention products) add their own count.
// Residual additions, flatten and dropout are not counted (ptflops does not see them either).
#include <torch/torch.h>

#include <cstdint>

namespace arcforge::nn::detail {

class MacRecorder {
 public:
  MacRecorder();   // becomes the active recorder of this thread
  ~MacRecorder();  // re-activates the one that was active before
  MacRecorder(const MacRecorder&) = delete;
  MacRecorder& operator=(const MacRecorder&) = delete;

  int64_t macs() const { return macs_; }

  // Adds to the active recorder of this thread; does nothing when none is active.
  static void add(int64_t macs);
  static bool active();

 private:
  int64_t macs_ = 0;
  MacRecorder* previous_ = nullptr;
};

// Each runs the layer on x and reports its per-image MACs to the active recorder.
torch::Tensor metered(torch::nn::Conv2d& conv, const torch::Tensor& x);
torch::Tensor metered(torch::nn::Linear& linear, const torch::Tensor& x);
torch::Tensor metered(torch::nn::BatchNorm2d& bn, const torch::Tensor& x);
torch::Tensor metered(torch::nn::BatchNorm1d& bn, const torch::Tensor& x);
torch::Tensor metered(torch::nn::PReLU& prelu, const torch::Tensor& x);
torch::Tensor metered(torch::nn::LayerNorm& norm, const torch::Tensor& x);  // elements, x2 when affine
// prelu(bn(x)), through the fused kernel where it applies; counted as the two layers.
torch::Tensor metered(torch::nn::BatchNorm2d& bn, torch::nn::PReLU& prelu, const torch::Tensor& x);

}  // namespace arcforge::nn::detail
