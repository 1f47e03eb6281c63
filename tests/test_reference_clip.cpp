// CLIP's image towers and text encoder against OpenAI's own code (clip/model.py of the PyPI
// package openai-clip 1.0.1, run by torch 2.15.0): tests/fixtures/clip_towers/make_fixtures.py
// and tests/fixtures/text_encoder/make_fixtures.py wrote random seeded weights with OpenAI's
// names, inputs, and what OpenAI's modules compute from them.
//
// Tolerance. Both sides compute in float32 (unit roundoff u = 2^-24 ~ 6e-8) from the same
// weights, but with other kernels and summation orders (LibTorch 1.13 here, torch 2.15
// there), so they agree only up to rounding. A dot product of n terms carries a rounding
// error of about sqrt(n) u relative to the scale of its terms (n u at worst); the longest
// sums here are n <= 144 (ModifiedResNet 3x3 convs over 16 channels, the ViT MLP's 128, the
// 8x8x3 = 192 patch convolution), so ~1e-6 per layer, and the deepest path has about 20
// such layers (stem 3, Bottlenecks 5 x 3, attention pool 3; ViT 2 blocks x 4 + embedding),
// whose independent errors add up to ~sqrt(20) x 1e-6 ~ 5e-6 of the output's scale.
// LayerNorm and softmax are well conditioned at these magnitudes (outputs of order 1). So:
// max |cprfl - OpenAI| <= 1e-5 x max |OpenAI| for each output. (Element-wise relative error
// is not meaningful for entries near zero.) The measured ratios are printed on failure, and
// always with CPRFL_REFERENCE_VERBOSE=1.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "cprfl/clip/checkpoint.h"
#include "cprfl/clip/text_encoder.h"
#include "cprfl/clip/token_tensor.h"
#include "cprfl/clip/tokenizer.h"
#include "cprfl/io/npy.h"
#include "cprfl/io/torch_file.h"
#include "cprfl/model/clip_visual.h"
#include "cprfl/io/state_dict.h"
#include "test_support.h"

using namespace cprfl;

