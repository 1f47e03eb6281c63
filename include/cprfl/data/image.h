#pragma once
// Image decoding: JPEG and PNG files of any colour type become 8-bit RGB (CV_8UC3, R first).
//
// The format is recognised by its magic bytes, never by the file's extension. Before any
// pixel memory is allocated the width and height are read from the PNG IHDR chunk or the
// JPEG SOFn segment, and images above a pixel limit are refused (decompression bombs).
//
// What counts as a bad file (cprfl::Error naming the file):
// - empty file, unreadable file, neither JPEG nor PNG magic bytes;
// - image larger than the pixel limit, a zero width or height;
// - PNG: the chunk sequence does not reach IEND (truncated), or libpng reports an error
//   (bad CRC in a critical chunk, corrupt compressed data);
// - JPEG: libjpeg reports an error, or one of the warnings that mean pixels were made up:
//   "premature end of JPEG file" (truncated: libjpeg would fill the rest with grey; this
//   includes a file that lacks only its final EOI marker — bytes after EOI are fine),
//   "premature end of data segment", "bad Huffman code", "found marker instead of RST".
//   Harmless warnings (extraneous bytes before a marker, unknown JFIF revision, unknown
//   Adobe transform, inconsistent progression) are accepted.
//
// Colour handling: grey and grey+alpha → replicated to RGB; RGBA and palette PNGs →
// RGB with the alpha dropped (no compositing); 16-bit PNG → 8 bit (high byte);
// CMYK/YCCK JPEG → RGB by R = (255-C)(255-K)/255 (Adobe-inverted files are handled).
// EXIF orientation is not applied (as PIL's Image.open, which the reference code uses).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace cprfl {

struct DecodeOptions {
  // Largest accepted width × height: 64 Mpx, i.e. up to 8192 × 8192.
  std::int64_t max_pixels = std::int64_t{8192} * 8192;
};

enum class ImageFormat { jpeg, png };

struct ImageHeader {
  ImageFormat format = ImageFormat::jpeg;
  int width = 0;
  int height = 0;
};

// Recognises the format and reads the size from the header bytes only. `path` is used
// for messages. Throws cprfl::Error for unknown, empty or malformed headers.
ImageHeader read_image_header(const std::uint8_t* data, std::size_t size, const std::string& path);

// Decodes an in-memory JPEG or PNG file to RGB. Checks the header and the pixel limit first.
cv::Mat decode_image(const std::uint8_t* data, std::size_t size, const std::string& path,
                     const DecodeOptions& options = {});

// Reads a whole file into `bytes` (reusing its capacity). Errors name the path.
void read_file_bytes(const std::string& path, std::vector<std::uint8_t>& bytes);

// Reads and decodes an image file to RGB.
cv::Mat read_image(const std::string& path, const DecodeOptions& options = {});

}  // namespace cprfl
