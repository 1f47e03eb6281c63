#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "cprfl/clip/checkpoint.h"
#include "cprfl/common/error.h"
#include "cprfl/io/torch_file.h"
#include "test_support.h"
#include "tiny_clip.h"
#include "torch_file_writer.h"

using namespace cprfl;
using cprfl::testing::error_of;
using cprfl::testing::PickleBuilder;
using cprfl::testing::TempDir;

namespace {

std::map<std::string, torch::Tensor> by_name(const NamedTensors& tensors) {
  return std::map<std::string, torch::Tensor>(tensors.begin(), tensors.end());
}

NamedTensors without(const NamedTensors& tensors, const std::string& prefix) {
  NamedTensors kept;
  for (const auto& entry : tensors)
    if (entry.first.rfind(prefix, 0) != 0) kept.push_back(entry);
  return kept;
}

NamedTensors replaced(NamedTensors tensors, const std::string& name, const torch::Tensor& value) {
  for (auto& entry : tensors)
    if (entry.first == name) entry.second = value;
  return tensors;
}

std::string crafted_archive(const TempDir& dir, const PickleBuilder& pickle) {
  std::string path = dir.file("crafted.pt");
  cprfl::testing::write_torch_zip(path, pickle.bytes(), {{"0", std::string(16, '\0')}});
  return path;
}

}  // namespace

TEST(ClipCheckpoint, ReadsAStateDictWithItsNamesOrderAndValues) {
  TempDir dir;
  auto tensors = cprfl::testing::tiny_clip_tensors();
  cprfl::testing::save_clip_state_dict(dir.file("clip.pth"), tensors);
  auto read = clip::read_clip_checkpoint(dir.file("clip.pth"));
  ASSERT_EQ(read.size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(read[i].first, tensors[i].first);
    EXPECT_TRUE(torch::equal(read[i].second, tensors[i].second)) << tensors[i].first;
  }
}

TEST(ClipCheckpoint, ReadsATorchScriptArchiveAsDottedNamesInFloat32) {
  TempDir dir;
  auto tensors = cprfl::testing::tiny_clip_tensors();
  cprfl::testing::save_clip_torchscript(dir.file("RN-tiny.pt"), tensors, /*half_weights=*/true);
  auto read = by_name(clip::read_clip_checkpoint(dir.file("RN-tiny.pt")));
  // Every weight with OpenAI's dotted name; the float16 ones come back as float32.
  for (const auto& [name, original] : tensors) {
    ASSERT_TRUE(read.count(name)) << name;
    const auto& got = read.at(name);
    if (original.is_floating_point()) {
      EXPECT_EQ(got.scalar_type(), torch::kFloat) << name;
      auto expected = original.dim() > 1 ? original.to(torch::kHalf).to(torch::kFloat) : original;
      EXPECT_TRUE(torch::equal(got, expected)) << name;
    } else {
      EXPECT_TRUE(torch::equal(got, original)) << name;
    }
  }
  EXPECT_TRUE(read.count("transformer.resblocks.1.attn.in_proj_weight"));
  EXPECT_TRUE(read.count("visual.layer1.1.bn1.num_batches_tracked"));
  EXPECT_TRUE(read.count("visual.attnpool.positional_embedding"));
  // The archive's int64 scalars are kept as they are; `training` and strings are not tensors.
  ASSERT_TRUE(read.count("input_resolution"));
  EXPECT_EQ(read.at("input_resolution").scalar_type(), torch::kLong);
  EXPECT_EQ(read.at("input_resolution").item<int64_t>(), 224);
  EXPECT_EQ(read.size(), tensors.size() + 3);
  EXPECT_FALSE(read.count("note"));
  EXPECT_FALSE(read.count("training"));

  // The same archive without the opt-in is refused by the plain reader: it is not a state dict.
  std::string message = error_of([&] { read_torch_file(dir.file("RN-tiny.pt")); });
  EXPECT_NE(message.find("refuses to load global '__torch__.model.CLIP'"), std::string::npos) << message;
}

