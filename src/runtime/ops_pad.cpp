// Pad (constant, reflect, edge and wrap; negative pads crop): each output row along the last axis
// is filled from the input through per-axis tables of source indices, in the input's own blocked
// layout where only H and W are padded. A zero Pad in front of a
// convolution does not get here: the optimiser moves it into the convolution's own padding
// (optimize_pad.cpp).
#include <algorithm>
#include <cstring>

#include "plan.hpp"

namespace arcforge::runtime::detail {
namespace {

// For each output index along `axis`, the input index it copies, or -1 where it takes the constant.
std::vector<int64_t> source_indices(const PadSpec& s, std::size_t axis) {
  const int64_t first = std::max<int64_t>(0, -s.begin[axis]);  // the first input index kept
  const int64_t before = std::max<int64_t>(0, s.begin[axis]);
  const int64_t kept = s.out[axis] - before - std::max<int64_t>(0, s.end[axis]);
  std::vector<int64_t> src(static_cast<std::size_t>(s.out[axis]));
  for (int64_t o = 0; o < s.out[axis]; ++o) {
    int64_t j = o - before;  // index into the kept input
    if (j < 0 || j >= kept) {
      switch (s.mode) {
        case PadSpec::Mode::constant:
          src[o] = -1;
          continue;
        case PadSpec::Mode::edge:
          j = std::clamp<int64_t>(j, 0, kept - 1);
          break;
        case PadSpec::Mode::wrap:
          j = (j % kept + kept) % kept;
          break;
        case PadSpec::Mode::reflect: {
          // Mirrored about the edge elements (which are not repeated), as often as the pad needs.
          const int64_t period = 2 * (kept - 1);
          if (period == 0) {
            j = 0;
          } else {
            j = (j % period + period) % period;
            if (j >= kept) j = period - j;
          }
          break;
        }
      }
    }
    src[o] = first + j;
  }
  return src;
}

// How the Pad reads its input: as C-order elements of `vector` floats. A 4-D input padded on H and
// W only stays in the layout its producer wrote (nChw8c, nChw16c: [N, C/v, H, W] of v channels;
// NHWC: [N, 1, H, W] of all C), so that neither side of the Pad needs a reorder; anything else is
// read as plain floats (vector 1).
struct PadLayout {
  dnnl::memory::format_tag format = dnnl::memory::format_tag::undef;  // undef: plain
  PadSpec spec;                                                        // over the vectors
  Dims in;                                                             // the input's, in vectors
  int64_t vector = 1;
};

PadLayout pad_layout(PlanBuilder& b, const Node& n, const PadSpec& s) {
  using tag = dnnl::memory::format_tag;
  const Dims& in = b.dims(n.input(0));
  PadLayout plain{tag::undef, s, in, 1};
  const bool spatial_only = in.size() == 4 && s.begin[0] == 0 && s.end[0] == 0 && s.begin[1] == 0 && s.end[1] == 0;
  if (!spatial_only || b.host(n.input(0))) return plain;
  const md_t current = b.desc(n.input(0));
  const std::pair<tag, int64_t> layouts[] = {{tag::nChw16c, 16}, {tag::nChw8c, 8}, {tag::nhwc, in[1]}};
  for (const auto& [format, vector] : layouts) {
    if (vector < 1 || in[1] % vector != 0 || current != md_t(in, dnnl::memory::data_type::f32, format)) continue;
    PadLayout blocked{format, s, in, vector};
    blocked.in[1] = blocked.spec.out[1] = in[1] / vector;
    return blocked;
  }
  return plain;
}

}  // namespace

void plan_pad(PlanBuilder& b, const Node& n) {
  const Dims& in = b.dims(n.input(0));
  if (in.empty()) node_error(n, "cannot pad a scalar");
  const PadSpec spec = pad_spec(n, in, b.host_lookup());
  b.check_size(spec.out);
  const PadLayout layout = pad_layout(b, n, spec);
  const auto md = [&](const Dims& dims) {
    return layout.format == dnnl::memory::format_tag::undef ? plain_md(dims)
                                                             : md_t(dims, dnnl::memory::data_type::f32, layout.format);
  };
  MemRef src = b.input(n.input(0), md(in));
  MemRef dst = b.output(n.outputs.at(0), md(spec.out));
  if (numel(spec.out) == 0) return;
  const PadSpec& s = layout.spec;
  const std::size_t rank = s.out.size();
  std::vector<std::vector<int64_t>> tables(rank);
  for (std::size_t k = 0; k < rank; ++k) tables[k] = source_indices(s, k);
  const Dims in_strides = strides_of(layout.in);
  const int64_t v = layout.vector;
  const int64_t width = s.out.back();
  const int64_t rows = numel(s.out) / width;
  // The run of each row copied as is: output columns [copy_from, copy_to) from input column `first`.
  const int64_t copy_from = std::max<int64_t>(0, s.begin.back());
  const int64_t copy_to = width - std::max<int64_t>(0, s.end.back());
  const int64_t first = std::max<int64_t>(0, -s.begin.back());
  const Dims out = s.out;
  const float value = s.value;
  b.add_custom(
      {src, dst},
      [=](const std::vector<char*>& p) {
        const float* x = reinterpret_cast<const float*>(p[0]);
        float* y = reinterpret_cast<float*>(p[1]);
        const std::vector<int64_t>& columns = tables.back();
#pragma omp parallel for
        for (int64_t r = 0; r < rows; ++r) {
          float* row = y + r * width * v;
          int64_t offset = 0, rest = r;
          bool constant_row = false;  // an outer axis is at a constant pad
          for (std::size_t k = rank - 1; k-- > 0;) {
            const int64_t i = tables[k][rest % out[k]];
            rest /= out[k];
            if (i < 0) {
              constant_row = true;
              break;
            }
            offset += i * in_strides[k];
          }
          if (constant_row) {
            std::fill(row, row + width * v, value);
            continue;
          }
          const float* x_row = x + offset * v;
          const auto from_table = [&](int64_t o) {
            if (columns[o] < 0) {
              std::fill(row + o * v, row + (o + 1) * v, value);
            } else {
              std::copy(x_row + columns[o] * v, x_row + (columns[o] + 1) * v, row + o * v);
            }
          };
          for (int64_t o = 0; o < copy_from; ++o) from_table(o);
          if (copy_to > copy_from) {
            std::memcpy(row + copy_from * v, x_row + first * v, (copy_to - copy_from) * v * sizeof(float));
          }
          for (int64_t o = std::max(copy_from, copy_to); o < width; ++o) from_table(o);
        }
      },
      layout.vector == 1 ? "pad" : "pad:blocked");
}

}  // namespace arcforge::runtime::detail
