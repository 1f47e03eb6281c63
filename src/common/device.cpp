#include "cprfl/common/device.h"

#include "cprfl/common/error.h"

namespace cprfl {

torch::Device pick_device(const std::string& name) {
  if (name != "auto" && name != "cpu" && name != "cuda")
    throw Error("device '" + name + "' is not one of auto, cpu, cuda");
  if (name == "cuda" && !torch::cuda::is_available())
    throw Error("device cuda was asked for, but no CUDA device is available to this LibTorch build");
  if (name == "cuda" || (name == "auto" && torch::cuda::is_available())) return torch::Device(torch::kCUDA);
  return torch::Device(torch::kCPU);
}

}  // namespace cprfl
