#include "cprfl/data/asl_augment.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cprfl/common/error.h"
#include "cprfl/data/pil_ops.h"
#include "cprfl/data/seeded_random.h"

// Bit-exactness with Pillow needs each product rounded before it is added, as Pillow's own
// build does (x86-64 wheels have no FMA): no fused multiply-add contraction in this file, even
// under -march=native.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace cprfl {
namespace {

constexpr std::uint8_t kWarpFill = 128;                    // SubPolicy's fillcolor (128, 128, 128)
const cv::Vec3b kPackageCutoutFill(125, 122, 113);         // the package's Cutout colour
constexpr double kPi = 3.14159265358979323846;  // CPython's Py_MATH_PI
constexpr int kPosterizeBits[10] = {8, 8, 7, 7, 6, 6, 5, 5, 4, 4};  // see asl_op_magnitude

void check_image(const cv::Mat& rgb, const char* what) {
  if (rgb.empty() || rgb.type() != CV_8UC3) throw Error(std::string(what) + ": expected a non-empty 8-bit RGB image");
}

void check_index(int magnitude_index) {
  if (magnitude_index < 0 || magnitude_index > 9)
    throw Error("apply_asl_op: magnitude index must be in [0, 9], got " + std::to_string(magnitude_index));
}

// numpy.linspace(start, stop, 10)[i], computed as NumPy does: i * ((stop - start) / 9) + start,
// and the last element set to `stop`.
double linspace10(double start, double stop, int i) {
  if (i == 9) return stop;
  const double step = (stop - start) / 9.0;
  return static_cast<double>(i) * step + start;
}

// Pillow's geometry macros (libImaging/Geometry.c).
inline int pil_coord(double v) { return v < 0.0 ? -1 : static_cast<int>(v); }
inline int pil_floor(double v) { return v < 0.0 ? static_cast<int>(std::floor(v)) : static_cast<int>(v); }

// Python's round(x, 15): the correctly rounded 15-decimal string, read back.
double python_round15(double x) {
  char text[64];
  std::snprintf(text, sizeof text, "%.15f", x);
  return std::strtod(text, nullptr);
}

// Image.transform(size, AFFINE, a, NEAREST) when a[1] == a[3] == 0: ImagingScaleAffine.
// Output pixel x samples input column COORD(a[2] + a[0] / 2 + x a[0]) (a running sum),
// likewise for rows; everything else keeps the fill colour.
void affine_scale_nearest(const cv::Mat& in, cv::Mat& out, const double a[6]) {
  const int width = in.cols, height = in.rows;
  std::vector<int> column(static_cast<std::size_t>(width), -1);
  double xo = a[2] + a[0] * 0.5;
  for (int x = 0; x < width; ++x) {
    int xin = pil_coord(xo);
    if (xin >= 0 && xin < width) column[static_cast<std::size_t>(x)] = xin;
    xo += a[0];
  }
  double yo = a[5] + a[4] * 0.5;
  for (int y = 0; y < height; ++y) {
    int yin = pil_coord(yo);
    yo += a[4];
    if (yin < 0 || yin >= height) continue;
    const cv::Vec3b* src = in.ptr<cv::Vec3b>(yin);
    cv::Vec3b* dst = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < width; ++x)
      if (column[static_cast<std::size_t>(x)] >= 0) dst[x] = src[column[static_cast<std::size_t>(x)]];
  }
}

