#pragma once
// A module's tensors by name, in PyTorch's state_dict naming and order ("layer1.0.conv1.weight",
// "bn1.running_mean", "bn1.num_batches_tracked", ...), and strict loading of such a map.
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <torch/nn/module.h>

namespace cprfl {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Parameters and buffers of every submodule, in PyTorch's state_dict order (each module's own
// parameters, then its own buffers, then its children in registration order). The tensors
// are the module's own (not copies).
NamedTensors named_state(const torch::nn::Module& module);

// Copies every tensor of `state` into the module's parameter or buffer of the same name
// (dtype and device are converted). Strict, and all-or-nothing: a key the module lacks, a
// module tensor the state lacks, a repeated key or a shape mismatch throws cprfl::Error
// ("<source>: ...") naming the key (and both shapes) before anything is copied.
// `source` names where the tensors came from (a file path, "torchvision state dict", ...).
void load_named_state(torch::nn::Module& module, const NamedTensors& state, const std::string& source);
void load_named_state(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& state,
                      const std::string& source);
void load_named_state(torch::nn::Module& module,
                      const std::unordered_map<std::string, torch::Tensor>& state, const std::string& source);

// For errors: "<what> key a" or "<what> keys a, b, ... (12 in all)" (at most 8 names shown).
std::string key_list(const std::string& what, const std::vector<std::string>& names);

// "[64, 3, 7, 7]"
std::string shape_string(const torch::Tensor& tensor);

}  // namespace cprfl
