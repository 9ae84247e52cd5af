// The verification protocol against hand-worked cases and against a brute-force double-precision
// re-implementation of InsightFace's calculate_roc / calculate_val written here with plain loops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/eval/kfold.hpp"
#include "arcforge/eval/pairs.hpp"
#include "arcforge/eval/roc.hpp"
#include "arcforge/eval/verification.hpp"

namespace ae = arcforge::eval;

namespace {

// ---------------------------------------------------------------- brute-force reference ----------

struct Reference {
  std::vector<double> fold_accuracies;
  double accuracy = 0, accuracy_std = 0, threshold = 0, val = 0, val_std = 0, far = 0;
};

// sklearn KFold(n_splits=k, shuffle=False): fold_sizes = n // k, the first n % k get one more.
std::vector<std::pair<int64_t, int64_t>> sklearn_folds(int64_t n, int k) {
  std::vector<int64_t> sizes(k, n / k);
  for (int64_t f = 0; f < n % k; ++f) sizes[f] += 1;
  std::vector<std::pair<int64_t, int64_t>> out;
  int64_t start = 0;
  for (int f = 0; f < k; ++f) {
    out.push_back({start, start + sizes[f]});
    start += sizes[f];
  }
  return out;
}

double dist(float cosine) { return 2.0 - 2.0 * static_cast<double>(cosine); }

// scipy (<= 1.8) interp1d(x, y, kind='slinear')(q): a degree-1 B-spline with knots
// [x0, x0, x1, ..., x_{n-1}, x_{n-1}] and coefficients y, evaluated the way scipy's BSpline does
// (find the knot interval t[l] <= q < t[l+1], zero-length intervals give 0).
double scipy_slinear(const std::vector<double>& x, const std::vector<double>& y, double q) {
  const int n = static_cast<int>(x.size());
  std::vector<double> t;
  t.push_back(x[0]);
  for (double v : x) t.push_back(v);
  t.push_back(x[n - 1]);
  EXPECT_GE(q, t[1]) << "scipy would raise: below the interpolation range";
  int l = 2;
  while (l != n && q >= t[l]) ++l;
  l -= 1;
  const double h = t[l + 1] - t[l];
  if (h == 0) return 0.0;
  return y[l - 1] * (t[l + 1] - q) / h + y[l] * (q - t[l]) / h;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / v.size();
}
double pop_std(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / v.size());
}

Reference reference(const std::vector<float>& scores, const std::vector<bool>& same, int k, double far_target) {
  const int64_t n = static_cast<int64_t>(scores.size());
  Reference r;
  std::vector<double> thresholds, vals, fars;
  for (const auto& [begin, end] : sklearn_folds(n, k)) {
    auto in_train = [&](int64_t p) { return k == 1 || p < begin || p >= end; };
    // calculate_roc: best training accuracy over arange(0, 4, 0.01); first best wins.
    int best = 0;
    double best_acc = -1;
    for (int i = 0; i < 400; ++i) {
      const double t = i * 0.01;
      double correct = 0, count = 0;
      for (int64_t p = 0; p < n; ++p) {
        if (!in_train(p)) continue;
        count += 1;
        if ((dist(scores[p]) < t) == same[p]) correct += 1;
      }
      if (correct / count > best_acc) {
        best_acc = correct / count;
        best = i;
      }
    }
    double correct = 0;
    for (int64_t p = begin; p < end; ++p) {
      if ((dist(scores[p]) < best * 0.01) == same[p]) correct += 1;
    }
    r.fold_accuracies.push_back(correct / (end - begin));
    thresholds.push_back(1.0 - best * 0.01 / 2.0);

    // calculate_val: FAR on the training part for arange(0, 4, 0.001), interpolated to the target.
    std::vector<double> train_diff_dist;
    for (int64_t p = 0; p < n; ++p) {
      if (in_train(p) && !same[p]) train_diff_dist.push_back(dist(scores[p]));
    }
    std::vector<double> grid, far_train;
    for (int i = 0; i < 4000; ++i) {
      const double t = i * 0.001;
      double fa = 0;
      for (double d : train_diff_dist) fa += d < t;
      grid.push_back(t);
      far_train.push_back(fa / train_diff_dist.size());
    }
    const double max_far = *std::max_element(far_train.begin(), far_train.end());
    const double threshold = max_far >= far_target ? scipy_slinear(far_train, grid, far_target) : 0.0;
    double ta = 0, fa = 0, n_same = 0, n_diff = 0;
    for (int64_t p = begin; p < end; ++p) {
      const bool accept = dist(scores[p]) < threshold;
      if (same[p]) { n_same += 1; ta += accept; } else { n_diff += 1; fa += accept; }
    }
    vals.push_back(ta / n_same);
    fars.push_back(fa / n_diff);
  }
  r.accuracy = mean_of(r.fold_accuracies);
  r.accuracy_std = pop_std(r.fold_accuracies);
  r.threshold = mean_of(thresholds);
  r.val = mean_of(vals);
  r.val_std = pop_std(vals);
  r.far = mean_of(fars);
  return r;
}

