#include "cprfl/model/build.h"

#include <cmath>

#include "cprfl/clip/prompts.h"
#include "cprfl/common/error.h"
#include "cprfl/common/text.h"
#include "cprfl/data/list_file.h"
#include "cprfl/io/npy.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/io/torch_file.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/model/state_dict.h"

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
  // matters to PI (METHOD.md §2).
  auto generator = at::detail::createCPUGenerator(static_cast<uint64_t>(config.get_int("train.seed")) + 7919);
  auto w = at::randn({num_classes, config.get_int("prompts.randn_dim")}, generator, torch::kFloat);
  return w / w.norm(2, 1, true) * config.get_float("prompts.randn_norm");
}

std::shared_ptr<MultiLabelClassifier> build_model(const Config& config, int64_t num_classes,
                                                  const torch::Tensor& prompt_embeddings) {
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
