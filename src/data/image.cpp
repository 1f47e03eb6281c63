#include "cprfl/data/image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <sstream>

#include <jpeglib.h>
#include <jerror.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cprfl/common/error.h"

namespace cprfl {
namespace {

constexpr std::uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

std::uint32_t read_be16(const std::uint8_t* p) { return (std::uint32_t{p[0]} << 8) | p[1]; }
std::uint32_t read_be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

bool is_png(const std::uint8_t* data, std::size_t size) {
  return size >= 8 && std::memcmp(data, kPngSignature, 8) == 0;
}
bool is_jpeg(const std::uint8_t* data, std::size_t size) {
  return size >= 2 && data[0] == 0xFF && data[1] == 0xD8;
}

std::string leading_bytes(const std::uint8_t* data, std::size_t size) {
  std::ostringstream out;
  for (std::size_t i = 0; i < size && i < 8; ++i) {
    char hex[4];
    std::snprintf(hex, sizeof hex, "%02X", data[i]);
    out << (i ? " " : "") << hex;
  }
  return out.str();
}

ImageHeader read_png_header(const std::uint8_t* data, std::size_t size, const std::string& path) {
  // Signature, then the IHDR chunk: length 13, "IHDR", width, height, depth, colour type …
  if (size < 8 + 8 + 13) fail_in(path, "truncated PNG file (" + std::to_string(size) + " bytes, no complete IHDR header)");
  if (read_be32(data + 8) != 13 || std::memcmp(data + 12, "IHDR", 4) != 0)
    fail_in(path, "corrupt PNG file: the first chunk is not a valid IHDR header");
  std::uint32_t width = read_be32(data + 16);
  std::uint32_t height = read_be32(data + 20);
  if (width > 0x7FFFFFFFu || height > 0x7FFFFFFFu) fail_in(path, "corrupt PNG file: impossible image size in IHDR");
  return {ImageFormat::png, static_cast<int>(width), static_cast<int>(height)};
}

bool is_sof_marker(std::uint8_t marker) {
  // SOF0–SOF15 except DHT (C4), JPG (C8) and DAC (CC).
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

ImageHeader read_jpeg_header(const std::uint8_t* data, std::size_t size, const std::string& path) {
  auto truncated = [&] { fail_in(path, "truncated JPEG file (" + std::to_string(size) + " bytes, ends before the frame header)"); };
  std::size_t pos = 2;
  while (true) {
    while (pos < size && data[pos] != 0xFF) ++pos;  // stray bytes between segments, as libjpeg allows
    while (pos < size && data[pos] == 0xFF) ++pos;  // fill bytes
    if (pos >= size) truncated();
    std::uint8_t marker = data[pos++];
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no length field
    if (marker == 0xD9 || marker == 0xDA || marker == 0x00)
      fail_in(path, "corrupt JPEG file: no frame header (SOF) before the image data");
    if (pos + 2 > size) truncated();
    std::size_t length = read_be16(data + pos);
    if (length < 2) fail_in(path, "corrupt JPEG file: bad segment length at byte " + std::to_string(pos));
    if (is_sof_marker(marker)) {
      if (length < 8 || pos + 7 > size) truncated();
      int height = static_cast<int>(read_be16(data + pos + 3));
      int width = static_cast<int>(read_be16(data + pos + 5));
      if (height == 0) fail_in(path, "unsupported JPEG file: height given by a DNL marker");
      return {ImageFormat::jpeg, width, height};
    }
    pos += length;
  }
}

// A PNG must run chunk by chunk up to IEND; a file cut short is caught here even where
// the decoder would not notice (e.g. cut after the last IDAT).
void check_png_complete(const std::uint8_t* data, std::size_t size, const std::string& path) {
  std::size_t pos = 8;
  while (pos + 8 <= size) {
    std::size_t length = read_be32(data + pos);
    if (length > 0x7FFFFFFFu) fail_in(path, "corrupt PNG file: bad chunk length at byte " + std::to_string(pos));
    if (std::memcmp(data + pos + 4, "IEND", 4) == 0) return;
    pos += 12 + length;
  }
  fail_in(path, "truncated PNG file (" + std::to_string(size) + " bytes, the IEND chunk is missing)");
}

cv::Mat decode_png(const std::uint8_t* data, std::size_t size, const ImageHeader& header, const std::string& path) {
  check_png_complete(data, size, path);
  cv::Mat bgr;
  try {
    // IMREAD_COLOR: 8-bit, three channels (grey replicated, palette expanded, alpha and
    // the low byte of 16-bit samples dropped). EXIF orientation is not applied, as in PIL.
    bgr = cv::imdecode(cv::Mat(1, static_cast<int>(size), CV_8U, const_cast<std::uint8_t*>(data)),
                       cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  } catch (const cv::Exception& e) {
    fail_in(path, std::string("cannot decode PNG: ") + e.what());
  }
  if (bgr.empty()) fail_in(path, "corrupt PNG file (the PNG decoder failed)");
  if (bgr.cols != header.width || bgr.rows != header.height || bgr.type() != CV_8UC3)
    fail_in(path, "PNG decoder returned an unexpected image size or type");
  cv::cvtColor(bgr, bgr, cv::COLOR_BGR2RGB);
  return bgr;
}

// --- JPEG through libjpeg(-turbo) with a strict error manager ---------------------------

struct StrictJpegErrors {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<StrictJpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}

// Warnings that mean the decoder invented pixels are errors; harmless ones are ignored.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
      jpeg_fail(cinfo);
    default:
      return;
  }
}

// libjpeg reports errors by longjmp, so this frame holds only trivially destructible
// locals; the output buffers are allocated by the caller. Returns false with `message`.
bool decode_jpeg_into(const std::uint8_t* data, std::size_t size, cv::Mat* rgb, std::uint8_t* cmyk_row, char* message) {
  jpeg_decompress_struct cinfo;
  StrictJpegErrors errors;
  cinfo.err = jpeg_std_error(&errors.base);
  errors.base.error_exit = jpeg_fail;
  errors.base.emit_message = jpeg_message;
  if (setjmp(errors.jump)) {
    std::memcpy(message, errors.message, JMSG_LENGTH_MAX);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  if (static_cast<int>(cinfo.output_width) != rgb->cols || static_cast<int>(cinfo.output_height) != rgb->rows) {
    std::snprintf(message, JMSG_LENGTH_MAX, "frame size %ux%u differs from the SOF header", cinfo.output_width,
                  cinfo.output_height);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  // Adobe files store CMYK inverted (255 = no ink); others store ink amounts.
  bool inverted = cinfo.saw_Adobe_marker;
  while (cinfo.output_scanline < cinfo.output_height) {
    int y = static_cast<int>(cinfo.output_scanline);
    if (!cmyk) {
      JSAMPROW rows[16];
      int count = 0;
      for (; count < 16 && y + count < rgb->rows; ++count) rows[count] = rgb->ptr<std::uint8_t>(y + count);
      jpeg_read_scanlines(&cinfo, rows, static_cast<JDIMENSION>(count));
      continue;
    }
    JSAMPROW row = cmyk_row;
    jpeg_read_scanlines(&cinfo, &row, 1);
    std::uint8_t* out = rgb->ptr<std::uint8_t>(y);
    for (int x = 0; x < rgb->cols; ++x) {
      const std::uint8_t* ink = cmyk_row + 4 * x;
      int k = inverted ? ink[3] : 255 - ink[3];  // 255 = no black
      for (int c = 0; c < 3; ++c) {
        int paper = inverted ? ink[c] : 255 - ink[c];
        out[3 * x + c] = static_cast<std::uint8_t>((paper * k + 127) / 255);
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

cv::Mat decode_jpeg(const std::uint8_t* data, std::size_t size, const ImageHeader& header, const std::string& path) {
  cv::Mat rgb(header.height, header.width, CV_8UC3);
  std::vector<std::uint8_t> cmyk_row(static_cast<std::size_t>(header.width) * 4);
  char message[JMSG_LENGTH_MAX] = {};
  if (!decode_jpeg_into(data, size, &rgb, cmyk_row.data(), message))
    fail_in(path, std::string("corrupt or truncated JPEG file: ") + message);
  return rgb;
}

}  // namespace

ImageHeader read_image_header(const std::uint8_t* data, std::size_t size, const std::string& path) {
  if (size == 0) fail_in(path, "empty file (0 bytes), not an image");
  ImageHeader header;
  if (is_png(data, size)) {
    header = read_png_header(data, size, path);
  } else if (is_jpeg(data, size)) {
    header = read_jpeg_header(data, size, path);
  } else {
    fail_in(path, "not a JPEG or PNG image (the file starts with bytes " + leading_bytes(data, size) + ")");
  }
  if (header.width <= 0 || header.height <= 0)
    fail_in(path, "corrupt image header: size " + std::to_string(header.width) + "x" + std::to_string(header.height));
  return header;
}

cv::Mat decode_image(const std::uint8_t* data, std::size_t size, const std::string& path, const DecodeOptions& options) {
  ImageHeader header = read_image_header(data, size, path);
  std::int64_t pixels = std::int64_t{header.width} * header.height;
  if (pixels > options.max_pixels) {
    char megapixels[64];
    std::snprintf(megapixels, sizeof megapixels, "%.1f Mpx, above the limit of %.1f Mpx", pixels / 1e6,
                  options.max_pixels / 1e6);
    fail_in(path, "image is " + std::to_string(header.width) + "x" + std::to_string(header.height) + " (" + megapixels +
                      "); refused as a possible decompression bomb (raise max_pixels to allow it)");
  }
  return header.format == ImageFormat::png ? decode_png(data, size, header, path) : decode_jpeg(data, size, header, path);
}

void read_file_bytes(const std::string& path, std::vector<std::uint8_t>& bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_in(path, std::string("cannot open image: ") + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    fail_in(path, S_ISDIR(info.st_mode) ? "is a folder; an image file is expected here" : "not a regular file");
  }
  bytes.resize(static_cast<std::size_t>(info.st_size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      ::close(fd);
      fail_in(path, std::string("cannot read image: ") + std::strerror(error));
    }
    if (n == 0) break;  // file shrank while reading
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  bytes.resize(done);
}

cv::Mat read_image(const std::string& path, const DecodeOptions& options) {
  thread_local std::vector<std::uint8_t> bytes;
  read_file_bytes(path, bytes);
  return decode_image(bytes.data(), bytes.size(), path, options);
}

}  // namespace cprfl
