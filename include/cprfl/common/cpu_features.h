#pragma once
// What this CPU offers for bfloat16 matrix work, read at run time with CPUID and XGETBV (so a
// binary built on one machine decides correctly on another): AMX-BF16 tiles (Intel Sapphire
// Rapids and later), AVX512-BF16 dot products (Intel Cooper Lake and later, AMD Zen 4 and
// later), or neither. The operating system must also have enabled the registers' state.
#include <string>

namespace cprfl {

enum class Bf16Hardware { none, avx512_bf16, amx_bf16 };

Bf16Hardware cpu_bf16_hardware();
std::string bf16_hardware_name(Bf16Hardware hardware);  // "none" | "avx512_bf16" | "amx_bf16"

// The CPU's model name as the kernel reports it ("unknown" where /proc/cpuinfo is missing).
std::string cpu_model_name();

}  // namespace cprfl