// Image.transform(size, AFFINE, a, NEAREST), general matrix: ImagingTransformAffine, which uses
// 16.16 fixed point when the four corners map inside ±32768 (always, for images of sane
// size), else doubles.
void affine_nearest(const cv::Mat& in, cv::Mat& out, const double a[6]) {
  if (a[1] == 0 && a[3] == 0) return affine_scale_nearest(in, out, a);
  const int width = in.cols, height = in.rows;
  auto fits = [&](int x, int y) {
    return std::fabs(x * a[0] + y * a[1] + a[2]) < 32768.0 && std::fabs(x * a[3] + y * a[4] + a[5]) < 32768.0;
  };
  if (fits(0, 0) && fits(width, height) && fits(0, height) && fits(width, 0)) {
    auto fix = [](double v) { return pil_floor(v * 65536.0 + 0.5); };
    const int a0 = fix(a[0]), a1 = fix(a[1]), a3 = fix(a[3]), a4 = fix(a[4]);
    int a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
    int a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
    for (int y = 0; y < height; ++y) {
      int xx = a2, yy = a5;
      cv::Vec3b* dst = out.ptr<cv::Vec3b>(y);
      for (int x = 0; x < width; ++x) {
        int xin = xx >> 16;  // arithmetic shift (floor), as in Pillow's C
        if (xin >= 0 && xin < width) {
          int yin = yy >> 16;
          if (yin >= 0 && yin < height) dst[x] = in.ptr<cv::Vec3b>(yin)[xin];
        }
        xx += a0;
        yy += a3;
      }
      a2 += a1;
      a5 += a4;
    }
    return;
  }
  double xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
  double yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
  for (int y = 0; y < height; ++y) {
    double xx = xo, yy = yo;
    cv::Vec3b* dst = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < width; ++x) {
      int xin = pil_coord(xx);
      if (xin >= 0 && xin < width) {
        int yin = pil_coord(yy);
        if (yin >= 0 && yin < height) dst[x] = in.ptr<cv::Vec3b>(yin)[xin];
      }
      xx += a[0];
      yy += a[3];
    }
    xo += a[1];
    yo += a[4];
  }
}

