#include "cprfl/config/prompt_setup.h"

#include "cprfl/clip/prompts.h"
#include "cprfl/common/error.h"
#include "cprfl/data/list_file.h"
#include "cprfl/io/npy.h"

namespace cprfl {

torch::Tensor load_prompt_embeddings(const PromptOptions& options, const std::string& labels, int64_t num_classes,
                                     uint64_t seed) {
  if (options.source == "npy") {
    const std::string& path = options.file;
    auto embeddings = read_npy(path);
    if (embeddings.dim() != 2)
      fail_in(path, "prompt embeddings must be a 2-D array [classes, width], got " + std::to_string(embeddings.dim()) + "-D");
    if (embeddings.size(0) != num_classes) {
      fail_in(path, "has " + std::to_string(embeddings.size(0)) + " rows but the labels file has " +
                        std::to_string(num_classes) + " classes");
    }
    return embeddings.to(torch::kFloat).contiguous();
  }
  if (options.source == "clip") {
    // The text encoder runs once here; W is then stored in the model file like any other W.
    if (options.checkpoint.empty()) throw Error("prompts.source = clip needs prompts.checkpoint (a CLIP checkpoint file)");
    auto names = read_labels(labels);
    if (static_cast<int64_t>(names.size()) != num_classes)
      fail_in(labels, "has " + std::to_string(names.size()) + " classes but the model has " + std::to_string(num_classes));
    return clip::encode_class_prompts(options.checkpoint, names, options.prompt_template);
  }
  // randn: the paper's ablation. Rows rescaled to a CLIP-like norm, since the scale of W
  // matters to PI (docs/METHOD.md §2).
  auto generator = at::detail::createCPUGenerator(seed + 7919);
  auto w = at::randn({num_classes, options.randn_dim}, generator, torch::kFloat);
  return w / w.norm(2, 1, true) * options.randn_norm;
}

torch::Tensor load_prompt_embeddings(const Config& config, int64_t num_classes) {
  RunOptions run = run_options_of(config);
  return load_prompt_embeddings(run.prompts, run.data.labels, num_classes, run.train.seed);
}

}  // namespace cprfl
