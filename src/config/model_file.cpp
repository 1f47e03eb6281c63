#include "cprfl/config/model_file.h"

#include <algorithm>
#include <cmath>

#include "cprfl/common/error.h"
#include "cprfl/config/options.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/io/state_dict.h"

namespace cprfl {
namespace {

// 2: W only as prompts/W. 1: W also inside the model/ and ema/ weights (still read).
constexpr int kModelFormat = 2;
constexpr int kOldestFormat = 1;

// A module's tensors for the file: all but its copy of W, which prompts/W holds.
std::map<std::string, torch::Tensor> weights_without_w(const NamedTensors& named) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, tensor] : named)
    if (name != kPromptEmbeddingsKey) out[name] = tensor;
  return out;
}

// A format-1 file's EMA weights hold W averaged with itself every step, which drifts by
// rounding: each update errs by at most ~2 ulp and the average forgets errors at rate
// (1 − decay), so the copy stays within 4·2⁻²⁴/(1 − decay) of W, relative. The raw weights'
// copy is never updated: it must be equal.
double w_copy_tolerance(const TensorFile& file, const std::string& prefix) {
  if (prefix != "ema/") return 0;
  double decay = 0.998;
  const auto& config = file.meta.value("config", nlohmann::json::object());
  if (config.contains("optim") && config["optim"].contains("ema_decay") && config["optim"]["ema_decay"].is_number())
    decay = config["optim"]["ema_decay"].get<double>();
  return 4.0 * std::ldexp(1.0, -24) / std::max(1.0 - decay, 1e-6);
}

// The weights under `prefix`, with W put back from prompts/W. A format-1 file's own copy of
// W must equal prompts/W (the EMA copy within its rounding drift, above): two different W
// would leave no way to tell which one was meant.
std::map<std::string, torch::Tensor> weights_with_w(const TensorFile& file, const std::string& prefix,
                                                    const torch::Tensor& w, const std::string& what) {
  // (w is undefined for the linear head: nothing to put back)
  auto weights = tensors_with_prefix(file, prefix);
  if (!w.defined()) return weights;
  auto copy = weights.find(kPromptEmbeddingsKey);
  if (copy != weights.end()) {
    const double tolerance = w_copy_tolerance(file, prefix);
    const bool same = copy->second.sizes() == w.sizes() &&
                      (tolerance == 0 ? torch::equal(copy->second.to(torch::kFloat), w)
                                      : torch::allclose(copy->second.to(torch::kFloat), w, tolerance, 1e-7));
    if (!same)
      fail_in(what, std::string("holds two different prompt embeddings (prompts/W and ") + prefix + kPromptEmbeddingsKey +
                        "); re-save it from a trusted copy — format 2 stores W once");
  }
  weights[kPromptEmbeddingsKey] = w;
  return weights;
}

}  // namespace

TensorFile make_model_file(const ModelInfo& info, const torch::nn::Module& model, const torch::nn::Module* ema_model) {
  TensorFile file;
  file.meta = {{"kind", "model"},
               {"model_format", kModelFormat},
               {"config", info.config.to_json()},
               {"class_names", info.class_names},
               {"class_counts", info.class_counts},
               {"num_train_images", info.num_train_images}};
  add_with_prefix(file, "model/", weights_without_w(named_state(model)));
  if (ema_model) add_with_prefix(file, "ema/", weights_without_w(named_state(*ema_model)));
  if (info.prompt_embeddings.defined()) file.tensors["prompts/W"] = info.prompt_embeddings;
  return file;
}

