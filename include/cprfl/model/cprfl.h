#pragma once
// The CPRFL head (docs/METHOD.md §1-§5) and the full model.
//
//   F  = φ(f_loc)                 visual tokens [B, v, d]            (module "fc.0")
//   P  = GELU(W·W1 + b1)·W2 + b2  category prompts [c, d]            (module "label_emb")
//   P' = VSI([F ; P])[v:]         refined prompts [B, c, d]          (module "attention")
//   s_i = p'_i · p_i              logits [B, c]
//
// Module names mirror the authors' PyTorch code, so its checkpoints map over by name:
// fc.0.*, label_emb.0.*, label_emb.3.*, attention.layers.<i>.0.norm.*,
// attention.layers.<i>.0.fn.to_qkv.weight, attention.layers.<i>.0.fn.to_out.0.*,
// attention.layers.<i>.1.norm.*, attention.layers.<i>.1.fn.net.{0,3}.*. Their backbone is
// an nn.Sequential ("Backbone.0" = conv1 ... "Backbone.7" = layer4); ours keeps torchvision's
// names under "backbone.". The frozen text embeddings W are the buffer label_emb.text_embeddings.
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include "cprfl/model/classifier.h"
#include "cprfl/model/resnet.h"

namespace cprfl {

// PI (§2): a two-layer MLP from the text embeddings W [c, m] to the prompts P [c, d].
// W is a constant buffer (the text encoder is frozen, the paper's default).
// Children "0" (Linear m -> t) and "3" (Linear t -> d) keep the official indices
// (its nn.Sequential is Linear, Identity, GELU, Linear).
class PromptInitializerImpl : public torch::nn::Module {
 public:
  PromptInitializerImpl(torch::Tensor text_embeddings, int64_t dim, int64_t hidden_dim);
  torch::Tensor forward();                                        // P = PI(W)
  torch::Tensor forward(const torch::Tensor& text_embeddings);    // PI applied to any [c, m]
  const torch::Tensor& text_embeddings() const { return text_embeddings_; }

 private:
  torch::Tensor text_embeddings_;
  torch::nn::Linear first_{nullptr}, second_{nullptr};
};
TORCH_MODULE(PromptInitializer);

struct InteractionOptions {
  int64_t depth = 1;        // Transformer layers
  int64_t heads = 8;
  int64_t head_dim = 512;   // official: 8 x 512 = inner width 4096
  int64_t ffn_dim = 2048;
  double dropout = 0.1;     // after GELU, after the FFN output and after the attention output
  // false = the official structure, x = Attn(LN(x)); x = FF(LN(x)) (no residual connections).
  // true  = x = x + Attn(LN(x)); x = x + FF(LN(x)) (the usual pre-LN layer; an option to test).
  bool residual = false;
};

// Rows that every batch element shares (the prompts P, constant at inference) after the
// first layer's attention LayerNorm: their queries, keys and values [heads, c, dh], computed
// once instead of once per image.
struct SharedAttentionRows {
  torch::Tensor q, k, v;
};

// Multi-head self-attention, official layout: to_qkv = Linear(d, 3·h·dh, no bias) split as
// q, k, v then heads as (h dh); softmax(q·kᵀ / sqrt(dh))·v; to_out = [Linear(h·dh, d), Dropout].
// (As in the official code, to_out is left out when heads == 1 and head_dim == d.)
class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, double dropout);
  torch::Tensor forward(const torch::Tensor& x);  // [B, n, d] -> [B, n, d]
  // Only output rows first_query.. ([B, n - first_query, d]); keys and values still come from
  // every row. Ignored (all rows computed) while keep_attention is on.
  torch::Tensor forward_rows(const torch::Tensor& x, int64_t first_query);
  // rows [c, d] (already normalised) -> their projections, for forward_shared.
  SharedAttentionRows project_shared(const torch::Tensor& rows);
  // forward([x ; rows]) for x [B, v, d] and shared = project_shared(rows), without recomputing
  // the rows' projections; only the rows' outputs [B, c, d] when rows_only.
  torch::Tensor forward_shared(const torch::Tensor& x, const SharedAttentionRows& shared, bool rows_only);
  // The softmax weights [B, heads, n, n] of the last forward (only if keep_attention(true)).
  const torch::Tensor& last_attention() const { return last_attention_; }
  void keep_attention(bool keep) { keep_attention_ = keep; }
  bool keeps_attention() const { return keep_attention_; }

 private:
  int64_t heads_, head_dim_;
  torch::nn::Linear to_qkv{nullptr};
  torch::nn::Sequential to_out{nullptr};
  bool keep_attention_ = false;
  torch::Tensor last_attention_;
};
TORCH_MODULE(SelfAttention);

// net = [Linear(d, ffn), GELU, Dropout, Linear(ffn, d), Dropout] (official indices 0 and 3).
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t hidden_dim, double dropout);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential net{nullptr};
};
TORCH_MODULE(FeedForward);

