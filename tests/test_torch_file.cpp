#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "cprfl/common/error.h"
#include "cprfl/io/torch_file.h"
#include "cprfl/model/build.h"
#include "cprfl/model/classifier.h"
#include "cprfl/model/resnet.h"
#include "cprfl/io/state_dict.h"
#include "test_support.h"
#include "torch_file_writer.h"

using namespace cprfl;
using namespace std::string_literals;
using cprfl::testing::error_of;
using cprfl::testing::PickleBuilder;
using cprfl::testing::TempDir;
using cprfl::testing::write_torch_state_dict;
using cprfl::testing::write_torch_zip;

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A file whose data.pkl is `pickle` (and whose data/0 record holds `storage` bytes).
std::string file_with_pickle(const TempDir& dir, const std::string& pickle, const std::string& storage = std::string(16, '\0')) {
  std::string path = dir.file("crafted.pth");
  write_torch_zip(path, pickle, {{"0", storage}});
  return path;
}

// An OrderedDict {'w': tensor(...)} on a float storage of `numel` elements (16 bytes present).
std::string tensor_pickle(int64_t numel, int64_t offset, const std::vector<int64_t>& sizes,
                          const std::vector<int64_t>& strides) {
  PickleBuilder p;
  p.proto().global("collections", "OrderedDict").op(')').op('R').put();
  p.str("w").put().tensor("FloatStorage", "0", numel, offset, sizes, strides).op('s').stop();
  return p.bytes();
}

}  // namespace

TEST(TorchFile, StateDictRoundTripKeepsDtypesOrderAndViews) {
  TempDir dir;
  auto base = torch::arange(24, torch::kFloat);
  auto view = base.view({4, 6}).narrow(1, 1, 3).t();  // offset 1, strides [1, 6]
  ASSERT_FALSE(view.is_contiguous());
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"conv.weight", torch::randn({2, 3, 3, 3})},
      {"half.weight", torch::randn({5}).to(torch::kHalf)},
      {"bn.num_batches_tracked", torch::tensor(int64_t{12345678901})},
      {"view", view},
      {"base", base},  // shares view's storage: one record for both
      {"double", torch::randn({2, 2}, torch::kDouble)},
      {"mask", torch::tensor({true, false, true})},
      {"empty", torch::empty({0, 4})},
  };
  std::string path = dir.file("state.pth");
  write_torch_state_dict(path, tensors);

  auto state = read_torch_state_dict(path);
  ASSERT_EQ(state.size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    SCOPED_TRACE(tensors[i].first);
    EXPECT_EQ(state[i].first, tensors[i].first);
    EXPECT_EQ(state[i].second.scalar_type(), tensors[i].second.scalar_type());
    EXPECT_EQ(state[i].second.sizes(), tensors[i].second.sizes());
    EXPECT_TRUE(torch::equal(state[i].second, tensors[i].second));
  }
  EXPECT_EQ(state[2].second.item<int64_t>(), 12345678901);
  EXPECT_TRUE(state[3].second.is_contiguous());
  // The loaded tensors own their memory (the records are freed with the reader).
  EXPECT_NE(state[3].second.data_ptr(), state[4].second.data_ptr());
}

