#include "cprfl/model/cprfl.h"

#include <cmath>

#include "cprfl/common/error.h"
#include "cprfl/io/state_dict.h"

namespace cprfl {

namespace nn = torch::nn;

// ---- PI ----------------------------------------------------------------------------------

PromptInitializerImpl::PromptInitializerImpl(torch::Tensor text_embeddings, int64_t dim, int64_t hidden_dim) {
  if (!text_embeddings.defined() || text_embeddings.dim() != 2 || text_embeddings.size(0) < 1 ||
      text_embeddings.size(1) < 1)
    fail_in("model", "the text embeddings W must be a [classes, width] matrix, got " + shape_string(text_embeddings));
  if (dim < 1 || hidden_dim < 1) fail_in("model", "prompt widths must be >= 1");
  text_embeddings_ = register_buffer("text_embeddings", text_embeddings.detach().to(torch::kFloat).clone());
  first_ = register_module("0", nn::Linear(text_embeddings.size(1), hidden_dim));
  second_ = register_module("3", nn::Linear(hidden_dim, dim));
}

torch::Tensor PromptInitializerImpl::forward() { return forward(text_embeddings_); }

torch::Tensor PromptInitializerImpl::forward(const torch::Tensor& text_embeddings) {
  return second_(torch::gelu(first_(text_embeddings)));
}

// ---- VSI ---------------------------------------------------------------------------------

SelfAttentionImpl::SelfAttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, double dropout)
    : heads_(heads), head_dim_(head_dim) {
  const int64_t inner = heads * head_dim;
  to_qkv = register_module("to_qkv", nn::Linear(nn::LinearOptions(dim, 3 * inner).bias(false)));
  if (!(heads == 1 && head_dim == dim))
    to_out = register_module("to_out", nn::Sequential(nn::Linear(inner, dim), nn::Dropout(dropout)));
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x) { return forward_rows(x, 0); }

torch::Tensor SelfAttentionImpl::forward_rows(const torch::Tensor& x, int64_t wanted_first) {
  const int64_t first_query = keep_attention_ ? 0 : wanted_first;  // the full [n, n] map was asked for
  const int64_t batch = x.size(0), tokens = x.size(1), queries = tokens - first_query;
  const int64_t inner = heads_ * head_dim_;
  auto split_heads = [&](const torch::Tensor& t, int64_t rows) {
    return t.reshape({batch, rows, heads_, head_dim_}).transpose(1, 2);  // "b n (h d) -> b h n d"
  };
  torch::Tensor q, k, v;
  if (first_query == 0) {
    auto qkv = to_qkv(x).chunk(3, -1);  // [B, n, 3·h·dh] -> q, k, v
    q = qkv[0], k = qkv[1], v = qkv[2];
  } else {
    // Only rows first_query.. are wanted: project queries for those rows alone (to_qkv's
    // weight rows are q, k, v in that order), keys and values for every row.
    const auto& weight = to_qkv->weight;
    q = torch::nn::functional::linear(x.slice(1, first_query), weight.slice(0, 0, inner));
    auto kv = torch::nn::functional::linear(x, weight.slice(0, inner)).chunk(2, -1);
    k = kv[0], v = kv[1];
  }
  q = split_heads(q, queries), k = split_heads(k, tokens), v = split_heads(v, tokens);
  auto attention = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(head_dim_))), -1);
  if (keep_attention_) last_attention_ = attention.detach();
  auto out = torch::matmul(attention, v).transpose(1, 2).reshape({batch, queries, inner});
  if (first_query != wanted_first) out = out.slice(1, wanted_first - first_query);
  return to_out ? to_out->forward(out) : out;
}

SharedAttentionRows SelfAttentionImpl::project_shared(const torch::Tensor& rows) {
  auto split = [&](const torch::Tensor& t) { return t.reshape({rows.size(0), heads_, head_dim_}).transpose(0, 1); };
  auto qkv = to_qkv(rows).chunk(3, -1);
  return {split(qkv[0]), split(qkv[1]), split(qkv[2])};
}

