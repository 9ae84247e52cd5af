#pragma once
// Scores for verification pairs from a matrix of embeddings.
#include <cstdint>
#include <utility>
#include <vector>

namespace arcforge::eval {

// Cosine similarity of rows a and b of `embeddings` (row-major, count x dim) for every pair.
// Each row is L2-normalised at the point of comparison (accumulated in double), so the rows need
// not be normalised beforehand. Results are clamped to [-1, 1] against rounding.
// Throws InputError for count < 0, dim < 1, a null matrix, a pair index outside [0, count), or a
// compared row that is all zeros or not finite.
std::vector<float> pair_scores(const float* embeddings, int64_t count, int64_t dim,
                               const std::vector<std::pair<int64_t, int64_t>>& pairs);

}  // namespace arcforge::eval
