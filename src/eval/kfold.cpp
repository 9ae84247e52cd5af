#include "arcforge/eval/kfold.hpp"

#include <string>

#include "arcforge/common/error.hpp"

namespace arcforge::eval {

std::vector<FoldRange> kfold_ranges(int64_t count, int folds) {
  if (folds < 1) throw ConfigError("verification: folds must be at least 1, got " + std::to_string(folds));
  if (count < folds) {
    throw InputError("verification: " + std::to_string(count) + " pairs cannot be split into " +
                     std::to_string(folds) + " folds");
  }
  std::vector<FoldRange> ranges;
  ranges.reserve(folds);
  const int64_t base = count / folds;
  const int64_t bigger = count % folds;  // these first folds take one extra pair
  int64_t begin = 0;
  for (int f = 0; f < folds; ++f) {
    const int64_t size = base + (f < bigger ? 1 : 0);
    ranges.push_back({begin, begin + size});
    begin += size;
  }
  return ranges;
}

}  // namespace arcforge::eval
