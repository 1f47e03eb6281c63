#include "cprfl/model/inference.h"

#include <torch/torch.h>

namespace cprfl {

bool channels_last_is_safe(const torch::nn::Module& module) {
  for (const auto& parameter : module.parameters())
    if (parameter.dim() == 4 && parameter.size(0) < kChannelsLastMinChannels) return false;
  return true;
}

bool convert_to_channels_last(torch::nn::Module& module) {
  if (!channels_last_is_safe(module)) return false;
  torch::NoGradGuard no_grad;
  for (auto& parameter : module.parameters())
    if (parameter.dim() == 4) parameter.set_data(parameter.contiguous(torch::MemoryFormat::ChannelsLast));
  return true;
}

void prepare_for_inference(MultiLabelClassifier& model, const InferenceOptions& options) {
  model.eval();
  if (options.fold_batchnorm) model.backbone()->fold_batchnorm();  // in float32, before any rounding to bf16
  if (options.precision == Precision::bf16) model.set_compute_dtype(torch::kBFloat16);
  if (options.channels_last) convert_to_channels_last(*model.backbone());
}

}  // namespace cprfl
