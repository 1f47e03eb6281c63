// bench_perf's cases for the number formats and for data-parallel runs: the machine's
// float32/bf16 limits, the per-operator profile of both inference forms, and the all-reduce of
// one step's gradients between processes. Split from bench/bench_perf.cpp (the driver and the
// other cases).
#include "perf_cases.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

#include "cprfl/dist/environment.h"
#include "timing.h"

namespace cprfl::bench {
namespace {

double median_of(const json& j) { return j.at("median_s").get<double>(); }  // of a summary_of

}  // namespace

// The machine's matrix-product limits in this run: a large GEMM (mm 2048³) and a ResNet-sized
// convolution (16×256×56×56, 3×3, 256 filters, channels-last), each in float32 and bf16.
json case_limits(int reps) {
  json out;
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    const std::string suffix = dtype == torch::kFloat ? "fp32" : "bf16";
    const int64_t n = 2048;
    auto a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
    auto mm = summary_of(time_calls([&] { torch::mm(a, b); }, 3, reps));
    out["mm_" + suffix] = {{"size", n}, {"time", mm}, {"gflops", 2.0 * n * n * n / median_of(mm) / 1e9}};
    auto input = torch::randn({16, 256, 56, 56}).to(dtype).contiguous(torch::MemoryFormat::ChannelsLast);
    auto weight = torch::randn({256, 256, 3, 3}).to(dtype).contiguous(torch::MemoryFormat::ChannelsLast);
    torch::InferenceMode guard;
    auto conv = summary_of(time_calls([&] { torch::conv2d(input, weight, {}, 1, 1); }, 2, std::max(5, reps / 4)));
    const double conv_flops = 2.0 * 16 * 256 * 56 * 56 * 256 * 9;
    out["conv_" + suffix] = {{"shape", "16x256x56x56, 3x3, 256 filters, channels-last"}, {"time", conv},
                             {"gflops", conv_flops / median_of(conv) / 1e9}};
  }
  return out;
}

// Where an inference forward's time goes (batch 16; B: batch 4), float32 against bf16, per
// top-level operator; dtype conversions (aten::to, aten::_to_copy, aten::copy_) are counted
// to show that bf16 layers hand bf16 to each other.
json case_profile(const Setup& setup) {
  json out;
  const int64_t batch = setup.name == "A" ? 16 : 4;
  for (const std::string variant : {"fold_bn_channels_last", "fold_bn_channels_last_bf16"}) {
    auto m = make_inference_model(setup, variant);
    auto images = torch::randn({batch, 3, setup.image_size, setup.image_size});
    torch::InferenceMode guard;
    m.forward(images);
    m.forward(images);  // warm: oneDNN primitives made, prompt cache filled
    auto profile = profile_ops([&] { m.forward(images); });
    double total = 0;
    for (const auto& [name, cost] : profile) total += cost.seconds;
    std::vector<std::pair<std::string, OpCost>> ranked(profile.begin(), profile.end());
    std::sort(ranked.begin(), ranked.end(), [](auto& a, auto& b) { return a.second.seconds > b.second.seconds; });
    json ops = json::array();
    for (const auto& [name, cost] : ranked)
      ops.push_back({{"op", name}, {"calls", cost.calls}, {"ms", 1e3 * cost.seconds}, {"share", cost.seconds / total}});
    int64_t conversions = 0;
    for (const char* name : {"aten::to", "aten::_to_copy", "aten::copy_"})
      if (profile.count(name)) conversions += profile.at(name).calls;
    out[variant] = {{"batch", batch}, {"total_ms", 1e3 * total}, {"dtype_conversion_calls", conversions}, {"ops", ops}};
  }
  return out;
}

// Run as one rank of a data-parallel run (bench_perf --nproc N re-launches the case as N
// processes): joins the others over Gloo on loopback.
std::unique_ptr<Communicator> join_if_launched() {
  const DistEnvironment env = read_dist_environment();
  if (!env.distributed()) return nullptr;
  return std::make_unique<Communicator>(env, "gloo", std::chrono::minutes(10));
}

// The all-reduce of one step's gradients alone, as a data-parallel run of this configuration
// makes it (every trainable parameter, float32), over Gloo on loopback: one flat tensor.
json case_allreduce(const Setup& setup, int runs) {
  auto communicator = join_if_launched();
  if (!communicator) throw std::runtime_error("allreduce: run with --nproc 2 (a data-parallel case)");
  int64_t count = 0;
  for (const auto& parameter : make_model(setup)->parameters())
    if (parameter.requires_grad()) count += parameter.numel();
  auto gradients = torch::randn({count});
  auto summary = summary_of(time_calls([&] { communicator->all_reduce_sum(gradients); }, 1, runs));
  const double bytes = 4.0 * static_cast<double>(count);
  // A ring all-reduce moves 2·(N−1)/N of the data through each process.
  const double ranks = communicator->world_size();
  return {{"parameters", count}, {"mb", bytes / 1e6}, {"ranks", communicator->world_size()}, {"time", summary},
          {"bus_gb_per_s", 2.0 * (ranks - 1) / ranks * bytes / median_of(summary) / 1e9}};
}

}  // namespace cprfl::bench
