// FusedAttention (optimize_attention.cpp): softmax(q k^T * scale) v for every image and head in one
// step, on the CPU kernel the trainer's ViT attention also runs (arcforge/cpu/attention_tiles.hpp),
// reading q, k and v where the qkv projection wrote them and writing the heads side by side: the
// Gathers and Transposes around the two products, the scale and the softmax cost no pass of their
// own. Computes in float (a bf16 input is converted first). Shapes the kernel does not take run the
// nodes the fusion replaced, as written.
#include <omp.h>

#include "arcforge/cpu/attention_tiles.hpp"
#include "plan.hpp"

namespace arcforge::runtime::detail {
namespace {

using cpu::attention::HeadsView;
using cpu::attention::Shape;

#define ARCFORGE_FUSED_ATTENTION_RANGES(SUFFIX, ATTRIBUTES, N)                                 \
  ATTRIBUTES void attention_pairs_##SUFFIX(const Shape& s, const HeadsView<float>& x, float* out, \
                                           int64_t begin, int64_t end) {                          \
    cpu::attention::forward_pairs<N>(s, x, out, nullptr, begin, end);                             \
  }
ARCFORGE_FOR_EACH_ISA(ARCFORGE_FUSED_ATTENTION_RANGES)
#undef ARCFORGE_FUSED_ATTENTION_RANGES

void attention_pairs(const Shape& s, const HeadsView<float>& x, float* out, int64_t begin, int64_t end) {
  ARCFORGE_ISA_DISPATCH(attention_pairs, s, x, out, begin, end)
}

// The kernel's view of the node's operands at these shapes; false when they do not fit it.
struct Geometry {
  Shape s;
  int64_t positions[3] = {0, 0, 0};  // where q, k and v start within a token's row, in elements
  int64_t row = 0;                   // a token's row: E * heads * hd (packed) or heads * hd
};

bool fits_kernel(PlanBuilder& b, const Node& n, bool packed, Geometry& geo) {
  const std::size_t operands = packed ? 1 : 3;
  if (n.inputs.size() < operands + 1 || n.outputs.size() != 1) return false;
  const Dims& in = b.dims(n.input(0));
  Shape& s = geo.s;
  if (packed) {
    const std::vector<int64_t> indices = n.attr_ints("indices");
    if (in.size() != 5 || indices.size() != 3) return false;
    const int64_t extent = in[2];
    const int64_t pieces = n.attr_i("split_outputs", 0);  // a Split's pieces are of one only then
    if (pieces > 0 && pieces != extent) return false;
    for (int j = 0; j < 3; ++j) {
      const int64_t index = indices[j] < 0 ? indices[j] + extent : indices[j];
      if (index < 0 || index >= extent) return false;  // the Gather, run as written, says so
      geo.positions[j] = index * in[3] * in[4];
    }
    s.batch = in[0], s.tokens = in[1], s.heads = in[3], s.head_dim = in[4];
    geo.row = extent * in[3] * in[4];
  } else {
    if (in.size() != 4 || b.dims(n.input(1)) != in || b.dims(n.input(2)) != in) return false;
    s.batch = in[0], s.tokens = in[1], s.heads = in[2], s.head_dim = in[3];
    geo.row = in[2] * in[3];
  }
  // The scale after the product (dividing it when `divide`), times the factors before it.
  double scale = 1.0;
  for (std::size_t j = operands; j < n.inputs.size(); ++j) {
    if (n.inputs[j].empty()) continue;
    const HostTensor* t = b.host(n.inputs[j]);
    if (!t || t->numel() != 1) return false;
    scale *= j == operands && n.attr_i("divide", 0) != 0 ? 1.0 / t->at(0) : t->at(0);
  }
  s.scale = static_cast<float>(scale);
  return true;
}

}  // namespace

void plan_fused_attention(PlanBuilder& b, const Node& n) {
  const bool packed = n.attr_s("layout", "") == "packed";
  Geometry geo;
  if (!fits_kernel(b, n, packed, geo)) {
    if (n.unfused.empty()) node_error(n, "malformed fused attention");
    b.plan_unfused(n.unfused);
    return;
  }
  const std::size_t operands = packed ? 1 : 3;
  const Shape s = geo.s;
  const Dims out_dims{s.batch, s.tokens, s.heads, s.head_dim};
  b.check_size(out_dims);
  b.check_size({s.tokens, s.tokens});  // a pair's scores

  std::vector<MemRef> refs;
  for (std::size_t j = 0; j < operands; ++j) refs.push_back(b.input_plain(n.input(j)));
  refs.push_back(b.output(n.outputs[0], plain_md(out_dims)));
  if (numel(out_dims) == 0) return;
  b.add_custom(std::move(refs), [s, packed, geo](const std::vector<char*>& p) {
    const float* q = reinterpret_cast<const float*>(p[0]);
    const float* k = reinterpret_cast<const float*>(p[packed ? 0 : 1]);
    const float* v = reinterpret_cast<const float*>(p[packed ? 0 : 2]);
    const HeadsView<float> x{q + geo.positions[0], k + geo.positions[1], v + geo.positions[2], s.tokens * geo.row,
                             geo.row};
    float* out = reinterpret_cast<float*>(p.back());
    const int64_t pairs = s.batch * s.heads;
    // One contiguous range of (image, head) pairs per thread: each allocates its tiles once.
#pragma omp parallel
    {
      const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t begin = pairs * t / threads, end = pairs * (t + 1) / threads;
      if (begin < end) attention_pairs(s, x, out, begin, end);
    }
  });
}

}  // namespace arcforge::runtime::detail
