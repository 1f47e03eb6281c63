#include <gtest/gtest.h>

#include <cmath>

#include <opencv2/imgproc.hpp>

#include "cprfl/common/error.h"
#include "cprfl/data/asl_augment.h"
#include "cprfl/data/transforms.h"

using namespace cprfl;

namespace {

cv::Mat solid(int rows, int cols, int r, int g, int b) { return cv::Mat(rows, cols, CV_8UC3, cv::Scalar(r, g, b)); }

// A left-to-right ramp in red, top-to-bottom in green: every pixel differs.
cv::Mat ramp(int size) {
  cv::Mat image(size, size, CV_8UC3);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>(x * 255 / (size - 1)),
                                            static_cast<uchar>(y * 255 / (size - 1)), 60);
  return image;
}

std::vector<float> run(const ImageTransform& transform, const cv::Mat& image, std::uint64_t seed) {
  std::vector<float> out(static_cast<std::size_t>(transform.output_floats()));
  std::mt19937_64 rng(seed);
  transform.apply(image.clone(), rng, out.data());
  return out;
}

TransformConfig eval_config(int size, const std::string& normalize) {
  TransformConfig config;
  config.image_size = size;
  config.train = false;
  config.normalize = normalize;
  return config;
}

}  // namespace

TEST(Transforms, EvalResizesAndNormalisesImagenet) {
  ImageTransform transform(eval_config(6, "imagenet"));
  auto out = run(transform, solid(9, 13, 255, 0, 128), 1);
  ASSERT_EQ(out.size(), 3u * 6 * 6);
  const float expected[3] = {(1.0f - 0.485f) / 0.229f, (0.0f - 0.456f) / 0.224f, (128 / 255.0f - 0.406f) / 0.225f};
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 36; ++i) EXPECT_NEAR(out[c * 36 + i], expected[c], 1e-4) << c << " " << i;
}

TEST(Transforms, ChwLayoutAndNoNormalisation) {
  cv::Mat image = solid(2, 4, 0, 0, 0);
  image.at<cv::Vec3b>(0, 3) = cv::Vec3b(51, 102, 255);  // row 0, column 3
  std::vector<float> out(3 * 8);
  to_chw_float(image, normalization_named("none"), out.data());
  EXPECT_FLOAT_EQ(out[0 * 8 + 3], 0.2f);
  EXPECT_FLOAT_EQ(out[1 * 8 + 3], 0.4f);
  EXPECT_FLOAT_EQ(out[2 * 8 + 3], 1.0f);
  EXPECT_FLOAT_EQ(out[0 * 8 + 4], 0.0f);
}

TEST(Transforms, ResizeSquare) {
  for (const std::string method : {"pil_bilinear", "pil_bicubic", "opencv"}) {
    cv::Mat up = resize_square(solid(375, 500, 1, 2, 3), 448, method);
    EXPECT_EQ(up.size(), cv::Size(448, 448)) << method;
    EXPECT_EQ(up.at<cv::Vec3b>(200, 300), cv::Vec3b(1, 2, 3)) << method;  // a constant image stays constant
    EXPECT_EQ(resize_square(solid(600, 800, 1, 2, 3), 448, method).size(), cv::Size(448, 448)) << method;
    cv::Mat same = solid(8, 8, 1, 2, 3);
    EXPECT_EQ(resize_square(same, 8, method).data, same.data) << method;  // no copy when already the size
  }
  try {
    resize_square(solid(4, 4, 1, 2, 3), 8, "nearest");
    ADD_FAILURE() << "an unknown resize method was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("resize must be 'pil_bilinear', 'pil_bicubic' or 'opencv', got 'nearest'"),
              std::string::npos) << e.what();
  }
}

TEST(Transforms, TrainAugmentationIsAFunctionOfTheSeed) {
  TransformConfig config;
  config.image_size = 32;
  ImageTransform transform(config);
  cv::Mat image = ramp(40);
  auto a = run(transform, image, augmentation_seed(7, 3, 11));
  auto b = run(transform, image, augmentation_seed(7, 3, 11));
  EXPECT_EQ(a, b);
  int differing = 0;
  for (std::uint64_t index = 0; index < 8; ++index)
    differing += run(transform, image, augmentation_seed(7, 3, 100 + index)) != a;
  EXPECT_GE(differing, 7);
  EXPECT_NE(augmentation_seed(7, 3, 11), augmentation_seed(7, 4, 11));
  EXPECT_NE(augmentation_seed(7, 3, 11), augmentation_seed(8, 3, 11));
}

