#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include <jpeglib.h>
#include <zlib.h>
#include <opencv2/imgcodecs.hpp>

#include "cprfl/common/error.h"
#include "cprfl/data/image.h"
#include "test_support.h"

using cprfl::testing::error_of;

using namespace cprfl;
using cprfl::testing::TempDir;
using cprfl::testing::write_text;

namespace {

using Bytes = std::vector<std::uint8_t>;


void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

Bytes encode(const std::string& extension, const cv::Mat& image, std::vector<int> params = {}) {
  Bytes bytes;
  EXPECT_TRUE(cv::imencode(extension, image, bytes, params));
  return bytes;
}

// A colourful pattern (BGR, as OpenCV writes it) so that JPEG files have realistic content.
cv::Mat pattern_bgr(int rows, int cols) {
  cv::Mat image(rows, cols, CV_8UC3);
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x)
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>(x * 4), static_cast<uchar>(y * 4),
                                            static_cast<uchar>((x * y) % 256));
  return image;
}

void append_be32(Bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

void append_chunk(Bytes& out, const char* type, const Bytes& data) {
  append_be32(out, static_cast<std::uint32_t>(data.size()));
  Bytes typed(type, type + 4);
  typed.insert(typed.end(), data.begin(), data.end());
  out.insert(out.end(), typed.begin(), typed.end());
  append_be32(out, static_cast<std::uint32_t>(crc32(0, typed.data(), static_cast<uInt>(typed.size()))));
}

Bytes png_ihdr(std::uint32_t width, std::uint32_t height, std::uint8_t depth, std::uint8_t colour_type) {
  Bytes ihdr;
  append_be32(ihdr, width);
  append_be32(ihdr, height);
  ihdr.insert(ihdr.end(), {depth, colour_type, 0, 0, 0});
  return ihdr;
}

const Bytes kPngSignature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

// A 2×2 palette PNG (colour type 3), built by hand: OpenCV cannot write one.
Bytes palette_png() {
  Bytes png = kPngSignature;
  append_chunk(png, "IHDR", png_ihdr(2, 2, 8, 3));
  append_chunk(png, "PLTE", {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30});
  Bytes raw = {0, 0, 1, 0, 2, 3};  // each row: filter byte 0, then palette indices
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  Bytes compressed(size);
  compress(compressed.data(), &size, raw.data(), static_cast<uLong>(raw.size()));
  compressed.resize(size);
  append_chunk(png, "IDAT", compressed);
  append_chunk(png, "IEND", {});
  return png;
}

// A flat CMYK JPEG written with libjpeg (it adds the Adobe marker, so the values are stored
// inverted as Photoshop does: 255 = no ink).
Bytes cmyk_jpeg(int width, int height, const std::uint8_t stored[4]) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr errors;
  cinfo.err = jpeg_std_error(&errors);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(width);
  cinfo.image_height = static_cast<JDIMENSION>(height);
  cinfo.input_components = 4;
  cinfo.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 100, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  Bytes row(static_cast<std::size_t>(width) * 4);
  for (int x = 0; x < width; ++x) std::copy(stored, stored + 4, row.begin() + 4 * x);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW pointer = row.data();
    jpeg_write_scanlines(&cinfo, &pointer, 1);
  }
  jpeg_finish_compress(&cinfo);
  Bytes out(buffer, buffer + size);
  jpeg_destroy_compress(&cinfo);
  std::free(buffer);
  return out;
}

cv::Vec3b pixel(const cv::Mat& rgb, int y, int x) { return rgb.at<cv::Vec3b>(y, x); }

void expect_near_pixel(const cv::Vec3b& got, int r, int g, int b, int tolerance) {
  EXPECT_NEAR(got[0], r, tolerance);
  EXPECT_NEAR(got[1], g, tolerance);
  EXPECT_NEAR(got[2], b, tolerance);
}

}  // namespace

