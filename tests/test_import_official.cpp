// import-official: checkpoints in the layout of the authors' Python code (Backbone.*, fc.0,
// label_emb.0/3, attention.layers.*, text_encoder.*), built here with random weights, become
// cprfl models whose scores match a forward pass written out below with raw torch ops.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <random>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/clip/token_tensor.h"
#include "cprfl/data/image.h"
#include "cprfl/data/transforms.h"
#include "cprfl/config/model_file.h"
#include "cprfl/config/import_official.h"
#include "support/test_support.h"
#include "support/torch_file_writer.h"

namespace cprfl {
namespace {

using testing::error_of;
using testing::run_cprfl;
using testing::TempDir;
using testing::write_text;

// The sizes of a checkpoint to build. VSI and text encoder tiny; the backbone torchvision's.
struct OfficialShape {
  int64_t resnet_depth = 101;  // 18 or 101
  int64_t dim = 64;            // d
  int64_t prompt_hidden = 40;  // t
  int64_t depth = 2;           // VSI layers
  int64_t inner = 32;          // heads x head_dim (2 x 16)
  int64_t ffn = 96;
  int64_t text_width = 128;    // CLIP heads = width / 64 = 2
  int64_t text_layers = 2;
  int64_t embed = 48;          // m
};

// Tensors by the authors' names (no "module." prefix). Text weight matrices are float16,
// as clip.load leaves them.
class OfficialTensors {
 public:
  explicit OfficialTensors(const OfficialShape& shape, uint64_t seed = 0) {
    torch::manual_seed(seed);
    add_backbone(shape.resnet_depth);
    for (int64_t i = 0; i < shape.depth; ++i) {
      const std::string layer = "attention.layers." + std::to_string(i) + ".";
      add_norm(layer + "0.norm", shape.dim);
      add(layer + "0.fn.to_qkv.weight", uniform({3 * shape.inner, shape.dim}, shape.dim));
      add_linear(layer + "0.fn.to_out.0", shape.inner, shape.dim);
      add_norm(layer + "1.norm", shape.dim);
      add_linear(layer + "1.fn.net.0", shape.dim, shape.ffn);
      add_linear(layer + "1.fn.net.3", shape.ffn, shape.dim);
    }
    add_text_encoder(shape);
    add_linear("fc.0", backbone_width_, shape.dim);
    add_linear("label_emb.0", shape.embed, shape.prompt_hidden);
    add_linear("label_emb.3", shape.prompt_hidden, shape.dim);
  }

  NamedTensors list;
  const torch::Tensor& operator[](const std::string& name) const { return float_copies_.at(name); }
  void erase(const std::string& name) {
    for (auto it = list.begin(); it != list.end(); ++it)
      if (it->first == name) {
        list.erase(it);
        return;
      }
    throw std::runtime_error("no tensor " + name);
  }
  void replace(const std::string& name, torch::Tensor tensor) {
    for (auto& entry : list)
      if (entry.first == name) entry.second = std::move(tensor);
  }
  // The state dict as DataParallel saves it.
  NamedTensors with_module_prefix() const {
    NamedTensors out;
    for (const auto& [name, tensor] : list) out.emplace_back("module." + name, tensor);
    return out;
  }

