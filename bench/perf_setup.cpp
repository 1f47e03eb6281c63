#include "perf_setup.h"

#include <ATen/record_function.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <filesystem>
#include <iostream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/model/inference.h"

namespace cprfl::bench {
namespace {
// ---- FLOP counting: a RecordFunction observer over the matrix-product operators -----------
// Counts 2·MACs of aten::convolution, mm, addmm, bmm, baddbmm (linears and the attention
// matmuls reach these; nothing counted calls another counted op). Elementwise work is left out.
std::atomic<int64_t> g_flops{0};

int64_t flops_of(const at::RecordFunction& fn) {
  const std::string name = fn.name();
  auto inputs = fn.inputs();
  auto sizes = [&](std::size_t i) { return inputs[i].toTensor().sizes().vec(); };
  if (name == "aten::convolution") {
    auto in = sizes(0), weight = sizes(1);
    auto stride = inputs[3].toIntVector(), padding = inputs[4].toIntVector(), dilation = inputs[5].toIntVector();
    int64_t out_pixels = 1;
    for (std::size_t d = 0; d + 2 < in.size(); ++d)
      out_pixels *= (in[d + 2] + 2 * padding[d] - dilation[d] * (weight[d + 2] - 1) - 1) / stride[d] + 1;
    int64_t per_output = 1;
    for (std::size_t d = 1; d < weight.size(); ++d) per_output *= weight[d];
    return 2 * in[0] * weight[0] * out_pixels * per_output;
  }
  if (name == "aten::mm") return 2 * sizes(0)[0] * sizes(0)[1] * sizes(1)[1];
  if (name == "aten::addmm") return 2 * sizes(1)[0] * sizes(1)[1] * sizes(2)[1];
  if (name == "aten::bmm") return 2 * sizes(0)[0] * sizes(0)[1] * sizes(0)[2] * sizes(1)[2];
  if (name == "aten::baddbmm") return 2 * sizes(1)[0] * sizes(1)[1] * sizes(1)[2] * sizes(2)[2];
  return 0;
}

}  // namespace

int64_t count_flops(const std::function<void()>& call) {
  g_flops = 0;
  auto handle = at::addGlobalCallback(
      at::RecordFunctionCallback([](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
        const int64_t flops = flops_of(fn);
        g_flops += flops;
        static const bool trace = std::getenv("CPRFL_BENCH_TRACE_FLOPS") != nullptr;
        if (trace) {
          std::cerr << fn.name() << " " << flops;
          for (const auto& input : fn.inputs())
            if (input.isTensor()) std::cerr << " " << input.toTensor().sizes();
          std::cerr << "\n";
        }
        return nullptr;
      }).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
  call();
  at::removeCallback(handle);
  return g_flops.load();
}

// ---- op profile: wall time per top-level operator -------------------------------------------
// Only operators called from model code (depth 0 on the calling thread) are timed, so nested
// calls are not counted twice; an operator's time includes what it calls (a convolution's
// oneDNN reorders, a linear's matmul).
namespace {
struct OpTiming : at::ObserverContext {
  std::chrono::steady_clock::time_point start;
  bool top_level = false;
};
thread_local int g_op_depth = 0;
std::map<std::string, OpCost>* g_profile = nullptr;
}  // namespace

std::map<std::string, OpCost> profile_ops(const std::function<void()>& call) {
  std::map<std::string, OpCost> profile;
  g_profile = &profile;
  auto handle = at::addGlobalCallback(
      at::RecordFunctionCallback(
          [](const at::RecordFunction&) -> std::unique_ptr<at::ObserverContext> {
            auto context = std::make_unique<OpTiming>();
            context->top_level = g_op_depth++ == 0;
            context->start = std::chrono::steady_clock::now();
            return context;
          },
          [](const at::RecordFunction& fn, at::ObserverContext* context) {
            --g_op_depth;
            auto* timing = static_cast<OpTiming*>(context);
            if (!timing->top_level) return;
            auto& cost = (*g_profile)[fn.name()];
            cost.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - timing->start).count();
            ++cost.calls;
          })
          .scopes({at::RecordScope::FUNCTION}));
  call();
  at::removeCallback(handle);
  g_profile = nullptr;
  return profile;
}

// ---- the two configurations ---------------------------------------------------------------


Setup make_setup(const std::string& name) {
  Setup setup;
  setup.name = name;
  const std::string root = CPRFL_SOURCE_DIR;
  if (name == "A") {
    setup.config.merge_yaml_file(root + "/configs/fashion_lt.yaml");
    setup.config.set("prompts.file", root + "/data/prompts/fashion_clip_rn50.npy", "bench");
    setup.classes = 10;
    setup.file_width = setup.file_height = 64;
  } else {
    setup.config.merge_yaml_file(root + "/configs/coco_lt.yaml");
    setup.config.set("prompts.file", root + "/data/prompts/coco_clip_rn50.npy", "bench");
    setup.classes = 80;
    setup.file_width = 640, setup.file_height = 480;  // a typical COCO photo
  }
  setup.config.set("model.backbone_weights", "", "bench");  // random weights
  setup.image_size = static_cast<int>(setup.config.get_int("data.image_size"));
  setup.train_batch = static_cast<int>(setup.config.get_int("optim.batch_size"));
  setup.micro_batch = setup.train_batch;
  return setup;
}

std::shared_ptr<MultiLabelClassifier> make_model(const Setup& setup) {
  torch::manual_seed(0);
  return build_model(setup.config, setup.classes, load_prompt_embeddings(setup.config, setup.classes));
}

// The inference variants, cumulative: each adds one optimisation to the one before.
extern const std::vector<std::string> kInferenceVariants;
const std::vector<std::string> kInferenceVariants = {"no_grad_full_vsi", "inference_mode_full_vsi", "inference_mode",
                                                     "fold_bn", "fold_bn_channels_last",
                                                     "fold_bn_channels_last_bf16"};


// The forward as it was before the VSI changes: every layer over all v + c rows (prompt
// projections recomputed per image), then the prompt rows kept.
torch::Tensor full_vsi_forward(CprflModelImpl& model, const torch::Tensor& images) {
  auto prompts = model.prompts();
  auto tokens = model.visual_tokens(images);
  const int64_t batch = tokens.size(0);
  auto z = torch::cat({tokens, prompts.unsqueeze(0).expand({batch, -1, -1})}, 1);
  for (const auto& layer : *model.attention->layers) z = layer->as<InteractionLayerImpl>()->forward(z);
  return CprflModelImpl::score(z.slice(1, tokens.size(1)), prompts);
}

InferenceModel make_inference_model(const Setup& setup, const std::string& variant) {
  InferenceModel out{make_model(setup), true, {}};
  out.model->eval();
  auto* cprfl_model = dynamic_cast<CprflModelImpl*>(out.model.get());
  if (variant.find("full_vsi") != std::string::npos && cprfl_model)
    out.forward = [cprfl_model](const torch::Tensor& images) { return full_vsi_forward(*cprfl_model, images); };
  else
    out.forward = [model = out.model.get()](const torch::Tensor& images) { return model->forward(images); };
  out.inference_mode = variant != "no_grad_full_vsi";
  InferenceOptions options;
  options.fold_batchnorm = variant.rfind("fold_bn", 0) == 0;
  options.channels_last = variant.find("channels_last") != std::string::npos;
  const bool bf16 = variant.size() > 5 && variant.compare(variant.size() - 5, 5, "_bf16") == 0;
  options.precision = bf16 ? Precision::bf16 : Precision::fp32;
  if (options.fold_batchnorm || options.channels_last || bf16) prepare_for_inference(*out.model, options);
  return out;
}

// Runs `body` under InferenceMode or, for the baseline, NoGradGuard.
void with_mode(bool inference_mode, const std::function<void()>& body) {
  if (inference_mode) {
    torch::InferenceMode guard;
    body();
  } else {
    torch::NoGradGuard guard;
    body();
  }
}

// Writes `count` image files of the setup's size (smooth colour fields plus noise, so the
// codec does realistic work) and returns their paths.
std::vector<std::string> write_images(const Setup& setup, const std::string& folder, int count) {
  std::filesystem::create_directories(folder);
  std::vector<std::string> paths;
  cv::RNG rng(1);
  for (int i = 0; i < count; ++i) {
    cv::Mat small(8, 8, CV_8UC3), image, noise(setup.file_height, setup.file_width, CV_8UC3);
    rng.fill(small, cv::RNG::UNIFORM, 0, 255);
    cv::resize(small, image, {setup.file_width, setup.file_height}, 0, 0, cv::INTER_CUBIC);
    rng.fill(noise, cv::RNG::NORMAL, 0, 12);
    image += noise;
    const std::string path = folder + "/img" + std::to_string(i) + (setup.name == "A" ? ".png" : ".jpg");
    cv::imwrite(path, image);
    paths.push_back(path);
  }
  return paths;
}

std::string temp_folder(const std::string& tag) {
  auto path = std::filesystem::temp_directory_path() / ("cprfl_bench_" + tag + "_" + std::to_string(getpid()));
  return path.string();
}

clip::ClipTextArchitecture clip_rn50_text_architecture() {
  clip::ClipTextArchitecture architecture;
  architecture.context_length = 77;
  architecture.vocab_size = 49408;
  architecture.width = 512;
  architecture.layers = 12;
  architecture.heads = 8;
  architecture.embed_dim = 1024;  // RN50's text projection = the width of W in data/prompts/*_clip_rn50.npy
  return architecture;
}

torch::Tensor authors_way_forward(MultiLabelClassifier& model, clip::ClipTextEncoder& encoder, const torch::Tensor& tokens,
                                  const torch::Tensor& images) {
  auto* cprfl_model = dynamic_cast<CprflModelImpl*>(&model);
  if (!cprfl_model) throw std::runtime_error("the authors' way needs a CPRFL model");
  auto prompts = cprfl_model->label_emb->forward(encoder->encode_all_positions(tokens));
  auto visual = cprfl_model->visual_tokens(images);
  auto z = torch::cat({visual, prompts.unsqueeze(0).expand({visual.size(0), -1, -1})}, 1);
  for (const auto& layer : *cprfl_model->attention->layers) z = layer->as<InteractionLayerImpl>()->forward(z);
  return CprflModelImpl::score(z.slice(1, visual.size(1)), prompts);
}

}  // namespace cprfl::bench