TEST(ClipCheckpoint, ViTArchiveInFloat32Too) {
  TempDir dir;
  cprfl::testing::TinyClipShape shape;
  shape.visual = clip::ClipVisualKind::VisionTransformer;
  auto tensors = cprfl::testing::tiny_clip_tensors(shape, 3);
  cprfl::testing::save_clip_torchscript(dir.file("ViT-tiny.pt"), tensors, /*half_weights=*/false);
  auto read = by_name(clip::read_clip_checkpoint(dir.file("ViT-tiny.pt")));
  for (const auto& [name, original] : tensors) {
    ASSERT_TRUE(read.count(name)) << name;
    EXPECT_TRUE(torch::equal(read.at(name), original)) << name;
  }
  EXPECT_TRUE(read.count("visual.transformer.resblocks.0.ln_1.weight"));
}

TEST(ClipCheckpoint, InfersResNetViTAndTextOnlyArchitectures) {
  TempDir dir;
  auto rn = cprfl::testing::tiny_clip_tensors();
  cprfl::testing::save_clip_torchscript(dir.file("rn.pt"), rn);
  auto a = clip::infer_clip_architecture(clip::read_clip_checkpoint(dir.file("rn.pt")));
  EXPECT_EQ(a.text.context_length, 16);
  EXPECT_EQ(a.text.vocab_size, 100);
  EXPECT_EQ(a.text.width, 64);
  EXPECT_EQ(a.text.layers, 2);
  EXPECT_EQ(a.text.heads, 1);
  EXPECT_EQ(a.text.embed_dim, 32);
  EXPECT_EQ(a.visual.kind, clip::ClipVisualKind::ModifiedResNet);
  EXPECT_EQ(a.visual.stage_blocks, (std::vector<int64_t>{2, 1, 1, 1}));
  EXPECT_EQ(a.visual.width, 8);
  EXPECT_EQ(a.visual.heads, 4);
  EXPECT_EQ(a.visual.image_resolution, 64);
  EXPECT_EQ(a.visual.output_dim, 32);

  cprfl::testing::TinyClipShape vit_shape;
  vit_shape.visual = clip::ClipVisualKind::VisionTransformer;
  vit_shape.text_width = 128;
  vit_shape.text_layers = 3;
  vit_shape.embed_dim = 24;
  auto v = clip::infer_clip_architecture(cprfl::testing::tiny_clip_tensors(vit_shape));
  EXPECT_EQ(v.text.width, 128);
  EXPECT_EQ(v.text.heads, 2);
  EXPECT_EQ(v.text.layers, 3);
  EXPECT_EQ(v.text.embed_dim, 24);
  EXPECT_EQ(v.visual.kind, clip::ClipVisualKind::VisionTransformer);
  EXPECT_EQ(v.visual.width, 64);
  EXPECT_EQ(v.visual.layers, 2);
  EXPECT_EQ(v.visual.heads, 1);
  EXPECT_EQ(v.visual.patch_size, 8);
  EXPECT_EQ(v.visual.image_resolution, 32);
  EXPECT_EQ(v.visual.output_dim, 24);

  cprfl::testing::TinyClipShape text_shape;
  text_shape.visual = clip::ClipVisualKind::None;
  auto t = clip::infer_clip_architecture(cprfl::testing::tiny_clip_tensors(text_shape));
  EXPECT_EQ(t.visual.kind, clip::ClipVisualKind::None);
  EXPECT_EQ(t.text.layers, 2);
  // A text encoder nested under a prefix.
  NamedTensors nested;
  for (const auto& [name, tensor] : cprfl::testing::tiny_clip_tensors(text_shape)) nested.emplace_back("text_encoder." + name, tensor);
  EXPECT_EQ(clip::infer_clip_text_architecture(nested, "text_encoder.").embed_dim, 32);
}

