// Throughput of the Fashion-LT-sized models on this machine's CPU: the small ResNet trunk
// (two depths), CPRFL on it (train step, and inference with the cached prompts) against the
// linear-head baseline, and ResNet-101 latency at 448 px for reference.
// Usage: bench_model [--threads N] [--out bench/results/model.json]
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "cprfl/model/backbone_registry.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/loss/losses.h"
#include "cprfl/model/cprfl.h"
#include "timing.h"

using namespace cprfl;

namespace {

// Seconds per call: three warm-up calls (the first calls of a process set up oneDNN
// primitives and the thread pool), then the median of `repeats` timed calls (the machine is
// shared, so the median is steadier than the mean).
double seconds_per_call(const std::function<void()>& call, int repeats) {
  return bench::median_of(bench::time_calls(call, 3, repeats));
}

double train_images_per_second(MultiLabelClassifier& model, int batch, int size, int repeats) {
  model.train();
  torch::optim::AdamW optimizer(model.parameters(), torch::optim::AdamWOptions(1e-4));
  AsymmetricLoss loss;
  auto images = torch::randn({batch, 3, size, size});
  auto targets = (torch::rand({batch, model.num_classes()}) < 0.3).to(torch::kFloat);
  double seconds = seconds_per_call([&] {
    optimizer.zero_grad();
    loss(model.forward(images), targets).backward();
    optimizer.step();
  }, repeats);
  return batch / seconds;
}

double inference_images_per_second(MultiLabelClassifier& model, int batch, int size, int repeats) {
  model.eval();
  torch::InferenceMode inference;
  auto images = torch::randn({batch, 3, size, size});
  return batch / seconds_per_call([&] { model.forward(images); }, repeats);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  std::string out = "bench/results/model.json";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--threads") threads = std::atoi(argv[i + 1]);
    else if (flag == "--out") out = argv[i + 1];
    else {
      std::cerr << "usage: bench_model [--threads N] [--out FILE]\n";
      return 2;
    }
  }
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  const int batch = 32, classes = 10, repeats = 9;
  nlohmann::json results;
  results["threads"] = threads;
  results["image_size"] = 64;
  results["batch"] = batch;
  results["method"] =
      "images/s = batch / median of 9 calls after 3 warm-up calls; train = forward + ASL + backward + AdamW step; "
      "inference under InferenceMode (CPRFL with cached prompts); CPRFL head d=256, 4x64 heads, FFN 512, c=10, m=1024; "
      "the machine's 2 cores are shared, so figures move by about 20% between runs";

  struct Variant {
    std::string tag;
    std::vector<int64_t> blocks;
    int64_t stem_stride;
  };
  for (const auto& variant : std::vector<Variant>{{"small_blocks111_stem2", {1, 1, 1}, 2},
                                                  {"small_blocks111_stem1", {1, 1, 1}, 1},
                                                  {"small_blocks222_stem2", {2, 2, 2}, 2}}) {
    SmallResNetOptions small;
    small.blocks = variant.blocks;
    small.stem_stride = variant.stem_stride;
    const std::string& tag = variant.tag;
    const int size = 64;  // 8x8 tokens for every variant

    LinearHeadModel linear(make_backbone("small", small).module, classes);
    results[tag]["linear_head"]["train_images_per_s"] = train_images_per_second(*linear, batch, size, repeats);
    results[tag]["linear_head"]["inference_images_per_s"] = inference_images_per_second(*linear, batch, size, repeats);

    CprflOptions options;  // a Fashion-LT-sized head: d = 256, 4 heads x 64, FFN 512
    options.dim = 256;
    options.interaction.heads = 4;
    options.interaction.head_dim = 64;
    options.interaction.ffn_dim = 512;
    CprflModel cprfl_model(make_backbone("small", small).module, torch::randn({classes, 1024}), options);
    results[tag]["cprfl"]["train_images_per_s"] = train_images_per_second(*cprfl_model, batch, size, repeats);
    results[tag]["cprfl"]["inference_images_per_s"] = inference_images_per_second(*cprfl_model, batch, size, repeats);
    std::cerr << tag << ": " << results[tag].dump() << "\n";
  }

  {
    auto resnet = make_backbone("resnet101").module;
    resnet->eval();
    torch::InferenceMode inference;
    auto image = torch::randn({1, 3, 448, 448});
    results["resnet101_448_forward_seconds"] = seconds_per_call([&] { resnet->forward(image); }, 3);
  }
  write_file_atomic(out, results.dump(2) + "\n");
  std::cout << results.dump(2) << "\n";
  return 0;
}
