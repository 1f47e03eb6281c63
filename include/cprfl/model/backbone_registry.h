#pragma once
// One registry of the trunks this library builds — name, feature width d0, exact parameter
// count and builder — used by the model factory, the model-size check and the config
// schema's list of choices.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cprfl/model/backbone.h"

namespace cprfl {

struct BuiltBackbone {
  std::shared_ptr<Backbone> module;
  int64_t out_channels = 0;  // d0
};

struct BackboneInfo {
  std::string name;           // "resnet101", "clip_vit_b16", "small", ...
  std::string description;
  // d0 and the number of parameters (weights; BatchNorm running statistics are buffers, not
  // counted). For "small" both depend on SmallResNetOptions: see backbone_out_channels/_parameters.
  int64_t out_channels = 0;
  int64_t parameters = 0;
  std::function<std::shared_ptr<Backbone>(const SmallResNetOptions& small)> build;
};

// Every backbone, in the order `--list-keys` shows them.
const std::vector<BackboneInfo>& backbone_registry();
// The entry of `name`, or a cprfl::Error listing the valid names.
const BackboneInfo& backbone_info(const std::string& name);
std::vector<std::string> backbone_names();

// d0 and the exact parameter count of a backbone (for "small", of the one `small` describes;
// a double, so that absurd options from a hostile file cannot overflow before they are refused).
int64_t backbone_out_channels(const std::string& name, const SmallResNetOptions& small = {});
double backbone_parameters(const std::string& name, const SmallResNetOptions& small = {});

// "resnet18" | "resnet34" | "resnet50" | "resnet101" | "small" (built from `small`) | a CLIP
// image tower: "clip_rn50", "clip_vit_b16", ... (cprfl/model/clip_visual.h).
// An unknown name is a cprfl::Error listing the valid ones.
BuiltBackbone make_backbone(const std::string& name, const SmallResNetOptions& small = {});

}  // namespace cprfl
