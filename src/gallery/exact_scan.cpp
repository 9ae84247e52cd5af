// Exact top-k scans for VectorIndex's flat and int8 kinds: SIMD kernels chosen at run time, and a
// scan that splits the rows over OpenMP threads, each keeping its own top-k, merged at the end.
#include "exact_scan.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include "arcforge/common/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace arcforge::gallery::exact {
namespace {

// Baseline kernels (any CPU): the fp32 dot product sums into 16 independent lanes (lane j takes
// elements j, j+16, ...), which the compiler vectorises without reassociating (no fast-math). The
// int8 one is exact integer arithmetic: |a*b| <= 128*128, so an int32 sum holds dim up to 131 072.
constexpr size_t kLanes = 16;

float fp32_dot_baseline(const float* a, const float* b, size_t dim) {
  float acc[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= dim; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (size_t j = 0; i + j < dim; ++j) acc[j] += a[i + j] * b[i + j];
  for (size_t width = kLanes / 2; width > 0; width /= 2) {
    for (size_t j = 0; j < width; ++j) acc[j] += acc[j + width];
  }
  return acc[0];
}

int32_t int8_dot_baseline(const int8_t* a, const int8_t* b, size_t dim) {
  int32_t sum = 0;
  for (size_t i = 0; i < dim; ++i) sum += int32_t{a[i]} * int32_t{b[i]};
  return sum;
}

#if defined(__x86_64__) || defined(__i386__)
#define ARCFORGE_EXACT_X86 1

// AVX2: four 8-float FMA chains; int8 widened to int16 and multiplied-added in pairs into int32
// (vpmaddwd: each pair sum <= 2*128*128, no saturation).
[[gnu::target("avx2,fma")]] float fp32_dot_avx2(const float* a, const float* b, size_t dim) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
         acc3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= dim; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  const __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
  __m128 half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  half = _mm_add_ps(half, _mm_movehl_ps(half, half));
  half = _mm_add_ss(half, _mm_movehdup_ps(half));
  float sum = _mm_cvtss_f32(half);
  for (; i < dim; ++i) sum += a[i] * b[i];
  return sum;
}

[[gnu::target("avx2")]] int32_t int8_dot_avx2(const int8_t* a, const int8_t* b, size_t dim) {
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    const __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    const __m256i a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i + 16)));
    const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i + 16)));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, b0));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, b1));
  }
  const __m256i acc = _mm256_add_epi32(acc0, acc1);
  __m128i half = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  half = _mm_add_epi32(half, _mm_shuffle_epi32(half, _MM_SHUFFLE(1, 0, 3, 2)));
  half = _mm_add_epi32(half, _mm_shuffle_epi32(half, _MM_SHUFFLE(2, 3, 0, 1)));
  int32_t sum = _mm_cvtsi128_si32(half);
  for (; i < dim; ++i) sum += int32_t{a[i]} * int32_t{b[i]};
  return sum;
}

// AVX-512: two 16-float FMA chains; int8 as 32 int16 lanes per vpmaddwd. GCC 12 warns that the
// AVX-512 intrinsics' own deliberately undefined pass-through operands are uninitialised (they are
// unused under a full mask): silenced for these kernels only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
[[gnu::target("avx512f,avx512bw")]] float fp32_dot_avx512(const float* a, const float* b, size_t dim) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  if (i < dim) {  // the rest (< 32) through masked loads
    const size_t left = dim - i;
    const auto mask0 = static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask0, a + i), _mm512_maskz_loadu_ps(mask0, b + i), acc0);
    if (left > 16) {
      const auto mask1 = static_cast<__mmask16>((1u << (left - 16)) - 1);
      acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask1, a + i + 16), _mm512_maskz_loadu_ps(mask1, b + i + 16), acc1);
    }
  }
  __m512 acc = _mm512_add_ps(acc0, acc1);
  acc = _mm512_add_ps(acc, _mm512_shuffle_f32x4(acc, acc, _MM_SHUFFLE(1, 0, 3, 2)));
  acc = _mm512_add_ps(acc, _mm512_shuffle_f32x4(acc, acc, _MM_SHUFFLE(2, 3, 0, 1)));
  __m128 quarter = _mm512_castps512_ps128(acc);
  quarter = _mm_add_ps(quarter, _mm_movehl_ps(quarter, quarter));
  quarter = _mm_add_ss(quarter, _mm_movehdup_ps(quarter));
  return _mm_cvtss_f32(quarter);
}

