#include "cprfl/io/state_dict.h"

#include <sstream>
#include <unordered_set>

#include "cprfl/common/error.h"

namespace cprfl {

std::string key_list(const std::string& what, const std::vector<std::string>& names) {
  // At most a few names, so that a wholly wrong file still gives a readable message.
  constexpr std::size_t kShown = 8;
  std::string text = what + (names.size() > 1 ? " keys " : " key ");
  for (std::size_t i = 0; i < names.size() && i < kShown; ++i) text += (i ? ", " : "") + names[i];
  if (names.size() > kShown) text += ", ... (" + std::to_string(names.size()) + " in all)";
  return text;
}

std::string shape_string(const torch::Tensor& tensor) {
  if (!tensor.defined()) return "undefined";
  std::ostringstream out;
  out << "[";
  for (int64_t i = 0; i < tensor.dim(); ++i) out << (i ? ", " : "") << tensor.size(i);
  out << "]";
  return out.str();
}

NamedTensors named_state(const torch::nn::Module& module) {
  NamedTensors state;
  auto add_own = [&state](const torch::nn::Module& owner, const std::string& prefix) {
    for (const auto& parameter : owner.named_parameters(/*recurse=*/false))
      state.emplace_back(prefix + parameter.key(), parameter.value());
    for (const auto& buffer : owner.named_buffers(/*recurse=*/false))
      if (buffer.value().defined()) state.emplace_back(prefix + buffer.key(), buffer.value());
  };
  add_own(module, "");
  // include_self=false: the top module need not live in a shared_ptr.
  for (const auto& item : module.named_modules("", /*include_self=*/false)) add_own(*item.value(), item.key() + ".");
  return state;
}

void load_named_state(torch::nn::Module& module, const NamedTensors& state, const std::string& source,
                      const LoadStateOptions& options) {
  std::unordered_map<std::string, torch::Tensor> targets;
  std::vector<std::string> target_order;
  for (auto& [name, tensor] : named_state(module)) {
    targets.emplace(name, tensor);
    target_order.push_back(name);
  }

  // Every check before the first copy: a failed load leaves the module as it was.
  std::unordered_set<std::string> seen;                    // the state's keys
  std::unordered_map<std::string, std::string> loaded_from;  // module key → the state's key
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (module tensor, state tensor)
  std::vector<std::string> unexpected;
  for (const auto& [name, tensor] : state) {
    const std::optional<std::string> key = options.rename ? options.rename(name) : std::optional<std::string>(name);
    if (!key) continue;  // left out on purpose
    if (!seen.insert(name).second) fail_in(source, "key " + name + " appears more than once");
    auto target = targets.find(*key);
    if (target == targets.end()) {
      unexpected.push_back(name);
      continue;
    }
    auto [other, first] = loaded_from.emplace(*key, name);
    if (!first) fail_in(source, "keys " + other->second + " and " + name + " both load into " + *key);
    if (!tensor.defined()) fail_in(source, "key " + name + " holds no tensor");
    if (tensor.sizes() != target->second.sizes())
      fail_in(source, "shape mismatch for " + name + ": the " + options.state_noun + " has " + shape_string(tensor) +
                          ", the " + options.module_noun + " expects " + shape_string(target->second) +
                          options.mismatch_hint);
    copies.emplace_back(target->second, tensor);
  }
  std::vector<std::string> missing;
  for (const auto& name : target_order) {
    if (loaded_from.count(name) || (options.may_be_missing && options.may_be_missing(name))) continue;
    missing.push_back((options.state_name ? options.state_name(name) : name) + " " + shape_string(targets.at(name)));
  }
  if (!unexpected.empty())
    fail_in(source, key_list("unexpected", unexpected) + " (not in the " + options.module_noun + ")");
  if (!missing.empty())
    fail_in(source, key_list("missing", missing) + " (the " + options.module_noun + " has them, the " +
                        options.state_noun + " does not)");

  torch::NoGradGuard no_grad;
  for (auto& [target, tensor] : copies) target.copy_(tensor);
}

void load_named_state(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& state,
                      const std::string& source, const LoadStateOptions& options) {
  load_named_state(module, NamedTensors(state.begin(), state.end()), source, options);
}

void load_named_state(torch::nn::Module& module, const std::unordered_map<std::string, torch::Tensor>& state,
                      const std::string& source, const LoadStateOptions& options) {
  load_named_state(module, NamedTensors(state.begin(), state.end()), source, options);
}

}  // namespace cprfl
