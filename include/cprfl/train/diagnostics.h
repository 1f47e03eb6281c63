#pragma once
// What train.diagnostics adds to each evaluated epoch's metrics.jsonl record: figures to look
// inside a run when two runs that should agree do not (docs/baselines.md).

#include <nlohmann/json.hpp>

#include "cprfl/model/classifier.h"
#include "cprfl/optim/optim.h"

namespace cprfl {

// {"lr_groups": {group: lr now}, "weight_norms": {"backbone": L2 norm of all trunk weights,
//  <each other parameter's name>: its L2 norm}, "batchnorm": {<layer>: {"running_mean_abs":
//  mean |running mean|, "running_var": mean running variance}}}
nlohmann::json weight_diagnostics(MultiLabelClassifier& model, const OptimizerBundle& optimizer);

}  // namespace cprfl
