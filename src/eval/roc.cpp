#include "arcforge/eval/roc.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "arcforge/common/error.hpp"

namespace arcforge::eval {

std::vector<RocPoint> roc_curve(const std::vector<float>& scores, const std::vector<bool>& same) {
  if (scores.size() != same.size()) {
    throw InputError("roc: " + std::to_string(scores.size()) + " scores but " +
                     std::to_string(same.size()) + " same/different labels");
  }
  int64_t positives = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i])) {
      throw InputError("roc: score of pair " + std::to_string(i) + " is not finite (" +
                       std::to_string(scores[i]) + ")");
    }
    positives += same[i] ? 1 : 0;
  }
  const int64_t negatives = static_cast<int64_t>(scores.size()) - positives;
  if (positives == 0 || negatives == 0) {
    throw InputError("roc: needs both same and different pairs, got " + std::to_string(positives) +
                     " same and " + std::to_string(negatives) + " different");
  }

  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });

  std::vector<RocPoint> curve;
  curve.push_back({0.0, 0.0, std::numeric_limits<double>::infinity()});
  int64_t tp = 0, fp = 0;
  for (size_t i = 0; i < order.size();) {
    const float score = scores[order[i]];
    // A whole group of equal scores is accepted at once: one point per distinct score.
    for (; i < order.size() && scores[order[i]] == score; ++i) {
      if (same[order[i]]) ++tp; else ++fp;
    }
    curve.push_back({static_cast<double>(fp) / negatives, static_cast<double>(tp) / positives, score});
  }
  return curve;
}

double roc_auc(const std::vector<RocPoint>& curve) {
  double area = 0;
  for (size_t i = 1; i < curve.size(); ++i) {
    area += (curve[i].fpr - curve[i - 1].fpr) * (curve[i].tpr + curve[i - 1].tpr) * 0.5;
  }
  return area;
}

double equal_error_rate(const std::vector<RocPoint>& curve) {
  // gap = FPR - FNR rises from -1 at (0, 0) to +1 at (1, 1), strictly at every point, because
  // each point accepts at least one more pair. Find the segment where it reaches zero.
  auto gap = [](const RocPoint& p) { return p.fpr - (1.0 - p.tpr); };
  for (size_t i = 1; i < curve.size(); ++i) {
    const double after = gap(curve[i]);
    if (after < 0) continue;
    const double before = gap(curve[i - 1]);
    const double alpha = -before / (after - before);
    return curve[i - 1].fpr + alpha * (curve[i].fpr - curve[i - 1].fpr);
  }
  throw InputError("roc: curve does not reach (1, 1); it was not built by roc_curve");
}

}  // namespace arcforge::eval