// O(n^2) Mann-Whitney: P(score of a same pair > score of a different pair), ties count 1/2.
double mann_whitney_auc(const std::vector<float>& scores, const std::vector<bool>& same) {
  double wins = 0, total = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!same[i]) continue;
    for (size_t j = 0; j < scores.size(); ++j) {
      if (same[j]) continue;
      total += 1;
      wins += scores[i] > scores[j] ? 1.0 : scores[i] == scores[j] ? 0.5 : 0.0;
    }
  }
  return wins / total;
}

// Brackets the EER with a fine scan of cosine thresholds c (accept when score >= c): between the
// last c where FPR >= FNR and the next, the ROC chain crosses FPR = FNR, so the EER lies within
// [max(FPR_hi, FNR_lo), min(FPR_lo, FNR_hi)].
std::pair<double, double> eer_bracket(const std::vector<float>& scores, const std::vector<bool>& same) {
  auto rates = [&](double c) {
    double fp = 0, fn = 0, pos = 0, neg = 0;
    for (size_t i = 0; i < scores.size(); ++i) {
      if (same[i]) { pos += 1; fn += scores[i] < c; } else { neg += 1; fp += scores[i] >= c; }
    }
    return std::pair{fp / neg, fn / pos};
  };
  const double step = 1e-3;
  auto [fpr_lo, fnr_lo] = rates(-1.5);
  for (double c = -1.5 + step; c < 1.5; c += step) {
    auto [fpr, fnr] = rates(c);
    if (fpr < fnr) return {std::max(fpr, fnr_lo), std::min(fpr_lo, fnr)};
    fpr_lo = fpr;
    fnr_lo = fnr;
  }
  ADD_FAILURE() << "no EER crossing found";
  return {0, 0};
}

// Two Gaussians on cosine, labels drawn at random (so folds mix both kinds), clipped to [-1, 1].
// quantum > 0 rounds scores to multiples of it to create many ties.
void random_pairs(int64_t n, uint64_t seed, double quantum, std::vector<float>& scores, std::vector<bool>& same) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution coin(0.5);
  std::normal_distribution<double> pos(0.45, 0.15), neg(0.08, 0.12);
  scores.clear();
  same.clear();
  for (int64_t i = 0; i < n; ++i) {
    const bool s = coin(rng);
    double v = std::clamp(s ? pos(rng) : neg(rng), -1.0, 1.0);
    if (quantum > 0) v = std::round(v / quantum) * quantum;
    scores.push_back(static_cast<float>(v));
    same.push_back(s);
  }
}