 private:
  void add(const std::string& name, torch::Tensor tensor) {
    list.emplace_back(name, tensor);
    float_copies_[name] = tensor.is_floating_point() ? tensor.to(torch::kFloat) : tensor;
  }
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) · 1.7: about unit-variance outputs, cheap to draw.
  static torch::Tensor uniform(std::vector<int64_t> sizes, int64_t fan_in) {
    return (torch::rand(sizes) * 2 - 1) * (1.7 * std::sqrt(3.0 / static_cast<double>(fan_in)));
  }
  void add_linear(const std::string& name, int64_t in, int64_t out, bool half = false) {
    auto weight = uniform({out, in}, in);
    add(name + ".weight", half ? weight.to(torch::kHalf) : weight);
    add(name + ".bias", torch::randn({out}) * 0.1);
  }
  void add_norm(const std::string& name, int64_t width) {
    add(name + ".weight", 1 + 0.1 * torch::randn({width}));
    add(name + ".bias", 0.1 * torch::randn({width}));
  }
  // gamma scales the block's output (small for the last BatchNorm of a residual branch, so
  // 33 blocks of random weights keep activations of order 1).
  void add_batch_norm(const std::string& name, int64_t width, double gamma) {
    add(name + ".weight", gamma * (1 + 0.1 * torch::randn({width})));
    add(name + ".bias", 0.1 * torch::randn({width}));
    add(name + ".running_mean", 0.1 * torch::randn({width}));
    add(name + ".running_var", 0.5 + torch::rand({width}));
    add(name + ".num_batches_tracked", torch::tensor(int64_t{1234}));
  }
  void add_conv(const std::string& name, int64_t in, int64_t out, int64_t kernel) {
    add(name, uniform({out, in, kernel, kernel}, in * kernel * kernel));
  }
  void add_backbone(int64_t depth) {
    const bool bottleneck = depth == 101;
    const std::vector<int64_t> blocks = bottleneck ? std::vector<int64_t>{3, 4, 23, 3} : std::vector<int64_t>{2, 2, 2, 2};
    const int64_t expansion = bottleneck ? 4 : 1;
    add_conv("Backbone.0.weight", 3, 64, 7);
    add_batch_norm("Backbone.1", 64, 1.0);
    int64_t in = 64;
    for (int stage = 0; stage < 4; ++stage) {
      const int64_t planes = 64 << stage;
      for (int64_t b = 0; b < blocks[stage]; ++b) {
        const std::string block = "Backbone." + std::to_string(4 + stage) + "." + std::to_string(b) + ".";
        if (bottleneck) {
          add_conv(block + "conv1.weight", in, planes, 1);
          add_batch_norm(block + "bn1", planes, 1.0);
          add_conv(block + "conv2.weight", planes, planes, 3);
          add_batch_norm(block + "bn2", planes, 1.0);
          add_conv(block + "conv3.weight", planes, planes * 4, 1);
          add_batch_norm(block + "bn3", planes * 4, 0.2);
        } else {
          add_conv(block + "conv1.weight", in, planes, 3);
          add_batch_norm(block + "bn1", planes, 1.0);
          add_conv(block + "conv2.weight", planes, planes, 3);
          add_batch_norm(block + "bn2", planes, 0.2);
        }
        if (b == 0 && (stage > 0 || in != planes * expansion)) {
          add_conv(block + "downsample.0.weight", in, planes * expansion, 1);
          add_batch_norm(block + "downsample.1", planes * expansion, 1.0);
        }
        in = planes * expansion;
      }
    }
    backbone_width_ = in;
  }
  void add_text_encoder(const OfficialShape& shape) {
    const std::string prefix = "text_encoder.";
    const int64_t width = shape.text_width;
    add(prefix + "positional_embedding", torch::randn({77, width}) * 0.1);
    add(prefix + "token_embedding.weight", torch::randn({49408, width}) * 0.1);
    for (int64_t i = 0; i < shape.text_layers; ++i) {
      const std::string block = prefix + "transformer.resblocks." + std::to_string(i) + ".";
      add(block + "attn.in_proj_weight", uniform({3 * width, width}, width).to(torch::kHalf));
      add(block + "attn.in_proj_bias", torch::randn({3 * width}) * 0.1);
      add_linear(block + "attn.out_proj", width, width, /*half=*/true);
      add_norm(block + "ln_1", width);
      add_linear(block + "mlp.c_fc", width, 4 * width, /*half=*/true);
      add_linear(block + "mlp.c_proj", 4 * width, width, /*half=*/true);
      add_norm(block + "ln_2", width);
    }
    add_norm(prefix + "ln_final", width);
    add(prefix + "text_projection", (torch::randn({width, shape.embed}) / std::sqrt(double(width))).to(torch::kHalf));
  }

