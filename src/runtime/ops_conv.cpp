// Conv (2-D), with the post-ops the optimiser attached: eltwise activations, PReLU and the residual
// sum. oneDNN picks the activation and weight layouts (format `any`); weights are packed once.
// When oneDNN has no optimised kernel for a post-op chain, the chain runs as separate in-place
// primitives instead of falling back to a reference convolution.
#include <cmath>

#include "conv_geometry.hpp"
#include "conv_post_ops.hpp"
#include "int8_primitive.hpp"

namespace arcforge::runtime::detail {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

dnnl::algorithm eltwise_alg(const PostOp& p, float& alpha, float& beta) {
  alpha = 0;
  beta = 0;
  switch (p.kind) {
    case PostOp::Kind::relu: return dnnl::algorithm::eltwise_relu;
    case PostOp::Kind::leaky_relu: alpha = p.alpha; return dnnl::algorithm::eltwise_relu;
    case PostOp::Kind::clip:
      if (p.alpha == 0.0f) {
        alpha = p.beta;
        return dnnl::algorithm::eltwise_bounded_relu;
      }
      alpha = p.alpha;
      beta = p.beta;
      return dnnl::algorithm::eltwise_clip;
    case PostOp::Kind::sigmoid: return dnnl::algorithm::eltwise_logistic;
    case PostOp::Kind::tanh: return dnnl::algorithm::eltwise_tanh;
    case PostOp::Kind::hardswish: return dnnl::algorithm::eltwise_hardswish;
    case PostOp::Kind::scale: alpha = p.alpha; return dnnl::algorithm::eltwise_linear;
    default: return dnnl::algorithm::undef;
  }
}

// The post-op chain, and with `bind` its run-time arguments (which may add constants or a reorder
// to the plan, so they are bound only once the chain is known to be fused).
PostOpPlan post_ops(PlanBuilder& b, const Node& n, const Dims& out_dims, bool bind) {
  PostOpPlan plan;
  const int64_t channels = out_dims[1];
  for (std::size_t k = 0; k < n.post_ops.size(); ++k) {
    const PostOp& p = n.post_ops[k];
    const int idx = static_cast<int>(k);
    if (p.kind == PostOp::Kind::bias) node_error(n, "a fused bias reached a planner other than MatMul's");
    if (p.kind == PostOp::Kind::sum) {
      const Dims& addend = b.dims(p.operand);
      if (addend == out_dims && !plan.sum_in_place) {
        // In place: dst already holds the addend, oneDNN adds the convolution result to it.
        plan.ops.append_sum(1.0f);
        plan.sum_in_place = true;
        plan.sum_addend = p.operand;
      } else {
        if (broadcast_dims(n, out_dims, addend) != out_dims) node_error(n, "residual add would grow the output");
        const md_t md = plain_md(pad_rank(addend, out_dims.size()));
        plan.ops.append_binary(dnnl::algorithm::binary_add, md);
        if (!bind) continue;
        MemRef ref = b.input_plain(p.operand);
        ref.md = md;
        plan.args.emplace_back(DNNL_ARG_ATTR_MULTIPLE_POST_OP(idx) | DNNL_ARG_SRC_1, ref);
      }
    } else if (p.kind == PostOp::Kind::prelu) {
      const HostTensor* slope = b.host(p.operand);
      if (!slope || slope->dtype != DType::f32) node_error(n, "PReLU slope must be a float constant");
      const bool per_channel = slope->numel() != 1;
      if (per_channel && slope->numel() != channels) node_error(n, "PReLU slope does not match the channels");
      plan.ops.append_prelu(per_channel ? 1 << 1 : 0);
      if (!bind) continue;
      const md_t md = plain_md(per_channel ? Dims{1, channels, 1, 1} : Dims{1, 1, 1, 1});
      plan.args.emplace_back(DNNL_ARG_ATTR_MULTIPLE_POST_OP(idx) | DNNL_ARG_WEIGHTS, b.fixed(*slope, md));
    } else {
      float alpha = 0, beta = 0;
      const auto alg = eltwise_alg(p, alpha, beta);  // sets alpha and beta: call it first
      plan.ops.append_eltwise(1.0f, alg, alpha, beta);
    }
  }
  return plan;
}

}  // namespace

dnnl::post_ops post_op_chain(PlanBuilder& b, const Node& n, const Dims& out_dims) {
  return post_ops(b, n, out_dims, false).ops;
}

PostOpPlan build_post_ops(PlanBuilder& b, const Node& n, const Dims& out_dims) {
  return post_ops(b, n, out_dims, true);
}

void add_unfused_post_ops(PlanBuilder& b, const Node& n, const MemRef& dst, const Dims& out_dims) {
  const auto& eng = b.engine();
  for (const PostOp& p : n.post_ops) {
    if (p.kind == PostOp::Kind::bias) node_error(n, "a fused bias reached a planner other than MatMul's");
    if (p.kind == PostOp::Kind::sum) {
      const Dims& addend = b.dims(p.operand);
      MemRef src1 = addend == out_dims ? b.input(p.operand, dst.md) : b.input_plain(p.operand);
      if (addend != out_dims) src1.md = plain_md(pad_rank(addend, out_dims.size()));
      dnnl::binary::primitive_desc pd({dnnl::algorithm::binary_add, dst.md, src1.md, dst.md}, eng);
      b.add(dnnl::binary(pd), {{DNNL_ARG_SRC_0, dst}, {DNNL_ARG_SRC_1, src1}, {DNNL_ARG_DST, dst}});
    } else if (p.kind == PostOp::Kind::prelu) {
      const HostTensor* slope = b.host(p.operand);
      Dims slope_dims(out_dims.size(), 1);  // per channel, or one value for all
      slope_dims[1] = slope->numel() == 1 ? 1 : out_dims[1];
      add_constant_prelu(b, dst.md, dst, dst, *slope, slope_dims, "prelu_slope/" + p.operand);
    } else {
      float alpha = 0, beta = 0;
      const auto alg = eltwise_alg(p, alpha, beta);
      dnnl::eltwise_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, alg, dst.md, alpha, beta}, eng);
      b.add(dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, dst}, {DNNL_ARG_DST, dst}});
    }
  }
}