TEST(ImageDecode, RgbPngIsRgbOrder) {
  TempDir dir;
  cv::Mat bgr(3, 5, CV_8UC3, cv::Scalar(30, 20, 10));  // B=30 G=20 R=10
  write_bytes(dir.file("a.png"), encode(".png", bgr));
  cv::Mat rgb = read_image(dir.file("a.png"));
  ASSERT_EQ(rgb.type(), CV_8UC3);
  EXPECT_EQ(rgb.rows, 3);
  EXPECT_EQ(rgb.cols, 5);
  expect_near_pixel(pixel(rgb, 2, 4), 10, 20, 30, 0);
}

TEST(ImageDecode, GreyPngIsReplicated) {
  TempDir dir;
  cv::Mat grey(4, 4, CV_8UC1, cv::Scalar(77));
  write_bytes(dir.file("g.png"), encode(".png", grey));
  cv::Mat rgb = read_image(dir.file("g.png"));
  ASSERT_EQ(rgb.type(), CV_8UC3);
  expect_near_pixel(pixel(rgb, 1, 1), 77, 77, 77, 0);
}

TEST(ImageDecode, RgbaPngDropsAlpha) {
  TempDir dir;
  cv::Mat bgra(4, 4, CV_8UC4, cv::Scalar(200, 100, 50, 0));  // fully transparent
  write_bytes(dir.file("a.png"), encode(".png", bgra));
  cv::Mat rgb = read_image(dir.file("a.png"));
  ASSERT_EQ(rgb.type(), CV_8UC3);
  expect_near_pixel(pixel(rgb, 0, 0), 50, 100, 200, 0);
}

TEST(ImageDecode, SixteenBitPngBecomesEightBit) {
  TempDir dir;
  cv::Mat deep(4, 4, CV_16UC3, cv::Scalar(0x1234, 0x8000, 0xFFFF));
  write_bytes(dir.file("d.png"), encode(".png", deep));
  cv::Mat rgb = read_image(dir.file("d.png"));
  ASSERT_EQ(rgb.type(), CV_8UC3);
  expect_near_pixel(pixel(rgb, 3, 3), 0xFF, 0x80, 0x12, 0);

  cv::Mat deep_grey(4, 4, CV_16UC1, cv::Scalar(0x4000));
  write_bytes(dir.file("dg.png"), encode(".png", deep_grey));
  expect_near_pixel(pixel(read_image(dir.file("dg.png")), 0, 0), 0x40, 0x40, 0x40, 0);
}

TEST(ImageDecode, PalettePngIsExpanded) {
  TempDir dir;
  write_bytes(dir.file("p.png"), palette_png());
  cv::Mat rgb = read_image(dir.file("p.png"));
  ASSERT_EQ(rgb.type(), CV_8UC3);
  ASSERT_EQ(rgb.size(), cv::Size(2, 2));
  expect_near_pixel(pixel(rgb, 0, 0), 255, 0, 0, 0);
  expect_near_pixel(pixel(rgb, 0, 1), 0, 255, 0, 0);
  expect_near_pixel(pixel(rgb, 1, 0), 0, 0, 255, 0);
  expect_near_pixel(pixel(rgb, 1, 1), 10, 20, 30, 0);
}

TEST(ImageDecode, JpegColourAndGrey) {
  TempDir dir;
  cv::Mat bgr(16, 16, CV_8UC3, cv::Scalar(40, 120, 220));
  write_bytes(dir.file("c.jpg"), encode(".jpg", bgr, {cv::IMWRITE_JPEG_QUALITY, 95}));
  expect_near_pixel(pixel(read_image(dir.file("c.jpg")), 8, 8), 220, 120, 40, 3);

  cv::Mat grey(16, 16, CV_8UC1, cv::Scalar(90));
  write_bytes(dir.file("g.jpg"), encode(".jpg", grey));
  cv::Mat rgb = read_image(dir.file("g.jpg"));
  ASSERT_EQ(rgb.type(), CV_8UC3);
  expect_near_pixel(pixel(rgb, 5, 5), 90, 90, 90, 1);
}

