#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "cprfl/clip/prompts.h"
#include "cprfl/clip/text_encoder.h"
#include "cprfl/clip/token_tensor.h"
#include "cprfl/common/error.h"
#include "test_support.h"
#include "tiny_clip.h"

using namespace cprfl;
using cprfl::testing::error_of;
using cprfl::testing::TempDir;

namespace {

clip::ClipTextArchitecture small_architecture() {
  clip::ClipTextArchitecture a;
  a.context_length = 77;
  a.vocab_size = 1000;
  a.width = 128;
  a.layers = 2;
  a.heads = 2;
  a.embed_dim = 48;
  return a;
}

// Every parameter random (LayerNorms and biases too), so that no part is a no-op.
void randomize(torch::nn::Module& module, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& parameter : module.parameters()) parameter.normal_(0.0, 0.3);
}

// Rows of [start, random words..., end, 0...] with the given number of words.
torch::Tensor token_rows(const std::vector<int64_t>& words, int64_t vocab, int64_t context, uint64_t seed) {
  torch::manual_seed(seed);
  auto tokens = torch::zeros({static_cast<int64_t>(words.size()), context}, torch::kLong);
  for (std::size_t i = 0; i < words.size(); ++i) {
    auto row = tokens[static_cast<int64_t>(i)];
    row[0] = vocab - 2;
    row.narrow(0, 1, words[i]).copy_(torch::randint(1, vocab - 2, {words[i]}, torch::kLong));
    row[words[i] + 1] = vocab - 1;
  }
  return tokens;
}

float max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<float>(); }

}  // namespace

TEST(ClipTextEncoder, EarlyStopEqualsTheFullRun) {
  clip::ClipTextEncoder encoder(small_architecture());
  randomize(*encoder, 1);
  torch::NoGradGuard no_grad;
  for (const auto& words : {std::vector<int64_t>{3, 9, 1, 14}, std::vector<int64_t>{0}, std::vector<int64_t>{75, 2}}) {
    auto tokens = token_rows(words, 1000, 77, 2);
    auto early = encoder->encode(tokens);
    auto full = encoder->encode_all_positions(tokens);
    ASSERT_EQ(early.sizes(), (std::vector<int64_t>{static_cast<int64_t>(words.size()), 48}));
    EXPECT_GT(full.abs().max().item<float>(), 0.1f);
    EXPECT_LE(max_abs_diff(early, full), 1e-5f) << "longest prompt " << *std::max_element(words.begin(), words.end());
  }
  // A row's embedding does not depend on the other rows of its batch (nor on their lengths).
  auto batch = token_rows({3, 30}, 1000, 77, 5);
  auto alone = encoder->encode(batch.narrow(0, 0, 1));
  EXPECT_LE(max_abs_diff(encoder->encode(batch)[0], alone[0]), 1e-5f);
}

// One residual block against the formulas written out: LayerNorm, per-head causal softmax
// attention, out_proj, QuickGELU MLP, both residuals.
TEST(ClipTextEncoder, OneBlockMatchesAHandWrittenReference) {
  const int64_t width = 64, heads = 4, head_dim = 16, length = 5;
  clip::ClipResidualBlock block(width, heads);
  randomize(*block, 3);
  torch::manual_seed(4);
  auto x = torch::randn({2, length, width});
  torch::NoGradGuard no_grad;
  auto got = block->forward(x, clip::causal_mask(length));

  auto layer_norm = [](const torch::Tensor& v, const torch::Tensor& gain, const torch::Tensor& bias) {
    auto mean = v.mean(-1, true);
    auto variance = (v - mean).pow(2).mean(-1, true);
    return (v - mean) / torch::sqrt(variance + 1e-5) * gain + bias;
  };
  auto expected = torch::zeros_like(x);
  const auto& attn = block->attn;
  for (int64_t n = 0; n < 2; ++n) {
    auto h = layer_norm(x[n], block->ln_1->weight, block->ln_1->bias);  // [L, w]
    auto attended = torch::zeros({length, width});
    for (int64_t head = 0; head < heads; ++head) {
      auto rows = [&](int64_t part) {  // the weight rows of q (0), k (1) or v (2) for this head
        return attn->in_proj_weight.narrow(0, part * width + head * head_dim, head_dim);
      };
      auto bias = [&](int64_t part) { return attn->in_proj_bias.narrow(0, part * width + head * head_dim, head_dim); };
      auto q = torch::matmul(h, rows(0).t()) + bias(0);
      auto k = torch::matmul(h, rows(1).t()) + bias(1);
      auto v = torch::matmul(h, rows(2).t()) + bias(2);
      for (int64_t i = 0; i < length; ++i) {
        // Position i sees positions 0..i only.
        std::vector<double> weights;
        double total = 0;
        for (int64_t j = 0; j <= i; ++j) {
          double score = (q[i] * k[j]).sum().item<double>() / std::sqrt(static_cast<double>(head_dim));
          weights.push_back(score);
        }
        double largest = *std::max_element(weights.begin(), weights.end());
        for (auto& w : weights) total += (w = std::exp(w - largest));
        auto mixed = torch::zeros({head_dim});
        for (int64_t j = 0; j <= i; ++j) mixed += v[j] * (weights[j] / total);
        attended[i].narrow(0, head * head_dim, head_dim).copy_(mixed);
      }
    }
    auto y = x[n] + torch::matmul(attended, attn->out_proj->weight.t()) + attn->out_proj->bias;
    auto g = layer_norm(y, block->ln_2->weight, block->ln_2->bias);
    auto hidden = torch::matmul(g, block->mlp->c_fc->weight.t()) + block->mlp->c_fc->bias;
    hidden = hidden * (1.0 / (1.0 + torch::exp(-1.702 * hidden)));
    expected[n] = y + torch::matmul(hidden, block->mlp->c_proj->weight.t()) + block->mlp->c_proj->bias;
  }
  EXPECT_LE(max_abs_diff(got, expected), 1e-4f);
  // The mask matters: without it the first position sees the others.
  EXPECT_GT(max_abs_diff(block->forward(x), got), 1e-3f);
}