torch::Tensor SelfAttentionImpl::forward_shared(const torch::Tensor& x, const SharedAttentionRows& shared,
                                                bool rows_only) {
  const int64_t batch = x.size(0), own = x.size(1), inner = heads_ * head_dim_;
  auto split_heads = [&](const torch::Tensor& t) {
    return t.reshape({batch, own, heads_, head_dim_}).transpose(1, 2);
  };
  auto broadcast = [&](const torch::Tensor& t) { return t.unsqueeze(0).expand({batch, -1, -1, -1}); };
  const auto& weight = to_qkv->weight;
  torch::Tensor q;
  if (rows_only) {
    q = broadcast(shared.q);
  } else {
    auto own_q = split_heads(torch::nn::functional::linear(x, weight.slice(0, 0, inner)));
    q = torch::cat({own_q, broadcast(shared.q)}, 2);
  }
  auto kv = torch::nn::functional::linear(x, weight.slice(0, inner)).chunk(2, -1);
  auto k = torch::cat({split_heads(kv[0]), broadcast(shared.k)}, 2);
  auto v = torch::cat({split_heads(kv[1]), broadcast(shared.v)}, 2);
  auto attention = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(head_dim_))), -1);
  auto out = torch::matmul(attention, v).transpose(1, 2).reshape({batch, q.size(2), inner});
  return to_out ? to_out->forward(out) : out;
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t hidden_dim, double dropout) {
  net = register_module("net", nn::Sequential(nn::Linear(dim, hidden_dim), nn::GELU(), nn::Dropout(dropout),
                                              nn::Linear(hidden_dim, dim), nn::Dropout(dropout)));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) { return net->forward(x); }

InteractionLayerImpl::InteractionLayerImpl(int64_t dim, const InteractionOptions& options)
    : residual_(options.residual) {
  // Plain modules as named containers, so the names read "0.norm", "0.fn.to_qkv", ... as in
  // the official PreNorm(dim, fn) wrappers.
  auto attention_block = register_module("0", std::make_shared<nn::Module>());
  attention_norm_ = attention_block->register_module("norm", nn::LayerNorm(nn::LayerNormOptions({dim})));
  attention_ = attention_block->register_module(
      "fn", SelfAttention(dim, options.heads, options.head_dim, options.dropout));
  auto feed_forward_block = register_module("1", std::make_shared<nn::Module>());
  feed_forward_norm_ = feed_forward_block->register_module("norm", nn::LayerNorm(nn::LayerNormOptions({dim})));
  feed_forward_ = feed_forward_block->register_module("fn", FeedForward(dim, options.ffn_dim, options.dropout));
}

namespace {

// LayerNorm in its weights' precision: under CPU bf16 autocast (LibTorch 1.13) a linear's
// output arrives in bf16, which layer_norm refuses beside float32 weights (CUDA autocast casts
// it itself). A no-op in float32.
torch::Tensor normalize(nn::LayerNorm& norm, const torch::Tensor& x) {
  return norm(x.scalar_type() == norm->weight.scalar_type() ? x : x.to(norm->weight.scalar_type()));
}

}  // namespace

torch::Tensor InteractionLayerImpl::forward(const torch::Tensor& x) { return forward_rows(x, 0); }

torch::Tensor InteractionLayerImpl::forward_rows(const torch::Tensor& x, int64_t first_row) {
  auto attended = attention_->forward_rows(normalize(attention_norm_, x), first_row);
  if (residual_) {
    auto y = x.slice(1, first_row) + attended;
    return y + feed_forward_(normalize(feed_forward_norm_, y));
  }
  return feed_forward_(normalize(feed_forward_norm_, attended));
}

SharedAttentionRows InteractionLayerImpl::share_rows(const torch::Tensor& rows) {
  return attention_->project_shared(normalize(attention_norm_, rows));
}