TEST(ClipCheckpoint, ArchitectureErrorsNameTheTensor) {
  auto rn = cprfl::testing::tiny_clip_tensors();
  auto error_for = [](const NamedTensors& tensors) {
    return error_of([&] { clip::infer_clip_architecture(tensors, "RN50.pt"); });
  };
  std::string message = error_for(without(rn, "text_projection"));
  EXPECT_NE(message.find("RN50.pt: missing tensor 'text_projection'"), std::string::npos) << message;
  message = error_for(without(rn, "transformer.resblocks.0."));
  EXPECT_NE(message.find("missing tensors 'transformer.resblocks.0.*'"), std::string::npos) << message;
  message = error_for(without(rn, "visual.attnpool.positional_embedding"));
  EXPECT_NE(message.find("missing tensor 'visual.attnpool.positional_embedding'"), std::string::npos) << message;
  message = error_for(without(rn, "visual.layer3."));
  EXPECT_NE(message.find("missing tensors 'visual.layer3.0.*'"), std::string::npos) << message;
  message = error_for(replaced(rn, "positional_embedding", torch::zeros({16})));
  EXPECT_NE(message.find("tensor 'positional_embedding' has shape [16], expected 2 dimensions"), std::string::npos)
      << message;
  message = error_for(replaced(rn, "token_embedding.weight", torch::zeros({100, 32})));
  EXPECT_NE(message.find("'token_embedding.weight' does not match the text width 64"), std::string::npos) << message;
  message = error_for(replaced(rn, "visual.attnpool.positional_embedding", torch::zeros({6, 256})));
  EXPECT_NE(message.find("has 6 rows, not a square grid plus one"), std::string::npos) << message;

  message = error_for(replaced(rn, "ln_final.weight", torch::ones({48})));
  EXPECT_NE(message.find("not a multiple of 64"), std::string::npos) << message;

  cprfl::testing::TinyClipShape vit_shape;
  vit_shape.visual = clip::ClipVisualKind::VisionTransformer;
  message = error_for(without(cprfl::testing::tiny_clip_tensors(vit_shape), "visual.proj"));
  EXPECT_NE(message.find("missing tensor 'visual.proj'"), std::string::npos) << message;
  message = error_for({{"visual.something", torch::zeros({1})}});
  EXPECT_NE(message.find("missing tensor 'ln_final.weight'"), std::string::npos) << message;
  auto odd_visual = rn;
  odd_visual.emplace_back("visual.class_embedding", torch::zeros({64}));
  EXPECT_NE(error_for(odd_visual).find("both a vision transformer and a ResNet"), std::string::npos);
}

// Objects are built from class names alone: no code record is needed (none is ever read).
TEST(ClipCheckpoint, ReadsAHandMadeModuleTreeWithoutAnyCode) {
  TempDir dir;
  PickleBuilder p;
  // CLIP(){'training': True, 'ln_final': LayerNorm(){'weight': tensor[2], 'eps': 1e-5}, 'scale': tensor[]}
  p.proto().global("__torch__.model", "CLIP").op(')').op('\x81').op('}').mark();
  p.str("training").boolean(true);
  p.str("ln_final").global("__torch__.torch.nn.modules.normalization", "LayerNorm").op(')').op('\x81').op('}').mark();
  p.str("weight").tensor("FloatStorage", "0", 4, 0, {2}, {1}).str("eps").real(1e-5).op('u').op('b');
  p.str("scale").tensor("FloatStorage", "0", 4, 3, {}, {});
  p.op('u').op('b').stop();
  auto read = clip::read_clip_checkpoint(crafted_archive(dir, p));
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0].first, "ln_final.weight");
  EXPECT_EQ(read[0].second.sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(read[1].first, "scale");
}

