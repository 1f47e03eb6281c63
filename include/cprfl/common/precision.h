#pragma once
// Which number format does the matrix work: float32, or bfloat16 where the CPU has hardware
// for it (common/cpu_features.h). One decision for training (optim.amp_cpu: bf16 autocast,
// float32 master weights) and one for inference (eval/predict --precision: the weights
// converted to bf16 once, at load). "auto" means bf16 exactly where it pays: a CPU with
// AVX512-BF16 or AMX-BF16; float32 on other CPUs and on CUDA (where float32 scores are
// meant to match the CPU's).
#include <torch/types.h>

#include <string>

namespace cprfl {

enum class Precision { fp32, bf16 };

std::string precision_name(Precision precision);  // "fp32" | "bf16"

// True where this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX-BF16).
bool cpu_has_bf16_hardware();

// "auto" | "fp32" | "bf16" for inference on `device`; anything else is an error naming the setting.
Precision inference_precision(const std::string& setting, const torch::Device& device);

// optim.amp_cpu ("auto" | "true" | "false"): whether training on the CPU runs under bf16 autocast.
bool cpu_autocast_enabled(const std::string& setting);

}  // namespace cprfl
