#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "cprfl/model/backbone_registry.h"
#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/common/error.h"
#include "cprfl/data/transforms.h"
#include "cprfl/model/build.h"
#include "cprfl/model/clip_visual.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/io/state_dict.h"
#include "cprfl/config/config.h"
#include "test_support.h"
#include "torch_file_writer.h"

using cprfl::testing::error_of;
using cprfl::testing::TempDir;
using cprfl::testing::write_torch_state_dict;

using namespace cprfl;

namespace {

// layers (1, 2, 1, 1), width 8: d0 = 256; 64 px -> a 2x2 attention-pool grid.
ClipResNetOptions tiny_resnet_options() {
  ClipResNetOptions options;
  options.layers = {1, 2, 1, 1};
  options.width = 8;
  options.heads = 2;
  options.output_dim = 12;
  options.input_resolution = 64;
  return options;
}

// patch 8, width 16, 2 blocks: 32 px -> a 4x4 token grid.
ClipViTOptions tiny_vit_options() {
  ClipViTOptions options;
  options.patch_size = 8;
  options.width = 16;
  options.layers = 2;
  options.heads = 2;
  options.output_dim = 12;
  options.input_resolution = 32;
  return options;
}

std::vector<std::string> visual_names(const torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : named_state(module)) names.push_back("visual." + name);
  return names;
}

std::map<std::string, std::vector<int64_t>> visual_shapes(const torch::nn::Module& module) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, tensor] : named_state(module)) shapes["visual." + name] = tensor.sizes().vec();
  return shapes;
}

std::vector<std::string> batch_norm(const std::string& prefix) {
  return {prefix + ".weight", prefix + ".bias", prefix + ".running_mean", prefix + ".running_var",
          prefix + ".num_batches_tracked"};
}

void append(std::vector<std::string>& names, const std::vector<std::string>& more) {
  names.insert(names.end(), more.begin(), more.end());
}

// Random weights and BN statistics, rounded to half precision (OpenAI's checkpoints are fp16),
// so the loaded float32 copy must equal them exactly.
void randomise(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : named_state(module)) {
    if (!tensor.is_floating_point()) {
      tensor.fill_(7);
      continue;
    }
    if (name.find("running_var") != std::string::npos)
      tensor.uniform_(0.5, 1.5);
    else
      tensor.normal_(0.0, 0.2);
    tensor.copy_(tensor.to(torch::kHalf).to(torch::kFloat));
  }
}

// The module's tensors as a CLIP checkpoint holds them: visual.*, floats in fp16, plus a few
// text-side entries the loader must ignore.
NamedTensors clip_checkpoint_state(const torch::nn::Module& visual) {
  NamedTensors state;
  state.emplace_back("positional_embedding", torch::randn({5, 8}).to(torch::kHalf));
  state.emplace_back("text_projection", torch::randn({8, 12}).to(torch::kHalf));
  for (const auto& [name, tensor] : named_state(visual))
    state.emplace_back("visual." + name, tensor.is_floating_point() ? tensor.to(torch::kHalf) : tensor.clone());
  state.emplace_back("token_embedding.weight", torch::randn({10, 8}).to(torch::kHalf));
  state.emplace_back("logit_scale", torch::tensor(4.6f));
  return state;
}

CprflOptions tiny_head() {
  CprflOptions options;
  options.dim = 8;
  options.interaction.heads = 2;
  options.interaction.head_dim = 4;
  options.interaction.ffn_dim = 16;
  options.interaction.dropout = 0.0;
  return options;
}

}  // namespace

