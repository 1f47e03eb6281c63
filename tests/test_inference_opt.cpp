// The speed-ups keep the scores: BatchNorm folding, channels-last weights, the last VSI layer
// computing only the prompt rows, `cprfl predict` batching and decoding in parallel, and exact
// gradient accumulation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>

#include <nlohmann/json.hpp>

#include "cprfl/model/backbone_registry.h"
#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/common/error.h"
#include "cprfl/data/image.h"
#include "cprfl/data/transforms.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/loss/losses.h"
#include "cprfl/model/build.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/model/inference.h"
#include "cprfl/io/state_dict.h"
#include "cprfl/train/accumulate.h"
#include "support/test_support.h"

namespace cprfl {
namespace {

using testing::TempDir;

constexpr double kTolerance = 1e-4;

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// BatchNorm statistics and affine parameters away from their identity defaults, so that
// folding has something to fold.
void randomize_batchnorms(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& child : module.modules())
    if (auto* bn = child->as<torch::nn::BatchNorm2d>()) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.3, 0.3);
    }
}

CprflOptions small_head() {
  CprflOptions options;
  options.dim = 64;
  options.interaction.heads = 2;
  options.interaction.head_dim = 32;
  options.interaction.ffn_dim = 128;
  return options;
}

// Two identical models (same seed, same randomised statistics).
std::pair<CprflModel, CprflModel> twin_models(const std::string& backbone, const CprflOptions& options) {
  std::pair<CprflModel, CprflModel> twins{nullptr, nullptr};
  for (auto* model : {&twins.first, &twins.second}) {
    torch::manual_seed(7);
    *model = CprflModel(make_backbone(backbone).module, torch::randn({5, 24}), options);
    randomize_batchnorms(**model);
    (*model)->eval();
  }
  return twins;
}

double optimised_vs_eval(const std::string& backbone, const InferenceOptions& inference, int size) {
  auto [reference, optimised] = twin_models(backbone, small_head());
  prepare_for_inference(*optimised, inference);
  torch::manual_seed(1);
  auto images = torch::randn({3, 3, size, size});
  torch::InferenceMode guard;
  return max_abs_diff(reference->forward(images), optimised->forward(images));
}

TEST(InferenceOpt, FoldedBatchNormKeepsScoresSmallResNet) {
  EXPECT_LE(optimised_vs_eval("small", {true, false}, 32), kTolerance);
}

TEST(InferenceOpt, FoldedBatchNormKeepsScoresBottleneckResNet) {
  EXPECT_LE(optimised_vs_eval("resnet50", {true, false}, 64), kTolerance);
}

// OpenAI's ModifiedResNet (three-conv stem, pooled downsampling branches), CLIP RN50 sized.
TEST(InferenceOpt, FoldedBatchNormKeepsScoresClipModifiedResNet) {
  EXPECT_LE(optimised_vs_eval("clip_rn50", {true, false}, 64), kTolerance);
  EXPECT_LE(optimised_vs_eval("clip_rn50", {true, true}, 64), kTolerance);
}

TEST(InferenceOpt, ChannelsLastKeepsScores) {
  EXPECT_LE(optimised_vs_eval("small", {false, true}, 32), kTolerance);
  EXPECT_LE(optimised_vs_eval("resnet18", {true, true}, 64), kTolerance);
}

TEST(InferenceOpt, FoldedTrunkActuallySkipsBatchNorm) {
  for (const char* backbone : {"small", "clip_rn50"}) {
    auto [reference, optimised] = twin_models(backbone, small_head());
    prepare_for_inference(*optimised);
    EXPECT_TRUE(optimised->backbone()->batchnorm_folded()) << backbone;
    // Poisoning the BatchNorm statistics changes nothing once they are folded.
    {
      torch::NoGradGuard no_grad;
      for (auto& child : optimised->modules())
        if (auto* bn = child->as<torch::nn::BatchNorm2d>()) bn->running_var.fill_(1e6);
    }
    auto images = torch::randn({2, 3, 64, 64});
    torch::InferenceMode guard;
    EXPECT_LE(max_abs_diff(reference->forward(images), optimised->forward(images)), kTolerance) << backbone;
  }
}

TEST(InferenceOpt, FoldedTrunkRefusesTraining) {
  for (const char* backbone : {"small", "clip_rn50"}) {
    auto optimised = twin_models(backbone, small_head()).second;
    prepare_for_inference(*optimised);
    optimised->train();
    auto message = testing::error_of([&] { optimised->forward(torch::randn({2, 3, 64, 64})); });
    EXPECT_NE(message.find("folded"), std::string::npos) << backbone << ": " << message;
  }
}