void expect_matches_reference(const std::vector<float>& scores, const std::vector<bool>& same, int folds,
                              double far_target, const std::string& what, bool tight_eer = true) {
  SCOPED_TRACE(what);
  const ae::VerificationReport got = ae::evaluate_verification(scores, same, {folds, far_target});
  const Reference want = reference(scores, same, folds, far_target);
  ASSERT_EQ(got.fold_accuracies.size(), want.fold_accuracies.size());
  for (size_t f = 0; f < want.fold_accuracies.size(); ++f) {
    EXPECT_NEAR(got.fold_accuracies[f], want.fold_accuracies[f], 1e-12) << "fold " << f;
  }
  EXPECT_NEAR(got.accuracy, want.accuracy, 1e-9);
  EXPECT_NEAR(got.accuracy_std, want.accuracy_std, 1e-9);
  EXPECT_NEAR(got.threshold, want.threshold, 1e-9);
  EXPECT_NEAR(got.val_at_far, want.val, 1e-9);
  EXPECT_NEAR(got.val_std, want.val_std, 1e-9);
  EXPECT_NEAR(got.far, want.far, 1e-9);
  EXPECT_EQ(got.pairs, static_cast<int64_t>(scores.size()));
  EXPECT_NEAR(got.auc, mann_whitney_auc(scores, same), 1e-12);
  const auto [lo, hi] = eer_bracket(scores, same);
  EXPECT_LE(lo, hi);
  if (tight_eer) {
    EXPECT_LT(hi - lo, 0.03) << "bracket too loose to test anything";
  }
  EXPECT_GE(got.eer, lo - 1e-12);
  EXPECT_LE(got.eer, hi + 1e-12);
}

template <typename E, typename F>
void expect_throw_containing(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected an exception mentioning '" << fragment << "'";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace

// ---------------------------------------------------------------- fold layout ---------------------

TEST(KFold, MatchesSklearnLayoutWhenNotDivisible) {
  const auto folds = ae::kfold_ranges(605, 10);
  ASSERT_EQ(folds.size(), 10u);
  int64_t expected_begin = 0;
  for (int f = 0; f < 10; ++f) {
    EXPECT_EQ(folds[f].begin, expected_begin);
    EXPECT_EQ(folds[f].size(), f < 5 ? 61 : 60) << "fold " << f;  // the first 605 % 10 folds are bigger
    expected_begin = folds[f].end;
  }
  EXPECT_EQ(expected_begin, 605);
  const auto ref = sklearn_folds(605, 10);
  for (int f = 0; f < 10; ++f) {
    EXPECT_EQ(folds[f].begin, ref[f].first);
    EXPECT_EQ(folds[f].end, ref[f].second);
  }
}

TEST(KFold, EdgeCountsAndErrors) {
  const auto ten = ae::kfold_ranges(10, 10);
  for (int f = 0; f < 10; ++f) {
    EXPECT_EQ(ten[f].begin, f);
    EXPECT_EQ(ten[f].end, f + 1);
  }
  const auto one = ae::kfold_ranges(7, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].begin, 0);
  EXPECT_EQ(one[0].end, 7);
  EXPECT_THROW(ae::kfold_ranges(9, 10), arcforge::InputError);
  EXPECT_THROW(ae::kfold_ranges(9, 0), arcforge::ConfigError);
}

// ---------------------------------------------------------------- hand-checked cases --------------

TEST(Verification, SmallCaseWorkedByHand) {
  // Dyadic scores so d = 2 - 2cos is exact and off the 0.01 grid:
  //   pair 0 same 0.8125 (d 0.375), pair 1 diff 0.3125 (d 1.375),
  //   pair 2 same 0.6875 (d 0.625), pair 3 diff 0.4375 (d 1.125).   2 folds: {0,1} and {2,3}.
  // Fold 1 trains on pairs 2,3: both right for 0.625 < t <= 1.125, first such grid t = 0.63
  //   (cos 0.685); on its test pairs d 0.375 < 0.63 accepted, 1.375 rejected: accuracy 1.
  // Fold 2 trains on pairs 0,1: first t above 0.375 is 0.38 (cos 0.81); test pair 2 (d 0.625) is
  //   rejected, pair 3 rejected: accuracy 0.5.
  // Mean 0.75, population std 0.25, mean cosine threshold (0.685 + 0.81) / 2 = 0.7475.
  // VAL@FAR 0.5: fold 1's training FAR steps 0 -> 1 at d 1.125, so its threshold is ~1.1255: test
  //   same pair accepted (VAL 1), diff pair d 1.375 rejected (FAR 0). Fold 2 steps at 1.375: threshold
  //   ~1.3755 accepts pair 2 (VAL 1) and pair 3 (d 1.125, FAR 1). VAL 1, std 0, FAR 0.5.
  // All same pairs outscore all different ones: AUC 1, EER 0.
  const std::vector<float> scores{0.8125f, 0.3125f, 0.6875f, 0.4375f};
  const std::vector<bool> same{true, false, true, false};
  const auto r = ae::evaluate_verification(scores, same, {2, 0.5});
  ASSERT_EQ(r.fold_accuracies.size(), 2u);
  EXPECT_DOUBLE_EQ(r.fold_accuracies[0], 1.0);
  EXPECT_DOUBLE_EQ(r.fold_accuracies[1], 0.5);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.75);
  EXPECT_DOUBLE_EQ(r.accuracy_std, 0.25);
  EXPECT_NEAR(r.threshold, 0.7475, 1e-12);
  EXPECT_DOUBLE_EQ(r.val_at_far, 1.0);
  EXPECT_DOUBLE_EQ(r.val_std, 0.0);
  EXPECT_DOUBLE_EQ(r.far, 0.5);
  EXPECT_DOUBLE_EQ(r.auc, 1.0);
  EXPECT_DOUBLE_EQ(r.eer, 0.0);
  EXPECT_EQ(r.pairs, 4);
  expect_matches_reference(scores, same, 2, 0.5, "hand case vs reference");
}

