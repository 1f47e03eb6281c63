#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "cprfl/model/backbone_registry.h"
#include "cprfl/common/error.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/io/state_dict.h"
#include "test_support.h"

using cprfl::testing::error_of;

using namespace cprfl;

namespace {

constexpr int64_t kClasses = 3, kTextWidth = 6, kDim = 8, kHeads = 2, kHeadDim = 4, kFfn = 16;


std::map<std::string, torch::Tensor> state_map(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> map;
  for (const auto& [name, tensor] : named_state(module)) map.emplace(name, tensor);
  return map;
}

// A tiny trunk (16x16 input -> 2x2 = 4 tokens) and a tiny head: fast on CPU.
std::shared_ptr<Backbone> tiny_backbone() {
  SmallResNetOptions options;
  options.widths = {4, 8, 8};
  return make_backbone("small", options).module;
}

CprflOptions tiny_options() {
  CprflOptions options;
  options.dim = kDim;
  options.interaction.heads = kHeads;
  options.interaction.head_dim = kHeadDim;
  options.interaction.ffn_dim = kFfn;
  options.interaction.dropout = 0.0;
  return options;
}

CprflModel tiny_model(const CprflOptions& options = tiny_options()) {
  torch::manual_seed(7);
  return CprflModel(tiny_backbone(), torch::randn({kClasses, kTextWidth}) * 3, options);
}

torch::Tensor tiny_images() {
  torch::manual_seed(11);
  return torch::randn({2, 3, 16, 16});
}

// One official VSI layer written out by hand: per-head loops, explicit LayerNorm/GELU.
torch::Tensor manual_layer(const torch::Tensor& x, const std::map<std::string, torch::Tensor>& p,
                           const std::string& prefix, bool residual) {
  auto ln = [&](const torch::Tensor& t, const std::string& name) {
    return torch::layer_norm(t, {kDim}, p.at(name + ".weight"), p.at(name + ".bias"), 1e-5);
  };
  const int64_t inner = kHeads * kHeadDim;
  auto qkv = torch::matmul(ln(x, prefix + "0.norm"), p.at(prefix + "0.fn.to_qkv.weight").t());
  std::vector<torch::Tensor> heads;
  for (int64_t h = 0; h < kHeads; ++h) {
    auto q = qkv.slice(-1, h * kHeadDim, (h + 1) * kHeadDim);
    auto k = qkv.slice(-1, inner + h * kHeadDim, inner + (h + 1) * kHeadDim);
    auto v = qkv.slice(-1, 2 * inner + h * kHeadDim, 2 * inner + (h + 1) * kHeadDim);
    auto weights = torch::softmax(torch::matmul(q, k.transpose(1, 2)) / std::sqrt(double(kHeadDim)), -1);
    heads.push_back(torch::matmul(weights, v));
  }
  auto attended = torch::matmul(torch::cat(heads, -1), p.at(prefix + "0.fn.to_out.0.weight").t()) +
                  p.at(prefix + "0.fn.to_out.0.bias");
  auto y = residual ? x + attended : attended;
  auto hidden = torch::gelu(torch::matmul(ln(y, prefix + "1.norm"), p.at(prefix + "1.fn.net.0.weight").t()) +
                            p.at(prefix + "1.fn.net.0.bias"));
  auto fed = torch::matmul(hidden, p.at(prefix + "1.fn.net.3.weight").t()) + p.at(prefix + "1.fn.net.3.bias");
  return residual ? y + fed : fed;
}

// The gradient of a fixed linear functional of the logits w.r.t. one named parameter.
torch::Tensor gradient_of(CprflModel& model, const std::string& name,
                          const std::function<torch::Tensor(const CprflOutputs&)>& logits_of) {
  model->zero_grad(/*set_to_none=*/true);
  auto out = model->forward_all(tiny_images());
  torch::manual_seed(3);
  auto probe = torch::randn({2, kClasses});
  (logits_of(out) * probe).sum().backward();
  auto grad = state_map(*model).at(name).grad();
  return grad.defined() ? grad.clone() : torch::zeros_like(state_map(*model).at(name));
}

}  // namespace

