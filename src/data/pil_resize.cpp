#include "cprfl/data/pil_resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cprfl/common/error.h"

namespace cprfl {
namespace {

// Resample.c keeps the 8-bit path in 32-bit integers: 8 bits of pixel, 2 bits of headroom (bicubic's negative lobes
// can push a sum below 0 or above 255) and the remaining 22 bits of fraction.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr std::int32_t kHalf = std::int32_t{1} << (kPrecisionBits - 1);  // added once so the final shift rounds
constexpr double kOne = static_cast<double>(std::int32_t{1} << kPrecisionBits);

// Pillow's x86-64 builds evaluate the weights without fused multiply-add. A fused a * b + c rounds once instead of
// twice and can move a weight by one ulp, enough to flip a rounded coefficient now and then, so each product that is
// followed by an addition goes through here: the volatile store makes it a plain rounded double whatever -march or
// -ffp-contract the project is built with. Only the per-call coefficient set-up pays for it.
double rounded(double v) {
  volatile double stored = v;
  return stored;
}

// Resample.c's bilinear filter: the triangle 1 - |x| on (-1, 1).
double triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Resample.c's bicubic filter: Keys' cubic convolution with a = -0.5 on (-2, 2). The polynomials keep Pillow's
// evaluation order, since a different order rounds differently.
double cubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return rounded(rounded(rounded((a + 2.0) * x) - (a + 3.0)) * x * x) + 1.0;
  if (x < 2.0) return (rounded(rounded(rounded((x - 5.0) * x) + 8.0) * x) - 4.0) * a;
  return 0.0;
}

// The taps of one axis: output i reads `count[i]` inputs from `first[i]`, with fixed-point weights
// coeffs[i * ksize ...].
struct Axis {
  int ksize = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<std::int32_t> coeffs;
};

// Resample.c's precompute_coeffs followed by normalize_coeffs_8bpc, for the whole axis (no crop box).
Axis precompute_axis(int in_size, int out_size, PilFilter filter) {
  const bool bilinear = filter == PilFilter::bilinear;
  const double filter_support = bilinear ? 1.0 : 2.0;
  // Pillow passes the source extent as a float (the crop box); for sizes above 2^24 that rounds, so do the same.
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  // When shrinking, the filter is stretched by the scale so that every input pixel contributes (area-like); when
  // enlarging it keeps its own width.
  const double filterscale = std::max(scale, 1.0);
  const double support = filter_support * filterscale;
  const double inv_filterscale = 1.0 / filterscale;

  Axis axis;
  axis.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  axis.first.resize(static_cast<std::size_t>(out_size));
  axis.count.resize(static_cast<std::size_t>(out_size));
  axis.coeffs.assign(static_cast<std::size_t>(out_size) * static_cast<std::size_t>(axis.ksize), 0);
  std::vector<double> weights(static_cast<std::size_t>(axis.ksize));

  for (int i = 0; i < out_size; ++i) {
    // Pixel centres sit at half-integers: output i covers input coordinates around (i + 0.5) * scale.
    const double center = rounded((i + 0.5) * scale);
    // The window rounds half up by truncation (as Pillow's C casts), then is clipped to the image: at the borders the
    // filter is cut off and renormalised rather than the edge pixels being repeated.
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    const int n = hi - lo;
    double sum = 0.0;
    for (int t = 0; t < n; ++t) {
      const double arg = rounded((static_cast<double>(t + lo) - center + 0.5) * inv_filterscale);
      weights[t] = bilinear ? triangle(arg) : cubic(arg);
      sum += weights[t];
    }
    std::int32_t* k = &axis.coeffs[static_cast<std::size_t>(i) * axis.ksize];
    for (int t = 0; t < n; ++t) {
      const double w = sum != 0.0 ? weights[t] / sum : weights[t];
      // Round half away from zero, truncating as C's (int) does.
      k[t] = static_cast<std::int32_t>(w < 0 ? -0.5 + w * kOne : 0.5 + w * kOne);
    }
    axis.first[i] = lo;
    axis.count[i] = n;
  }
  return axis;
}

// Resample.c's clip8: drop the fraction and clamp to 0..255 (its lookup table does the clamping).
inline std::uint8_t clip8(std::int32_t sum) {
  if (sum < 0) return 0;
  const std::int32_t v = sum >> kPrecisionBits;
  return static_cast<std::uint8_t>(v > 255 ? 255 : v);
}

// Resamples along x: out row r is made from in row `row0 + r`.
template <int CN>
void horizontal_pass(const cv::Mat& in, int row0, const Axis& axis, cv::Mat& out) {
  for (int r = 0; r < out.rows; ++r) {
    const std::uint8_t* src = in.ptr<std::uint8_t>(row0 + r);
    std::uint8_t* dst = out.ptr<std::uint8_t>(r);
    for (int x = 0; x < out.cols; ++x) {
      const std::int32_t* k = &axis.coeffs[static_cast<std::size_t>(x) * axis.ksize];
      const std::uint8_t* s = src + static_cast<std::size_t>(axis.first[x]) * CN;
      std::int32_t acc[CN];
      for (int c = 0; c < CN; ++c) acc[c] = kHalf;
      for (int t = 0; t < axis.count[x]; ++t)
        for (int c = 0; c < CN; ++c) acc[c] += s[t * CN + c] * k[t];
      for (int c = 0; c < CN; ++c) dst[x * CN + c] = clip8(acc[c]);
    }
  }
}

// Resamples along y: out row r reads in rows from `axis.first[r] - row0`. Whole rows are accumulated at once
// (integer sums, so the order does not change the result) to walk memory in order.
void vertical_pass(const cv::Mat& in, int row0, const Axis& axis, cv::Mat& out) {
  const int n = out.cols * out.channels();
  std::vector<std::int32_t> acc(static_cast<std::size_t>(n));
  for (int r = 0; r < out.rows; ++r) {
    std::fill(acc.begin(), acc.end(), kHalf);
    const std::int32_t* k = &axis.coeffs[static_cast<std::size_t>(r) * axis.ksize];
    for (int t = 0; t < axis.count[r]; ++t) {
      const std::uint8_t* src = in.ptr<std::uint8_t>(axis.first[r] - row0 + t);
      const std::int32_t w = k[t];
      for (int e = 0; e < n; ++e) acc[e] += src[e] * w;
    }
    std::uint8_t* dst = out.ptr<std::uint8_t>(r);
    for (int e = 0; e < n; ++e) dst[e] = clip8(acc[e]);
  }
}

}  // namespace

