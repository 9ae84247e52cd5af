#include "train/nn/cpu_conv.hpp"

#include "train/compat/torch_compat.hpp"
#include "train/nn/blocked_conv.hpp"
#include "train/nn/cpu_kernel_isa.hpp"
#include "train/nn/grouped_conv.hpp"

namespace arcforge::nn {

namespace {

// `layer` on x in fp32 with autocast paused, its output rounded to bf16 as autocast's would be.
template <class Layer>
torch::Tensor in_fp32(const torch::Tensor& x, Layer layer) {
  compat::CpuAutocastPause pause;
  return layer(x.to(torch::kFloat)).to(torch::kBFloat16);
}

}  // namespace

bool bf16_layer_computes_in_fp32(const torch::Tensor& x) {
  return x.device().is_cpu() && compat::autocast_enabled(torch::kCPU) &&
         compat::autocast_dtype(torch::kCPU) == torch::kBFloat16 && cpu_kernel_active_isa() < CpuKernelIsa::avx512;
}

torch::Tensor conv2d_forward(torch::nn::Conv2d& conv, const torch::Tensor& x) {
  if (conv->options.groups() == 1 && bf16_layer_computes_in_fp32(x))  // then once more in fp32, autocast paused
    return in_fp32(x, [&](const torch::Tensor& xf) { return conv2d_forward(conv, xf); });
  const auto& options = conv->options;
  const auto* padding = compat::explicit_padding(options.padding());
  const bool plain = padding != nullptr && compat::holds<torch::enumtype::kZeros>(options.padding_mode()) &&
                     !conv->bias.defined() && (*options.dilation())[0] == 1 && (*options.dilation())[1] == 1;
  if (!plain) return conv->forward(x);
  const std::array<int64_t, 2> stride{(*options.stride())[0], (*options.stride())[1]};
  const std::array<int64_t, 2> pad{(**padding)[0], (**padding)[1]};
  const GroupedConvSpec spec{stride, pad, options.groups()};
  if (options.groups() > 1) return grouped_conv2d(x, conv->weight, spec);
  return dense_conv_runs_blocked(x, conv->weight, spec) ? blocked_conv2d(x, conv->weight, spec) : conv->forward(x);
}

bool linear_runs_as_conv(const torch::Tensor& x) {
  constexpr int64_t kMinTokens = 8;  // [N*T, in, 1, 1] images, one pixel each, are slow in oneDNN
  return x.device().is_cpu() && x.dim() == 3 && x.size(1) >= kMinTokens && x.is_contiguous() &&
         (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kBFloat16) &&
         cpu_kernel_active_isa() >= CpuKernelIsa::avx512;
}

torch::Tensor linear_forward(torch::nn::Linear& linear, const torch::Tensor& x) {
  if (bf16_layer_computes_in_fp32(x)) return in_fp32(x, [&](const torch::Tensor& xf) { return linear->forward(xf); });
  if (!linear_runs_as_conv(x)) return linear->forward(x);
  const int64_t n = x.size(0), t = x.size(1), in = x.size(2), out = linear->weight.size(0);
  const torch::Tensor image = x.view({n, t, 1, in}).permute({0, 3, 1, 2});  // [N, in, T, 1] channels-last
  const torch::Tensor y = at::conv2d(image, linear->weight.view({out, in, 1, 1}), linear->bias);
  return y.permute({0, 2, 3, 1}).reshape({n, t, out});  // a view when oneDNN kept channels-last
}

}  // namespace arcforge::nn
