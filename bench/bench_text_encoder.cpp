// CLIP text encoder on the 80 COCO-LT class prompts ("a photo of a {}.", `_` → space), RN50
// sized (width 512, 12 layers, 8 heads, embedding 1024, random weights): all 77 positions as
// OpenAI's encode_text runs them, against the exact early stop at max(end)+1 positions.
// Usage: bench_text_encoder [--threads N] [--repeats R] [--labels FILE] [--out bench/results/text_encoder.json]
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "cprfl/clip/prompts.h"
#include "cprfl/clip/text_encoder.h"
#include "cprfl/clip/token_tensor.h"
#include "cprfl/data/list_file.h"
#include "cprfl/io/atomic_file.h"
#include "timing.h"

using namespace cprfl;

namespace {

// Median seconds of `repeats` timed calls after one warm-up call (the machine is shared, so
// the median is steadier than the mean).
double seconds_per_call(const std::function<void()>& call, int repeats) {
  return bench::median_of(bench::time_calls(call, 1, repeats));
}

// Multiply-adds x 2 of the encoder on `prompts` sequences of `length` positions: per layer
// and position the q/k/v/out projections (4w^2) and the MLP (8w^2), per layer the scores
// and the weighted sum (2 L^2 w), then the final projection at one position.
double flops(const clip::ClipTextArchitecture& a, int64_t prompts, int64_t length) {
  const double w = static_cast<double>(a.width), l = static_cast<double>(length);
  const double per_layer = 12 * w * w * l + 2 * l * l * w;
  return 2 * static_cast<double>(prompts) * (static_cast<double>(a.layers) * per_layer + w * static_cast<double>(a.embed_dim));
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  int repeats = 5;
  std::string labels = std::string(CPRFL_SOURCE_DIR) + "/data/benchmarks/coco_lt/labels.txt";
  std::string out = "bench/results/text_encoder.json";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--threads") threads = std::atoi(argv[i + 1]);
    else if (flag == "--repeats") repeats = std::max(1, std::atoi(argv[i + 1]));
    else if (flag == "--labels") labels = argv[i + 1];
    else if (flag == "--out") out = argv[i + 1];
    else {
      std::cerr << "usage: bench_text_encoder [--threads N] [--repeats R] [--labels FILE] [--out FILE]\n";
      return 2;
    }
  }
  try {
    torch::set_num_threads(threads);
    torch::manual_seed(0);
    clip::ClipTextArchitecture rn50;
    rn50.context_length = 77;
    rn50.vocab_size = clip::kVocabularySize;
    rn50.width = 512;
    rn50.layers = 12;
    rn50.heads = 8;
    rn50.embed_dim = 1024;
    clip::ClipTextEncoder encoder(rn50);
    encoder->eval();

    std::vector<std::string> prompts;
    for (const auto& name : read_labels(labels)) prompts.push_back(clip::fill_prompt_template(clip::kDefaultPromptTemplate, name));
    auto tokens = clip::tokenize_batch(clip::ClipTokenizer::load(), prompts);
    const int64_t count = tokens.size(0);
    const int64_t positions = tokens.argmax(-1).max().item<int64_t>() + 1;

    torch::InferenceMode inference;
    const double full = seconds_per_call([&] { encoder->encode_all_positions(tokens); }, repeats);
    const double early = seconds_per_call([&] { encoder->encode(tokens); }, repeats);
    const float max_abs_diff =
        (encoder->encode(tokens) - encoder->encode_all_positions(tokens)).abs().max().item<float>();

    nlohmann::json results;
    results["threads"] = threads;
    results["device"] = "cpu";
    results["prompts"] = count;
    results["labels"] = "data/benchmarks/coco_lt/labels.txt";
    results["template"] = clip::kDefaultPromptTemplate;
    results["encoder"] = {{"width", rn50.width}, {"layers", rn50.layers}, {"heads", rn50.heads},
                          {"embed_dim", rn50.embed_dim}, {"context_length", rn50.context_length}};
    results["early_stop_positions"] = positions;
    results["full_77"] = {{"seconds", full}, {"gflop", flops(rn50, count, 77) / 1e9},
                          {"gflop_per_s", flops(rn50, count, 77) / 1e9 / full}};
    results["early_stop"] = {{"seconds", early}, {"gflop", flops(rn50, count, positions) / 1e9},
                             {"gflop_per_s", flops(rn50, count, positions) / 1e9 / early}};
    results["speedup"] = full / early;
    results["max_abs_diff"] = max_abs_diff;
    results["method"] = "seconds for all " + std::to_string(count) +
                        " prompts in one batch = median of " + std::to_string(repeats) +
                        " calls after one warm-up call, InferenceMode, float32, random CLIP-initialised weights; "
                        "GFLOP counts multiply-adds x2 of the projections, MLP and attention; the machine's 2 cores "
                        "are shared with other jobs, so figures move between runs";
    std::cout << results.dump(2) << "\n";
    const std::string folder = std::filesystem::path(out).parent_path().string();
    if (!folder.empty()) make_directories(folder);
    write_file_atomic(out, results.dump(2) + "\n");
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
