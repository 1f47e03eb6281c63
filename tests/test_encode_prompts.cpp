#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/clip/prompts.h"
#include "cprfl/clip/token_tensor.h"
#include "cprfl/common/error.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/npy.h"
#include "cprfl/model/build.h"
#include "cprfl/train/trainer.h"
#include "test_support.h"
#include "tiny_clip.h"
#include "tiny_dataset.h"

using namespace cprfl;
using cprfl::testing::error_of;
using cprfl::testing::run_cprfl;
using cprfl::testing::TempDir;

namespace {

// A text-only CLIP with the real vocabulary and context (so real prompts tokenise), tiny
// otherwise (width 64, 1 layer, embed 16): the weights of tests/fixtures/text_encoder/prompts.pth
// (float16 values) and the token embedding formula its make_fixtures.py used, saved as a
// TorchScript archive with float16 weights as OpenAI's are (nothing is lost: every value is
// a float16).
NamedTensors write_tiny_clip(const std::string& path) {
  auto tensors = clip::read_clip_checkpoint(cprfl::testing::source_dir() + "/tests/fixtures/text_encoder/prompts.pth");
  auto i = torch::arange(clip::kVocabularySize, torch::kLong).unsqueeze(1);
  auto j = torch::arange(64, torch::kLong).unsqueeze(0);
  tensors.emplace_back("token_embedding.weight", ((7 * i + 13 * j).remainder(101) - 50).to(torch::kFloat) / 64);
  tensors.emplace_back("logit_scale", torch::tensor(4.6f));
  cprfl::testing::save_clip_torchscript(path, tensors, /*half_weights=*/true);
  return tensors;
}

// What OpenAI's encode_text gives for these prompts (clip.tokenize, then all 77 positions):
// computed by OpenAI's code, tests/fixtures/text_encoder/prompts_embedding.npy.
torch::Tensor reference_embeddings(const std::vector<std::string>& prompts) {
  const std::string folder = cprfl::testing::source_dir() + "/tests/fixtures/text_encoder/";
  std::vector<std::string> known;
  std::ifstream in(folder + "prompts.txt");
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) known.push_back(line);
  auto all = read_npy(folder + "prompts_embedding.npy");
  std::vector<torch::Tensor> rows;
  for (const auto& prompt : prompts) {
    auto at = std::find(known.begin(), known.end(), prompt);
    if (at == known.end()) throw std::runtime_error("no reference for prompt '" + prompt + "' in prompts.txt");
    rows.push_back(all[at - known.begin()]);
  }
  return torch::stack(rows);
}

// max |w - reference| <= 1e-5 of the reference's largest entry (see test_reference_clip.cpp
// for the derivation).
float allowed_difference(const torch::Tensor& reference) { return 1e-5f * reference.abs().max().item<float>(); }

std::string vocab_flag() { return " --vocab " + cprfl::testing::source_dir() + "/data/clip/bpe_simple_vocab_16e6.txt.gz"; }

}  // namespace

TEST(EncodePrompts, CommandWritesRawEmbeddingsPerClass) {
  TempDir dir;
  write_tiny_clip(dir.file("tiny.pt"));
  cprfl::testing::write_text(dir.file("labels.txt"), "traffic_light\ncat\nteddy bear\n");
  auto result = run_cprfl("encode-prompts --clip " + dir.file("tiny.pt") + " --labels " + dir.file("labels.txt") +
                          " --out " + dir.file("w.npy") + vocab_flag());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("3 x 16"), std::string::npos) << result.output;
  auto w = read_npy(dir.file("w.npy"));
  EXPECT_EQ(w.scalar_type(), torch::kFloat);
  auto expected = reference_embeddings({"a photo of a traffic light.", "a photo of a cat.", "a photo of a teddy bear."});
  ASSERT_EQ(w.sizes(), expected.sizes());
  EXPECT_LE((w - expected).abs().max().item<float>(), allowed_difference(expected));
  EXPECT_GT(w.norm(2, 1).min().item<float>(), 0.1f);  // not normalised to 1, not zero

  // Another template.
  result = run_cprfl("encode-prompts --clip " + dir.file("tiny.pt") + " --labels " + dir.file("labels.txt") +
                     " --template 'a {}' --out " + dir.file("a.npy") + vocab_flag());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  expected = reference_embeddings({"a traffic light", "a cat", "a teddy bear"});
  EXPECT_LE((read_npy(dir.file("a.npy")) - expected).abs().max().item<float>(), allowed_difference(expected));
}

TEST(EncodePrompts, CommandErrorsNameTheCause) {
  TempDir dir;
  auto tensors = write_tiny_clip(dir.file("tiny.pt"));
  cprfl::testing::write_text(dir.file("labels.txt"), "cat\n");
  const std::string base = "encode-prompts --labels " + dir.file("labels.txt") + " --out " + dir.file("w.npy") + vocab_flag();
  auto result = run_cprfl(base + " --clip " + dir.file("tiny.pt") + " --template 'a photo'");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("error: prompt template 'a photo' must contain '{}' exactly once"), std::string::npos)
      << result.output;

  NamedTensors no_projection;
  for (const auto& entry : tensors)
    if (entry.first != "text_projection") no_projection.push_back(entry);
  cprfl::testing::save_clip_state_dict(dir.file("broken.pth"), no_projection);
  result = run_cprfl(base + " --clip " + dir.file("broken.pth"));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("error: " + dir.file("broken.pth") + ": missing tensor 'text_projection'"),
            std::string::npos)
      << result.output;
  EXPECT_FALSE(std::ifstream(dir.file("w.npy")).good());

  result = run_cprfl(base + " --clip " + dir.file("missing.pt"));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find(dir.file("missing.pt")), std::string::npos) << result.output;
}

// prompts.source = clip: W is computed once from the labels file and stored in the model file.
TEST(EncodePrompts, TrainingWithClipPrompts) {
  TempDir dir;
  write_tiny_clip(dir.file("tiny.pt"));
  cprfl::testing::write_tiny_dataset(dir.file("data"));
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  config.set("prompts.source", "clip", "test");
  EXPECT_NE(error_of([&] { load_prompt_embeddings(config, 4); }).find("needs prompts.checkpoint"), std::string::npos);
  config.set("prompts.checkpoint", dir.file("tiny.pt"), "test");
  config.set("prompts.template", "a {} square", "test");
  EXPECT_NE(error_of([&] { load_prompt_embeddings(config, 5); }).find("has 4 classes but the model has 5"),
            std::string::npos);

  auto expected = reference_embeddings({"a red square", "a green square", "a blue square", "a yellow square"});
  auto w = load_prompt_embeddings(config, 4);
  ASSERT_EQ(w.sizes(), expected.sizes());
  EXPECT_LE((w - expected).abs().max().item<float>(), allowed_difference(expected));

  config.set("optim.epochs", "1", "test");
  RunControl options;
  options.progress = false;
  train(config, options);
  auto loaded = load_model_file(dir.file("run") + "/last.cprfl");
  ASSERT_TRUE(loaded.info.prompt_embeddings.defined());
  EXPECT_TRUE(torch::equal(loaded.info.prompt_embeddings, w));
  EXPECT_EQ(loaded.info.config.get_string("prompts.source"), "clip");
}