[[gnu::target("avx512f,avx512bw")]] int32_t int8_dot_avx512(const int8_t* a, const int8_t* b, size_t dim) {
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 64 <= dim; i += 64) {
    const __m512i a0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)));
    const __m512i b0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i)));
    const __m512i a1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i + 32)));
    const __m512i b1 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i + 32)));
    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(a0, b0));
    acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(a1, b1));
  }
  for (; i + 32 <= dim; i += 32) {
    const __m512i a0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)));
    const __m512i b0 = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i)));
    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(a0, b0));
  }
  __m512i acc = _mm512_add_epi32(acc0, acc1);
  acc = _mm512_add_epi32(acc, _mm512_shuffle_i32x4(acc, acc, _MM_SHUFFLE(1, 0, 3, 2)));
  acc = _mm512_add_epi32(acc, _mm512_shuffle_i32x4(acc, acc, _MM_SHUFFLE(2, 3, 0, 1)));
  __m128i quarter = _mm512_castsi512_si128(acc);
  quarter = _mm_add_epi32(quarter, _mm_shuffle_epi32(quarter, _MM_SHUFFLE(1, 0, 3, 2)));
  quarter = _mm_add_epi32(quarter, _mm_shuffle_epi32(quarter, _MM_SHUFFLE(2, 3, 0, 1)));
  int32_t sum = _mm_cvtsi128_si32(quarter);
  for (; i < dim; ++i) sum += int32_t{a[i]} * int32_t{b[i]};
  return sum;
}
#endif

using Fp32Scores = void (*)(const float* query, const float* rows, size_t count, size_t dim, float* out);
using Int8Scores = void (*)(const int8_t* query, float query_scale, const int8_t* codes, const float* scales,
                            size_t count, size_t dim, float* out);
using Fp32Dot = float (*)(const float*, const float*, size_t);
using Int8Dot = int32_t (*)(const int8_t*, const int8_t*, size_t);

struct Kernels {
  Fp32Scores fp32_scores;
  Int8Scores int8_scores;
  Fp32Dot fp32_dot;
  Int8Dot int8_dot;
};

// Row loops, one copy per instruction set so that the dot product is inlined into them.
#define ARCFORGE_EXACT_KERNELS(SUFFIX, ATTRIBUTES)                                                    \
  [[gnu::flatten]] ATTRIBUTES void fp32_scores_##SUFFIX(const float* query, const float* rows, size_t count, \
                                                        size_t dim, float* out) {                          \
    for (size_t r = 0; r < count; ++r) out[r] = fp32_dot_##SUFFIX(query, rows + r * dim, dim);             \
  }                                                                                                       \
  [[gnu::flatten]] ATTRIBUTES void int8_scores_##SUFFIX(const int8_t* query, float query_scale,            \
                                                        const int8_t* codes, const float* scales,         \
                                                        size_t count, size_t dim, float* out) {            \
    for (size_t r = 0; r < count; ++r) {                                                                  \
      const int32_t dot = int8_dot_##SUFFIX(query, codes + r * dim, dim);                                  \
      out[r] = static_cast<float>(dot) * (query_scale * scales[r]);                                       \
    }                                                                                                     \
  }                                                                                                       \
  constexpr Kernels kKernels_##SUFFIX{fp32_scores_##SUFFIX, int8_scores_##SUFFIX, fp32_dot_##SUFFIX,      \
                                      int8_dot_##SUFFIX};

