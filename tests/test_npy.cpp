#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "cprfl/common/error.h"
#include "cprfl/io/npy.h"
#include "test_support.h"

using cprfl::testing::error_of;

using namespace cprfl;
using cprfl::testing::TempDir;
using cprfl::testing::write_text;

namespace {


// A .npy file built by hand: preamble for the given version, the header text (padded with
// spaces and a newline to a multiple of 64 bytes unless `pad` is false), then the data.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1, bool pad = true) {
  std::size_t preamble = major == 1 ? 10 : 12;
  std::string header = dict;
  if (pad) {
    header += '\n';
    while ((preamble + header.size()) % 64 != 0) header.insert(header.size() - 1, " ");
  }
  std::string bytes = "\x93NUMPY";
  bytes += static_cast<char>(major);
  bytes += '\0';
  for (std::size_t i = 0; i < preamble - 8; ++i) bytes += static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return bytes + header + data;
}

template <typename T>
std::string raw(std::initializer_list<T> values) {
  std::string bytes;
  for (T v : values) bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
  return bytes;
}

void expect_round_trip(const torch::Tensor& tensor, const std::string& path) {
  write_npy(path, tensor);
  torch::Tensor back = read_npy(path);
  EXPECT_EQ(back.scalar_type(), tensor.scalar_type()) << path;
  EXPECT_EQ(back.sizes(), tensor.sizes()) << path;
  EXPECT_TRUE(back.is_contiguous());
  EXPECT_TRUE(torch::equal(back, tensor.contiguous())) << path;
}

}  // namespace

TEST(Npy, RoundTripsEverySupportedDtype) {
  TempDir dir;
  auto base = torch::tensor({{-1.5, 0.0, 2.25}, {1e-3, 65504.0, -7.0}}, torch::kDouble);
  expect_round_trip(base.to(torch::kHalf), dir.file("f2.npy"));
  expect_round_trip(base.to(torch::kFloat), dir.file("f4.npy"));
  expect_round_trip(base, dir.file("f8.npy"));
  expect_round_trip(torch::tensor({-2147483647 - 1, 0, 2147483647}, torch::kInt), dir.file("i4.npy"));
  expect_round_trip(torch::tensor({-(std::int64_t{1} << 62), std::int64_t{0}, std::int64_t{1} << 62}, torch::kLong), dir.file("i8.npy"));
  expect_round_trip(torch::arange(0, 256, torch::kInt).to(torch::kByte).reshape({16, 16}), dir.file("u1.npy"));
  expect_round_trip(torch::tensor({true, false, true, true}), dir.file("b1.npy"));
}

TEST(Npy, RoundTripsScalarsEmptyHigherRankAndNonContiguousTensors) {
  TempDir dir;
  expect_round_trip(torch::tensor(3.5f), dir.file("scalar.npy"));
  expect_round_trip(torch::zeros({0, 5}), dir.file("empty.npy"));
  expect_round_trip(torch::arange(24, torch::kFloat).reshape({2, 3, 4}), dir.file("rank3.npy"));
  // A transposed view is written in its logical (C) order.
  auto transposed = torch::arange(6, torch::kLong).reshape({2, 3}).t();
  write_npy(dir.file("t.npy"), transposed);
  EXPECT_TRUE(torch::equal(read_npy(dir.file("t.npy")), torch::tensor({{0, 3}, {1, 4}, {2, 5}}, torch::kLong)));
}

TEST(Npy, WritesNumpysVersion1HeaderPaddedTo64Bytes) {
  std::string bytes = encode_npy(torch::zeros({2, 3}));
  // 10-byte preamble + 60-character dict + newline = 71, padded to 128.
  ASSERT_EQ(bytes.size(), 128u + 6 * 4);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8), 118);
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  EXPECT_EQ(bytes.substr(10, 118), dict + std::string(118 - dict.size() - 1, ' ') + "\n");
  // One dimension is written as a Python one-tuple; zero as ().
  EXPECT_NE(encode_npy(torch::zeros({7}, torch::kByte)).find("'descr': '|u1', 'fortran_order': False, 'shape': (7,), }"),
            std::string::npos);
  EXPECT_NE(encode_npy(torch::tensor(true)).find("'shape': (), }"), std::string::npos);
}

