#include <gtest/gtest.h>

#include "cprfl/common/error.h"
#include "cprfl/io/tensor_file.h"
#include "test_support.h"

using namespace cprfl;

TEST(TensorFile, RoundTripsEveryDtypeAndMeta) {
  TensorFile file;
  file.meta = {{"classes", {"a", "b"}}, {"epoch", 3}};
  file.tensors["w"] = torch::randn({3, 5});
  file.tensors["h"] = torch::randn({7}).to(torch::kHalf);
  file.tensors["d"] = torch::randn({2, 2}, torch::kDouble);
  file.tensors["i"] = torch::arange(10, torch::kLong);
  file.tensors["b"] = torch::tensor({true, false});
  file.tensors["u"] = torch::arange(4, torch::kByte);
  file.tensors["scalar"] = torch::tensor(2.5);
  file.tensors["empty"] = torch::empty({0, 4});
  cprfl::testing::TempDir dir;
  save_tensor_file(dir.file("m.cprfl"), file);
  auto back = load_tensor_file(dir.file("m.cprfl"));
  EXPECT_EQ(back.meta, file.meta);
  ASSERT_EQ(back.tensors.size(), file.tensors.size());
  for (auto& [name, tensor] : file.tensors) {
    EXPECT_EQ(back.tensors.at(name).scalar_type(), tensor.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(back.tensors.at(name), tensor)) << name;
  }
}

TEST(TensorFile, CorruptionAndTruncationAreDetected) {
  TensorFile file;
  file.tensors["w"] = torch::randn({16, 16});
  std::string bytes = serialize_tensor_file(file);
  auto message_of = [](std::string_view data) -> std::string {
    try {
      parse_tensor_file(data, "m.cprfl");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  EXPECT_NE(message_of(flipped).find("m.cprfl: checksum mismatch"), std::string::npos);
  EXPECT_NE(message_of(bytes.substr(0, bytes.size() - 100)).find("checksum mismatch"), std::string::npos);
  EXPECT_NE(message_of("hello").find("not a cprfl model"), std::string::npos);
  std::string future = bytes;
  future[8] = 9;
  EXPECT_NE(message_of(future).find("version 9 is not supported"), std::string::npos);
}