TEST(ClipVisual, ModifiedResNetNamesAndShapesFollowOpenAI) {
  ClipModifiedResNet net(tiny_resnet_options());
  auto names = visual_names(*net);
  // Stem, then layer1.0 in OpenAI's state_dict order; the downsample pool ("-1") has no tensors.
  std::vector<std::string> head;
  for (int i = 1; i <= 3; ++i) {
    head.push_back("visual.conv" + std::to_string(i) + ".weight");
    append(head, batch_norm("visual.bn" + std::to_string(i)));
  }
  for (int i = 1; i <= 3; ++i) {
    head.push_back("visual.layer1.0.conv" + std::to_string(i) + ".weight");
    append(head, batch_norm("visual.layer1.0.bn" + std::to_string(i)));
  }
  head.push_back("visual.layer1.0.downsample.0.weight");
  append(head, batch_norm("visual.layer1.0.downsample.1"));
  head.push_back("visual.layer2.0.conv1.weight");
  ASSERT_GE(names.size(), head.size());
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + head.size()), head);
  const std::vector<std::string> tail{
      "visual.attnpool.positional_embedding", "visual.attnpool.k_proj.weight", "visual.attnpool.k_proj.bias",
      "visual.attnpool.q_proj.weight",        "visual.attnpool.q_proj.bias",   "visual.attnpool.v_proj.weight",
      "visual.attnpool.v_proj.bias",          "visual.attnpool.c_proj.weight", "visual.attnpool.c_proj.bias"};
  EXPECT_EQ(std::vector<std::string>(names.end() - tail.size(), names.end()), tail);
  // Stem 18 + five blocks of 18 + four downsample branches of 6 + attention pool 9.
  EXPECT_EQ(names.size(), 18u + 5 * 18u + 4 * 6u + 9u);

  auto shapes = visual_shapes(*net);
  using Shape = std::vector<int64_t>;
  EXPECT_EQ(shapes["visual.conv1.weight"], (Shape{4, 3, 3, 3}));
  EXPECT_EQ(shapes["visual.conv3.weight"], (Shape{8, 4, 3, 3}));
  EXPECT_EQ(shapes["visual.layer1.0.conv2.weight"], (Shape{8, 8, 3, 3}));
  EXPECT_EQ(shapes["visual.layer1.0.downsample.0.weight"], (Shape{32, 8, 1, 1}));
  EXPECT_EQ(shapes["visual.layer2.0.downsample.0.weight"], (Shape{64, 32, 1, 1}));
  EXPECT_EQ(shapes["visual.layer2.1.conv1.weight"], (Shape{16, 64, 1, 1}));
  EXPECT_FALSE(shapes.count("visual.layer2.1.downsample.0.weight"));
  EXPECT_EQ(shapes["visual.layer4.0.conv3.weight"], (Shape{256, 64, 1, 1}));
  EXPECT_EQ(shapes["visual.attnpool.positional_embedding"], (Shape{5, 256}));
  EXPECT_EQ(shapes["visual.attnpool.c_proj.weight"], (Shape{12, 256}));
  EXPECT_EQ(net->out_channels(), 256);
  EXPECT_EQ(net->stride(), 32);
}

TEST(ClipVisual, VisionTransformerNamesAndShapesFollowOpenAI) {
  ClipVisionTransformer net(tiny_vit_options());
  std::vector<std::string> expected{"visual.class_embedding", "visual.positional_embedding", "visual.proj",
                                    "visual.conv1.weight", "visual.ln_pre.weight", "visual.ln_pre.bias"};
  for (int block = 0; block < 2; ++block) {
    const std::string p = "visual.transformer.resblocks." + std::to_string(block) + ".";
    append(expected, {p + "attn.in_proj_weight", p + "attn.in_proj_bias", p + "attn.out_proj.weight",
                      p + "attn.out_proj.bias", p + "ln_1.weight", p + "ln_1.bias", p + "mlp.c_fc.weight",
                      p + "mlp.c_fc.bias", p + "mlp.c_proj.weight", p + "mlp.c_proj.bias", p + "ln_2.weight",
                      p + "ln_2.bias"});
  }
  append(expected, {"visual.ln_post.weight", "visual.ln_post.bias"});
  EXPECT_EQ(visual_names(*net), expected);

  auto shapes = visual_shapes(*net);
  using Shape = std::vector<int64_t>;
  EXPECT_EQ(shapes["visual.class_embedding"], (Shape{16}));
  EXPECT_EQ(shapes["visual.positional_embedding"], (Shape{17, 16}));
  EXPECT_EQ(shapes["visual.proj"], (Shape{16, 12}));
  EXPECT_EQ(shapes["visual.conv1.weight"], (Shape{16, 3, 8, 8}));
  EXPECT_EQ(shapes["visual.transformer.resblocks.1.attn.in_proj_weight"], (Shape{48, 16}));
  EXPECT_EQ(shapes["visual.transformer.resblocks.1.attn.in_proj_bias"], (Shape{48}));
  EXPECT_EQ(shapes["visual.transformer.resblocks.1.mlp.c_fc.weight"], (Shape{64, 16}));
  EXPECT_EQ(shapes["visual.transformer.resblocks.1.mlp.c_proj.weight"], (Shape{16, 64}));
  EXPECT_EQ(net->out_channels(), 16);
  EXPECT_EQ(net->stride(), 8);
}

