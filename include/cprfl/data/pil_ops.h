#pragma once
// Pillow-like colour operations on 8-bit RGB images (CV_8UC3), in place. Defined in
// src/data/transforms.cpp; used by the fixed-magnitude RandAugment there and by the
// authors' RandAugment (asl_augment.h).
//
// They follow ImageOps / ImageEnhance, with these differences from Pillow 9.4 (measured on
// tests/fixtures/asl_augment and on 448 × 448 images):
//   * the ImageEnhance blends round to nearest where Image.blend truncates, and the greyscale
//     of Color/Contrast is OpenCV's (other fixed-point weights than convert("L")): Color,
//     Contrast, Brightness, Sharpness differ by 1 (Color: up to 2) in 15–50 % of the values;
//   * auto_contrast computes floor((v - lo) · 255 / (hi - lo)) where Pillow computes
//     int(v · scale + offset), which is 1 lower for 0.14 % of (lo, hi, v) combinations;
//   * equalize matches.
#include <array>
#include <cstdint>

#include <opencv2/core.hpp>

namespace cprfl {

// Applies the same 256-entry table to all three channels.
void apply_lut(cv::Mat& rgb, const std::array<std::uint8_t, 256>& table);

// ImageOps.autocontrast(image) (cutoff 0): each channel stretched from its darkest to its
// brightest value onto 0..255.
void auto_contrast(cv::Mat& rgb);
// ImageOps.equalize(image): per-channel histogram equalisation.
void equalize(cv::Mat& rgb);

// ImageEnhance.Color / Contrast / Brightness / Sharpness(image).enhance(factor).
void adjust_color(cv::Mat& rgb, double factor);
void adjust_contrast(cv::Mat& rgb, double factor);
void adjust_brightness(cv::Mat& rgb, double factor);
void adjust_sharpness(cv::Mat& rgb, double factor);

}  // namespace cprfl
