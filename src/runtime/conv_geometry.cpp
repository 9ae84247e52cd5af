#include "conv_geometry.hpp"

#include <tuple>

namespace arcforge::runtime::detail {
namespace {

void spatial(const Node& n, ConvGeometry& g, bool ceil_mode) {
  const auto strides = n.attr_ints("strides", {1, 1});
  const auto dilations = n.attr_ints("dilations", {1, 1});
  auto pads = n.attr_ints("pads", {0, 0, 0, 0});
  if (strides.size() != 2 || dilations.size() != 2 || pads.size() != 4) {
    node_error(n, "strides/dilations/pads do not describe a 2-D window");
  }
  g.stride_h = strides[0];
  g.stride_w = strides[1];
  g.dilation_h = dilations[0];
  g.dilation_w = dilations[1];
  if (g.stride_h < 1 || g.stride_w < 1 || g.dilation_h < 1 || g.dilation_w < 1 || g.kernel_h < 1 || g.kernel_w < 1) {
    node_error(n, "kernel, strides and dilations must be positive");
  }
  for (int64_t p : pads) {
    if (p < 0) node_error(n, "negative padding");
  }
  const int64_t h = g.in_dims[2], w = g.in_dims[3];
  const int64_t eff_h = (g.kernel_h - 1) * g.dilation_h + 1, eff_w = (g.kernel_w - 1) * g.dilation_w + 1;
  const std::string auto_pad = n.attr_s("auto_pad", "NOTSET");
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    std::tie(pads[0], pads[2]) = same_padding(auto_pad, h, g.stride_h, eff_h);
    std::tie(pads[1], pads[3]) = same_padding(auto_pad, w, g.stride_w, eff_w);
  } else if (auto_pad == "VALID") {
    pads = {0, 0, 0, 0};
  } else if (auto_pad != "NOTSET") {
    node_error(n, "unknown auto_pad '" + auto_pad + "'");
  }
  g.pad_t = pads[0];
  g.pad_l = pads[1];
  g.pad_b = pads[2];
  g.pad_r = pads[3];
  auto out_size = [&](int64_t in, int64_t begin, int64_t end, int64_t stride, int64_t eff, int64_t& extra) {
    const int64_t span = in + begin + end - eff;
    if (span < 0) node_error(n, "window " + std::to_string(eff) + " is larger than the padded input " + std::to_string(in + begin + end));
    int64_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
    // A window may not start in the end padding (ONNX Runtime and PyTorch agree).
    if (ceil_mode && (out - 1) * stride >= in + begin) --out;
    extra = std::max<int64_t>(0, (out - 1) * stride + eff - (in + begin + end));
    return out;
  };
  g.out_h = out_size(h, g.pad_t, g.pad_b, g.stride_h, eff_h, g.ceil_extra_h);
  g.out_w = out_size(w, g.pad_l, g.pad_r, g.stride_w, eff_w, g.ceil_extra_w);
}

const Dims& image_input(PlanBuilder& b, const Node& n) {
  const Dims& x = b.dims(n.input(0));
  if (x.size() != 4) node_error(n, "only 2-D windows (4-D NCHW input) are supported, got " + dims_str(x));
  return x;
}

}  // namespace

std::pair<int64_t, int64_t> same_padding(const std::string& auto_pad, int64_t in, int64_t stride,
                                         int64_t effective_kernel) {
  const int64_t out = (in + stride - 1) / stride;
  const int64_t total = std::max<int64_t>(0, (out - 1) * stride + effective_kernel - in);
  const int64_t begin = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
  return {begin, total - begin};
}

ConvGeometry conv_geometry(PlanBuilder& b, const Node& n) {
  ConvGeometry g;
  g.in_dims = image_input(b, n);
  const HostTensor& w = b.need_constant(n, 1);
  if (w.dims.size() != 4) node_error(n, "weights must be 4-D, got " + dims_str(w.dims));
  g.group = n.attr_i("group", 1);
  g.out_channels = w.dims[0];
  if (g.group < 1 || g.out_channels % g.group != 0 || w.dims[1] * g.group != g.in_dims[1]) {
    node_error(n, "weights " + dims_str(w.dims) + " with group " + std::to_string(g.group) +
                      " do not fit input " + dims_str(g.in_dims));
  }
  g.kernel_h = w.dims[2];
  g.kernel_w = w.dims[3];
  const auto ks = n.attr_ints("kernel_shape", {g.kernel_h, g.kernel_w});
  if (ks != std::vector<int64_t>{g.kernel_h, g.kernel_w}) node_error(n, "kernel_shape disagrees with the weights");
  spatial(n, g, false);
  return g;
}

Dims conv_weight_dims(const ConvGeometry& g, const Dims& w) {
  if (g.group == 1) return {g.out_channels, w[1], w[2], w[3]};
  return {g.group, g.out_channels / g.group, w[1], w[2], w[3]};
}

dnnl::convolution_forward::desc conv_desc(const ConvGeometry& g, const Dims& weight_dims, dnnl::memory::data_type src,
                                          dnnl::memory::data_type weights, dnnl::memory::data_type dst, bool with_bias) {
  using tag = dnnl::memory::format_tag;
  const md_t src_any(g.in_dims, src, tag::any), w_any(weight_dims, weights, tag::any);
  const md_t dst_any({g.in_dims[0], g.out_channels, g.out_h, g.out_w}, dst, tag::any);
  const Dims strides = {g.stride_h, g.stride_w}, dilates = {g.dilation_h - 1, g.dilation_w - 1};
  const Dims pad_l = {g.pad_t, g.pad_l}, pad_r = {g.pad_b, g.pad_r};
  const auto kind = dnnl::prop_kind::forward_inference;
  const auto alg = dnnl::algorithm::convolution_direct;
  if (!with_bias) return {kind, alg, src_any, w_any, dst_any, strides, dilates, pad_l, pad_r};
  const md_t bias({g.out_channels}, dnnl::memory::data_type::f32, tag::x);
  return {kind, alg, src_any, w_any, bias, dst_any, strides, dilates, pad_l, pad_r};
}

ConvGeometry pool_geometry(PlanBuilder& b, const Node& n) {
  ConvGeometry g;
  g.in_dims = image_input(b, n);
  g.out_channels = g.in_dims[1];
  if (n.op == "GlobalAveragePool" || n.op == "GlobalMaxPool") {
    g.kernel_h = g.in_dims[2];
    g.kernel_w = g.in_dims[3];
    g.out_h = g.out_w = 1;
    return g;
  }
  const auto ks = n.attr_ints("kernel_shape");
  if (ks.size() != 2) node_error(n, "kernel_shape must have 2 values");
  g.kernel_h = ks[0];
  g.kernel_w = ks[1];
  spatial(n, g, n.attr_i("ceil_mode", 0) != 0);
  return g;
}

}  // namespace arcforge::runtime::detail
