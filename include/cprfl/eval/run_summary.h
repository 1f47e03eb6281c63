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
  int64_t seed = -1;       // k of a folder named <variant>_seed<k>; -1 without that suffix
  bool ema = false;        // figures are from the EMA model
  double map = 0, head = 0, medium = 0, tail = 0;  // percent
  double train_seconds = 0;
};

// Reads the last evaluated epoch of <run_dir>/metrics.jsonl. split "test": the test list
// (test_ema when present and `prefer_ema`); split "val": the validation part (scored on the
// model selection uses: the EMA model when the run has one).
RunFigures read_run_figures(const std::string& run_dir, bool prefer_ema = true, const std::string& split = "test");

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
// The variant with the highest mean total mAP (the first of equals; variants without one are
// passed over): how a sweep picks its settings from validation figures.
const VariantSummary& best_variant(const std::vector<VariantSummary>& summaries);

// A reference variant against another over the seeds both ran (paired: the same seed, the
// same data order and initial trunk): the differences reference − other, their mean, sample
// std, and the 95% confidence interval of the mean, mean ± t(0.975, n−1)·std/√n.
struct PairedDifference {
  std::string reference, variant;
  int pairs = 0;
  double mean[4] = {0, 0, 0, 0};  // total, head, medium, tail
  double std[4] = {0, 0, 0, 0};
  double low[4] = {0, 0, 0, 0};   // the interval; NaN with fewer than 2 pairs
  double high[4] = {0, 0, 0, 0};
};
// Every other variant against `reference` (the runs must carry _seed<k> names); a reference
// no run has is an error naming the variants there are.
std::vector<PairedDifference> paired_differences(const std::vector<RunFigures>& runs, const std::string& reference);
std::string format_markdown(const std::vector<PairedDifference>& differences);
// Student's t quantile t(0.975, df) for df >= 1.
double student_t_975(int df);

nlohmann::json to_json(const std::vector<VariantSummary>& summaries, const std::vector<RunFigures>& runs,
                       const std::vector<PairedDifference>& differences = {});

}  // namespace cprfl
