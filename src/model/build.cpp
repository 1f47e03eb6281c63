#include "cprfl/model/build.h"

#include <cmath>

#include "cprfl/clip/checkpoint.h"
#include "cprfl/clip/prompts.h"
#include "cprfl/common/error.h"
#include "cprfl/common/text.h"
#include "cprfl/data/list_file.h"
#include "cprfl/io/npy.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/io/torch_file.h"
#include "cprfl/model/clip_visual.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/io/state_dict.h"

namespace cprfl {

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& field) {
  std::vector<int64_t> values;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    auto value = parse_int(trim(std::string_view(text).substr(start, comma - start)));
    if (!value || *value <= 0) throw Error(field + " = '" + text + "': expected positive integers separated by commas");
    values.push_back(*value);
    start = comma + 1;
  }
  return values;
}

SmallResNetOptions small_backbone_options(const Config& config) {
  SmallResNetOptions options;
  options.widths = parse_int_list(config.get_string("model.small_widths"), "model.small_widths");
  options.blocks = parse_int_list(config.get_string("model.small_blocks"), "model.small_blocks");
  if (options.widths.size() != options.blocks.size())
    throw Error("model.small_widths and model.small_blocks must list the same number of stages");
  return options;
}

torch::Tensor load_prompt_embeddings(const Config& config, int64_t num_classes) {
  const std::string& source = config.get_string("prompts.source");
  if (source == "npy") {
    const std::string& path = config.get_string("prompts.file");
    auto embeddings = read_npy(path);
    if (embeddings.dim() != 2)
      fail_in(path, "prompt embeddings must be a 2-D array [classes, width], got " + std::to_string(embeddings.dim()) + "-D");
    if (embeddings.size(0) != num_classes) {
      fail_in(path, "has " + std::to_string(embeddings.size(0)) + " rows but the labels file has " +
                        std::to_string(num_classes) + " classes");
    }
    return embeddings.to(torch::kFloat).contiguous();
  }
  if (source == "clip") {
    // The text encoder runs once here; W is then stored in the model file like any other W.
    const std::string& checkpoint = config.get_string("prompts.checkpoint");
    if (checkpoint.empty()) throw Error("prompts.source = clip needs prompts.checkpoint (a CLIP checkpoint file)");
    const std::string& labels = config.get_string("data.labels");
    auto names = read_labels(labels);
    if (static_cast<int64_t>(names.size()) != num_classes)
      fail_in(labels, "has " + std::to_string(names.size()) + " classes but the model has " + std::to_string(num_classes));
    return clip::encode_class_prompts(checkpoint, names, config.get_string("prompts.template"));
  }
  // randn: the paper's ablation. Rows rescaled to a CLIP-like norm, since the scale of W
  // matters to PI (docs/METHOD.md §2).
  auto generator = at::detail::createCPUGenerator(static_cast<uint64_t>(config.get_int("train.seed")) + 7919);
  auto w = at::randn({num_classes, config.get_int("prompts.randn_dim")}, generator, torch::kFloat);
  return w / w.norm(2, 1, true) * config.get_float("prompts.randn_norm");
}

namespace {

// Models above this many parameters (4 bytes each) are refused before anything is allocated:
// a model file's config is outside input. The paper's ResNet-101 + CPRFL has about 92 M.
constexpr double kMaxParameters = 250e6;

// The parameter count the config describes, from its weight matrices (biases and norms are
// negligible). Doubles: absurd sizes must not overflow before they are refused.
double estimated_parameters(const Config& config, int64_t num_classes, int64_t prompt_width) {
  const std::string& backbone = config.get_string("model.backbone");
  double total = 0, out_channels = 2048;
  if (backbone == "small") {
    SmallResNetOptions small = small_backbone_options(config);
    double in = 3;
    for (std::size_t i = 0; i < small.widths.size(); ++i) {
      double width = static_cast<double>(small.widths[i]);
      total += 9 * in * width + in * width + static_cast<double>(small.blocks[i]) * 2 * 9 * width * width;
      in = width;
    }
    out_channels = in;
  } else {
    total += 45e6;  // torchvision ResNets: 11.7 M (18) to 44.5 M (101)
    if (backbone == "resnet18" || backbone == "resnet34") out_channels = 512;
  }
  const double classes = static_cast<double>(num_classes);
  if (config.get_string("model.type") == "linear") return total + out_channels * classes;
  const double d = static_cast<double>(config.get_int("model.d"));
  const double hidden = config.get_float("model.tau") * d;
  const double inner = static_cast<double>(config.get_int("model.heads")) * static_cast<double>(config.get_int("model.head_dim"));
  const double ffn = static_cast<double>(config.get_int("model.ffn"));
  const double layers = static_cast<double>(config.get_int("model.depth"));
  const double width = static_cast<double>(prompt_width);
  return total + classes * width + width * hidden + hidden * d + out_channels * d + layers * (4 * d * inner + 2 * d * ffn);
}

}  // namespace

std::shared_ptr<MultiLabelClassifier> build_model(const Config& config, int64_t num_classes,
                                                  const torch::Tensor& prompt_embeddings) {
  if (config.get_string("model.type") == "cprfl") {
    for (const char* key : {"model.d", "model.heads", "model.head_dim", "model.ffn", "model.depth"})
      if (config.get_int(key) < 1) throw Error(std::string(key) + " must be at least 1, got " + std::to_string(config.get_int(key)));
    const double dropout = config.get_float("model.dropout");
    if (!(dropout >= 0 && dropout < 1)) throw Error("model.dropout must be in [0, 1), got " + std::to_string(dropout));
  }
  const double parameters =
      estimated_parameters(config, num_classes, prompt_embeddings.defined() ? prompt_embeddings.size(-1) : 0);
  if (!(parameters <= kMaxParameters)) {
    throw Error("model: the config describes about " + std::to_string(static_cast<long long>(std::min(parameters, 1e18) / 1e6)) +
                " M parameters, more than the limit of " + std::to_string(static_cast<long long>(kMaxParameters / 1e6)) +
                " M (check model.d, model.heads, model.head_dim, model.ffn, model.depth and model.small_widths)");
  }
  auto backbone = make_backbone(config.get_string("model.backbone"), small_backbone_options(config));
  if (config.get_string("model.type") == "linear")
    return LinearHeadModel(backbone.module, num_classes).ptr();
  CprflOptions options;
  options.dim = config.get_int("model.d");
  options.prompt_hidden_ratio = config.get_float("model.tau");
  options.interaction.depth = config.get_int("model.depth");
  options.interaction.heads = config.get_int("model.heads");
  options.interaction.head_dim = config.get_int("model.head_dim");
  options.interaction.ffn_dim = config.get_int("model.ffn");
  options.interaction.dropout = config.get_float("model.dropout");
  options.interaction.residual = config.get_bool("model.residual");
  options.detach_classifier_path = config.get_bool("model.detach_classifier_path");
  options.detach_interaction_path = config.get_bool("model.detach_interaction_path");
  if (!prompt_embeddings.defined() || prompt_embeddings.size(0) != num_classes)
    throw Error("model: prompt embeddings must have one row per class (" + std::to_string(num_classes) + ")");
  return CprflModel(backbone.module, prompt_embeddings, options).ptr();
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
