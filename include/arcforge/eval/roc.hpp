#pragma once
// The ROC curve of scored pairs over all pairs (no folds), with its AUC and equal error rate.
// Scores are similarities: a pair is accepted as "same" when its score is >= the threshold.
#include <cstdint>
#include <vector>

namespace arcforge::eval {

struct RocPoint {
  double fpr = 0;        // accepted different pairs / all different pairs
  double tpr = 0;        // accepted same pairs / all same pairs
  double threshold = 0;  // the score at this point; the first point (0, 0) has +infinity
};

// One point per distinct score, highest first, after a leading (0, 0). Pairs with equal scores
// enter together, so ties give one diagonal step. Throws InputError when sizes differ, a score is
// not finite, or there is no same pair or no different pair.
std::vector<RocPoint> roc_curve(const std::vector<float>& scores, const std::vector<bool>& same);

// Trapezoid area under the curve: the Mann-Whitney probability that a same pair outscores a
// different pair, ties counting one half.
double roc_auc(const std::vector<RocPoint>& curve);

// The rate where FPR = 1 - TPR, interpolated linearly along the curve segment that crosses it.
double equal_error_rate(const std::vector<RocPoint>& curve);

}  // namespace arcforge::eval
