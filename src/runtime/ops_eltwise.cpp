// Element-wise activations and Pow by a constant (oneDNN eltwise), PRelu (oneDNN prelu) and
// stand-alone BatchNormalization (a per-channel multiply with a fused add, and in int8 models the
// quantization of its output), all in the input's layout.
#include <cmath>

#include "int8_primitive.hpp"

namespace arcforge::runtime::detail {
namespace {

float scalar_param(PlanBuilder& b, const Node& n, std::size_t input, const std::string& attr, float fallback) {
  if (n.has(attr)) return n.attr_f(attr, fallback);
  if (n.input(input).empty()) return fallback;
  const HostTensor& t = b.need_constant(n, input);
  if (t.numel() != 1) node_error(n, "input " + std::to_string(input) + " must be a scalar");
  return t.f[0];
}

}  // namespace

void plan_unary(PlanBuilder& b, const Node& n) {
  const std::string& op = n.op;
  float alpha = 0, beta = 0;
  dnnl::algorithm alg;
  if (op == "Relu") alg = dnnl::algorithm::eltwise_relu;
  else if (op == "LeakyRelu") { alg = dnnl::algorithm::eltwise_relu; alpha = n.attr_f("alpha", 0.01f); }
  else if (op == "Sigmoid") alg = dnnl::algorithm::eltwise_logistic;
  else if (op == "Tanh") alg = dnnl::algorithm::eltwise_tanh;
  else if (op == "Exp") alg = dnnl::algorithm::eltwise_exp;
  else if (op == "Sqrt") alg = dnnl::algorithm::eltwise_sqrt;
  else if (op == "Abs") alg = dnnl::algorithm::eltwise_abs;
  else if (op == "Neg") { alg = dnnl::algorithm::eltwise_linear; alpha = -1.0f; }
  else if (op == "HardSwish") alg = dnnl::algorithm::eltwise_hardswish;
  else if (op == "Elu") { alg = dnnl::algorithm::eltwise_elu; alpha = n.attr_f("alpha", 1.0f); }
  else if (op == "Clip") {
    alg = dnnl::algorithm::eltwise_clip;
    alpha = scalar_param(b, n, 1, "min", -INFINITY);
    beta = scalar_param(b, n, 2, "max", INFINITY);
  } else {
    node_error(n, "not an element-wise operator");
  }
  const md_t md = b.desc(n.input(0));
  dnnl::eltwise_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, alg, md, alpha, beta}, b.engine());
  MemRef in = b.input(n.input(0), md);
  MemRef out = b.output(n.outputs.at(0), md);
  b.add(dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, in}, {DNNL_ARG_DST, out}});
}

// x ^ c with a scalar exponent known at plan time (an unfused LayerNorm's square, a scale's -0.5):
// oneDNN's pow eltwise (1 * x ^ c). A run-time exponent has no oneDNN primitive.
void plan_pow(PlanBuilder& b, const Node& n) {
  const HostTensor* e = n.input(1).empty() ? nullptr : b.host(n.input(1));
  if (!e) node_error(n, "the exponent must be a constant scalar (a run-time exponent is not supported)");
  if (e->numel() != 1) node_error(n, "the exponent must be a scalar, got " + dims_str(e->dims));
  const Dims& x = b.dims(n.input(0));
  const Dims out = broadcast_dims(n, x, e->dims);  // a [1,1] exponent may add leading axes
  const md_t md = out == x ? b.desc(n.input(0)) : plain_md(x);
  dnnl::eltwise_forward::primitive_desc pd(
      {dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_pow, md, 1.0f, static_cast<float>(e->at(0))},
      b.engine());
  MemRef in = b.input(n.input(0), md);
  MemRef dst = b.output(n.outputs.at(0), out == x ? md : plain_md(out));
  dst.md = md;
  b.add(dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, in}, {DNNL_ARG_DST, dst}});
}

void plan_prelu(PlanBuilder& b, const Node& n) {
  const Dims& x = b.dims(n.input(0));
  const Dims& s = b.dims(n.input(1));
  if (broadcast_dims(n, x, s) != x) node_error(n, "slope " + dims_str(s) + " does not broadcast to " + dims_str(x));
  const md_t src = b.desc(n.input(0));
  const md_t wmd = plain_md(pad_rank(s, x.size()));
  if (const HostTensor* slope = b.host(n.input(1)); slope && slope->dtype == DType::f32) {
    MemRef in = b.input(n.input(0), src);
    MemRef out = b.output(n.outputs.at(0), src);
    add_constant_prelu(b, src, in, out, *slope, pad_rank(s, x.size()), "prelu_slope/" + n.input(1));
    return;
  }
  dnnl::prelu_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, src, wmd}, b.engine());
  MemRef slope = b.input_plain(n.input(1));
  slope.md = wmd;
  MemRef in = b.input(n.input(0), src);
  MemRef out = b.output(n.outputs.at(0), src);
  b.add(dnnl::prelu_forward(pd), {{DNNL_ARG_SRC, in}, {DNNL_ARG_WEIGHTS, slope}, {DNNL_ARG_DST, out}});
}

