#pragma once
// W, the prompt embeddings [C, m] of a new run, as float32: read from a .npy (one row per
// class), computed once by a CLIP text encoder from the class names and a template, or random
// normal rows scaled to a CLIP-like norm (the paper's ablation). A trained model keeps its W
// in the model file; this runs only when a run starts.
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "cprfl/config/config.h"
#include "cprfl/config/options.h"

namespace cprfl {

// `labels` is the labels file (for source clip, the class names); `seed` seeds a randn W.
torch::Tensor load_prompt_embeddings(const PromptOptions& options, const std::string& labels, int64_t num_classes,
                                     uint64_t seed);

// The same from a configuration's prompts.*, data.labels and train.seed.
torch::Tensor load_prompt_embeddings(const Config& config, int64_t num_classes);

}  // namespace cprfl
