// The InsightFace verification protocol (recognition/arcface_torch/eval/verification.py:
// calculate_roc, calculate_val), re-implemented with counting instead of a pass per threshold.
//
// InsightFace compares squared distances of unit embeddings, d = 2 - 2 cos, against thresholds
// t_i = i * step (np.arange(0, 4, step)) and predicts "same" when d < t_i. We do the same with d
// computed in double from the cosine score, so every decision matches InsightFace's grid; the
// threshold we report is the cosine 1 - t / 2.
#include "arcforge/eval/verification.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>

#include "arcforge/common/error.hpp"
#include "arcforge/eval/kfold.hpp"
#include "arcforge/eval/roc.hpp"

namespace arcforge::eval {
namespace {

// np.arange(0, 4, step): size thresholds, t_i = i * step (numpy fills arange as start + i * delta).
struct DistanceGrid {
  double step;
  int size;
  double at(int i) const { return i * step; }
};
constexpr DistanceGrid kAccuracyGrid{0.01, 400};  // calculate_roc
constexpr DistanceGrid kValGrid{0.001, 4000};     // calculate_val

double squared_distance(float cosine) { return 2.0 - 2.0 * static_cast<double>(cosine); }

// The number of grid thresholds t_i <= d. The pair is predicted "same" at threshold i exactly when
// i >= this index (d < t_i); an index of grid.size means never.
int first_accepting_index(double d, const DistanceGrid& grid) {
  if (d < 0) return 0;
  if (d >= grid.at(grid.size - 1)) return grid.size;
  int i = static_cast<int>(std::floor(d / grid.step)) + 1;  // a guess, fixed up against t_i exactly
  i = std::clamp(i, 0, grid.size);
  while (i > 0 && grid.at(i - 1) > d) --i;
  while (i < grid.size && grid.at(i) <= d) ++i;
  return i;
}

// How many same / different pairs of a set are accepted at every grid threshold.
struct AcceptCounts {
  std::vector<int64_t> pos, neg;  // pos[i]: same pairs with d < t_i; neg[i] likewise
  int64_t total_pos = 0, total_neg = 0;