TEST(Npy, RefusesToWriteUnsupportedDtypes) {
  TempDir dir;
  std::string message = error_of([&] { write_npy(dir.file("x.npy"), torch::zeros({2}, torch::kShort)); });
  EXPECT_NE(message.find(dir.file("x.npy")), std::string::npos) << message;
  EXPECT_NE(message.find("Short"), std::string::npos) << message;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.npy")));
}

TEST(Npy, ReadsVersion2And3HeadersUnpaddedHeadersAndOldLongLiterals) {
  auto v2 = parse_npy(npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", raw<std::int32_t>({1, -2, 3}), 2), "v2");
  EXPECT_TRUE(torch::equal(v2, torch::tensor({1, -2, 3}, torch::kInt)));
  auto v3 = parse_npy(npy_bytes("{\"shape\": (1, 2,), \"descr\": \"<f8\", \"fortran_order\": False}", raw<double>({0.5, 2}), 3), "v3");
  EXPECT_TRUE(torch::equal(v3, torch::tensor({{0.5, 2.0}}, torch::kDouble)));
  auto unpadded = parse_npy(npy_bytes("{'descr':'|b1','fortran_order':False,'shape':(2L,)}", std::string("\x01\x00", 2), 1, false), "u");
  EXPECT_TRUE(torch::equal(unpadded, torch::tensor({true, false})));
}

TEST(Npy, ByteSwapsBigEndianData) {
  std::string be_f4 = std::string("\x3f\x80\x00\x00\xc0\x00\x00\x00", 8);  // 1.0f, -2.0f big-endian
  auto f = parse_npy(npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", be_f4), "be");
  EXPECT_TRUE(torch::equal(f, torch::tensor({1.0f, -2.0f})));
  std::string be_i8 = std::string("\x00\x00\x00\x00\x00\x00\x01\x02", 8);  // 258
  auto i = parse_npy(npy_bytes("{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }", be_i8), "be");
  EXPECT_EQ(i.item<std::int64_t>(), 258);
  auto u = parse_npy(npy_bytes("{'descr': '>u1', 'fortran_order': False, 'shape': (1,), }", "\x07"), "be");
  EXPECT_EQ(u.item<std::uint8_t>(), 7);
}

TEST(Npy, ReadsTheShippedFashionPrompts) {
  std::string path = cprfl::testing::source_dir() + "/data/prompts/fashion_clip_rn50.npy";
  torch::Tensor prompts = read_npy(path);
  EXPECT_EQ(prompts.scalar_type(), torch::kHalf);
  ASSERT_EQ(prompts.sizes(), (std::vector<std::int64_t>{10, 1024}));
  torch::Tensor norms = prompts.to(torch::kFloat).norm(2, 1);
  EXPECT_GT(norms.min().item<float>(), 9.5f) << norms;
  EXPECT_LT(norms.max().item<float>(), 17.5f) << norms;
  EXPECT_TRUE(torch::isfinite(prompts).all().item<bool>());
  // Bytes written back are the bytes read, apart from header padding.
  EXPECT_TRUE(torch::equal(parse_npy(encode_npy(prompts), "again"), prompts));
}

TEST(Npy, BadFilesAreErrorsNamingTheFileAndTheProblem) {
  const std::string f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string two_floats = raw<float>({1, 2});
  struct Case {
    std::string what;
    std::string bytes;
    std::string expected;
  };
  std::string magic_only = npy_bytes(f4, two_floats).substr(0, 9);
  std::string truncated_header = npy_bytes(f4, two_floats).substr(0, 40);
  std::vector<Case> cases = {
      {"too short", magic_only, "too short to be a .npy file (9 bytes)"},
      {"bad magic", "PK\x03\x04 this is a zip file", "not a .npy file"},
      {"version", npy_bytes(f4, two_floats, 4), "unsupported .npy format version 4.0"},
      {"truncated header", truncated_header, "truncated .npy header"},
      {"not a dict", npy_bytes("['descr', '<f4']", two_floats), "bad .npy header: expected '{'"},
      {"unterminated", npy_bytes("{'descr': '<f4", two_floats), "unterminated string"},
      {"missing key", npy_bytes("{'descr': '<f4', 'shape': (2,), }", two_floats), "key 'fortran_order' is missing"},
      {"duplicate key", npy_bytes("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", two_floats),
       "key 'descr' appears twice"},
      {"unknown key", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", two_floats),
       "unexpected key 'x'"},
      {"bad bool", npy_bytes("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", two_floats), "must be True or False"},
      {"shape not tuple", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", two_floats),
       "a single dimension is written (n,)"},
      {"negative dim", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", two_floats), "negative dimension"},
      {"huge dim", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", two_floats),
       "dimension too large"},
      {"trailing text", npy_bytes(f4 + " junk", two_floats), "unexpected text after the closing '}'"},
      {"complex", npy_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", two_floats), "unsupported dtype '<c8'"},
      {"int16", npy_bytes("{'descr': '<i2', 'fortran_order': False, 'shape': (4,), }", two_floats), "unsupported dtype '<i2'"},
      {"object", npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", two_floats), "object arrays"},
      {"structured", npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", two_floats),
       "structured dtypes"},
      {"fortran", npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", two_floats), "Fortran-order"},
      {"too little data", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", two_floats),
       "shape (3,) needs more data than the file holds (8 bytes after the header)"},
      {"too much data", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", two_floats),
       "needs 4 bytes of data, but the file has 8"},
      {"absurd shape", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", two_floats),
       "shape (1000000, 1000000) needs more data than the file holds"},
      {"overflowing shape",
       npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", two_floats),
       "needs more data than the file holds"},
      {"bad bool byte", npy_bytes("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", std::string("\x01\x02", 2)),
       "bool element 1 has byte value 2"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    std::string from_bytes = error_of([&] { parse_npy(c.bytes, "mem.npy"); });
    EXPECT_EQ(from_bytes.rfind("mem.npy: ", 0), 0u) << c.what << ": " << from_bytes;
    EXPECT_NE(from_bytes.find(c.expected), std::string::npos) << c.what << ": " << from_bytes;
    // The file reader takes a different path to the same checks.
    std::string path = dir.file("bad.npy");
    write_text(path, c.bytes);
    std::string from_file = error_of([&] { read_npy(path); });
    EXPECT_EQ(from_file.rfind(path + ": ", 0), 0u) << c.what << ": " << from_file;
    EXPECT_NE(from_file.find(c.expected), std::string::npos) << c.what << ": " << from_file;
  }
  EXPECT_NE(error_of([&] { read_npy(dir.file("missing.npy")); }).find("cannot open file"), std::string::npos);
}

// Every prefix of a valid file is rejected cleanly (never a crash or garbage).
TEST(Npy, EveryTruncationIsAnError) {
  std::string bytes = encode_npy(torch::arange(6, torch::kInt).reshape({2, 3}));
  for (std::size_t size = 0; size < bytes.size(); ++size)
    EXPECT_NE(error_of([&] { parse_npy(std::string_view(bytes).substr(0, size), "cut.npy"); }), "") << size;
}

// Single-byte corruptions anywhere in a small file: each one reads or is a cprfl::Error.
TEST(Npy, CorruptedBytesReadOrFailCleanly) {
  std::string good = encode_npy(torch::arange(6, torch::kInt).reshape({2, 3}));
  const char replacements[] = {'\0', '\xff', '(', ')', ',', '\'', ' ', '9', '}', 'L', '>', '|', 'b'};
  int failures = 0;
  for (std::size_t at = 0; at < good.size(); ++at) {
    for (char replacement : replacements) {
      std::string bytes = good;
      bytes[at] = replacement;
      try {
        torch::Tensor t = parse_npy(bytes, "fuzz.npy");
        EXPECT_LE(t.numel() * t.element_size(), static_cast<std::int64_t>(bytes.size()));
      } catch (const Error& e) {
        ++failures;
        EXPECT_EQ(std::string(e.what()).rfind("fuzz.npy: ", 0), 0u) << e.what();
      }
    }
  }
  EXPECT_GT(failures, 0);
}

TEST(Npy, ReadsFromAPipeAndRejectsADirectory) {
  TempDir dir;
  EXPECT_NE(error_of([&] { read_npy(dir.path()); }).find("is a directory"), std::string::npos);
  std::string fifo = dir.file("pipe.npy");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto tensor = torch::arange(5, torch::kDouble);
  std::thread writer([&] { write_text(fifo, encode_npy(tensor)); });
  torch::Tensor back = read_npy(fifo);
  writer.join();
  EXPECT_TRUE(torch::equal(back, tensor));
}