ARCFORGE_EXACT_KERNELS(baseline, )
#ifdef ARCFORGE_EXACT_X86
ARCFORGE_EXACT_KERNELS(avx2, [[gnu::target("avx2,fma")]])
ARCFORGE_EXACT_KERNELS(avx512, [[gnu::target("avx512f,avx512bw")]])
#pragma GCC diagnostic pop
#endif
#undef ARCFORGE_EXACT_KERNELS

SimdLevel detect() {
#ifdef ARCFORGE_EXACT_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return SimdLevel::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::Avx2;
#endif
  return SimdLevel::Baseline;
}

std::atomic<int> forced_level{-1};

const Kernels& kernels() {
  switch (simd_level()) {
#ifdef ARCFORGE_EXACT_X86
    case SimdLevel::Avx512: return kKernels_avx512;
    case SimdLevel::Avx2: return kKernels_avx2;
#endif
    default: return kKernels_baseline;
  }
}

// Score desc, slot asc: a total order, so the top-k is the same however the rows were split.
bool better(const ScanHit& a, const ScanHit& b) {
  return a.score > b.score || (a.score == b.score && a.slot < b.slot);
}

// The k best seen so far, as a heap whose front is the worst of them.
class TopK {
 public:
  explicit TopK(size_t k) : k_(k) { heap_.reserve(std::min<size_t>(k, 4096)); }

  void offer(int64_t slot, float score) {
    const ScanHit hit{slot, score};
    if (heap_.size() < k_) {
      heap_.push_back(hit);
      std::push_heap(heap_.begin(), heap_.end(), better);
    } else if (better(hit, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), better);
      heap_.back() = hit;
      std::push_heap(heap_.begin(), heap_.end(), better);
    }
  }
  const std::vector<ScanHit>& hits() const { return heap_; }

 private:
  size_t k_;
  std::vector<ScanHit> heap_;
};

// About this many bytes of rows are scored against every query before moving on, so that a batch
// of queries reads each block from cache rather than memory.
constexpr size_t kBlockBytes = 256 * 1024;

// score_block(q, first_row, count, out) writes the scores of rows [first_row, first_row+count).
template <class ScoreBlock>
std::vector<std::vector<ScanHit>> scan(size_t nq, size_t n, size_t row_bytes, const uint8_t* live, size_t k,
                                       const ScanOptions& options, const ScoreBlock& score_block) {
  std::vector<std::vector<ScanHit>> out(nq);
  if (nq == 0 || n == 0 || k == 0) return out;
  const size_t max_threads = static_cast<size_t>(options.max_threads > 0 ? options.max_threads : omp_get_max_threads());
  // Each thread gets at least half of serial_below rows: below that a team costs more than it saves.
  const size_t rows_per_thread = std::max<size_t>(options.serial_below / 2, 1);
  const size_t threads = n < options.serial_below ? 1 : std::clamp<size_t>(n / rows_per_thread, 1, max_threads);
  const size_t block_rows = std::max<size_t>(16, kBlockBytes / std::max<size_t>(row_bytes, 1));
  std::vector<std::vector<TopK>> partial(threads, std::vector<TopK>(nq, TopK(k)));

  auto scan_part = [&](size_t part, size_t parts) {
    const size_t begin = n * part / parts, end = n * (part + 1) / parts;
    std::vector<float> scores(block_rows);
    std::vector<TopK>& best = partial[part];
    for (size_t first = begin; first < end; first += block_rows) {
      const size_t count = std::min(block_rows, end - first);
      for (size_t q = 0; q < nq; ++q) {
        score_block(q, first, count, scores.data());
        for (size_t r = 0; r < count; ++r) {
          if (live == nullptr || live[first + r]) best[q].offer(static_cast<int64_t>(first + r), scores[r]);
        }
      }
    }
  };
  if (threads == 1) {
    scan_part(0, 1);
  } else {
#pragma omp parallel num_threads(static_cast<int>(threads))
    {
      // The team may be smaller than asked (nested regions, thread limits): split by its real size.
      scan_part(static_cast<size_t>(omp_get_thread_num()), static_cast<size_t>(omp_get_num_threads()));
    }
  }

  for (size_t q = 0; q < nq; ++q) {
    std::vector<ScanHit>& merged = out[q];
    for (const auto& best : partial) merged.insert(merged.end(), best[q].hits().begin(), best[q].hits().end());
    const size_t keep = std::min(k, merged.size());
    std::partial_sort(merged.begin(), merged.begin() + static_cast<std::ptrdiff_t>(keep), merged.end(), better);
    merged.resize(keep);
  }
  return out;
}

}  // namespace

