// The int8 convolution of a QDQ model (see optimize_quant.cpp): u8/s8 source with scale s_x, s8
// weights with per-channel scales s_w[c], int32 accumulation. oneDNN 2.x adds the bias to the
// accumulator before the output scales, so the bias is passed divided by s_x * s_w[c]:
//   y[c] = post_ops(s_x * s_w[c] * (acc[c] + bias[c] / (s_x * s_w[c])))
// and with a quantized output the last post-op divides by its scale before oneDNN rounds and
// saturates into u8/s8 (a positive scale could also move ahead of ReLU/PReLU, not of Clip).
#include "conv_geometry.hpp"
#include "int8_primitive.hpp"

namespace arcforge::runtime::detail {
namespace {

// An int8 convolution for which oneDNN has only a reference kernel (on AVX2: grouped with 2 input
// channels per group, as mbf's second layer: 190 ms a call where fp32 takes about 1) runs with the
// float semantics the QDQ file defines instead: x * s_x, an fp32 convolution with w * s_w[c] and the
// float bias, the post-ops, then (quantized output) the rounding into u8/s8.
void plan_dequantized_conv(PlanBuilder& b, const Node& n, const ConvGeometry& geo, const HostTensor& w,
                           const HostTensor* bias, const Dims& wdims, const md_t& w_plain) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const QuantConv& q = n.quant;
  const int64_t oc = geo.out_channels;
  const Dims out_dims = {geo.in_dims[0], oc, geo.out_h, geo.out_w};
  HostTensor wf = w;
  const int64_t per = w.numel() / oc;
  for (int64_t k = 0; k < w.numel(); ++k) wf.f[k] *= q.weight_scales[k / per];
  const md_t b_md({oc}, dt::f32, tag::x);
  const dnnl::convolution_forward::primitive_desc pd(conv_desc(geo, wdims, dt::f32, dt::f32, dt::f32, bias != nullptr),
                                                      b.engine());

  const MemRef xq = b.input_as_is(n.input(0));
  const MemRef xf = b.temporary(pd.src_desc());
  dnnl::primitive_attr scale;
  scale.set_output_scales(0, {q.src_scale});
  b.add(dnnl::reorder(dnnl::reorder::primitive_desc(b.engine(), xq.md, b.engine(), xf.md, scale)),
        {{DNNL_ARG_FROM, xq}, {DNNL_ARG_TO, xf}});
  std::unordered_map<int, MemRef> args;
  args[DNNL_ARG_SRC] = xf;
  args[DNNL_ARG_WEIGHTS] = b.weights(n.name + "/dequantized_weights", wf, w_plain, pd.weights_desc());
  if (bias) args[DNNL_ARG_BIAS] = b.weights(n.name + "/bias", *bias, b_md, pd.bias_desc());
  const std::string& out = n.outputs.at(0);
  const MemRef y = q.dst_quantized ? b.temporary(pd.dst_desc()) : b.output(out, pd.dst_desc());
  args[DNNL_ARG_DST] = y;
  b.add(dnnl::convolution_forward(pd), std::move(args));
  add_unfused_post_ops(b, n, y, out_dims);
  if (q.dst_quantized) add_output_quantization(b, y, out, q.dst_signed ? dt::s8 : dt::u8, q.dst_scale);
}

}  // namespace

void plan_conv_int8(PlanBuilder& b, const Node& n) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const QuantConv& q = n.quant;
  const ConvGeometry geo = conv_geometry(b, n);
  const HostTensor& w = b.need_constant(n, 1);  // integer-valued floats, -127..127
  const HostTensor* bias = n.input(2).empty() ? nullptr : &b.need_constant(n, 2);
  const int64_t oc = geo.out_channels;
  if (static_cast<int64_t>(q.weight_scales.size()) != oc) node_error(n, "weight scales do not match the channels");

  const std::vector<float> scales = int8_output_scales(q, oc);
  const HostTensor acc_bias = bias ? accumulator_bias(*bias, scales) : HostTensor{};

  const Dims& x = geo.in_dims;
  const Dims out_dims = {x[0], oc, geo.out_h, geo.out_w};
  const dt src_t = q.src_signed ? dt::s8 : dt::u8;
  const dt quant_t = q.dst_signed ? dt::s8 : dt::u8;
  const Dims wdims = conv_weight_dims(geo, w.dims);
  const md_t w_plain(wdims, dt::f32, geo.group == 1 ? tag::oihw : tag::goihw);

  auto make_pd = [&](dt dst_t, const dnnl::primitive_attr& attr) {
    return dnnl::convolution_forward::primitive_desc(conv_desc(geo, wdims, src_t, dt::s8, dst_t, bias != nullptr), attr,
                                                     b.engine());
  };
  // int8+bf16: a float output in bf16, the type the float layers after it compute in (half the
  // bytes to write and read), but fp32 with a 1x1 output (an embedding head), as under bf16, and
  // where oneDNN would write bf16 only with a reference kernel.
  dt float_t = geo.out_h * geo.out_w == 1 ? dt::f32 : b.compute_type();
  if (float_t == dt::bf16 && is_reference_impl(make_pd(dt::bf16, scaled_attr(scales, 1.0f)))) float_t = dt::f32;
  auto [pd, post, fused] =
      choose_int8_primitive<dnnl::convolution_forward::primitive_desc>(b, n, out_dims, scales, float_t, make_pd);
  if (is_reference_impl(pd)) return plan_dequantized_conv(b, n, geo, w, bias, wdims, w_plain);

  auto args = int8_arguments(b, n, b.input(n.input(0), pd.src_desc()), w, w_plain, bias ? &acc_bias : nullptr, pd, post);
  const std::string& out = n.outputs.at(0);
  if (fused) {
    args[DNNL_ARG_DST] = fused_int8_destination(b, post, out, pd.dst_desc());
    b.add(dnnl::convolution_forward(pd), std::move(args));
    return;
  }
  // Unfused: float result, the post-ops in place, then (quantized output) the quantizing pass.
  if (!q.dst_quantized) {
    MemRef dst = b.output(out, pd.dst_desc());
    args[DNNL_ARG_DST] = dst;
    b.add(dnnl::convolution_forward(pd), std::move(args));
    add_unfused_post_ops(b, n, dst, out_dims);
    return;
  }
  MemRef tmp = b.temporary(pd.dst_desc());
  args[DNNL_ARG_DST] = tmp;
  b.add(dnnl::convolution_forward(pd), std::move(args));
  if (add_prelu_and_quantize(b, n, tmp, out, quant_t, out_dims)) return;
  add_unfused_post_ops(b, n, tmp, out_dims);
  add_output_quantization(b, tmp, out, quant_t, q.dst_scale);
}

}  // namespace arcforge::runtime::detail