TEST(Verification, DistanceOnAThresholdIsNotAccepted) {
  // "same" means d < t strictly, as np.less in InsightFace. Scores 0.875, 0.75, 0.5 give d = 0.25,
  // 0.5, 1.0 exactly, and 25 * 0.01, 1000 * 0.001 are exactly 0.25 and 1.0 in double.
  // Each of the 2 folds holds: same 0.875 (d .25), diff 0.75 (d .5), diff 0.5 (d 1), same 0.5 (d 1).
  // Training accuracy: 2/4 for t <= .25, 3/4 for .25 < t <= .5, 2/4 above: the first best grid t is
  //   0.26 (0.25 itself does not accept d = 0.25): cosine threshold 0.87; test accuracy 3/4.
  // VAL@FAR 0.5: training FAR is 0 up to t = .5, 0.5 for .5 < t <= 1, then 1. The target equals the
  //   middle run, so the threshold is its last grid point, exactly t = 1.0; d = 1.0 is then rejected:
  //   VAL 1/2 and FAR 1/2 on each test fold.
  // AUC: 0.875 beats both diff scores, 0.5 ties one and loses one: (2*4 + 2*0.5*2) / 16 = 0.625.
  // ROC (0,0) (0,.5) (.5,.5) (1,1): FPR = FNR = 0.5 at (.5,.5), EER 0.5.
  const std::vector<float> fold{0.875f, 0.75f, 0.5f, 0.5f};
  const std::vector<bool> fold_same{true, false, false, true};
  std::vector<float> scores = fold;
  scores.insert(scores.end(), fold.begin(), fold.end());
  std::vector<bool> same = fold_same;
  same.insert(same.end(), fold_same.begin(), fold_same.end());
  const auto r = ae::evaluate_verification(scores, same, {2, 0.5});
  EXPECT_NEAR(r.threshold, 0.87, 1e-12);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.75);
  EXPECT_DOUBLE_EQ(r.val_at_far, 0.5);
  EXPECT_DOUBLE_EQ(r.far, 0.5);
  EXPECT_DOUBLE_EQ(r.auc, 0.625);
  EXPECT_DOUBLE_EQ(r.eer, 0.5);
  expect_matches_reference(scores, same, 2, 0.5, "threshold boundaries vs reference", false);
}

