#pragma once
// Summaries over training runs: the final test figures of each run folder (from its
// metrics.jsonl), grouped by variant (folder name without a trailing "_seed<k>"), as
// mean ± sample standard deviation — the form papers report results in.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cprfl {

struct RunFigures {
  std::string run_dir;
  std::string variant;
  bool ema = false;        // figures are from the EMA model
  double map = 0, head = 0, medium = 0, tail = 0;  // percent
  double train_seconds = 0;
};

// Reads <run_dir>/metrics.jsonl; `prefer_ema` takes test_ema when present.
RunFigures read_run_figures(const std::string& run_dir, bool prefer_ema = true);

struct VariantSummary {
  std::string variant;
  int runs = 0;
  double mean[4] = {0, 0, 0, 0};  // total, head, medium, tail
  double std[4] = {0, 0, 0, 0};
};

std::vector<VariantSummary> summarize_runs(const std::vector<RunFigures>& runs);  // in first-seen order
std::string format_markdown(const std::vector<VariantSummary>& summaries);
nlohmann::json to_json(const std::vector<VariantSummary>& summaries, const std::vector<RunFigures>& runs);

}  // namespace cprfl
