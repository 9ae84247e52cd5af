// Precision names, and what this CPU runs of each: whether oneDNN has bf16 convolutions here,
// whether they outpace fp32, whether int8 has a dot-product instruction.
#include "arcforge/common/error.hpp"
#include "arcforge/cpu/bf16_speed.hpp"
#include "arcforge/runtime/model.hpp"
#include "conv_post_ops.hpp"

namespace arcforge::runtime {

std::string to_string(Precision p) {
  switch (p) {
    case Precision::fp32: return "fp32";
    case Precision::bf16: return "bf16";
    case Precision::automatic: return "auto";
    case Precision::int8: return "int8";
    case Precision::int8_bf16: return "int8+bf16";
    case Precision::int8_automatic: return "int8+auto";
  }
  return "?";
}

Precision parse_precision(const std::string& text) {
  if (text == "fp32") return Precision::fp32;
  if (text == "bf16") return Precision::bf16;
  if (text == "auto") return Precision::automatic;
  if (text == "int8") return Precision::int8;
  if (text == "int8+bf16") return Precision::int8_bf16;
  if (text == "int8+auto") return Precision::int8_automatic;
  throw ConfigError("unknown precision '" + text + "' (expected fp32, bf16, auto, int8, int8+bf16 or int8+auto)");
}

bool cpu_runs_bf16() {
  static const bool runs = [] {
    using md = dnnl::memory::desc;
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    try {
      const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
      const md src({1, 16, 8, 8}, dt::bf16, tag::any), weights({16, 16, 3, 3}, dt::bf16, tag::any),
          dst({1, 16, 8, 8}, dt::bf16, tag::any);
      const dnnl::convolution_forward::primitive_desc pd(
          {dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src, weights, dst, {1, 1}, {1, 1},
           {1, 1}},
          engine);
      return !detail::is_reference_impl(pd);
    } catch (const dnnl::error&) {
      return false;  // no bf16 convolution at all (oneDNN 2.x below AVX-512)
    }
  }();
  return runs;
}

namespace {

// What oneDNN runs here (ONEDNN_MAX_CPU_ISA honoured), and the vendor from cpuid.
cpu::Bf16Hardware bf16_hardware_as_onednn_sees_it() {
  // oneDNN's ISA values are sets of feature bits, each level holding the bits of those it extends.
  const auto effective = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto has = [effective](dnnl::cpu_isa level) {
    const auto bits = static_cast<unsigned>(level);
    return (effective & bits) == bits;
  };
  cpu::Bf16Hardware h = cpu::this_cpus_bf16_hardware();
  h.amx = has(dnnl::cpu_isa::avx512_core_amx);
  h.avx512_bf16 = has(dnnl::cpu_isa::avx512_core_bf16);
  return h;
}

}  // namespace

bool cpu_bf16_outpaces_fp32() {
  static const bool faster = cpu_runs_bf16() && cpu::bf16_outpaces_fp32(bf16_hardware_as_onednn_sees_it());
  return faster;
}

Precision effective_precision(Precision requested) {
  if (requested == Precision::automatic) return cpu_bf16_outpaces_fp32() ? Precision::bf16 : Precision::fp32;
  if (requested == Precision::int8_automatic) return cpu_bf16_outpaces_fp32() ? Precision::int8_bf16 : Precision::int8;
  if (!floats_in_bf16(requested) || cpu_runs_bf16()) return requested;
  return requested == Precision::bf16 ? Precision::fp32 : Precision::int8;
}

bool cpu_has_int8_dot_product() {
  using isa = dnnl::cpu_isa;
  const isa effective = dnnl::get_effective_cpu_isa();  // honours ONEDNN_MAX_CPU_ISA
  return effective == isa::avx512_core_vnni || effective == isa::avx512_core_bf16 ||
         effective == isa::avx512_core_amx || effective == isa::avx2_vnni;
}

std::string onednn_isa_name() {
  using isa = dnnl::cpu_isa;
  switch (dnnl::get_effective_cpu_isa()) {
    case isa::sse41: return "SSE41";
    case isa::avx: return "AVX";
    case isa::avx2: return "AVX2";
    case isa::avx2_vnni: return "AVX2_VNNI";
    case isa::avx512_mic: return "AVX512_MIC";
    case isa::avx512_mic_4ops: return "AVX512_MIC_4OPS";
    case isa::avx512_core: return "AVX512_CORE";
    case isa::avx512_core_vnni: return "AVX512_CORE_VNNI";
    case isa::avx512_core_bf16: return "AVX512_CORE_BF16";
    case isa::avx512_core_amx: return "AVX512_CORE_AMX";
    default: return "other";
  }
}

}  // namespace arcforge::runtime
