// ReduceMean on oneDNN's reduction primitive (the mean of a decomposed LayerNorm that the optimiser
// could not fuse). Axes come from the attribute (opset < 18) or the second input (opset 18);
// keepdims=0 is the same computation with the reduced axes dropped from the output's dims.
#include <algorithm>

#include "plan.hpp"

namespace arcforge::runtime::detail {

void plan_reduce_mean(PlanBuilder& b, const Node& n) {
  const Dims& in = b.dims(n.input(0));
  const int64_t rank = static_cast<int64_t>(in.size());
  const std::vector<int64_t> axes = ints_param(n, 1, "axes", b.host_lookup());
  const bool noop_when_empty = n.attr_i("noop_with_empty_axes", 0) != 0;
  std::vector<bool> reduced(static_cast<std::size_t>(std::max<int64_t>(rank, 1)), false);
  if (axes.empty() && !noop_when_empty) {
    std::fill(reduced.begin(), reduced.end(), true);  // no axes: all of them
  }
  for (int64_t a : axes) {
    const int64_t axis = normalize_axis(n, a, rank);
    if (reduced[axis]) node_error(n, "repeated axis " + std::to_string(a));
    reduced[axis] = true;
  }
  const bool keepdims = n.attr_i("keepdims", 1) != 0;
  Dims kept, out;  // kept: the reduced axes as 1s (what oneDNN writes); out: the ONNX output's dims
  for (int64_t k = 0; k < rank; ++k) {
    kept.push_back(reduced[k] ? 1 : in[k]);
    if (!reduced[k] || keepdims) out.push_back(kept.back());
  }
  if (numel(in) == 0 && numel(kept) != 0) node_error(n, "the mean of an empty axis is undefined");
  if (kept == in) {  // nothing to average: a scalar, noop_with_empty_axes, or only axes of extent 1
    b.output_view(n.outputs.at(0), n.input(0), out);
    return;
  }
  MemRef src = b.input_plain(n.input(0));
  MemRef dst = b.output(n.outputs.at(0), plain_md(out), out);  // out may be rank 0
  dst.md = plain_md(kept);
  if (numel(kept) == 0) return;
  dnnl::reduction::primitive_desc pd({dnnl::algorithm::reduction_mean, src.md, dst.md, 0.0f, 0.0f}, b.engine());
  b.add(dnnl::reduction(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
}

}  // namespace arcforge::runtime::detail
