#pragma once
// Building blocks of arcforge's own CPU kernels (the training kernels in train/nn and the runtime's
// fused attention): float and bf16 elements loaded and stored one at a time or N at a time in
// GCC's vector extensions, and the dispatch to the copy compiled for the active instruction set
// (isa.hpp).
//
// bf16 is held as its bits (uint16_t) and converted with integer arithmetic, so that GCC vectorises
// the loops (c10::BFloat16's conversions keep them scalar). A select on a combined mask,
// "(a > x) & (b < y) ? v : w", comes out as scalar code from GCC 12 (one compare and branch per
// lane): apply such masks with a bitwise and on the integer bits instead (train/nn/relu6.cpp), and
// check the assembly of a new kernel's hot loop for vpextrd. Stores round to nearest even, as
// c10::BFloat16 does, and keep NaN a NaN. Include only from a kernel's .cpp, compiled with
// -Wno-psabi: the helpers take vector arguments, which is fine because they are always inlined.
#include <cstdint>
#include <cstring>

#include "arcforge/cpu/isa.hpp"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ARCFORGE_CPU_KERNELS_X86 1
#endif

#define ARCFORGE_INLINE __attribute__((always_inline)) inline

// Instantiates a kernel's range functions, written as MACRO(SUFFIX, ATTRIBUTES, N), once per
// instruction set: the baseline with N = 0 (the scalar loops, which GCC vectorises its own way: SSE2
// splits wider vectors badly), AVX2 + FMA with 8 lanes, AVX-512 with 16.
#ifdef ARCFORGE_CPU_KERNELS_X86
#define ARCFORGE_FOR_EACH_ISA(MACRO)          \
  MACRO(baseline, , 0)                        \
  MACRO(avx2, [[gnu::target("avx2,fma")]], 8) \
  MACRO(avx512, [[gnu::target("avx512f")]], 16)
#else
#define ARCFORGE_FOR_EACH_ISA(MACRO) MACRO(baseline, , 0)
#endif

// Calls NAME_avx512, NAME_avx2 or NAME_baseline, as the active instruction set says (avx512_bf16
// runs the AVX-512 code, with Bf16Native elements).
#ifdef ARCFORGE_CPU_KERNELS_X86
#define ARCFORGE_ISA_DISPATCH(NAME, ...)                                            \
  switch (::arcforge::cpu::cpu_kernel_active_isa()) {                              \
    case ::arcforge::cpu::CpuKernelIsa::avx512_bf16:                               \
    case ::arcforge::cpu::CpuKernelIsa::avx512: return NAME##_avx512(__VA_ARGS__); \
    case ::arcforge::cpu::CpuKernelIsa::avx2: return NAME##_avx2(__VA_ARGS__);     \
    default: return NAME##_baseline(__VA_ARGS__);                                  \
  }
// The same for function templates: NAME_avx512<TEMPLATE_ARGUMENT>(...), and so on.
#define ARCFORGE_ISA_DISPATCH_TEMPLATE(NAME, TEMPLATE_ARGUMENT, ...)                                    \
  switch (::arcforge::cpu::cpu_kernel_active_isa()) {                                                  \
    case ::arcforge::cpu::CpuKernelIsa::avx512_bf16:                                                   \
    case ::arcforge::cpu::CpuKernelIsa::avx512: return NAME##_avx512<TEMPLATE_ARGUMENT>(__VA_ARGS__); \
    case ::arcforge::cpu::CpuKernelIsa::avx2: return NAME##_avx2<TEMPLATE_ARGUMENT>(__VA_ARGS__);     \
    default: return NAME##_baseline<TEMPLATE_ARGUMENT>(__VA_ARGS__);                                  \
  }
#else
#define ARCFORGE_ISA_DISPATCH(NAME, ...) return NAME##_baseline(__VA_ARGS__);
#define ARCFORGE_ISA_DISPATCH_TEMPLATE(NAME, TEMPLATE_ARGUMENT, ...) \
  return NAME##_baseline<TEMPLATE_ARGUMENT>(__VA_ARGS__);
#endif