// The forward before the VSI changes: every layer over all v + c rows, then the prompt rows.
torch::Tensor full_vsi_forward(CprflModelImpl& model, const torch::Tensor& images) {
  auto prompts = model.prompts();
  auto tokens = model.visual_tokens(images);
  auto z = torch::cat({tokens, prompts.unsqueeze(0).expand({tokens.size(0), -1, -1})}, 1);
  for (const auto& layer : *model.attention->layers) z = layer->as<InteractionLayerImpl>()->forward(z);
  return CprflModelImpl::score(z.slice(1, tokens.size(1)), prompts);
}

// The last VSI layer computes only the prompt rows, and at inference the first layer reuses
// its cached projections of P: the same scores as the full computation — at inference and
// (without dropout) in training with the same gradients, with and without residual
// connections, for one and two layers.
TEST(InferenceOpt, PromptRowsOnlyAndSharedPromptProjectionsEqualFullVsi) {
  for (bool residual : {false, true})
    for (int64_t depth : {1, 2}) {
      auto options = small_head();
      options.interaction.residual = residual;
      options.interaction.depth = depth;
      options.interaction.dropout = 0.0;
      auto [full, rows] = twin_models("small", options);
      auto images = torch::randn({2, 3, 32, 32});
      {
        torch::InferenceMode guard;
        auto reference = full_vsi_forward(*full, images);
        EXPECT_LE(max_abs_diff(reference, rows->forward(images)), 1e-5) << "residual " << residual << " depth " << depth;
        EXPECT_TRUE(rows->has_cached_prompts());
        EXPECT_LE(max_abs_diff(reference, rows->forward(images)), 1e-5);  // from the cache
      }
      full->train();
      rows->train();
      auto full_logits = full_vsi_forward(*full, images), row_logits = rows->forward(images);
      EXPECT_LE(max_abs_diff(full_logits, row_logits), 1e-5);
      full_logits.sum().backward();
      row_logits.sum().backward();
      auto full_params = full->parameters(), row_params = rows->parameters();
      ASSERT_EQ(full_params.size(), row_params.size());
      for (std::size_t i = 0; i < full_params.size(); ++i)
        if (full_params[i].grad().defined())
          EXPECT_LE(max_abs_diff(full_params[i].grad(), row_params[i].grad()), 1e-4) << i;
    }
}

// Changing a first-layer weight in place drops the cached prompt projections.
TEST(InferenceOpt, PromptProjectionCacheFollowsFirstLayerWeights) {
  auto [reference, cached] = twin_models("small", small_head());
  auto images = torch::randn({2, 3, 32, 32});
  {
    torch::InferenceMode guard;
    cached->forward(images);
  }
  {
    torch::NoGradGuard no_grad;
    for (auto* model : {&reference, &cached}) {
      auto& layer = *(*model)->attention->layers[0]->as<InteractionLayerImpl>();
      for (auto& parameter : layer.attention()->parameters()) parameter.mul_(1.5);
    }
  }
  torch::InferenceMode guard;
  EXPECT_LE(max_abs_diff(full_vsi_forward(*reference, images), cached->forward(images)), 1e-5);
}

TEST(InferenceOpt, KeptAttentionMapStillCoversEveryRow) {
  auto model = twin_models("small", small_head()).first;
  auto attention = model->attention->layers[0]->as<InteractionLayerImpl>()->attention();
  attention->keep_attention(true);
  torch::InferenceMode guard;
  auto logits = model->forward(torch::randn({2, 3, 32, 32}));
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 5}));
  // 4x4 visual tokens + 5 prompts on both sides.
  EXPECT_EQ(attention->last_attention().sizes(), (std::vector<int64_t>{2, 2, 21, 21}));
}

// ---- gradient accumulation ----------------------------------------------------------------