torch::Tensor InteractionLayerImpl::forward_shared(const torch::Tensor& x, const torch::Tensor& rows,
                                                   const SharedAttentionRows& shared, bool rows_only) {
  auto attended = attention_->forward_shared(normalize(attention_norm_, x), shared, rows_only);
  if (residual_) {
    auto batch_rows = rows.unsqueeze(0).expand({x.size(0), -1, -1});
    auto y = (rows_only ? batch_rows : torch::cat({x, batch_rows}, 1)) + attended;
    return y + feed_forward_(normalize(feed_forward_norm_, y));
  }
  return feed_forward_(normalize(feed_forward_norm_, attended));
}

VisualSemanticInteractionImpl::VisualSemanticInteractionImpl(int64_t dim, const InteractionOptions& options)
    : options_(options) {
  if (dim < 1 || options.depth < 1 || options.heads < 1 || options.head_dim < 1 || options.ffn_dim < 1)
    fail_in("model", "VSI widths, heads and depth must be >= 1");
  if (options.dropout < 0.0 || options.dropout >= 1.0) fail_in("model", "VSI dropout must be in [0, 1)");
  layers = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < options.depth; ++i) layers->push_back(InteractionLayer(dim, options));
}

torch::Tensor VisualSemanticInteractionImpl::forward(const torch::Tensor& tokens, const torch::Tensor& prompts) {
  const int64_t batch = tokens.size(0), visual = tokens.size(1);
  auto batch_prompts = prompts.dim() == 2 ? prompts.unsqueeze(0).expand({batch, prompts.size(0), prompts.size(1)})
                                          : prompts;
  auto z = torch::cat({tokens, batch_prompts}, 1);
  // Only the prompt rows of the last layer are returned, and every operation but attention
  // is row-wise: the last layer computes those rows alone (exact, ~1/3 of VSI's work saved).
  const auto depth = static_cast<int64_t>(layers->size());
  for (int64_t i = 0; i + 1 < depth; ++i) z = layers[i]->as<InteractionLayer>()->forward(z);
  return layers[depth - 1]->as<InteractionLayer>()->forward_rows(z, visual);
}

SharedAttentionRows VisualSemanticInteractionImpl::share_prompts(const torch::Tensor& prompts) {
  return layers[0]->as<InteractionLayer>()->share_rows(prompts);
}

torch::Tensor VisualSemanticInteractionImpl::forward_shared(const torch::Tensor& tokens, const torch::Tensor& prompts,
                                                            const SharedAttentionRows& shared) {
  auto first = layers[0]->as<InteractionLayer>();
  if (first->attention()->keeps_attention() || prompts.dim() != 2) return forward(tokens, prompts);
  const auto depth = static_cast<int64_t>(layers->size());
  if (depth == 1) return first->forward_shared(tokens, prompts, shared, /*rows_only=*/true);
  auto z = first->forward_shared(tokens, prompts, shared, /*rows_only=*/false);
  for (int64_t i = 1; i + 1 < depth; ++i) z = layers[i]->as<InteractionLayer>()->forward(z);
  return layers[depth - 1]->as<InteractionLayer>()->forward_rows(z, tokens.size(1));
}

// ---- the model ---------------------------------------------------------------------------

CprflModelImpl::CprflModelImpl(std::shared_ptr<Backbone> backbone, torch::Tensor text_embeddings,
                               const CprflOptions& options)
    : MultiLabelClassifier(std::move(backbone)), options_(options) {
  if (options.dim < 1) fail_in("model", "the joint width d must be >= 1");
  if (!(options.prompt_hidden_ratio > 0.0)) fail_in("model", "prompt_hidden_ratio (tau) must be > 0");
  const auto hidden = std::max<int64_t>(1, std::llround(options.prompt_hidden_ratio * double(options.dim)));
  label_emb = register_module("label_emb", PromptInitializer(text_embeddings, options.dim, hidden));
  num_classes_ = label_emb->text_embeddings().size(0);
  fc = register_module("fc", nn::Sequential(nn::Linear(backbone_->out_channels(), options.dim)));
  attention = register_module("attention", VisualSemanticInteraction(options.dim, options.interaction));
}

