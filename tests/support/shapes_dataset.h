#pragma once
// An easy, learnable multi-label image set for "does training learn" tests: 32×32 PNGs on a
// dark background, each showing 1–3 of 5 classes; class c is always drawn in its own colour
// (red, green, blue, yellow, magenta), as a random shape (disc, square or triangle) of random
// size in a random one of the four quadrants (one shape per quadrant, so none is hidden).
// The colour alone tells the class; shape, size and place are nuisance.
#include <cstdint>
#include <string>

#include "cprfl/config/config.h"

namespace cprfl::testing {

constexpr int kShapesClasses = 5;

// Writes <dir>/img/<i>.png, train.txt (the first train_images), test.txt (the next
// test_images) and labels.txt. Deterministic in `seed`.
void write_shapes_dataset(const std::string& dir, int train_images = 192, int test_images = 48,
                          std::uint32_t seed = 2024);

// A small, randomly initialised model (small backbone 16,32,32; d 32, 4 heads, no dropout)
// and a short run on that set: batch 16, 6 epochs, OneCycle to 1e-2, ASL, no augmentation, no
// EMA, the backbone at the head's learning rate since nothing is pretrained. About a second
// per run on one core with the default 192 training images.
Config shapes_config(const std::string& data_dir, const std::string& out_dir, const std::string& model_type);

}  // namespace cprfl::testing
