// Element-wise activations (oneDNN eltwise), PRelu (oneDNN prelu) and stand-alone
// BatchNormalization (a per-channel multiply with a fused add, and in int8 models the quantization
// of its output), all in the input's layout.
#include <cmath>

#include "conv_post_ops.hpp"

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
  const md_t cmd = plain_md(cdims);
  const md_t src = b.desc(n.input(0));
  dnnl::post_ops ops;
  ops.append_binary(dnnl::algorithm::binary_add, cmd);
  // A QuantizeLinear the optimiser absorbed (int8 models): scaled, rounded and saturated on the way out.
  md_t dst = src;
  if (n.quant.dst_quantized) {
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, 1.0f / n.quant.dst_scale, 0.0f);
    dst = with_type(src, n.quant.dst_signed ? dnnl::memory::data_type::s8 : dnnl::memory::data_type::u8);
  }
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  dnnl::binary::primitive_desc pd({dnnl::algorithm::binary_mul, src, cmd, dst}, attr, b.engine());
  MemRef in = b.input(n.input(0), src);
  MemRef out = b.output(n.outputs.at(0), dst);
  b.add(dnnl::binary(pd), {{DNNL_ARG_SRC_0, in},
                           {DNNL_ARG_SRC_1, b.fixed(scale, cmd)},
                           {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, b.fixed(shift, cmd)},
                           {DNNL_ARG_DST, out}});
}

}  // namespace arcforge::runtime::detail
