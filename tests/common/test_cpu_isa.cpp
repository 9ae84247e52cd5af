// oneDNN's ONEDNN_MAX_CPU_ISA values as caps on arcforge's own CPU kernels (arcforge/cpu/isa.hpp).
#include <gtest/gtest.h>

#include "arcforge/cpu/isa.hpp"

namespace arcforge::cpu {
namespace {

TEST(CpuIsa, OneDnnNamesCapTheKernelsAtTheMatchingLevel) {
  EXPECT_EQ(isa_cap_of_onednn_name("SSE41"), CpuKernelIsa::baseline);
  EXPECT_EQ(isa_cap_of_onednn_name("AVX"), CpuKernelIsa::baseline);  // no AVX2, no FMA
  EXPECT_EQ(isa_cap_of_onednn_name("AVX2"), CpuKernelIsa::avx2);
  EXPECT_EQ(isa_cap_of_onednn_name("avx2"), CpuKernelIsa::avx2);  // oneDNN takes any case
  EXPECT_EQ(isa_cap_of_onednn_name("AVX2_VNNI"), CpuKernelIsa::avx2);
  EXPECT_EQ(isa_cap_of_onednn_name("AVX512_CORE"), CpuKernelIsa::avx512);
  EXPECT_EQ(isa_cap_of_onednn_name("Avx512_Core_Vnni"), CpuKernelIsa::avx512);
  EXPECT_EQ(isa_cap_of_onednn_name("AVX512_MIC_4OPS"), CpuKernelIsa::avx512);
  // bf16 conversion and above: the highest level arcforge has, so no cap.
  EXPECT_EQ(isa_cap_of_onednn_name("AVX512_CORE_BF16"), std::nullopt);
  EXPECT_EQ(isa_cap_of_onednn_name("AVX512_CORE_AMX"), std::nullopt);
  EXPECT_EQ(isa_cap_of_onednn_name("ALL"), std::nullopt);
  EXPECT_EQ(isa_cap_of_onednn_name("AVX3"), std::nullopt);  // oneDNN ignores an unknown name too
  EXPECT_EQ(isa_cap_of_onednn_name(""), std::nullopt);
}

TEST(CpuIsa, NamesEveryLevel) {
  EXPECT_STREQ(cpu_kernel_isa_name(CpuKernelIsa::baseline), "baseline");
  EXPECT_STREQ(cpu_kernel_isa_name(CpuKernelIsa::avx2), "avx2");
  EXPECT_STREQ(cpu_kernel_isa_name(CpuKernelIsa::avx512), "avx512");
  EXPECT_STREQ(cpu_kernel_isa_name(CpuKernelIsa::avx512_bf16), "avx512_bf16");
}

}  // namespace
}  // namespace arcforge::cpu
