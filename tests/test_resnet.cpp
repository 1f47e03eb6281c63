#include <gtest/gtest.h>

#include <functional>
#include <map>

#include "cprfl/common/error.h"
#include "cprfl/model/classifier.h"
#include "cprfl/model/backbone_registry.h"
#include "cprfl/model/resnet.h"
#include "cprfl/io/state_dict.h"
#include "test_support.h"

using cprfl::testing::error_of;

using namespace cprfl;

namespace {


std::map<std::string, torch::Tensor> state_map(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> map;
  for (const auto& [name, tensor] : named_state(module)) map.emplace(name, tensor);
  return map;
}

std::vector<int64_t> shape_of(const std::map<std::string, torch::Tensor>& state, const std::string& key) {
  auto it = state.find(key);
  if (it == state.end()) return {};
  return it->second.sizes().vec();
}

}  // namespace

TEST(ResNet, ResNet50StateNamesAndShapesMatchTorchvision) {
  ResNet net(50);
  auto state = state_map(*net);
  // torchvision resnet50().state_dict() has 320 entries, 2 of them fc.*.
  EXPECT_EQ(state.size(), 318u);
  EXPECT_EQ(shape_of(state, "conv1.weight"), (std::vector<int64_t>{64, 3, 7, 7}));
  EXPECT_EQ(shape_of(state, "bn1.running_mean"), (std::vector<int64_t>{64}));
  ASSERT_TRUE(state.count("bn1.num_batches_tracked"));
  EXPECT_EQ(state.at("bn1.num_batches_tracked").scalar_type(), torch::kLong);
  EXPECT_EQ(shape_of(state, "layer1.0.conv1.weight"), (std::vector<int64_t>{64, 64, 1, 1}));
  EXPECT_EQ(shape_of(state, "layer1.0.downsample.0.weight"), (std::vector<int64_t>{256, 64, 1, 1}));
  EXPECT_EQ(shape_of(state, "layer1.0.downsample.1.running_var"), (std::vector<int64_t>{256}));
  EXPECT_EQ(shape_of(state, "layer2.0.conv2.weight"), (std::vector<int64_t>{128, 128, 3, 3}));
  EXPECT_EQ(shape_of(state, "layer3.5.bn3.weight"), (std::vector<int64_t>{1024}));
  EXPECT_EQ(shape_of(state, "layer4.2.conv3.weight"), (std::vector<int64_t>{2048, 512, 1, 1}));
  EXPECT_FALSE(state.count("layer1.1.downsample.0.weight"));
  EXPECT_FALSE(state.count("fc.weight"));
  EXPECT_EQ(named_state(*net).front().first, "conv1.weight");  // PyTorch's order
  EXPECT_EQ(net->out_channels(), 2048);
}

TEST(ResNet, BlockCountsAndBasicBlockNames) {
  auto r18 = state_map(*ResNet(18));
  EXPECT_EQ(r18.size(), 122u - 2u);  // torchvision resnet18: 122 entries with fc
  EXPECT_EQ(shape_of(r18, "layer2.0.downsample.0.weight"), (std::vector<int64_t>{128, 64, 1, 1}));
  EXPECT_FALSE(r18.count("layer1.0.downsample.0.weight"));
  EXPECT_FALSE(r18.count("layer1.0.conv3.weight"));
  auto r101 = state_map(*ResNet(101));
  EXPECT_TRUE(r101.count("layer3.22.conv3.weight"));
  EXPECT_FALSE(r101.count("layer3.23.conv1.weight"));
  EXPECT_NE(error_of([] { ResNet(42); }).find("depth 42"), std::string::npos);
}

