// cprfl pretrain-backbone: single-label pretraining of the small ResNet on Fashion-MNIST items.
#include <iostream>
#include <memory>

#include "command.h"
#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/model/build.h"
#include "cprfl/fashion_lt/pretrain.h"

namespace cprfl::app {
namespace {

struct PretrainCommandOptions {
  std::string out = "runs/backbone_small.cprfl";
  std::string fashion_mnist = kFashionMnistDefaultDir;
  std::string widths = "32,64,128";
  std::string blocks = "1,1,1";
  PretrainOptions train;
};

Runner add_pretrain(CLI::App& root) {
  auto options = std::make_shared<PretrainCommandOptions>();
  CLI::App* cmd = root.add_subcommand(
      "pretrain-backbone", "Pretrain the small ResNet as a 10-way classifier on the Fashion-MNIST pretraining pool (train 0-49,999)");
  cmd->add_option("--out", options->out, "where to write the trunk weights (use as model.backbone_weights)");
  cmd->add_option("--fashion-mnist", options->fashion_mnist, "folder with the Fashion-MNIST IDX files");
  cmd->add_option("--widths", options->widths, "channels per stage (must match model.small_widths)");
  cmd->add_option("--blocks", options->blocks, "BasicBlocks per stage (must match model.small_blocks)");
  cmd->add_option("--epochs", options->train.epochs, "epochs over the pool")->check(at_least(1));
  cmd->add_option("--batch-size", options->train.batch_size, "images per step")->check(at_least(1));
  cmd->add_option("--lr", options->train.lr, "peak learning rate (AdamW, OneCycle)");
  cmd->add_option("--val-images", options->train.val_images, "last images of the pool held out for accuracy");
  cmd->add_option("--max-images", options->train.max_train_images, "train on at most this many images (0 = all)");
  cmd->add_option("--seed", options->train.seed, "seed for initialisation, order and augmentation");
  return [options] {
    options->train.widths = parse_int_list(options->widths, "--widths");
    options->train.blocks = parse_int_list(options->blocks, "--blocks");
    auto pool = pretraining_pool(options->fashion_mnist);
    auto result = pretrain_backbone(pool, options->train, options->out);
    std::cout << "pretrain-backbone: held-out accuracy " << 100.0 * result.val_accuracy << "% on "
              << options->train.val_images << " items, " << result.seconds << " s; wrote " << options->out << "\n";
    return 0;
  };
}

RegisterCommand registration("pretrain-backbone", add_pretrain);

}  // namespace
}  // namespace cprfl::app
