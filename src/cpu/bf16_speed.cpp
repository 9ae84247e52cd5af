#include "arcforge/cpu/bf16_speed.hpp"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace arcforge::cpu {

Bf16Hardware this_cpus_bf16_hardware() {
  Bf16Hardware h;
#if defined(__x86_64__) || defined(__i386__)
  unsigned max_leaf = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &max_leaf, &ebx, &ecx, &edx)) return h;
  char vendor[13] = {};
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  h.amd = std::strcmp(vendor, "AuthenticAMD") == 0;
  unsigned eax = 0;
  if (max_leaf >= 7 && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
    h.amx = (edx >> 22) & 1u;  // AMX-BF16
    if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) h.avx512_bf16 = (eax >> 5) & 1u;
  }
#endif
  return h;
}

}  // namespace arcforge::cpu