// The helpers here and the kernels' own take and return vectors, but are always inlined: no call
// passes one, so GCC's ABI warnings and notes on vector arguments do not apply. The kernels' files
// are compiled with -Wno-psabi (train/CMakeLists.txt, src/runtime/CMakeLists.txt): a pragma
// silences the warnings but not the note "the ABI for passing parameters with 64-byte alignment has
// changed in GCC 4.6".

namespace arcforge::cpu::lanes {

ARCFORGE_INLINE float load(float v) { return v; }
ARCFORGE_INLINE float load(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
// bf16 bits stored with AVX512-BF16's vcvtneps2bf16 when 16 at a time (round to nearest even as
// store() below, NaN kept a NaN, but denormal inputs and results flushed to zero, as oneDNN's bf16
// kernels do). Kernels take it as their element type S on CPUs with AVX512-BF16.
struct Bf16Native {
  uint16_t bits;
};
static_assert(sizeof(Bf16Native) == 2);

ARCFORGE_INLINE void store(float& dst, float v) { dst = v; }
ARCFORGE_INLINE void store(uint16_t& dst, float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  dst = v != v ? uint16_t{0x7FC0} : static_cast<uint16_t>(u >> 16);
}
ARCFORGE_INLINE float load(Bf16Native v) { return load(v.bits); }
ARCFORGE_INLINE void store(Bf16Native& dst, float v) { store(dst.bits, v); }

// N float lanes: 16 fill an AVX-512 register, 8 an AVX2 one.
template <int N>
struct Lanes {
  typedef float f32 __attribute__((vector_size(4 * N)));
  typedef float f32_half __attribute__((vector_size(2 * N)));
  typedef double f64_half __attribute__((vector_size(4 * N)));  // N/2 doubles
  typedef uint32_t u32 __attribute__((vector_size(4 * N)));
  typedef int32_t i32 __attribute__((vector_size(4 * N)));
  typedef uint16_t u16 __attribute__((vector_size(2 * N)));
};

template <int N>
ARCFORGE_INLINE typename Lanes<N>::f32 load_lanes(const float* p) {
  typename Lanes<N>::f32 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <int N>
ARCFORGE_INLINE typename Lanes<N>::f32 load_lanes(const uint16_t* p) {
  using L = Lanes<N>;
  typename L::u16 half;
  std::memcpy(&half, p, sizeof half);
  const typename L::u32 bits = __builtin_convertvector(half, typename L::u32) << 16;
  typename L::f32 v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}
template <int N>
ARCFORGE_INLINE typename Lanes<N>::f32 load_lanes(const Bf16Native* p) {
  return load_lanes<N>(reinterpret_cast<const uint16_t*>(p));
}
template <int N>
ARCFORGE_INLINE void store_lanes(float* p, typename Lanes<N>::f32 v) {
  std::memcpy(p, &v, sizeof v);
}
template <int N>
ARCFORGE_INLINE void store_lanes(uint16_t* p, typename Lanes<N>::f32 v) {  // store() above, N at a time
  using L = Lanes<N>;
  typename L::u32 u;
  std::memcpy(&u, &v, sizeof u);
  const typename L::u32 rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const typename L::i32 nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  const typename L::u16 half = __builtin_convertvector(nan ? typename L::u32{} + 0x7FC0u : rounded, typename L::u16);
  std::memcpy(p, &half, sizeof half);
}

#ifdef ARCFORGE_CPU_KERNELS_X86
// Only the AVX-512 copies of the kernels (N = 16, compiled for avx512f) store 16 at a time, and they
// take Bf16Native only where the CPU has AVX512-BF16. Inline assembly, because the kernels' inline
// helpers have no target attribute for the intrinsic; the operands are zmm registers.
template <int N>
ARCFORGE_INLINE void store_lanes(Bf16Native* p, typename Lanes<N>::f32 v) {
  if constexpr (N == 16) {
    typename Lanes<N>::u16 half;
    asm("vcvtneps2bf16 %1, %0" : "=v"(half) : "v"(v));
    std::memcpy(p, &half, sizeof half);
  } else {
    store_lanes<N>(reinterpret_cast<uint16_t*>(p), v);
  }
}
#else
template <int N>
ARCFORGE_INLINE void store_lanes(Bf16Native* p, typename Lanes<N>::f32 v) {
  store_lanes<N>(reinterpret_cast<uint16_t*>(p), v);
}
#endif

}  // namespace arcforge::cpu::lanes