TEST(TorchFile, CheckpointWithNumpyScoreAndWrappedStateDict) {
  TempDir dir;
  std::string path = dir.file("checkpoint.pth");
  cprfl::testing::TorchSaveOptions options;
  options.wrap_key = "state_dict";
  options.numpy_scalars = {{"score", 87.25}, {"big", -1.5e300}};
  write_torch_state_dict(path, {{"fc.weight", torch::ones({2, 2})}}, options);

  TorchFileValue root = read_torch_file(path);
  ASSERT_TRUE(root.is_dict());
  ASSERT_EQ(root.keys.size(), 3u);
  const TorchFileValue* score = root.find("score");
  ASSERT_NE(score, nullptr);
  EXPECT_EQ(score->kind, TorchFileValue::Kind::Float);
  EXPECT_DOUBLE_EQ(score->number, 87.25);
  EXPECT_DOUBLE_EQ(root.find("big")->number, -1.5e300);

  auto state = read_torch_state_dict(path);  // found under 'state_dict'
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state[0].first, "fc.weight");
  EXPECT_EQ(read_torch_state_dict(path, "state_dict").size(), 1u);

  std::string message = error_of([&] { read_torch_state_dict(path, "model"); });
  EXPECT_NE(message.find("no entry 'model'"), std::string::npos) << message;
  message = error_of([&] { read_torch_state_dict(path, "score"); });
  EXPECT_NE(message.find("float under 'score'"), std::string::npos) << message;

  // A numpy scalar inside the state dict itself is not a tensor: named in the error.
  std::string flat = dir.file("flat.pth");
  cprfl::testing::TorchSaveOptions flat_options;
  flat_options.numpy_scalars = {{"score", 1.0}};
  write_torch_state_dict(flat, {{"w", torch::ones({1})}}, flat_options);
  message = error_of([&] { read_torch_state_dict(flat); });
  EXPECT_NE(message.find("holds no state dict"), std::string::npos) << message;
  message = error_of([&] { read_torch_state_dict(flat, ""); });
  EXPECT_NE(message.find(flat), std::string::npos) << message;
}

TEST(TorchFile, PlainValuesAndMemoReferences) {
  TempDir dir;
  PickleBuilder p;
  // {'a': [1, -2, 70000, 2**40, -2**40, 1.5, True, None, 'text'], 'b': <the same list via BINGET>}
  p.proto().op('}').put().mark().str("a").put().op(']').put().mark();
  p.integer(1).integer(-2).integer(70000).integer(int64_t{1} << 40).integer(-(int64_t{1} << 40));
  p.real(1.5).boolean(true).none().str("text").op('e');
  p.str("b").raw("h\x02").op('u').stop();
  auto root = read_torch_file(file_with_pickle(dir, p.bytes()));
  ASSERT_TRUE(root.is_dict());
  const TorchFileValue* a = root.find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->items.size(), 9u);
  EXPECT_EQ(a->items[0].integer, 1);
  EXPECT_EQ(a->items[1].integer, -2);
  EXPECT_EQ(a->items[2].integer, 70000);
  EXPECT_EQ(a->items[3].integer, int64_t{1} << 40);
  EXPECT_EQ(a->items[4].integer, -(int64_t{1} << 40));
  EXPECT_DOUBLE_EQ(a->items[5].number, 1.5);
  EXPECT_TRUE(a->items[6].boolean);
  EXPECT_EQ(a->items[7].kind, TorchFileValue::Kind::None);
  EXPECT_EQ(a->items[8].text, "text");
  ASSERT_NE(root.find("b"), nullptr);
  EXPECT_EQ(root.find("b")->items.size(), 9u);  // the memo refers to the filled list
}

TEST(TorchFile, RefusesGlobalsOutsideTheAllowList) {
  TempDir dir;
  std::string marker = dir.file("executed");
  PickleBuilder p;
  p.proto().raw("cos\nsystem\n").str("touch " + marker).op('\x85').op('R').stop();
  std::string message = error_of([&] { read_torch_file(file_with_pickle(dir, p.bytes())); });
  EXPECT_NE(message.find("refuses to load global 'os.system' (only tensors, dicts, lists and numbers are read)"),
            std::string::npos)
      << message;
  EXPECT_FALSE(std::ifstream(marker).good());

  // Through STACK_GLOBAL too, and builtins such as eval.
  PickleBuilder q;
  q.proto().str("builtins").str("eval").op('\x93').stop();
  message = error_of([&] { read_torch_file(file_with_pickle(dir, q.bytes())); });
  EXPECT_NE(message.find("'builtins.eval'"), std::string::npos) << message;

  // An allowed global left bare, or an opcode a weights file never needs.
  PickleBuilder r;
  r.proto().raw("ctorch\nFloatStorage\n").stop();
  EXPECT_NE(error_of([&] { read_torch_file(file_with_pickle(dir, r.bytes())); }).find("bare global"), std::string::npos);
  PickleBuilder s;
  s.proto().raw("ccollections\nOrderedDict\n").op(')').op('\x81').stop();  // NEWOBJ
  EXPECT_NE(error_of([&] { read_torch_file(file_with_pickle(dir, s.bytes())); }).find("opcode 0x81"), std::string::npos);
}

