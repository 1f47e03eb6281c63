#include "cprfl/config/import_official.h"

#include <algorithm>
#include <locale>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "cprfl/clip/text_encoder.h"
#include "cprfl/clip/tokenizer.h"
#include "cprfl/common/error.h"
#include "cprfl/common/text.h"
#include "cprfl/config/options.h"
#include "cprfl/data/class_stats.h"
#include "cprfl/data/list_file.h"
#include "cprfl/io/torch_file.h"
#include "cprfl/model/resnet.h"

namespace cprfl {
namespace {

const std::string kModulePrefix = "module.";
const std::string kTextPrefix = "text_encoder.";

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

// A double as text that reads back to the same value.
std::string exact_text(double value) {
  std::ostringstream out;
  out.imbue(std::locale::classic());
  out.precision(17);
  out << value;
  return out.str();
}

// The authors' Backbone = Sequential(conv1, bn1, relu, maxpool, layer1..layer4): child index
// → torchvision name (relu and maxpool hold no tensors).
const std::vector<std::pair<std::string, std::string>>& backbone_children() {
  static const std::vector<std::pair<std::string, std::string>> children = {
      {"Backbone.0.", "backbone.conv1."},  {"Backbone.1.", "backbone.bn1."},    {"Backbone.4.", "backbone.layer1."},
      {"Backbone.5.", "backbone.layer2."}, {"Backbone.6.", "backbone.layer3."}, {"Backbone.7.", "backbone.layer4."}};
  return children;
}

// Checkpoint name → our name ("" when it has no place in the model).
std::string to_model_name(const std::string& official) {
  for (const auto& [theirs, ours] : backbone_children())
    if (starts_with(official, theirs)) return ours + official.substr(theirs.size());
  for (const char* head : {"fc.", "label_emb.0.", "label_emb.3.", "attention."})
    if (starts_with(official, head)) return official;
  return "";
}

// Our name → the checkpoint's (for "missing key" messages).
std::string to_official_name(const std::string& ours) {
  for (const auto& [theirs, mine] : backbone_children())
    if (starts_with(ours, mine)) return theirs + ours.substr(mine.size());
  return ours;
}

// The text tensors of OpenAI's CLIP (what load_clip_text_encoder takes), under text_encoder.
bool is_text_tensor(const std::string& local) {
  return local == "token_embedding.weight" || local == "positional_embedding" || local == "text_projection" ||
         starts_with(local, "transformer.") || starts_with(local, "ln_final.");
}

class StateIndex {
 public:
  StateIndex(const NamedTensors& state, std::string source) : source_(std::move(source)) {
    for (const auto& [name, tensor] : state) tensors_.emplace(name, tensor);
  }
  const torch::Tensor* find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
  }
  // The tensor, which must exist with `rank` dimensions.
  const torch::Tensor& get(const std::string& name, int64_t rank, const std::string& what) const {
    const torch::Tensor* tensor = find(name);
    if (!tensor) fail_in(source_, "missing key " + name + " (" + what + "); is this a checkpoint of the authors' CPRFL code?");
    if (tensor->dim() != rank)
      fail_in(source_, "key " + name + " has shape " + shape_string(*tensor) + ", expected " + std::to_string(rank) + "-D (" + what + ")");
    return *tensor;
  }
  // Distinct integers <i> of the keys "<prefix><i>.*".
  std::set<int64_t> child_indices(const std::string& prefix) const {
    std::set<int64_t> indices;
    for (const auto& [name, tensor] : tensors_) {
      if (!starts_with(name, prefix)) continue;
      auto dot = name.find('.', prefix.size());
      auto index = parse_int(name.substr(prefix.size(), dot == std::string::npos ? std::string::npos : dot - prefix.size()));
      if (!index || *index < 0) fail_in(source_, "unexpected key " + name + " (expected " + prefix + "<number>.*)");
      indices.insert(*index);
    }
    return indices;
  }
  [[noreturn]] void bad(const std::string& message) const { fail_in(source_, message); }

