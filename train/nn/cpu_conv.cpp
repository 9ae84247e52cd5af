#include "train/nn/cpu_conv.hpp"

#include "train/compat/torch_compat.hpp"
#include "train/nn/grouped_conv.hpp"

namespace arcforge::nn {

torch::Tensor conv2d_forward(torch::nn::Conv2d& conv, const torch::Tensor& x) {
  const auto& options = conv->options;
  const auto* padding = compat::explicit_padding(options.padding());
  const bool plain = padding != nullptr && compat::holds<torch::enumtype::kZeros>(options.padding_mode()) &&
                     !conv->bias.defined() && (*options.dilation())[0] == 1 && (*options.dilation())[1] == 1;
  if (!plain) return conv->forward(x);
  const std::array<int64_t, 2> stride{(*options.stride())[0], (*options.stride())[1]};
  const std::array<int64_t, 2> pad{(**padding)[0], (**padding)[1]};
  if (options.groups() == 1) return conv->forward(x);
  return grouped_conv2d(x, conv->weight, GroupedConvSpec{stride, pad, options.groups()});
}

}  // namespace arcforge::nn
