// Hostile and odd inputs (issue #6): each gives a clear message naming the file (and line or
// key), or is read as documented; none crashes. One test per case not covered elsewhere.
//
// Covered by existing tests, not repeated here:
//   zero-byte image ............... test_image.cpp  ImageDecode.BadFilesAreErrorsNamingTheFile
//   truncated JPEG / PNG .......... test_image.cpp  ImageDecode.TruncatedJpegIsAnErrorNotGrey, TruncatedPngIsAnError
//   wrong extensions .............. test_image.cpp  ImageDecode.FormatComesFromContentNotExtension
//   CMYK JPEG (libjpeg JCS_CMYK) .. test_image.cpp  ImageDecode.CmykJpegBecomesRgb
//   16-bit PNG, palette PNG ....... test_image.cpp  ImageDecode.SixteenBitPngBecomesEightBit, PalettePngIsExpanded
//   20,000×20,000 (header only) ... test_image.cpp  ImageDecode.PixelLimitRefusesHuge{Png,Jpeg}Header*
//   label ids negative, huge, duplicated, non-numeric
//                                   test_list_file.cpp  ListFile.BadIdsNameFileAndLine
//   list lines with only a path ... test_list_file.cpp  ListFile.ParsesIdsTrailingSpacesCrlfAndPathOnlyLines
//   unreadable image → skip ....... test_loader.cpp (BadImagePolicy::skip)
//   malformed .npy headers ........ test_npy.cpp  Npy.BadFilesAreErrorsNamingTheFileAndTheProblem
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <opencv2/imgcodecs.hpp>

#include "cprfl/common/error.h"
#include "cprfl/data/image.h"
#include "cprfl/data/list_file.h"
#include "cprfl/io/npy.h"
#include "cprfl/config/config.h"
#include "test_support.h"

using namespace cprfl;
using cprfl::testing::error_of;
using cprfl::testing::TempDir;
using cprfl::testing::write_text;

namespace {

void write_image(const std::string& path, const std::string& format, const cv::Mat& image) {
  std::vector<std::uint8_t> bytes;
  ASSERT_TRUE(cv::imencode(format, image, bytes));
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A .npy file whose header is `header` followed by `data` (version 1.0, unpadded).
std::string npy_file(const std::string& header, const std::string& data) {
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xFF);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

}  // namespace

TEST(HostileInputs, OnePixelImagesDecode) {
  TempDir dir;
  write_image(dir.file("dot.png"), ".png", cv::Mat(1, 1, CV_8UC3, cv::Scalar(10, 20, 30)));
  write_image(dir.file("dot.jpg"), ".jpg", cv::Mat(1, 1, CV_8UC1, cv::Scalar(200)));
  cv::Mat png = read_image(dir.file("dot.png"));
  ASSERT_EQ(png.size(), cv::Size(1, 1));
  EXPECT_EQ(png.at<cv::Vec3b>(0, 0), cv::Vec3b(30, 20, 10));  // RGB
  cv::Mat jpeg = read_image(dir.file("dot.jpg"));
  ASSERT_EQ(jpeg.size(), cv::Size(1, 1));
  EXPECT_NEAR(jpeg.at<cv::Vec3b>(0, 0)[0], 200, 2);
}

TEST(HostileInputs, LabelsFileWithFewerNamesThanTheListsIds) {
  TempDir dir;
  write_text(dir.file("labels.txt"), "cat\ndog\nbird\n");
  write_text(dir.file("train.txt"), "a.jpg 0 2\nb.jpg 1 5\n");
  auto names = read_labels(dir.file("labels.txt"));
  std::string message = error_of([&] { read_image_list(dir.file("train.txt"), static_cast<int>(names.size())); });
  EXPECT_NE(message.find("train.txt:2: label id 5 is out of range [0, 3) — the labels file has 3 classes"),
            std::string::npos)
      << message;
}

TEST(HostileInputs, Utf8PathsWithSpacesAreRead) {
  TempDir dir;
  const std::string folder = "photos d'été";
  std::filesystem::create_directories(dir.file(folder));
  write_image(dir.file(folder + "/café au lait.png"), ".png", cv::Mat(3, 2, CV_8UC3, cv::Scalar(1, 2, 3)));
  write_text(dir.file("list.txt"), folder + "/café au lait.png\t1\n");
  auto list = read_image_list(dir.file("list.txt"), 2);
  ASSERT_EQ(list.records.size(), 1u);
  EXPECT_EQ(list.records[0].path, folder + "/café au lait.png");
  cv::Mat image = read_image(resolve_image_path(dir.path(), list.records[0].path));
  EXPECT_EQ(image.size(), cv::Size(2, 3));
  // Without the TAB the path ends at the first space, and the rest is read as label ids.
  write_text(dir.file("spaces.txt"), folder + "/café au lait.png 1\n");
  std::string message = error_of([&] { read_image_list(dir.file("spaces.txt"), 2); });
  EXPECT_NE(message.find("spaces.txt:1: label 'd'été/café' is not an integer class id"), std::string::npos) << message;
}

TEST(HostileInputs, NpyClaimingATrillionElementsIsRefusedBeforeAllocating) {
  TempDir dir;
  const std::string path = dir.file("huge.npy");
  std::ofstream(path, std::ios::binary)
      << npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }\n", std::string(16, '\0'));
  std::string message = error_of([&] { read_npy(path); });
  EXPECT_NE(message.find("huge.npy: "), std::string::npos) << message;
  EXPECT_NE(message.find("1000000"), std::string::npos) << message;  // the claimed shape is named
}