TEST(TorchFile, MalformedPicklesErrorCleanly) {
  TempDir dir;
  auto error_for = [&](const std::string& pickle) { return error_of([&] { read_torch_file(file_with_pickle(dir, pickle)); }); };
  auto expect_error = [&](const std::string& pickle, const std::string& part) {
    std::string message = error_for(pickle);
    EXPECT_NE(message.find(part), std::string::npos) << "expected '" << part << "' in: " << message;
    EXPECT_NE(message.find("crafted.pth"), std::string::npos) << message;
  };
  // The storage record holds 16 bytes = 4 floats.
  EXPECT_EQ(error_for(tensor_pickle(4, 0, {2, 2}, {2, 1})), "");
  expect_error(tensor_pickle(4, 1, {2, 2}, {2, 1}), "reads element 4 of a storage of 4");
  expect_error(tensor_pickle(8, 0, {8}, {1}), "has 16 bytes but 32 are needed");
  expect_error(tensor_pickle(int64_t{1} << 62, 0, {int64_t{1} << 40}, {1}), "absurd");
  expect_error(tensor_pickle(4, 0, {int64_t{1} << 62, int64_t{1} << 62}, {1, 1}), "absurd sizes");
  expect_error(tensor_pickle(4, 0, {2}, {-1}), "negative size or stride");
  expect_error(tensor_pickle(4, -1, {2}, {1}), "negative storage offset");
  expect_error(tensor_pickle(4, 0, {2, 2}, {1}), "2 sizes but 1 strides");

  std::string whole = tensor_pickle(4, 0, {2, 2}, {2, 1});
  for (std::size_t cut : {std::size_t{1}, whole.size() / 3, whole.size() / 2, whole.size() - 1})
    EXPECT_NE(error_for(whole.substr(0, cut)), "") << "cut at " << cut;
  expect_error("\x80\x02X\xff\xff\xff\xff" "abc.", "needs 4294967295 bytes");
  expect_error(std::string("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff.", 12), "truncated or corrupted");
  expect_error("\x80\x02\x8a\x40" + std::string(64, '\x01') + ".", "wider than 64 bits");
  expect_error("\x80\x02h\x05.", "memo entry 5");
  expect_error("\x80\x02s.", "too few values");
  expect_error("\x80\x02t.", "MARK that was never set");
  expect_error("\x80\x02" + std::string(5000, '(') + ".", "nested too deeply");
  expect_error("\x80\x02K\x01K\x02.", "STOP with 2 values");
  expect_error("\x80\x02(X\x07\x00\x00\x00storagecos\nsystem\n"s, "'os.system'");
  // Persistent ids other than storages, and missing records.
  expect_error("\x80\x02X\x03\x00\x00\x00" "abc\x85Q."s, "persistent id");
  PickleBuilder missing;
  missing.proto().tensor("FloatStorage", "7", 1, 0, {}, {}).stop();
  expect_error(missing.bytes(), "'data/7', which the file lacks");

  // A value nested 200000 deep (TUPLE1 of TUPLE1 ...): refused when converted, and freed
  // without a stack overflow.
  std::string deep = "\x80\x02]" + std::string(200000, '\x85') + ".";
  expect_error(deep, "nested too deeply");
  // Shared references doubling at every level (2^60 leaves): refused, not expanded.
  std::string doubling = "\x80\x02(]q\x00"s;
  for (int i = 0; i < 60; ++i) doubling += "h\x00h\x00\x86q\x00"s;
  expect_error(doubling + "t.", "refers to more objects");
  // A list that contains itself.
  EXPECT_NE(error_for("\x80\x02]q\x00h\x00" "a."s), "");
}