TEST(ClipVisual, OpenAIModelTable) {
  // Dims as OpenAI's build_model reads them from RN50.pt, ..., ViT-L-14.pt.
  const auto& rn50 = clip_visual_spec("clip_rn50");
  EXPECT_EQ(rn50.openai, "RN50");
  EXPECT_EQ(rn50.resnet.layers, (std::vector<int64_t>{3, 4, 6, 3}));
  EXPECT_EQ(rn50.resnet.heads, 32);
  EXPECT_EQ(rn50.resnet.output_dim, 1024);
  EXPECT_EQ(clip_visual_spec("clip_rn101").resnet.layers[2], 23);
  EXPECT_EQ(clip_visual_spec("clip_rn50x4").resnet.width, 80);
  EXPECT_EQ(clip_visual_spec("clip_rn50x4").resnet.input_resolution, 288);
  EXPECT_EQ(clip_visual_spec("clip_rn50x16").resnet.layers, (std::vector<int64_t>{6, 8, 18, 8}));
  EXPECT_EQ(clip_visual_spec("clip_rn50x16").resnet.input_resolution, 384);
  EXPECT_EQ(clip_visual_spec("clip_rn50x64").resnet.layers, (std::vector<int64_t>{3, 15, 36, 10}));
  EXPECT_EQ(clip_visual_spec("clip_rn50x64").resnet.heads, 64);
  EXPECT_EQ(clip_visual_spec("clip_rn50x64").resnet.input_resolution, 448);
  const auto& b16 = clip_visual_spec("clip_vit_b16");
  EXPECT_TRUE(b16.vit);
  EXPECT_EQ(b16.vit_options.patch_size, 16);
  EXPECT_EQ(b16.vit_options.width, 768);
  EXPECT_EQ(b16.vit_options.heads, 12);
  EXPECT_EQ(b16.vit_options.output_dim, 512);
  const auto& l14 = clip_visual_spec("clip_vit_l14");
  EXPECT_EQ(l14.vit_options.layers, 24);
  EXPECT_EQ(l14.vit_options.heads, 16);
  EXPECT_EQ(l14.vit_options.output_dim, 768);
  EXPECT_EQ(clip_visual_spec("clip_vit_l14_336").vit_options.input_resolution, 336);
  EXPECT_NE(error_of([] { clip_visual_spec("clip_vit_h14"); }).find("unknown CLIP backbone 'clip_vit_h14'"),
            std::string::npos);

  // The real RN50 tower: the tensor shapes of OpenAI's RN50.pt.
  auto built = make_backbone("clip_rn50");
  EXPECT_EQ(built.out_channels, 2048);
  auto shapes = visual_shapes(*built.module);
  using Shape = std::vector<int64_t>;
  EXPECT_EQ(shapes["visual.conv1.weight"], (Shape{32, 3, 3, 3}));
  EXPECT_EQ(shapes["visual.layer1.0.downsample.0.weight"], (Shape{256, 64, 1, 1}));
  EXPECT_EQ(shapes["visual.layer3.5.bn3.weight"], (Shape{1024}));
  EXPECT_EQ(shapes["visual.attnpool.positional_embedding"], (Shape{50, 2048}));
  EXPECT_EQ(shapes["visual.attnpool.c_proj.weight"], (Shape{1024, 2048}));
  EXPECT_FALSE(shapes.count("visual.layer4.3.conv1.weight"));
}