TEST(HostileInputs, YamlConfigWithWrongTypesNamesTheKey) {
  struct Case { std::string yaml, expected; };
  for (const Case& c : {
           Case{"optim:\n  lr: fast\n", "bad.yaml:2: optim.lr = 'fast': expected a number"},
           Case{"optim:\n  epochs: 2.5\n", "bad.yaml:2: optim.epochs = '2.5': expected an integer"},
           Case{"data:\n  hflip: 3\n", "bad.yaml:2: data.hflip = '3': expected a boolean"},
           Case{"optim:\n  lr: .nan\n", "optim.lr = '.nan': expected a number"},
           Case{"data: 5\n", "unknown key 'data'"},
           Case{"data:\n  image_size: {a: 1}\n", "bad.yaml:2: data.image_size: expected a single value, got a mapping"},
           Case{"optim:\n  batch_size: [64]\n", "optim.batch_size: expected a single value, got a list"},
           Case{"? [a, b]\n: 1\n", "bad.yaml:1: a key must be a plain name"},
           Case{"- just\n- a list\n", "expected a mapping of settings at the top level"},
       }) {
    Config config;
    std::string message = error_of([&] { config.merge_yaml_text(c.yaml, "bad.yaml"); });
    EXPECT_NE(message.find(c.expected), std::string::npos) << c.yaml << " → " << message;
  }
}

TEST(HostileInputs, CrlfLineEndingsEverywhere) {
  TempDir dir;
  write_text(dir.file("labels.txt"), "cat\r\ntraffic light\r\n");
  write_text(dir.file("list.txt"), "a.jpg 0 1\r\nb.jpg\r\n\r\n");
  auto names = read_labels(dir.file("labels.txt"));
  EXPECT_EQ(names, (std::vector<std::string>{"cat", "traffic light"}));
  auto list = read_image_list(dir.file("list.txt"), 2);
  ASSERT_EQ(list.records.size(), 2u);
  EXPECT_EQ(list.records[1].path, "b.jpg");
  Config config;
  config.merge_yaml_text("optim:\r\n  lr: 0.01\r\n  epochs: 3\r\ndata:\r\n  root: \"my data\"\r\n", "crlf.yaml");
  EXPECT_EQ(config.get_float("optim.lr"), 0.01);
  EXPECT_EQ(config.get_int("optim.epochs"), 3);
  EXPECT_EQ(config.get_string("data.root"), "my data");
}

TEST(HostileInputs, BadListThroughTheCliIsAnErrorLineNotACrash) {
  TempDir dir;
  write_text(dir.file("labels.txt"), "cat\ndog\n");
  write_text(dir.file("list.txt"), "a.jpg 0\nb.jpg -3\n");
  auto result = cprfl::testing::run_cprfl("stats --list " + dir.file("list.txt") + " --labels " + dir.file("labels.txt"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("error: " + dir.file("list.txt") + ":2: label id -3 is out of range"), std::string::npos)
      << result.output;
}

TEST(HostileInputs, YamlAliasBombIsRefusedAtOnce) {
  // Each level refers to the one before twice: walked naively, 2^40 settings.
  std::string yaml = "l0: &l0 {lr: 1}\n";
  for (int level = 1; level <= 40; ++level)
    yaml += "l" + std::to_string(level) + ": &l" + std::to_string(level) + " {a: *l" + std::to_string(level - 1) +
            ", b: *l" + std::to_string(level - 1) + "}\n";
  Config config;
  std::string message = error_of([&] { config.merge_yaml_text(yaml, "bomb.yaml"); });
  EXPECT_NE(message.find("bomb.yaml:"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown key"), std::string::npos) << message;
}