SimdLevel detected_simd_level() {
  static const SimdLevel level = detect();
  return level;
}

SimdLevel simd_level() {
  const int forced = forced_level.load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<SimdLevel>(forced) : detected_simd_level();
}

void force_simd_level(SimdLevel level) {
  if (static_cast<int>(level) > static_cast<int>(detected_simd_level())) {
    throw InputError(std::string("exact scan: cannot force SIMD level ") + simd_level_name(level) +
                     ", this CPU supports up to " + simd_level_name(detected_simd_level()));
  }
  forced_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

void clear_forced_simd_level() { forced_level.store(-1, std::memory_order_relaxed); }

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Baseline: return "baseline";
    case SimdLevel::Avx2: return "avx2";
    case SimdLevel::Avx512: return "avx512";
  }
  return "unknown";
}

float dot_fp32(const float* a, const float* b, size_t dim) { return kernels().fp32_dot(a, b, dim); }

DotFp32 dot_fp32_kernel() { return kernels().fp32_dot; }

int32_t dot_int8(const int8_t* a, const int8_t* b, size_t dim) { return kernels().int8_dot(a, b, dim); }

float quantise_int8(const float* x, size_t dim, int8_t* codes) {
  float max_abs = 0.f;
  for (size_t i = 0; i < dim; ++i) max_abs = std::max(max_abs, std::fabs(x[i]));
  if (!(max_abs > 0.f) || !std::isfinite(max_abs)) {
    std::memset(codes, 0, dim);
    return 0.f;
  }
  const float scale = max_abs / 127.f;
  for (size_t i = 0; i < dim; ++i) {
    // x / scale can land a hair above 127 for the largest element: clamp.
    codes[i] = static_cast<int8_t>(std::clamp(std::round(x[i] / scale), -127.f, 127.f));
  }
  return scale;
}

std::vector<std::vector<ScanHit>> top_k(const float* queries, size_t nq, const Fp32Rows& rows, size_t k,
                                        const ScanOptions& options) {
  const Fp32Scores score_rows = kernels().fp32_scores;
  const size_t dim = rows.dim;
  return scan(nq, rows.n, dim * sizeof(float), rows.live, k, options,
              [&](size_t q, size_t first, size_t count, float* out) {
                score_rows(queries + q * dim, rows.data + first * dim, count, dim, out);
              });
}

std::vector<std::vector<ScanHit>> top_k(const float* queries, size_t nq, const Int8Rows& rows, size_t k,
                                        const ScanOptions& options) {
  const Int8Scores score_rows = kernels().int8_scores;
  const size_t dim = rows.dim;
  std::vector<int8_t> query_codes(nq * dim);
  std::vector<float> query_scales(nq);
  for (size_t q = 0; q < nq; ++q) query_scales[q] = quantise_int8(queries + q * dim, dim, &query_codes[q * dim]);
  return scan(nq, rows.n, dim + sizeof(float), rows.live, k, options,
              [&](size_t q, size_t first, size_t count, float* out) {
                score_rows(&query_codes[q * dim], query_scales[q], rows.codes + first * dim, rows.scales + first,
                           count, dim, out);
              });
}

}  // namespace arcforge::gallery::exact