void plan_batchnorm(PlanBuilder& b, const Node& n) {
  const Dims& x = b.dims(n.input(0));
  if (x.size() < 2) node_error(n, "input must have a channel axis");
  const int64_t c = x[1];
  const float eps = n.attr_f("epsilon", 1e-5f);
  const HostTensor* p[4];
  for (int k = 0; k < 4; ++k) {
    p[k] = &b.need_constant(n, k + 1);
    if (p[k]->numel() != c) node_error(n, "parameter " + std::to_string(k + 1) + " has " + std::to_string(p[k]->numel()) + " values for " + std::to_string(c) + " channels");
  }
  HostTensor scale = HostTensor::from_f32({c}, std::vector<float>(c));
  HostTensor shift = HostTensor::from_f32({c}, std::vector<float>(c));
  for (int64_t k = 0; k < c; ++k) {
    const double s = p[0]->f[k] / std::sqrt(static_cast<double>(p[3]->f[k]) + eps);
    scale.f[k] = static_cast<float>(s);
    shift.f[k] = static_cast<float>(p[1]->f[k] - p[2]->f[k] * s);
  }
  Dims cdims(x.size(), 1);
  cdims[1] = c;
  const md_t src = b.desc(n.input(0));
  using dt = dnnl::memory::data_type;
  // x * scale + shift in one binary primitive, and a QuantizeLinear the optimiser absorbed (int8
  // models) scaled, rounded and saturated on the way out. oneDNN 2.6 on AVX2 has an optimised
  // kernel only when the per-channel operands share the activation's layout, and with an int8
  // output only for channels-last activations (what its int8 convolutions write); otherwise it ran
  // its reference kernel, 20 to 100 times slower. So the layouts are tried in turn (plain first:
  // what AVX-512 takes), the operands packed into the first that gets one, and failing that the
  // quantization becomes a reorder of its own (two fast passes instead of one slow one).
  const dt quant_t = n.quant.dst_signed ? dt::s8 : dt::u8;
  auto make_pd = [&](const md_t& cmd, bool quantize) {
    dnnl::post_ops ops;
    ops.append_binary(dnnl::algorithm::binary_add, cmd);
    if (quantize) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, 1.0f / n.quant.dst_scale, 0.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    const md_t dst = quantize ? with_type(src, quant_t) : src;
    return dnnl::binary::primitive_desc({dnnl::algorithm::binary_mul, src, cmd, dst}, attr, b.engine());
  };
  std::vector<md_t> layouts = {plain_md(cdims)};
  if (x.size() == 4) {
    using tag = dnnl::memory::format_tag;
    for (tag t : {tag::nChw8c, tag::nChw16c, tag::nhwc}) layouts.emplace_back(cdims, dt::f32, t);
  }
  md_t cmd = layouts[0];
  bool fused_quantize = n.quant.dst_quantized;
  dnnl::binary::primitive_desc pd = make_pd(cmd, fused_quantize);
  std::vector<bool> attempts = {n.quant.dst_quantized};
  if (n.quant.dst_quantized) attempts.push_back(false);
  for (bool quantize : attempts) {
    for (const md_t& candidate : layouts) {
      if (!is_reference_impl(pd)) break;
      auto trial = make_pd(candidate, quantize);
      if (is_reference_impl(trial)) continue;
      pd = trial;
      cmd = candidate;
      fused_quantize = quantize;
    }
  }
  const bool quantize_after = n.quant.dst_quantized && !fused_quantize;
  MemRef in = b.input(n.input(0), src);
  MemRef out = quantize_after ? b.temporary(src) : b.output(n.outputs.at(0), pd.dst_desc());
  b.add(dnnl::binary(pd), {{DNNL_ARG_SRC_0, in},
                           {DNNL_ARG_SRC_1, b.weights("bn_scale/" + n.name, scale, plain_md(cdims), cmd)},
                           {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
                            b.weights("bn_shift/" + n.name, shift, plain_md(cdims), cmd)},
                           {DNNL_ARG_DST, out}});
  if (quantize_after) add_output_quantization(b, out, n.outputs.at(0), quant_t, n.quant.dst_scale);
}

}  // namespace arcforge::runtime::detail
