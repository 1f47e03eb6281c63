// JPEG and PNG decoding through the project's wrapper (data/image.h).
#include "cprfl/data/image.h"
#include "fuzz_support.h"

namespace cprfl::fuzz {

void fuzz_one(std::string_view bytes) {
  const auto* data = reinterpret_cast<const std::uint8_t*>(bytes.data());
  DecodeOptions options;
  options.max_pixels = std::int64_t{1} << 22;  // 4 Mpx keeps each run fast; the limit itself is unit-tested
  ImageHeader header = read_image_header(data, bytes.size(), "fuzz.img");
  cv::Mat image = decode_image(data, bytes.size(), "fuzz.img", options);
  if (image.type() != CV_8UC3 || image.cols != header.width || image.rows != header.height)
    invariant_failed("decode_image returned an image other than its header's size in RGB");
}

}  // namespace cprfl::fuzz
