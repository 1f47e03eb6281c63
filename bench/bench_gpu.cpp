// bench_gpu: the official model (configuration B: ResNet-101 at 448 px, d 2048, 8x512 heads,
// 80 classes, batch 16) on one device, float32 and bf16 autocast:
//   infer  — latency at batch 1 and throughput at batch 16 (folded BatchNorm, cached prompts);
//   train  — Trainer::step on a batch of 16 (ASL, AdamW, EMA), the batch already in memory;
//   agreement_with_cpu — (on a GPU) the same model and images scored there and on the CPU;
//   authors_way — batch-1 inference with the CLIP text encoder run on every forward over all
//            77 positions, as the authors' code does (the same emulation bench_perf times on
//            the CPU), float32.
// Every timed call ends with a device synchronisation, so GPU figures are wall-clock.
//   build/bench/bench_gpu [--device cuda|cuda:N|cpu] [--config B|A] [--reps N] [--train-steps N]
//                         [--out bench/results/gpu.json]
// scripts/gpu_check.sh runs it on a GPU machine; `--device cpu --config A` dry-runs it here.
// Run from the repository root (the prompt files are found through CPRFL_SOURCE_DIR).
#include <torch/torch.h>
#include <torch/version.h>

#include <iostream>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "cprfl/clip/prompts.h"
#include "cprfl/clip/text_encoder.h"
#include "cprfl/clip/token_tensor.h"
#include "cprfl/clip/tokenizer.h"
#include "cprfl/common/autocast.h"
#include "cprfl/common/device.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/model/inference.h"
#include "cprfl/train/trainer.h"
#include "perf_setup.h"
#include "timing.h"

using namespace cprfl;
using namespace cprfl::bench;
using json = nlohmann::json;

