#pragma once
// Mixed precision as a scope: bf16 autocast on CUDA or on the CPU (optim.amp / optim.amp_cpu).
#include <ATen/autocast_mode.h>
#include <torch/types.h>

namespace cprfl {

// bf16 autocast for one forward pass on `device`, off again (and its cast cache cleared) when
// the scope ends, also by an exception.
class BFloat16Autocast {
 public:
  explicit BFloat16Autocast(const torch::Device& device) : cuda_(device.is_cuda()) {
    if (cuda_) {
      at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
      at::autocast::set_enabled(true);
    } else {
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
      at::autocast::set_cpu_enabled(true);
    }
  }
  ~BFloat16Autocast() {
    if (cuda_) at::autocast::set_enabled(false);
    else at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }
  BFloat16Autocast(const BFloat16Autocast&) = delete;
  BFloat16Autocast& operator=(const BFloat16Autocast&) = delete;

 private:
  bool cuda_;
};

}  // namespace cprfl
