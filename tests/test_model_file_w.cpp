// Model files keep W once (prompts/W) and build the model from it; format-1 files, which also
// kept a copy inside both sets of weights, still load, unless the copies disagree.
#include <gtest/gtest.h>

#include "cprfl/config/model_file.h"
#include "cprfl/config/options.h"
#include "cprfl/io/state_dict.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/optim/optim.h"
#include "test_support.h"
#include "tiny_dataset.h"

using namespace cprfl;
using cprfl::testing::error_of;
using cprfl::testing::TempDir;

namespace {

const std::string kWeightsW = std::string("model/") + kPromptEmbeddingsKey;
const std::string kEmaW = std::string("ema/") + kPromptEmbeddingsKey;

struct Saved {
  TensorFile file;
  std::shared_ptr<MultiLabelClassifier> model;
};

Saved save_tiny_model() {
  Config config = cprfl::testing::tiny_config("data", "run");
  ModelInfo info{config, {"a", "b", "c", "d"}, {5, 4, 3, 2}, 9, torch::randn({4, 12})};
  torch::manual_seed(3);
  auto model = build_model(config, 4, info.prompt_embeddings);
  auto ema = build_model(config, 4, info.prompt_embeddings);
  model->eval();
  return {make_model_file(info, *model, ema.get()), model};
}

torch::Tensor scores(const TensorFile& file) {
  auto loaded = model_from_tensor_file(file, "tiny.cprfl", /*prefer_ema=*/false);
  torch::manual_seed(11);
  auto images = torch::rand({2, 3, 32, 32});
  torch::NoGradGuard no_grad;
  return loaded.model->forward(images);
}

}  // namespace

TEST(ModelFileW, StoredOnceAndTheModelIsBuiltFromIt) {
  auto saved = save_tiny_model();
  EXPECT_EQ(saved.file.meta["model_format"], 2);
  ASSERT_TRUE(saved.file.tensors.count("prompts/W"));
  EXPECT_FALSE(saved.file.tensors.count(kWeightsW));
  EXPECT_FALSE(saved.file.tensors.count(kEmaW));
  auto loaded = model_from_tensor_file(saved.file, "tiny.cprfl", false);
  auto state = named_state(*loaded.model);
  for (const auto& [name, tensor] : state)
    if (name == kPromptEmbeddingsKey) EXPECT_TRUE(torch::equal(tensor, saved.file.tensors.at("prompts/W")));
  torch::manual_seed(11);
  auto images = torch::rand({2, 3, 32, 32});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(loaded.model->forward(images), saved.model->forward(images), 0, 0));
}

TEST(ModelFileW, Format1FilesStillLoad) {
  auto saved = save_tiny_model();
  TensorFile old = saved.file;
  old.meta["model_format"] = 1;
  old.tensors[kWeightsW] = old.tensors.at("prompts/W").clone();
  // The EMA copy of a format-1 file drifted by rounding (W averaged with itself each step):
  // within 4·2⁻²⁴/(1 − decay) relative it is the same W (tiny config: decay 0.9 → 2.4e-6).
  old.tensors[kEmaW] = old.tensors.at("prompts/W") * (1 + 3e-7);
  EXPECT_TRUE(torch::equal(scores(old), scores(saved.file)));
  EXPECT_NO_THROW(model_from_tensor_file(old, "old.cprfl", /*prefer_ema=*/true));
  old.tensors[kEmaW] = old.tensors.at("prompts/W") * (1 + 1e-5);
  auto message = error_of([&] { model_from_tensor_file(old, "old.cprfl", /*prefer_ema=*/true); });
  EXPECT_NE(message.find("holds two different prompt embeddings"), std::string::npos) << message;
}

// The EMA copies W instead of averaging it: it stays exactly the model's W.
TEST(ModelFileW, EmaKeepsWExact) {
  Config config = cprfl::testing::tiny_config("data", "run");
  auto w = torch::randn({4, 12});
  auto model = build_model(config, 4, w), average = build_model(config, 4, w);
  WeightEma ema(*average, *model, 0.9);
  for (int step = 0; step < 20; ++step) {
    torch::NoGradGuard no_grad;
    for (auto& parameter : model->parameters()) parameter.add_(0.01);
    ema.update(*model);
  }
  for (const auto& [name, tensor] : named_state(*average))
    if (name == kPromptEmbeddingsKey) EXPECT_TRUE(torch::equal(tensor, w));
  // (the parameters are averaged: they moved, but less than the model's)
  auto model_state = named_state(*model), average_state = named_state(*average);
  for (std::size_t i = 0; i < model_state.size(); ++i)
    if (model_state[i].first == "fc.weight" || model_state[i].first == "label_emb.0.weight")
      EXPECT_FALSE(torch::equal(model_state[i].second, average_state[i].second)) << model_state[i].first;
}

TEST(ModelFileW, TwoDifferentCopiesAreRefused) {
  auto saved = save_tiny_model();
  TensorFile old = saved.file;
  old.meta["model_format"] = 1;
  old.tensors[kWeightsW] = old.tensors.at("prompts/W") + 1;
  auto message = error_of([&] { model_from_tensor_file(old, "old.cprfl", false); });
  EXPECT_NE(message.find("old.cprfl"), std::string::npos) << message;
  EXPECT_NE(message.find("holds two different prompt embeddings"), std::string::npos) << message;
  // A format this build does not know is named as such.
  TensorFile future = saved.file;
  future.meta["model_format"] = 3;
  message = error_of([&] { model_from_tensor_file(future, "new.cprfl", false); });
  EXPECT_NE(message.find("model format 3 is not supported by this build (reads formats 1 to 2)"), std::string::npos) << message;
}