namespace {

constexpr double kRelative = 1e-5;

std::string fixture(const std::string& topic, const std::string& name) {
  return cprfl::testing::source_dir() + "/tests/fixtures/" + topic + "/" + name;
}

torch::Tensor npy(const std::string& topic, const std::string& name) {
  auto tensor = read_npy(fixture(topic, name));
  return tensor.is_floating_point() ? tensor.to(torch::kFloat) : tensor;
}

// max |actual - reference| <= kRelative * max |reference|, same shape.
::testing::AssertionResult close(const torch::Tensor& actual, const torch::Tensor& reference) {
  if (actual.sizes() != reference.sizes())
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << ", expected " << reference.sizes();
  const double scale = reference.abs().max().item<double>();
  const double error = (actual.to(torch::kFloat) - reference).abs().max().item<double>();
  if (!(scale > 0.1)) return ::testing::AssertionFailure() << "degenerate reference (max |x| = " << scale << ")";
  if (!(error <= kRelative * scale))
    return ::testing::AssertionFailure() << "max |difference| " << error << " = " << error / scale
                                         << " of max |reference| " << scale << " (allowed " << kRelative << ")";
  if (std::getenv("CPRFL_REFERENCE_VERBOSE"))  // to review the margin: the measured ratios
    std::printf("  max |difference| %.3g of max |reference| %.3g\n", error / scale, scale);
  return ::testing::AssertionSuccess();
}

// The fixtures' towers (see clip_towers/make_fixtures.py).
ClipResNetOptions fixture_resnet_options() {
  ClipResNetOptions options;
  options.layers = {1, 2, 1, 1};
  options.width = 2;  // embed 64
  options.heads = 4;
  options.output_dim = 16;
  options.input_resolution = 64;
  return options;
}

ClipViTOptions fixture_vit_options() {
  ClipViTOptions options;
  options.patch_size = 8;
  options.width = 32;
  options.layers = 2;
  options.heads = 4;
  options.output_dim = 16;
  options.input_resolution = 32;
  return options;
}

template <typename Tower>
void load_tower(Tower& tower, const std::string& file) {
  const std::string path = fixture("clip_towers", file);
  load_clip_visual_weights(*tower, read_torch_state_dict(path), path);
  tower->eval();
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

}  // namespace

// The feature map before the attention pool (cprfl's visual tokens) and the attention-pool
// output, against OpenAI's ModifiedResNet (BatchNorms in eval mode).
TEST(ReferenceClip, ModifiedResNetMatchesOpenAI) {
  ClipModifiedResNet net(fixture_resnet_options());
  load_tower(net, "rn.pth");
  torch::NoGradGuard no_grad;
  auto images = npy("clip_towers", "rn_input.npy");
  ASSERT_EQ(images.sizes(), (std::vector<int64_t>{2, 3, 64, 64}));
  EXPECT_TRUE(close(net->forward(images), npy("clip_towers", "rn_features.npy")));
  EXPECT_TRUE(close(net->encode_image(images), npy("clip_towers", "rn_embedding.npy")));

  // A 32x96 image: the 2x2 attention-pool grid is resized to 1x3 (bicubic, align_corners
  // false), the reference being OpenAI's module given the embedding resized by F.interpolate.
  auto wide = npy("clip_towers", "rn_input_32x96.npy");
  EXPECT_TRUE(close(net->forward(wide), npy("clip_towers", "rn_features_32x96.npy")));
  EXPECT_TRUE(close(net->encode_image(wide), npy("clip_towers", "rn_embedding_32x96.npy")));

  // Inference with the BatchNorms folded into the convolutions gives the same numbers.
  net->fold_batchnorm();
  EXPECT_TRUE(close(net->forward(images), npy("clip_towers", "rn_features.npy")));
  EXPECT_TRUE(close(net->encode_image(images), npy("clip_towers", "rn_embedding.npy")));
}

// All tokens after the last block, the patch-token map cprfl uses, and encode_image.
TEST(ReferenceClip, VisionTransformerMatchesOpenAI) {
  ClipVisionTransformer vit(fixture_vit_options());
  load_tower(vit, "vit.pth");
  torch::NoGradGuard no_grad;
  auto images = npy("clip_towers", "vit_input.npy");
  auto tokens = npy("clip_towers", "vit_tokens.npy");  // [2, 17, 32], class token first
  EXPECT_TRUE(close(vit->tokens(images), tokens));
  // The map [B, C, 4, 4]: patch tokens in row-major grid order.
  auto map = tokens.slice(1, 1).transpose(1, 2).reshape({2, 32, 4, 4});
  EXPECT_TRUE(close(vit->forward(images), map));
  EXPECT_TRUE(close(vit->encode_image(images), npy("clip_towers", "vit_embedding.npy")));
}

// A 40x56 image (grid 5x7 instead of 4x4): the positional embedding's grid rows are
// resized bicubically with align_corners = false and no antialiasing (what cprfl documents;
// OpenAI's own code does not resize at all).
// The reference is PyTorch's F.interpolate(mode='bicubic', align_corners=False), as cprfl
// documents. open_clip 3.3.0's resize_pos_embed adds antialias=True (Keys' a = -0.5 instead of
// -0.75), which differs by up to 0.04 on this embedding (|max| 0.72): a known, chosen difference.
TEST(ReferenceClip, VisionTransformerResizedPositionalEmbedding) {
  ClipVisionTransformer vit(fixture_vit_options());
  load_tower(vit, "vit.pth");
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(close(resize_positional_embedding(vit->positional_embedding, 5, 7),
                    npy("clip_towers", "vit_pos_40x56.npy")));
  auto images = npy("clip_towers", "vit_input_40x56.npy");
  EXPECT_TRUE(close(vit->tokens(images), npy("clip_towers", "vit_tokens_40x56.npy")));
  EXPECT_TRUE(close(vit->encode_image(images), npy("clip_towers", "vit_embedding_40x56.npy")));
}

// OpenAI's encode_text on a small encoder with 4 heads (built with its architecture given:
// a checkpoint's head count is inferred as width / 64, which would be 0 here).
TEST(ReferenceClip, TextEncoderMatchesOpenAI) {
  clip::ClipTextArchitecture architecture;
  architecture.context_length = 16;
  architecture.vocab_size = 100;
  architecture.width = 32;
  architecture.layers = 2;
  architecture.heads = 4;
  architecture.embed_dim = 16;
  clip::ClipTextEncoder encoder(architecture);
  const std::string path = fixture("text_encoder", "small.pth");
  load_named_state(*encoder, read_torch_state_dict(path), path);
  encoder->eval();
  torch::NoGradGuard no_grad;
  auto tokens = npy("text_encoder", "small_tokens.npy");
  ASSERT_EQ(tokens.scalar_type(), torch::kLong);
  auto expected = npy("text_encoder", "small_embedding.npy");
  EXPECT_TRUE(close(encoder->encode_all_positions(tokens), expected));
  EXPECT_TRUE(close(encoder->encode(tokens), expected));  // run up to the last end token only
  for (int64_t row = 0; row < tokens.size(0); ++row)    // and row by row
    EXPECT_TRUE(close(encoder->encode(tokens.narrow(0, row, 1)), expected.narrow(0, row, 1))) << "row " << row;
}

// The real vocabulary and context: OpenAI's clip.tokenize ids, and encode_text on them
// through a checkpoint loaded the way cprfl loads one (architecture inferred).
TEST(ReferenceClip, RealPromptsTokenizeAndEncodeAsOpenAI) {
  const auto prompts = lines_of(fixture("text_encoder", "prompts.txt"));
  ASSERT_EQ(prompts.size(), 10u);
  auto tokens = npy("text_encoder", "prompts_tokens.npy");
  auto ours = clip::tokenize_batch(clip::ClipTokenizer::load(), prompts);
  EXPECT_TRUE(torch::equal(ours, tokens)) << ours.narrow(1, 0, 10) << "\n" << tokens.narrow(1, 0, 10);

  NamedTensors tensors = clip::read_clip_checkpoint(fixture("text_encoder", "prompts.pth"));
  // The token embedding is the formula the fixture script used (too large to ship).
  auto i = torch::arange(clip::kVocabularySize, torch::kLong).unsqueeze(1);
  auto j = torch::arange(64, torch::kLong).unsqueeze(0);
  tensors.emplace_back("token_embedding.weight", ((7 * i + 13 * j).remainder(101) - 50).to(torch::kFloat) / 64);
  auto encoder = clip::load_clip_text_encoder(tensors, "prompts.pth");
  EXPECT_EQ(encoder->architecture().heads, 1);
  torch::NoGradGuard no_grad;
  auto expected = npy("text_encoder", "prompts_embedding.npy");
  EXPECT_TRUE(close(encoder->encode(tokens), expected));
  EXPECT_TRUE(close(encoder->encode_all_positions(tokens), expected));
}
