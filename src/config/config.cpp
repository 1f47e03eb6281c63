#include "cprfl/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <cmath>
#include <sstream>

#include "cprfl/common/error.h"
#include "cprfl/common/text.h"
#include "cprfl/data/class_stats.h"
#include "cprfl/loss/losses.h"
#include "cprfl/model/backbone_registry.h"
#include "cprfl/model/resnet.h"

namespace cprfl {
namespace {

using VT = ValueType;

std::vector<ConfigKey> build_schema() {
  return {
      // data
      {"data.root", VT::kString, "runs/fashion-lt", "folder the list paths are relative to", {}},
      {"data.train_list", VT::kString, "runs/fashion-lt/train.txt", "training list file", {}},
      {"data.test_list", VT::kString, "runs/fashion-lt/test.txt", "test list file (evaluated each epoch)", {}},
      {"data.labels", VT::kString, "runs/fashion-lt/labels.txt", "labels file (class names)", {}},
      {"data.image_size", VT::kInt, "64", "input side in pixels (images are resized to a square)", {}},
      {"data.resize", VT::kString, "pil_bilinear", "resize to the square input: Pillow's resampling pixel for pixel (pil_bilinear is torchvision's Resize on PIL images, the authors' pipeline) or OpenCV's area/linear", {"pil_bilinear", "pil_bicubic", "opencv"}},
      {"data.normalize", VT::kString, "imagenet", "pixel normalisation (none: pixels / 255, the authors' pipeline; clip: CLIP's mean/std, for clip_* backbones)", {"imagenet", "clip", "none"}},
      {"data.hflip", VT::kBool, "true", "random horizontal flip in training (the authors' pipeline has none)", {}},
      {"data.cutout_prob", VT::kFloat, "0.5", "probability of Cutout in training (the authors' CutoutPIL: 1)", {}},
      {"data.randaugment", VT::kBool, "true", "RandAugment in training", {}},
      {"data.randaugment_policy", VT::kString, "asl", "RandAugment policy: asl = the authors' (PyPI randaugment 1.0.2: two of 15 ops, random magnitudes, each with p 0.5); fixed = randaugment_ops ops at randaugment_magnitude", {"asl", "fixed"}},
      {"data.randaugment_ops", VT::kInt, "2", "RandAugment policy fixed: operations per image", {}},
      {"data.randaugment_magnitude", VT::kInt, "9", "RandAugment policy fixed: magnitude (0-10)", {}},
      {"data.workers", VT::kInt, "2", "loader threads that decode and augment", {}},
      {"data.on_bad_image", VT::kString, "error", "what to do with an unreadable image", {"error", "skip"}},
      {"data.val_fraction", VT::kFloat, "0", "fraction of the training list held out for model selection (0 = none)", {}},
      {"data.head_min", VT::kInt, std::to_string(GroupThresholds{}.head_min), "head classes have n_c >= this", {}},
      {"data.tail_below", VT::kInt, std::to_string(GroupThresholds{}.tail_below), "tail classes have n_c < this", {}},
      // model
      {"model.type", VT::kString, "cprfl", "classifier head", {"cprfl", "linear"}},
      {"model.backbone", VT::kString, "small", "visual backbone (clip_*: OpenAI CLIP's image tower, with data.normalize: clip)",
       backbone_names()},
      {"model.backbone_weights", VT::kString, "", "trunk weights (a file from `cprfl pretrain-backbone`, a torchvision .pth, or a CLIP state dict for clip_*; empty = random init)", {}},
      {"model.small_widths", VT::kString, "32,64,128", "small backbone: channels per stage (3 stages = stride 8)", {}},
      {"model.small_blocks", VT::kString, "1,1,1", "small backbone: BasicBlocks per stage", {}},
      {"model.linear_head_init", VT::kString, "torch",
       "linear head's initial weights: torch = LibTorch's Linear default (uniform in ±1/sqrt(d0)), zero = all zero "
       "(no random direction to unlearn; docs/baselines.md)", {"torch", "zero"}},
      {"model.d", VT::kInt, "256", "joint width d of tokens and prompts", {}},
      {"model.tau", VT::kFloat, "0.5", "PI hidden width t = tau * d", {}},
      {"model.depth", VT::kInt, "1", "VSI transformer layers", {}},
      {"model.heads", VT::kInt, "4", "VSI attention heads", {}},
      {"model.head_dim", VT::kInt, "64", "VSI width per head", {}},
      {"model.ffn", VT::kInt, "256", "VSI feed-forward width", {}},
      {"model.dropout", VT::kFloat, "0.1", "VSI dropout", {}},
      {"model.residual", VT::kBool, "false", "residual connections in VSI (the official code has none)", {}},
      {"model.detach_classifier_path", VT::kBool, "false", "DPBP ablation: no gradient to P through s_i = p'_i . p_i directly", {}},
      {"model.detach_interaction_path", VT::kBool, "false", "DPBP ablation: no gradient to P through the VSI layer", {}},
      // prompts
      {"prompts.source", VT::kString, "npy", "where W comes from: a .npy of class embeddings, a CLIP text encoder run once on the class names, or random normal rows", {"npy", "clip", "randn"}},
      {"prompts.file", VT::kString, "data/prompts/fashion_clip_rn50.npy", ".npy of class embeddings [C, m]", {}},
      {"prompts.checkpoint", VT::kString, "", "source clip: CLIP checkpoint (OpenAI TorchScript archive such as RN50.pt, or a torch.save state dict)", {}},
      {"prompts.template", VT::kString, "a photo of a {}.", "source clip: prompt, {} = class name from data.labels with _ as a space", {}},
      {"prompts.randn_dim", VT::kInt, "1024", "width m of a randn W", {}},
      {"prompts.randn_norm", VT::kFloat, "13", "row norm of a randn W (CLIP-RN50 rows have norms ~10-17)", {}},
      // loss
      {"loss.name", VT::kString, "asl", "training loss", loss_names()},
      {"loss.gamma_pos", VT::kFloat, "0", "ASL gamma+", {}},
      {"loss.gamma_neg", VT::kFloat, "4", "ASL gamma-", {}},
      {"loss.clip", VT::kFloat, "0.05", "ASL probability margin", {}},
      {"loss.db_gamma", VT::kFloat, "0.2", "DB rebalance gamma_m (0.2 COCO-LT, 0.3 VOC-LT)", {}},
      {"loss.db_lambda", VT::kFloat, "2", "DB negative-tolerant lambda (2 COCO-LT, 5 VOC-LT)", {}},
      {"loss.cb_beta", VT::kFloat, "0.9", "CB-Focal beta", {}},
      // optimisation
      {"optim.name", VT::kString, "adamw", "optimizer", {"adamw", "adam"}},
      {"optim.lr", VT::kFloat, "1e-3", "peak learning rate", {}},
      {"optim.weight_decay", VT::kFloat, "1e-4", "weight decay (weights only; no decay on biases and 1-D parameters)", {}},
      {"optim.backbone_lr_mult", VT::kFloat, "0.1", "backbone learning rate = lr * this", {}},
      {"optim.epochs", VT::kInt, "20", "training epochs", {}},
      {"optim.batch_size", VT::kInt, "32", "images per step", {}},
      {"optim.schedule", VT::kString, "onecycle", "learning-rate schedule", {"onecycle", "cosine", "constant"}},
      {"optim.pct_start", VT::kFloat, "0.1", "OneCycle: fraction of steps spent warming up", {}},
      {"optim.div_factor", VT::kFloat, "25", "OneCycle: initial lr = lr / div_factor", {}},
      {"optim.final_div_factor", VT::kFloat, "1e4", "OneCycle: final lr = initial lr / final_div_factor", {}},
      {"optim.ema_decay", VT::kFloat, "0.998", "EMA of weights decay (0 = no EMA)", {}},
      {"optim.grad_clip", VT::kFloat, "0", "clip the gradient norm to this (0 = off)", {}},
      {"optim.amp", VT::kBool, "true", "mixed precision on CUDA", {}},
      {"optim.amp_cpu", VT::kString, "auto",
       "bf16 autocast on CPU (float32 master weights): auto = on where the CPU has AVX512-BF16 or AMX-BF16 "
       "(cprfl --version says), true/false force it; not bit-equal to float32",
       {"auto", "true", "false"}},
      {"optim.accumulate_steps", VT::kInt, "1",
       "split each batch into this many forward/backward passes whose gradients add up to the batch's (less memory, same result)", {}},
      // run
      {"train.seed", VT::kInt, "0", "seed for initialisation, data order, augmentation, dropout and the validation split", {}},
      // One source of randomness each, to find which one a result depends on (-1 = train.seed).
      {"train.init_seed", VT::kInt, "-1", "seed of the initial weights (the head; random prompts) (-1 = train.seed)", {}},
      {"train.order_seed", VT::kInt, "-1", "seed of the training data order (-1 = train.seed)", {}},
      {"train.augment_seed", VT::kInt, "-1", "seed of the training augmentation (-1 = train.seed)", {}},
      {"train.dropout_seed", VT::kInt, "-1", "seed of dropout masks (-1 = train.seed)", {}},
      {"train.diagnostics", VT::kBool, "false",
       "add to each evaluated epoch's metrics.jsonl record: learning rate per group, weight norms, BatchNorm running "
       "statistics and the mAP on the training part (an extra pass over it)", {}},
      {"train.device", VT::kString, "auto", "compute device: auto (CUDA when a GPU is visible), cpu, cuda or cuda:N", {}},
      {"train.tf32", VT::kBool, "false",
       "CUDA: let float32 matrix products and convolutions use TF32 (faster on Ampere and later, ~1e-3 relative error)", {}},
      {"train.out_dir", VT::kString, "runs/train", "folder for checkpoints and metrics.jsonl", {}},
      {"train.select", VT::kString, "last", "which checkpoint is 'best' (best needs data.val_fraction > 0)", {"last", "best"}},
      {"train.eval_every", VT::kInt, "1", "evaluate every N epochs (the last epoch always)", {}},
      {"train.freeze_bn", VT::kBool, "false",
       "keep BatchNorm's running statistics fixed while training (its scale and shift still learn); makes a data-parallel "
       "run equal to one process with the global batch", {}},
      {"train.dist_backend", VT::kString, "auto",
       "data-parallel runs (torchrun, cprfl train --nproc): auto = NCCL on CUDA, Gloo on the CPU", {"auto", "gloo", "nccl"}},
      {"train.dist_timeout", VT::kFloat, "300",
       "data-parallel runs: seconds a rendezvous or collective may wait before the run stops naming the rank that is gone", {}},
      {"train.dist_bucket_mb", VT::kFloat, "25", "data-parallel runs: gradient all-reduce bucket size (MB)", {}},
      {"train.dist_overlap", VT::kBool, "true",
       "data-parallel runs: start each bucket's all-reduce during backward (false: all after it)", {}},
      {"train.dist_check_every", VT::kInt, "0",
       "data-parallel runs: compare a checksum of the weights and EMA across ranks every N steps, stopping if they "
       "differ (0 = never)", {}},
      {"train.channels_last", VT::kBool, "true",
       "keep the backbone's convolution weights channels-last (oneDNN's native layout; equal up to rounding, faster)", {}},
  };
}

const char* type_name(ValueType type) {
  switch (type) {
    case VT::kBool: return "a boolean (true/false)";
    case VT::kInt: return "an integer";
    case VT::kFloat: return "a number";
    case VT::kString: return "a string";
  }
  return "?";
}

std::optional<bool> parse_bool(const std::string& text) {
  std::string lower = text;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "true" || lower == "yes" || lower == "on" || lower == "1") return true;
  if (lower == "false" || lower == "no" || lower == "off" || lower == "0") return false;
  return std::nullopt;
}

std::optional<double> parse_double(const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::istringstream in(text);
  in.imbue(std::locale::classic());
  double value;
  in >> value;
  if (in.fail() || !in.eof() || !std::isfinite(value)) return std::nullopt;
  return value;
}

// Checks `value` against the key's type and returns its canonical text.
std::string canonical(const ConfigKey& entry, const std::string& value, const std::string& origin) {
  auto bad = [&](const std::string& why) -> std::string {
    throw Error(origin + ": " + entry.key + " = '" + value + "': " + why);
  };
  switch (entry.type) {
    case VT::kBool: {
      auto b = parse_bool(value);
      if (!b) return bad(std::string("expected ") + type_name(entry.type));
      return *b ? "true" : "false";
    }
    case VT::kInt: {
      auto i = parse_int(value);
      if (!i) return bad(std::string("expected ") + type_name(entry.type));
      return std::to_string(*i);
    }
    case VT::kFloat: {
      auto d = parse_double(value);
      if (!d) return bad(std::string("expected ") + type_name(entry.type));
      // The shortest text that reads back as the same double: 0.1, not 0.10000000000000001.
      std::string text;
      for (int precision = 1; precision <= 17; ++precision) {
        std::ostringstream out;
        out.imbue(std::locale::classic());
        out.precision(precision);
        out << *d;
        text = out.str();
        auto back = parse_double(text);
        if (back && *back == *d) break;
      }
      return text;
    }
    case VT::kString: {
      if (!is_valid_utf8(value)) return bad("not valid UTF-8 text");  // configs are stored as JSON in model files
      if (!entry.choices.empty() && std::find(entry.choices.begin(), entry.choices.end(), value) == entry.choices.end()) {
        std::string allowed;
        for (auto& choice : entry.choices) allowed += (allowed.empty() ? "" : ", ") + choice;
        return bad("must be one of: " + allowed);
      }
      return value;
    }
  }
  return value;
}

void flatten_yaml(const YAML::Node& node, const std::string& prefix, const std::string& origin,
                  std::vector<std::pair<std::string, YAML::Node>>& out) {
  if (node.IsMap()) {
    // Settings are two levels deep (section.name). A deeper map is refused at once, so that
    // aliases (a YAML "billion laughs") cannot make this walk exponential.
    if (prefix.find('.') != std::string::npos) {
      std::string where = origin + ":" + std::to_string(node.Mark().line + 1) + ": ";
      for (const auto& entry : config_schema())
        if (entry.key == prefix) throw Error(where + prefix + ": expected a single value, got a mapping");
      throw Error(where + "unknown key '" + prefix + "' (did you mean '" + nearest_config_key(prefix) + "'?)");
    }
    for (const auto& item : node) {
      if (!item.first.IsScalar())  // e.g. "? [a, b]": a list or map as a key
        throw Error(origin + ":" + std::to_string(item.first.Mark().line + 1) + ": a key must be a plain name");
      std::string key = item.first.Scalar();
      flatten_yaml(item.second, prefix.empty() ? key : prefix + "." + key, origin, out);
    }
  } else if (node.IsScalar() || node.IsNull()) {
    out.emplace_back(prefix, node);
  } else {
    throw Error(origin + ": " + prefix + ": expected a single value, got a list");
  }
}

}  // namespace

