// Resize (opset 10+) and Upsample (opset 7-9) on 4-D NCHW tensors: nearest (all nearest_mode
// roundings) and bilinear, with every coordinate_transformation_mode except tf_crop_and_resize.
// A loop over a plain layout: these ops are memory-bound and small next to the convolutions.
#include <cmath>

#include "plan.hpp"

namespace arcforge::runtime::detail {
namespace {

struct AxisMap {
  std::vector<int64_t> lo, hi;  // source indices
  std::vector<float> w_hi;      // weight of `hi` (linear); nearest uses `lo` only
};

float source_coordinate(const std::string& mode, int64_t x, float scale, int64_t in, int64_t out) {
  if (mode == "half_pixel") return (x + 0.5f) / scale - 0.5f;
  if (mode == "pytorch_half_pixel") return out > 1 ? (x + 0.5f) / scale - 0.5f : 0.0f;
  if (mode == "align_corners") return out == 1 ? 0.0f : x * static_cast<float>(in - 1) / static_cast<float>(out - 1);
  if (mode == "asymmetric") return x / scale;
  if (mode == "tf_half_pixel_for_nn") return (x + 0.5f) / scale;
  return NAN;
}

int64_t nearest_index(const std::string& rounding, float v) {
  if (rounding == "floor") return static_cast<int64_t>(std::floor(v));
  if (rounding == "ceil") return static_cast<int64_t>(std::ceil(v));
  if (rounding == "round_prefer_ceil") return static_cast<int64_t>(std::floor(v + 0.5f));
  // round_prefer_floor: halves go down
  return v == std::floor(v) + 0.5f ? static_cast<int64_t>(std::floor(v)) : static_cast<int64_t>(std::round(v));
}

AxisMap axis_map(const Node& n, bool linear, const std::string& coord, const std::string& rounding, int64_t in,
                 int64_t out, float scale) {
  AxisMap m;
  for (int64_t x = 0; x < out; ++x) {
    float src = source_coordinate(coord, x, scale, in, out);
    if (std::isnan(src)) node_error(n, "unsupported coordinate_transformation_mode '" + coord + "'");
    if (linear) {
      src = std::clamp(src, 0.0f, static_cast<float>(in - 1));
      const int64_t lo = static_cast<int64_t>(std::floor(src));
      m.lo.push_back(lo);
      m.hi.push_back(std::min(lo + 1, in - 1));
      m.w_hi.push_back(src - static_cast<float>(lo));
    } else {
      // Clamped first so that a huge coordinate (a tiny scale) never reaches the integer cast.
      src = std::clamp(src, -1.0f, static_cast<float>(in));
      m.lo.push_back(std::clamp<int64_t>(nearest_index(rounding, src), 0, in - 1));
    }
  }
  return m;
}

}  // namespace

void plan_resize(PlanBuilder& b, const Node& n) {
  const Dims& in = b.dims(n.input(0));
  if (in.size() != 4) node_error(n, "only 4-D NCHW inputs are supported, got " + dims_str(in));
  const int64_t opset = b.graph().opset;
  std::string mode = n.attr_s("mode", "nearest");
  if (mode == "bilinear") mode = "linear";  // Upsample-7 spelling
  if (mode != "nearest" && mode != "linear") node_error(n, "mode '" + mode + "' is not supported");
  const bool linear = mode == "linear";
  // Before opset 11 there were no coordinate modes: Upsample/Resize-10 behave as "asymmetric".
  std::string coord = opset >= 11 && n.op == "Resize" ? n.attr_s("coordinate_transformation_mode", "half_pixel") : "asymmetric";
  std::string rounding = opset >= 11 && n.op == "Resize" ? n.attr_s("nearest_mode", "round_prefer_floor") : "floor";
  if (coord == "tf_crop_and_resize") node_error(n, "tf_crop_and_resize is not supported");

  std::vector<float> scales;
  Dims out = in;
  bool from_sizes = false;
  if (n.op == "Upsample" && n.has("scales")) {
    const auto& a = n.attrs.at("scales");
    scales = a.floats;
  } else {
    const std::size_t scales_input = n.op == "Upsample" || opset < 11 ? 1 : 2;
    const std::string sizes_name = n.op == "Resize" && opset >= 11 ? n.input(3) : std::string();
    const HostTensor* s = n.input(scales_input).empty() ? nullptr : b.host(n.input(scales_input));
    if (!n.input(scales_input).empty() && !s) node_error(n, "scales must be known before running");
    const HostTensor* z = sizes_name.empty() ? nullptr : b.host(sizes_name);
    if (!sizes_name.empty() && !z) node_error(n, "sizes must be known before running");
    if (s && s->numel() > 0) {
      for (int64_t k = 0; k < s->numel(); ++k) scales.push_back(static_cast<float>(s->at(k)));
    } else if (z && z->numel() == 4) {
      from_sizes = true;
      for (int k = 0; k < 4; ++k) {
        out[k] = int_at(n, *z, k);
        scales.push_back(static_cast<float>(out[k]) / static_cast<float>(in[k]));
      }
    } else {
      node_error(n, "needs 4 scales or 4 sizes");
    }
  }
  if (scales.size() != 4) node_error(n, "needs 4 scales, got " + std::to_string(scales.size()));
  for (int k = 0; k < 4; ++k) {
    if (!(scales[k] > 0)) node_error(n, "scales must be positive");
    if (!from_sizes) out[k] = to_int64(n, std::floor(static_cast<double>(in[k]) * scales[k]));
    if (out[k] < 1) node_error(n, "output would be empty");
  }
  if (out[0] != in[0] || out[1] != in[1]) node_error(n, "resizing the batch or channel axis is not supported");
  b.check_size(out);
  const AxisMap my = axis_map(n, linear, coord, rounding, in[2], out[2], scales[2]);
  const AxisMap mx = axis_map(n, linear, coord, rounding, in[3], out[3], scales[3]);

  MemRef src = b.input_plain(n.input(0));
  MemRef dst = b.output(n.outputs.at(0), plain_md(out));
  const int64_t planes = in[0] * in[1], ih = in[2], iw = in[3], oh = out[2], ow = out[3];
  b.add_custom({src, dst}, [=](const std::vector<char*>& p) {
    const float* x = reinterpret_cast<const float*>(p[0]);
    float* y = reinterpret_cast<float*>(p[1]);
#pragma omp parallel for
    for (int64_t plane = 0; plane < planes; ++plane) {
      const float* xp = x + plane * ih * iw;
      float* yp = y + plane * oh * ow;
      for (int64_t r = 0; r < oh; ++r) {
        if (!linear) {
          const float* row = xp + my.lo[r] * iw;
          for (int64_t c = 0; c < ow; ++c) yp[r * ow + c] = row[mx.lo[c]];
          continue;
        }
        const float* r0 = xp + my.lo[r] * iw;
        const float* r1 = xp + my.hi[r] * iw;
        const float wy = my.w_hi[r];
        for (int64_t c = 0; c < ow; ++c) {
          const float wx = mx.w_hi[c];
          const float top = r0[mx.lo[c]] * (1 - wx) + r0[mx.hi[c]] * wx;
          const float bottom = r1[mx.lo[c]] * (1 - wx) + r1[mx.hi[c]] * wx;
          yp[r * ow + c] = top * (1 - wy) + bottom * wy;
        }
      }
    }
  });
}

}  // namespace arcforge::runtime::detail
