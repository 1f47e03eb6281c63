#pragma once
// Compute devices by name: "auto" (CUDA when this LibTorch build sees a GPU, else the CPU),
// "cpu", "cuda" (the current GPU) or "cuda:N".
#include <torch/torch.h>

#include <string>

namespace cprfl {

// Empty when `name` is a well-formed device name, else why not (for option and config errors).
std::string device_name_problem(const std::string& name);

// The device `name` stands for; asking for a GPU that is not there is an error naming it.
torch::Device pick_device(const std::string& name);

// Lets cuBLAS and cuDNN use TF32 (10-bit mantissa) for float32 matrix products and
// convolutions, or forbids it. LibTorch's own default allows it in cuDNN; cprfl decides
// explicitly so that float32 on a GPU means float32 unless the user opts in.
void allow_cuda_tf32(bool allow);

// Moves a batch to `device`: a no-op on the CPU. A page-locked (pinned) batch — what the data
// loader makes for a CUDA run — is copied asynchronously, so the transfer overlaps the work
// already queued on the GPU; LibTorch's pinned-memory cache keeps its block from reuse until
// the copy is done.
torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device);

}  // namespace cprfl