 private:
  std::string source_;
  std::unordered_map<std::string, torch::Tensor> tensors_;
};

// 0..n-1 without gaps, else an error naming the first absent child.
int64_t count_children(const StateIndex& index, const std::string& prefix, const std::string& what) {
  auto indices = index.child_indices(prefix);
  if (indices.empty()) index.bad("missing keys " + prefix + "0.* (" + what + ")");
  int64_t expected = 0;
  for (int64_t i : indices) {
    if (i != expected) index.bad("missing keys " + prefix + std::to_string(expected) + ".* (" + what + "; " + prefix +
                                 std::to_string(i) + ".* exists)");
    ++expected;
  }
  return expected;
}

std::string infer_backbone(const StateIndex& index) {
  const bool bottleneck = index.find("Backbone.4.0.conv3.weight") != nullptr;
  const int64_t layer3_blocks = count_children(index, "Backbone.6.", "layer3 of the ResNet backbone");
  if (!bottleneck && layer3_blocks == 2) return "resnet18";
  if (!bottleneck && layer3_blocks == 6) return "resnet34";
  if (bottleneck && layer3_blocks == 6) return "resnet50";
  if (bottleneck && layer3_blocks == 23) return "resnet101";
  index.bad("the backbone is no torchvision ResNet-18/34/50/101: layer3 (Backbone.6.*) has " +
            std::to_string(layer3_blocks) + (bottleneck ? " Bottleneck" : " BasicBlock") +
            " blocks (ResNet-18: 2, ResNet-34/50: 6, ResNet-101: 23)");
}

// Puts the checkpoint's tensors into the model's places, checking names and shapes with the
// checkpoint's own names in every message; W (label_emb.text_embeddings) is the model's own.
void load_official_weights(CprflModelImpl& model, const NamedTensors& state, const std::string& source) {
  LoadStateOptions options;
  options.rename = [](const std::string& name) -> std::optional<std::string> {
    if (starts_with(name, kTextPrefix)) return std::nullopt;  // the text encoder, used up by then
    return to_model_name(name);  // "" (no place in the model): an unexpected key
  };
  options.state_name = to_official_name;
  options.may_be_missing = [](const std::string& ours) {
    // W is computed, not loaded; BatchNorm's step counter plays no part in inference and
    // older files lack it.
    const std::string counter = ".num_batches_tracked";
    return ours == "label_emb.text_embeddings" ||
           (ours.size() > counter.size() && ours.compare(ours.size() - counter.size(), counter.size(), counter) == 0);
  };
  options.state_noun = "checkpoint";
  options.module_noun = "authors' CPRFL model";
  options.mismatch_hint = " (the model is inferred from the other tensors)";
  load_named_state(model, state, source, options);
}

}  // namespace

NamedTensors read_official_state(const std::string& checkpoint) {
  NamedTensors state;
  std::set<std::string> names;
  for (auto& [name, tensor] : read_torch_state_dict(checkpoint)) {
    std::string plain = starts_with(name, kModulePrefix) ? name.substr(kModulePrefix.size()) : name;
    if (!names.insert(plain).second)
      fail_in(checkpoint, "key " + name + " occurs twice once the DataParallel prefix 'module.' is removed");
    state.emplace_back(std::move(plain), std::move(tensor));
  }
  return state;
}

OfficialArchitecture infer_official_architecture(const NamedTensors& state, int64_t heads, const std::string& source) {
  StateIndex index(state, source);
  // Anything outside the model's parts is refused before the expensive work.
  for (const auto& [name, tensor] : state) {
    if (starts_with(name, kTextPrefix) ? !is_text_tensor(name.substr(kTextPrefix.size())) : to_model_name(name).empty())
      fail_in(source, "unexpected key " + name + " (no such tensor in the authors' CPRFL model)");
  }
  OfficialArchitecture a;
  a.backbone = infer_backbone(index);
  const auto& fc = index.get("fc.0.weight", 2, "φ, Linear(backbone width, d)");
  a.dim = fc.size(0);
  a.backbone_width = fc.size(1);
  const auto& first = index.get("label_emb.0.weight", 2, "PI, Linear(m, t)");
  a.prompt_hidden = first.size(0);
  a.text_width = first.size(1);
  a.depth = count_children(index, "attention.layers.", "VSI layers");
  const auto& qkv = index.get("attention.layers.0.0.fn.to_qkv.weight", 2, "VSI attention, Linear(d, 3·heads·head_dim)");
  if (qkv.size(0) % 3 != 0)
    index.bad("key attention.layers.0.0.fn.to_qkv.weight has " + std::to_string(qkv.size(0)) +
              " rows, not a multiple of 3 (q, k, v)");
  a.inner = qkv.size(0) / 3;
  a.ffn = index.get("attention.layers.0.1.fn.net.0.weight", 2, "VSI feed-forward, Linear(d, mlp)").size(0);
  if (heads < 1) index.bad("--heads must be at least 1, got " + std::to_string(heads));
  if (a.inner % heads != 0)
    index.bad("the VSI inner width " + std::to_string(a.inner) + " (attention.layers.0.0.fn.to_qkv.weight " +
              shape_string(qkv) + " = 3 x heads x head_dim) is not divisible by --heads " + std::to_string(heads));
  a.heads = heads;
  a.head_dim = a.inner / heads;
  a.text = clip::infer_clip_text_architecture(state, kTextPrefix, source);
  if (a.text.embed_dim != a.text_width)
    index.bad("the text encoder gives " + std::to_string(a.text.embed_dim) + "-wide embeddings (text_encoder.text_projection " +
              shape_string(*index.find(kTextPrefix + "text_projection")) + ") but label_emb.0.weight " + shape_string(first) +
              " takes " + std::to_string(a.text_width));
  return a;
}