TEST(Verification, PerfectlySeparableScores) {
  // Same pairs all at cos 0.9 (d 0.2), different pairs spread over [-0.3, 0.3] (d >= 1.4).
  std::vector<float> scores;
  std::vector<bool> same;
  for (int i = 0; i < 200; ++i) {
    const bool s = i % 2 == 0;
    same.push_back(s);
    scores.push_back(s ? 0.9f : static_cast<float>(-0.3 + 0.6 * (i % 37) / 36.0));
  }
  const auto r = ae::evaluate_verification(scores, same);
  EXPECT_DOUBLE_EQ(r.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(r.accuracy_std, 0.0);
  EXPECT_DOUBLE_EQ(r.auc, 1.0);
  EXPECT_DOUBLE_EQ(r.eer, 0.0);
  EXPECT_DOUBLE_EQ(r.val_at_far, 1.0);
  // The chosen cosine threshold sits just below 0.9: the first 0.01 grid step above d 0.2.
  EXPECT_NEAR(r.threshold, 1.0 - 0.21 / 2, 1e-12);
  expect_matches_reference(scores, same, 10, 1e-3, "separable vs reference");
}

TEST(Verification, AllScoresEqual) {
  // Every threshold accepts all pairs or none; with 1 same + 1 different pair per fold the training
  // accuracy ties at 0.5 everywhere, the first threshold (t = 0, cos 1) wins and rejects everything.
  std::vector<float> scores(20, 0.3f);
  std::vector<bool> same;
  for (int i = 0; i < 20; ++i) same.push_back(i % 2 == 0);
  const auto r = ae::evaluate_verification(scores, same);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(r.threshold, 1.0);
  EXPECT_DOUBLE_EQ(r.auc, 0.5);
  EXPECT_DOUBLE_EQ(r.eer, 0.5);
  // One ROC step from (0,0) to (1,1): the EER bracket is all of [0, 1], checked exactly above.
  expect_matches_reference(scores, same, 10, 1e-3, "all equal vs reference", false);
}

TEST(Roc, TiesMakeADiagonalStep) {
  // same {0.9, 0.5}, different {0.5, 0.1}. Points: (0,0) (0,.5) then the 0.5 tie adds one of each
  // -> (.5,1), then (1,1). AUC = .5*.75 + .5*1 = 0.875 = Mann-Whitney (2 + 0.5 + 1) / 4.
  // FPR = 1 - TPR on the diagonal segment (0,.5)-(.5,1) at its middle: EER 0.25.
  const std::vector<float> scores{0.9f, 0.5f, 0.5f, 0.1f};
  const std::vector<bool> same{true, true, false, false};
  const auto curve = ae::roc_curve(scores, same);
  ASSERT_EQ(curve.size(), 4u);
  EXPECT_TRUE(std::isinf(curve[0].threshold));
  EXPECT_DOUBLE_EQ(curve[1].fpr, 0.0);
  EXPECT_DOUBLE_EQ(curve[1].tpr, 0.5);
  EXPECT_DOUBLE_EQ(curve[2].fpr, 0.5);
  EXPECT_DOUBLE_EQ(curve[2].tpr, 1.0);
  EXPECT_FLOAT_EQ(static_cast<float>(curve[2].threshold), 0.5f);
  EXPECT_DOUBLE_EQ(ae::roc_auc(curve), 0.875);
  EXPECT_DOUBLE_EQ(ae::equal_error_rate(curve), 0.25);
  EXPECT_DOUBLE_EQ(ae::roc_auc(curve), mann_whitney_auc(scores, same));
}

TEST(Roc, EerOnAVerticalSegment) {
  // same {0.9, 0.6}, different {0.7, 0.2, 0.1}: (0,0) (0,.5) (1/3,.5) (1/3,1) (2/3,1) (1,1).
  // FNR falls from .5 to 0 while FPR stays 1/3, so they meet at 1/3. AUC: (2 + 1*... ) 0.9 beats 3,
  // 0.6 beats 2 -> 5/6.
  const std::vector<float> scores{0.9f, 0.7f, 0.6f, 0.2f, 0.1f};
  const std::vector<bool> same{true, false, true, false, false};
  const auto curve = ae::roc_curve(scores, same);
  EXPECT_NEAR(ae::equal_error_rate(curve), 1.0 / 3.0, 1e-15);
  EXPECT_NEAR(ae::roc_auc(curve), 5.0 / 6.0, 1e-15);
}

// ---------------------------------------------------------------- against the reference -----------

TEST(Verification, RandomScoresMatchBruteForceReference) {
  std::vector<float> scores;
  std::vector<bool> same;
  for (uint64_t seed : {1u, 2u}) {
    for (int64_t n : {600, 605}) {
      random_pairs(n, seed, 0.0, scores, same);
      for (double far_target : {1e-3, 0.05}) {
        expect_matches_reference(scores, same, 10, far_target,
                                 "seed " + std::to_string(seed) + " n " + std::to_string(n) + " far " +
                                     std::to_string(far_target));
      }
    }
  }
}

TEST(Verification, OtherFoldCountsMatchReference) {
  std::vector<float> scores;
  std::vector<bool> same;
  random_pairs(307, 11, 0.0, scores, same);
  expect_matches_reference(scores, same, 7, 0.02, "7 folds");
  expect_matches_reference(scores, same, 1, 0.02, "1 fold (train = test)");
  const auto r = ae::evaluate_verification(scores, same, {1, 0.02});
  EXPECT_DOUBLE_EQ(r.accuracy_std, 0.0);
}

TEST(Verification, TiedAndGridAlignedScoresMatchReference) {
  // Scores on a 1/64 lattice give d = j/32 exactly, which falls on grid thresholds (0.25, 0.5, ...):
  // the strict d < t comparison must match pair for pair. A 0.01 lattice gives ties near the grid.
  std::vector<float> scores;
  std::vector<bool> same;
  for (uint64_t seed : {5u, 6u}) {
    random_pairs(600, seed, 1.0 / 64.0, scores, same);
    expect_matches_reference(scores, same, 10, 1e-3, "1/64 lattice seed " + std::to_string(seed));
    expect_matches_reference(scores, same, 10, 0.1, "1/64 lattice far 0.1 seed " + std::to_string(seed));
    random_pairs(605, seed, 0.01, scores, same);
    expect_matches_reference(scores, same, 10, 1e-3, "0.01 lattice seed " + std::to_string(seed));
  }
}

TEST(Verification, FoldLayoutMattersAndMatchesSklearn) {
  // 605 pairs, one wrongly scored pair planted at index 60: the last pair of fold 1 under sklearn's
  // layout (61 + 61 + ... + 60), but the first pair of fold 2 under a layout that gives the extra
  // pairs to the last folds. Only the right layout puts the one error into fold 1.
  std::vector<float> scores;
  std::vector<bool> same;
  for (int i = 0; i < 605; ++i) {
    const bool s = i % 2 == 0;
    same.push_back(s);
    scores.push_back(s ? 0.8f : 0.1f);
  }
  ASSERT_TRUE(same[60]);
  scores[60] = 0.1f;  // a same pair scored like a different one
  const auto r = ae::evaluate_verification(scores, same);
  for (int f = 0; f < 10; ++f) {
    const double expected = f == 0 ? 60.0 / 61.0 : 1.0;  // only fold 1 (pairs 0..60) errs
    EXPECT_NEAR(r.fold_accuracies[f], expected, 1e-12) << "fold " << f;
  }
  expect_matches_reference(scores, same, 10, 1e-3, "planted error");
}

// ---------------------------------------------------------------- input errors --------------------

TEST(Verification, RejectsBadInput) {
  std::vector<float> scores(20, 0.5f);
  std::vector<bool> same;
  for (int i = 0; i < 20; ++i) same.push_back(i % 2 == 0);
  expect_throw_containing<arcforge::InputError>(
      [&] { ae::evaluate_verification(scores, std::vector<bool>(19, true)); }, "19");
  auto nan_scores = scores;
  nan_scores[7] = std::nanf("");
  expect_throw_containing<arcforge::InputError>([&] { ae::evaluate_verification(nan_scores, same); }, "pair 7");
  auto inf_scores = scores;
  inf_scores[3] = INFINITY;
  expect_throw_containing<arcforge::InputError>([&] { ae::evaluate_verification(inf_scores, same); }, "pair 3");
  expect_throw_containing<arcforge::InputError>(
      [&] {
        ae::evaluate_verification(std::vector<float>(9, 0.5f), std::vector<bool>(9, true));
      },
      "9 pairs");
  EXPECT_THROW(ae::evaluate_verification(scores, same, {0, 1e-3}), arcforge::ConfigError);
  EXPECT_THROW(ae::evaluate_verification(scores, same, {10, NAN}), arcforge::ConfigError);
  EXPECT_THROW(ae::evaluate_verification(scores, same, {10, 1.5}), arcforge::ConfigError);
}

TEST(Verification, RejectsFoldsWithoutBothKinds) {
  // Different pairs only at 0 and 1 (all of fold 1): the training part of fold 1 has none.
  std::vector<float> scores(20, 0.5f);
  std::vector<bool> same(20, true);
  same[0] = same[1] = false;
  expect_throw_containing<arcforge::InputError>([&] { ae::evaluate_verification(scores, same); },
                                                "fold 1 of 10");
  // Sorted lists: fold 1's test part (pairs 0, 1) holds no same pair.
  std::vector<bool> sorted(20, true);
  sorted[0] = sorted[1] = false;
  sorted[2] = sorted[3] = false;  // training part now has different pairs
  for (int i = 4; i < 20; i += 2) sorted[i] = false;
  expect_throw_containing<arcforge::InputError>([&] { ae::evaluate_verification(scores, sorted); },
                                                "test part has no same");
  EXPECT_THROW(ae::roc_curve(scores, std::vector<bool>(20, true)), arcforge::InputError);
}

// ---------------------------------------------------------------- pair scores ---------------------

TEST(PairScores, MatchDirectDoubleCosine) {
  const int64_t count = 40, dim = 96;
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(0.01f, 50.0f);
  std::vector<float> emb(count * dim);
  for (int64_t r = 0; r < count; ++r) {
    const float s = scale(rng);  // rows of very different norms: normalisation must happen per row
    for (int64_t k = 0; k < dim; ++k) emb[r * dim + k] = s * normal(rng);
  }
  // Include a row against itself and against its own negation.
  for (int64_t k = 0; k < dim; ++k) emb[1 * dim + k] = -3.0f * emb[0 * dim + k];
  std::vector<std::pair<int64_t, int64_t>> pairs{{0, 0}, {0, 1}};
  std::uniform_int_distribution<int64_t> pick(0, count - 1);
  for (int i = 0; i < 200; ++i) pairs.push_back({pick(rng), pick(rng)});
  const auto got = ae::pair_scores(emb.data(), count, dim, pairs);
  ASSERT_EQ(got.size(), pairs.size());
  for (size_t p = 0; p < pairs.size(); ++p) {
    const float* a = &emb[pairs[p].first * dim];
    const float* b = &emb[pairs[p].second * dim];
    double na = 0, nb = 0;
    for (int64_t k = 0; k < dim; ++k) na += double(a[k]) * a[k], nb += double(b[k]) * b[k];
    double dot = 0;
    for (int64_t k = 0; k < dim; ++k) dot += (a[k] / std::sqrt(na)) * (b[k] / std::sqrt(nb));
    EXPECT_NEAR(got[p], dot, 1e-6) << "pair " << p;
    EXPECT_LE(std::abs(got[p]), 1.0f);
  }
  EXPECT_FLOAT_EQ(got[0], 1.0f);
  EXPECT_FLOAT_EQ(got[1], -1.0f);
}

TEST(PairScores, RejectsZeroVectorsAndBadIndices) {
  const int64_t dim = 4;
  std::vector<float> emb{1, 2, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8};
  EXPECT_NO_THROW(ae::pair_scores(emb.data(), 3, dim, {{0, 2}}));  // the zero row is not compared
  expect_throw_containing<arcforge::InputError>([&] { ae::pair_scores(emb.data(), 3, dim, {{0, 2}, {2, 1}}); },
                                                "embedding 1");
  expect_throw_containing<arcforge::InputError>([&] { ae::pair_scores(emb.data(), 3, dim, {{0, 3}}); },
                                                "pair 0");
  EXPECT_THROW(ae::pair_scores(emb.data(), 3, dim, {{-1, 0}}), arcforge::InputError);
  EXPECT_THROW(ae::pair_scores(emb.data(), 3, 0, {}), arcforge::InputError);
  EXPECT_THROW(ae::pair_scores(nullptr, 3, dim, {}), arcforge::InputError);
  emb[9] = NAN;
  EXPECT_THROW(ae::pair_scores(emb.data(), 3, dim, {{0, 2}}), arcforge::InputError);
}
