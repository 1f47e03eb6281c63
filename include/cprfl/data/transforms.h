#pragma once
// Image transforms on 8-bit RGB images (CV_8UC3), ending in a float CHW tensor buffer.
//
// Training pipeline: resize to image_size × image_size → random horizontal flip (p = 0.5,
// off in the authors' pipeline) → Cutout (probability cutout_prob; the authors' CutoutPIL:
// a rectangle of cutout_factor × each side, centre uniform, clipped, both ends included,
// one random colour) → RandAugment (the authors' policy, or N ops at a fixed magnitude) →
// float CHW with the chosen normalisation ("none": pixels / 255, the authors' ToTensor()).
// Evaluation pipeline: resize → float CHW.
//
// The resize is Pillow's Image.resize (bilinear by default, as torchvision's Resize does on
// PIL images), reproduced pixel for pixel (data/pil_resize.h); OpenCV's resize is the other
// choice.
//
// Every random choice comes from the generator passed in, so a sample's augmentation is a
// pure function of the seed it was given (see augmentation_seed). The integer and real
// draws are computed here, not by std:: distributions, so results do not depend on the
// standard library either.
#include <cstdint>
#include <random>
#include <string>

#include <opencv2/core.hpp>

#include "cprfl/data/seeded_random.h"

namespace cprfl {

struct TransformConfig {
  int image_size = 448;             // output is image_size × image_size
  bool train = true;                // false: resize + normalise only
  std::string resize = "pil_bilinear";  // "pil_bilinear", "pil_bicubic" (Pillow, exactly) or "opencv"
  bool hflip = true;                // random horizontal flip with p = 0.5
  double cutout_prob = 0.5;         // probability of applying Cutout
  double cutout_factor = 0.5;       // Cutout side as a fraction of the image side
  bool randaugment = true;
  std::string randaugment_policy = "asl";  // "asl": the authors' (PyPI randaugment 1.0.2); "fixed": below
  int randaugment_ops = 2;          // policy "fixed": ops applied per image
  int randaugment_magnitude = 9;    // policy "fixed": 0..10
  std::string normalize = "imagenet";  // "imagenet" or "clip" (mean/std), or "none" (pixels / 255)
};

// "448 px, Pillow bilinear resize, normalize none" — for the header lines of eval and predict.
std::string describe_preprocessing(const TransformConfig& config);

// Throws cprfl::Error naming the field when a value is out of range.
void validate(const TransformConfig& config);

// The RandAugment operations. Magnitude m maps to level = m / 10 ∈ [0, 1]; signed ops get a
// random sign. At level 1: rotate ±30°, shear ±0.3, translate ±0.45 × side, colour /
// contrast / brightness / sharpness factor 1 ± 0.9, posterize to 4 bits, solarize above 0.
// Geometric ops fill uncovered pixels with grey 128 and sample with nearest neighbour.
enum class AugmentOp {
  identity, auto_contrast, equalize, rotate, solarize, color, posterize,
  contrast, brightness, sharpness, shear_x, shear_y, translate_x, translate_y,
};
constexpr int kAugmentOpCount = 14;
const char* augment_op_name(AugmentOp op);

// Building blocks (all on CV_8UC3).
// Resizes to size × size with the named method ("pil_bilinear", "pil_bicubic", "opencv":
// INTER_AREA when shrinking both sides, else INTER_LINEAR). Same size: returned as it is.
cv::Mat resize_square(const cv::Mat& rgb, int size, const std::string& method);
// `level` in [0, 1]; `negative` flips the direction of signed ops.
void apply_augment_op(cv::Mat& rgb, AugmentOp op, double level, bool negative);
void rand_augment(cv::Mat& rgb, int ops, int magnitude, std::mt19937_64& rng);

// Per-channel map from a uint8 pixel value v to the output float: (v / 255 - mean) / std in
// float32, the operations and order of torchvision's ToTensor() then Normalize(), so the
// values are theirs bit for bit ("none": mean 0, std 1, i.e. ToTensor() alone).
struct Normalization {
  float mean[3];
  float std[3];
  float value(int channel, int v) const { return (static_cast<float>(v) / 255.0f - mean[channel]) / std[channel]; }
};
// "imagenet": (v / 255 - mean) / std with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225);
// "clip": the same with CLIP's mean (0.48145466, 0.4578275, 0.40821073), std (0.26862954,
// 0.26130258, 0.27577711); "none": v / 255. Anything else is an error.
Normalization normalization_named(const std::string& name);

// HWC uint8 RGB → CHW float in one pass: out[c][y][x] = normalization.value(c, pixel).
void to_chw_float(const cv::Mat& rgb, const Normalization& normalization, float* out);

class ImageTransform {
 public:
  explicit ImageTransform(TransformConfig config);
  const TransformConfig& config() const { return config_; }
  int output_size() const { return config_.image_size; }
  std::int64_t output_floats() const { return 3LL * config_.image_size * config_.image_size; }

  // Transforms `rgb` (any size; its pixels may be modified) into out[3 × size × size].
  void apply(cv::Mat rgb, std::mt19937_64& rng, float* out) const;

 private:
  TransformConfig config_;
  Normalization normalization_;
};

}  // namespace cprfl
