// Gemm and MatMul. A constant right-hand side becomes a oneDNN inner product with weights packed
// once (alpha and beta folded in; a MatMul's fused bias Add as its bias); MatMul of two run-time
// tensors uses oneDNN matmul. Both take the optimiser's post-ops (conv_post_ops.hpp).
#include "conv_post_ops.hpp"

namespace arcforge::runtime::detail {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// y[M,N] = x[M,K] * W[N,K]^T + bias[N], written into `out` (plain [M,N]).
void inner_product(PlanBuilder& b, const Node& n, const std::string& x_value, int64_t m, int64_t k, const HostTensor& w_nk,
                   const HostTensor* bias, const std::string& out, const Dims& out_dims) {
  const int64_t cols = w_nk.dims[0];
  // bf16: source and weights in bf16, fp32 accumulation and output.
  const dt act = b.compute_type();
  MemRef x = b.input(x_value, with_type(plain_md(b.dims(x_value)), act));
  x.md = with_type(plain_md({m, k}), act);
  const md_t w_any({cols, k}, act, tag::any);
  const md_t w_plain({cols, k}, dt::f32, tag::oi);
  const md_t b_md({cols}, dt::f32, tag::x);
  const md_t dst_md = with_type(plain_md({m, cols}), n.bf16_output ? dt::bf16 : dt::f32);
  auto d = bias ? dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_inference, x.md, w_any, b_md, dst_md)
                : dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_inference, x.md, w_any, dst_md);
  const auto make_pd = [&](const dnnl::primitive_attr& attr) {
    return dnnl::inner_product_forward::primitive_desc(d, attr, b.engine());
  };
  // The optimiser's post-ops (activation, scale, residual sum) on the result, seen with its own
  // dims (a MatMul's [..., N]: a residual addend of those dims is the same memory as [M,N]). An
  // addend that broadcasts into more than two dims cannot describe a post-op of the 2-D product:
  // those post-ops run after it, on the result viewed with its own dims.
  bool broadcast_sum = false;
  for (const PostOp& p : n.post_ops) {
    broadcast_sum = broadcast_sum || (p.kind == PostOp::Kind::sum && b.dims(p.operand) != out_dims);
  }
  auto [pd, post, fused] = out_dims.size() > 2 && broadcast_sum
                               ? PostOpChoice<dnnl::inner_product_forward::primitive_desc>{make_pd({}), {}, false}
                               : choose_fused_primitive<dnnl::inner_product_forward::primitive_desc>(b, n, out_dims, make_pd);
  std::unordered_map<int, MemRef> args;
  args[DNNL_ARG_SRC] = x;
  args[DNNL_ARG_WEIGHTS] = b.weights(n.name + "/weights", w_nk, w_plain, pd.weights_desc());
  if (bias) args[DNNL_ARG_BIAS] = b.weights(n.name + "/bias", *bias, b_md, pd.bias_desc());
  for (auto& [arg, ref] : post.args) args[arg] = ref;
  const md_t out_md = with_type(plain_md(out_dims), dst_md.data_type());
  MemRef dst = post.sum_in_place ? b.output_accumulating(out, post.sum_addend, out_md) : b.output(out, out_md);
  dst.md = dst_md;
  args[DNNL_ARG_DST] = dst;
  b.add(dnnl::inner_product_forward(pd), std::move(args));
  if (!fused) {
    MemRef result = dst;
    result.md = out_md;
    add_unfused_post_ops(b, n, result, out_dims);
  }
}

// A bias of `cols` values from a constant of `cols` or one value (broadcast along the row), times `scale`.
HostTensor row_bias(const Node& n, const HostTensor& c, int64_t cols, float scale) {
  if (c.dtype != DType::f32 || (c.numel() != cols && c.numel() != 1)) {
    node_error(n, "the bias must be a float constant of " + std::to_string(cols) + " or 1 values");
  }
  HostTensor bias = HostTensor::from_f32({cols}, std::vector<float>(cols));
  for (int64_t j = 0; j < cols; ++j) bias.f[j] = scale * c.f[c.numel() == 1 ? 0 : j];
  return bias;
}

HostTensor transposed(const HostTensor& t) {
  const int64_t r = t.dims[0], c = t.dims[1];
  HostTensor out = HostTensor::from_f32({c, r}, std::vector<float>(t.f.size()));
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t j = 0; j < c; ++j) out.f[j * r + i] = t.f[i * c + j];
  }
  return out;
}

}  // namespace

