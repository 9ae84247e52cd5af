#pragma once
// Straightforward double-precision re-computations of ONNX operators: the independent reference
// that the runtime's fused oneDNN kernels are checked against.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace arcforge::test::ref {

using Vec = std::vector<double>;

inline Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// x [N,C,H,W], w [OC, C/group, KH, KW], pads {top, left, bottom, right}.
inline Vec conv2d(const Vec& x, int64_t n, int64_t c, int64_t h, int64_t w, const Vec& wt, int64_t oc, int64_t kh,
                  int64_t kw, const Vec& bias, int64_t stride, int64_t pad_t, int64_t pad_l, int64_t pad_b,
                  int64_t pad_r, int64_t group, int64_t dilation, int64_t& oh, int64_t& ow) {
  oh = (h + pad_t + pad_b - ((kh - 1) * dilation + 1)) / stride + 1;
  ow = (w + pad_l + pad_r - ((kw - 1) * dilation + 1)) / stride + 1;
  const int64_t icg = c / group, ocg = oc / group;
  Vec y(static_cast<std::size_t>(n * oc * oh * ow), 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t o = 0; o < oc; ++o) {
      const int64_t g = o / ocg;
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double acc = bias.empty() ? 0.0 : bias[o];
          for (int64_t ci = 0; ci < icg; ++ci)
            for (int64_t a = 0; a < kh; ++a)
              for (int64_t e = 0; e < kw; ++e) {
                const int64_t yy = i * stride - pad_t + a * dilation, xx = j * stride - pad_l + e * dilation;
                if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                acc += x[((b * c + g * icg + ci) * h + yy) * w + xx] * wt[((o * icg + ci) * kh + a) * kw + e];
              }
          y[((b * oc + o) * oh + i) * ow + j] = acc;
        }
    }
  return y;
}

// ONNX Pad of x (dims `in`) by `begin`/`end` per axis (negative: crop), mode "constant", "edge",
// "reflect" or "wrap"; the padded positions are mapped back into the kept range [lo, hi) one
// reflection at a time. Returns the output, its dims in `out`.
inline Vec pad(const Vec& x, const std::vector<int64_t>& in, const std::vector<int64_t>& begin,
               const std::vector<int64_t>& end, const std::string& mode, double value, std::vector<int64_t>& out) {
  const std::size_t rank = in.size();
  out.resize(rank);
  int64_t total = 1;
  for (std::size_t k = 0; k < rank; ++k) total *= (out[k] = in[k] + begin[k] + end[k]);
  Vec y(static_cast<std::size_t>(total), value);
  for (int64_t flat = 0; flat < total; ++flat) {
    int64_t rest = flat, offset = 0, stride = 1;
    bool constant = false;
    for (std::size_t k = rank; k-- > 0;) {
      const int64_t o = rest % out[k];
      rest /= out[k];
      const int64_t lo = std::max<int64_t>(0, -begin[k]), hi = in[k] - std::max<int64_t>(0, -end[k]);
      int64_t i = o - begin[k];  // the input index this output position sits over
      if (i < lo || i >= hi) {
        if (mode == "constant") {
          constant = true;
        } else if (mode == "edge") {
          i = std::clamp(i, lo, hi - 1);
        } else if (mode == "wrap") {
          i = lo + ((i - lo) % (hi - lo) + (hi - lo)) % (hi - lo);
        } else {  // reflect
          while (hi - lo > 1 && (i < lo || i >= hi)) i = i < lo ? 2 * lo - i : 2 * (hi - 1) - i;
          if (hi - lo == 1) i = lo;
        }
      }
      offset += i * stride;
      stride *= in[k];
    }
    if (!constant) y[static_cast<std::size_t>(flat)] = x[static_cast<std::size_t>(offset)];
  }
  return y;
}

inline double max_abs_diff(const std::vector<float>& got, const Vec& want) {
  double d = got.size() == want.size() ? 0.0 : INFINITY;
  for (std::size_t k = 0; k < std::min(got.size(), want.size()); ++k) d = std::max(d, std::abs(got[k] - want[k]));
  return d;
}

inline double max_abs(const Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

}  // namespace arcforge::test::ref