  std::map<std::string, torch::Tensor> float_copies_;
  int64_t backbone_width_ = 0;
};

// ---- the reference: the authors' forward, op by op, on the checkpoint tensors ----------------

torch::Tensor batch_norm(const OfficialTensors& t, const torch::Tensor& x, const std::string& name) {
  return torch::batch_norm(x, t[name + ".weight"], t[name + ".bias"], t[name + ".running_mean"],
                           t[name + ".running_var"], /*training=*/false, 0.1, 1e-5, /*cudnn_enabled=*/false);
}

// torchvision resnet101 minus avgpool/fc (Bottleneck v1.5: stride on the 3x3 conv).
torch::Tensor reference_resnet101(const OfficialTensors& t, const torch::Tensor& image) {
  auto x = torch::conv2d(image, t["Backbone.0.weight"], {}, 2, 3);
  x = torch::relu(batch_norm(t, x, "Backbone.1"));
  x = torch::max_pool2d(x, 3, 2, 1);
  const int64_t blocks[4] = {3, 4, 23, 3};
  for (int stage = 0; stage < 4; ++stage) {
    for (int64_t b = 0; b < blocks[stage]; ++b) {
      const std::string block = "Backbone." + std::to_string(4 + stage) + "." + std::to_string(b) + ".";
      const int64_t stride = (b == 0 && stage > 0) ? 2 : 1;
      auto y = torch::relu(batch_norm(t, torch::conv2d(x, t[block + "conv1.weight"]), block + "bn1"));
      y = torch::relu(batch_norm(t, torch::conv2d(y, t[block + "conv2.weight"], {}, stride, 1), block + "bn2"));
      y = batch_norm(t, torch::conv2d(y, t[block + "conv3.weight"]), block + "bn3");
      auto identity =
          b == 0 ? batch_norm(t, torch::conv2d(x, t[block + "downsample.0.weight"], {}, stride), block + "downsample.1") : x;
      x = torch::relu(y + identity);
    }
  }
  return x;
}

torch::Tensor linear(const OfficialTensors& t, const torch::Tensor& x, const std::string& name) {
  return torch::linear(x, t[name + ".weight"], t[name + ".bias"]);
}

torch::Tensor layer_norm(const OfficialTensors& t, const torch::Tensor& x, const std::string& name) {
  return torch::layer_norm(x, {x.size(-1)}, t[name + ".weight"], t[name + ".bias"], 1e-5);
}

// [N, n, heads·dh] -> [N, heads, n, dh]
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  return x.reshape({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}
torch::Tensor merge_heads(const torch::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

// OpenAI's encode_text over all 77 positions with the causal mask.
torch::Tensor reference_text_encoder(const OfficialTensors& t, const torch::Tensor& tokens, const OfficialShape& shape) {
  const std::string p = "text_encoder.";
  const int64_t heads = shape.text_width / 64;
  auto x = t[p + "token_embedding.weight"].index_select(0, tokens.flatten()).reshape({tokens.size(0), 77, -1}) +
           t[p + "positional_embedding"];
  auto mask = torch::full({77, 77}, -INFINITY).triu(1);
  for (int64_t i = 0; i < shape.text_layers; ++i) {
    const std::string block = p + "transformer.resblocks." + std::to_string(i) + ".";
    auto qkv = torch::linear(layer_norm(t, x, block + "ln_1"), t[block + "attn.in_proj_weight"],
                             t[block + "attn.in_proj_bias"]).chunk(3, -1);
    auto q = split_heads(qkv[0], heads), k = split_heads(qkv[1], heads), v = split_heads(qkv[2], heads);
    auto weights = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(q.size(-1))) + mask, -1);
    x = x + linear(t, merge_heads(torch::matmul(weights, v)), block + "attn.out_proj");
    auto h = linear(t, layer_norm(t, x, block + "ln_2"), block + "mlp.c_fc");
    x = x + linear(t, h * torch::sigmoid(1.702 * h), block + "mlp.c_proj");
  }
  x = layer_norm(t, x, p + "ln_final");
  return torch::matmul(x.index({torch::arange(tokens.size(0)), tokens.argmax(-1)}), t[p + "text_projection"]);
}

// MyModel.forward: scores [B, C].
torch::Tensor reference_scores(const OfficialTensors& t, const torch::Tensor& tokens, const torch::Tensor& image,
                               const OfficialShape& shape) {
  auto w = reference_text_encoder(t, tokens, shape);
  auto prompts = linear(t, torch::gelu(linear(t, w, "label_emb.0")), "label_emb.3");  // [C, d]
  auto features = reference_resnet101(t, image);
  features = features.reshape({features.size(0), features.size(1), -1}).transpose(1, 2);  // [B, hw, 2048]
  auto z = torch::cat({linear(t, features, "fc.0"), prompts.unsqueeze(0).expand({image.size(0), -1, -1})}, 1);
  const int64_t heads = 2;
  for (int64_t i = 0; i < shape.depth; ++i) {
    const std::string layer = "attention.layers." + std::to_string(i) + ".";
    auto qkv = torch::linear(layer_norm(t, z, layer + "0.norm"), t[layer + "0.fn.to_qkv.weight"]).chunk(3, -1);
    auto q = split_heads(qkv[0], heads), k = split_heads(qkv[1], heads), v = split_heads(qkv[2], heads);
    auto weights = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * std::pow(double(q.size(-1)), -0.5), -1);
    z = linear(t, merge_heads(torch::matmul(weights, v)), layer + "0.fn.to_out.0");  // no residual
    z = linear(t, torch::gelu(linear(t, layer_norm(t, z, layer + "1.norm"), layer + "1.fn.net.0")), layer + "1.fn.net.3");
  }
  auto refined = z.slice(1, z.size(1) - prompts.size(0));  // [B, C, d]
  return torch::einsum("bcd,cd->bc", {refined, prompts});
}

