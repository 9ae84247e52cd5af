#include "arcforge/eval/pairs.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "arcforge/common/error.hpp"

namespace arcforge::eval {

std::vector<float> pair_scores(const float* embeddings, int64_t count, int64_t dim,
                               const std::vector<std::pair<int64_t, int64_t>>& pairs) {
  if (count < 0 || dim < 1) {
    throw InputError("pair_scores: bad embedding matrix shape " + std::to_string(count) + " x " +
                     std::to_string(dim));
  }
  if (embeddings == nullptr && count > 0) throw InputError("pair_scores: embedding matrix is null");

  std::vector<float> scores;
  scores.reserve(pairs.size());
  for (size_t p = 0; p < pairs.size(); ++p) {
    const auto [a, b] = pairs[p];
    if (a < 0 || a >= count || b < 0 || b >= count) {
      throw InputError("pair_scores: pair " + std::to_string(p) + " (" + std::to_string(a) + ", " +
                       std::to_string(b) + ") indexes outside the " + std::to_string(count) +
                       " embeddings");
    }
    const float* x = embeddings + a * dim;
    const float* y = embeddings + b * dim;
    double dot = 0, xx = 0, yy = 0;
    for (int64_t k = 0; k < dim; ++k) {
      dot += static_cast<double>(x[k]) * y[k];
      xx += static_cast<double>(x[k]) * x[k];
      yy += static_cast<double>(y[k]) * y[k];
    }
    for (auto [row, norm2] : {std::pair{a, xx}, std::pair{b, yy}}) {
      if (!(norm2 > 0) || !std::isfinite(norm2)) {
        throw InputError("pair_scores: embedding " + std::to_string(row) + " (in pair " +
                         std::to_string(p) + ") is " + (norm2 == 0 ? "all zeros" : "not finite") +
                         " and cannot be normalised");
      }
    }
    const double cosine = dot / (std::sqrt(xx) * std::sqrt(yy));
    scores.push_back(static_cast<float>(std::clamp(cosine, -1.0, 1.0)));
  }
  return scores;
}

}  // namespace arcforge::eval