// Pillow's BICUBIC macro: cubic convolution with a = -1 through v1..v4 at offset d from v2,
// in Pillow's order of operations. d == 0 gives v2 exactly (as Pillow's expression does).
inline double pil_cubic(double v1, double v2, double v3, double v4, double d) {
  if (d == 0.0) return v2;
  double p1 = v2;
  double p2 = -v1 + v3;
  double p3 = 2 * (v1 - v2) + v3 - v4;
  double p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

// Image.transform(size, AFFINE, a, BICUBIC): ImagingGenericTransform with bicubic_filter32RGB.
// Output pixel (x, y) samples the input at (a0 (x+.5) + a1 (y+.5) + a2, a3 (x+.5) + a4 (y+.5) + a5);
// a point outside [0, w) × [0, h) keeps the fill colour; otherwise the 4 × 4 neighbourhood,
// with edge pixels replicated, is interpolated and the result clipped and truncated.
void affine_bicubic(const cv::Mat& in, cv::Mat& out, const double a[6]) {
  const int width = in.cols, height = in.rows;
  for (int y = 0; y < height; ++y) {
    cv::Vec3b* dst = out.ptr<cv::Vec3b>(y);
    const double yc = y + 0.5;
    for (int x = 0; x < width; ++x) {
      const double xc = x + 0.5;
      double sx = a[0] * xc + a[1] * yc + a[2];
      double sy = a[3] * xc + a[4] * yc + a[5];
      if (sx < 0.0 || sx >= width || sy < 0.0 || sy >= height) continue;
      sx -= 0.5;
      sy -= 0.5;
      int ix = pil_floor(sx), iy = pil_floor(sy);
      const double dx = sx - ix, dy = sy - iy;
      --ix;
      --iy;
      int cols[4], rows[4];
      for (int k = 0; k < 4; ++k) {
        cols[k] = std::clamp(ix + k, 0, width - 1);
        // Pillow clips the first row and repeats the previous row's value for rows outside
        // the image: the same as clamping every row.
        rows[k] = std::clamp(iy + k, 0, height - 1);
      }
      for (int b = 0; b < 3; ++b) {
        double v[4];
        for (int k = 0; k < 4; ++k) {
          if (dy == 0.0 && k != 1) continue;  // only v2 is needed
          const cv::Vec3b* row = in.ptr<cv::Vec3b>(rows[k]);
          v[k] = pil_cubic(row[cols[0]][b], row[cols[1]][b], row[cols[2]][b], row[cols[3]][b], dx);
        }
        const double value = dy == 0.0 ? v[1] : pil_cubic(v[0], v[1], v[2], v[3], dy);
        dst[x][b] = value <= 0.0 ? 0 : value >= 255.0 ? 255 : static_cast<std::uint8_t>(value);
      }
    }
  }
}

enum class Resample { nearest, bicubic };

// Replaces `rgb` (in place: the same buffer) with Image.transform(rgb.size, AFFINE, a,
// resample, fillcolor=(128, 128, 128)).
void pil_affine(cv::Mat& rgb, const double a[6], Resample resample) {
  cv::Mat out(rgb.size(), CV_8UC3, cv::Scalar::all(kWarpFill));
  if (resample == Resample::nearest)
    affine_nearest(rgb, out, a);
  else
    affine_bicubic(rgb, out, a);
  out.copyTo(rgb);
}

// rotate_with_fill: img.convert("RGBA").rotate(angle) composited over grey 128. Image.rotate
// (NEAREST, centre (w/2, h/2), no expand) is an AFFINE transform with the inverse rotation;
// the composite keeps every covered pixel as it is and makes the rest 128.
void pil_rotate(cv::Mat& rgb, double degrees) {
  double angle = std::fmod(degrees, 360.0);
  if (angle < 0) angle += 360.0;
  if (angle == 0.0) return;  // Image.rotate's fast path: a copy
  // 90/180/270 (transposes in Pillow) cannot occur: the package's angles are below 31.
  const double radians = -(angle * (kPi / 180.0));  // -math.radians(angle)
  double a[6] = {python_round15(std::cos(radians)), python_round15(std::sin(radians)), 0.0,
                 python_round15(-std::sin(radians)), python_round15(std::cos(radians)), 0.0};
  const double cx = rgb.cols / 2.0, cy = rgb.rows / 2.0;
  const double c = a[0] * -cx + a[1] * -cy + a[2];
  const double f = a[3] * -cx + a[4] * -cy + a[5];
  a[2] = c + cx;
  a[5] = f + cy;
  pil_affine(rgb, a, Resample::nearest);
}

template <typename Entry>
void apply_table(cv::Mat& rgb, Entry entry) {
  std::array<std::uint8_t, 256> table{};
  for (int i = 0; i < 256; ++i) table[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(entry(i));
  apply_lut(rgb, table);
}

}  // namespace

const char* asl_op_name(AslOp op) {
  static const char* const names[kAslOpCount] = {
      "Invert", "Cutout", "Sharpness", "AutoContrast", "Posterize", "ShearX", "TranslateX", "TranslateY",
      "ShearY", "Rotate", "Equalize", "Contrast", "Color", "Solarize", "Brightness"};
  int index = static_cast<int>(op);
  return index >= 0 && index < kAslOpCount ? names[index] : "?";
}

bool asl_op_signed(AslOp op) {
  switch (op) {
    case AslOp::shear_x:
    case AslOp::shear_y:
    case AslOp::translate_x:
    case AslOp::translate_y:
    case AslOp::color:
    case AslOp::contrast:
    case AslOp::sharpness:
    case AslOp::brightness:
      return true;
    default:
      return false;
  }
}

double asl_op_magnitude(AslOp op, int magnitude_index) {
  check_index(magnitude_index);
  const int i = magnitude_index;
  switch (op) {
    case AslOp::shear_x:
    case AslOp::shear_y:
      return linspace10(0.0, 0.3, i);
    case AslOp::translate_x:
    case AslOp::translate_y:
      return linspace10(0.0, 150.0 / 331.0, i);
    case AslOp::rotate:
      return linspace10(0.0, 30.0, i);
    case AslOp::color:
    case AslOp::contrast:
    case AslOp::sharpness:
    case AslOp::brightness:
      return linspace10(0.0, 0.9, i);
    case AslOp::posterize:
      return std::nearbyint(linspace10(8.0, 4.0, i));  // np.round (half to even; no halves occur)
    case AslOp::solarize:
      return linspace10(256.0, 0.0, i);
    case AslOp::cutout:
      return std::nearbyint(linspace10(0.0, 20.0, i));
    case AslOp::auto_contrast:
    case AslOp::equalize:
    case AslOp::invert:
      return 0.0;
  }
  throw Error("asl_op_magnitude: unknown op " + std::to_string(static_cast<int>(op)));
}

void asl_square_cutout(cv::Mat& rgb, int size, int centre_x, int centre_y) {
  check_image(rgb, "asl_square_cutout");
  const int half = size / 2;
  const int x0 = std::max(0, centre_x - half), x1 = std::min(rgb.cols, centre_x + half);
  const int y0 = std::max(0, centre_y - half), y1 = std::min(rgb.rows, centre_y + half);
  for (int y = y0; y < y1; ++y) {
    cv::Vec3b* row = rgb.ptr<cv::Vec3b>(y);
    for (int x = x0; x < x1; ++x) row[x] = kPackageCutoutFill;
  }
}

void apply_asl_op(cv::Mat& rgb, AslOp op, int magnitude_index, bool negative) {
  check_image(rgb, "apply_asl_op");
  const double magnitude = asl_op_magnitude(op, magnitude_index);  // checks the index
  const double sign = negative ? -1.0 : 1.0;
  switch (op) {
    case AslOp::shear_x: {
      const double a[6] = {1, magnitude * sign, 0, 0, 1, 0};
      return pil_affine(rgb, a, Resample::bicubic);
    }
    case AslOp::shear_y: {
      const double a[6] = {1, 0, 0, magnitude * sign, 1, 0};
      return pil_affine(rgb, a, Resample::bicubic);
    }
    case AslOp::translate_x: {
      const double a[6] = {1, 0, magnitude * rgb.cols * sign, 0, 1, 0};
      return pil_affine(rgb, a, Resample::nearest);
    }
    case AslOp::translate_y: {
      const double a[6] = {1, 0, 0, 0, 1, magnitude * rgb.rows * sign};
      return pil_affine(rgb, a, Resample::nearest);
    }
    case AslOp::rotate:
      return pil_rotate(rgb, magnitude);
    case AslOp::color:
      return adjust_color(rgb, 1 + magnitude * sign);
    case AslOp::contrast:
      return adjust_contrast(rgb, 1 + magnitude * sign);
    case AslOp::sharpness:
      return adjust_sharpness(rgb, 1 + magnitude * sign);
    case AslOp::brightness:
      return adjust_brightness(rgb, 1 + magnitude * sign);
    case AslOp::posterize: {
      // ImageOps.posterize: keep the top `bits` bits.
      const int drop = 8 - kPosterizeBits[magnitude_index];
      return apply_table(rgb, [drop](int i) { return i & ~((1 << drop) - 1); });
    }
    case AslOp::solarize:
      // ImageOps.solarize: values at or above the (real) threshold are inverted.
      return apply_table(rgb, [magnitude](int i) { return i < magnitude ? i : 255 - i; });
    case AslOp::invert:
      return apply_table(rgb, [](int i) { return 255 - i; });
    case AslOp::auto_contrast:
      return auto_contrast(rgb);
    case AslOp::equalize:
      return equalize(rgb);
    case AslOp::cutout:
      throw Error("apply_asl_op: Cutout needs a centre; pass a generator or call asl_square_cutout");
  }
  throw Error("apply_asl_op: unknown op " + std::to_string(static_cast<int>(op)));
}

void apply_asl_op(cv::Mat& rgb, AslOp op, int magnitude_index, bool negative, std::mt19937_64& rng) {
  if (op != AslOp::cutout) return apply_asl_op(rgb, op, magnitude_index, negative);
  check_image(rgb, "apply_asl_op");
  const int size = static_cast<int>(asl_op_magnitude(op, magnitude_index));
  const int centre_x = static_cast<int>(uniform_int(rng, rgb.cols));  // the package's height_loc
  const int centre_y = static_cast<int>(uniform_int(rng, rgb.rows));  // the package's width_loc
  // The package asserts a non-empty square; size 0 (index 0) draws nothing here.
  asl_square_cutout(rgb, size, centre_x, centre_y);
}

void asl_rand_augment(cv::Mat& rgb, std::mt19937_64& rng, AslTrace* trace) {
  check_image(rgb, "asl_rand_augment");
  constexpr int kMagnitudes = kAslMaxMagnitude - kAslMinMagnitude + 1;  // 9
  AslStep steps[2];
  for (AslStep& step : steps) {
    // The package lists (op, magnitude) with the op outer and the magnitude 1..9 inner.
    const int pair = static_cast<int>(uniform_int(rng, kAslOpCount * kMagnitudes));
    step.op = static_cast<AslOp>(pair / kMagnitudes);
    step.magnitude_index = kAslMinMagnitude + pair % kMagnitudes;
  }
  for (AslStep& step : steps) {
    step.applied = bernoulli(rng, 0.5);  // random.random() < 0.5
    if (!step.applied) continue;
    if (step.op == AslOp::cutout) {
      step.centre_x = static_cast<int>(uniform_int(rng, rgb.cols));  // as apply_asl_op draws them
      step.centre_y = static_cast<int>(uniform_int(rng, rgb.rows));
      asl_square_cutout(rgb, static_cast<int>(asl_op_magnitude(AslOp::cutout, step.magnitude_index)), step.centre_x,
                        step.centre_y);
      continue;
    }
    if (asl_op_signed(step.op)) step.negative = bernoulli(rng, 0.5);  // random.choice([-1, 1]) == -1
    apply_asl_op(rgb, step.op, step.magnitude_index, step.negative);
  }
  if (trace) {
    trace->steps[0] = steps[0];
    trace->steps[1] = steps[1];
  }
}

void asl_cutout_at(cv::Mat& rgb, double factor, int y_c, int x_c, const cv::Vec3b& fill) {
  check_image(rgb, "asl_cutout");
  // The authors' code: h, w = x.size[0], x.size[1] — the width, then the height.
  const int h = rgb.cols, w = rgb.rows;
  const int h_cutout = static_cast<int>(factor * h + 0.5), w_cutout = static_cast<int>(factor * w + 0.5);
  const int y1 = std::clamp(y_c - h_cutout / 2, 0, h), y2 = std::clamp(y_c + h_cutout / 2, 0, h);
  const int x1 = std::clamp(x_c - w_cutout / 2, 0, w), x2 = std::clamp(x_c + w_cutout / 2, 0, w);
  // ImageDraw.rectangle([x1, y1, x2, y2], fill): both corners included, clipped to the image.
  const int last_row = std::min(y2, rgb.rows - 1), last_col = std::min(x2, rgb.cols - 1);
  for (int y = y1; y <= last_row; ++y) {
    cv::Vec3b* row = rgb.ptr<cv::Vec3b>(y);
    for (int x = x1; x <= last_col; ++x) row[x] = fill;
  }
}

void asl_cutout(cv::Mat& rgb, double factor, std::mt19937_64& rng) {
  check_image(rgb, "asl_cutout");
  const int y_c = static_cast<int>(uniform_int(rng, rgb.cols));  // np.random.randint(h), h = width
  const int x_c = static_cast<int>(uniform_int(rng, rgb.rows));  // np.random.randint(w), w = height
  cv::Vec3b fill;
  for (int c = 0; c < 3; ++c) fill[c] = static_cast<std::uint8_t>(uniform_int(rng, 256));  // random.randint(0, 255)
  asl_cutout_at(rgb, factor, y_c, x_c, fill);
}

}  // namespace cprfl
