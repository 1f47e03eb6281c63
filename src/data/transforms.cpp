#include "cprfl/data/transforms.h"

#include <algorithm>
#include <array>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "cprfl/common/error.h"
#include "cprfl/data/asl_augment.h"
#include "cprfl/data/pil_ops.h"
#include "cprfl/data/pil_resize.h"

namespace cprfl {
namespace {

const cv::Scalar kFillGrey(128, 128, 128);

[[noreturn]] void bad_field(const std::string& field, const std::string& message) {
  throw Error("transform config: " + field + " " + message);
}

std::uint8_t clamp_u8(double v) { return cv::saturate_cast<std::uint8_t>(v); }

}  // namespace

// Applies the same 256-entry table to all three channels.
void apply_lut(cv::Mat& rgb, const std::array<std::uint8_t, 256>& table) {
  cv::Mat lut(1, 256, CV_8U, const_cast<std::uint8_t*>(table.data()));
  cv::LUT(rgb, lut, rgb);
}

// One table per channel (3-channel LUT).
static void apply_lut3(cv::Mat& rgb, const std::array<std::array<std::uint8_t, 256>, 3>& tables) {
  cv::Mat lut(1, 256, CV_8UC3);
  for (int i = 0; i < 256; ++i)
    for (int c = 0; c < 3; ++c) lut.ptr<std::uint8_t>()[3 * i + c] = tables[c][i];
  cv::LUT(rgb, lut, rgb);
}

static std::array<std::array<int, 256>, 3> channel_histograms(const cv::Mat& rgb) {
  std::array<std::array<int, 256>, 3> hist{};
  for (int y = 0; y < rgb.rows; ++y) {
    const std::uint8_t* p = rgb.ptr<std::uint8_t>(y);
    for (int x = 0; x < rgb.cols; ++x)
      for (int c = 0; c < 3; ++c) ++hist[c][p[3 * x + c]];
  }
  return hist;
}

// Stretches each channel so its darkest value becomes 0 and its brightest 255.
void auto_contrast(cv::Mat& rgb) {
  auto hist = channel_histograms(rgb);
  std::array<std::array<std::uint8_t, 256>, 3> tables{};
  for (int c = 0; c < 3; ++c) {
    int lo = 0, hi = 255;
    while (lo < 255 && hist[c][lo] == 0) ++lo;
    while (hi > 0 && hist[c][hi] == 0) --hi;
    for (int i = 0; i < 256; ++i) {
      if (hi <= lo) {
        tables[c][i] = static_cast<std::uint8_t>(i);
      } else {  // Pillow's ImageOps.autocontrast: int(i * scale + offset), clamped
        const double scale = 255.0 / (hi - lo), offset = -lo * scale;
        tables[c][i] = clamp_u8(std::trunc(i * scale + offset));
      }
    }
  }
  apply_lut3(rgb, tables);
}

// Histogram equalisation per channel, the way PIL's ImageOps.equalize does it.
void equalize(cv::Mat& rgb) {
  auto hist = channel_histograms(rgb);
  std::array<std::array<std::uint8_t, 256>, 3> tables{};
  for (int c = 0; c < 3; ++c) {
    int last = 255;
    while (last > 0 && hist[c][last] == 0) --last;
    long total = 0;
    for (int v : hist[c]) total += v;
    long step = (total - hist[c][last]) / 255;
    long n = step / 2;
    for (int i = 0; i < 256; ++i) {
      tables[c][i] = step == 0 ? static_cast<std::uint8_t>(i) : static_cast<std::uint8_t>(std::min<long>(255, n / step));
      n += hist[c][i];
    }
  }
  apply_lut3(rgb, tables);
}

// out = degenerate + factor × (image − degenerate), the blend PIL's ImageEnhance uses.
static void blend_towards(cv::Mat& rgb, const cv::Mat& degenerate, double factor) {
  cv::addWeighted(rgb, factor, degenerate, 1.0 - factor, 0.0, rgb);
}

void adjust_color(cv::Mat& rgb, double factor) {
  cv::Mat grey, grey3;
  cv::cvtColor(rgb, grey, cv::COLOR_RGB2GRAY);
  cv::cvtColor(grey, grey3, cv::COLOR_GRAY2RGB);
  blend_towards(rgb, grey3, factor);
}

void adjust_contrast(cv::Mat& rgb, double factor) {
  cv::Mat grey;
  cv::cvtColor(rgb, grey, cv::COLOR_RGB2GRAY);
  double mean = std::floor(cv::mean(grey)[0] + 0.5);
  std::array<std::uint8_t, 256> table{};
  for (int i = 0; i < 256; ++i) table[i] = clamp_u8(mean + factor * (i - mean));
  apply_lut(rgb, table);
}

void adjust_brightness(cv::Mat& rgb, double factor) {
  std::array<std::uint8_t, 256> table{};
  for (int i = 0; i < 256; ++i) table[i] = clamp_u8(factor * i);
  apply_lut(rgb, table);
}

// Blends with PIL's SMOOTH-filtered image (3×3 kernel, centre 5, rest 1, /13); the
// one-pixel border is left as it is, as in PIL.
void adjust_sharpness(cv::Mat& rgb, double factor) {
  if (rgb.rows < 3 || rgb.cols < 3) return;
  cv::Mat kernel = (cv::Mat_<float>(3, 3) << 1, 1, 1, 1, 5, 1, 1, 1, 1) / 13.0f;
  cv::Mat smooth;
  cv::filter2D(rgb, smooth, -1, kernel, cv::Point(-1, -1), 0, cv::BORDER_REPLICATE);
  rgb.row(0).copyTo(smooth.row(0));
  rgb.row(rgb.rows - 1).copyTo(smooth.row(rgb.rows - 1));
  rgb.col(0).copyTo(smooth.col(0));
  rgb.col(rgb.cols - 1).copyTo(smooth.col(rgb.cols - 1));
  blend_towards(rgb, smooth, factor);
}

namespace {

// `inverse` maps output pixel coordinates to input ones.
void warp(cv::Mat& rgb, const cv::Matx23d& inverse) {
  cv::Mat out;
  cv::warpAffine(rgb, out, cv::Mat(inverse), rgb.size(), cv::INTER_NEAREST | cv::WARP_INVERSE_MAP,
                 cv::BORDER_CONSTANT, kFillGrey);
  rgb = out;
}

}  // namespace

void validate(const TransformConfig& config) {
  if (config.image_size < 1 || config.image_size > 8192)
    bad_field("image_size", "must be in [1, 8192], got " + std::to_string(config.image_size));
  if (!(config.cutout_prob >= 0.0 && config.cutout_prob <= 1.0))
    bad_field("cutout_prob", "must be in [0, 1], got " + std::to_string(config.cutout_prob));
  if (!(config.cutout_factor > 0.0 && config.cutout_factor <= 1.0))
    bad_field("cutout_factor", "must be in (0, 1], got " + std::to_string(config.cutout_factor));
  if (config.randaugment_ops < 0 || config.randaugment_ops > 16)
    bad_field("randaugment_ops", "must be in [0, 16], got " + std::to_string(config.randaugment_ops));
  if (config.randaugment_magnitude < 0 || config.randaugment_magnitude > 10)
    bad_field("randaugment_magnitude", "must be in [0, 10], got " + std::to_string(config.randaugment_magnitude));
  if (config.resize != "pil_bilinear" && config.resize != "pil_bicubic" && config.resize != "opencv")
    bad_field("resize", "must be 'pil_bilinear', 'pil_bicubic' or 'opencv', got '" + config.resize + "'");
  if (config.randaugment_policy != "asl" && config.randaugment_policy != "fixed")
    bad_field("randaugment_policy", "must be 'asl' or 'fixed', got '" + config.randaugment_policy + "'");
  normalization_named(config.normalize);
}

std::string describe_preprocessing(const TransformConfig& config) {
  std::string resize = config.resize == "pil_bilinear"  ? "Pillow bilinear"
                       : config.resize == "pil_bicubic" ? "Pillow bicubic"
                                                        : "OpenCV area/linear";
  return std::to_string(config.image_size) + " px, " + resize + " resize, normalize " + config.normalize;
}

const char* augment_op_name(AugmentOp op) {
  static const char* const names[kAugmentOpCount] = {
      "Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize",
      "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY"};
  return names[static_cast<int>(op)];
}

cv::Mat resize_square(const cv::Mat& rgb, int size, const std::string& method) {
  if (rgb.rows == size && rgb.cols == size) return rgb;  // Pillow returns a copy: the same pixels
  if (method == "pil_bilinear") return pil_resize(rgb, size, size, PilFilter::bilinear);
  if (method == "pil_bicubic") return pil_resize(rgb, size, size, PilFilter::bicubic);
  if (method != "opencv") bad_field("resize", "must be 'pil_bilinear', 'pil_bicubic' or 'opencv', got '" + method + "'");
  int interpolation = (rgb.rows >= size && rgb.cols >= size) ? cv::INTER_AREA : cv::INTER_LINEAR;
  cv::Mat out;
  cv::resize(rgb, out, cv::Size(size, size), 0, 0, interpolation);
  return out;
}

void apply_augment_op(cv::Mat& rgb, AugmentOp op, double level, bool negative) {
  level = std::clamp(level, 0.0, 1.0);
  double sign = negative ? -1.0 : 1.0;
  double factor = 1.0 + sign * 0.9 * level;  // for the enhance ops
  double cx = (rgb.cols - 1) * 0.5, cy = (rgb.rows - 1) * 0.5;
  switch (op) {
    case AugmentOp::identity:
      return;
    case AugmentOp::auto_contrast:
      return auto_contrast(rgb);
    case AugmentOp::equalize:
      return equalize(rgb);
    case AugmentOp::rotate: {
      cv::Mat forward = cv::getRotationMatrix2D(cv::Point2f(static_cast<float>(cx), static_cast<float>(cy)),
                                                sign * 30.0 * level, 1.0);
      cv::Mat out;
      cv::warpAffine(rgb, out, forward, rgb.size(), cv::INTER_NEAREST, cv::BORDER_CONSTANT, kFillGrey);
      rgb = out;
      return;
    }
    case AugmentOp::solarize: {
      int threshold = static_cast<int>(std::lround(256.0 * (1.0 - level)));
      std::array<std::uint8_t, 256> table{};
      for (int i = 0; i < 256; ++i) table[i] = static_cast<std::uint8_t>(i >= threshold ? 255 - i : i);
      return apply_lut(rgb, table);
    }
    case AugmentOp::posterize: {
      int bits = 8 - static_cast<int>(std::lround(4.0 * level));
      auto mask = static_cast<std::uint8_t>(0xFF << (8 - bits));
      std::array<std::uint8_t, 256> table{};
      for (int i = 0; i < 256; ++i) table[i] = static_cast<std::uint8_t>(i & mask);
      return apply_lut(rgb, table);
    }
    case AugmentOp::color:
      return adjust_color(rgb, factor);
    case AugmentOp::contrast:
      return adjust_contrast(rgb, factor);
    case AugmentOp::brightness:
      return adjust_brightness(rgb, factor);
    case AugmentOp::sharpness:
      return adjust_sharpness(rgb, factor);
    case AugmentOp::shear_x: {
      double s = sign * 0.3 * level;
      return warp(rgb, cv::Matx23d(1, s, -s * cy, 0, 1, 0));
    }
    case AugmentOp::shear_y: {
      double s = sign * 0.3 * level;
      return warp(rgb, cv::Matx23d(1, 0, 0, s, 1, -s * cx));
    }
    case AugmentOp::translate_x:
      return warp(rgb, cv::Matx23d(1, 0, -sign * 0.45 * level * rgb.cols, 0, 1, 0));
    case AugmentOp::translate_y:
      return warp(rgb, cv::Matx23d(1, 0, 0, 0, 1, -sign * 0.45 * level * rgb.rows));
  }
}

void rand_augment(cv::Mat& rgb, int ops, int magnitude, std::mt19937_64& rng) {
  double level = magnitude / 10.0;
  for (int i = 0; i < ops; ++i) {
    auto op = static_cast<AugmentOp>(uniform_int(rng, kAugmentOpCount));
    bool negative = bernoulli(rng, 0.5);
    apply_augment_op(rgb, op, level, negative);
  }
}

Normalization normalization_named(const std::string& name) {
  Normalization n{};
  if (name == "imagenet") {
    const float mean[3] = {0.485f, 0.456f, 0.406f}, stdev[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; ++c) n.mean[c] = mean[c], n.std[c] = stdev[c];
  } else if (name == "clip") {
    // OpenAI CLIP's preprocessing statistics.
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, stdev[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    for (int c = 0; c < 3; ++c) n.mean[c] = mean[c], n.std[c] = stdev[c];
  } else if (name == "none") {
    for (int c = 0; c < 3; ++c) n.mean[c] = 0.0f, n.std[c] = 1.0f;
  } else {
    bad_field("normalize", "must be 'imagenet', 'clip' or 'none', got '" + name + "'");
  }
  return n;
}

void to_chw_float(const cv::Mat& rgb, const Normalization& n, float* out) {
  // A table per channel: exactly the same values as the arithmetic, and faster than the
  // stride-3 arithmetic the compiler cannot vectorise well.
  float table[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) table[c][v] = n.value(c, v);
  const std::size_t plane = static_cast<std::size_t>(rgb.rows) * rgb.cols;
  float* r = out;
  float* g = out + plane;
  float* b = out + 2 * plane;
  for (int y = 0; y < rgb.rows; ++y) {
    const std::uint8_t* p = rgb.ptr<std::uint8_t>(y);
    std::size_t row = static_cast<std::size_t>(y) * rgb.cols;
    for (int x = 0; x < rgb.cols; ++x) {
      r[row + x] = table[0][p[3 * x]];
      g[row + x] = table[1][p[3 * x + 1]];
      b[row + x] = table[2][p[3 * x + 2]];
    }
  }
}

ImageTransform::ImageTransform(TransformConfig config) : config_(std::move(config)) {
  validate(config_);
  normalization_ = normalization_named(config_.normalize);
}

void ImageTransform::apply(cv::Mat rgb, std::mt19937_64& rng, float* out) const {
  if (rgb.type() != CV_8UC3) throw Error("ImageTransform: expected an 8-bit RGB image");
  rgb = resize_square(rgb, config_.image_size, config_.resize);
  if (config_.train) {
    if (config_.hflip && bernoulli(rng, 0.5)) {
      cv::Mat flipped;
      cv::flip(rgb, flipped, 1);
      rgb = flipped;
    }
    if (config_.cutout_prob > 0.0 && bernoulli(rng, config_.cutout_prob)) asl_cutout(rgb, config_.cutout_factor, rng);
    if (config_.randaugment) {
      if (config_.randaugment_policy == "asl")
        asl_rand_augment(rgb, rng);
      else
        rand_augment(rgb, config_.randaugment_ops, config_.randaugment_magnitude, rng);
    }
  }
  to_chw_float(rgb, normalization_, out);
}

}  // namespace cprfl
