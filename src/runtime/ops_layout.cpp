// Operators that move data without arithmetic: Transpose (a reorder through permuted strides),
// the views Reshape/Flatten/Squeeze/Unsqueeze/Identity/Dropout and Cast to float (no data
// movement), Slice and Split (reorders from sub-memories) and Concat; plus Softmax, which also
// wants a plain layout.
#include <algorithm>

#include "plan.hpp"

namespace arcforge::runtime::detail {

void plan_transpose(PlanBuilder& b, const Node& n) {
  const Dims& in = b.dims(n.input(0));
  const auto perm = transpose_perm(n, static_cast<int64_t>(in.size()));
  Dims out;
  for (int64_t p : perm) out.push_back(in[p]);
  // permute_axes(q) moves input axis i to position q[i]; ONNX's perm says output axis k is input
  // axis perm[k], so q is perm's inverse.
  std::vector<int> inverse(perm.size());
  for (std::size_t k = 0; k < perm.size(); ++k) inverse[perm[k]] = static_cast<int>(k);
  MemRef src = b.input_plain(n.input(0));
  src.md = plain_md(in).permute_axes(inverse);
  MemRef dst = b.output(n.outputs.at(0), plain_md(out));
  b.add_reorder(src, dst);
}

void plan_view(PlanBuilder& b, const Node& n) {
  const Dims& in = b.dims(n.input(0));
  const HostLookup host = b.host_lookup();
  Dims out;
  if (n.op == "Reshape") {
    std::vector<int64_t> shape = ints_param(n, 1, "shape", host);
    out = reshape_dims(n, in, shape, n.attr_i("allowzero", 0) != 0);
  } else if (n.op == "Flatten") {
    out = flatten_dims(n, in);
  } else if (n.op == "Squeeze") {
    out = squeeze_dims(n, in, ints_param(n, 1, "axes", host));
  } else if (n.op == "Unsqueeze") {
    out = unsqueeze_dims(n, in, ints_param(n, 1, "axes", host));
  } else if (n.op == "Cast") {
    // Run-time tensors are floats, so only a cast to float is the identity (PyTorch writes such casts
    // around attention); anything else would change the values.
    const int64_t to = n.attr_i("to", 0);
    if (to != 1) node_error(n, "only a cast to float (to=1) of a run-time tensor is supported, not to=" + std::to_string(to));
    out = in;
  } else {  // Identity, Dropout (inference: identity; the optional mask output is not supported)
    if (n.outputs.size() > 1 && !n.outputs[1].empty()) node_error(n, "the mask output is not supported");
    out = in;
  }
  b.output_view(n.outputs.at(0), n.input(0), out);
}

void plan_slice(PlanBuilder& b, const Node& n) {
  const Dims& in = b.dims(n.input(0));
  const SliceSpec s = slice_spec(n, in, b.host_lookup());
  MemRef src = b.input_plain(n.input(0));
  MemRef dst = b.output(n.outputs.at(0), plain_md(s.out));
  if (numel(s.out) == 0) return;
  bool unit_steps = true;
  for (int64_t st : s.step) unit_steps = unit_steps && st == 1;
  if (unit_steps) {
    src.md = plain_md(in).submemory_desc(s.out, s.start);
    b.add_reorder(src, dst);
    return;
  }
  const Dims in_strides = strides_of(in);
  b.add_custom({src, dst}, [s, in_strides](const std::vector<char*>& p) {
    const float* x = reinterpret_cast<const float*>(p[0]);
    float* y = reinterpret_cast<float*>(p[1]);
    const int64_t total = numel(s.out);
    Dims idx(s.out.size(), 0);
    for (int64_t flat = 0; flat < total; ++flat) {
      int64_t off = 0;
      for (std::size_t k = 0; k < idx.size(); ++k) off += (s.start[k] + idx[k] * s.step[k]) * in_strides[k];
      y[flat] = x[off];
      for (int64_t k = static_cast<int64_t>(idx.size()) - 1; k >= 0; --k) {
        if (++idx[k] < s.out[k]) break;
        idx[k] = 0;
      }
    }
  });
}

// The sizes of Split's pieces along `axis` (extent elements): the `split` input (opset 13) or
// attribute, else equal pieces, one per output (opset 18's num_outputs: the last may be smaller).
std::vector<int64_t> split_sizes(PlanBuilder& b, const Node& n, int64_t extent) {
  const int64_t parts = static_cast<int64_t>(n.outputs.size());
  std::vector<int64_t> sizes = ints_param(n, 1, "split", b.host_lookup());
  if (sizes.empty()) {
    if (n.has("num_outputs")) {
      if (n.attr_i("num_outputs", 0) != parts) node_error(n, "num_outputs differs from the number of outputs");
      const int64_t chunk = (extent + parts - 1) / parts;
      for (int64_t j = 0; j < parts; ++j) {
        sizes.push_back(std::max<int64_t>(0, std::min(chunk, extent - j * chunk)));
      }
    } else {
      if (extent % parts != 0) {
        node_error(n, "an axis of " + std::to_string(extent) + " does not split into " + std::to_string(parts) +
                          " equal pieces");
      }
      sizes.assign(static_cast<std::size_t>(parts), extent / parts);
    }
  }
  if (static_cast<int64_t>(sizes.size()) != parts) {
    node_error(n, "split has " + std::to_string(sizes.size()) + " sizes for " + std::to_string(parts) + " outputs");
  }
  int64_t total = 0;
  for (int64_t size : sizes) {
    if (size < 0) node_error(n, "a negative split size");
    total += size;
  }
  if (total != extent) {
    node_error(n, "split sizes add up to " + std::to_string(total) + ", not the axis' " + std::to_string(extent));
  }
  return sizes;
}

// Split: each piece a reorder from a sub-memory of the input (PyTorch writes unbind and chunk so).
void plan_split(PlanBuilder& b, const Node& n) {
  const Dims& in = b.dims(n.input(0));
  const int64_t axis = normalize_axis(n, n.attr_i("axis", 0), static_cast<int64_t>(in.size()));
  const std::vector<int64_t> sizes = split_sizes(b, n, in[axis]);
  MemRef src = b.input_plain(n.input(0));
  int64_t offset = 0;
  for (std::size_t j = 0; j < sizes.size(); ++j) {
    Dims out = in, start(in.size(), 0);
    out[axis] = sizes[j];
    start[axis] = offset;
    offset += sizes[j];
    if (n.outputs[j].empty()) continue;
    MemRef dst = b.output(n.outputs[j], plain_md(out));
    if (numel(out) == 0) continue;
    b.add_reorder(MemRef{src.buffer, src.fixed, plain_md(in).submemory_desc(out, start)}, dst);
  }
}

void plan_concat(PlanBuilder& b, const Node& n) {
  std::vector<Dims> dims;
  std::vector<std::string> parts;
  for (const auto& in : n.inputs) {
    if (in.empty()) continue;
    dims.push_back(b.dims(in));
    parts.push_back(in);
  }
  if (parts.empty()) node_error(n, "has no inputs");
  const int64_t axis = normalize_axis(n, n.attr_i("axis", 0), static_cast<int64_t>(dims[0].size()));
  const Dims out = concat_dims(n, dims, axis);
  std::vector<md_t> mds;
  std::vector<MemRef> refs;
  // Mixed element types (bf16 next to fp32 under Precision::bf16) are joined in fp32.
  bool mixed = false;
  for (std::size_t k = 0; k < parts.size(); ++k) mixed = mixed || b.desc(parts[k]).data_type() != b.desc(parts[0]).data_type();
  for (std::size_t k = 0; k < parts.size(); ++k) {
    if (numel(dims[k]) == 0) continue;
    // Inputs stay in their own layouts; oneDNN picks the output layout and the implementation.
    MemRef r = mixed ? b.input(parts[k], with_type(b.desc(parts[k]), dnnl::memory::data_type::f32))
                     : b.input_as_is(parts[k]);
    refs.push_back(r);
    mds.push_back(r.md);
  }
  if (refs.size() == 1) {
    MemRef dst = b.output(n.outputs.at(0), refs[0].md);
    b.add_reorder(refs[0], dst);
    return;
  }
  dnnl::concat::primitive_desc pd(static_cast<int>(axis), mds, b.engine());
  MemRef dst = b.output(n.outputs.at(0), pd.dst_desc());
  std::unordered_map<int, MemRef> args{{DNNL_ARG_DST, dst}};
  for (std::size_t k = 0; k < refs.size(); ++k) args[DNNL_ARG_MULTIPLE_SRC + static_cast<int>(k)] = refs[k];
  b.add(dnnl::concat(pd), std::move(args));
  if (pd.dst_desc().dims() != out) node_error(n, "concat produced an unexpected shape");
}

void plan_softmax(PlanBuilder& b, const Node& n) {
  const Dims& in = b.dims(n.input(0));
  const int64_t rank = static_cast<int64_t>(in.size());
  const bool legacy = b.graph().opset < 13;  // opset < 13: softmax of the input flattened at `axis`
  const int64_t axis = normalize_axis(n, n.attr_i("axis", legacy ? 1 : -1), rank);
  MemRef src = b.input_plain(n.input(0));
  MemRef dst = b.output(n.outputs.at(0), plain_md(in));
  int softmax_axis = static_cast<int>(axis);
  if (legacy) {
    int64_t outer = 1;
    for (int64_t k = 0; k < axis; ++k) outer *= in[k];
    src.md = dst.md = plain_md({outer, numel(in) / std::max<int64_t>(outer, 1)});
    softmax_axis = 1;
  }
  dnnl::softmax_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, src.md, softmax_axis}, b.engine());
  b.add(dnnl::softmax_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
}

}  // namespace arcforge::runtime::detail