TEST(ImageDecode, CmykJpegBecomesRgb) {
  TempDir dir;
  const std::uint8_t stored[4] = {200, 100, 50, 128};  // Adobe-inverted C, M, Y, K
  write_bytes(dir.file("k.jpg"), cmyk_jpeg(16, 16, stored));
  cv::Mat rgb = read_image(dir.file("k.jpg"));
  ASSERT_EQ(rgb.type(), CV_8UC3);
  expect_near_pixel(pixel(rgb, 8, 8), 200 * 128 / 255, 100 * 128 / 255, 50 * 128 / 255, 3);
}

TEST(ImageDecode, FormatComesFromContentNotExtension) {
  TempDir dir;
  cv::Mat bgr(8, 8, CV_8UC3, cv::Scalar(0, 0, 255));
  write_bytes(dir.file("really_png.jpg"), encode(".png", bgr));
  write_bytes(dir.file("really_jpeg.png"), encode(".jpg", bgr));
  write_bytes(dir.file("no_extension"), encode(".png", bgr));
  expect_near_pixel(pixel(read_image(dir.file("really_png.jpg")), 0, 0), 255, 0, 0, 0);
  expect_near_pixel(pixel(read_image(dir.file("really_jpeg.png")), 0, 0), 255, 0, 0, 4);
  expect_near_pixel(pixel(read_image(dir.file("no_extension")), 0, 0), 255, 0, 0, 0);
}

TEST(ImageDecode, BadFilesAreErrorsNamingTheFile) {
  TempDir dir;
  write_text(dir.file("empty.jpg"), "");
  EXPECT_NE(error_of([&] { read_image(dir.file("empty.jpg")); }).find("empty.jpg: empty file (0 bytes)"),
            std::string::npos);
  write_text(dir.file("notes.png"), "hello, I am text\n");
  EXPECT_NE(error_of([&] { read_image(dir.file("notes.png")); }).find("notes.png: not a JPEG or PNG image"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_image(dir.file("missing.png")); }).find("missing.png: cannot open image"),
            std::string::npos);
  EXPECT_NE(error_of([&] { read_image(dir.path()); }).find("is a folder; an image file is expected here"), std::string::npos);
}

TEST(ImageDecode, TruncatedJpegIsAnErrorNotGrey) {
  TempDir dir;
  Bytes jpeg = encode(".jpg", pattern_bgr(64, 64), {cv::IMWRITE_JPEG_QUALITY, 90});
  for (double keep : {0.5, 0.9}) {
    Bytes cut(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() * keep));
    write_bytes(dir.file("cut.jpg"), cut);
    std::string message = error_of([&] { read_image(dir.file("cut.jpg")); });
    EXPECT_NE(message.find("cut.jpg: corrupt or truncated JPEG file"), std::string::npos) << message;
  }
  // Cut inside the headers, before the frame header.
  write_bytes(dir.file("head.jpg"), Bytes(jpeg.begin(), jpeg.begin() + 10));
  EXPECT_NE(error_of([&] { read_image(dir.file("head.jpg")); }).find("head.jpg: truncated JPEG file"), std::string::npos);
  // A marker in the middle of the compressed data: the rest of the image would be made up.
  Bytes marked = jpeg;
  marked[jpeg.size() * 6 / 10] = 0xFF;
  marked[jpeg.size() * 6 / 10 + 1] = 0xD9;
  write_bytes(dir.file("marked.jpg"), marked);
  EXPECT_NE(error_of([&] { read_image(dir.file("marked.jpg")); }).find("marked.jpg: corrupt or truncated JPEG file: Corrupt JPEG data"),
            std::string::npos);
  // Stray bytes between two header segments: libjpeg warns and carries on, and so do we.
  ASSERT_EQ(jpeg[2], 0xFF);
  ASSERT_EQ(jpeg[3], 0xE0);  // APP0 (JFIF) first
  std::size_t after_app0 = 4 + (std::size_t{jpeg[4]} << 8 | jpeg[5]);
  Bytes stray = jpeg;
  stray.insert(stray.begin() + static_cast<long>(after_app0), {0x00, 0x13});
  write_bytes(dir.file("stray.jpg"), stray);
  EXPECT_EQ(read_image(dir.file("stray.jpg")).cols, 64);
  // Even a file missing only its end marker counts as truncated …
  write_bytes(dir.file("no_eoi.jpg"), Bytes(jpeg.begin(), jpeg.end() - 2));
  EXPECT_NE(error_of([&] { read_image(dir.file("no_eoi.jpg")); }).find("Premature end of JPEG file"), std::string::npos);
  // … while bytes after the end marker are ignored.
  Bytes padded = jpeg;
  padded.insert(padded.end(), {'j', 'u', 'n', 'k'});
  write_bytes(dir.file("padded.jpg"), padded);
  EXPECT_EQ(read_image(dir.file("padded.jpg")).cols, 64);
}