// train.channels_last: a training-mode step (batch statistics, gradients through every
// BatchNorm) gives the same loss and gradients, and the weights save as ordinary tensors.
TEST(ChannelsLastTraining, SameLossGradientsAndSavedWeights) {
  auto [reference, converted] = twin_models("resnet18", small_head());
  convert_to_channels_last(*converted->backbone());
  int converted_weights = 0;
  for (const auto& p : converted->backbone()->parameters())
    converted_weights += p.dim() == 4 && p.is_contiguous(torch::MemoryFormat::ChannelsLast) && !p.is_contiguous();
  EXPECT_GT(converted_weights, 10);
  reference->train(), converted->train();
  AsymmetricLoss loss_fn;
  torch::manual_seed(3);
  auto images = torch::randn({4, 3, 48, 48});
  auto targets = (torch::rand({4, 5}) < 0.4).to(torch::kFloat);
  torch::manual_seed(4);  // the same dropout masks in both
  auto reference_loss = loss_fn(reference->forward(images), targets);
  torch::manual_seed(4);
  auto converted_loss = loss_fn(converted->forward(images), targets);
  reference_loss.backward(), converted_loss.backward();
  EXPECT_NEAR(converted_loss.item<double>(), reference_loss.item<double>(), 1e-5);
  // Gradients compared as one vector: the layouts sum in another order, and a pre-activation
  // within rounding of a ReLU's kink can then take the other side, moving one weight's
  // gradient by a few percent (seen in either layout against a float64 reference). A wrong
  // layout or dropout mask moves the whole vector by its own size.
  double difference = 0, norm = 0;
  auto a = reference->named_parameters(), b = converted->named_parameters();
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto &ga = a[i].value().grad(), &gb = b[i].value().grad();
    ASSERT_EQ(ga.defined(), gb.defined()) << a[i].key();
    if (!ga.defined()) continue;
    difference += (ga - gb).to(torch::kDouble).pow(2).sum().item<double>();
    norm += ga.to(torch::kDouble).pow(2).sum().item<double>();
  }
  EXPECT_LE(std::sqrt(difference / norm), 1e-2);

  TempDir dir;
  const std::string path = dir.path() + "/weights.cprfl";
  TensorFile file;
  for (const auto& [name, tensor] : named_state(*converted)) file.tensors[name] = tensor;
  save_tensor_file(path, file);
  auto loaded = load_tensor_file(path);
  auto expected = named_state(*reference);  // BatchNorm running statistics moved by one batch in both
  ASSERT_EQ(loaded.tensors.size(), expected.size());
  for (const auto& [name, tensor] : expected) {
    const auto& saved = loaded.tensors.at(name);
    EXPECT_TRUE(saved.is_contiguous()) << name;
    EXPECT_LE(max_abs_diff(saved.to(torch::kDouble), tensor.to(torch::kDouble)), 1e-6) << name;
  }
}

TEST(GradientAccumulation, MicroBatchesGiveTheFullBatchLossAndGradients) {
  auto options = small_head();
  auto [whole, split] = twin_models("small", options);
  // Eval mode: BatchNorm uses its running statistics and dropout is off, so rows are independent.
  AsymmetricLoss loss_fn;
  torch::manual_seed(3);
  auto images = torch::randn({7, 3, 32, 32});
  auto targets = (torch::rand({7, 5}) < 0.4).to(torch::kFloat);
  auto loss_of = [&](CprflModel& model) {
    return [&](const torch::Tensor& x, const torch::Tensor& y) { return loss_fn(model->forward(x), y); };
  };
  auto whole_loss = accumulate_gradients(loss_of(whole), images, targets, 1);
  auto split_loss = accumulate_gradients(loss_of(split), images, targets, 3);  // 3 + 2 + 2 rows
  auto direct = loss_fn(whole->forward(images), targets);
  EXPECT_NEAR(whole_loss.item<double>(), direct.item<double>(), 1e-7);
  EXPECT_NEAR(split_loss.item<double>(), whole_loss.item<double>(), 1e-6);
  auto a = whole->parameters(), b = split->parameters();
  int compared = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!a[i].grad().defined()) continue;
    ASSERT_TRUE(b[i].grad().defined());
    EXPECT_LE(max_abs_diff(a[i].grad(), b[i].grad()), 1e-5 * (1 + a[i].grad().abs().max().item<double>())) << i;
    ++compared;
  }
  EXPECT_GT(compared, 10);
}

