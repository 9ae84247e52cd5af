#include "train/export/batch_norm_folding.hpp"

#include "arcforge/common/error.hpp"

namespace arcforge::onnx_io {
namespace {

torch::Tensor as_double(const torch::Tensor& t) { return t.detach().to(torch::kCPU, torch::kDouble); }

torch::Tensor bias_or_zeros(const torch::Tensor& bias, int64_t out) {
  return bias.defined() ? as_double(bias) : torch::zeros({out}, torch::kDouble);
}

}  // namespace

ChannelAffine batch_norm_affine(const BatchNormTensors& bn) {
  const torch::Tensor var = as_double(bn.running_var);
  const torch::Tensor mean = as_double(bn.running_mean);
  const torch::Tensor gamma = bn.weight.defined() ? as_double(bn.weight) : torch::ones_like(var);
  const torch::Tensor beta = bn.bias.defined() ? as_double(bn.bias) : torch::zeros_like(var);
  ChannelAffine a;
  a.scale = gamma / torch::sqrt(var + bn.eps);
  a.shift = beta - mean * a.scale;
  return a;
}

void fold_into_producer(torch::Tensor& weight, torch::Tensor& bias, const ChannelAffine& after) {
  const int64_t out = weight.size(0);
  if (after.scale.numel() != out) {
    throw Error("batch norm folding: " + std::to_string(after.scale.numel()) +
                " channels after a layer with " + std::to_string(out) + " outputs");
  }
  std::vector<int64_t> per_channel(weight.dim(), 1);
  per_channel[0] = out;
  weight = as_double(weight) * after.scale.view(per_channel);
  bias = bias_or_zeros(bias, out) * after.scale + after.shift;
}

void fold_into_following_linear(torch::Tensor& weight, torch::Tensor& bias, const ChannelAffine& before) {
  const int64_t out = weight.size(0);
  const int64_t in = weight.size(1);
  const int64_t channels = before.scale.numel();
  if (channels == 0 || in % channels != 0) {
    throw Error("batch norm folding: " + std::to_string(channels) + " channels do not divide a " +
                std::to_string(in) + "-wide linear input");
  }
  const int64_t positions = in / channels;  // H*W of each channel, C-major as flatten() lays it out
  const torch::Tensor scale = before.scale.repeat_interleave(positions);  // [in]
  const torch::Tensor shift = before.shift.repeat_interleave(positions);  // [in]
  const torch::Tensor w = as_double(weight);
  bias = bias_or_zeros(bias, out) + torch::mv(w, shift);
  weight = w * scale.view({1, in});
}

}  // namespace arcforge::onnx_io