TEST(Transforms, FlipHappensAboutHalfTheTime) {
  TransformConfig config = eval_config(8, "none");
  config.train = true;
  config.cutout_prob = 0.0;
  config.randaugment = false;
  ImageTransform transform(config);
  cv::Mat image = solid(8, 8, 0, 0, 0);
  image.at<cv::Vec3b>(0, 0) = cv::Vec3b(255, 255, 255);
  int flipped = 0;
  for (std::uint64_t seed = 0; seed < 400; ++seed) {
    auto out = run(transform, image, seed);
    if (out[7] == 1.0f) {
      ++flipped;
      EXPECT_EQ(out[0], 0.0f);
    } else {
      EXPECT_EQ(out[0], 1.0f);
    }
  }
  EXPECT_GT(flipped, 150);
  EXPECT_LT(flipped, 250);
}

TEST(Transforms, CutoutFillsOneBoundedRectangle) {
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    cv::Mat image = solid(40, 40, 1, 2, 3);
    asl_cutout(image, 0.5, rng);
    cv::Mat changed;
    cv::inRange(image, cv::Scalar(1, 2, 3), cv::Scalar(1, 2, 3), changed);
    changed = 255 - changed;
    int count = cv::countNonZero(changed);
    // Half of 40 is 20: centre ± 10, both ends included (PIL's rectangle), so at most 21 × 21.
    EXPECT_LE(count, 21 * 21);
    if (count == 0) continue;  // the fill colour happened to be (1, 2, 3)
    cv::Rect box = cv::boundingRect(changed);
    EXPECT_EQ(count, box.area());  // a filled rectangle
    EXPECT_LE(box.width, 21);
    EXPECT_LE(box.height, 21);
  }
}

TEST(Transforms, EveryAugmentOpKeepsSizeAndType) {
  for (int op = 0; op < kAugmentOpCount; ++op) {
    for (bool negative : {false, true}) {
      cv::Mat image = ramp(24);
      apply_augment_op(image, static_cast<AugmentOp>(op), 0.9, negative);
      EXPECT_EQ(image.size(), cv::Size(24, 24)) << augment_op_name(static_cast<AugmentOp>(op));
      EXPECT_EQ(image.type(), CV_8UC3);
    }
  }
  EXPECT_STREQ(augment_op_name(AugmentOp::translate_y), "TranslateY");
}

TEST(Transforms, AugmentOpsDoWhatTheySay) {
  cv::Mat base = ramp(20);
  auto after = [&](AugmentOp op, double level, bool negative) {
    cv::Mat image = base.clone();
    apply_augment_op(image, op, level, negative);
    return image;
  };
  EXPECT_EQ(cv::norm(after(AugmentOp::identity, 1.0, false), base, cv::NORM_INF), 0.0);

  cv::Mat inverted;
  cv::subtract(cv::Scalar::all(255), base, inverted);
  EXPECT_EQ(cv::norm(after(AugmentOp::solarize, 1.0, false), inverted, cv::NORM_INF), 0.0);
  EXPECT_EQ(cv::norm(after(AugmentOp::solarize, 0.0, false), base, cv::NORM_INF), 0.0);

  cv::Mat posterized = after(AugmentOp::posterize, 1.0, false);
  EXPECT_EQ(posterized.at<cv::Vec3b>(10, 13)[0], base.at<cv::Vec3b>(10, 13)[0] & 0xF0);

  cv::Mat dark = after(AugmentOp::brightness, 1.0, true);  // factor 0.1
  EXPECT_NEAR(dark.at<cv::Vec3b>(0, 19)[0], 25.5, 0.6);     // 255 × 0.1

  cv::Mat grey = after(AugmentOp::color, 1.0, true);  // factor 0.1: almost grey
  cv::Vec3b g = grey.at<cv::Vec3b>(5, 15);
  EXPECT_LE(std::abs(g[0] - g[1]), 30);

  cv::Mat shifted = after(AugmentOp::translate_x, 1.0, false);  // right by 0.45 × 20 = 9 pixels
  EXPECT_EQ(shifted.at<cv::Vec3b>(4, 3), cv::Vec3b(128, 128, 128));
  EXPECT_EQ(shifted.at<cv::Vec3b>(4, 15), base.at<cv::Vec3b>(4, 6));

  cv::Mat low_contrast = solid(10, 10, 100, 110, 120);
  apply_augment_op(low_contrast, AugmentOp::auto_contrast, 1.0, false);
  EXPECT_EQ(low_contrast.at<cv::Vec3b>(0, 0), cv::Vec3b(100, 110, 120));  // flat channels stay
  cv::Mat two_level = solid(10, 10, 100, 100, 100);
  two_level(cv::Rect(0, 0, 5, 10)).setTo(cv::Scalar(150, 150, 150));
  apply_augment_op(two_level, AugmentOp::auto_contrast, 1.0, false);
  EXPECT_EQ(two_level.at<cv::Vec3b>(0, 0), cv::Vec3b(255, 255, 255));
  EXPECT_EQ(two_level.at<cv::Vec3b>(0, 9), cv::Vec3b(0, 0, 0));
}