TEST(ClipVisual, AntiAliasedDownsamplingAveragesInsteadOfSkipping) {
  // A stride-2 block on a checkerboard (0/1 alternating): the shortcut average-pools each 2x2
  // cell to 0.5 before its 1x1 conv, where a strided 1x1 conv would read only the 0s.
  ClipBottleneck block(8, 4, 2);
  block->eval();  // BN with fresh statistics: y = x / sqrt(1 + eps)
  torch::NoGradGuard no_grad;
  auto params = block->named_parameters();
  params["downsample.0.weight"].fill_(0.25);
  EXPECT_TRUE(torch::all(params["bn3.weight"] == 0).item<bool>());  // CLIP's zero-initialised residual
  auto rows = torch::arange(6).view({6, 1}), cols = torch::arange(6).view({1, 6});
  auto checkerboard = ((rows + cols) % 2).to(torch::kFloat).expand({1, 8, 6, 6}).contiguous();
  auto out = block(checkerboard);
  ASSERT_EQ(out.sizes(), (torch::IntArrayRef{1, 16, 3, 3}));
  const float expected = 0.5f * 8 * 0.25f / std::sqrt(1.0f + 1e-5f);
  EXPECT_TRUE(torch::allclose(out, torch::full_like(out, expected), 1e-6, 1e-6)) << out;
}

TEST(ClipVisual, AttentionPoolOnUniformTokensIsTheValuePath) {
  // All positions equal and no positional embedding: every key is the same, attention is
  // uniform, and the pooled vector is c_proj(v_proj(token)), whatever the grid size.
  torch::manual_seed(1);
  ClipAttentionPool pool(2, 8, 2, 3);
  torch::NoGradGuard no_grad;
  pool->positional_embedding.zero_();
  auto token = torch::randn({8});
  auto expected = pool->c_proj(pool->v_proj(token));
  for (int64_t side : {2, 3}) {
    auto map = token.view({1, 8, 1, 1}).expand({2, 8, side, side}).contiguous();
    auto out = pool(map);
    ASSERT_EQ(out.sizes(), (torch::IntArrayRef{2, 3}));
    EXPECT_TRUE(torch::allclose(out[0], expected, 1e-5, 1e-6)) << out;
    EXPECT_TRUE(torch::allclose(out[1], expected, 1e-5, 1e-6)) << out;
  }
}

TEST(ClipVisual, ModifiedResNetFeatureMapAndEmbedding) {
  torch::manual_seed(2);
  ClipModifiedResNet net(tiny_resnet_options());
  net->eval();
  torch::NoGradGuard no_grad;
  auto images = torch::randn({2, 3, 64, 64});
  EXPECT_EQ(net->forward(images).sizes(), (torch::IntArrayRef{2, 256, 2, 2}));
  EXPECT_EQ(net->encode_image(images).sizes(), (torch::IntArrayRef{2, 12}));
  // Another resolution: the attention pool's grid embedding is interpolated to 3x3.
  auto larger = torch::randn({1, 3, 96, 96});
  EXPECT_EQ(net->forward(larger).sizes(), (torch::IntArrayRef{1, 256, 3, 3}));
  EXPECT_TRUE(torch::isfinite(net->encode_image(larger)).all().item<bool>());
  EXPECT_NE(error_of([&] { net->forward(torch::randn({1, 3, 16, 16})); }).find("at least 32x32"), std::string::npos);
}