cv::Mat pil_resize(const cv::Mat& image, int width, int height, PilFilter filter) {
  if (image.type() != CV_8UC3 && image.type() != CV_8UC1)
    throw Error("pil_resize: expected an 8-bit image with 1 or 3 channels, got " + cv::typeToString(image.type()));
  if (image.empty()) throw Error("pil_resize: the input image is empty");
  if (width < 1 || height < 1)
    throw Error("pil_resize: the output size must be positive, got " + std::to_string(width) + "x" +
                std::to_string(height));

  // Resample.c skips the pass of an axis whose size is unchanged; Image.resize copies when neither changes.
  const bool need_horizontal = width != image.cols;
  const bool need_vertical = height != image.rows;
  if (!need_horizontal && !need_vertical) return image.clone();

  cv::Mat source = image;
  int row0 = 0;  // the input row that `source` row 0 stands for
  Axis vertical;
  if (need_vertical) vertical = precompute_axis(image.rows, height, filter);

  if (need_horizontal) {
    // The horizontal pass runs first and only over the rows the vertical pass will read. Its result is rounded and
    // clipped to 8 bits before the vertical pass, as in Pillow (this is what makes the pass order matter).
    int row_end = image.rows;
    if (need_vertical) {
      row0 = vertical.first.front();
      row_end = vertical.first.back() + vertical.count.back();
    }
    const Axis horizontal = precompute_axis(image.cols, width, filter);
    cv::Mat temp(row_end - row0, width, image.type());
    if (image.channels() == 3)
      horizontal_pass<3>(image, row0, horizontal, temp);
    else
      horizontal_pass<1>(image, row0, horizontal, temp);
    if (!need_vertical) return temp;
    source = temp;
  }

  cv::Mat out(height, source.cols, image.type());
  vertical_pass(source, row0, vertical, out);
  return out;
}

}  // namespace cprfl
