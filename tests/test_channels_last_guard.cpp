// train.channels_last on a trunk with fewer than 16 channels in a convolution: Debian's
// LibTorch 1.13 (oneDNN) crashed in convolution backward there (small trunk, widths 8,16,16,
// 96 px: SIGSEGV on every run). The guard in model/inference.h leaves such trunks as they are.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "cprfl/model/inference.h"
#include "cprfl/model/resnet.h"
#include "cprfl/train/trainer.h"
#include "support/test_support.h"
#include "support/tiny_dataset.h"

namespace cprfl {
namespace {

int channels_last_weights(torch::nn::Module& module) {
  int n = 0;
  for (const auto& p : module.parameters()) n += p.dim() == 4 && p.is_contiguous(torch::MemoryFormat::ChannelsLast) && !p.is_contiguous();
  return n;
}

TEST(ChannelsLastGuard, NarrowTrunksStayInTheDefaultLayoutWideOnesConvert) {
  SmallResNetOptions narrow;
  narrow.widths = {8, 16, 16};
  auto narrow_trunk = std::make_shared<SmallResNetImpl>(narrow);
  EXPECT_FALSE(channels_last_is_safe(*narrow_trunk));
  EXPECT_FALSE(convert_to_channels_last(*narrow_trunk));
  EXPECT_EQ(channels_last_weights(*narrow_trunk), 0);

  SmallResNetOptions wide;
  wide.widths = {16, 32, 64};
  auto wide_trunk = std::make_shared<SmallResNetImpl>(wide);
  EXPECT_TRUE(convert_to_channels_last(*wide_trunk));
  EXPECT_GT(channels_last_weights(*wide_trunk), 5);
}

// The configuration that crashed: training completes (a crash would kill this test binary).
TEST(ChannelsLastGuard, NarrowTrunkTrainsAt96Pixels) {
  testing::TempDir dir;
  testing::write_tiny_dataset(dir.file("data"), 96, 8);  // as many as crashed every time
  auto config = testing::tiny_config(dir.file("data"), dir.file("run"));
  config.set("data.image_size", "96", "test");
  config.set("optim.epochs", "1", "test");
  config.set("train.channels_last", "true", "test");
  RunControl options;
  options.progress = false;
  EXPECT_EQ(train(config, options).epochs_run, 1);
}

}  // namespace
}  // namespace cprfl