TEST(ImageDecode, TruncatedPngIsAnError) {
  TempDir dir;
  Bytes png = encode(".png", pattern_bgr(32, 32));
  for (std::size_t keep : {std::size_t{20}, png.size() / 2, png.size() - 6}) {
    write_bytes(dir.file("cut.png"), Bytes(png.begin(), png.begin() + static_cast<long>(keep)));
    std::string message = error_of([&] { read_image(dir.file("cut.png")); });
    EXPECT_NE(message.find("cut.png: truncated PNG file"), std::string::npos) << message;
  }
  // Damaged compressed data (the chunk CRC catches it).
  Bytes damaged = png;
  for (std::size_t i = 60; i < 80; ++i) damaged[i] ^= 0x5A;
  write_bytes(dir.file("damaged.png"), damaged);
  EXPECT_NE(error_of([&] { read_image(dir.file("damaged.png")); }).find("damaged.png: corrupt PNG"), std::string::npos);
}

TEST(ImageDecode, PixelLimitRefusesHugePngHeaderWithoutDecoding) {
  Bytes png = kPngSignature;  // just a header claiming 20000 × 20000; no pixel data at all
  append_chunk(png, "IHDR", png_ihdr(20000, 20000, 8, 2));
  ImageHeader header = read_image_header(png.data(), png.size(), "bomb.png");
  EXPECT_EQ(header.format, ImageFormat::png);
  EXPECT_EQ(header.width, 20000);
  EXPECT_EQ(header.height, 20000);
  std::string message = error_of([&] { decode_image(png.data(), png.size(), "bomb.png"); });
  EXPECT_NE(message.find("bomb.png: image is 20000x20000 (400.0 Mpx, above the limit of 67.1 Mpx)"), std::string::npos)
      << message;
}

TEST(ImageDecode, PixelLimitRefusesHugeJpegHeader) {
  // SOI, an APP0 segment to skip, then SOF0: precision 8, height 20000, width 20000, 3 components.
  Bytes jpeg = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08,
                0x4E, 0x20, 0x4E, 0x20, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1};
  ImageHeader header = read_image_header(jpeg.data(), jpeg.size(), "bomb.jpg");
  EXPECT_EQ(header.format, ImageFormat::jpeg);
  EXPECT_EQ(header.width, 20000);
  EXPECT_EQ(header.height, 20000);
  EXPECT_NE(error_of([&] { decode_image(jpeg.data(), jpeg.size(), "bomb.jpg"); }).find("bomb.jpg: image is 20000x20000"),
            std::string::npos);
}

TEST(ImageDecode, PixelLimitIsConfigurable) {
  Bytes png = encode(".png", pattern_bgr(32, 32));
  DecodeOptions strict;
  strict.max_pixels = 1000;
  EXPECT_NE(error_of([&] { decode_image(png.data(), png.size(), "small.png", strict); }).find("32x32"),
            std::string::npos);
  strict.max_pixels = 1024;
  EXPECT_EQ(decode_image(png.data(), png.size(), "small.png", strict).cols, 32);
}
