// The run-time bf16 capability agrees with the kernel's own reading of the CPU (/proc/cpuinfo
// flags, which Linux lists only where the CPU has the feature and the kernel enabled its state).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "cprfl/common/cpu_features.h"

using namespace cprfl;

namespace {

std::string cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) return line.substr(line.find(':') + 1) + " ";
  return "";
}

bool has_flag(const std::string& flags, const std::string& flag) { return flags.find(" " + flag + " ") != std::string::npos; }

}  // namespace

TEST(CpuFeatures, Bf16HardwareMatchesTheKernelsFlags) {
  const std::string flags = cpuinfo_flags();
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags to compare with";
  Bf16Hardware expected = Bf16Hardware::none;
  if (has_flag(flags, "avx512f") && has_flag(flags, "avx512_bf16")) expected = Bf16Hardware::avx512_bf16;
  if (has_flag(flags, "amx_bf16") && has_flag(flags, "amx_tile")) expected = Bf16Hardware::amx_bf16;
  EXPECT_EQ(bf16_hardware_name(cpu_bf16_hardware()), bf16_hardware_name(expected)) << "cpuinfo flags:" << flags;
}

TEST(CpuFeatures, NamesAreTheCpuinfoSpellings) {
  EXPECT_EQ(bf16_hardware_name(Bf16Hardware::none), "none");
  EXPECT_EQ(bf16_hardware_name(Bf16Hardware::avx512_bf16), "avx512_bf16");
  EXPECT_EQ(bf16_hardware_name(Bf16Hardware::amx_bf16), "amx_bf16");
  EXPECT_NE(cpu_model_name(), "");
}
