#pragma once
// Output size and padding of 2-D windowed operators (Conv, MaxPool, AveragePool), from the ONNX
// attributes: kernel_shape, strides, dilations, pads, auto_pad and ceil_mode.
#include "plan.hpp"

namespace arcforge::runtime::detail {

struct ConvGeometry {
  Dims in_dims;  // N, C, H, W
  int64_t out_channels = 0, group = 1;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int64_t pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
  int64_t out_h = 0, out_w = 0;
  int64_t ceil_extra_h = 0, ceil_extra_w = 0;  // padding added by ceil_mode beyond `pads`
};

// auto_pad SAME_UPPER / SAME_LOWER: the padding before and after one spatial axis of `in` values
// so that the output has ceil(in / stride) values (`effective_kernel`: (k - 1) * dilation + 1).
std::pair<int64_t, int64_t> same_padding(const std::string& auto_pad, int64_t in, int64_t stride,
                                         int64_t effective_kernel);

// Conv: kernel from the weights (input 1), group from the attribute.
ConvGeometry conv_geometry(PlanBuilder& b, const Node& n);
// The weights' dims as oneDNN takes them: OIHW, or GOIHW for a grouped convolution.
Dims conv_weight_dims(const ConvGeometry& g, const Dims& onnx_weight_dims);
// A forward-inference convolution of this geometry, every layout left to oneDNN (`any`), the bias
// (when there is one) in fp32.
dnnl::convolution_forward::desc conv_desc(const ConvGeometry& g, const Dims& weight_dims, dnnl::memory::data_type src,
                                          dnnl::memory::data_type weights, dnnl::memory::data_type dst, bool with_bias);
// Pooling: kernel from kernel_shape (or the whole plane for the Global* ops).
ConvGeometry pool_geometry(PlanBuilder& b, const Node& n);

}  // namespace arcforge::runtime::detail