TEST(ClipTextEncoder, LoadsACheckpointsTextTensorsByName) {
  TempDir dir;
  auto tensors = cprfl::testing::tiny_clip_tensors();
  auto encoder = clip::load_clip_text_encoder(tensors, "tiny");
  EXPECT_EQ(encoder->architecture().embed_dim, 32);
  std::map<std::string, torch::Tensor> source(tensors.begin(), tensors.end());
  auto state = named_state(*encoder);
  EXPECT_EQ(state.size(), 5 + 2 * 12u);  // token/positional embeddings, ln_final (2), projection; 12 per block
  for (const auto& [name, tensor] : state) {
    ASSERT_TRUE(source.count(name)) << name;
    EXPECT_TRUE(torch::equal(tensor, source.at(name))) << name;
  }

  // The same numbers from the state dict file and the (float32) TorchScript archive.
  cprfl::testing::save_clip_state_dict(dir.file("clip.pth"), tensors);
  cprfl::testing::save_clip_torchscript(dir.file("clip.pt"), tensors, /*half_weights=*/false);
  auto tokens = token_rows({2, 5, 7}, 100, 16, 9);
  torch::NoGradGuard no_grad;
  auto expected = encoder->encode(tokens);
  EXPECT_TRUE(torch::equal(clip::load_clip_text_encoder(dir.file("clip.pth"))->encode(tokens), expected));
  EXPECT_TRUE(torch::equal(clip::load_clip_text_encoder(dir.file("clip.pt"))->encode(tokens), expected));

  // Under a prefix, visual.* and other tensors ignored.
  NamedTensors nested;
  for (const auto& [name, tensor] : tensors) nested.emplace_back("text_encoder." + name, tensor);
  nested.emplace_back("fc.weight", torch::zeros({3}));
  EXPECT_TRUE(torch::equal(clip::load_clip_text_encoder(nested, "ckpt", "text_encoder.")->encode(tokens), expected));
}

TEST(ClipTextEncoder, BadWeightsAndTokensAreClearErrors) {
  auto tensors = cprfl::testing::tiny_clip_tensors();
  NamedTensors missing, extra = tensors;
  for (const auto& entry : tensors)
    if (entry.first != "transformer.resblocks.1.mlp.c_fc.bias") missing.push_back(entry);
  std::string message = error_of([&] { clip::load_clip_text_encoder(missing, "RN50.pt"); });
  EXPECT_NE(message.find("RN50.pt: missing key transformer.resblocks.1.mlp.c_fc.bias"), std::string::npos) << message;
  extra.emplace_back("transformer.resblocks.0.attn.extra", torch::zeros({1}));
  message = error_of([&] { clip::load_clip_text_encoder(extra, "RN50.pt"); });
  EXPECT_NE(message.find("unexpected key transformer.resblocks.0.attn.extra"), std::string::npos) << message;
  for (auto& entry : extra)
    if (entry.first == "transformer.resblocks.0.mlp.c_fc.weight") entry.second = torch::zeros({255, 64});
  extra.pop_back();
  message = error_of([&] { clip::load_clip_text_encoder(extra, "RN50.pt"); });
  EXPECT_NE(message.find("shape mismatch for transformer.resblocks.0.mlp.c_fc.weight"), std::string::npos) << message;

  auto encoder = clip::load_clip_text_encoder(tensors, "tiny");
  auto tokens = token_rows({2}, 100, 16, 1);
  EXPECT_NE(error_of([&] { encoder->encode(tokens + 1); }).find("token ids must lie in [0, 100)"), std::string::npos);
  EXPECT_NE(error_of([&] { encoder->encode(torch::zeros({1, 17}, torch::kLong)); }).find("1 <= T <= 16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { encoder->encode(torch::zeros({16}, torch::kLong)); }).find("[N, T]"), std::string::npos);
  EXPECT_NE(error_of([&] { encoder->encode(tokens.to(torch::kFloat)); }).find("must be integers"), std::string::npos);
  EXPECT_NO_THROW(encoder->encode(tokens.to(torch::kInt)));
}

TEST(ClipPrompts, TemplateAndClassPromptsThroughTheEncoder) {
  EXPECT_EQ(clip::fill_prompt_template("a photo of a {}.", "traffic_light"), "a photo of a traffic light.");
  EXPECT_EQ(clip::fill_prompt_template("{}", "tv"), "tv");
  EXPECT_NE(error_of([] { clip::fill_prompt_template("a photo", "cat"); }).find("exactly once"), std::string::npos);
  EXPECT_NE(error_of([] { clip::fill_prompt_template("{} and {}", "cat"); }).find("exactly once"), std::string::npos);

  auto tokenizer = clip::ClipTokenizer::load();
  auto a = small_architecture();
  a.vocab_size = clip::kVocabularySize;
  a.layers = 1;
  clip::ClipTextEncoder encoder(a);
  auto w = clip::encode_class_prompts(*encoder, tokenizer, {"traffic_light", "cat"});
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{2, 48}));
  EXPECT_EQ(w.scalar_type(), torch::kFloat);
  torch::NoGradGuard no_grad;
  auto expected = encoder->encode_all_positions(
      clip::tokenize_batch(tokenizer, {"a photo of a traffic light.", "a photo of a cat."}));
  EXPECT_LE(max_abs_diff(w, expected), 1e-5f);
}
