#pragma once
// Exact top-k search by inner product over a contiguous array of rows, fp32 or per-vector int8.
//
// Debian's libfaiss is built without SIMD: its inner product is the scalar reference loop, and its
// IndexScalarQuantizer scan is slower than fp32. These kernels vectorise (AVX-512, AVX2, or the
// baseline x86-64/other ISA, picked at run time), and the scan splits the rows over OpenMP threads.
//
// int8: each vector is quantised symmetrically on its own scale, scale = max|x| / 127 and
// code = round(x / scale); the inner product of two vectors is the exact int32 dot product of their
// codes times both scales. Queries are quantised the same way.
//
// Results are sorted by score descending, ties by slot ascending, and do not depend on the number
// of threads. SIMD levels sum fp32 in different orders (and with or without FMA), so their scores
// may differ in the last bits; int8 dot products are exact integers on every level.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace arcforge::gallery::exact {

enum class SimdLevel { Baseline, Avx2, Avx512 };

// The level the kernels run at: the best this CPU supports, unless forced (tests compare the paths;
// forcing a level the CPU lacks throws InputError). Process-wide; not for use while searches run.
SimdLevel simd_level();
SimdLevel detected_simd_level();
void force_simd_level(SimdLevel level);
void clear_forced_simd_level();
const char* simd_level_name(SimdLevel level);

float dot_fp32(const float* a, const float* b, size_t dim);
// The kernel dot_fp32 calls at the current level, for callers that compute many dot products
// (HNSW's distance computer): it skips the level check per call. Resolve it again after forcing.
using DotFp32 = float (*)(const float* a, const float* b, size_t dim);
DotFp32 dot_fp32_kernel();
int32_t dot_int8(const int8_t* a, const int8_t* b, size_t dim);

// Writes dim codes and returns the scale (0 for a zero vector, whose codes are all 0).
float quantise_int8(const float* x, size_t dim, int8_t* codes);

struct ScanHit {
  int64_t slot;
  float score;
};

// Rows 0..n-1; `live` (may be null: all live) has one byte a row, 0 for rows to skip.
struct Fp32Rows {
  const float* data;  // n x dim
  size_t n;
  size_t dim;
  const uint8_t* live;
};

struct Int8Rows {
  const int8_t* codes;  // n x dim
  const float* scales;  // n
  size_t n;
  size_t dim;
  const uint8_t* live;
};

struct ScanOptions {
  int max_threads = 0;           // 0: omp_get_max_threads()
  size_t serial_below = 20000;   // fewer rows than this: one thread (a team costs more than it saves)
};

// Top-k of each of nq queries (row-major nq x dim), best first; shorter than k when fewer rows
// are live. The int8 overload quantises the queries itself.
std::vector<std::vector<ScanHit>> top_k(const float* queries, size_t nq, const Fp32Rows& rows, size_t k,
                                        const ScanOptions& options = {});
std::vector<std::vector<ScanHit>> top_k(const float* queries, size_t nq, const Int8Rows& rows, size_t k,
                                        const ScanOptions& options = {});

}  // namespace arcforge::gallery::exact
