// MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool on oneDNN pooling (any activation layout).
#include "conv_geometry.hpp"

namespace arcforge::runtime::detail {

void plan_pool(PlanBuilder& b, const Node& n) {
  if (n.outputs.size() > 1 && !n.outputs[1].empty()) node_error(n, "the Indices output is not supported");
  const ConvGeometry g = pool_geometry(b, n);
  const bool max = n.op == "MaxPool" || n.op == "GlobalMaxPool";
  const bool include_pad = n.attr_i("count_include_pad", 0) != 0;
  if (!max && include_pad && (g.ceil_extra_h > 0 || g.ceil_extra_w > 0)) {
    // ONNX counts the explicit pads but not the ceil_mode overhang; oneDNN would count both.
    node_error(n, "count_include_pad with a ceil_mode overhang is not supported");
  }
  const auto alg = max ? dnnl::algorithm::pooling_max
                       : include_pad ? dnnl::algorithm::pooling_avg_include_padding
                                     : dnnl::algorithm::pooling_avg_exclude_padding;
  const md_t src = b.desc(n.input(0));
  const Dims out_dims = {g.in_dims[0], g.in_dims[1], g.out_h, g.out_w};
  // The output keeps the input's element type (bf16 after a bf16 convolution).
  const md_t dst_any(out_dims, src.data_type(), dnnl::memory::format_tag::any);
  dnnl::pooling_v2_forward::desc d(dnnl::prop_kind::forward_inference, alg, src, dst_any, {g.stride_h, g.stride_w},
                                   {g.kernel_h, g.kernel_w}, {g.dilation_h - 1, g.dilation_w - 1},
                                   {g.pad_t, g.pad_l}, {g.pad_b + g.ceil_extra_h, g.pad_r + g.ceil_extra_w});
  dnnl::pooling_v2_forward::primitive_desc pd(d, b.engine());
  MemRef in = b.input(n.input(0), pd.src_desc());
  MemRef out = b.output(n.outputs[0], pd.dst_desc());
  b.add(dnnl::pooling_v2_forward(pd), {{DNNL_ARG_SRC, in}, {DNNL_ARG_DST, out}});
}

}  // namespace arcforge::runtime::detail
