#pragma once
// Multi-label losses (docs/METHOD.md §6). Each is computed element-wise over (sample, class) —
// elementwise() returns that [B, c] tensor — and forward() is its mean (times a loss weight,
// 1 except CB-Focal's 10). logits s [B, c]; targets y [B, c] in {0, 1} (any float/int dtype).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "cprfl/data/class_stats.h"  // ClassCounts: n_c and N for the class-aware losses

namespace cprfl {

class MultiLabelLoss {
 public:
  virtual ~MultiLabelLoss() = default;
  virtual std::string name() const = 0;
  virtual torch::Tensor elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const = 0;
  virtual double loss_weight() const { return 1.0; }
  torch::Tensor forward(const torch::Tensor& logits, const torch::Tensor& targets) const;
  torch::Tensor operator()(const torch::Tensor& logits, const torch::Tensor& targets) const {
    return forward(logits, targets);
  }
};

// ASL (Ridnik et al.), the CPRFL default. p = σ(s), p_m = min(1 − p + clip, 1),
// L = y·log(max(p, eps)) + (1 − y)·log(max(p_m, eps)),
// w = (1 − p·y − p_m·(1 − y))^(γ+·y + γ−·(1 − y)), loss = −L·w.
struct AsymmetricLossOptions {
  double gamma_pos = 0.0;
  double gamma_neg = 4.0;
  double clip = 0.05;   // μ; 0 turns the probability shift off
  double eps = 1e-8;
  // The official code computes w without gradient (disable_torch_grad_focal_loss=True).
  bool focusing_weight_without_grad = true;
};

class AsymmetricLoss : public MultiLabelLoss {
 public:
  explicit AsymmetricLoss(const AsymmetricLossOptions& options = {}) : options_(options) {}
  std::string name() const override { return "asl"; }
  torch::Tensor elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const override;

 private:
  AsymmetricLossOptions options_;
};

// BCE with logits: −[y·log σ(s) + (1 − y)·log σ(−s)].
class BceLoss : public MultiLabelLoss {
 public:
  std::string name() const override { return "bce"; }
  torch::Tensor elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const override;
};

// PyTorch's MultiLabelSoftMarginLoss: −mean_c[y·log σ(s) + (1 − y)·log σ(−s)], then the
// mean over samples. Without class weights it equals BCE with logits (mean over both);
// it is kept as its own name because the paper's Table 2 lists it separately.
class MultiLabelSoftMarginLoss : public MultiLabelLoss {
 public:
  std::string name() const override { return "mls"; }
  torch::Tensor elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const override;
};

// Focal as in the DB authors' ResampleLoss: balance·(1 − p_t)^γ·BCE, p_t = exp(−BCE)
// (gradient flows through p_t, as there).
struct FocalOptions {
  double gamma = 2.0;
  double balance = 2.0;
};

class FocalLoss : public MultiLabelLoss {
 public:
  explicit FocalLoss(const FocalOptions& options = {}) : options_(options) {}
  std::string name() const override { return "focal"; }
  torch::Tensor elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const override;

 private:
  FocalOptions options_;
};

// Distribution-Balanced loss (Wu et al., ECCV 2020, as in their public code).
//  rebalance: r_ic = (1/n_c) / Σ_{k ∈ labels(i)} (1/n_k), for every class c of image i
//             (positives and negatives alike); w = σ(β·(r − γ_m)) + α_m.
//             An image with no labels has an empty sum: r = +inf, w = 1 + α_m (the public
//             code gives the same through a division by zero).
//  negative-tolerant: b_c = −log(N/n_c − 1)·κ/λ; z = s + b; z ← λ·z and w ← w/λ where y = 0.
//  DB-Focal: balance·(1 − p_t)^γ·BCE(z, y)·w with p_t = exp(−BCE(z, y)); DB: BCE(z, y)·w.
// The public code reduces BCE to a scalar before the focal term; here every term stays
// element-wise (docs/METHOD.md §10).
// Degenerate counts are clamped and never give inf/NaN: in 1/n_c, n_c is taken as at
// least 1; in the bias, n_c is clamped to [1, N − 1] (a class in no image, or in every
// image, gets the bias of a class in 1, or N − 1, images).
struct DistributionBalancedOptions {
  double alpha = 0.1;    // α_m
  double beta = 10.0;    // β
  double gamma = 0.2;    // γ_m: 0.2 COCO-LT, 0.3 VOC-LT
  double kappa = 0.05;   // κ (the public code's init_bias)
  double lambda = 2.0;   // λ (neg_scale): 2.0 COCO-LT, 5.0 VOC-LT
  bool focal = true;     // false = "DB no-focal"
  FocalOptions focal_options;
};

class DistributionBalancedLoss : public MultiLabelLoss {
 public:
  DistributionBalancedLoss(const ClassCounts& counts, const DistributionBalancedOptions& options = {});
  std::string name() const override { return options_.focal ? "db_focal" : "db"; }
  torch::Tensor elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  torch::Tensor rebalance_weights(const torch::Tensor& targets) const;  // w before the /λ on negatives [B, c]
  const torch::Tensor& bias() const { return bias_; }                   // b [c]

 private:
  DistributionBalancedOptions options_;
  torch::Tensor inverse_counts_;  // 1 / max(n_c, 1), [c]
  torch::Tensor bias_;
};

// Class-Balanced focal (Cui et al.): weight_c = (1 − β)/(1 − β^{n_c}) (n_c taken as at least 1),
// times the focal loss; loss weight 10.
struct ClassBalancedOptions {
  double beta = 0.9;
  double loss_weight = 10.0;
  FocalOptions focal_options;
};

class ClassBalancedFocalLoss : public MultiLabelLoss {
 public:
  ClassBalancedFocalLoss(const ClassCounts& counts, const ClassBalancedOptions& options = {});
  std::string name() const override { return "cb_focal"; }
  torch::Tensor elementwise(const torch::Tensor& logits, const torch::Tensor& targets) const override;
  double loss_weight() const override { return options_.loss_weight; }
  const torch::Tensor& class_weights() const { return class_weights_; }

 private:
  ClassBalancedOptions options_;
  torch::Tensor class_weights_;
};

struct LossOptions {
  AsymmetricLossOptions asl;
  FocalOptions focal;
  DistributionBalancedOptions db;  // its `focal` flag is set by the name (db_focal / db)
  ClassBalancedOptions cb;
  ClassCounts counts;              // required by db_focal, db and cb_focal
};

// "asl" | "bce" | "mls" | "focal" | "db_focal" | "db" | "cb_focal"; anything else, or missing
// class counts for the class-aware ones, is a cprfl::Error.
std::unique_ptr<MultiLabelLoss> make_loss(const std::string& name, const LossOptions& options = {});
std::vector<std::string> loss_names();

}  // namespace cprfl
