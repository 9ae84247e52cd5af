// Helpers shared by the int8 convolution and inner product (int8_primitive.hpp).
#include "int8_primitive.hpp"

#include "quantize_loop.hpp"

namespace arcforge::runtime::detail {

std::vector<float> int8_output_scales(const QuantConv& q, int64_t channels) {
  std::vector<float> scales(static_cast<std::size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) scales[c] = q.src_scale * q.weight_scales[c];
  return scales;
}

HostTensor accumulator_bias(const HostTensor& bias, const std::vector<float>& scales) {
  const int64_t n = static_cast<int64_t>(scales.size());
  HostTensor out = HostTensor::from_f32({n}, std::vector<float>(scales.size()));
  for (int64_t c = 0; c < n; ++c) out.f[c] = bias.f[c] / scales[c];
  return out;
}

dnnl::primitive_attr scaled_attr(const std::vector<float>& scales, float extra) {
  dnnl::primitive_attr attr;
  std::vector<float> s = scales;
  for (float& v : s) v *= extra;
  attr.set_output_scales(1 << 1, s);
  return attr;
}

MemRef fused_int8_destination(PlanBuilder& b, const PostOpPlan& post, const std::string& out, const md_t& dst) {
  return post.sum_in_place ? b.output_accumulating(out, post.sum_addend, dst) : b.output(out, dst);
}

void add_output_quantization(PlanBuilder& b, const MemRef& x, const std::string& out,
                             dnnl::memory::data_type quant_t, float dst_scale) {
  MemRef dst = b.output(out, with_type(x.md, quant_t));
  const bool is_signed = quant_t == dnnl::memory::data_type::s8;
  if (add_quantize_loop(b, x, dst, plain_quantization(1.0f / dst_scale, is_signed))) return;
  dnnl::primitive_attr attr;
  attr.set_output_scales(0, {1.0f / dst_scale});
  dnnl::reorder::primitive_desc rpd(b.engine(), x.md, b.engine(), dst.md, attr);
  b.add(dnnl::reorder(rpd), {{DNNL_ARG_FROM, x}, {DNNL_ARG_TO, dst}});
}

// A PReLU post-op that oneDNN cannot fuse into the convolution, and the quantization after it, in
// one pass over the fp32 result x: arcforge's quantizing loop on a channels-last x
// (quantize_loop.hpp), else one binary primitive: with every slope w in [0, 1],
// prelu(x) = max(w * x, x), so x * w (per channel), then a max with x itself (a full-tensor binary
// post-op), then 1 / s_y, rounded and saturated into u8/s8. Returns false (nothing added) when the
// slopes or the layout do not allow either.
bool add_prelu_and_quantize(PlanBuilder& b, const Node& n, const MemRef& x, const std::string& out,
                            dnnl::memory::data_type quant_t, const Dims& out_dims) {
  if (n.post_ops.size() != 1 || n.post_ops[0].kind != PostOp::Kind::prelu) return false;
  const HostTensor* slope = b.host(n.post_ops[0].operand);
  const int64_t channels = out_dims[1];
  const std::vector<float> per_channel = prelu_slope_per_channel(slope, channels);
  if (per_channel.empty()) return false;
  const md_t dst_md = with_type(x.md, quant_t);
  const QuantizeLoop loop{1.0f / n.quant.dst_scale, quant_t == dnnl::memory::data_type::s8, per_channel,
                          false};  // add_quantize_loop sets the source type
  if (quantize_loop_fits(x.md, dst_md, loop)) return add_quantize_loop(b, x, b.output(out, dst_md), loop);
  for (float w : slope->f) {
    if (!(w >= 0.0f && w <= 1.0f)) return false;
  }
  const md_t wmd = plain_md({1, channels, 1, 1});
  dnnl::post_ops ops;
  ops.append_binary(dnnl::algorithm::binary_max, x.md);
  ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, 1.0f / n.quant.dst_scale, 0.0f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  dnnl::binary::primitive_desc pd({dnnl::algorithm::binary_mul, x.md, wmd, dst_md}, attr, b.engine());
  if (is_reference_impl(pd)) return false;
  MemRef dst = b.output(out, dst_md);
  b.add(dnnl::binary(pd), {{DNNL_ARG_SRC_0, x},
                           {DNNL_ARG_SRC_1, b.fixed(HostTensor::from_f32({channels}, per_channel), wmd)},
                           {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, x},
                           {DNNL_ARG_DST, dst}});
  return true;
}

}  // namespace arcforge::runtime::detail