TEST(ResNet, LoadsANamedStateAndReportsMismatches) {
  ResNet source(18), target(18);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : named_state(*source))
      if (tensor.is_floating_point()) tensor.uniform_();
  }
  load_named_state(*target, named_state(*source), "r18.pth");
  auto loaded = state_map(*target);
  for (auto& [name, tensor] : named_state(*source)) ASSERT_TRUE(torch::equal(tensor, loaded.at(name))) << name;

  auto state = state_map(*source);
  auto extra = state;
  extra["fc.weight"] = torch::zeros({1000, 512});
  EXPECT_NE(error_of([&] { load_named_state(*target, extra, "r18.pth"); }).find("unexpected key fc.weight"),
            std::string::npos);
  auto missing = state;
  missing.erase("layer2.0.downsample.1.running_mean");
  EXPECT_NE(error_of([&] { load_named_state(*target, missing, "r18.pth"); })
                .find("missing key layer2.0.downsample.1.running_mean"),
            std::string::npos);
  auto wrong = state;
  wrong["conv1.weight"] = torch::zeros({64, 3, 3, 3});
  auto message = error_of([&] { load_named_state(*target, wrong, "r18.pth"); });
  EXPECT_NE(message.find("r18.pth: shape mismatch for conv1.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("[64, 3, 3, 3]"), std::string::npos) << message;
  EXPECT_NE(message.find("[64, 3, 7, 7]"), std::string::npos) << message;
  // All-or-nothing: the failed loads changed nothing.
  for (auto& [name, tensor] : named_state(*target)) ASSERT_TRUE(torch::equal(tensor, state.at(name))) << name;
}

TEST(ResNet, ResNet101At448GivesA14x14Map) {
  torch::NoGradGuard no_grad;
  auto built = make_backbone("resnet101");
  EXPECT_EQ(built.out_channels, 2048);
  built.module->eval();
  auto out = built.module->forward(torch::randn({1, 3, 448, 448}));
  EXPECT_EQ(out.sizes().vec(), (std::vector<int64_t>{1, 2048, 14, 14}));
}

TEST(ResNet, SmallResNetHasStride8AndASeparableHead) {
  auto built = make_backbone("small");
  EXPECT_EQ(built.out_channels, 128);
  EXPECT_EQ(built.module->stride(), 8);
  auto map = built.module->forward(torch::randn({2, 3, 64, 64}));
  EXPECT_EQ(map.sizes().vec(), (std::vector<int64_t>{2, 128, 8, 8}));
  EXPECT_EQ(built.module->forward(torch::randn({2, 3, 28, 28})).sizes().vec(), (std::vector<int64_t>{2, 128, 4, 4}));

  // Pretraining classifier on 28x28 items: trunk + pool + Linear(d0, 10).
  LinearHeadModel classifier(built.module, 10);
  EXPECT_EQ(classifier->forward(torch::randn({3, 3, 28, 28})).sizes().vec(), (std::vector<int64_t>{3, 10}));
  // The trunk's weights alone (no head keys) move to a fresh trunk.
  auto trunk_state = named_state(*classifier->backbone());
  EXPECT_EQ(trunk_state.front().first, "conv1.weight");
  auto fresh = make_backbone("small");
  load_named_state(*fresh.module, trunk_state, "trunk");
  EXPECT_TRUE(torch::equal(state_map(*fresh.module).at("layer3.0.conv2.weight"),
                           state_map(*built.module).at("layer3.0.conv2.weight")));

  SmallResNetOptions wide;
  wide.widths = {32, 64, 256};
  wide.stem_stride = 1;  // the first halving in layer1 instead of the stem: same 8x8 map
  auto wide_trunk = make_backbone("small", wide);
  EXPECT_EQ(wide_trunk.out_channels, 256);
  EXPECT_EQ(wide_trunk.module->forward(torch::randn({1, 3, 64, 64})).sizes().vec(),
            (std::vector<int64_t>{1, 256, 8, 8}));
  SmallResNetOptions bad;
  bad.blocks = {1, 1};
  EXPECT_NE(error_of([&] { make_backbone("small", bad); }).find("as many widths as block counts"), std::string::npos);
  EXPECT_NE(error_of([] { make_backbone("vgg16"); }).find("unknown backbone 'vgg16'"), std::string::npos);
}

TEST(ResNet, ParameterGroupsSplitBackboneAndDecay) {
  LinearHeadModel model(make_backbone("small").module, 5);
  auto groups = model->parameter_groups();
  ASSERT_EQ(groups.size(), 4u);
  std::map<std::string, std::string> group_of;
  for (const auto& group : groups)
    for (const auto& name : group.names) group_of[name] = group.name;
  EXPECT_EQ(group_of["backbone.conv1.weight"], "backbone");
  EXPECT_EQ(group_of["backbone.bn1.weight"], "backbone_no_decay");
  EXPECT_EQ(group_of["head.fc.weight"], "head");
  EXPECT_EQ(group_of["head.fc.bias"], "head_no_decay");
  EXPECT_EQ(group_of.size(), model->parameters().size());
}
