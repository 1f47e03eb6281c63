#pragma once
// Pillow's Image.resize((width, height), Image.BILINEAR / Image.BICUBIC) on 8-bit images,
// reproduced pixel for pixel (the reference code resizes with PIL; cv::resize rounds
// differently and, when shrinking, does not widen the filter, so it does not match).
//
// The algorithm is Pillow's libImaging/Resample.c (unchanged in its 8-bit path from
// Pillow 9.4, Debian 12's python3-pil, to 12.x): a separable convolution, horizontal pass
// first into an 8-bit intermediate, then the vertical pass; fixed-point coefficients with
// 22 fractional bits. The fixtures in tests/fixtures/pil_resize were made by Pillow.
//
// Not reproduced: Pillow ≥ 12.2 resizes images taller than 100 × their width vertically
// first when it shrinks their height (Image.py); that order is not Pillow 9.4's, and the
// 8-bit intermediate makes the two orders differ slightly.
#include <opencv2/core.hpp>

namespace cprfl {

enum class PilFilter {
  bilinear,  // triangle filter, support 1 (widened by the scale when shrinking)
  bicubic,   // cubic convolution with a = -0.5, support 2
};

// Returns a new width × height image. Accepts CV_8UC3 (any channel order: channels are
// independent) and CV_8UC1. An unchanged size returns a copy, as Image.resize does.
// Throws cprfl::Error for another type, an empty image or a non-positive size.
cv::Mat pil_resize(const cv::Mat& image, int width, int height, PilFilter filter);

}  // namespace cprfl
