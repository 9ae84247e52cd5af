// The int8 Gemm of a QDQ model (see optimize_quant.cpp): a oneDNN int8 inner product, the dense
// counterpart of ops_conv_int8.cpp. u8/s8 source [M,K] with scale s_x, s8 weights [N,K] with
// per-column scales s_w[n], int32 accumulation, the bias divided by s_x * s_w[n] (oneDNN 2.x adds
// it to the accumulator before the output scales), the fused post-ops (activation, residual sum)
// in fp32, and with a quantized output a last 1 / s_y before oneDNN rounds and saturates.
#include "int8_primitive.hpp"

namespace arcforge::runtime::detail {

void plan_gemm_int8(PlanBuilder& b, const Node& n) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const QuantConv& q = n.quant;
  const Dims& a = b.dims(n.input(0));
  if (a.size() != 2) node_error(n, "A must be 2-D, got " + dims_str(a));
  const HostTensor& w = b.need_constant(n, 1);  // [N, K], integer-valued floats -127..127
  const int64_t m = a[0], k = a[1], cols = w.dims[0];
  if (w.dims.size() != 2 || w.dims[1] != k) node_error(n, "A " + dims_str(a) + " and B " + dims_str(w.dims) + " do not multiply");
  if (static_cast<int64_t>(q.weight_scales.size()) != cols) node_error(n, "weight scales do not match the columns");
  const HostTensor* bias = n.input(2).empty() ? nullptr : &b.need_constant(n, 2);
  if (bias && bias->numel() != cols) node_error(n, "C must have N values");

  const std::vector<float> scales = int8_output_scales(q, cols);
  const HostTensor acc_bias = bias ? accumulator_bias(*bias, scales) : HostTensor{};
  const dt src_t = q.src_signed ? dt::s8 : dt::u8;
  const dt quant_t = q.dst_signed ? dt::s8 : dt::u8;
  MemRef x = b.input(n.input(0), with_type(plain_md(a), src_t));
  const md_t w_any({cols, k}, dt::s8, tag::any);
  const md_t w_plain({cols, k}, dt::f32, tag::oi);
  const md_t b_md({cols}, dt::f32, tag::x);

  auto make_pd = [&](dt dst_t, const dnnl::primitive_attr& attr) {
    const md_t dst_md = with_type(plain_md({m, cols}), dst_t);
    auto d = bias ? dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_inference, x.md, w_any, b_md, dst_md)
                  : dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_inference, x.md, w_any, dst_md);
    return dnnl::inner_product_forward::primitive_desc(d, attr, b.engine());
  };
  auto [pd, post, fused] =
      choose_int8_primitive<dnnl::inner_product_forward::primitive_desc>(b, n, {m, cols}, scales, dt::f32, make_pd);

  auto args = int8_arguments(b, n, x, w, w_plain, bias ? &acc_bias : nullptr, pd, post);
  const std::string& out = n.outputs.at(0);
  if (fused) {
    args[DNNL_ARG_DST] = fused_int8_destination(b, post, out, pd.dst_desc());
    b.add(dnnl::inner_product_forward(pd), std::move(args));
    return;
  }
  // Unfused: fp32 result, the post-ops in place, then (quantized output) one scaling reorder.
  MemRef tmp = q.dst_quantized ? b.temporary(pd.dst_desc()) : b.output(out, pd.dst_desc());
  args[DNNL_ARG_DST] = tmp;
  b.add(dnnl::inner_product_forward(pd), std::move(args));
  add_unfused_post_ops(b, n, tmp, {m, cols});
  if (q.dst_quantized) add_output_quantization(b, tmp, out, quant_t, q.dst_scale);
}

}  // namespace arcforge::runtime::detail
