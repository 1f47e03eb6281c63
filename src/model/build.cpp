#include "cprfl/model/build.h"

#include <cmath>

#include "cprfl/clip/checkpoint.h"
#include "cprfl/common/error.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/io/torch_file.h"
#include "cprfl/model/backbone_registry.h"
#include "cprfl/model/clip_visual.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/io/state_dict.h"

namespace cprfl {

namespace {

// Heads (and small trunks) above this many parameters (4 bytes each) are refused before anything
// is allocated: a model file's config is outside input. The paper's CPRFL head has about 50 M.
constexpr double kMaxParameters = 250e6;

// The parameters the options size: the head and, for "small", the trunk (backbone.h counts it).
// The fixed trunks have known sizes (the registry's) and are not held to the limit.
// Doubles: absurd sizes must not overflow before they are refused.
double estimated_parameters(const ModelOptions& options, int64_t num_classes, int64_t prompt_width) {
  const double total = options.backbone == "small" ? backbone_parameters("small", options.small) : 0.0;
  const double out_channels = static_cast<double>(backbone_out_channels(options.backbone, options.small));
  const double classes = static_cast<double>(num_classes);
  if (options.type == "linear") return total + out_channels * classes;
  const auto& head = options.cprfl;
  const double d = static_cast<double>(head.dim);
  const double hidden = head.prompt_hidden_ratio * d;
  const double inner = static_cast<double>(head.interaction.heads) * static_cast<double>(head.interaction.head_dim);
  const double ffn = static_cast<double>(head.interaction.ffn_dim);
  const double layers = static_cast<double>(head.interaction.depth);
  const double width = static_cast<double>(prompt_width);
  return total + classes * width + width * hidden + hidden * d + out_channels * d + layers * (4 * d * inner + 2 * d * ffn);
}

}  // namespace

std::shared_ptr<MultiLabelClassifier> build_model(const ModelOptions& options, int64_t num_classes,
                                                  const torch::Tensor& prompt_embeddings) {
  const double parameters =
      estimated_parameters(options, num_classes, prompt_embeddings.defined() ? prompt_embeddings.size(-1) : 0);
  if (!(parameters <= kMaxParameters)) {
    throw Error("model: the config describes about " + std::to_string(static_cast<long long>(std::min(parameters, 1e18) / 1e6)) +
                " M parameters, more than the limit of " + std::to_string(static_cast<long long>(kMaxParameters / 1e6)) +
                " M (check model.d, model.heads, model.head_dim, model.ffn, model.depth and model.small_widths)");
  }
  auto backbone = make_backbone(options.backbone, options.small);
  if (options.type == "linear") return LinearHeadModel(backbone.module, num_classes, options.linear_head_zero_init).ptr();
  if (!prompt_embeddings.defined() || prompt_embeddings.size(0) != num_classes)
    throw Error("model: prompt embeddings must have one row per class (" + std::to_string(num_classes) + ")");
  return CprflModel(backbone.module, prompt_embeddings, options.cprfl).ptr();
}

void load_backbone_weights(MultiLabelClassifier& model, const std::string& path) {
  if (dynamic_cast<ClipVisualBackbone*>(model.backbone().get()) && looks_like_zip_file(path)) {
    // A CLIP checkpoint: its visual.* tensors (the text side is ignored).
    // A state dict or an OpenAI TorchScript archive, read for its tensors only.
    load_clip_visual_weights(*model.backbone(), clip::read_clip_checkpoint(path), path);
    return;
  }
  if (looks_like_zip_file(path)) {
    // A torch.save file (a torchvision state dict): the backbone takes everything but the
    // ImageNet classifier, floating tensors as float32 (a half-precision file is converted).
    NamedTensors state;
    for (auto& [name, tensor] : read_torch_state_dict(path)) {
      if (name == "fc.weight" || name == "fc.bias") continue;
      state.emplace_back(name, tensor.is_floating_point() ? tensor.to(torch::kFloat) : tensor);
    }
    load_named_state(*model.backbone(), state, path);
    return;
  }
  auto file = load_tensor_file(path);
  if (file.meta.value("kind", "") != "backbone")
    fail_in(path, "not a backbone weights file (made by `cprfl pretrain-backbone`)");
  load_named_state(*model.backbone(), tensors_with_prefix(file, "backbone."), path);
}

}  // namespace cprfl