double relative_difference(const torch::Tensor& actual, const torch::Tensor& expected) {
  return ((actual - expected).abs().max() / expected.abs().max()).item<double>();
}

const std::vector<std::string> kClasses = {"cat", "traffic_light", "teddy_bear"};

// clip.tokenize("a photo of a {}.") for kClasses (ids from OpenAI's tokenizer).
torch::Tensor class_tokens() {
  const std::vector<std::vector<int>> ids = {{49406, 320, 1125, 539, 320, 2368, 269, 49407},
                                             {49406, 320, 1125, 539, 320, 3399, 1395, 269, 49407},
                                             {49406, 320, 1125, 539, 320, 11798, 4298, 269, 49407}};
  std::vector<torch::Tensor> rows;
  for (const auto& row : ids) rows.push_back(clip::pad_tokens(row));
  return torch::stack(rows);
}

void save_official(const std::string& path, const NamedTensors& state) {
  testing::TorchSaveOptions options;
  options.wrap_key = "state_dict";
  options.numpy_scalars = {{"score", 71.25}};
  testing::write_torch_state_dict(path, state, options);
}

void write_png(const std::string& path, int width, int height) {
  cv::Mat image(height, width, CV_8UC3);
  cv::randu(image, cv::Scalar::all(0), cv::Scalar::all(256));
  ASSERT_TRUE(cv::imwrite(path, image));
}

