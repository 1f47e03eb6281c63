#pragma once
// Builds the classifier a Config describes (backbone + CPRFL or linear head), and the
// prompt embeddings W it needs. The same function rebuilds a saved model from the config,
// W and the class count stored in its model file.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "cprfl/model/classifier.h"
#include "cprfl/model/resnet.h"
#include "cprfl/config/config.h"

namespace cprfl {

// "32,64,128" → {32, 64, 128}; `field` names the config key in errors.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& field);

SmallResNetOptions small_backbone_options(const Config& config);

// W [C, m] as float32: read from prompts.file (rows must equal num_classes), computed by the
// text encoder of prompts.checkpoint from data.labels and prompts.template, or random
// normal rows scaled to prompts.randn_norm (seeded by train.seed).
torch::Tensor load_prompt_embeddings(const Config& config, int64_t num_classes);

// The model, freshly initialised (seeded by the caller). For model.type = linear, W is unused
// and may be undefined.
std::shared_ptr<MultiLabelClassifier> build_model(const Config& config, int64_t num_classes,
                                                  const torch::Tensor& prompt_embeddings);

// Loads trunk weights into the model's backbone: a file saved by `cprfl pretrain-backbone`, or
// a torch.save state dict with torchvision names (a `.pth`; fc.* is dropped, strict otherwise);
// for a CLIP backbone, a CLIP state dict (its visual.* tensors, see load_clip_visual_weights).
void load_backbone_weights(MultiLabelClassifier& model, const std::string& path);

}  // namespace cprfl
