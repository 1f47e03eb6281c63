#include "cprfl/loss/losses.h"

#include <cmath>
#include <optional>

#include "cprfl/common/error.h"
#include "cprfl/io/state_dict.h"

namespace cprfl {

namespace {

// Shape checks only: checking that targets are 0/1 would cost a device sync every step.
torch::Tensor checked_targets(const std::string& loss, const torch::Tensor& logits, const torch::Tensor& targets) {
  if (!logits.defined() || logits.dim() != 2 || !logits.is_floating_point())
    fail_in(loss + " loss", "logits must be a floating [batch, classes] tensor, got " + shape_string(logits));
  if (!targets.defined() || targets.sizes() != logits.sizes())
    fail_in(loss + " loss", "targets " + shape_string(targets) + " do not match logits " + shape_string(logits));
  return targets.to(logits.options());
}

torch::Tensor bce_elementwise(const torch::Tensor& logits, const torch::Tensor& targets) {
  return at::binary_cross_entropy_with_logits(logits, targets, {}, {}, at::Reduction::None);
}

// balance·(1 − p_t)^γ·BCE with p_t = exp(−BCE); `weight` (may be undefined) multiplies the BCE
// but not p_t, as in the DB authors' code.
torch::Tensor focal_elementwise(const torch::Tensor& logits, const torch::Tensor& targets, const FocalOptions& focal,
                                const torch::Tensor& weight = {}) {
  auto bce = bce_elementwise(logits, targets);
  auto p_t = torch::exp(-bce);
  auto loss = focal.balance * torch::pow(1 - p_t, focal.gamma) * bce;
  return weight.defined() ? loss * weight : loss;
}

void check_counts(const std::string& loss, const ClassCounts& counts, bool need_images) {
  if (counts.counts.empty()) fail_in(loss + " loss", "needs the training-set class counts n_c (none given)");
  for (std::size_t c = 0; c < counts.counts.size(); ++c) {
    if (counts.counts[c] < 0) fail_in(loss + " loss", "class " + std::to_string(c) + " has a negative count");
    if (need_images && counts.counts[c] > counts.num_images)
      fail_in(loss + " loss", "class " + std::to_string(c) + " count " + std::to_string(counts.counts[c]) +
                                  " exceeds the number of training images " + std::to_string(counts.num_images));
  }
  if (need_images && counts.num_images < 2)
    fail_in(loss + " loss", "needs the number of training images N >= 2, got " + std::to_string(counts.num_images));
}

void check_classes(const std::string& loss, const torch::Tensor& logits, const torch::Tensor& per_class) {
  if (logits.size(1) != per_class.size(0))
    fail_in(loss + " loss", "class counts cover " + std::to_string(per_class.size(0)) + " classes but the logits have " +
                                std::to_string(logits.size(1)));
}

}  // namespace

torch::Tensor MultiLabelLoss::forward(const torch::Tensor& logits, const torch::Tensor& targets) const {
  auto mean = elementwise(logits, targets).mean();
  return loss_weight() == 1.0 ? mean : mean * loss_weight();
}

torch::Tensor AsymmetricLoss::elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const {
  auto y = checked_targets(name(), logits, targets);
  auto p = torch::sigmoid(logits);
  auto p_m = 1 - p;
  if (options_.clip > 0) p_m = (p_m + options_.clip).clamp_max(1.0);
  auto log_likelihood = y * torch::log(p.clamp_min(options_.eps)) + (1 - y) * torch::log(p_m.clamp_min(options_.eps));
  if (options_.gamma_pos > 0 || options_.gamma_neg > 0) {
    torch::Tensor weight;
    {
      std::optional<torch::NoGradGuard> no_grad;
      if (options_.focusing_weight_without_grad) no_grad.emplace();
      weight = torch::pow(1 - p * y - p_m * (1 - y), options_.gamma_pos * y + options_.gamma_neg * (1 - y));
    }
    log_likelihood = log_likelihood * weight;
  }
  return -log_likelihood;
}

torch::Tensor BceLoss::elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const {
  return bce_elementwise(logits, checked_targets(name(), logits, targets));
}

torch::Tensor MultiLabelSoftMarginLoss::elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const {
  auto y = checked_targets(name(), logits, targets);
  return -(y * torch::log_sigmoid(logits) + (1 - y) * torch::log_sigmoid(-logits));
}

torch::Tensor FocalLoss::elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const {
  return focal_elementwise(logits, checked_targets(name(), logits, targets), options_);
}

DistributionBalancedLoss::DistributionBalancedLoss(const ClassCounts& counts, const DistributionBalancedOptions& options)
    : options_(options) {
  check_counts(name(), counts, /*need_images=*/true);
  if (!(options.lambda > 0)) fail_in(name() + " loss", "lambda (neg_scale) must be > 0");
  const auto classes = static_cast<int64_t>(counts.counts.size());
  const double images = double(counts.num_images);
  inverse_counts_ = torch::empty({classes}, torch::kDouble);
  bias_ = torch::empty({classes}, torch::kDouble);
  auto inverse = inverse_counts_.accessor<double, 1>();
  auto bias = bias_.accessor<double, 1>();
  for (int64_t c = 0; c < classes; ++c) {
    const double n = double(counts.counts[c]);
    inverse[c] = 1.0 / std::max(n, 1.0);
    const double clamped = std::min(std::max(n, 1.0), images - 1.0);
    bias[c] = -std::log(images / clamped - 1.0) * options.kappa / options.lambda;
  }
  inverse_counts_ = inverse_counts_.to(torch::kFloat);
  bias_ = bias_.to(torch::kFloat);
}

torch::Tensor DistributionBalancedLoss::rebalance_weights(const torch::Tensor& targets) const {
  torch::NoGradGuard no_grad;
  auto y = targets.to(torch::kFloat);
  auto inverse = inverse_counts_.to(y.device());
  auto repeat_rate = (y * inverse).sum(1, /*keepdim=*/true);  // Σ_{k ∈ labels(i)} 1/n_k; 0 for no labels
  auto r = inverse.unsqueeze(0) / repeat_rate;                 // +inf where the image has no labels
  return torch::sigmoid(options_.beta * (r - options_.gamma)) + options_.alpha;
}

torch::Tensor DistributionBalancedLoss::elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const {
  auto y = checked_targets(name(), logits, targets);
  check_classes(name(), logits, bias_);
  auto weight = rebalance_weights(y).to(logits.options());
  auto z = logits + bias_.to(logits.options());
  const double lambda = options_.lambda;
  z = z * (1 - y) * lambda + z * y;
  weight = weight / lambda * (1 - y) + weight * y;
  if (options_.focal) return focal_elementwise(z, y, options_.focal_options, weight);
  return bce_elementwise(z, y) * weight;
}

ClassBalancedFocalLoss::ClassBalancedFocalLoss(const ClassCounts& counts, const ClassBalancedOptions& options)
    : options_(options) {
  check_counts(name(), counts, /*need_images=*/false);
  if (!(options.beta > 0 && options.beta < 1)) fail_in(name() + " loss", "beta must be in (0, 1)");
  const auto classes = static_cast<int64_t>(counts.counts.size());
  class_weights_ = torch::empty({classes}, torch::kDouble);
  auto weights = class_weights_.accessor<double, 1>();
  for (int64_t c = 0; c < classes; ++c)
    weights[c] = (1.0 - options.beta) / (1.0 - std::pow(options.beta, std::max<double>(double(counts.counts[c]), 1.0)));
  class_weights_ = class_weights_.to(torch::kFloat);
}

torch::Tensor ClassBalancedFocalLoss::elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const {
  auto y = checked_targets(name(), logits, targets);
  check_classes(name(), logits, class_weights_);
  auto weight = class_weights_.to(logits.options()).unsqueeze(0).expand_as(logits);
  return focal_elementwise(logits, y, options_.focal_options, weight);
}

std::vector<std::string> loss_names() { return {"asl", "bce", "mls", "focal", "db_focal", "db", "cb_focal"}; }

std::unique_ptr<MultiLabelLoss> make_loss(const std::string& name, const LossOptions& options) {
  if (name == "asl") return std::make_unique<AsymmetricLoss>(options.asl);
  if (name == "bce") return std::make_unique<BceLoss>();
  if (name == "mls") return std::make_unique<MultiLabelSoftMarginLoss>();
  if (name == "focal") return std::make_unique<FocalLoss>(options.focal);
  if (name == "db_focal" || name == "db") {
    auto db = options.db;
    db.focal = name == "db_focal";
    return std::make_unique<DistributionBalancedLoss>(options.counts, db);
  }
  if (name == "cb_focal") return std::make_unique<ClassBalancedFocalLoss>(options.counts, options.cb);
  std::string valid;
  for (const auto& known : loss_names()) valid += (valid.empty() ? "" : ", ") + known;
  fail_in("loss", "unknown loss '" + name + "' (choose one of " + valid + ")");
}

}  // namespace cprfl
