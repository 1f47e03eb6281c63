// The backbone registry: each entry builds the trunk it names, with the width and parameter
// count it states (counts from torchvision's and OpenAI CLIP's own modules, recorded in
// src/model/backbone.cpp; checked here by building and counting).
#include <gtest/gtest.h>

#include <set>

#include "cprfl/config/config.h"
#include "cprfl/model/backbone_registry.h"
#include "test_support.h"

using namespace cprfl;
using cprfl::testing::error_of;

namespace {

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& parameter : module.parameters()) total += parameter.numel();
  return total;
}

}  // namespace

TEST(Backbone, EachEntryBuildsWhatItStates) {
  // The four largest CLIP towers (167-420 M parameters) are left out to keep the suite light.
  const std::set<std::string> too_big = {"clip_rn50x16", "clip_rn50x64", "clip_vit_l14", "clip_vit_l14_336"};
  int built = 0;
  for (const auto& info : backbone_registry()) {
    if (too_big.count(info.name)) continue;
    auto trunk = make_backbone(info.name);
    EXPECT_EQ(trunk.out_channels, backbone_out_channels(info.name)) << info.name;
    EXPECT_EQ(static_cast<double>(count_parameters(*trunk.module)), backbone_parameters(info.name)) << info.name;
    ++built;
  }
  EXPECT_EQ(built, 10);
}

TEST(Backbone, SmallTrunkCountFollowsItsOptions) {
  for (const SmallResNetOptions& options :
       {SmallResNetOptions{}, SmallResNetOptions{{8, 16, 16}, {1, 1, 1}}, SmallResNetOptions{{16, 16}, {2, 3}},
        SmallResNetOptions{{12, 24, 48, 96}, {2, 1, 2, 1}, 1}}) {
    auto trunk = make_backbone("small", options);
    EXPECT_EQ(static_cast<double>(count_parameters(*trunk.module)), backbone_parameters("small", options));
    EXPECT_EQ(trunk.out_channels, backbone_out_channels("small", options));
  }
}

TEST(Backbone, TheConfigOffersExactlyTheRegistry) {
  std::vector<std::string> offered;
  for (const auto& key : config_schema())
    if (key.key == "model.backbone") offered = key.choices;
  EXPECT_EQ(offered, backbone_names());
  EXPECT_NE(error_of([] { backbone_info("vgg16"); }).find("unknown backbone 'vgg16' (choose one of resnet18"),
            std::string::npos);
}