TEST(CprflModel, ForwardShapeAndOfficialParameterNames) {
  auto model = tiny_model();
  EXPECT_EQ(model->forward(tiny_images()).sizes().vec(), (std::vector<int64_t>{2, kClasses}));
  EXPECT_EQ(model->num_classes(), kClasses);
  auto state = state_map(*model);
  const int64_t hidden = kDim / 2;  // t = τ·d, τ = 0.5
  EXPECT_EQ(state.at("fc.0.weight").sizes().vec(), (std::vector<int64_t>{kDim, 8}));
  EXPECT_EQ(state.at("label_emb.0.weight").sizes().vec(), (std::vector<int64_t>{hidden, kTextWidth}));
  EXPECT_EQ(state.at("label_emb.3.weight").sizes().vec(), (std::vector<int64_t>{kDim, hidden}));
  EXPECT_EQ(state.at("label_emb.text_embeddings").sizes().vec(), (std::vector<int64_t>{kClasses, kTextWidth}));
  EXPECT_EQ(state.at("attention.layers.0.0.fn.to_qkv.weight").sizes().vec(),
            (std::vector<int64_t>{3 * kHeads * kHeadDim, kDim}));
  EXPECT_FALSE(state.count("attention.layers.0.0.fn.to_qkv.bias"));
  EXPECT_EQ(state.at("attention.layers.0.0.fn.to_out.0.weight").sizes().vec(),
            (std::vector<int64_t>{kDim, kHeads * kHeadDim}));
  EXPECT_TRUE(state.count("attention.layers.0.0.fn.to_out.0.bias"));
  EXPECT_TRUE(state.count("attention.layers.0.0.norm.weight"));
  EXPECT_TRUE(state.count("attention.layers.0.1.norm.bias"));
  EXPECT_EQ(state.at("attention.layers.0.1.fn.net.0.weight").sizes().vec(), (std::vector<int64_t>{kFfn, kDim}));
  EXPECT_EQ(state.at("attention.layers.0.1.fn.net.3.weight").sizes().vec(), (std::vector<int64_t>{kDim, kFfn}));
  EXPECT_TRUE(state.count("backbone.layer1.0.conv1.weight"));
  // W is a constant buffer, not a parameter.
  for (const auto& item : model->named_parameters()) EXPECT_NE(item.key(), "label_emb.text_embeddings");
}

TEST(CprflModel, ScoringIsThePerClassDotProduct) {
  auto model = tiny_model();
  auto out = model->forward_all(tiny_images());
  ASSERT_EQ(out.refined_prompts.sizes().vec(), (std::vector<int64_t>{2, kClasses, kDim}));
  ASSERT_EQ(out.prompts.sizes().vec(), (std::vector<int64_t>{kClasses, kDim}));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < kClasses; ++i) {
      double dot = 0;
      for (int64_t k = 0; k < kDim; ++k)
        dot += out.refined_prompts[b][i][k].item<double>() * out.prompts[i][k].item<double>();
      EXPECT_NEAR(out.logits[b][i].item<double>(), dot, 1e-5);
    }
  // P = GELU(W·W1 + b1)·W2 + b2
  auto state = state_map(*model);
  auto expected = torch::matmul(torch::gelu(torch::matmul(state.at("label_emb.text_embeddings"),
                                                          state.at("label_emb.0.weight").t()) +
                                            state.at("label_emb.0.bias")),
                                state.at("label_emb.3.weight").t()) +
                  state.at("label_emb.3.bias");
  EXPECT_TRUE(torch::allclose(out.prompts, expected, 1e-5, 1e-6));
}

TEST(CprflModel, InteractionFollowsTheOfficialLayerAndTheResidualOption) {
  for (bool residual : {false, true}) {
    InteractionOptions options;
    options.heads = kHeads;
    options.head_dim = kHeadDim;
    options.ffn_dim = kFfn;
    options.dropout = 0.0;
    options.residual = residual;
    torch::manual_seed(5);
    VisualSemanticInteraction vsi(kDim, options);
    auto tokens = torch::randn({2, 4, kDim});
    auto prompts = torch::randn({kClasses, kDim});
    auto refined = vsi(tokens, prompts);
    ASSERT_EQ(refined.sizes().vec(), (std::vector<int64_t>{2, kClasses, kDim}));
    // Visual tokens first, then the prompts (shared by the batch); only prompt positions out.
    auto z = torch::cat({tokens, prompts.unsqueeze(0).expand({2, kClasses, kDim})}, 1);
    auto expected = manual_layer(z, state_map(*vsi), "layers.0.", residual).slice(1, 4);
    EXPECT_TRUE(torch::allclose(refined, expected, 1e-5, 1e-6)) << "residual " << residual;
    // And the other structure gives something else.
    auto other = manual_layer(z, state_map(*vsi), "layers.0.", !residual).slice(1, 4);
    EXPECT_FALSE(torch::allclose(refined, other, 1e-3, 1e-4));
  }
}

