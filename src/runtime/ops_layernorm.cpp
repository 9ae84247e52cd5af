// LayerNormalization (opset 17): oneDNN layer normalization over the trailing axes from `axis` on,
// seen as a plain [outer, inner] matrix, with the scale and bias as constants. It always computes
// in fp32 (the statistics of a transformer's residual stream need the range), also under bf16.
#include "plan.hpp"

namespace arcforge::runtime::detail {

void plan_layernorm(PlanBuilder& b, const Node& n) {
  const Dims& x = b.dims(n.input(0));
  const int64_t rank = static_cast<int64_t>(x.size());
  if (rank < 1) node_error(n, "input must have at least one axis");
  const int64_t axis = normalize_axis(n, n.attr_i("axis", -1), rank);
  for (std::size_t k = 1; k < n.outputs.size(); ++k) {
    if (!n.outputs[k].empty()) node_error(n, "the Mean and InvStdDev outputs are not supported");
  }
  if (n.attr_i("stash_type", 1) != 1) node_error(n, "only stash_type=1 (fp32 statistics) is supported");
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < rank; ++k) (k < axis ? outer : inner) *= x[k];

  // Scale and bias broadcast to the normalised axes; oneDNN wants one value per element there.
  auto per_element = [&](std::size_t input, float fallback) {
    HostTensor out = HostTensor::from_f32({inner}, std::vector<float>(static_cast<std::size_t>(inner), fallback));
    if (n.input(input).empty()) return out;
    const HostTensor& t = b.need_constant(n, input);
    if (t.numel() != inner && t.numel() != 1) {
      node_error(n, "input " + std::to_string(input) + " has " + std::to_string(t.numel()) + " values for " +
                        std::to_string(inner) + " normalised elements");
    }
    for (int64_t k = 0; k < inner; ++k) out.f[k] = t.f[t.numel() == 1 ? 0 : k];
    return out;
  };
  if (n.input(1).empty()) node_error(n, "the Scale input is required");
  const HostTensor scale = per_element(1, 1.0f), shift = per_element(2, 0.0f);

  const md_t matrix = plain_md({outer, inner});
  const md_t vec = plain_md({inner});
  MemRef src = b.input_plain(n.input(0));
  src.md = matrix;
  MemRef dst = b.output(n.outputs.at(0), plain_md(x));
  dst.md = matrix;
  if (outer * inner == 0) return;
  const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  dnnl::layer_normalization_forward::primitive_desc pd(
      {dnnl::prop_kind::forward_inference, matrix, n.attr_f("epsilon", 1e-5f), flags}, b.engine());
  b.add(dnnl::layer_normalization_forward(pd), {{DNNL_ARG_SRC, src},
                                                {DNNL_ARG_SCALE, b.fixed(scale, vec)},
                                                {DNNL_ARG_SHIFT, b.fixed(shift, vec)},
                                                {DNNL_ARG_DST, dst}});
}

}  // namespace arcforge::runtime::detail