  explicit AcceptCounts(int size) : pos(size, 0), neg(size, 0) {}
};

AcceptCounts count_accepted(const std::vector<int>& first_index, const std::vector<bool>& same,
                            int64_t begin, int64_t end, int grid_size) {
  // Histogram of first accepting indices, then a running sum: accepted at i = index <= i.
  AcceptCounts c(grid_size);
  for (int64_t p = begin; p < end; ++p) {
    auto& hist = same[p] ? c.pos : c.neg;
    (same[p] ? c.total_pos : c.total_neg) += 1;
    if (first_index[p] < grid_size) hist[first_index[p]] += 1;
  }
  for (int i = 1; i < grid_size; ++i) {
    c.pos[i] += c.pos[i - 1];
    c.neg[i] += c.neg[i - 1];
  }
  return c;
}

AcceptCounts minus(const AcceptCounts& all, const AcceptCounts& part) {
  AcceptCounts c(static_cast<int>(all.pos.size()));
  for (size_t i = 0; i < all.pos.size(); ++i) {
    c.pos[i] = all.pos[i] - part.pos[i];
    c.neg[i] = all.neg[i] - part.neg[i];
  }
  c.total_pos = all.total_pos - part.total_pos;
  c.total_neg = all.total_neg - part.total_neg;
  return c;
}

// Counts for one fold's test pairs and its training part (the rest; everything when folds == 1).
struct FoldCounts {
  AcceptCounts test, train;
};

std::vector<FoldCounts> fold_counts(const std::vector<float>& scores, const std::vector<bool>& same,
                                    const std::vector<FoldRange>& folds, const DistanceGrid& grid) {
  const int64_t n = static_cast<int64_t>(scores.size());
  std::vector<int> first_index(scores.size());
  for (int64_t p = 0; p < n; ++p) first_index[p] = first_accepting_index(squared_distance(scores[p]), grid);
  const AcceptCounts all = count_accepted(first_index, same, 0, n, grid.size);
  std::vector<FoldCounts> out;
  for (const FoldRange& f : folds) {
    AcceptCounts test = count_accepted(first_index, same, f.begin, f.end, grid.size);
    AcceptCounts train = folds.size() == 1 ? test : minus(all, test);
    out.push_back({std::move(test), std::move(train)});
  }
  return out;
}

void check_classes(const std::vector<FoldRange>& folds, const std::vector<FoldCounts>& counts) {
  const int k = static_cast<int>(folds.size());
  for (int f = 0; f < k; ++f) {
    auto fail = [&](const char* part, const char* what) {
      throw InputError("verification: fold " + std::to_string(f + 1) + " of " + std::to_string(k) +
                       " (test pairs " + std::to_string(folds[f].begin) + ".." +
                       std::to_string(folds[f].end - 1) + "): its " + part + " has no " + what +
                       " pairs; folds are contiguous, so interleave same and different pairs "
                       "in the list or use fewer folds");
    };
    const FoldCounts& c = counts[f];
    if (c.train.total_pos == 0) fail("training part", "same");
    if (c.train.total_neg == 0) fail("training part", "different");
    if (c.test.total_pos == 0) fail("test part", "same");
    if (c.test.total_neg == 0) fail("test part", "different");
  }
}

// Population mean and standard deviation (numpy's np.mean, np.std).
std::pair<double, double> mean_std(const std::vector<double>& v) {
  double mean = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  return {mean, std::sqrt(var / static_cast<double>(v.size()))};
}

// The distance threshold where the training FAR curve reaches far_target, as
// scipy.interpolate.interp1d(far_train, thresholds, kind='slinear')(far_target).
// far_train is non-decreasing with long runs of equal values. SciPy up to about 1.8 accepted that
// and drew the line from the LAST threshold of the run at or below the target to the FIRST
// threshold of the next higher run; we do the same. Newer SciPy rejects duplicates ("Expect x to
// not have duplicates", scipy/scipy#21550). Two edge cases where SciPy raises or returns nonsense
// get a defined answer here: a target equal to the top FAR gives the last threshold of that run (old
// SciPy returned 0 when the top value repeats), and a target below far_train[0] (only possible
// with scores above 1) gives t_0. InsightFace's own rule stays: threshold 0 when the target is never
// reached.
double threshold_at_far(const std::vector<double>& far_train, const DistanceGrid& grid, double target) {
  const int n = grid.size;
  if (far_train[n - 1] < target) return 0.0;
  int right = 0;  // the first threshold whose FAR is above the target
  while (right < n && far_train[right] <= target) ++right;
  if (right == 0) return grid.at(0);
  const int left = right - 1;
  if (right == n || far_train[left] == target) return grid.at(left);
  const double fraction = (target - far_train[left]) / (far_train[right] - far_train[left]);
  return grid.at(left) + fraction * (grid.at(right) - grid.at(left));
}

}  // namespace

VerificationReport evaluate_verification(const std::vector<float>& scores,
                                         const std::vector<bool>& same,
                                         const VerificationOptions& options) {
  if (scores.size() != same.size()) {
    throw InputError("verification: " + std::to_string(scores.size()) + " scores but " +
                     std::to_string(same.size()) + " same/different labels");
  }
  for (size_t p = 0; p < scores.size(); ++p) {
    if (!std::isfinite(scores[p])) {
      throw InputError("verification: score of pair " + std::to_string(p) + " is not finite (" +
                       std::to_string(scores[p]) + ")");
    }
  }
  if (!(options.far_target >= 0.0 && options.far_target <= 1.0)) {
    throw ConfigError("verification: far_target must be in [0, 1], got " + std::to_string(options.far_target));
  }
  const int64_t n = static_cast<int64_t>(scores.size());
  const std::vector<FoldRange> folds = kfold_ranges(n, options.folds);
  const int k = options.folds;

  VerificationReport report;
  report.pairs = n;

  // Accuracy (calculate_roc): per fold, the first grid threshold with the most correct training
  // pairs (np.argmax keeps the first), applied to the test fold.
  const std::vector<FoldCounts> acc_counts = fold_counts(scores, same, folds, kAccuracyGrid);
  check_classes(folds, acc_counts);
  double threshold_sum = 0;
  for (int f = 0; f < k; ++f) {
    const AcceptCounts& train = acc_counts[f].train;
    const AcceptCounts& test = acc_counts[f].test;
    int best = 0;
    int64_t best_correct = -1;
    for (int i = 0; i < kAccuracyGrid.size; ++i) {
      const int64_t correct = train.pos[i] + (train.total_neg - train.neg[i]);
      if (correct > best_correct) {
        best_correct = correct;
        best = i;
      }
    }
    const int64_t test_correct = test.pos[best] + (test.total_neg - test.neg[best]);
    report.fold_accuracies.push_back(static_cast<double>(test_correct) / static_cast<double>(folds[f].size()));
    threshold_sum += 1.0 - kAccuracyGrid.at(best) / 2.0;
  }
  std::tie(report.accuracy, report.accuracy_std) = mean_std(report.fold_accuracies);
  report.threshold = threshold_sum / k;

  // VAL@FAR (calculate_val): per fold, the threshold where the training FAR reaches the target,
  // then VAL and FAR of the test fold at that (off-grid) threshold.
  const std::vector<FoldCounts> val_counts = fold_counts(scores, same, folds, kValGrid);
  std::vector<double> vals, fars;
  std::vector<double> far_train(kValGrid.size);
  for (int f = 0; f < k; ++f) {
    const AcceptCounts& train = val_counts[f].train;
    for (int i = 0; i < kValGrid.size; ++i) {
      far_train[i] = static_cast<double>(train.neg[i]) / static_cast<double>(train.total_neg);
    }
    const double threshold = threshold_at_far(far_train, kValGrid, options.far_target);
    int64_t accepted_same = 0, accepted_diff = 0;
    for (int64_t p = folds[f].begin; p < folds[f].end; ++p) {
      if (squared_distance(scores[p]) < threshold) (same[p] ? accepted_same : accepted_diff) += 1;
    }
    vals.push_back(static_cast<double>(accepted_same) / static_cast<double>(val_counts[f].test.total_pos));
    fars.push_back(static_cast<double>(accepted_diff) / static_cast<double>(val_counts[f].test.total_neg));
  }
  std::tie(report.val_at_far, report.val_std) = mean_std(vals);
  report.far = mean_std(fars).first;

  const std::vector<RocPoint> curve = roc_curve(scores, same);
  report.auc = roc_auc(curve);
  report.eer = equal_error_rate(curve);
  return report;
}

}  // namespace arcforge::eval