LoadedModel model_from_tensor_file(const TensorFile& file, const std::string& path, bool prefer_ema) {
  const auto& meta = file.meta;
  if (!meta.is_object()) fail_in(path, "not a cprfl model file (no metadata)");
  auto kind_it = meta.find("kind");
  std::string kind = kind_it != meta.end() && kind_it->is_string() ? kind_it->get<std::string>() : "";
  if (kind != "model" && kind != "checkpoint")
    fail_in(path, "not a cprfl model file (kind '" + kind + "'); train one with `cprfl train`");
  auto format_it = meta.find("model_format");
  if (format_it == meta.end() || !format_it->is_number_integer() || *format_it < kOldestFormat ||
      *format_it > kModelFormat) {
    fail_in(path, "model format " + (format_it == meta.end() ? std::string("(none)") : format_it->dump()) +
                      " is not supported by this build (reads formats " + std::to_string(kOldestFormat) + " to " +
                      std::to_string(kModelFormat) + ")");
  }
  LoadedModel loaded;
  try {
    // Integers must be JSON integers: converting an out-of-range float is undefined behaviour.
    for (const auto& count : meta.at("class_counts"))
      if (!count.is_number_integer()) fail_in(path, "model metadata: class_counts holds a non-integer");
    if (!meta.at("num_train_images").is_number_integer()) fail_in(path, "model metadata: num_train_images is not an integer");
    loaded.info.config = Config::from_json(meta.at("config"), path + " (config)");
    // Files written before data.resize existed were trained and evaluated with OpenCV's resize.
    const auto& stored = meta.at("config");
    if (!stored.contains("data") || !stored.at("data").contains("resize"))
      loaded.info.config.set("data.resize", "opencv", path + " (written before data.resize)");
    loaded.info.class_names = meta.at("class_names").get<std::vector<std::string>>();
    loaded.info.class_counts = meta.at("class_counts").get<std::vector<int64_t>>();
    loaded.info.num_train_images = meta.at("num_train_images").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail_in(path, std::string("model metadata is incomplete: ") + e.what());
  }
  int64_t classes = static_cast<int64_t>(loaded.info.class_names.size());
  if (classes == 0 || static_cast<int64_t>(loaded.info.class_counts.size()) != classes)
    fail_in(path, "class names and class counts disagree in length");
  auto w = file.tensors.find("prompts/W");
  if (w != file.tensors.end()) loaded.info.prompt_embeddings = w->second.to(torch::kFloat);
  if (loaded.info.config.get_string("model.type") == "cprfl" && !loaded.info.prompt_embeddings.defined())
    fail_in(path, "missing tensor 'prompts/W' (the prompt embeddings)");
  loaded.model = build_model(model_options_of(loaded.info.config), classes, loaded.info.prompt_embeddings);
  loaded.has_ema = !tensors_with_prefix(file, "ema/").empty();
  loaded.using_ema = prefer_ema && loaded.has_ema;
  const std::string prefix = loaded.using_ema ? "ema/" : "model/";
  const std::string what = path + (loaded.using_ema ? " (EMA weights)" : " (weights)");
  load_model_weights(*loaded.model, file, prefix, loaded.info.prompt_embeddings, what);
  loaded.model->eval();
  return loaded;
}

std::string class_list_difference(const std::vector<std::string>& model_classes, const std::string& model_name,
                                  const std::vector<std::string>& other_classes, const std::string& other_name) {
  if (model_classes.size() != other_classes.size())
    return model_name + " has " + std::to_string(model_classes.size()) + " classes, " + other_name + " has " +
           std::to_string(other_classes.size());
  for (std::size_t i = 0; i < model_classes.size(); ++i)
    if (model_classes[i] != other_classes[i])
      return "class " + std::to_string(i) + " is '" + model_classes[i] + "' in " + model_name + " but '" +
             other_classes[i] + "' in " + other_name;
  return "";
}

void load_model_weights(torch::nn::Module& model, const TensorFile& file, const std::string& prefix,
                        const torch::Tensor& prompt_embeddings, const std::string& what) {
  load_named_state(model, weights_with_w(file, prefix, prompt_embeddings, what), what);
}

TransformConfig preprocessing_of(const ModelInfo& info) { return transform_config_of(info.config, /*train=*/false); }

LoadedModel load_model_file(const std::string& path, bool prefer_ema) {
  return model_from_tensor_file(load_tensor_file(path), path, prefer_ema);
}

}  // namespace cprfl
