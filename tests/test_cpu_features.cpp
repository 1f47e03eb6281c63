// The run-time bf16 capability agrees with the kernel's own reading of the CPU (/proc/cpuinfo
// flags, which Linux lists only where the CPU has the feature and the kernel enabled its state),
// and so do the precision defaults built on it (common/precision.h).
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <string>

#include "cprfl/common/cpu_features.h"
#include "cprfl/common/precision.h"

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

// "auto" means bf16 exactly where the kernel lists a bf16 matrix feature, and only on the CPU.
TEST(CpuFeatures, AutoPrecisionFollowsTheKernelsFlags) {
  const std::string flags = cpuinfo_flags();
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags to compare with";
  const bool bf16_hardware = (has_flag(flags, "avx512f") && has_flag(flags, "avx512_bf16")) ||
                             (has_flag(flags, "amx_bf16") && has_flag(flags, "amx_tile"));
  const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA, 0);
  EXPECT_EQ(precision_name(inference_precision("auto", cpu)), bf16_hardware ? "bf16" : "fp32");
  EXPECT_EQ(precision_name(inference_precision("auto", cuda)), "fp32");
  EXPECT_EQ(cpu_autocast_enabled("auto"), bf16_hardware);
  for (const auto& device : {cpu, cuda}) {
    EXPECT_EQ(inference_precision("fp32", device), Precision::fp32);
    EXPECT_EQ(inference_precision("bf16", device), Precision::bf16);
  }
  EXPECT_TRUE(cpu_autocast_enabled("true"));
  EXPECT_FALSE(cpu_autocast_enabled("false"));
}

TEST(CpuFeatures, UnknownPrecisionSettingsNameThemselves) {
  auto message_of = [](const std::function<void()>& call) {
    try {
      call();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message_of([] { inference_precision("fp16", torch::Device(torch::kCPU)); }),
            "precision: 'fp16' is not one of auto, fp32, bf16");
  EXPECT_EQ(message_of([] { cpu_autocast_enabled("yes please"); }),
            "optim.amp_cpu: 'yes please' is not one of auto, true, false");
}