const std::vector<ConfigKey>& config_schema() {
  static const std::vector<ConfigKey> schema = build_schema();
  return schema;
}

std::string nearest_config_key(const std::string& key) {
  std::string best;
  std::size_t best_distance = SIZE_MAX;
  for (const auto& entry : config_schema()) {
    // Compare with the full key and with its last part, so "lr" suggests "optim.lr".
    std::string leaf = entry.key.substr(entry.key.find('.') + 1);
    std::size_t distance = std::min(edit_distance(key, entry.key), edit_distance(key, leaf) + 1);
    if (distance < best_distance) best_distance = distance, best = entry.key;
  }
  return best;
}

Config::Config() {
  for (const auto& entry : config_schema()) values_[entry.key] = entry.default_value;
}

const ConfigKey& Config::schema_entry(const std::string& key, const std::string& origin) const {
  for (const auto& entry : config_schema())
    if (entry.key == key) return entry;
  throw Error(origin + ": unknown key '" + key + "' (did you mean '" + nearest_config_key(key) + "'?)");
}

void Config::set(const std::string& key, const std::string& value, const std::string& origin) {
  values_[key] = canonical(schema_entry(key, origin), value, origin);
}

void Config::set_assignment(const std::string& assignment, const std::string& origin) {
  auto equals = assignment.find('=');
  if (equals == std::string::npos || equals == 0)
    throw Error(origin + ": expected key=value, got '" + assignment + "'");
  set(std::string(trim(assignment.substr(0, equals))), std::string(trim(assignment.substr(equals + 1))), origin);
}