TEST(ImportOfficial, ResNet101CheckpointScoresMatchTheAuthorsForwardAndTheCliRoundTrip) {
  torch::NoGradGuard no_grad;
  const OfficialShape shape;
  const OfficialTensors tensors(shape, 1);
  TempDir dir;
  const std::string checkpoint = dir.file("ema_best.ckpt");
  save_official(checkpoint, tensors.with_module_prefix());

  ImportOptions options;
  options.heads = 2;
  auto imported = import_official_checkpoint(checkpoint, kClasses, options);
  const auto& a = imported.architecture;
  EXPECT_EQ(a.backbone, "resnet101");
  EXPECT_EQ(a.backbone_width, 2048);
  EXPECT_EQ(a.dim, 64);
  EXPECT_EQ(a.prompt_hidden, 40);
  EXPECT_EQ(a.text_width, 48);
  EXPECT_EQ(a.depth, 2);
  EXPECT_EQ(a.inner, 32);
  EXPECT_EQ(a.head_dim, 16);
  EXPECT_EQ(a.ffn, 96);
  EXPECT_EQ(a.text.width, 128);
  EXPECT_EQ(a.text.layers, 2);
  const auto& config = imported.info.config;
  EXPECT_EQ(config.get_string("model.backbone"), "resnet101");
  EXPECT_DOUBLE_EQ(config.get_float("model.tau"), 40.0 / 64.0);
  EXPECT_EQ(config.get_int("data.image_size"), 448);
  EXPECT_EQ(config.get_string("prompts.template"), "a photo of a {}.");

  // The prompts our tokenizer makes are the ones the reference is given.
  auto tokens = class_tokens();
  ASSERT_TRUE(torch::equal(clip::tokenize_batch(clip::ClipTokenizer::load(),
                                                {"a photo of a cat.", "a photo of a traffic light.",
                                                 "a photo of a teddy bear."}),
                           tokens));
  auto expected_w = reference_text_encoder(tensors, tokens, shape);
  EXPECT_LE(relative_difference(imported.info.prompt_embeddings, expected_w), 1e-5);

  torch::manual_seed(5);
  auto image = torch::randn({1, 3, 448, 448});
  auto expected = reference_scores(tensors, tokens, image, shape);
  auto actual = imported.model->forward(image);
  ASSERT_EQ(actual.sizes(), expected.sizes());
  EXPECT_TRUE(torch::isfinite(expected).all().item<bool>());
  EXPECT_GT(expected.abs().max().item<double>(), 1e-3);  // not a degenerate all-zero comparison
  EXPECT_LE(relative_difference(actual, expected), 1e-4) << "actual " << actual << "\nexpected " << expected;

  // CLI: import, then predict on a real photograph. The authors' code feeds their model
  // Pillow's bilinear 448 × 448 resize of the decoded JPEG, as floats in [0, 1] (ToTensor(), no
  // normalisation); tests/fixtures/photo/make_fixture.py recorded Pillow's pixels.
  const std::string labels = dir.file("labels.txt"), model = dir.file("model.cprfl"), out = dir.file("pred.json");
  const std::string photo = testing::source_dir() + "/tests/fixtures/photo/rocket.jpg";
  write_text(labels, "cat\ntraffic_light\nteddy_bear\n");
  auto imported_run = run_cprfl("import-official --checkpoint " + checkpoint + " --labels " + labels + " --out " +
                                model + " --heads 2");
  ASSERT_EQ(imported_run.exit_code, 0) << imported_run.output;
  EXPECT_NE(imported_run.output.find("resnet101"), std::string::npos) << imported_run.output;
  auto loaded = load_model_file(model);
  EXPECT_FALSE(loaded.has_ema);
  EXPECT_EQ(loaded.info.class_names, kClasses);
  // W was computed by the text encoder in another process, with its own thread count: equal up
  // to float32 rounding of sums over widths <= 128 (~1e-6 relative), not bit for bit.
  EXPECT_LE(relative_difference(loaded.info.prompt_embeddings, imported.info.prompt_embeddings), 1e-5);
  // The model file carries the authors' pipeline, and eval/predict follow it.
  const auto& stored = loaded.info.config;
  EXPECT_EQ(stored.get_string("data.resize"), "pil_bilinear");
  EXPECT_EQ(stored.get_string("data.normalize"), "none");
  EXPECT_FALSE(stored.get_bool("data.hflip"));
  EXPECT_EQ(stored.get_string("data.randaugment_policy"), "asl");
  auto predicted = run_cprfl("predict --precision fp32 --model " + model + " " + photo + " --threshold 0 --out " + out);
  ASSERT_EQ(predicted.exit_code, 0) << predicted.output;
  EXPECT_NE(predicted.output.find("preprocessing 448 px, Pillow bilinear resize, normalize none"), std::string::npos)
      << predicted.output;
  auto json = nlohmann::json::parse(testing::read_text(out));
  ASSERT_EQ(json.size(), 1u);
  ASSERT_EQ(json[0]["classes"].size(), 3u);

  // Our decode + resize gives Pillow's pixels exactly ...
  cv::Mat pillow = read_image(testing::source_dir() + "/tests/fixtures/photo/rocket_448_bilinear.png");
  cv::Mat ours = resize_square(read_image(photo), 448, stored.get_string("data.resize"));
  ASSERT_EQ(ours.size(), pillow.size());
  EXPECT_EQ(cv::norm(ours, pillow, cv::NORM_INF), 0.0) << "the resized photo differs from Pillow's";
  // ... so the CLI's logits are the authors' forward pass on the authors' input tensor.
  auto authors_input = torch::from_blob(pillow.data, {1, 448, 448, 3}, torch::kUInt8)
                           .permute({0, 3, 1, 2}).to(torch::kFloat).div(255.0).contiguous();
  auto expected_logits = reference_scores(tensors, tokens, authors_input, shape);
  TransformConfig transform_config = transform_config_of(stored, false);
  ImageTransform transform(transform_config);
  auto input = torch::empty({1, 3, 448, 448});
  std::mt19937_64 rng(0);
  transform.apply(read_image(photo), rng, input.data_ptr<float>());
  EXPECT_TRUE(torch::equal(input, authors_input));  // one process: the same bytes divided the same way
  auto in_process = imported.model->forward(input);
  EXPECT_LE(relative_difference(in_process, expected_logits), 1e-4);
  // The CLI runs a BatchNorm-folded, channels-last copy in another process: 1e-4 of the largest logit.
  torch::Tensor cli_logits = torch::empty({1, 3});
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(json[0]["classes"][c]["class"], kClasses[c]);
    cli_logits[0][c] = json[0]["classes"][c]["logit"].get<double>();
  }
  EXPECT_LE(relative_difference(cli_logits, expected_logits), 1e-4) << cli_logits << "\n" << expected_logits;
  EXPECT_EQ(json[0]["predicted"].size(), 3u);  // threshold 0: every class
}

