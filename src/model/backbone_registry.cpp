#include "cprfl/model/backbone_registry.h"

#include "cprfl/common/error.h"
#include "cprfl/model/clip_visual.h"
#include "cprfl/model/resnet.h"

namespace cprfl {
namespace {

// Parameter counts of the fixed trunks, from the reference implementations: torchvision's
// resnetN without fc.*, and OpenAI CLIP's `visual` module (ModifiedResNet with its attention
// pool; ViT with ln_post and proj), at each tower's own input size. tests/test_backbone.cpp
// builds each (but the largest) and counts.
struct FixedTrunk {
  const char* name;
  int64_t out_channels;
  int64_t parameters;
};
constexpr FixedTrunk kTorchvision[] = {
    {"resnet18", 512, 11176512}, {"resnet34", 512, 21284672}, {"resnet50", 2048, 23508032}, {"resnet101", 2048, 42500160}};
constexpr FixedTrunk kClip[] = {
    {"clip_rn50", 2048, 38316896},     {"clip_rn101", 2048, 56259936},   {"clip_rn50x4", 2560, 87137080},
    {"clip_rn50x16", 3072, 167328912}, {"clip_rn50x64", 4096, 420380352}, {"clip_vit_b32", 768, 87849216},
    {"clip_vit_b16", 768, 86192640},   {"clip_vit_l14", 1024, 303966208}, {"clip_vit_l14_336", 1024, 304293888}};

std::vector<BackboneInfo> make_registry() {
  std::vector<BackboneInfo> registry;
  for (const auto& trunk : kTorchvision) {
    const int64_t depth = std::stoll(std::string(trunk.name).substr(6));
    registry.push_back({trunk.name, "torchvision ResNet-" + std::to_string(depth), trunk.out_channels, trunk.parameters,
                        [depth](const SmallResNetOptions&) -> std::shared_ptr<Backbone> { return ResNet(depth).ptr(); }});
  }
  registry.push_back({"small", "a few BasicBlocks, stride 8 (model.small_widths / model.small_blocks)", 0, 0,
                      [](const SmallResNetOptions& small) -> std::shared_ptr<Backbone> { return SmallResNet(small).ptr(); }});
  for (const auto& trunk : kClip) {
    const std::string name = trunk.name;
    registry.push_back({name, "OpenAI CLIP " + clip_visual_spec(name).openai + " image tower", trunk.out_channels,
                        trunk.parameters, [name](const SmallResNetOptions&) -> std::shared_ptr<Backbone> {
                          return make_clip_visual(clip_visual_spec(name));
                        }});
  }
  return registry;
}

// 3×3 stem conv and BatchNorm, then per stage: BasicBlocks of two 3×3 convs with BatchNorm,
// and a 1×1 projection with BatchNorm where the width or resolution changes.
double small_parameters(const SmallResNetOptions& small) {
  double in = small.widths.empty() ? 0 : static_cast<double>(small.widths[0]);
  double total = 27 * in + 2 * in;
  for (std::size_t i = 0; i < small.widths.size() && i < small.blocks.size(); ++i) {
    const double width = static_cast<double>(small.widths[i]);
    const int64_t stride = i == 0 && small.stem_stride != 0 ? 2 / small.stem_stride : 2;
    // The first block takes `in` channels; the others `width` (each: two convs, two norms).
    total += 9 * in * width + 9 * width * width + 4 * width +
             static_cast<double>(small.blocks[i] - 1) * (18 * width * width + 4 * width);
    if (stride != 1 || in != width) total += in * width + 2 * width;
    in = width;
  }
  return total;
}

}  // namespace

const std::vector<BackboneInfo>& backbone_registry() {
  static const std::vector<BackboneInfo> registry = make_registry();
  return registry;
}

const BackboneInfo& backbone_info(const std::string& name) {
  for (const auto& info : backbone_registry())
    if (info.name == name) return info;
  std::string valid;
  for (const auto& known : backbone_names()) valid += (valid.empty() ? "" : ", ") + known;
  fail_in("backbone", "unknown backbone '" + name + "' (choose one of " + valid + ")");
}

std::vector<std::string> backbone_names() {
  std::vector<std::string> names;
  for (const auto& info : backbone_registry()) names.push_back(info.name);
  return names;
}

int64_t backbone_out_channels(const std::string& name, const SmallResNetOptions& small) {
  if (name == "small") return small.widths.empty() ? 0 : small.widths.back();
  return backbone_info(name).out_channels;
}

double backbone_parameters(const std::string& name, const SmallResNetOptions& small) {
  if (name == "small") return small_parameters(small);
  return static_cast<double>(backbone_info(name).parameters);
}

BuiltBackbone make_backbone(const std::string& name, const SmallResNetOptions& small) {
  auto module = backbone_info(name).build(small);
  return {module, module->out_channels()};
}

}  // namespace cprfl
