// Regression tests for what the fuzz targets (tests/fuzz/) found; each case is the smallest
// form of a crashing input, and must now be a cprfl::Error naming the file or key.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>

#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/common/error.h"
#include "cprfl/data/list_file.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/npy.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/model/build.h"
#include "cprfl/config/config.h"
#include "test_support.h"

using namespace cprfl;
using cprfl::testing::error_of;
using cprfl::testing::TempDir;
using cprfl::testing::write_text;

namespace {

// A .cprfl container with the given header JSON and data bytes (layout: io/tensor_file.h).
std::string craft_tensor_file(const std::string& header, const std::string& data) {
  std::string out("CPRFLTF\0", 8);
  std::uint32_t version = 1;
  std::uint64_t length = header.size();
  out.append(reinterpret_cast<const char*>(&version), 4);
  out.append(reinterpret_cast<const char*>(&length), 8);
  out += header;
  out.resize((out.size() + 63) / 64 * 64, '\0');
  out += data;
  auto crc = static_cast<std::uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size())));
  out.append(reinterpret_cast<const char*>(&crc), 4);
  return out;
}

std::string npy_file(const std::string& header) {
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xFF);
  out += static_cast<char>(header.size() >> 8);
  return out + header;
}

}  // namespace

// fuzz_config: a raw non-UTF-8 byte in a string setting made Config::to_yaml (and the JSON
// config stored in model files) throw nlohmann's type_error when the run was saved.
TEST(FuzzFindings, NonUtf8ConfigStringIsRefusedWhenRead) {
  Config config;
  std::string message = error_of([&] { config.merge_yaml_text("data:\n  root: runs/fas\xff\x11on\n", "c.yaml"); });
  EXPECT_NE(message.find("c.yaml:2: data.root = "), std::string::npos) << message;
  EXPECT_NE(message.find("not valid UTF-8 text"), std::string::npos) << message;
  EXPECT_NE(error_of([&] { config.set("data.root", "\xc0\xaf", "--set"); }).find("not valid UTF-8"), std::string::npos);
  EXPECT_NO_THROW(config.set("data.root", "données/été", "--set"));
}

// Same root cause for class names (stored as JSON in every model file).
TEST(FuzzFindings, NonUtf8ClassNameIsRefusedWhenRead) {
  TempDir dir;
  write_text(dir.file("labels.txt"), "cat\ncaf\xe9\n");  // Latin-1 é
  std::string message = error_of([&] { read_labels(dir.file("labels.txt")); });
  EXPECT_NE(message.find("labels.txt:2: class name is not valid UTF-8 text"), std::string::npos) << message;
}

// fuzz_config: a list or map used as a key ("? [a, b]") escaped as YAML::TypedBadConversion.
TEST(FuzzFindings, YamlNonScalarKeyIsAnError) {
  Config config;
  std::string message = error_of([&] { config.merge_yaml_text("optim:\n  ? {x: 1}\n  : 2\n", "c.yaml"); });
  EXPECT_NE(message.find("c.yaml:2: a key must be a plain name"), std::string::npos) << message;
}

// fuzz_model_file: an offset written as a huge float (1.9e19) was converted to size_t
// (undefined behaviour, reported by UBSan); negative and fractional sizes likewise.
TEST(FuzzFindings, TensorFileSizesMustBeIntegers) {
  for (const std::string& offset : {"1.88889e+19", "-64", "0.5"}) {
    std::string bytes = craft_tensor_file(
        R"({"meta":{},"tensors":[{"name":"w","dtype":"float32","shape":[2],"offset":)" + offset + R"(,"nbytes":8}]})",
        std::string(8, '\0'));
    std::string message = error_of([&] { parse_tensor_file(bytes, "m.cprfl"); });
    EXPECT_NE(message.find("m.cprfl: tensor 'w': offset is not a non-negative integer"), std::string::npos) << message;
  }
}

// fuzz_npy and the same check in .cprfl: an empty array whose other dimensions overflow made
// LibTorch throw c10::Error ("Storage size calculation overflowed") from torch::empty.
TEST(FuzzFindings, EmptyArrayWithOverflowingDimensionsIsAnError) {
  std::string message = error_of([&] {
    parse_npy(npy_file("{'descr': '<u1', 'fortran_order': False, 'shape': (1111, 111111121112, 2, 1111, 11111, 0), }\n"),
              "e.npy");
  });
  EXPECT_NE(message.find("e.npy: shape (1111, 111111121112, 2, 1111, 11111, 0) is too large"), std::string::npos) << message;
  std::string bytes = craft_tensor_file(
      R"({"meta":{},"tensors":[{"name":"w","dtype":"float32","shape":[0,4611686018427387904,4],"offset":0,"nbytes":0}]})", "");
  message = error_of([&] { parse_tensor_file(bytes, "e.cprfl"); });
  EXPECT_NE(message.find("e.cprfl: tensor 'w' has an impossible shape"), std::string::npos) << message;
  // A plain empty array still reads.
  EXPECT_EQ(parse_npy(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }\n"), "ok.npy").size(1), 3);
}

// Model metadata of the wrong JSON type escaped as nlohmann::json::type_error, or was an
// out-of-range float converted to int.
TEST(FuzzFindings, ModelMetadataOfTheWrongTypeIsAnError) {
  TensorFile file;
  file.meta = {{"kind", 5}};
  EXPECT_NE(error_of([&] { model_from_tensor_file(file, "m.cprfl", true); }).find("m.cprfl: not a cprfl model file"),
            std::string::npos);
  file.meta = {{"kind", "model"}, {"model_format", 1e300}};
  EXPECT_NE(error_of([&] { model_from_tensor_file(file, "m.cprfl", true); }).find("model format 1e+300 is not supported"),
            std::string::npos);
  file.meta = {{"kind", "model"}, {"model_format", 1}, {"config", nlohmann::json::object()}, {"class_names", {"a"}},
               {"class_counts", {1e300}}, {"num_train_images", 1}};
  EXPECT_NE(error_of([&] { model_from_tensor_file(file, "m.cprfl", true); }).find("class_counts holds a non-integer"),
            std::string::npos);
}

// A model file's config is outside input: sizes that would allocate without bound (or are
// not positive) are refused before anything is built.
TEST(FuzzFindings, ModelConfigWithAbsurdSizesIsRefusedBeforeBuilding) {
  Config config;
  config.set("model.d", "1000000", "test");
  std::string message = error_of([&] { build_model(config, 3, torch::zeros({3, 8})); });
  EXPECT_NE(message.find("model: the config describes about"), std::string::npos) << message;
  EXPECT_NE(message.find("more than the limit of 250 M"), std::string::npos) << message;
  config = Config();
  config.set("model.small_widths", "100000,100000", "test");
  config.set("model.small_blocks", "1,1", "test");
  EXPECT_NE(error_of([&] { build_model(config, 3, torch::zeros({3, 8})); }).find("more than the limit"), std::string::npos);
  config = Config();
  config.set("model.heads", "-2", "test");
  EXPECT_NE(error_of([&] { build_model(config, 3, torch::zeros({3, 8})); }).find("model.heads must be at least 1, got -2"),
            std::string::npos);
  config = Config();
  config.set("model.dropout", "1.5", "test");
  EXPECT_NE(error_of([&] { build_model(config, 3, torch::zeros({3, 8})); }).find("model.dropout must be in [0, 1)"),
            std::string::npos);
}