torch::Tensor CprflModelImpl::visual_tokens(const torch::Tensor& images) {
  auto feature_map = backbone_->forward(images.to(compute_dtype_));  // [B, d0, h, w]
  return fc->forward(feature_map.flatten(2).transpose(1, 2));
}

torch::Tensor CprflModelImpl::score(const torch::Tensor& refined_prompts, const torch::Tensor& prompts) {
  return (refined_prompts * prompts.unsqueeze(0)).sum(-1);
}

CprflOutputs CprflModelImpl::forward_all(const torch::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != 3)
    fail_in("model", "images must be [batch, 3, height, width], got " + shape_string(images));
  CprflOutputs out;
  if (may_cache()) {  // inference: P and its first-layer projections come from the cache
    auto [prompts, shared] = cached_prompt_state();
    out.prompts = prompts;
    out.refined_prompts = attention->forward_shared(visual_tokens(images), prompts.to(compute_dtype_), shared);
    out.logits = score(out.refined_prompts.to(torch::kFloat), out.prompts);
    return out;
  }
  out.prompts = prompts();
  auto tokens = visual_tokens(images);
  auto interaction_prompts = options_.detach_interaction_path ? out.prompts.detach() : out.prompts;
  out.refined_prompts = attention->forward(tokens, interaction_prompts.to(compute_dtype_));
  // (Under training's autocast P' is bf16 and the product promotes it to float32, as here.)
  out.logits = score(out.refined_prompts.to(torch::kFloat),
                     options_.detach_classifier_path ? out.prompts.detach() : out.prompts);
  return out;
}

torch::Tensor CprflModelImpl::forward(const torch::Tensor& images) { return forward_all(images).logits; }

std::vector<std::pair<const void*, int64_t>> CprflModelImpl::prompt_cache_key() const {
  std::vector<std::pair<const void*, int64_t>> key;
  const nn::Module* label_module = label_emb.get();
  const nn::Module* first_layer = attention->layers->ptr(0).get();
  for (const auto* module : {label_module, first_layer})
    for (const auto& tensor : named_state(*module)) key.emplace_back(tensor.second.data_ptr(), tensor.second._version());
  return key;
}

bool CprflModelImpl::may_cache() const {
  return options_.cache_prompts && !is_training() && !torch::GradMode::is_enabled();
}

std::pair<torch::Tensor, SharedAttentionRows> CprflModelImpl::cached_prompt_state() {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  auto key = prompt_cache_key();
  if (!cached_prompts_.defined() || key != cached_key_) {
    cached_prompts_ = label_emb->forward();
    cached_shared_ = attention->share_prompts(cached_prompts_.to(compute_dtype_));
    cached_key_ = std::move(key);
  }
  return {cached_prompts_, cached_shared_};
}

torch::Tensor CprflModelImpl::prompts() {
  if (!may_cache()) return label_emb->forward();
  return cached_prompt_state().first;
}

void CprflModelImpl::invalidate_prompt_cache() {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  cached_prompts_ = torch::Tensor();
  cached_shared_ = {};
  cached_key_.clear();
}

bool CprflModelImpl::has_cached_prompts() const {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  return cached_prompts_.defined();
}

void CprflModelImpl::set_compute_dtype(torch::ScalarType dtype) {
  backbone_to(dtype);
  fc->to(dtype);
  attention->to(dtype);
  compute_dtype_ = dtype;
  invalidate_prompt_cache();
}

void CprflModelImpl::train(bool on) {
  MultiLabelClassifier::train(on);
  invalidate_prompt_cache();
}

}  // namespace cprfl
