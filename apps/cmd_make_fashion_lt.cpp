// cprfl make-fashion-lt: builds the Fashion-LT benchmark (scenes, list files, stats) from
// the Fashion-MNIST files Debian installs, and prints its statistics.
#include <algorithm>
#include <iostream>
#include <memory>
#include <thread>

#include "command.h"
#include "cprfl/fashion_lt/fashion_lt.h"

namespace cprfl::app {
namespace {

struct MakeFashionLtOptions {
  std::string out;
  std::string fashion_mnist = kFashionMnistDefaultDir;
  std::uint64_t seed = 0;
  // --workers N: N threads encode PNGs, as in eval and predict (N decoding threads); 0 = none
  // beside the main one, which here is the same as 1. Default: one per core.
  int workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
};

Runner add_make_fashion_lt(CLI::App& root) {
  auto options = std::make_shared<MakeFashionLtOptions>();
  CLI::App* cmd = root.add_subcommand(
      "make-fashion-lt",
      "Build Fashion-LT: long-tailed multi-label 64×64 scenes of Fashion-MNIST items, with VOC-LT-style lists");
  cmd->add_option("--out", options->out, "output folder (images/, train.txt, test.txt, labels.txt, stats.json)")
      ->required();
  cmd->add_option("--seed", options->seed, "random seed; the same seed gives byte-identical output");
  cmd->add_option("--fashion-mnist", options->fashion_mnist,
                  "folder with the Fashion-MNIST IDX files (Debian package dataset-fashion-mnist)");
  cmd->add_option("--workers", options->workers,
                  "threads encoding the PNGs (default: one per core; 0 = none beside the main thread: one at a time)")
      ->check(at_least(0));
  return [options] {
    FashionLtConfig config;
    config.seed = options->seed;
    // build_fashion_lt takes 0 as "all cores"; --workers 0 means one thread at a time.
    auto benchmark = build_fashion_lt(options->fashion_mnist, options->out, config, std::max(1, options->workers));
    std::cout << format_fashion_lt_report(benchmark, options->fashion_mnist, options->out);
    return 0;
  };
}

RegisterCommand registration("make-fashion-lt", add_make_fashion_lt);

}  // namespace
}  // namespace cprfl::app
