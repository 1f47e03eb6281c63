#pragma once
// Builds the classifier that typed ModelOptions describe (backbone + CPRFL or linear head).
// The options come from the run configuration (config/options.h decodes them once); this
// area never reads config keys. W, the prompt embeddings, is made by the caller (a new run:
// config/prompt_setup.h; a saved model: the model file).
#include <torch/torch.h>

#include <memory>
#include <string>

#include "cprfl/model/classifier.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/model/resnet.h"

namespace cprfl {

struct ModelOptions {
  std::string type = "cprfl";        // cprfl | linear
  std::string backbone = "small";    // a name of backbone_names()
  SmallResNetOptions small;          // for backbone = small
  bool linear_head_zero_init = false; // type = linear: zero weights and bias (else LibTorch's default)
  CprflOptions cprfl;                // for type = cprfl
};

// The model, freshly initialised (seeded by the caller). For type = linear, W is unused and
// may be undefined; for cprfl it must have one row per class. Refuses a model of more than
// 250 M parameters before allocating it (a model file's options are outside input).
std::shared_ptr<MultiLabelClassifier> build_model(const ModelOptions& options, int64_t num_classes,
                                                  const torch::Tensor& prompt_embeddings);

// Loads trunk weights into the model's backbone: a file saved by `cprfl pretrain-backbone`, or
// a torch.save state dict with torchvision names (a `.pth`; fc.* is dropped, strict otherwise);
// for a CLIP backbone, a CLIP state dict (its visual.* tensors, see load_clip_visual_weights).
void load_backbone_weights(MultiLabelClassifier& model, const std::string& path);

}  // namespace cprfl
