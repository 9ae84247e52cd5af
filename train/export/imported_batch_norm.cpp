#include "train/export/imported_batch_norm.hpp"

namespace arcforge::onnx_io {

BatchNormValues batch_norm_from_file(const OnnxOp& op, const torch::Tensor& pending_bias, const BatchNormTensors& ours) {
  BatchNormValues v;
  v.weight = op.weight;
  v.bias = op.bias;
  v.running_mean = op.mean.to(torch::kDouble);
  if (pending_bias.defined()) v.running_mean = v.running_mean - pending_bias.to(torch::kDouble);
  v.running_var = op.var.to(torch::kDouble);
  if (static_cast<float>(op.eps) != static_cast<float>(ours.eps)) {
    v.running_var = (v.running_var + (op.eps - ours.eps)).clamp_min(0.0);
    v.eps_adjusted = true;
  }
  return v;
}

BatchNormValues identity_batch_norm(const torch::Tensor& bias, const BatchNormTensors& ours) {
  BatchNormValues v;
  v.weight = torch::ones({ours.channels});
  v.bias = bias.defined() ? bias : torch::zeros({ours.channels});
  v.running_mean = torch::zeros({ours.channels});
  v.running_var = torch::full({ours.channels}, 1.0 - ours.eps, torch::kDouble);
  return v;
}

}  // namespace arcforge::onnx_io
