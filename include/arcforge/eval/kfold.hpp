#pragma once
// The fold layout of the verification protocol: contiguous and unshuffled, as sklearn's
// KFold(n_splits=folds, shuffle=False) that InsightFace's verification.py uses.
#include <cstdint>
#include <vector>

namespace arcforge::eval {

// The test pairs of one fold: indices [begin, end). Its training part is every other pair.
struct FoldRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// Every fold gets count / folds pairs and the first count % folds folds one more (sklearn's rule).
// folds == 1 gives one fold holding everything, which is then also its own training part
// (InsightFace's LFold). Throws ConfigError when folds < 1, InputError when count < folds.
std::vector<FoldRange> kfold_ranges(int64_t count, int folds);

}  // namespace arcforge::eval
