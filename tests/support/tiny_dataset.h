#pragma once
// A tiny, learnable multi-label image set for trainer tests: 32×32 PNGs where class c draws
// a coloured square in a fixed place, written with its list and labels files.
#include <string>

#include "cprfl/config/config.h"

namespace cprfl::testing {

// Writes <dir>/img/*.png, train.txt (train_images lines), test.txt (test_images), labels.txt (4 classes).
void write_tiny_dataset(const std::string& dir, int train_images = 24, int test_images = 12);

// A config that trains a very small CPRFL on that set in a second or two.
Config tiny_config(const std::string& data_dir, const std::string& out_dir);

}  // namespace cprfl::testing
