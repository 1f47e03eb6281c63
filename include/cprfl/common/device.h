#pragma once
// "auto" | "cpu" | "cuda" → a torch::Device; asking for CUDA without it is an error.
#include <torch/torch.h>

#include <string>

namespace cprfl {

torch::Device pick_device(const std::string& name);

}  // namespace cprfl