TEST(CprflModel, DualPathSwitchesCutExactlyOnePath) {
  const std::string pi = "label_emb.0.weight", vsi = "attention.layers.0.0.fn.to_qkv.weight",
                    backbone = "backbone.conv1.weight";
  auto base = tiny_model();
  base->eval();  // BatchNorm on running stats: identical numbers across the copies
  // Path 1 only (loss -> s -> p_i) and path 2 only (loss -> s -> p'_i -> VSI -> p_i), by hand.
  auto classifier_only = gradient_of(base, pi, [](const CprflOutputs& o) {
    return CprflModelImpl::score(o.refined_prompts.detach(), o.prompts);
  });
  auto interaction_only = gradient_of(base, pi, [](const CprflOutputs& o) {
    return CprflModelImpl::score(o.refined_prompts, o.prompts.detach());
  });
  auto both = gradient_of(base, pi, [](const CprflOutputs& o) { return o.logits; });
  EXPECT_GT(classifier_only.abs().max().item<double>(), 0);
  EXPECT_GT(interaction_only.abs().max().item<double>(), 0);
  EXPECT_TRUE(torch::allclose(both, classifier_only + interaction_only, 1e-4, 1e-6));

  auto copy_with = [&](bool detach_classifier, bool detach_interaction) {
    auto options = tiny_options();
    options.detach_classifier_path = detach_classifier;
    options.detach_interaction_path = detach_interaction;
    auto model = tiny_model(options);
    load_named_state(*model, named_state(*base), "base");
    model->eval();
    return model;
  };
  auto logits = [](const CprflOutputs& o) { return o.logits; };

  auto no_interaction = copy_with(false, true);
  EXPECT_TRUE(torch::allclose(gradient_of(no_interaction, pi, logits), classifier_only, 1e-5, 1e-7));
  EXPECT_GT(gradient_of(no_interaction, vsi, logits).abs().max().item<double>(), 0);  // VSI still learns
  EXPECT_GT(gradient_of(no_interaction, backbone, logits).abs().max().item<double>(), 0);

  auto no_classifier = copy_with(true, false);
  EXPECT_TRUE(torch::allclose(gradient_of(no_classifier, pi, logits), interaction_only, 1e-5, 1e-7));

  auto neither = copy_with(true, true);
  EXPECT_EQ(gradient_of(neither, pi, logits).abs().max().item<double>(), 0.0);
  EXPECT_GT(gradient_of(neither, vsi, logits).abs().max().item<double>(), 0);

  // The switches change gradients only, never the scores.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(neither->forward(tiny_images()), base->forward(tiny_images())));
}

TEST(CprflModel, EvalPromptCacheEqualsTheUncachedForward) {
  auto model = tiny_model();
  auto images = tiny_images();
  model->eval();
  auto uncached = model->forward(images).detach();  // autograd on: no caching
  EXPECT_FALSE(model->has_cached_prompts());
  {
    torch::NoGradGuard no_grad;
    auto first = model->forward(images);
    EXPECT_TRUE(model->has_cached_prompts());
    auto second = model->forward(images);
    EXPECT_LE((first - uncached).abs().max().item<double>(), 1e-6);
    EXPECT_LE((second - uncached).abs().max().item<double>(), 1e-6);
  }
  {
    torch::InferenceMode inference;
    EXPECT_LE((model->forward(images) - uncached).abs().max().item<double>(), 1e-6);
  }

  // A PI parameter changed in place (e.g. loading weights): the cache notices.
  {
    torch::NoGradGuard no_grad;
    state_map(*model).at("label_emb.3.bias").add_(0.5);
    auto changed = model->forward(images);
    EXPECT_GT((changed - uncached).abs().max().item<double>(), 1e-3);
  }
  auto reference = model->forward(images).detach();
  {
    torch::NoGradGuard no_grad;
    EXPECT_LE((model->forward(images) - reference).abs().max().item<double>(), 1e-6);
  }

  // A cache filled under InferenceMode serves a later NoGradGuard forward too.
  model->invalidate_prompt_cache();
  {
    torch::InferenceMode inference;
    model->forward(images);
  }
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(model->has_cached_prompts());
    EXPECT_LE((model->forward(images) - reference).abs().max().item<double>(), 1e-6);
  }

  // train() drops the cache; no caching while training.
  model->train();
  EXPECT_FALSE(model->has_cached_prompts());
  {
    torch::NoGradGuard no_grad;
    model->forward(images);
    EXPECT_FALSE(model->has_cached_prompts());
  }
}

TEST(CprflModel, ParameterGroupsAndInputChecks) {
  auto model = tiny_model();
  std::map<std::string, std::string> group_of;
  for (const auto& group : model->parameter_groups())
    for (const auto& name : group.names) group_of[name] = group.name;
  EXPECT_EQ(group_of["backbone.layer1.0.conv1.weight"], "backbone");
  EXPECT_EQ(group_of["backbone.layer1.0.bn1.bias"], "backbone_no_decay");
  EXPECT_EQ(group_of["fc.0.weight"], "head");
  EXPECT_EQ(group_of["fc.0.bias"], "head_no_decay");
  EXPECT_EQ(group_of["attention.layers.0.0.norm.weight"], "head_no_decay");
  EXPECT_EQ(group_of["label_emb.0.weight"], "head");
  EXPECT_EQ(group_of.size(), model->parameters().size());

  EXPECT_NE(error_of([] { CprflModel(tiny_backbone(), torch::randn({4}), tiny_options()); }).find("[4]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { model->forward(torch::randn({2, 1, 16, 16})); }).find("[2, 1, 16, 16]"),
            std::string::npos);

  LinearHeadModel baseline(tiny_backbone(), kClasses);
  EXPECT_EQ(baseline->forward(tiny_images()).sizes().vec(), (std::vector<int64_t>{2, kClasses}));
}
