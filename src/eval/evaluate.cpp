#include "cprfl/eval/evaluate.h"

#include <memory>

#include "cprfl/common/device.h"
#include "cprfl/common/progress.h"

namespace cprfl {

Predictions predict_all(MultiLabelClassifier& model, DataLoader& loader, const torch::Device& device,
                        const std::string& label) {
  torch::NoGradGuard no_grad;
  bool was_training = model.is_training();
  model.eval();
  std::vector<torch::Tensor> logits, targets;
  loader.start_epoch(0);
  std::unique_ptr<ProgressBar> bar;
  if (!label.empty()) bar = std::make_unique<ProgressBar>(label, static_cast<int64_t>(loader.dataset().size()), "img");
  int64_t done = 0;
  while (auto batch = loader.next()) {
    logits.push_back(model.forward(to_device(batch->images, device)).to(torch::kCPU, torch::kFloat));
    targets.push_back(batch->targets);
    done += batch->images.size(0);
    if (bar) bar->update(done);
  }
  if (bar) bar->finish();
  model.train(was_training);
  Predictions out;
  int64_t classes = loader.dataset().num_classes();
  out.logits = logits.empty() ? torch::empty({0, classes}) : torch::cat(logits);
  out.targets = targets.empty() ? torch::empty({0, classes}) : torch::cat(targets);
  return out;
}

Metrics score_predictions(const Predictions& predictions, MetricsOptions options) {
  options.logits = true;
  return compute_metrics(predictions.logits, predictions.targets, options);
}

}  // namespace cprfl