namespace {

struct Args {
  std::string device = "cuda";
  std::string config = "B";
  int reps = 20;
  int train_steps = 10;
  std::string out = "bench/results/gpu.json";
};

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// Timed calls that end only when the device has finished their work.
json time_on(const torch::Device& device, const std::function<void()>& call, int warmup, int runs) {
  return summary_of(time_calls(
      [&] {
        call();
        synchronize(device);
      },
      warmup, runs));
}

json case_infer(const Setup& setup, const torch::Device& device, bool bf16, int reps) {
  auto model = make_model(setup);
  model->to(device);
  model->eval();
  prepare_for_inference(*model);
  torch::InferenceMode guard;
  auto forward = [&](const torch::Tensor& images) {
    if (!bf16) return model->forward(images);
    BFloat16Autocast autocast(device);
    return model->forward(images);
  };
  auto one = torch::randn({1, 3, setup.image_size, setup.image_size}).to(device);
  auto sixteen = torch::randn({16, 3, setup.image_size, setup.image_size}).to(device);
  json out;
  out["batch1"] = time_on(device, [&] { forward(one); }, 5, reps);
  out["batch16"] = time_on(device, [&] { forward(sixteen); }, 2, std::max(5, reps / 4));
  out["batch16_images_per_s"] = 16.0 / out["batch16"]["median_s"].get<double>();
  return out;
}

json case_train(const Setup& setup, const torch::Device& device, bool bf16, int steps) {
  Config config = setup.config;
  config.set("train.device", device.str(), "bench");
  config.set("optim.amp", bf16 ? "true" : "false", "bench");
  config.set("optim.amp_cpu", bf16 ? "true" : "false", "bench");
  config.set("optim.accumulate_steps", "1", "bench");
  config.set("data.root", "", "bench");
  // The Trainer wants a list; its images are never read (the batch below is made in memory).
  TrainingData data;
  for (int64_t c = 0; c < setup.classes; ++c) data.class_names.push_back("class" + std::to_string(c));
  std::mt19937 rng(0);
  for (int i = 0; i < setup.train_batch; ++i)
    data.train.records.push_back({"unread" + std::to_string(i) + ".jpg", {static_cast<int>(rng() % setup.classes)}, 0});
  data.test = data.train;
  Trainer trainer(config, data);
  trainer.model().train();
  auto images = torch::randn({setup.train_batch, 3, setup.image_size, setup.image_size});
  auto targets = (torch::rand({setup.train_batch, setup.classes}) < 0.05).to(torch::kFloat);
  if (device.is_cuda()) images = images.pin_memory(), targets = targets.pin_memory();
  json out = time_on(device, [&] { trainer.step(images, targets); }, 3, steps);
  out["batch"] = setup.train_batch;
  out["images_per_s"] = setup.train_batch / out["median_s"].get<double>();
  return out;
}

json case_authors_way(const Setup& setup, const torch::Device& device, int reps) {
  torch::manual_seed(0);
  clip::ClipTextEncoder encoder(clip_rn50_text_architecture());
  encoder->to(device);
  encoder->eval();
  std::vector<std::string> names;
  for (int64_t c = 0; c < setup.classes; ++c) names.push_back(clip::fill_prompt_template(clip::kDefaultPromptTemplate, "class " + std::to_string(c)));
  auto tokens = clip::tokenize_batch(clip::ClipTokenizer::load(), names).to(device);
  auto model = make_model(setup);
  model->to(device);
  model->eval();
  auto image = torch::randn({1, 3, setup.image_size, setup.image_size}).to(device);
  torch::InferenceMode guard;
  auto forward = [&] { authors_way_forward(*model, encoder, tokens, image); };
  return {{"batch1", time_on(device, forward, 3, reps)}};
}

// The same official model and images scored on the CPU (float32) and on `device` in float32
// (TF32 off) and in bf16 autocast: the largest difference relative to the largest |logit|.
json case_agreement(const Setup& setup, const torch::Device& device) {
  auto cpu = make_model(setup), other = make_model(setup);  // same seed: same weights
  other->to(device);  // moved before preparing, as the Predictor does (cached prompts stay put)
  for (auto* model : {&cpu, &other}) (*model)->eval(), prepare_for_inference(**model);
  torch::manual_seed(1);
  auto images = torch::rand({2, 3, setup.image_size, setup.image_size});
  torch::InferenceMode guard;
  auto reference = cpu->forward(images).to(torch::kDouble);
  auto relative = [&](const torch::Tensor& scores) {
    return (scores.to(torch::kCPU, torch::kDouble) - reference).abs().max().item<double>() / reference.abs().max().item<double>();
  };
  json out;
  out["fp32_relative_difference"] = relative(other->forward(images.to(device)));
  {
    BFloat16Autocast autocast(device);
    out["bf16_relative_difference"] = relative(other->forward(images.to(device)).to(torch::kFloat));
  }
  out["fp32_tolerance"] = 1e-3;
  out["bf16_tolerance"] = 5e-2;
  out["passed"] = out["fp32_relative_difference"].get<double>() <= 1e-3 && out["bf16_relative_difference"].get<double>() <= 5e-2;
  return out;
}

int usage() {
  std::cerr << "usage: bench_gpu [--device cuda|cuda:N|cpu] [--config B|A] [--reps N] [--train-steps N] [--out FILE]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) return usage();
    std::string value = argv[++i];
    if (flag == "--device") args.device = value;
    else if (flag == "--config") args.config = value;
    else if (flag == "--reps") args.reps = std::max(5, std::atoi(value.c_str()));
    else if (flag == "--train-steps") args.train_steps = std::max(1, std::atoi(value.c_str()));
    else if (flag == "--out") args.out = value;
    else return usage();
  }
  try {
    const torch::Device device = pick_device(args.device);
    if (device.is_cuda()) allow_cuda_tf32(false);  // float32 is float32 (README, CUDA)
    Setup setup = make_setup(args.config);
    json results;
    results["device"] = device.str();
    results["libtorch"] = TORCH_VERSION;
    results["config"] = setup.name;
    results["description"] = "ResNet-101 at " + std::to_string(setup.image_size) + " px, " + std::to_string(setup.classes) +
                             " classes, train batch " + std::to_string(setup.train_batch) + ", random weights";
    results["method"] = "median of timed calls after warm-up, each ending with a device synchronisation; "
                        "infer: batch 1 (5 warm-up, --reps timed), batch 16 (2 warm-up, reps/4 >= 5 timed); "
                        "train: Trainer::step on an in-memory batch (3 warm-up, --train-steps timed); TF32 off";
    if (device.is_cuda()) {
      std::cerr << "bench_gpu: CPU against " << device.str() << " scores ..." << std::endl;
      results["agreement_with_cpu"] = case_agreement(setup, device);
    }
    for (const char* precision : {"fp32", "bf16"}) {
      const bool bf16 = std::string(precision) == "bf16";
      std::cerr << "bench_gpu: infer " << precision << " ..." << std::endl;
      results["infer"][precision] = case_infer(setup, device, bf16, args.reps);
      std::cerr << "bench_gpu: train " << precision << " ..." << std::endl;
      results["train"][precision] = case_train(setup, device, bf16, args.train_steps);
    }
    std::cerr << "bench_gpu: authors' way ..." << std::endl;
    results["authors_way_fp32"] = case_authors_way(setup, device, std::max(5, args.reps / 2));
    results["speedup_batch1_fp32_vs_authors_way"] = results["authors_way_fp32"]["batch1"]["median_s"].get<double>() /
                                                    results["infer"]["fp32"]["batch1"]["median_s"].get<double>();
    write_file_atomic(args.out, results.dump(2) + "\n");
    std::cout << results.dump(2) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "bench_gpu: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
