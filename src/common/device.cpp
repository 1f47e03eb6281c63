#include "cprfl/common/device.h"

#include <cctype>

#include "cprfl/common/error.h"

namespace cprfl {

std::string device_name_problem(const std::string& name) {
  if (name == "auto" || name == "cpu" || name == "cuda") return "";
  const std::string prefix = "cuda:";
  if (name.rfind(prefix, 0) == 0 && name.size() > prefix.size() && name.size() <= prefix.size() + 3) {
    bool digits = true;
    for (std::size_t i = prefix.size(); i < name.size(); ++i) digits = digits && std::isdigit(static_cast<unsigned char>(name[i]));
    if (digits) return "";
  }
  return "'" + name + "' is not a device: use auto, cpu, cuda or cuda:N (N = GPU index)";
}

torch::Device pick_device(const std::string& name) {
  if (auto problem = device_name_problem(name); !problem.empty()) throw Error(problem);
  if (name == "cpu" || (name == "auto" && !torch::cuda::is_available())) return torch::Device(torch::kCPU);
  if (!torch::cuda::is_available())
    throw Error("device " + name + " was asked for, but this LibTorch build sees no CUDA GPU" +
                (torch::cuda::device_count() == 0 ? " (a CPU-only LibTorch, or no driver/GPU here)" : ""));
  if (name == "auto" || name == "cuda") return torch::Device(torch::kCUDA);
  const int index = std::stoi(name.substr(5));
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (index >= count)
    throw Error("device " + name + " was asked for, but only " + std::to_string(count) + " GPU" + (count == 1 ? "" : "s") +
                " (cuda:0" + (count > 1 ? "–cuda:" + std::to_string(count - 1) : "") + ") are visible");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void allow_cuda_tf32(bool allow) {
  at::globalContext().setAllowTF32CuBLAS(allow);
  at::globalContext().setAllowTF32CuDNN(allow);
}

torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda()) return host.to(device);
  return host.to(device, /*non_blocking=*/host.is_pinned());
}

}  // namespace cprfl
