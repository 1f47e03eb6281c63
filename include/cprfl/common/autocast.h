#pragma once
// Mixed precision as a scope: bf16 autocast on CUDA or on the CPU (optim.amp / optim.amp_cpu).
#include "cprfl/common/torch_compat.h"

namespace cprfl {

// bf16 autocast for one forward pass on `device`, off again (and its cast cache cleared) when
// the scope ends, also by an exception.
class BFloat16Autocast {
 public:
  explicit BFloat16Autocast(const torch::Device& device) : cuda_(device.is_cuda()) {
    torch_compat::set_autocast(device_type(), true);
  }
  ~BFloat16Autocast() {
    torch_compat::set_autocast(device_type(), false);
    at::autocast::clear_cache();
  }
  BFloat16Autocast(const BFloat16Autocast&) = delete;
  BFloat16Autocast& operator=(const BFloat16Autocast&) = delete;

 private:
  torch::DeviceType device_type() const { return cuda_ ? torch::kCUDA : torch::kCPU; }
  bool cuda_;
};

}  // namespace cprfl