// ---- errors: on a ResNet-18-shaped checkpoint (cheap), in memory -----------------------------

class ImportOfficialErrors : public ::testing::Test {
 protected:
  static OfficialShape small_shape() {
    OfficialShape shape;
    shape.resnet_depth = 18;
    return shape;
  }
  ImportOfficialErrors() : tensors(small_shape(), 2) { options.heads = 2; }
  std::string import_error() {
    return error_of([&] { import_official_state(tensors.list, "authors.ckpt", kClasses, options); });
  }
  OfficialTensors tensors;
  ImportOptions options;
};

TEST_F(ImportOfficialErrors, AResNet18CheckpointImports) {
  torch::NoGradGuard no_grad;
  auto imported = import_official_state(tensors.list, "authors.ckpt", kClasses, options);
  EXPECT_EQ(imported.architecture.backbone, "resnet18");
  EXPECT_EQ(imported.architecture.backbone_width, 512);
  EXPECT_EQ(imported.model->forward(torch::randn({2, 3, 64, 64})).sizes(), (std::vector<int64_t>{2, 3}));
}

TEST_F(ImportOfficialErrors, MissingKeysAreNamed) {
  tensors.erase("attention.layers.1.1.fn.net.3.bias");
  auto message = import_error();
  EXPECT_NE(message.find("authors.ckpt"), std::string::npos) << message;
  EXPECT_NE(message.find("missing key attention.layers.1.1.fn.net.3.bias"), std::string::npos) << message;
}

TEST_F(ImportOfficialErrors, MissingBackboneKeysUseTheCheckpointsNames) {
  tensors.erase("Backbone.7.1.bn2.running_var");
  auto message = import_error();
  EXPECT_NE(message.find("missing key Backbone.7.1.bn2.running_var"), std::string::npos) << message;
}

TEST_F(ImportOfficialErrors, MissingTextEncoderIsNamed) {
  tensors.erase("text_encoder.ln_final.weight");
  auto message = import_error();
  EXPECT_NE(message.find("authors.ckpt"), std::string::npos) << message;
  EXPECT_NE(message.find("ln_final.weight"), std::string::npos) << message;
}

TEST_F(ImportOfficialErrors, UnexpectedKeysAreNamed) {
  tensors.list.emplace_back("prompt_learner.ctx", torch::zeros({4, 64}));
  auto message = import_error();
  EXPECT_NE(message.find("unexpected key prompt_learner.ctx"), std::string::npos) << message;

  OfficialTensors other(small_shape(), 2);
  other.list.emplace_back("attention.layers.0.0.fn.to_out.3.weight", torch::zeros({64, 64}));
  message = error_of([&] { import_official_state(other.list, "authors.ckpt", kClasses, options); });
  EXPECT_NE(message.find("unexpected key attention.layers.0.0.fn.to_out.3.weight"), std::string::npos) << message;

  OfficialTensors visual(small_shape(), 2);
  visual.list.emplace_back("text_encoder.visual.conv1.weight", torch::zeros({8, 3, 3, 3}));
  message = error_of([&] { import_official_state(visual.list, "authors.ckpt", kClasses, options); });
  EXPECT_NE(message.find("unexpected key text_encoder.visual.conv1.weight"), std::string::npos) << message;
}