void plan_gemm(PlanBuilder& b, const Node& n) {
  if (n.quant.active) return plan_gemm_int8(b, n);
  const Dims& a = b.dims(n.input(0));
  if (a.size() != 2) node_error(n, "A must be 2-D, got " + dims_str(a));
  if (n.attr_i("transA", 0) != 0) node_error(n, "transA=1 is not supported");
  const HostTensor& bt = b.need_constant(n, 1);
  if (bt.dims.size() != 2) node_error(n, "B must be 2-D");
  const float alpha = n.attr_f("alpha", 1.0f), beta = n.attr_f("beta", 1.0f);
  // Packed weights are cached by node name, so what is derived here must not depend on shapes.
  HostTensor w = n.attr_i("transB", 0) ? bt : transposed(bt);
  if (w.dims[1] != a[1]) node_error(n, "A " + dims_str(a) + " and B " + dims_str(bt.dims) + " do not multiply");
  if (alpha != 1.0f) {
    for (float& v : w.f) v *= alpha;
  }
  const int64_t cols = w.dims[0];
  const bool has_bias = !n.input(2).empty();
  const HostTensor bias = has_bias ? row_bias(n, b.need_constant(n, 2), cols, beta) : HostTensor{};
  inner_product(b, n, n.input(0), a[0], a[1], w, has_bias ? &bias : nullptr, n.outputs.at(0),
                {a[0], cols});
}

void plan_matmul(PlanBuilder& b, const Node& n) {
  Dims a = b.dims(n.input(0));
  Dims c = b.dims(n.input(1));
  if (a.size() < 2 || c.size() < 2) node_error(n, "1-D operands are not supported");
  const HostTensor* bc = b.host(n.input(1));
  if (bc && c.size() == 2) {
    bc = &b.need_constant(n, 1);  // packed as float weights (fuzz_model_load: an int32 B was read as float)
    // [..., M, K] x [K, N]: one inner product over all leading rows.
    if (a.back() != c[0]) node_error(n, "shapes " + dims_str(a) + " and " + dims_str(c) + " do not multiply");
    Dims out = a;
    out.back() = c[1];
    const int64_t rows = numel(a) / a.back();
    const HostTensor w = transposed(*bc);
    // The optimiser's bias post-op (MatMul + Add of a constant) becomes the inner product's bias.
    if (n.post_ops.empty() || n.post_ops[0].kind != PostOp::Kind::bias) {
      inner_product(b, n, n.input(0), rows, a.back(), w, nullptr, n.outputs.at(0), out);
      return;
    }
    const HostTensor* c_bias = b.host(n.post_ops[0].operand);
    if (!c_bias) node_error(n, "the fused bias is not a constant");
    const HostTensor bias = row_bias(n, *c_bias, c[1], 1.0f);
    Node rest = n;
    rest.post_ops.erase(rest.post_ops.begin());
    inner_product(b, rest, n.input(0), rows, a.back(), w, &bias, n.outputs.at(0), out);
    return;
  }
  const std::size_t rank = std::max(a.size(), c.size());
  a = pad_rank(a, rank);
  c = pad_rank(c, rank);
  if (a[rank - 1] != c[rank - 2]) node_error(n, "shapes " + dims_str(a) + " and " + dims_str(c) + " do not multiply");
  Dims out(rank);
  for (std::size_t k = 0; k + 2 < rank; ++k) {
    if (a[k] != c[k] && a[k] != 1 && c[k] != 1) node_error(n, "batch dimensions do not broadcast");
    out[k] = std::max(a[k], c[k]);
  }
  out[rank - 2] = a[rank - 2];
  out[rank - 1] = c[rank - 1];
  MemRef src = b.input_plain(n.input(0));
  src.md = plain_md(a);
  MemRef wei = b.input_plain(n.input(1));
  wei.md = plain_md(c);
  MemRef dst = b.output(n.outputs.at(0), plain_md(out));
  // Post-ops here are scalar multiplications (the optimiser fuses nothing else into a MatMul).
  const PostOpPlan post = build_post_ops(b, n, out);
  dnnl::primitive_attr attr;
  attr.set_post_ops(post.ops);
  dnnl::matmul::primitive_desc pd({src.md, wei.md, dst.md}, attr, b.engine());
  std::unordered_map<int, MemRef> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  for (auto& [arg, ref] : post.args) args[arg] = ref;
  b.add(dnnl::matmul(pd), std::move(args));
}

}  // namespace arcforge::runtime::detail
