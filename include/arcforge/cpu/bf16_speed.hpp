#pragma once
// Whether bf16 compute outpaces fp32 on a CPU: what the runtime's precision "auto" and the
// trainer's train.precision "auto" decide by. The facts and the rule are apart so that a test can
// check the rule for every kind of CPU.

namespace arcforge::cpu {

struct Bf16Hardware {
  bool amx = false;          // AMX tiles with bf16 (Sapphire Rapids and later Xeons)
  bool avx512_bf16 = false;  // the AVX512-BF16 dot product, vdpbf16ps
  bool amd = false;          // the vendor is AMD
};

// This CPU's, from cpuid. (The runtime takes amx and avx512_bf16 from oneDNN instead, which
// honours ONEDNN_MAX_CPU_ISA; a hypervisor may hide AMX from both.)
Bf16Hardware this_cpus_bf16_hardware();

// AMX multiplies bf16 tiles at many times the fp32 rate. Without it, bf16 pays only where
// vdpbf16ps (two products per fp32 lane) issues as often as an fp32 FMA: AMD Zen 4, where the
// runtime measured bf16 at 1.16-1.7x fp32. Intel's issues at half that rate, no more products per
// cycle than fp32's two FMA ports, and bf16 then loses on the conversions: 0.57-0.87x measured on
// a Xeon whose hypervisor hides AMX (docs/results.md). On plain AVX-512 oneDNN emulates bf16
// (slower still); on AVX2 it has no bf16 convolution at all.
inline bool bf16_outpaces_fp32(const Bf16Hardware& h) { return h.amx || (h.avx512_bf16 && h.amd); }

}  // namespace arcforge::cpu