TEST_F(ImportOfficialErrors, ShapeMismatchesAreNamed) {
  tensors.replace("fc.0.weight", torch::zeros({64, 1000}));
  auto message = import_error();
  EXPECT_NE(message.find("shape mismatch for fc.0.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("[64, 1000]"), std::string::npos) << message;

  OfficialTensors text(small_shape(), 2);
  text.replace("text_encoder.text_projection", torch::zeros({128, 40}));
  message = error_of([&] { import_official_state(text.list, "authors.ckpt", kClasses, options); });
  EXPECT_NE(message.find("label_emb.0.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("text_projection"), std::string::npos) << message;
}

TEST_F(ImportOfficialErrors, HeadsMustDivideTheInnerWidth) {
  options.heads = 3;
  auto message = import_error();
  EXPECT_NE(message.find("not divisible by --heads 3"), std::string::npos) << message;
  EXPECT_NE(message.find("attention.layers.0.0.fn.to_qkv.weight [96, 64]"), std::string::npos) << message;
}

TEST_F(ImportOfficialErrors, UnknownBackboneDepth) {
  for (const auto& name : std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                                   "bn1.running_var", "bn1.num_batches_tracked", "conv2.weight",
                                                   "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var",
                                                   "bn2.num_batches_tracked"})
    tensors.erase("Backbone.6.1." + name);
  auto message = import_error();
  EXPECT_NE(message.find("layer3 (Backbone.6.*) has 1 BasicBlock"), std::string::npos) << message;
}

TEST_F(ImportOfficialErrors, WrongLabels) {
  auto message = error_of([&] { import_official_state(tensors.list, "authors.ckpt", {}, options); });
  EXPECT_NE(message.find("no class names"), std::string::npos) << message;

  // A training list naming a 4th class does not fit a 3-class labels file.
  TempDir dir;
  options.train_list = dir.file("train.txt");
  write_text(options.train_list, "a.jpg 0 1\nb.jpg 3\n");
  message = import_error();
  EXPECT_NE(message.find("train.txt:2"), std::string::npos) << message;
}

TEST(ImportOfficialCli, ResNet18ImportEvaluatesWithGroupsAndRefusesBadFiles) {
  torch::NoGradGuard no_grad;
  OfficialShape shape;
  shape.resnet_depth = 18;
  const OfficialTensors tensors(shape, 3);
  TempDir dir;
  const std::string checkpoint = dir.file("bare.pth"), labels = dir.file("labels.txt"), list = dir.file("list.txt"),
                    model = dir.file("model.cprfl");
  testing::write_torch_state_dict(checkpoint, tensors.list);  // the bare state dict, no prefix
  write_text(labels, "cat\ntraffic_light\nteddy_bear\n");
  write_png(dir.file("a.png"), 40, 30);
  write_png(dir.file("b.png"), 30, 40);
  write_text(list, "a.png 0 1\nb.png 2\n");

  auto result = run_cprfl("import-official --checkpoint " + checkpoint + " --labels " + labels + " --out " + model +
                          " --heads 2 --image-size 64 --train-list " + list);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto loaded = load_model_file(model);
  EXPECT_EQ(loaded.info.class_counts, (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(loaded.info.config.get_int("data.image_size"), 64);
  result = run_cprfl("eval --model " + model + " --list " + list + " --root " + dir.path() + " --labels " + labels);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("mAP"), std::string::npos) << result.output;

  result = run_cprfl("import-official --checkpoint " + checkpoint + " --labels " + labels + " --out " + model +
                     " --heads 5");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("error: " + checkpoint), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("--heads 5"), std::string::npos) << result.output;

  write_text(dir.file("not.ckpt"), "not a checkpoint");
  result = run_cprfl("import-official --checkpoint " + dir.file("not.ckpt") + " --labels " + labels + " --out " + model);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("not.ckpt"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace cprfl
