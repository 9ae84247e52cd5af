// A float depthwise 3x3 convolution on arcforge's depthwise loop (depthwise_loop.hpp), with its
// PReLU (ReLU, leaky ReLU) post-op and the quantization an int8 convolution after it wants, all in
// one pass. It reads its input in the layout the producer wrote (channels-last or nChw8c/nChw16c;
// anything else keeps oneDNN) and writes the same layout.

#include "conv_geometry.hpp"
#include "conv_post_ops.hpp"
#include "depthwise_loop.hpp"
#include "env_switch.hpp"
#include "loop_layouts.hpp"
#include "parallel_rows.hpp"

namespace arcforge::runtime::detail {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using Type = DepthwiseLoop::Type;

Type type_of(dt t) {
  switch (t) {
    case dt::bf16: return Type::bf16;
    case dt::u8: return Type::u8;
    case dt::s8: return Type::s8;
    default: return Type::f32;
  }
}

}  // namespace

bool depthwise_loop_enabled() {
  return !turned_off_by_env("ARCFORGE_RUNTIME_DEPTHWISE");
}

bool plan_conv_depthwise(PlanBuilder& b, const Node& n, const ConvGeometry& geo, const HostTensor& w,
                         const HostTensor* bias, dt act) {
  const Dims& x = geo.in_dims;
  const int64_t channels = x[1];
  // One channel per group, or two (oneDNN 2.6 has no blocked kernel for those: InsightFace's
  // MobileFaceNet's 128 channels in 64 groups ran on its plain gemm, 29% of the model's time).
  const bool pairs = geo.group * 2 == channels;
  const int64_t per_group = pairs ? 2 : 1;
  if (!depthwise_loop_enabled() || (geo.group != channels && !pairs) || geo.out_channels != channels ||
      geo.kernel_h != 3 || geo.kernel_w != 3 || geo.dilation_h != 1 || geo.dilation_w != 1 ||
      w.numel() != channels * 9 * per_group || geo.out_h < 1 || geo.out_w < 1) {
    return false;
  }
  DepthwiseLoop d;
  const md_t src_md = b.desc(n.input(0));
  const tag format = loop_format_of(src_md);
  if ((src_md.data_type() != dt::f32 && src_md.data_type() != dt::bf16) || format == tag::undef) return false;
  if (n.post_ops.size() > 1) return false;
  if (n.post_ops.size() == 1) {
    const PostOp& p = n.post_ops[0];
    // ReLU and leaky ReLU are PReLUs of one slope for every channel. oneDNN fuses those two into its
    // depthwise kernel, which on bf16 data (two taps per vdpbf16ps) outruns this loop, so bf16 keeps
    // it unless the output is quantized, which oneDNN does as a pass of its own (SCRFD-500m's twenty
    // depthwise convs: fp32 1.77 ms here against oneDNN's 1.94, bf16 1.29 against 0.99).
    const bool onednn_fuses = p.kind == PostOp::Kind::relu || p.kind == PostOp::Kind::leaky_relu;
    if (onednn_fuses && src_md.data_type() != dt::f32 && !n.quant.dst_quantized) return false;
    switch (p.kind) {
      case PostOp::Kind::relu: d.output_slope.assign(static_cast<std::size_t>(channels), 0.0f); break;
      case PostOp::Kind::leaky_relu: d.output_slope.assign(static_cast<std::size_t>(channels), p.alpha); break;
      case PostOp::Kind::prelu: d.output_slope = prelu_slope_per_channel(b.host(p.operand), channels); break;
      default: return false;
    }
    if (d.output_slope.empty()) return false;
  }

  d.channels = channels;
  d.in_h = x[2];
  d.in_w = x[3];
  d.out_h = geo.out_h;
  d.out_w = geo.out_w;
  d.stride_h = geo.stride_h;
  d.stride_w = geo.stride_w;
  d.pad_t = geo.pad_t;
  d.pad_l = geo.pad_l;
  // ONNX weights [C, per_group, 3, 3]; in a pair, input j of output channel c is channel c - c % 2 + j.
  d.pairs = pairs;
  d.weights.resize(static_cast<std::size_t>(channels * 9));
  if (pairs) d.partner_weights.resize(d.weights.size());
  for (int64_t c = 0; c < channels; ++c) {
    const int64_t own = pairs ? c % 2 : 0;
    for (int64_t t = 0; t < 9; ++t) {
      d.weights[t * channels + c] = w.f[(c * per_group + own) * 9 + t];
      if (pairs) d.partner_weights[t * channels + c] = w.f[(c * per_group + 1 - own) * 9 + t];
    }
  }
  d.bias = bias ? bias->f : std::vector<float>(static_cast<std::size_t>(channels), 0.0f);
  d.source = type_of(src_md.data_type());
  const dt out_t = !n.quant.dst_quantized ? act : n.quant.dst_signed ? dt::s8 : dt::u8;
  d.destination = type_of(out_t);
  if (n.quant.dst_quantized) d.inv_scale = 1.0f / n.quant.dst_scale;

  const Dims out_dims = {x[0], channels, geo.out_h, geo.out_w};
  d.src_layout = loop_layout_of(x, format);
  d.dst_layout = loop_layout_of(out_dims, format);
  const MemRef src = b.input(n.input(0), src_md);
  const MemRef dst = b.output(n.outputs.at(0), md_t(out_dims, out_t, format));
  const int64_t rows = x[0] * geo.out_h;
  b.add_custom({src, dst}, [d = std::move(d), rows](const std::vector<char*>& p) {
    for_rows_on_each_thread(rows, [&](int64_t begin, int64_t end) { depthwise_rows(d, p[0], p[1], begin, end); });
  }, "loop:depthwise");
  return true;
}

}  // namespace arcforge::runtime::detail
