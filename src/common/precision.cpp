#include "cprfl/common/precision.h"

#include "cprfl/common/cpu_features.h"
#include "cprfl/common/error.h"

namespace cprfl {

std::string precision_name(Precision precision) { return precision == Precision::bf16 ? "bf16" : "fp32"; }

bool cpu_has_bf16_hardware() {
  static const bool has = cpu_bf16_hardware() != Bf16Hardware::none;  // CPUID once
  return has;
}

Precision inference_precision(const std::string& setting, const torch::Device& device) {
  if (setting == "fp32") return Precision::fp32;
  if (setting == "bf16") return Precision::bf16;
  if (setting != "auto") throw Error("precision: '" + setting + "' is not one of auto, fp32, bf16");
  return device.is_cpu() && cpu_has_bf16_hardware() ? Precision::bf16 : Precision::fp32;
}

bool cpu_autocast_enabled(const std::string& setting) {
  if (setting == "true") return true;
  if (setting == "false") return false;
  if (setting != "auto") throw Error("optim.amp_cpu: '" + setting + "' is not one of auto, true, false");
  return cpu_has_bf16_hardware();
}

}  // namespace cprfl