TEST(GradientAccumulation, MoreStepsThanRowsAndBadCounts) {
  auto x = torch::randn({2, 3}, torch::requires_grad());
  int calls = 0;
  auto loss = accumulate_gradients(
      [&](const torch::Tensor& images, const torch::Tensor&) {
        ++calls;
        return images.pow(2).mean();
      },
      x, torch::zeros({2, 1}), 5);
  EXPECT_EQ(calls, 2);  // one row per pass at most
  EXPECT_NEAR(loss.item<double>(), x.pow(2).mean().item<double>(), 1e-6);
  EXPECT_NE(testing::error_of([&] {
              accumulate_gradients([](const torch::Tensor& i, const torch::Tensor&) { return i.sum(); }, x,
                                   torch::zeros({2, 1}), 0);
            }).find("accumulate_steps"),
            std::string::npos);
}

// ---- cprfl predict ----------------------------------------------------------------------------

// A small CPRFL model file with non-trivial BatchNorm statistics, and a few PNG images.
struct PredictFixture {
  TempDir dir;
  std::string model_path = dir.file("model.cprfl");
  std::vector<std::string> images;
  std::shared_ptr<MultiLabelClassifier> reference;

  PredictFixture() {
    ModelInfo info;
    info.config.merge_yaml_file(testing::source_dir() + "/configs/fashion_lt_ci.yaml");
    info.config.set("prompts.file", testing::source_dir() + "/data/prompts/fashion_clip_rn50.npy", "test");
    for (int c = 0; c < 10; ++c) info.class_names.push_back("class " + std::to_string(c));
    info.class_counts.assign(10, 5);
    info.num_train_images = 20;
    info.prompt_embeddings = load_prompt_embeddings(info.config, 10);
    torch::manual_seed(11);
    reference = build_model(info.config, 10, info.prompt_embeddings);
    randomize_batchnorms(*reference);
    save_tensor_file(model_path, make_model_file(info, *reference, nullptr));
    reference->eval();
    cv::RNG rng(5);
    for (int i = 0; i < 5; ++i) {
      cv::Mat image(40 + 7 * i, 64, CV_8UC3);
      rng.fill(image, cv::RNG::UNIFORM, 0, 255);
      images.push_back(dir.file("img" + std::to_string(i) + ".png"));
      cv::imwrite(images.back(), image);
    }
  }

  std::string image_args() const {
    std::string args;
    for (const auto& image : images) args += " '" + image + "'";
    return args;
  }
};

TEST(PredictOpt, BatchingAndWorkersGiveTheUnoptimisedModelsScores) {
  PredictFixture fixture;
  std::vector<nlohmann::json> outputs;
  // float32: this test is about batching and decoding, bf16 has its own (tests/test_precision.cpp).
  for (const std::string flags : {"--batch-size 1 --workers 0", "--batch-size 2 --workers 2", "--batch-size 16"}) {
    auto out = fixture.dir.file("pred.json");
    auto result = testing::run_cprfl("predict --precision fp32 --model '" + fixture.model_path + "' " + flags + " --out '" + out + "'" +
                                     fixture.image_args());
    ASSERT_EQ(result.exit_code, 0) << result.output;
    outputs.push_back(nlohmann::json::parse(testing::read_text(out)));
  }
  // The reference: the plain eval-mode model on the same preprocessing.
  TransformConfig transform_config;
  transform_config.image_size = 64;
  transform_config.train = false;
  transform_config.normalize = "imagenet";
  ImageTransform transform(transform_config);
  std::mt19937_64 rng(0);
  auto batch = torch::empty({5, 3, 64, 64});
  for (int64_t i = 0; i < 5; ++i) transform.apply(read_image(fixture.images[i]), rng, batch[i].data_ptr<float>());
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = fixture.reference->forward(batch);
  }
  for (const auto& output : outputs) {
    ASSERT_EQ(output.size(), 5u);
    for (int64_t i = 0; i < 5; ++i) {
      EXPECT_EQ(output[i]["image"], fixture.images[i]);  // input order kept
      for (int64_t c = 0; c < 10; ++c)
        EXPECT_NEAR(output[i]["classes"][c]["logit"].get<double>(), logits[i][c].item<double>(), kTolerance);
    }
  }
}

TEST(PredictOpt, ThreadsFlagWorksAndABadImageIsNamed) {
  PredictFixture fixture;
  auto result = testing::run_cprfl("--threads 1 predict --model '" + fixture.model_path + "'" + fixture.image_args());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  testing::write_text(fixture.dir.file("broken.png"), "not an image");
  auto bad = testing::run_cprfl("predict --workers 2 --model '" + fixture.model_path + "' '" +
                                fixture.dir.file("broken.png") + "'" + fixture.image_args());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("broken.png"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace cprfl