ImportedOfficialModel import_official_state(const NamedTensors& state, const std::string& source,
                                            const std::vector<std::string>& class_names, const ImportOptions& options) {
  if (class_names.empty()) fail_in(source, "no class names to import the model for (the labels file is empty)");
  if (options.image_size < 32) throw Error("--image-size must be at least 32, got " + std::to_string(options.image_size));
  clip::fill_prompt_template(options.prompt_template, "x");  // a bad template fails early
  ImportedOfficialModel imported;
  auto& a = imported.architecture = infer_official_architecture(state, options.heads, source);

  // Class counts first: a training list that does not fit the labels fails before the work.
  auto& info = imported.info;
  info.class_names = class_names;
  info.class_counts.assign(class_names.size(), 0);
  if (!options.train_list.empty()) {
    auto stats = compute_class_stats(read_image_list(options.train_list, static_cast<int>(class_names.size())), class_names);
    info.class_counts = stats.counts;
    info.num_train_images = stats.num_images;
  }

  // W: the text encoder, once, on "a photo of a {}." (as the authors' forward computes it).
  torch::NoGradGuard no_grad;
  {
    auto encoder = clip::load_clip_text_encoder(state, source, kTextPrefix);
    encoder->eval();
    info.prompt_embeddings =
        clip::encode_class_prompts(*encoder, clip::ClipTokenizer::load(options.vocab_path), class_names,
                                   options.prompt_template);
  }

  auto& config = info.config;
  const std::string origin = source + " (imported)";
  config.set("model.type", "cprfl", origin);
  config.set("model.backbone", a.backbone, origin);
  config.set("model.d", std::to_string(a.dim), origin);
  config.set("model.tau", exact_text(static_cast<double>(a.prompt_hidden) / static_cast<double>(a.dim)), origin);
  config.set("model.depth", std::to_string(a.depth), origin);
  config.set("model.heads", std::to_string(a.heads), origin);
  config.set("model.head_dim", std::to_string(a.head_dim), origin);
  config.set("model.ffn", std::to_string(a.ffn), origin);
  config.set("model.residual", "false", origin);
  config.set("data.image_size", std::to_string(options.image_size), origin);
  // The authors' pipeline (their ImageList): torchvision's Resize((448, 448)) on a PIL image,
  // i.e. Pillow's bilinear resampling, then ToTensor() with no mean/std normalisation; in
  // training CutoutPIL (always) and their RandAugment, no flip.
  config.set("data.resize", "pil_bilinear", origin);
  config.set("data.normalize", "none", origin);
  config.set("data.hflip", "false", origin);
  config.set("data.cutout_prob", "1", origin);
  config.set("data.randaugment", "true", origin);
  config.set("data.randaugment_policy", "asl", origin);
  config.set("prompts.source", "clip", origin);
  config.set("prompts.checkpoint", source, origin);
  config.set("prompts.template", options.prompt_template, origin);
  if (!options.train_list.empty()) config.set("data.train_list", options.train_list, origin);

  // Built from the config just written, as any model file is rebuilt (config/options.h).
  auto built = std::dynamic_pointer_cast<CprflModelImpl>(build_model(model_options_of(config), info.prompt_embeddings.size(0), info.prompt_embeddings));
  imported.model = CprflModel(built);
  load_official_weights(*imported.model, state, source);
  imported.model->eval();
  return imported;
}

ImportedOfficialModel import_official_checkpoint(const std::string& checkpoint,
                                                 const std::vector<std::string>& class_names,
                                                 const ImportOptions& options) {
  return import_official_state(read_official_state(checkpoint), checkpoint, class_names, options);
}

TensorFile make_imported_model_file(const ImportedOfficialModel& imported, const std::string& checkpoint,
                                    const ImportOptions& options) {
  TensorFile file = make_model_file(imported.info, *imported.model, nullptr);
  const auto& a = imported.architecture;
  file.meta["imported_from"] = {
      {"checkpoint", checkpoint},
      {"format", "authors' CPRFL code (build_model_TF.py)"},
      {"prompt_template", options.prompt_template},
      {"text_encoder", {{"width", a.text.width}, {"layers", a.text.layers}, {"heads", a.text.heads},
                        {"embed_dim", a.text.embed_dim}, {"context_length", a.text.context_length}}}};
  return file;
}

}  // namespace cprfl
