#include "cprfl/common/cpu_features.h"

#include <cstdint>
#include <fstream>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CPRFL_X86 1
#endif

namespace cprfl {
namespace {

#ifdef CPRFL_X86
// XCR0: which register states the OS saves on a context switch (read only when OSXSAVE is set).
std::uint64_t enabled_register_state() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return 0;  // OSXSAVE
  std::uint32_t low = 0, high = 0;
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (static_cast<std::uint64_t>(high) << 32) | low;
}
#endif

}  // namespace

Bf16Hardware cpu_bf16_hardware() {
#ifdef CPRFL_X86
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return Bf16Hardware::none;
  const unsigned max_subleaf = eax;
  const bool avx512f = ebx & (1u << 16);
  const bool amx_bf16 = edx & (1u << 22), amx_tile = edx & (1u << 24);
  bool avx512_bf16 = false;
  if (max_subleaf >= 1 && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) avx512_bf16 = eax & (1u << 5);
  const std::uint64_t state = enabled_register_state();
  const bool avx512_state = (state & 0xE6) == 0xE6;               // SSE, AVX, opmask, ZMM halves
  const bool amx_state = (state & (3ull << 17)) == (3ull << 17);  // TILECFG, TILEDATA
  if (amx_bf16 && amx_tile && amx_state) return Bf16Hardware::amx_bf16;
  if (avx512f && avx512_bf16 && avx512_state) return Bf16Hardware::avx512_bf16;
#endif
  return Bf16Hardware::none;
}

std::string bf16_hardware_name(Bf16Hardware hardware) {
  switch (hardware) {
    case Bf16Hardware::amx_bf16: return "amx_bf16";
    case Bf16Hardware::avx512_bf16: return "avx512_bf16";
    case Bf16Hardware::none: break;
  }
  return "none";
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

}  // namespace cprfl
