// The .pth reader (src/io/torch_file.cpp) against files written by the real torch.save
// (torch 2.15.0, numpy 2.4.6 and 1.26.4): tests/fixtures/torch_files/make_fixtures.py.
// Tensors must come back bit for bit: same dtype, same shape, same bytes as numpy.save wrote
// them from the tensors before saving.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "cprfl/common/error.h"
#include "cprfl/io/npy.h"
#include "cprfl/io/torch_file.h"
#include "test_support.h"

using namespace cprfl;
using cprfl::testing::error_of;

namespace {

std::string fixture(const std::string& name) {
  return cprfl::testing::source_dir() + "/tests/fixtures/torch_files/" + name;
}

torch::Tensor expected(const std::string& stem, const std::string& key) {
  return read_npy(fixture("expected/" + stem + "/" + key + ".npy"));
}

// Same dtype, same shape, same bytes (NaN payloads and -0.0 included).
::testing::AssertionResult same_bits(const torch::Tensor& actual, const torch::Tensor& reference) {
  if (!actual.defined()) return ::testing::AssertionFailure() << "no tensor";
  if (actual.scalar_type() != reference.scalar_type())
    return ::testing::AssertionFailure() << "dtype " << actual.scalar_type() << ", expected " << reference.scalar_type();
  if (actual.sizes() != reference.sizes())
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << ", expected " << reference.sizes();
  auto a = actual.contiguous(), b = reference.contiguous();
  const auto bytes = static_cast<std::size_t>(a.numel()) * a.element_size();
  if (bytes && std::memcmp(a.data_ptr(), b.data_ptr(), bytes) != 0)
    return ::testing::AssertionFailure() << "values differ:\n" << actual << "\nexpected\n" << reference;
  return ::testing::AssertionSuccess();
}

const TorchFileValue& entry(const TorchFileValue& dict, const std::string& key) {
  const TorchFileValue* value = dict.find(key);
  if (!value) throw std::runtime_error("no entry '" + key + "'");
  return *value;
}

std::vector<std::string> keys_of(const TorchFileValue& dict) {
  std::vector<std::string> keys;
  for (const auto& key : dict.keys) keys.push_back(key.text);
  return keys;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

}  // namespace

TEST(ReferenceTorchFiles, DictOfTensorsOfEveryDtypeIsBitExact) {
  auto root = read_torch_file(fixture("tensors.pth"));
  ASSERT_TRUE(root.is_dict());
  const std::vector<std::string> keys = {"f32", "f16", "i64", "bf16", "f64", "u8", "flags", "scalar", "empty"};
  EXPECT_EQ(keys_of(root), keys);
  for (const auto& key : keys) {
    SCOPED_TRACE(key);
    const auto& value = entry(root, key);
    ASSERT_EQ(value.kind, TorchFileValue::Kind::Tensor);
    if (key == "bf16") {  // numpy has no bfloat16: the reference is its exact float32 value
      EXPECT_EQ(value.tensor.scalar_type(), torch::kBFloat16);
      EXPECT_TRUE(same_bits(value.tensor.to(torch::kFloat), expected("tensors", key)));
    } else {
      EXPECT_TRUE(same_bits(value.tensor, expected("tensors", key)));
    }
  }
  EXPECT_EQ(entry(root, "f16").tensor.scalar_type(), torch::kHalf);  // half stays half
  EXPECT_EQ(entry(root, "scalar").tensor.dim(), 0);
}

TEST(ReferenceTorchFiles, ParametersComeThroughRebuildParameter) {
  auto root = read_torch_file(fixture("parameter.pth"));
  ASSERT_EQ(root.kind, TorchFileValue::Kind::Tensor);
  EXPECT_TRUE(same_bits(root.tensor, expected("parameter", "value")));

  auto dict = read_torch_file(fixture("parameter_dict.pth"));
  ASSERT_TRUE(dict.is_dict());
  EXPECT_EQ(keys_of(dict), (std::vector<std::string>{"weight", "frozen"}));
  EXPECT_TRUE(same_bits(entry(dict, "weight").tensor, expected("parameter_dict", "weight")));
  EXPECT_TRUE(same_bits(entry(dict, "frozen").tensor, expected("parameter_dict", "frozen")));
  // The state dict reader takes parameters as tensors.
  auto state = read_torch_state_dict(fixture("parameter_dict.pth"));
  ASSERT_EQ(state.size(), 2u);
  EXPECT_TRUE(same_bits(state[0].second, expected("parameter_dict", "weight")));
}

// numpy 2 pickles a scalar through numpy._core.multiarray.scalar, numpy 1 through
// numpy.core.multiarray.scalar: both are numbers here.
TEST(ReferenceTorchFiles, NumpyScalarsOfNumpy1AndNumpy2) {
  for (const std::string name : {"numpy_scalar_np2.pth", "numpy_scalar_np1.pth"}) {
    SCOPED_TRACE(name);
    auto root = read_torch_file(fixture(name));
    ASSERT_TRUE(root.is_dict());
    const auto& best = entry(root, "best_score");
    ASSERT_EQ(best.kind, TorchFileValue::Kind::Float);
    EXPECT_EQ(best.number, 71.25);
    const auto& count = entry(root, "count");
    ASSERT_EQ(count.kind, TorchFileValue::Kind::Int);
    EXPECT_EQ(count.integer, -7);
    const auto& ratio = entry(root, "ratio");
    ASSERT_EQ(ratio.kind, TorchFileValue::Kind::Float);
    EXPECT_EQ(ratio.number, 0.5);
  }
  auto root = read_torch_file(fixture("numpy_scalar_np2.pth"));
  ASSERT_EQ(entry(root, "plain").kind, TorchFileValue::Kind::Float);
  EXPECT_EQ(entry(root, "plain").number, 0.125);
}

// Views saved as they are: one storage, each tensor with its own offset and strides.
TEST(ReferenceTorchFiles, ViewsKeepStorageOffsetsAndStrides) {
  auto root = read_torch_file(fixture("views.pth"));
  ASSERT_TRUE(root.is_dict());
  const std::vector<std::string> keys = {"base", "transposed", "sliced", "row", "column", "expanded"};
  EXPECT_EQ(keys_of(root), keys);
  for (const auto& key : keys) {
    SCOPED_TRACE(key);
    ASSERT_EQ(entry(root, key).kind, TorchFileValue::Kind::Tensor);
    EXPECT_TRUE(same_bits(entry(root, key).tensor, expected("views", key)));
  }
}

TEST(ReferenceTorchFiles, ModuleStateDictInOrder) {
  auto state = read_torch_state_dict(fixture("module_state.pth"));
  const auto keys = lines_of(fixture("expected/module_state/keys.txt"));
  ASSERT_EQ(keys.size(), 8u);
  ASSERT_EQ(state.size(), keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    SCOPED_TRACE(keys[i]);
    EXPECT_EQ(state[i].first, keys[i]);
    EXPECT_TRUE(same_bits(state[i].second, expected("module_state", keys[i])));
  }
  // BatchNorm's counter: an int64 0-dim tensor.
  EXPECT_EQ(state[5].first, "1.num_batches_tracked");
  EXPECT_EQ(state[5].second.scalar_type(), torch::kLong);
  EXPECT_EQ(state[5].second.dim(), 0);
  EXPECT_EQ(state[5].second.item<int64_t>(), 12);
}

TEST(ReferenceTorchFiles, CheckpointWithNestedStateDictAndPlainValues) {
  auto root = read_torch_file(fixture("checkpoint.pth"));
  ASSERT_TRUE(root.is_dict());
  EXPECT_EQ(keys_of(root), (std::vector<std::string>{"state_dict", "epoch", "best_score", "lr", "arch", "milestones",
                                                     "size", "ema", "finished"}));
  EXPECT_EQ(entry(root, "epoch").kind, TorchFileValue::Kind::Int);
  EXPECT_EQ(entry(root, "epoch").integer, 3);
  EXPECT_EQ(entry(root, "best_score").kind, TorchFileValue::Kind::Float);
  EXPECT_EQ(entry(root, "best_score").number, 71.25);
  EXPECT_EQ(entry(root, "lr").number, 0.01);
  EXPECT_EQ(entry(root, "arch").kind, TorchFileValue::Kind::String);
  EXPECT_EQ(entry(root, "arch").text, "tiny");
  const auto& milestones = entry(root, "milestones");
  ASSERT_EQ(milestones.kind, TorchFileValue::Kind::List);
  ASSERT_EQ(milestones.items.size(), 2u);
  EXPECT_EQ(milestones.items[1].integer, 2);
  const auto& size = entry(root, "size");
  ASSERT_EQ(size.kind, TorchFileValue::Kind::Tuple);
  ASSERT_EQ(size.items.size(), 2u);
  EXPECT_EQ(size.items[0].integer, 224);
  EXPECT_EQ(entry(root, "ema").kind, TorchFileValue::Kind::None);
  EXPECT_EQ(entry(root, "finished").kind, TorchFileValue::Kind::Bool);
  EXPECT_FALSE(entry(root, "finished").boolean);

  // The state dict is found under 'state_dict' and equals the one saved on its own.
  auto nested = read_torch_state_dict(fixture("checkpoint.pth"));
  auto alone = read_torch_state_dict(fixture("module_state.pth"));
  ASSERT_EQ(nested.size(), alone.size());
  for (std::size_t i = 0; i < nested.size(); ++i) {
    EXPECT_EQ(nested[i].first, alone[i].first);
    EXPECT_TRUE(same_bits(nested[i].second, alone[i].second)) << nested[i].first;
  }
}

TEST(ReferenceTorchFiles, LegacyFormatIsRefusedWithAdvice) {
  const std::string path = fixture("legacy.pth");
  EXPECT_FALSE(looks_like_zip_file(path));
  auto message = error_of([&] { read_torch_file(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("legacy (pre-1.6, non-zip) format"), std::string::npos) << message;
}