TEST(TorchFile, ContainerErrors) {
  TempDir dir;
  std::string path = dir.file("x.pth");
  EXPECT_NE(error_of([&] { read_torch_file(dir.file("missing.pth")); }).find("cannot open"), std::string::npos);

  // Legacy (pre-1.6) files start with a pickled magic number, not a zip header.
  write_bytes(path, std::string("\x80\x02\x8a\x0al\xfc\x9c\x46\xf9\x20j\xa8P\x19.\x80\x02M\xe9\x03.", 21));
  std::string message = error_of([&] { read_torch_file(path); });
  EXPECT_NE(message.find("legacy"), std::string::npos) << message;
  EXPECT_NE(message.find("_use_new_zipfile_serialization=True"), std::string::npos) << message;

  write_bytes(path, "hello");
  EXPECT_NE(error_of([&] { read_torch_file(path); }).find("is not a PyTorch file"), std::string::npos);

  // Truncated and corrupted zips.
  write_torch_state_dict(path, {{"w", torch::randn({64, 64})}});
  const std::string good = read_bytes(path);
  for (std::size_t cut : {std::size_t{4}, std::size_t{100}, good.size() / 2, good.size() - 10}) {
    write_bytes(path, good.substr(0, cut));
    message = error_of([&] { read_torch_file(path); });
    EXPECT_NE(message.find("not a readable PyTorch zip file"), std::string::npos) << "cut " << cut << ": " << message;
    EXPECT_NE(message.find(path), std::string::npos);
  }
  // Flip bytes in the middle (the tensor data): the CRC-32 of the record catches it.
  std::string corrupted = good;
  for (std::size_t i = good.size() / 3; i < good.size() / 3 + 64; ++i) corrupted[i] ^= 0x5a;
  write_bytes(path, corrupted);
  message = error_of([&] { read_torch_file(path); });
  EXPECT_NE(message.find("record 'data/0' fails its CRC-32 check"), std::string::npos) << message;

  // A zip with no data.pkl.
  write_torch_zip(path, "", {});
  EXPECT_NE(error_of([&] { read_torch_state_dict(path); }), "");
}

TEST(TorchFile, TorchvisionResNet18LoadsAsBackboneWeights) {
  TempDir dir;
  torch::manual_seed(3);
  ResNet source(18);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : named_state(*source)) {
      if (name.find("running_mean") != std::string::npos) tensor.normal_(0, 0.1);
      if (name.find("running_var") != std::string::npos) tensor.uniform_(0.5, 1.5);
      if (name.find("num_batches_tracked") != std::string::npos) tensor.fill_(100);
    }
  }
  auto state = named_state(*source);
  state.emplace_back("fc.weight", torch::randn({1000, 512}));
  state.emplace_back("fc.bias", torch::randn({1000}));
  std::string path = dir.file("resnet18-f37072fd.pth");
  write_torch_state_dict(path, state);

  auto fresh = LinearHeadModel(ResNet(18).ptr(), 3);
  load_backbone_weights(*fresh, path);
  source->eval();
  fresh->eval();
  torch::NoGradGuard no_grad;
  auto images = torch::randn({1, 3, 64, 64});
  EXPECT_TRUE(torch::equal(source->forward(images), fresh->backbone()->forward(images)));

  // A mismatching file names the key.
  state[0].second = torch::randn({64, 3, 3, 3});
  write_torch_state_dict(path, state);
  std::string message = error_of([&] { load_backbone_weights(*fresh, path); });
  EXPECT_NE(message.find("shape mismatch for conv1.weight"), std::string::npos) << message;
  write_torch_state_dict(path, {{"conv1.weight", torch::randn({64, 3, 7, 7}).to(torch::kHalf)}});
  message = error_of([&] { load_backbone_weights(*fresh, path); });
  EXPECT_NE(message.find("missing keys"), std::string::npos) << message;
}