// One encoder layer: child "0" = {norm, fn = SelfAttention}, child "1" = {norm, fn = FeedForward}
// (the official PreNorm wrappers).
class InteractionLayerImpl : public torch::nn::Module {
 public:
  InteractionLayerImpl(int64_t dim, const InteractionOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  // Output rows first_row.. only (each output row depends on all input rows only through
  // attention's keys and values).
  torch::Tensor forward_rows(const torch::Tensor& x, int64_t first_row);
  // For rows [c, d] shared by the batch: LayerNorm then their attention projections.
  SharedAttentionRows share_rows(const torch::Tensor& rows);
  // forward([x ; rows]) given shared = share_rows(rows); only the rows' outputs when rows_only.
  torch::Tensor forward_shared(const torch::Tensor& x, const torch::Tensor& rows, const SharedAttentionRows& shared,
                               bool rows_only);
  SelfAttention attention() const { return attention_; }

 private:
  bool residual_;
  torch::nn::LayerNorm attention_norm_{nullptr}, feed_forward_norm_{nullptr};
  SelfAttention attention_{nullptr};
  FeedForward feed_forward_{nullptr};
};
TORCH_MODULE(InteractionLayer);

// VSI (§3): the Transformer over Z = [F ; P] (visual tokens first, no positional embedding);
// returns only the c prompt positions, P' [B, c, d].
class VisualSemanticInteractionImpl : public torch::nn::Module {
 public:
  VisualSemanticInteractionImpl(int64_t dim, const InteractionOptions& options = {});
  // tokens [B, v, d]; prompts [c, d] (shared by the batch) or [B, c, d].
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& prompts);
  // forward() for prompts [c, d], reusing share_prompts(prompts) (computed once while P is
  // fixed, at inference). Falls back to forward() while an attention map is being kept.
  SharedAttentionRows share_prompts(const torch::Tensor& prompts);
  torch::Tensor forward_shared(const torch::Tensor& tokens, const torch::Tensor& prompts,
                               const SharedAttentionRows& shared);
  const InteractionOptions& options() const { return options_; }
  torch::nn::ModuleList layers{nullptr};

 private:
  InteractionOptions options_;
};
TORCH_MODULE(VisualSemanticInteraction);

// The state-dict key of W inside a CprflModel (a buffer of the prompt initializer).
inline constexpr const char* kPromptEmbeddingsKey = "label_emb.text_embeddings";

struct CprflOptions {
  int64_t dim = 2048;                // d, the joint width
  double prompt_hidden_ratio = 0.5;  // τ: PI's hidden width t = round(τ·d)
  InteractionOptions interaction;
  // DPBP (§5): both off = the method. detach_classifier_path scores with p_i.detach();
  // detach_interaction_path feeds P.detach() into VSI. Each cuts one of the two paths by
  // which the loss reaches P and PI. (The official flags differ slightly: no_cls_grad is
  // detach_classifier_path, but no_feature_grad detaches VSI's whole output P', which also
  // stops VSI, φ and the backbone from learning; here only P's input copy is detached.)
  bool detach_classifier_path = false;
  bool detach_interaction_path = false;
  // At inference P = PI(W) is constant: keep it (and the first VSI layer's projections of it)
  // while the model is in eval mode and autograd is off (NoGradGuard / InferenceMode). Dropped
  // on train()/eval() and when a PI or first-layer parameter or W changes (by data pointer or
  // in-place version counter).
  bool cache_prompts = true;
};

// Everything one forward computes, for inspection and explanation.
struct CprflOutputs {
  torch::Tensor logits;           // s [B, c]
  torch::Tensor prompts;          // P [c, d]
  torch::Tensor refined_prompts;  // P' [B, c, d]
};

class CprflModelImpl : public MultiLabelClassifier {
 public:
  // text_embeddings: W [c, m] (c categories, m the text-embedding width).
  CprflModelImpl(std::shared_ptr<Backbone> backbone, torch::Tensor text_embeddings,
                 const CprflOptions& options = {});
  torch::Tensor forward(const torch::Tensor& images) override;  // logits [B, c]
  CprflOutputs forward_all(const torch::Tensor& images);
  int64_t num_classes() const override { return num_classes_; }
  const CprflOptions& options() const { return options_; }

  torch::Tensor prompts();                                     // P [c, d] (cached when allowed)
  torch::Tensor visual_tokens(const torch::Tensor& images);    // F [B, v, d]
  // s[b, i] = refined[b, i, :] · prompts[i, :]
  static torch::Tensor score(const torch::Tensor& refined_prompts, const torch::Tensor& prompts);

  void train(bool on = true) override;  // also drops the prompt cache
  // Backbone, φ and VSI in `dtype`; W, PI (so P) and the scores stay float32.
  void set_compute_dtype(torch::ScalarType dtype) override;
  void invalidate_prompt_cache();
  bool has_cached_prompts() const;

  torch::nn::Sequential fc{nullptr};   // φ: [Linear(d0, d)]
  PromptInitializer label_emb{nullptr};
  VisualSemanticInteraction attention{nullptr};

 private:
  std::vector<std::pair<const void*, int64_t>> prompt_cache_key() const;
  bool may_cache() const;
  // P and its shared first-layer projections, from the cache (filled when stale).
  std::pair<torch::Tensor, SharedAttentionRows> cached_prompt_state();

  CprflOptions options_;
  int64_t num_classes_;
  mutable std::mutex cache_mutex_;
  torch::Tensor cached_prompts_;
  SharedAttentionRows cached_shared_;
  std::vector<std::pair<const void*, int64_t>> cached_key_;
};
TORCH_MODULE(CprflModel);

}  // namespace cprfl