// The ops of the "fixed" policy not covered above, each against a closed-form expectation.
TEST(Transforms, FixedPolicyGeometricOpsMovePixelsWhereTheFormulaSays) {
  // Rotate: +30° at level 1 is counter-clockwise about the centre (nearest neighbour): a mark
  // r pixels right of the centre lands at (cx + r cos 30°, cy − r sin 30°).
  cv::Mat rotated = solid(65, 65, 0, 0, 0);
  const double c = 32.0, r = 20.0;
  rotated(cv::Rect(51, 31, 3, 3)).setTo(cv::Scalar(255, 0, 0));  // centred on (52, 32)
  apply_augment_op(rotated, AugmentOp::rotate, 1.0, false);
  const int x = static_cast<int>(std::lround(c + r * std::cos(M_PI / 6))), y = static_cast<int>(std::lround(c - r * std::sin(M_PI / 6)));
  EXPECT_EQ(rotated.at<cv::Vec3b>(y, x), cv::Vec3b(255, 0, 0)) << "expected the mark at (" << x << ", " << y << ")";
  EXPECT_EQ(rotated.at<cv::Vec3b>(0, 0), cv::Vec3b(128, 128, 128));  // uncovered corner: grey fill
  EXPECT_EQ(rotated.at<cv::Vec3b>(32, 52), cv::Vec3b(0, 0, 0));      // the mark left its place

  // ShearX by s = 0.3 about the middle row: output x = input x − s·(y − cy); a vertical stripe
  // at column 20 of a 41-row image leans: row 0 holds it at 20 + 6, row 40 at 20 − 6.
  cv::Mat stripe = solid(41, 41, 0, 0, 0);
  stripe.col(20).setTo(cv::Scalar(0, 255, 0));
  cv::Mat sheared = stripe.clone();
  apply_augment_op(sheared, AugmentOp::shear_x, 1.0, false);
  EXPECT_EQ(sheared.at<cv::Vec3b>(0, 26), cv::Vec3b(0, 255, 0));
  EXPECT_EQ(sheared.at<cv::Vec3b>(40, 14), cv::Vec3b(0, 255, 0));
  EXPECT_EQ(sheared.at<cv::Vec3b>(20, 20), cv::Vec3b(0, 255, 0));  // the middle row stays
  // ShearY is the same with rows and columns swapped.
  cv::Mat band = solid(41, 41, 0, 0, 0);
  band.row(20).setTo(cv::Scalar(0, 0, 255));
  apply_augment_op(band, AugmentOp::shear_y, 1.0, false);
  EXPECT_EQ(band.at<cv::Vec3b>(26, 0), cv::Vec3b(0, 0, 255));
  EXPECT_EQ(band.at<cv::Vec3b>(14, 40), cv::Vec3b(0, 0, 255));

  // TranslateY at level 1: down by 0.45 × 20 = 9 rows (up when negative), grey where uncovered.
  cv::Mat base = ramp(20);
  cv::Mat down = base.clone(), up = base.clone();
  apply_augment_op(down, AugmentOp::translate_y, 1.0, false);
  apply_augment_op(up, AugmentOp::translate_y, 1.0, true);
  EXPECT_EQ(down.at<cv::Vec3b>(15, 4), base.at<cv::Vec3b>(6, 4));
  EXPECT_EQ(down.at<cv::Vec3b>(3, 4), cv::Vec3b(128, 128, 128));
  EXPECT_EQ(up.at<cv::Vec3b>(6, 4), base.at<cv::Vec3b>(15, 4));
  EXPECT_EQ(up.at<cv::Vec3b>(16, 4), cv::Vec3b(128, 128, 128));
}

