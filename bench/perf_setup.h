#pragma once
// What bench_perf's cases share: the FLOP counter, the two measured configurations (A: the
// Fashion-LT demo; B: the paper's COCO-LT model), the inference variants, and image files to
// read. Split from bench/bench_perf.cpp, which holds the cases and the driver.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cprfl/clip/text_encoder.h"
#include "cprfl/config/config.h"
#include "cprfl/model/classifier.h"

namespace cprfl::bench {

// 2·MACs of the matrix products (convolution, mm, addmm, bmm, baddbmm) run by `call`.
int64_t count_flops(const std::function<void()>& call);

// Wall time and calls per top-level operator (aten::convolution, aten::linear, aten::to, …)
// over one run of `call`, from a RecordFunction observer.
struct OpCost {
  double seconds = 0;
  int64_t calls = 0;
};
std::map<std::string, OpCost> profile_ops(const std::function<void()>& call);

struct Setup {
  std::string name;       // "A" | "B"
  Config config;
  int64_t classes = 0;
  int image_size = 0;
  int file_width = 0, file_height = 0;  // size of the image files written for the file cases
  int train_batch = 0;                  // the configured batch
  int micro_batch = 0;                  // images per forward/backward (accumulated to train_batch)
};

Setup make_setup(const std::string& name);
std::shared_ptr<MultiLabelClassifier> make_model(const Setup& setup);

// The inference variants, cumulative: each adds one optimisation to the one before (the last,
// "…_bf16", converts the image side to bf16: model/inference.h).
extern const std::vector<std::string> kInferenceVariants;

struct InferenceModel {
  std::shared_ptr<MultiLabelClassifier> model;
  bool inference_mode = true;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
};
InferenceModel make_inference_model(const Setup& setup, const std::string& variant);

// Runs `body` under InferenceMode or, for the baseline, NoGradGuard.
void with_mode(bool inference_mode, const std::function<void()>& body);

// Writes `count` image files of the setup's size (smooth colour fields plus noise, so the
// codec does realistic work) and returns their paths.
std::vector<std::string> write_images(const Setup& setup, const std::string& folder, int count);

std::string temp_folder(const std::string& tag);

// The authors' way of scoring (the benchmarks' peer): the frozen CLIP RN50 text tower run on
// every forward over all 77 positions, its rows through PI, then VSI over all v + c rows.
clip::ClipTextArchitecture clip_rn50_text_architecture();
torch::Tensor authors_way_forward(MultiLabelClassifier& model, clip::ClipTextEncoder& encoder, const torch::Tensor& tokens,
                                  const torch::Tensor& images);

}  // namespace cprfl::bench