void Config::merge_yaml_text(const std::string& text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(origin + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (root.IsNull()) return;
  if (!root.IsMap()) throw Error(origin + ": expected a mapping of settings at the top level");
  std::vector<std::pair<std::string, YAML::Node>> leaves;
  flatten_yaml(root, "", origin, leaves);
  for (auto& [key, node] : leaves) {
    std::string where = origin + ":" + std::to_string(node.Mark().line + 1);
    set(key, node.IsNull() ? "" : node.Scalar(), where);
  }
}

const std::vector<std::string>& input_path_keys() {
  static const std::vector<std::string> keys = {"data.root",   "data.train_list",          "data.test_list", "data.labels",
                                                "prompts.file", "prompts.checkpoint", "model.backbone_weights"};
  return keys;
}

void Config::merge_yaml_file(const std::string& path) {
  const auto before = values_;
  merge_yaml_text(read_text_file(path), path);
  // An input path the file sets is relative to the file's folder when it names something there;
  // otherwise it is read as written (the current folder, then cprfl's shipped data).
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  std::error_code error;
  for (const auto& key : input_path_keys()) {
    const std::string& value = values_.at(key);
    if (value.empty() || value == before.at(key) || std::filesystem::path(value).is_absolute()) continue;
    const std::filesystem::path beside = folder / value;
    if (!folder.empty() && std::filesystem::exists(beside, error)) values_[key] = beside.lexically_normal().string();
  }
}

bool Config::get_bool(const std::string& key) const {
  schema_entry(key, "config");
  return values_.at(key) == "true";
}

std::int64_t Config::get_int(const std::string& key) const {
  schema_entry(key, "config");
  return *parse_int(values_.at(key));
}

double Config::get_float(const std::string& key) const {
  schema_entry(key, "config");
  return *parse_double(values_.at(key));
}

const std::string& Config::get_string(const std::string& key) const {
  schema_entry(key, "config");
  return values_.at(key);
}

nlohmann::json Config::to_json() const {
  nlohmann::json root = nlohmann::json::object();
  for (const auto& entry : config_schema()) {
    auto dot = entry.key.find('.');
    auto& section = root[entry.key.substr(0, dot)];
    auto name = entry.key.substr(dot + 1);
    const std::string& value = values_.at(entry.key);
    switch (entry.type) {
      case VT::kBool: section[name] = value == "true"; break;
      case VT::kInt: section[name] = *parse_int(value); break;
      case VT::kFloat: section[name] = *parse_double(value); break;
      case VT::kString: section[name] = value; break;
    }
  }
  return root;
}

Config Config::from_json(const nlohmann::json& json, const std::string& origin) {
  Config config;
  if (!json.is_object()) throw Error(origin + ": config is not an object");
  for (auto& [section, values] : json.items()) {
    if (!values.is_object()) throw Error(origin + ": config section '" + section + "' is not an object");
    for (auto& [name, value] : values.items()) {
      std::string text = value.is_string() ? value.get<std::string>() : value.dump();
      config.set(section + "." + name, text, origin);
    }
  }
  return config;
}

std::string Config::to_yaml() const {
  std::ostringstream out;
  std::string section;
  for (const auto& entry : config_schema()) {
    auto dot = entry.key.find('.');
    if (entry.key.substr(0, dot) != section) {
      section = entry.key.substr(0, dot);
      out << section << ":\n";
    }
    std::string value = values_.at(entry.key);
    if (entry.type == VT::kString) value = nlohmann::json(value).dump();  // a JSON string is valid YAML
    out << "  " << entry.key.substr(dot + 1) << ": " << value << "\n";
  }
  return out.str();
}

std::string Config::describe_schema() {
  std::ostringstream out;
  for (const auto& entry : config_schema()) {
    out << "  " << entry.key << " (" << type_name(entry.type) << ", default '" << entry.default_value << "')";
    if (!entry.choices.empty()) {
      out << " {";
      for (std::size_t i = 0; i < entry.choices.size(); ++i) out << (i ? "|" : "") << entry.choices[i];
      out << "}";
    }
    out << ": " << entry.help << "\n";
  }
  return out.str();
}

}  // namespace cprfl
