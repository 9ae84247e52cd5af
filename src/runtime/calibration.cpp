// Clipping thresholds from |x| histograms: the largest magnitude (minmax), a percentile of the
// magnitudes, or the threshold whose quantized distribution is closest to the original in
// Kullback-Leibler divergence (entropy; the TensorRT method, as ONNX Runtime's quantizer has it).
#include <cmath>
#include <limits>
#include <numeric>

#include "arcforge/common/error.hpp"
#include "arcforge/runtime/quantize.hpp"

namespace arcforge::runtime {

std::string to_string(CalibrationMethod m) {
  switch (m) {
    case CalibrationMethod::minmax: return "minmax";
    case CalibrationMethod::percentile: return "percentile";
    case CalibrationMethod::entropy: return "entropy";
    case CalibrationMethod::mse: return "mse";
  }
  return "?";
}

CalibrationMethod parse_calibration_method(const std::string& text) {
  if (text == "minmax") return CalibrationMethod::minmax;
  if (text == "percentile") return CalibrationMethod::percentile;
  if (text == "entropy") return CalibrationMethod::entropy;
  if (text == "mse") return CalibrationMethod::mse;
  throw ConfigError("unknown calibration method '" + text + "' (expected minmax, percentile, entropy or mse)");
}

namespace {

// KL(p || q) of the first `bins` bins of `counts`, clipped there (the outliers join the last bin),
// against the same bins merged into `target` levels and spread back over their non-empty bins.
double clipped_divergence(const std::vector<double>& counts, const std::vector<double>& suffix, int bins, int target) {
  std::vector<double> p(counts.begin(), counts.begin() + bins);
  p[bins - 1] += suffix[bins];
  std::vector<double> q(bins, 0.0);
  for (int j = 0; j < target; ++j) {
    const int start = static_cast<int>(static_cast<int64_t>(j) * bins / target);
    const int end = j + 1 == target ? bins : static_cast<int>(static_cast<int64_t>(j + 1) * bins / target);
    double sum = 0;
    int nonzero = 0;
    for (int k = start; k < end; ++k) {
      sum += counts[k];
      nonzero += counts[k] != 0;
    }
    if (nonzero == 0) continue;
    for (int k = start; k < end; ++k) q[k] = counts[k] != 0 ? sum / nonzero : 0.0;
  }
  const double p_total = std::accumulate(p.begin(), p.end(), 0.0);
  const double q_total = std::accumulate(q.begin(), q.end(), 0.0);
  if (p_total <= 0 || q_total <= 0) return std::numeric_limits<double>::infinity();
  double kl = 0;
  for (int k = 0; k < bins; ++k) {
    if (p[k] <= 0) continue;
    const double pk = p[k] / p_total;
    const double qk = std::max(q[k] / q_total, 1e-12);  // an empty level that should not be: a big penalty
    kl += pk * std::log(pk / qk);
  }
  return kl;
}

}  // namespace

float calibration_threshold(const MagnitudeHistogram& h, CalibrationMethod method, double percentile, int levels) {
  const int bins = static_cast<int>(h.counts.size());
  const double total = std::accumulate(h.counts.begin(), h.counts.end(), 0.0);
  if (bins == 0 || total <= 0 || h.range <= 0) return h.range;
  const double width = static_cast<double>(h.range) / bins;
  switch (method) {
    case CalibrationMethod::minmax: return h.range;
    case CalibrationMethod::percentile: {
      if (!(percentile > 0 && percentile <= 100)) throw ConfigError("percentile must be in (0, 100]");
      const double wanted = percentile / 100.0 * total * (1 - 1e-12);  // 99.9 % of 10000 is 9990
      double seen = 0;
      for (int k = 0; k < bins; ++k) {
        seen += h.counts[k];
        if (seen >= wanted) return static_cast<float>((k + 1) * width);
      }
      return h.range;
    }
    case CalibrationMethod::mse: {
      // Error of threshold T = i * width: values below T are rounded (uniform error, step^2 / 12),
      // values above are clipped to T. Bin centres stand for their values.
      std::vector<double> s0(bins + 1, 0.0), s1(bins + 1, 0.0), s2(bins + 1, 0.0);
      for (int k = bins - 1; k >= 0; --k) {
        const double x = (k + 0.5) * width;
        s0[k] = s0[k + 1] + h.counts[k];
        s1[k] = s1[k + 1] + h.counts[k] * x;
        s2[k] = s2[k + 1] + h.counts[k] * x * x;
      }
      double best = std::numeric_limits<double>::infinity();
      int best_bins = bins;
      for (int i = 1; i <= bins; ++i) {
        const double t = i * width, step = t / levels;
        const double err = (total - s0[i]) * step * step / 12 + s2[i] - 2 * t * s1[i] + t * t * s0[i];
        if (err < best) {
          best = err;
          best_bins = i;
        }
      }
      return static_cast<float>(best_bins * width);
    }
    case CalibrationMethod::entropy: {
      const int target = levels + 1;  // levels 0..levels
      if (bins <= target) return h.range;
      std::vector<double> suffix(bins + 1, 0.0);
      for (int k = bins - 1; k >= 0; --k) suffix[k] = suffix[k + 1] + h.counts[k];
      double best = std::numeric_limits<double>::infinity();
      int best_bins = bins;
      for (int i = target; i <= bins; ++i) {
        const double kl = clipped_divergence(h.counts, suffix, i, target);
        if (kl < best) {
          best = kl;
          best_bins = i;
        }
      }
      return static_cast<float>(best_bins * width);
    }
  }
  return h.range;
}

}  // namespace arcforge::runtime
