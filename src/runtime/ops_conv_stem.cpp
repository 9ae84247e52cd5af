// A network's first convolution (3x3 over a 1- or 3-channel fp32 image in NCHW) on arcforge's stem
// loop (stem_conv.hpp), with its activation, writing the layout oneDNN's convolution would have
// written. Anything else keeps oneDNN.

#include "arcforge/cpu/isa.hpp"
#include "conv_geometry.hpp"
#include "conv_post_ops.hpp"
#include "env_switch.hpp"
#include "loop_layouts.hpp"
#include "parallel_rows.hpp"
#include "stem_conv.hpp"

namespace arcforge::runtime::detail {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// The node's post-op (at most one) as the loop's slope and clamp; false for any other.
bool activation_of(PlanBuilder& b, const Node& n, StemConv& s) {
  s.negative_slope.assign(static_cast<std::size_t>(s.out_channels), 1.0f);
  if (n.post_ops.empty()) return true;
  if (n.post_ops.size() > 1) return false;
  const PostOp& p = n.post_ops[0];
  switch (p.kind) {
    case PostOp::Kind::relu: s.lower = 0.0f; return true;
    case PostOp::Kind::clip:
      s.lower = p.alpha;
      s.upper = p.beta;
      return true;
    case PostOp::Kind::leaky_relu: s.negative_slope.assign(s.negative_slope.size(), p.alpha); return true;
    case PostOp::Kind::prelu:
      s.negative_slope = prelu_slope_per_channel(b.host(p.operand), s.out_channels);
      return !s.negative_slope.empty();
    default: return false;
  }
}

bool stem_conv_enabled() { return !turned_off_by_env("ARCFORGE_RUNTIME_STEM"); }

}  // namespace

bool plan_conv_stem(PlanBuilder& b, const Node& n, const ConvGeometry& geo, const HostTensor& w,
                    const HostTensor* bias, dt act) {
  const Dims& x = geo.in_dims;
  const int64_t in_channels = x[1], out_channels = geo.out_channels;
  // Whole vectors of 8 or 16 output channels only: SCRFD-2.5g's 12 (a vector of 8, then 4 one at a
  // time) took 1.26 ms against oneDNN's 1.0 with its reorder, and so does the scalar code of a CPU
  // without AVX2.
  if (!stem_conv_enabled() || !stem_conv_takes_input_channels(in_channels) || out_channels % 8 != 0 ||
      cpu::cpu_kernel_active_isa() < cpu::CpuKernelIsa::avx2 || geo.group != 1 ||
      geo.kernel_h != 3 || geo.kernel_w != 3 || geo.dilation_h != 1 || geo.dilation_w != 1 ||
      w.numel() != out_channels * in_channels * 9 || geo.out_h < 1 || geo.out_w < 1 || n.quant.dst_quantized ||
      (act != dt::f32 && act != dt::bf16)) {
    return false;
  }
  const md_t src_md = b.desc(n.input(0));
  if (src_md != md_t(x, dt::f32, tag::abcd)) return false;
  StemConv s;
  s.in_channels = in_channels;
  s.out_channels = out_channels;
  if (!activation_of(b, n, s)) return false;

  // The layout oneDNN's convolution would write, so that the layers after it see no change.
  const Dims out_dims = {x[0], out_channels, geo.out_h, geo.out_w};
  const dnnl::convolution_forward::primitive_desc onednn(
      conv_desc(geo, conv_weight_dims(geo, w.dims), act, act, act, bias != nullptr), b.engine());
  tag format = loop_format_of(onednn.dst_desc());
  if (format == tag::undef) format = tag::acdb;

  s.in_h = x[2];
  s.in_w = x[3];
  s.out_h = geo.out_h;
  s.out_w = geo.out_w;
  s.stride_h = geo.stride_h;
  s.stride_w = geo.stride_w;
  s.pad_t = geo.pad_t;
  s.pad_l = geo.pad_l;
  const int64_t taps = in_channels * 9;
  s.weights.resize(static_cast<std::size_t>(taps * out_channels));
  for (int64_t oc = 0; oc < out_channels; ++oc) {
    for (int64_t t = 0; t < taps; ++t) s.weights[t * out_channels + oc] = w.f[oc * taps + t];
  }
  s.bias = bias ? bias->f : std::vector<float>(static_cast<std::size_t>(out_channels), 0.0f);
  s.destination = act == dt::bf16 ? StemConv::Type::bf16 : StemConv::Type::f32;
  s.dst_layout = loop_layout_of(out_dims, format);

  const MemRef src = b.input(n.input(0), src_md);
  const MemRef dst = b.output(n.outputs.at(0), md_t(out_dims, act, format));
  const int64_t rows = x[0] * geo.out_h;
  b.add_custom({src, dst}, [s = std::move(s), rows](const std::vector<char*>& p) {
    for_rows_on_each_thread(rows, [&](int64_t begin, int64_t end) {
      stem_conv_rows(s, reinterpret_cast<const float*>(p[0]), p[1], begin, end);
    });
  }, "loop:stem");
  return true;
}

}  // namespace arcforge::runtime::detail