TEST(ClipVisual, VisionTransformerPatchTokensFormTheMap) {
  torch::manual_seed(3);
  ClipVisionTransformer net(tiny_vit_options());
  net->eval();
  torch::NoGradGuard no_grad;
  auto images = torch::randn({2, 3, 32, 32});
  EXPECT_EQ(net->tokens(images).sizes(), (torch::IntArrayRef{2, 1 + 4 * 4, 16}));  // h*w = (32/8)^2, + class
  EXPECT_EQ(net->forward(images).sizes(), (torch::IntArrayRef{2, 16, 4, 4}));
  EXPECT_EQ(net->encode_image(images).sizes(), (torch::IntArrayRef{2, 12}));
  auto larger = torch::randn({1, 3, 48, 40});  // 6x5 grid, embedding interpolated
  EXPECT_EQ(net->forward(larger).sizes(), (torch::IntArrayRef{1, 16, 6, 5}));

  // With every block reduced to its residual path and no positional embedding, the map at
  // (i, j) is ln_pre of the patch embedding of patch (i, j): the map keeps the image's layout.
  for (auto& item : net->named_parameters()) {
    const auto& name = item.key();
    if (name.find("out_proj") != std::string::npos || name.find("c_proj") != std::string::npos) item.value().zero_();
  }
  net->positional_embedding.zero_();
  auto patches = net->named_parameters()["conv1.weight"];
  auto embedded = torch::conv2d(images, patches, {}, 8);  // [2, 16, 4, 4]
  auto expected = torch::layer_norm(embedded.permute({0, 2, 3, 1}), {16}).permute({0, 3, 1, 2});
  EXPECT_TRUE(torch::allclose(net->forward(images), expected, 1e-5, 1e-5));
}

TEST(ClipVisual, PositionalEmbeddingResize) {
  auto embedding = torch::randn({1 + 4 * 4, 3});
  EXPECT_TRUE(resize_positional_embedding(embedding, 4, 4).is_same(embedding));
  // A constant grid stays constant (bicubic weights sum to one); the class row is kept.
  auto constant = torch::cat({torch::full({1, 3}, -2.0f), torch::full({16, 3}, 0.75f)});
  auto resized = resize_positional_embedding(constant, 6, 5);
  ASSERT_EQ(resized.sizes(), (torch::IntArrayRef{1 + 30, 3}));
  EXPECT_TRUE(torch::equal(resized[0], constant[0]));
  EXPECT_TRUE(torch::allclose(resized.slice(0, 1), torch::full({30, 3}, 0.75f), 1e-6, 1e-6));
  EXPECT_NE(error_of([] { resize_positional_embedding(torch::zeros({6, 3}), 2, 2); }).find("not 1 + a square grid"),
            std::string::npos);
}

TEST(ClipVisual, CheckpointLoadsIntoACprflModelEndToEnd) {
  TempDir dir;
  torch::manual_seed(4);
  ClipModifiedResNet resnet_source(tiny_resnet_options());
  ClipVisionTransformer vit_source(tiny_vit_options());
  randomise(*resnet_source);
  randomise(*vit_source);
  std::vector<std::pair<std::shared_ptr<ClipVisualBackbone>, std::shared_ptr<ClipVisualBackbone>>> cases{
      {resnet_source.ptr(), ClipModifiedResNet(tiny_resnet_options()).ptr()},
      {vit_source.ptr(), ClipVisionTransformer(tiny_vit_options()).ptr()}};
  for (auto& [source, fresh] : cases) {
    const std::string path = dir.file("clip.pt");
    write_torch_state_dict(path, clip_checkpoint_state(*source));
    CprflModel model(fresh, torch::randn({3, 6}), tiny_head());
    load_backbone_weights(*model, path);

    auto loaded = named_state(*model->backbone());
    auto original = named_state(*source);
    ASSERT_EQ(loaded.size(), original.size());
    for (std::size_t i = 0; i < loaded.size(); ++i) {
      EXPECT_EQ(loaded[i].second.scalar_type(), original[i].second.scalar_type()) << loaded[i].first;
      EXPECT_TRUE(torch::equal(loaded[i].second, original[i].second)) << loaded[i].first;
    }
    source->eval();
    model->eval();
    torch::NoGradGuard no_grad;
    auto images = torch::randn({2, 3, 64, 64});
    EXPECT_TRUE(torch::equal(model->backbone()->forward(images), source->forward(images)));
    EXPECT_TRUE(torch::equal(fresh->encode_image(images), source->encode_image(images)));
    auto logits = model->forward(images);
    ASSERT_EQ(logits.sizes(), (torch::IntArrayRef{2, 3}));
    EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  }
}