TEST(ClipCheckpoint, MalformedArchivesAreErrorsNamingTheFile) {
  TempDir dir;
  auto error_for = [&](const PickleBuilder& p) {
    std::string path = crafted_archive(dir, p);
    std::string message = error_of([&] { clip::read_clip_checkpoint(path); });
    EXPECT_NE(message.find(path), std::string::npos) << message;
    return message;
  };
  std::string message;
  // Only `__torch__.*` classes become objects; everything else stays refused.
  PickleBuilder evil;
  evil.proto().raw("cos\nsystem\n").op(')').op('\x81').stop();
  EXPECT_NE(error_for(evil).find("refuses to load global 'os.system'"), std::string::npos);
  PickleBuilder args;
  args.proto().global("__torch__.m", "A").str("x").op('\x85').op('\x81').stop();
  EXPECT_NE(error_for(args).find("with arguments"), std::string::npos);
  PickleBuilder tuple_state;  // a __getstate__ tuple instead of an attribute dict
  tuple_state.proto().global("__torch__.m", "A").op(')').op('\x81').op(')').op('b').stop();
  EXPECT_NE(error_for(tuple_state).find("only an attribute dict is read"), std::string::npos);
  PickleBuilder int_key;
  int_key.proto().global("__torch__.m", "A").op(')').op('\x81').op('}').integer(1).integer(2).op('s').op('b').stop();
  EXPECT_NE(error_for(int_key).find("attribute name that is not a string"), std::string::npos);
  PickleBuilder call_object;  // an object is not callable
  call_object.proto().global("__torch__.m", "A").op(')').op('\x81').op(')').op('R').stop();
  EXPECT_NE(error_for(call_object).find("calls a object"), std::string::npos);
  // An object that holds itself: an error, not a hang or a stack overflow.
  PickleBuilder cycle;
  cycle.proto().raw("c__torch__.m\nA\n").op(')').op('\x81').raw(std::string("q\0", 2)).op('}').mark().str("self").raw(std::string("h\0", 2));
  cycle.op('u').op('b').stop();
  message = error_for(cycle);
  EXPECT_NE(message.find("refers to more objects than its size allows"), std::string::npos) << message;
  // Two tensors that flatten to the same name.
  PickleBuilder twice;
  twice.proto().global("__torch__.m", "A").op(')').op('\x81').op('}').mark();
  twice.str("a.b").tensor("FloatStorage", "0", 4, 0, {1}, {1});
  twice.str("a").global("__torch__.m", "B").op(')').op('\x81').op('}').str("b").tensor("FloatStorage", "0", 4, 1, {1}, {1});
  twice.op('s').op('b').op('u').op('b').stop();
  EXPECT_NE(error_for(twice).find("holds the tensor 'a.b' twice"), std::string::npos);
  // A root that is neither a module nor a state dict, and a module without tensors.
  PickleBuilder list;
  list.proto().op(']').stop();
  EXPECT_NE(error_for(list).find("holds a list, neither a state dict nor a TorchScript module"), std::string::npos);
  PickleBuilder empty;
  empty.proto().global("__torch__.m", "A").op(')').op('\x81').op('}').str("training").boolean(false).op('s').op('b').stop();
  EXPECT_NE(error_for(empty).find("holds no tensors"), std::string::npos);

  // A real archive cut short, and a file that is no zip at all.
  auto tensors = cprfl::testing::tiny_clip_tensors();
  cprfl::testing::save_clip_torchscript(dir.file("full.pt"), tensors);
  std::string bytes = cprfl::testing::read_text(dir.file("full.pt"));
  cprfl::testing::write_text(dir.file("cut.pt"), bytes.substr(0, bytes.size() / 2));
  message = error_of([&] { clip::read_clip_checkpoint(dir.file("cut.pt")); });
  EXPECT_NE(message.find(dir.file("cut.pt")), std::string::npos) << message;
  cprfl::testing::write_text(dir.file("text.pt"), "hello");
  message = error_of([&] { clip::read_clip_checkpoint(dir.file("text.pt")); });
  EXPECT_NE(message.find("is not a PyTorch file"), std::string::npos) << message;
  // A flipped byte somewhere in the tensor data fails the CRC check.
  std::string flipped = bytes;
  auto at = flipped.find("data/0");
  ASSERT_NE(at, std::string::npos);
  flipped[at + 200] = static_cast<char>(flipped[at + 200] ^ 0x40);
  cprfl::testing::write_text(dir.file("flipped.pt"), flipped);
  message = error_of([&] { clip::read_clip_checkpoint(dir.file("flipped.pt")); });
  EXPECT_NE(message.find(dir.file("flipped.pt")), std::string::npos) << message;
}