TEST(Transforms, FixedPolicyToneOpsFollowPillowsFormulas) {
  // Equalize (Pillow's ImageOps.equalize): 400 pixels, four values 100 each; step =
  // (400 − 100) // 255 = 1, so value k-th from the bottom maps to the count below it: 0, 100,
  // 200, then min(255, 300).
  cv::Mat levels(20, 20, CV_8UC3);
  for (int y = 0; y < 20; ++y) {
    const int v = 10 * (1 + y / 5);  // rows 0-4: 10, 5-9: 20, 10-14: 30, 15-19: 40
    levels.row(y).setTo(cv::Scalar(v, v, v));
  }
  apply_augment_op(levels, AugmentOp::equalize, 1.0, false);
  EXPECT_EQ(levels.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(levels.at<cv::Vec3b>(5, 0), cv::Vec3b(100, 100, 100));
  EXPECT_EQ(levels.at<cv::Vec3b>(10, 0), cv::Vec3b(200, 200, 200));
  EXPECT_EQ(levels.at<cv::Vec3b>(15, 0), cv::Vec3b(255, 255, 255));

  // Contrast, factor 1 − 0.9 = 0.1 towards the mean grey 150 of a 100/200 half-and-half image:
  // 150 ± 0.1 × 50 = 145 and 155.
  cv::Mat halves = solid(10, 10, 100, 100, 100);
  halves(cv::Rect(5, 0, 5, 10)).setTo(cv::Scalar(200, 200, 200));
  apply_augment_op(halves, AugmentOp::contrast, 1.0, true);
  EXPECT_EQ(halves.at<cv::Vec3b>(0, 0), cv::Vec3b(145, 145, 145));
  EXPECT_EQ(halves.at<cv::Vec3b>(0, 9), cv::Vec3b(155, 155, 155));

  // Sharpness, factor 0.1: blend with Pillow's SMOOTH (3×3, centre 5, others 1, / 13). One
  // bright interior pixel: centre 255·5/13 + 0.1·(255 − 255·5/13) = 113.8 → 114; a neighbour
  // 255/13 − 0.1·255/13 = 17.65 → 18; the one-pixel border keeps its value.
  cv::Mat dot = solid(7, 7, 0, 0, 0);
  dot.at<cv::Vec3b>(3, 3) = cv::Vec3b(255, 255, 255);
  cv::Mat corner_dot = solid(7, 7, 0, 0, 0);
  corner_dot.at<cv::Vec3b>(0, 0) = cv::Vec3b(255, 255, 255);
  apply_augment_op(dot, AugmentOp::sharpness, 1.0, true);
  apply_augment_op(corner_dot, AugmentOp::sharpness, 1.0, true);
  EXPECT_EQ(dot.at<cv::Vec3b>(3, 3), cv::Vec3b(114, 114, 114));
  EXPECT_EQ(dot.at<cv::Vec3b>(2, 3), cv::Vec3b(18, 18, 18));
  EXPECT_EQ(dot.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(corner_dot.at<cv::Vec3b>(0, 0), cv::Vec3b(255, 255, 255));
}

TEST(Transforms, RandomDrawsAreInRange) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < 1000; ++i) {
    double u = uniform01(rng);
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
    auto k = uniform_int(rng, 7);
    EXPECT_GE(k, 0);
    EXPECT_LT(k, 7);
  }
}

TEST(Transforms, ConfigErrorsNameTheField) {
  auto message = [](TransformConfig config) {
    try {
      ImageTransform transform(config);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  TransformConfig config;
  config.normalize = "zscore";
  EXPECT_NE(message(config).find("normalize must be 'imagenet', 'clip' or 'none', got 'zscore'"), std::string::npos);
  config = {};
  config.image_size = 0;
  EXPECT_NE(message(config).find("image_size"), std::string::npos);
  config = {};
  config.cutout_prob = 1.5;
  EXPECT_NE(message(config).find("cutout_prob"), std::string::npos);
  config = {};
  config.randaugment_magnitude = 11;
  EXPECT_NE(message(config).find("randaugment_magnitude"), std::string::npos);
  config = {};
  config.resize = "area";
  EXPECT_NE(message(config).find("resize must be"), std::string::npos);
  config = {};
  config.randaugment_policy = "torchvision";
  EXPECT_NE(message(config).find("randaugment_policy must be 'asl' or 'fixed', got 'torchvision'"), std::string::npos);
}