TEST(ClipVisual, CheckpointErrorsNameTheKey) {
  TempDir dir;
  const std::string path = dir.file("clip.pt");
  ClipModifiedResNet source(tiny_resnet_options());
  randomise(*source);
  auto model = CprflModel(ClipModifiedResNet(tiny_resnet_options()).ptr(), torch::randn({3, 6}), tiny_head());
  auto load_error = [&](const NamedTensors& state) {
    write_torch_state_dict(path, state);
    return error_of([&] { load_backbone_weights(*model, path); });
  };
  auto full = clip_checkpoint_state(*source);

  auto without = full;
  without.erase(std::find_if(without.begin(), without.end(),
                             [](const auto& entry) { return entry.first == "visual.layer2.1.bn2.running_var"; }));
  auto message = load_error(without);
  EXPECT_NE(message.find(path + ": missing key visual.layer2.1.bn2.running_var"), std::string::npos) << message;

  auto extra = full;
  extra.emplace_back("visual.layer5.0.conv1.weight", torch::zeros({1}));
  message = load_error(extra);
  EXPECT_NE(message.find("unexpected key visual.layer5.0.conv1.weight"), std::string::npos) << message;

  auto misshaped = full;
  for (auto& [name, tensor] : misshaped)
    if (name == "visual.attnpool.positional_embedding") tensor = torch::zeros({10, 256});
  message = load_error(misshaped);
  EXPECT_NE(message.find("shape mismatch for visual.attnpool.positional_embedding: the checkpoint has [10, 256], "
                         "the backbone expects [5, 256]"),
            std::string::npos)
      << message;

  message = load_error({{"token_embedding.weight", torch::zeros({4, 8})}});
  EXPECT_NE(message.find("holds no visual.* tensors"), std::string::npos) << message;

  message = load_error(clip_checkpoint_state(*ClipVisionTransformer(tiny_vit_options())));
  EXPECT_NE(message.find("holds a CLIP ViT image tower"), std::string::npos) << message;

  // Nothing was copied by the failed loads: the backbone still has its fresh zero bn3 scales.
  auto state = named_state(*model->backbone());
  for (const auto& [name, tensor] : state)
    if (name == "layer1.0.bn3.weight") EXPECT_TRUE(torch::all(tensor == 0).item<bool>());

  // A CLIP file for a non-CLIP trunk.
  auto small = make_backbone("small").module;
  message = error_of([&] { load_clip_visual_weights(*small, full, "RN50.pt"); });
  EXPECT_NE(message.find("RN50.pt: CLIP image-tower weights need a CLIP backbone"), std::string::npos) << message;
}

TEST(ClipVisual, ConfigSelectsClipBackbonesAndNormalisation) {
  Config config;
  config.set("model.backbone", "clip_vit_b32", "test");
  config.set("data.normalize", "clip", "test");
  EXPECT_NE(error_of([&] { config.set("model.backbone", "clip_vit_h14", "test"); }).find("clip_vit_l14"),
            std::string::npos);
  config.set("model.backbone", "clip_rn50", "test");
  config.set("model.d", "8", "test");
  config.set("model.heads", "2", "test");
  config.set("model.head_dim", "4", "test");
  config.set("model.ffn", "8", "test");
  auto model = build_model(config, 3, torch::randn({3, 6}));
  auto* tower = dynamic_cast<ClipModifiedResNetImpl*>(model->backbone().get());
  ASSERT_NE(tower, nullptr);
  EXPECT_EQ(tower->out_channels(), 2048);
  EXPECT_EQ(tower->input_resolution(), 224);

  // A checkpoint of another CLIP model: the first differing tensor is named.
  TempDir dir;
  const std::string path = dir.file("tiny.pt");
  write_torch_state_dict(path, clip_checkpoint_state(*ClipModifiedResNet(tiny_resnet_options())));
  auto message = error_of([&] { load_backbone_weights(*model, path); });
  EXPECT_NE(message.find("shape mismatch for visual.conv1.weight: the checkpoint has [4, 3, 3, 3], the backbone "
                         "expects [32, 3, 3, 3]"),
            std::string::npos)
      << message;

  // CLIP's pixel statistics: (v / 255 - mean) / std.
  auto n = normalization_named("clip");
  EXPECT_NEAR(n.value(0, 255), (1.0 - 0.48145466) / 0.26862954, 1e-5);
  EXPECT_NEAR(n.value(2, 0), -0.40821073 / 0.27577711, 1e-6);
}