std::vector<float> prelu_slope_per_channel(const HostTensor* slope, int64_t channels) {
  if (!slope || slope->dtype != DType::f32 || (slope->numel() != 1 && slope->numel() != channels)) return {};
  std::vector<float> out(static_cast<std::size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) out[c] = slope->f[slope->numel() == 1 ? 0 : c];
  return out;
}

void add_constant_prelu(PlanBuilder& b, const md_t& md, const MemRef& src, const MemRef& dst, const HostTensor& slope,
                        const Dims& slope_dims, const std::string& key) {
  const md_t wanted(slope_dims, dt::f32, tag::any);
  dnnl::prelu_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, md, wanted}, b.engine());
  const MemRef w = b.weights(key, slope, plain_md(slope_dims), pd.weights_desc());
  b.add(dnnl::prelu_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst}});
}

bool is_reference_impl(const dnnl::primitive_desc_base& pd) {
  return std::string(pd.impl_info_str()).rfind("ref", 0) == 0;
}

void plan_conv(PlanBuilder& b, const Node& n) {
  if (n.quant.active) return plan_conv_int8(b, n);
  const ConvGeometry geo = conv_geometry(b, n);
  const HostTensor& w = b.need_constant(n, 1);
  const HostTensor* bias = n.input(2).empty() ? nullptr : &b.need_constant(n, 2);
  if (bias && bias->numel() != geo.out_channels) node_error(n, "bias has " + std::to_string(bias->numel()) + " values, expected " + std::to_string(geo.out_channels));

  const Dims& x = geo.in_dims;
  const Dims out_dims = {x[0], geo.out_channels, geo.out_h, geo.out_w};
  // bf16 (and the float convolutions of int8+bf16): activations and weights in bf16, accumulation
  // and bias in fp32 — except for convolutions
  // with a 1x1 output (the embedding head: MobileFaceNet's global depthwise conv and the linear
  // conv after it), where bf16 rounding of a 7x7 sum is what costs the most cosine and fp32 costs
  // nothing measurable; and where oneDNN has only a reference bf16 kernel (no avx512_core).
  dt act = b.compute_type();
  if (act == dt::bf16 && geo.out_h * geo.out_w == 1) act = dt::f32;
  const Dims wdims = conv_weight_dims(geo, w.dims);
  if (act == dt::bf16 && is_reference_impl(dnnl::convolution_forward::primitive_desc(
                             conv_desc(geo, wdims, dt::bf16, dt::bf16, dt::bf16, false), b.engine()))) {
    act = dt::f32;
  }
  // A depthwise 3x3 runs on arcforge's loop, its PReLU and any quantization of its output included.
  if (plan_conv_depthwise(b, n, geo, w, bias, act)) return;
  // So does a first layer over a planar image, read in place with its activation.
  if (plan_conv_stem(b, n, geo, w, bias, act)) return;
  // Any other float convolution that writes a QuantizeLinear's output (optimize_quant.cpp absorbs it
  // where the last post-op is a PReLU, which then runs in the quantizing pass) runs on oneDNN.
  const bool quantize_after = n.quant.dst_quantized;
  if (act == dt::f32 && !quantize_after && plan_conv_winograd(b, n, geo, w, bias)) return;
  const md_t w_plain(wdims, dt::f32, geo.group == 1 ? tag::oihw : tag::goihw);
  const md_t b_md({geo.out_channels}, dt::f32, tag::x);
  const dnnl::convolution_forward::desc desc = conv_desc(geo, wdims, act, act, act, bias != nullptr);
  auto [pd, post, fused] = choose_fused_primitive<dnnl::convolution_forward::primitive_desc>(
      b, n, out_dims, [&](const dnnl::primitive_attr& attr) {
        return dnnl::convolution_forward::primitive_desc(desc, attr, b.engine());
      });

  std::unordered_map<int, MemRef> args;
  args[DNNL_ARG_SRC] = b.input(n.input(0), pd.src_desc());
  args[DNNL_ARG_WEIGHTS] = b.weights(n.name + "/weights", w, w_plain, pd.weights_desc());
  if (bias) args[DNNL_ARG_BIAS] = b.weights(n.name + "/bias", *bias, b_md, pd.bias_desc());
  for (auto& [arg, ref] : post.args) args[arg] = ref;
  const std::string& out = n.outputs.at(0);
  MemRef dst = quantize_after      ? b.temporary(pd.dst_desc())
               : post.sum_in_place ? b.output_accumulating(out, post.sum_addend, pd.dst_desc())
                                   : b.output(out, pd.dst_desc());
  args[DNNL_ARG_DST] = dst;
  b.add(dnnl::convolution_forward(pd), std::move(args));
  if (!quantize_after) {
    if (!fused) add_unfused_post_ops(b, n, dst, out_dims);
    return;
  }
  const dt quant_t = n.quant.dst_signed ? dt::s8 : dt::u8;
  if (!fused && add_prelu_and_quantize(b, n, dst, out, quant_t, out_dims)) return;
  if (!fused) add_unfused_post_ops(b, n, dst, out_dims);
  add_output_quantization(b, dst, out, quant_t, n.quant.dst_scale);
}

}  // namespace arcforge::runtime::detail
