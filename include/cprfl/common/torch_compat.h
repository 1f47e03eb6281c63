#pragma once
// The one place that knows which LibTorch generation cprfl is built against: Debian's 1.13 or a
// 2.x (the PyPI wheel's, or the zip from the PyTorch site). Every API whose spelling differs
// between them is wrapped here, so the rest of the code has no version #ifs.
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>

#define CPRFL_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace cprfl::torch_compat {

// Turns autocast on (to `dtype`) or off for one device type (kCPU or kCUDA). 2.4 replaced the
// per-backend setters with ones that take the device type; the old ones are deprecated there.
inline void set_autocast(torch::DeviceType device, bool enabled, at::ScalarType dtype = at::kBFloat16) {
#if CPRFL_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_dtype(device, dtype);
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (device == torch::kCUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

// Fused attention softmax(q kᵀ/√d) v: 1.13 has it only as the internal
// at::_scaled_dot_product_attention (returning a pair); 2.0 made it public.
inline torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                  const torch::Tensor& v) {
#if CPRFL_TORCH_AT_LEAST(2, 0)
  return at::scaled_dot_product_attention(q, k, v);
#else
  return std::get<0>(at::_scaled_dot_product_attention(q, k, v));
#endif
}

// The key of `parameter` in torch::optim::Optimizer::state(): its TensorImpl's address, which
// 1.13 spells as a string and later versions keep as the pointer. Decided by the map's own
// key type, not by version number (a template, so only the matching branch is compiled).
template <typename OptimizerT>
auto optimizer_state_key(OptimizerT& optimizer, const torch::Tensor& parameter) {
  using Key = typename std::decay_t<decltype(optimizer.state())>::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream key;
    key << parameter.unsafeGetTensorImpl();
    return key.str();
  } else {
    return static_cast<Key>(parameter.unsafeGetTensorImpl());
  }
}

}  // namespace cprfl::torch_compat
