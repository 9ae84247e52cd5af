// Gather of a run-time tensor with indices known at plan time (PyTorch's q, k, v = qkv[0], qkv[1],
// qkv[2]). Gathers of shape arithmetic run on the host (host_eval.cpp); run-time indices are not
// supported. Seen as [outer, extent, inner], each index copies one [outer, 1, inner] slab: a
// reorder per index for a few indices (oneDNN copies with all threads), one loop for many.
#include <cstring>

#include "plan.hpp"

namespace arcforge::runtime::detail {

void plan_gather(PlanBuilder& b, const Node& n) {
  const Dims& in = b.dims(n.input(0));
  const int64_t rank = static_cast<int64_t>(in.size());
  if (rank == 0) node_error(n, "cannot gather from a scalar");
  const HostTensor* indices = n.input(1).empty() ? nullptr : b.host(n.input(1));
  if (!indices) node_error(n, "indices must be a constant or shape arithmetic (run-time indices are not supported)");
  if (indices->dtype != DType::i64) node_error(n, "indices must be integers");
  const int64_t axis = normalize_axis(n, n.attr_i("axis", 0), rank);
  const int64_t extent = in[axis];
  std::vector<int64_t> pos;
  for (int64_t v : indices->i) {
    const int64_t p = v < 0 ? v + extent : v;
    if (p < 0 || p >= extent) node_error(n, "index " + std::to_string(v) + " is out of range for an axis of " + std::to_string(extent));
    pos.push_back(p);
  }
  Dims out(in.begin(), in.begin() + axis);
  out.insert(out.end(), indices->dims.begin(), indices->dims.end());
  out.insert(out.end(), in.begin() + axis + 1, in.end());

  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < rank; ++k) {
    if (k < axis) outer *= in[k];
    if (k > axis) inner *= in[k];
  }
  const int64_t count = static_cast<int64_t>(pos.size());
  MemRef src = b.input_plain(n.input(0));
  MemRef dst = b.output(n.outputs.at(0), plain_md(out));
  if (numel(out) == 0) return;
  constexpr int64_t max_reorders = 4;
  if (count <= max_reorders) {
    const md_t from = plain_md({outer, extent, inner}), to = plain_md({outer, count, inner});
    for (int64_t k = 0; k < count; ++k) {
      b.add_reorder(MemRef{src.buffer, src.fixed, from.submemory_desc({outer, 1, inner}, {0, pos[k], 0})},
                    MemRef{dst.buffer, dst.fixed, to.submemory_desc({outer, 1, inner}, {0, k, 0})});
    }
    return;
  }
  b.add_custom({src, dst}, [pos, outer, extent, inner](const std::vector<char*>& p) {
    const float* x = reinterpret_cast<const float*>(p[0]);
    float* y = reinterpret_cast<float*>(p[1]);
    const std::size_t bytes = static_cast<std::size_t>(inner) * sizeof(float);
    for (int64_t o = 0; o < outer; ++o) {
      for (std::size_t k = 0; k < pos.size(); ++k) {
        std::memcpy(y + (o * static_cast<int64_t>(pos.size()) + static_cast<int64_t>(k)) * inner,
                    x + (o * extent + pos[k]) * inner, bytes);
      }
    }
  });
}

}  // namespace arcforge::runtime::detail
