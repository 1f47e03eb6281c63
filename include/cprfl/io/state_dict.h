#pragma once
// A module's tensors by name, in PyTorch's state_dict naming and order ("layer1.0.conv1.weight",
// "bn1.running_mean", "bn1.num_batches_tracked", ...), and strict loading of such a map.
#include <functional>
#include <map>
#include <optional>
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

// How load_named_state matches a state whose names are not the module's own (a checkpoint of
// another program, a state under a prefix). Every field is optional; the defaults load a
// state named exactly as named_state(module) names it.
struct LoadStateOptions {
  // Maps a key of the state to the module key it loads into, or to std::nullopt to leave the
  // entry out (it is then neither loaded nor checked: the text side of a CLIP file, ...). A key
  // mapped to a name the module lacks (for instance "") is an unexpected key. Unset: each key
  // is its own module key. Errors always name the state's key, never the mapped one.
  std::function<std::optional<std::string>(const std::string&)> rename;
  // The inverse, for "missing key" messages: a module key → what the state would call it.
  // Unset: the module key itself.
  std::function<std::string(const std::string&)> state_name;
  // Module keys that the state may lack; those keep their current values. Unset: none.
  std::function<bool(const std::string&)> may_be_missing;
  // Wording of the messages: "the <state_noun> has [..], the <module_noun> expects [..]
  // <mismatch_hint>", "(not in the <module_noun>)", ...
  std::string state_noun = "state";
  std::string module_noun = "model";
  std::string mismatch_hint;  // appended to a shape-mismatch message, e.g. " (is ... the right model?)"
};

// Copies every tensor of `state` into the module's parameter or buffer of the same name (or
// of the name options.rename gives; dtype and device are converted). Strict, and
// all-or-nothing: a key the module lacks, a module tensor the state lacks, a repeated key,
// two keys loading into one tensor, an undefined tensor or a shape mismatch throws
// cprfl::Error ("<source>: ...") naming the key (and both shapes; a missing key with the
// module's shape) before anything is copied.
// `source` names where the tensors came from (a file path, "torchvision state dict", ...).
void load_named_state(torch::nn::Module& module, const NamedTensors& state, const std::string& source,
                      const LoadStateOptions& options = {});
void load_named_state(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& state,
                      const std::string& source, const LoadStateOptions& options = {});
void load_named_state(torch::nn::Module& module, const std::unordered_map<std::string, torch::Tensor>& state,
                      const std::string& source, const LoadStateOptions& options = {});

// For errors: "<what> key a" or "<what> keys a, b, ... (12 in all)" (at most 8 names shown).
std::string key_list(const std::string& what, const std::vector<std::string>& names);

// "[64, 3, 7, 7]"
std::string shape_string(const torch::Tensor& tensor);

}  // namespace cprfl
