// load_named_state with a key-renaming hook (LoadStateOptions): renamed, dropped, missing,
// unexpected, colliding and mis-shaped keys, all named as the state names them.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>

#include <torch/torch.h>

#include "cprfl/io/state_dict.h"
#include "test_support.h"

using cprfl::testing::error_of;

using namespace cprfl;

namespace {

// A module with the tensors "fc.weight" [3, 2], "fc.bias" [3] and "bn.*" of a BatchNorm1d(3).
struct Tiny : torch::nn::Module {
  Tiny() {
    fc = register_module("fc", torch::nn::Linear(2, 3));
    bn = register_module("bn", torch::nn::BatchNorm1d(3));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

// The module's state under "net.", plus an "aux.*" entry that has no place in the module.
NamedTensors prefixed_state(const torch::nn::Module& module) {
  NamedTensors state;
  for (const auto& [name, tensor] : named_state(module)) state.emplace_back("net." + name, tensor.clone() + 1);
  state.emplace_back("aux.scale", torch::ones({7}));
  return state;
}

// net.<x> → <x>; aux.* left out; anything else has no place in the module.
LoadStateOptions under_net() {
  LoadStateOptions options;
  options.rename = [](const std::string& key) -> std::optional<std::string> {
    if (key.rfind("aux.", 0) == 0) return std::nullopt;
    if (key.rfind("net.", 0) == 0) return key.substr(4);
    return std::string();
  };
  options.state_name = [](const std::string& key) { return "net." + key; };
  options.state_noun = "checkpoint";
  options.module_noun = "tiny net";
  return options;
}

bool unchanged(const Tiny& module, const NamedTensors& before) {
  auto now = named_state(module);
  for (std::size_t i = 0; i < now.size(); ++i)
    if (!torch::equal(now[i].second, before[i].second)) return false;
  return true;
}

NamedTensors copy_of(const torch::nn::Module& module) {
  NamedTensors copy;
  for (const auto& [name, tensor] : named_state(module)) copy.emplace_back(name, tensor.clone());
  return copy;
}

}  // namespace

TEST(StateDictRenaming, RenamedKeysLoadAndDroppedKeysAreIgnored) {
  Tiny source, target;
  auto state = prefixed_state(source);
  load_named_state(target, state, "tiny.pt", under_net());
  auto loaded = named_state(target);
  ASSERT_EQ(loaded.size() + 1, state.size());
  for (std::size_t i = 0; i < loaded.size(); ++i) {
    EXPECT_EQ("net." + loaded[i].first, state[i].first);
    EXPECT_TRUE(torch::equal(loaded[i].second.to(state[i].second.scalar_type()), state[i].second)) << loaded[i].first;
  }
}

TEST(StateDictRenaming, MissingKeysUseTheStatesNamesAndShapes) {
  Tiny source, target;
  auto before = copy_of(target);
  auto state = prefixed_state(source);
  state.erase(std::remove_if(state.begin(), state.end(),
                             [](const auto& entry) { return entry.first == "net.bn.running_var"; }),
              state.end());
  auto message = error_of([&] { load_named_state(target, state, "tiny.pt", under_net()); });
  EXPECT_NE(message.find("tiny.pt: missing key net.bn.running_var [3] (the tiny net has them, the checkpoint does not)"),
            std::string::npos)
      << message;
  EXPECT_TRUE(unchanged(target, before));  // all or nothing

  // Unless the module key may be missing: then it keeps its value.
  auto options = under_net();
  options.may_be_missing = [](const std::string& key) { return key == "bn.running_var"; };
  load_named_state(target, state, "tiny.pt", options);
  auto kept = std::find_if(before.begin(), before.end(), [](const auto& entry) { return entry.first == "bn.running_var"; });
  ASSERT_NE(kept, before.end());
  EXPECT_TRUE(torch::equal(target.bn->running_var, kept->second));
  EXPECT_TRUE(torch::equal(target.fc->weight, source.fc->weight + 1));
}

TEST(StateDictRenaming, UnexpectedCollidingAndMisshapedKeysAreNamed) {
  Tiny source, target;
  auto before = copy_of(target);
  auto state = prefixed_state(source);
  state.emplace_back("head.weight", torch::zeros({1}));  // renamed to "": no place in the module
  auto message = error_of([&] { load_named_state(target, state, "tiny.pt", under_net()); });
  EXPECT_NE(message.find("tiny.pt: unexpected key head.weight (not in the tiny net)"), std::string::npos) << message;

  state = prefixed_state(source);
  state.emplace_back("net.extra", torch::zeros({1}));  // renamed to a name the module lacks
  message = error_of([&] { load_named_state(target, state, "tiny.pt", under_net()); });
  EXPECT_NE(message.find("unexpected key net.extra"), std::string::npos) << message;

  auto options = under_net();
  options.rename = [](const std::string& key) -> std::optional<std::string> {
    if (key == "old.fc.bias") return std::string("fc.bias");
    return key.rfind("net.", 0) == 0 ? std::optional<std::string>(key.substr(4)) : std::nullopt;
  };
  state = prefixed_state(source);
  state.emplace_back("old.fc.bias", torch::zeros({3}));
  message = error_of([&] { load_named_state(target, state, "tiny.pt", options); });
  EXPECT_NE(message.find("keys net.fc.bias and old.fc.bias both load into fc.bias"), std::string::npos) << message;

  state = prefixed_state(source);
  state.emplace_back("net.fc.bias", torch::zeros({3}));
  message = error_of([&] { load_named_state(target, state, "tiny.pt", under_net()); });
  EXPECT_NE(message.find("key net.fc.bias appears more than once"), std::string::npos) << message;

  state = prefixed_state(source);
  for (auto& [name, tensor] : state)
    if (name == "net.fc.weight") tensor = torch::zeros({2, 3});
  options = under_net();
  options.mismatch_hint = " (wrong net?)";
  message = error_of([&] { load_named_state(target, state, "tiny.pt", options); });
  EXPECT_NE(message.find("tiny.pt: shape mismatch for net.fc.weight: the checkpoint has [2, 3], the tiny net expects "
                         "[3, 2] (wrong net?)"),
            std::string::npos)
      << message;
  EXPECT_TRUE(unchanged(target, before));
}

TEST(StateDictRenaming, WithoutOptionsKeysAreTheModulesOwn) {
  Tiny source, target;
  auto state = named_state(source);
  state.emplace_back("aux.scale", torch::ones({7}));
  auto message = error_of([&] { load_named_state(target, state, "tiny.pt"); });
  EXPECT_NE(message.find("tiny.pt: unexpected key aux.scale (not in the model)"), std::string::npos) << message;
  state.pop_back();
  load_named_state(target, state, "tiny.pt");
  EXPECT_TRUE(torch::equal(target.fc->weight, source.fc->weight));
}
