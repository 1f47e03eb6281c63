#pragma once
// The authors' training augmentations (ASL / CPRFL), on 8-bit RGB images (CV_8UC3):
//
//   * asl_cutout: ASL's CutoutPIL(cutout_factor), applied to every training image;
//   * asl_rand_augment: RandAugment() of the PyPI package `randaugment` 1.0.2, with its
//     defaults, which the authors apply after CutoutPIL.
//
// The arithmetic follows Pillow (what the package calls), not OpenCV:
//   * ShearX/ShearY are Image.transform(AFFINE, BICUBIC): the output pixel (x, y) samples the
//     input at (a (x + .5) + b (y + .5) + c, d (x + .5) + e (y + .5) + f), uncentred; Pillow's
//     bicubic is cubic convolution with a = -1 (OpenCV's INTER_CUBIC uses -0.75), replicates
//     the edge pixels, truncates the result to an integer (OpenCV rounds), and fills only the
//     pixels whose sampling point falls outside the image (OpenCV blends the fill colour into
//     the border pixels). Written out here, in Pillow's order of operations.
//   * TranslateX/Y are Image.transform(AFFINE, NEAREST): Pillow's scale path samples input
//     pixel floor(x + 0.5 + offset) (a running double sum, as Pillow's).
//   * Rotate is Image.rotate(angle) (NEAREST, about (w/2, h/2), counter-clockwise on screen,
//     angle ALWAYS positive in this package) in Pillow's 16.16 fixed-point arithmetic, with the
//     matrix entries rounded to 15 decimals as Image.rotate does; uncovered pixels are grey 128.
//   * Posterize, Solarize, Invert are exact lookup tables. AutoContrast, Equalize, Color,
//     Contrast, Brightness, Sharpness reuse the project's Pillow-like helpers (pil_ops.h):
//     Equalize matches; the others may differ from Pillow by 1 in a channel value (Color: 2).
// Measured against the package under Pillow 9.4: the warps, tables and both cutouts match bit
// for bit (tests/fixtures/asl_augment, and every magnitude and sign on a 448 × 448 photo and a
// 500 × 375 noise image). That needs products rounded before sums, as in Pillow's build, so
// asl_augment.cpp switches off fused multiply-add contraction (GCC; Clang unless built with
// -ffp-contract=fast).
//
// Every random choice is drawn from the generator passed in (uniform_int / uniform01 /
// bernoulli of transforms.h), so an image's augmentation is a pure function of its seed.
#include <cstdint>
#include <random>

#include <opencv2/core.hpp>

namespace cprfl {

// The package's 15 operations, in its order (RandAugment.get_trans_list()).
enum class AslOp {
  invert, cutout, sharpness, auto_contrast, posterize, shear_x, translate_x, translate_y,
  shear_y, rotate, equalize, contrast, color, solarize, brightness,
};
constexpr int kAslOpCount = 15;
constexpr int kAslMinMagnitude = 1;  // RandAugment draws magnitude indices 1..9
constexpr int kAslMaxMagnitude = 9;  // (the `ranges` tables have 10 entries, 0..9)

const char* asl_op_name(AslOp op);  // the package's names: "Invert", "Cutout", ..., "Brightness"
// Ops that draw a random sign (random.choice([-1, 1])): the shears, translates and the four
// ImageEnhance ops. Rotate has no sign in this package.
bool asl_op_signed(AslOp op);
// The package's `ranges` value for the op at magnitude index 0..9 (numpy.linspace, computed
// the way NumPy does): shear 0..0.3, translate 0..150/331 (× the side), rotate 0..30 degrees,
// enhance 0..0.9 (factor 1 ± it), posterize bits round(8..4), solarize threshold 256..0,
// cutout size round(0..20); 0 for AutoContrast, Equalize, Invert.
double asl_op_magnitude(AslOp op, int magnitude_index);

// Applies one op as SubPolicy does, with the sign given (`negative` ⇔ random.choice gave -1;
// ignored by unsigned ops). Throws cprfl::Error for a non-CV_8UC3 image, an index outside
// 0..9, or AslOp::cutout, which needs a centre: use the overload with a generator or
// asl_square_cutout.
void apply_asl_op(cv::Mat& rgb, AslOp op, int magnitude_index, bool negative);
// The same; Cutout draws its centre from `rng` (x first, then y).
void apply_asl_op(cv::Mat& rgb, AslOp op, int magnitude_index, bool negative, std::mt19937_64& rng);

// The package's Cutout at a given centre: the square [cx - size/2, cx + size/2) ×
// [cy - size/2, cy + size/2) (integer division, end excluded, so the side is
// 2 (size / 2)), clipped to the image, filled with (125, 122, 113). The package names the
// centre coordinates the other way round (it reads img.size, which is (width, height), as
// (height, width)), but it uses them consistently: the first one is drawn from [0, width)
// and indexes columns. So the swap is in the names only, for square and non-square images.
void asl_square_cutout(cv::Mat& rgb, int size, int centre_x, int centre_y);

// What asl_rand_augment did (for tests and logging).
struct AslStep {
  AslOp op = AslOp::invert;
  int magnitude_index = 0;  // 1..9
  bool applied = false;     // the random() < 0.5 draw
  bool negative = false;    // the sign drawn (signed ops that were applied only)
  int centre_x = -1;        // Cutout's centre (when it was applied)
  int centre_y = -1;
};
struct AslTrace {
  AslStep steps[2];
};

// RandAugment() of `randaugment` 1.0.2: two (op, magnitude index) pairs, each uniform over
// the 15 ops × indices 1..9 (the package draws one of the 135² pairs uniformly: the same
// distribution); then op 1 is applied if random() < 0.5, then op 2 if random() < 0.5.
// Draw order: op 1, op 2, then per op: the probability draw, and if applied its sign
// (signed ops) or its centre (Cutout). Fills `trace` when given.
void asl_rand_augment(cv::Mat& rgb, std::mt19937_64& rng, AslTrace* trace = nullptr);

// ASL's CutoutPIL(cutout_factor): with W = width, H = height,
//   h_cut = int(f W + 0.5), w_cut = int(f H + 0.5), y_c ~ U[0, W), x_c ~ U[0, H),
//   y1, y2 = clip(y_c ∓ h_cut // 2, 0, W), x1, x2 = clip(x_c ∓ w_cut // 2, 0, H),
//   rectangle [x1, y1, x2, y2] filled with a colour uniform in [0, 255]³,
// where PIL's rectangle includes x2 and y2 and is clipped to the image. The authors' code
// takes x.size (width, height) as (h, w), so for a non-square image the vertical range is
// drawn from the width and the horizontal one from the height; this reproduces that (for the
// square images it sees after the resize, it makes no difference).
// Draw order: y_c, x_c, then red, green, blue.
void asl_cutout(cv::Mat& rgb, double factor, std::mt19937_64& rng);
// The same at a given centre and colour (RGB).
void asl_cutout_at(cv::Mat& rgb, double factor, int y_c, int x_c, const cv::Vec3b& fill);

}  // namespace cprfl
