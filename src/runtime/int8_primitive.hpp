#pragma once
// What the int8 convolution (ops_conv_int8.cpp) and the int8 inner product (ops_gemm_int8.cpp)
// share: oneDNN 2.x int8 primitives accumulate in int32, add the bias to the accumulator, then
// apply per-output-channel scales s_x * s_w[c] and the post-ops; with a quantized output a last
// 1 / s_y before the rounding into u8/s8.
#include "conv_post_ops.hpp"

namespace arcforge::runtime::detail {

// s_x * s_w[c] for each output channel (q.weight_scales has `channels` values: callers check).
std::vector<float> int8_output_scales(const QuantConv& q, int64_t channels);
// The float bias divided by the output scales (what oneDNN adds to the int32 accumulator).
HostTensor accumulator_bias(const HostTensor& bias, const std::vector<float>& scales);
// Per-output-channel output scales (mask 1 << 1), each times `extra`.
dnnl::primitive_attr scaled_attr(const std::vector<float>& scales, float extra);
// Rounds a float result (fp32 or bf16) into the node's quantized output, y = x / s_y: the quantizing
// loop, else oneDNN's scaling reorder.
void add_output_quantization(PlanBuilder& b, const MemRef& x, const std::string& out,
                             dnnl::memory::data_type quant_t, float dst_scale);

// A node's single PReLU post-op (oneDNN 2.6 fuses none into a convolution) and the quantization of
// its fp32 result x into the node's u8/s8 output `out`, in one pass. False (nothing added) when
// the post-ops are not one PReLU, or neither the quantizing loop nor oneDNN's binary takes them.
bool add_prelu_and_quantize(PlanBuilder& b, const Node& n, const MemRef& x, const std::string& out,
                            dnnl::memory::data_type quant_t, const Dims& out_dims);

// Source, packed s8 weights, the accumulator bias (when there is one) and the post-ops' operands of
// an int8 primitive whose descriptor is `pd`.
template <class PrimitiveDesc>
std::unordered_map<int, MemRef> int8_arguments(PlanBuilder& b, const Node& n, const MemRef& src, const HostTensor& w,
                                               const md_t& w_plain, const HostTensor* acc_bias,
                                               const PrimitiveDesc& pd, const PostOpPlan& post) {
  std::unordered_map<int, MemRef> args;
  args[DNNL_ARG_SRC] = src;
  args[DNNL_ARG_WEIGHTS] = b.weights(n.name + "/weights", w, w_plain, pd.weights_desc());
  if (acc_bias) {
    const md_t b_md(acc_bias->dims, dnnl::memory::data_type::f32, dnnl::memory::format_tag::x);
    args[DNNL_ARG_BIAS] = b.weights(n.name + "/acc_bias", *acc_bias, b_md, pd.bias_desc());
  }
  for (const auto& [arg, ref] : post.args) args[arg] = ref;
  return args;
}

// The destination of a fully fused int8 primitive: the residual addend's buffer when the sum
// post-op accumulates in place, else a new output.
MemRef fused_int8_destination(PlanBuilder& b, const PostOpPlan& post, const std::string& out, const md_t& dst);

// The primitive for an int8 node: everything fused (post-ops, and a quantized destination) when
// oneDNN has an optimised kernel for it; otherwise the plain primitive writing `float_t` (`fused`
// false: the caller runs the post-ops and the quantization after it, or, when even the plain
// primitive is a reference kernel, something else). `float_t` (fp32, or bf16 for a convolution
// under int8+bf16) is also the type of an output that is not quantized. `make_pd(dst_type, attr)`
// builds the primitive descriptor. The post-ops' arguments are bound only when they are fused.
template <class PrimitiveDesc, class MakePd>
PostOpChoice<PrimitiveDesc> choose_int8_primitive(PlanBuilder& b, const Node& n, const Dims& out_dims,
                                                  const std::vector<float>& scales, dnnl::memory::data_type float_t,
                                                  MakePd make_pd) {
  using dt = dnnl::memory::data_type;
  const QuantConv& q = n.quant;
  const dt quant_t = q.dst_signed ? dt::s8 : dt::u8;
  PostOpChoice<PrimitiveDesc> c;
  if (n.post_ops.empty()) {
    const float extra = q.dst_quantized ? 1.0f / q.dst_scale : 1.0f;
    c.pd = make_pd(q.dst_quantized ? quant_t : float_t, scaled_attr(scales, extra));
    return c;
  }
  c.pd = make_pd(float_t, scaled_attr(scales, 1.0f));
  c.fused = false;
  if (is_reference_impl(c.pd)) return c;
  dnnl::post_ops chain = post_op_chain(b, n, out_dims);
  if (q.dst_quantized) chain.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, 1.0f / q.dst_scale, 0.0f);
  dnnl::primitive_attr attr = scaled_attr(scales, 1.0f);
  attr.set_post_ops(chain);
  PrimitiveDesc fused_pd = make_pd(q.dst_quantized ? quant_t : float_t, attr);
  // oneDNN 2.6 has only reference int8 kernels for some chains (PReLU): run them unfused.
  if (is_reference_impl(fused_pd)) return c;
  c.pd = fused_pd;
  c.fused = true;
  c.post = build_post_ops(b, n, out_dims);
  return c;
}

}  // namespace arcforge::runtime::detail
