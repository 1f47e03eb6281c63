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

// The run folders `dir` stands for: `dir` itself when it holds metrics.jsonl; else, when it is
// a parent such as runs/, its sub-folders that hold one, sorted by name; else `dir` itself
// (so that reading it names the missing dir/metrics.jsonl).
std::vector<std::string> run_dirs_in(const std::string& dir);

struct VariantSummary {
  std::string variant;
  int runs = 0;
  double mean[4] = {0, 0, 0, 0};  // total, head, medium, tail
  double std[4] = {0, 0, 0, 0};   // sample std; NaN for a single run (the table says n = 1, the JSON null)
};

std::vector<VariantSummary> summarize_runs(const std::vector<RunFigures>& runs);  // in first-seen order
std::string format_markdown(const std::vector<VariantSummary>& summaries);
nlohmann::json to_json(const std::vector<VariantSummary>& summaries, const std::vector<RunFigures>& runs);

}  // namespace cprfl
