#include "cprfl/config/options.h"

#include "cprfl/common/device.h"
#include "cprfl/common/error.h"
#include "cprfl/common/shipped_data.h"
#include "cprfl/common/text.h"

namespace cprfl {
namespace {

int64_t positive(const Config& config, const char* key) {
  int64_t value = config.get_int(key);
  if (value < 1) throw Error(std::string(key) + " must be at least 1, got " + std::to_string(value));
  return value;
}

}  // namespace

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

TransformConfig transform_config_of(const Config& config, bool train) {
  TransformConfig transform;
  transform.image_size = static_cast<int>(config.get_int("data.image_size"));
  transform.train = train;
  transform.resize = config.get_string("data.resize");
  transform.normalize = config.get_string("data.normalize");
  transform.hflip = config.get_bool("data.hflip");
  transform.cutout_prob = config.get_float("data.cutout_prob");
  transform.randaugment = config.get_bool("data.randaugment");
  transform.randaugment_policy = config.get_string("data.randaugment_policy");
  transform.randaugment_ops = static_cast<int>(config.get_int("data.randaugment_ops"));
  transform.randaugment_magnitude = static_cast<int>(config.get_int("data.randaugment_magnitude"));
  validate(transform);
  return transform;
}

DataOptions data_options_of(const Config& config) {
  DataOptions data;
  data.root = resolve_input_path(config.get_string("data.root"));
  data.train_list = resolve_input_path(config.get_string("data.train_list"));
  data.test_list = resolve_input_path(config.get_string("data.test_list"));
  data.labels = resolve_input_path(config.get_string("data.labels"));
  data.val_fraction = config.get_float("data.val_fraction");
  if (!(data.val_fraction >= 0 && data.val_fraction < 1))
    throw Error("data.val_fraction must be in [0, 1), got " + std::to_string(data.val_fraction));
  data.groups = {config.get_int("data.head_min"), config.get_int("data.tail_below")};
  data.workers = static_cast<int>(config.get_int("data.workers"));
  data.on_bad_image = bad_image_policy_named(config.get_string("data.on_bad_image"));
  data.train_transform = transform_config_of(config, true);
  data.eval_transform = transform_config_of(config, false);
  return data;
}

ModelOptions model_options_of(const Config& config) {
  ModelOptions model;
  model.type = config.get_string("model.type");
  model.backbone = config.get_string("model.backbone");
  model.small.widths = parse_int_list(config.get_string("model.small_widths"), "model.small_widths");
  model.small.blocks = parse_int_list(config.get_string("model.small_blocks"), "model.small_blocks");
  if (model.small.widths.size() != model.small.blocks.size())
    throw Error("model.small_widths and model.small_blocks must list the same number of stages");
  model.linear_head_zero_init = config.get_string("model.linear_head_init") == "zero";
  if (model.type == "cprfl") {
    auto& head = model.cprfl;
    head.dim = positive(config, "model.d");
    head.prompt_hidden_ratio = config.get_float("model.tau");
    head.interaction.depth = positive(config, "model.depth");
    head.interaction.heads = positive(config, "model.heads");
    head.interaction.head_dim = positive(config, "model.head_dim");
    head.interaction.ffn_dim = positive(config, "model.ffn");
    head.interaction.dropout = config.get_float("model.dropout");
    if (!(head.interaction.dropout >= 0 && head.interaction.dropout < 1))
      throw Error("model.dropout must be in [0, 1), got " + std::to_string(head.interaction.dropout));
    head.interaction.residual = config.get_bool("model.residual");
    head.detach_classifier_path = config.get_bool("model.detach_classifier_path");
    head.detach_interaction_path = config.get_bool("model.detach_interaction_path");
  }
  return model;
}

RunOptions run_options_of(const Config& config) {
  RunOptions run;
  run.data = data_options_of(config);
  run.model = model_options_of(config);

  run.prompts.source = config.get_string("prompts.source");
  run.prompts.file = resolve_input_path(config.get_string("prompts.file"));
  run.prompts.checkpoint = resolve_input_path(config.get_string("prompts.checkpoint"));
  run.prompts.prompt_template = config.get_string("prompts.template");
  run.prompts.randn_dim = config.get_int("prompts.randn_dim");
  run.prompts.randn_norm = config.get_float("prompts.randn_norm");

  run.loss_name = config.get_string("loss.name");
  run.loss.asl.gamma_pos = config.get_float("loss.gamma_pos");
  run.loss.asl.gamma_neg = config.get_float("loss.gamma_neg");
  run.loss.asl.clip = config.get_float("loss.clip");
  run.loss.db.gamma = config.get_float("loss.db_gamma");
  run.loss.db.lambda = config.get_float("loss.db_lambda");
  run.loss.cb.beta = config.get_float("loss.cb_beta");

  auto& optim = run.optim;
  optim.optimizer.name = config.get_string("optim.name");
  optim.optimizer.lr = config.get_float("optim.lr");
  optim.optimizer.weight_decay = config.get_float("optim.weight_decay");
  optim.optimizer.backbone_lr_mult = config.get_float("optim.backbone_lr_mult");
  optim.schedule.kind = config.get_string("optim.schedule");
  optim.schedule.pct_start = config.get_float("optim.pct_start");
  optim.schedule.div_factor = config.get_float("optim.div_factor");
  optim.schedule.final_div_factor = config.get_float("optim.final_div_factor");
  optim.epochs = positive(config, "optim.epochs");
  optim.batch_size = positive(config, "optim.batch_size");
  optim.accumulate_steps = positive(config, "optim.accumulate_steps");
  optim.ema_decay = config.get_float("optim.ema_decay");
  optim.grad_clip = config.get_float("optim.grad_clip");
  optim.amp_cuda = config.get_bool("optim.amp");
  optim.amp_cpu = config.get_string("optim.amp_cpu");

  auto& train = run.train;
  train.seed = static_cast<uint64_t>(config.get_int("train.seed"));
  auto part_seed = [&](const std::string& key) {
    const int64_t value = config.get_int(key);
    if (value < -1) throw Error(key + ": must be a seed >= 0, or -1 for train.seed; got " + std::to_string(value));
    return value == -1 ? train.seed : static_cast<uint64_t>(value);
  };
  train.init_seed = part_seed("train.init_seed");
  train.order_seed = part_seed("train.order_seed");
  train.augment_seed = part_seed("train.augment_seed");
  train.dropout_seed = part_seed("train.dropout_seed");
  train.diagnostics = config.get_bool("train.diagnostics");
  train.device = config.get_string("train.device");
  if (auto problem = device_name_problem(train.device); !problem.empty()) throw Error("train.device: " + problem);
  train.tf32 = config.get_bool("train.tf32");
  train.out_dir = config.get_string("train.out_dir");
  train.select_best = config.get_string("train.select") == "best";
  train.eval_every = std::max<int64_t>(1, config.get_int("train.eval_every"));
  train.channels_last = config.get_bool("train.channels_last");
  train.freeze_bn = config.get_bool("train.freeze_bn");
  train.dist_backend = config.get_string("train.dist_backend");
  train.dist_timeout_s = config.get_float("train.dist_timeout");
  if (!(train.dist_timeout_s > 0)) throw Error("train.dist_timeout: must be a positive number of seconds");
  train.dist_bucket_mb = config.get_float("train.dist_bucket_mb");
  if (!(train.dist_bucket_mb > 0)) throw Error("train.dist_bucket_mb: must be positive");
  train.dist_overlap = config.get_bool("train.dist_overlap");
  train.dist_check_every = config.get_int("train.dist_check_every");
  if (train.dist_check_every < 0) throw Error("train.dist_check_every: must be at least 0");
  train.backbone_weights = resolve_input_path(config.get_string("model.backbone_weights"));
  if (train.select_best && run.data.val_fraction <= 0)
    throw Error("train.select = best needs a validation split: set data.val_fraction (e.g. 0.1); the test list is never used for selection");
  return run;
}

std::shared_ptr<MultiLabelClassifier> build_model(const Config& config, int64_t num_classes,
                                                  const torch::Tensor& prompt_embeddings) {
  return build_model(model_options_of(config), num_classes, prompt_embeddings);
}

}  // namespace cprfl
