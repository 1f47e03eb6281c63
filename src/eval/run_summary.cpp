#include "cprfl/eval/run_summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>

#include "cprfl/common/error.h"
#include "cprfl/common/text.h"

namespace cprfl {
namespace {

// Figure k of a run: 0 total, 1 head, 2 medium, 3 tail mAP.
double figure(const RunFigures& run, int k) { return k == 0 ? run.map : k == 1 ? run.head : k == 2 ? run.medium : run.tail; }

}  // namespace

RunFigures read_run_figures(const std::string& run_dir, bool prefer_ema, const std::string& split) {
  if (split != "test" && split != "val") throw Error("summarize: the split is test or val, got '" + split + "'");
  std::string path = run_dir + "/metrics.jsonl";
  std::string text = read_text_file(path);
  auto lines = split_lines(text);
  nlohmann::json last;
  std::size_t line_number = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (trim(lines[i]).empty()) continue;
    try {
      auto record = nlohmann::json::parse(lines[i]);
      if (record.contains(split)) last = record, line_number = i + 1;
    } catch (const nlohmann::json::exception& e) {
      fail_at(path, i + 1, std::string("not a JSON record: ") + e.what());
    }
  }
  if (last.is_null())
    fail_in(path, split == "val" ? "no validation figures in this run (it was trained without data.val_fraction)"
                                 : "no evaluated epoch in this run");
  RunFigures figures;
  figures.run_dir = run_dir;
  std::string name = std::filesystem::path(run_dir).filename().string();
  if (name.empty()) name = std::filesystem::path(run_dir).parent_path().filename().string();
  std::smatch seed;
  if (std::regex_search(name, seed, std::regex("_seed([0-9]{1,9})$"))) figures.seed = std::stoll(seed[1].str());
  figures.variant = std::regex_replace(name, std::regex("_seed[0-9]+$"), "");
  figures.ema = split == "val" ? last.contains("test_ema") : prefer_ema && last.contains("test_ema");
  const auto& test = split == "val" ? last["val"] : last[figures.ema ? "test_ema" : "test"];
  auto value = [&](const char* key) {
    if (!test.contains(key) || test[key].is_null()) return std::nan("");
    return test[key].get<double>();
  };
  try {
    figures.map = value("map_pct");
    figures.head = value("head_map_pct");
    figures.medium = value("medium_map_pct");
    figures.tail = value("tail_map_pct");
  } catch (const nlohmann::json::exception& e) {
    fail_at(path, line_number, std::string("unexpected metrics record: ") + e.what());
  }
  return figures;
}

std::vector<std::string> run_dirs_in(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (fs::exists(fs::path(dir) / "metrics.jsonl", error) || !fs::is_directory(dir, error)) return {dir};
  std::vector<std::string> runs;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    if (it->is_directory(error) && fs::is_regular_file(it->path() / "metrics.jsonl", error)) runs.push_back(it->path().string());
  }
  std::sort(runs.begin(), runs.end());
  if (runs.empty()) return {dir};
  return runs;
}

std::vector<VariantSummary> summarize_runs(const std::vector<RunFigures>& runs) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<const RunFigures*>> groups;
  for (const auto& run : runs) {
    if (!groups.count(run.variant)) order.push_back(run.variant);
    groups[run.variant].push_back(&run);
  }
  std::vector<VariantSummary> summaries;
  for (const auto& variant : order) {
    VariantSummary summary;
    summary.variant = variant;
    const auto& members = groups[variant];
    summary.runs = static_cast<int>(members.size());
    for (int k = 0; k < 4; ++k) {
      auto pick = [k](const RunFigures* r) { return figure(*r, k); };
      double sum = 0;
      for (auto* r : members) sum += pick(r);
      double mean = sum / static_cast<double>(members.size());
      double squares = 0;
      for (auto* r : members) squares += (pick(r) - mean) * (pick(r) - mean);
      summary.mean[k] = mean;
      summary.std[k] = members.size() > 1 ? std::sqrt(squares / static_cast<double>(members.size() - 1)) : std::nan("");
    }
    summaries.push_back(summary);
  }
  return summaries;
}

const VariantSummary& best_variant(const std::vector<VariantSummary>& summaries) {
  if (summaries.empty()) throw Error("summarize: no runs to choose the best variant from");
  const VariantSummary* best = nullptr;
  for (const auto& summary : summaries) {
    if (std::isnan(summary.mean[0])) continue;  // a run without a total mAP cannot win
    if (!best || summary.mean[0] > best->mean[0]) best = &summary;
  }
  if (!best) throw Error("summarize: no variant has a total mAP to choose by");
  return *best;
}

std::string format_markdown(const std::vector<VariantSummary>& summaries) {
  std::string out = "| variant | runs | total mAP | head | medium | tail |\n|---|---|---|---|---|---|\n";
  char cell[64];
  for (const auto& s : summaries) {
    out += "| " + s.variant + " | " + std::to_string(s.runs);
    for (int k = 0; k < 4; ++k) {
      // One run has no spread: "n = 1", not "± 0.00". A figure no run recorded: "-".
      if (std::isnan(s.mean[k])) std::snprintf(cell, sizeof cell, " | -");
      else if (s.runs == 1) std::snprintf(cell, sizeof cell, " | %.2f (n = 1)", s.mean[k]);
      else std::snprintf(cell, sizeof cell, " | %.2f ± %.2f", s.mean[k], s.std[k]);
      out += cell;
    }
    out += " |\n";
  }
  return out;
}

double student_t_975(int df) {
  if (df < 1) throw Error("student_t_975: degrees of freedom must be at least 1");
  // Tabulated quantiles for small df, where the expansion below is poor.
  static const double table[30] = {12.7062, 4.30265, 3.18245, 2.77645, 2.57058, 2.44691, 2.36462, 2.30600,
                                   2.26216, 2.22814, 2.20099, 2.17881, 2.16037, 2.14479, 2.13145, 2.11991,
                                   2.10982, 2.10092, 2.09302, 2.08596, 2.07961, 2.07387, 2.06866, 2.06390,
                                   2.05954, 2.05553, 2.05183, 2.04841, 2.04523, 2.04227};
  if (df <= 30) return table[df - 1];
  // Cornish-Fisher expansion around the normal quantile (error < 1e-4 beyond df = 30).
  const double z = 1.959963984540054, n = df;
  const double z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z;
  return z + (z3 + z) / (4 * n) + (5 * z5 + 16 * z3 + 3 * z) / (96 * n * n) +
         (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * n * n * n);
}

std::vector<PairedDifference> paired_differences(const std::vector<RunFigures>& runs, const std::string& reference) {
  std::map<int64_t, const RunFigures*> reference_runs;
  std::vector<std::string> variants;
  for (const auto& run : runs) {
    if (run.variant == reference && run.seed >= 0) reference_runs[run.seed] = &run;
    if (std::find(variants.begin(), variants.end(), run.variant) == variants.end()) variants.push_back(run.variant);
  }
  if (reference_runs.empty()) {
    std::string names;
    for (const auto& v : variants) names += (names.empty() ? "" : ", ") + v;
    throw Error("summarize: no run of the reference variant '" + reference + "' with a _seed<k> name; the variants are: " + names);
  }
  std::vector<PairedDifference> out;
  for (const auto& variant : variants) {
    if (variant == reference) continue;
    PairedDifference d;
    d.reference = reference;
    d.variant = variant;
    std::vector<std::pair<const RunFigures*, const RunFigures*>> pairs;
    for (const auto& run : runs)
      if (run.variant == variant && reference_runs.count(run.seed)) pairs.emplace_back(reference_runs[run.seed], &run);
    d.pairs = static_cast<int>(pairs.size());
    if (pairs.empty()) continue;
    const double n = static_cast<double>(pairs.size());
    for (int k = 0; k < 4; ++k) {
      double sum = 0, squares = 0;
      for (const auto& [a, b] : pairs) sum += figure(*a, k) - figure(*b, k);
      d.mean[k] = sum / n;
      for (const auto& [a, b] : pairs) squares += std::pow(figure(*a, k) - figure(*b, k) - d.mean[k], 2);
      if (pairs.size() < 2) {
        d.std[k] = d.low[k] = d.high[k] = std::nan("");
        continue;
      }
      d.std[k] = std::sqrt(squares / (n - 1));
      const double half = student_t_975(static_cast<int>(pairs.size()) - 1) * d.std[k] / std::sqrt(n);
      d.low[k] = d.mean[k] - half;
      d.high[k] = d.mean[k] + half;
    }
    out.push_back(d);
  }
  return out;
}

std::string format_markdown(const std::vector<PairedDifference>& differences) {
  if (differences.empty()) return "";
  std::string out = "| " + differences.front().reference +
                    " − variant (same seeds) | pairs | total mAP [95% CI] | head | medium | tail |\n|---|---|---|---|---|---|\n";
  char cell[96];
  for (const auto& d : differences) {
    out += "| " + d.variant + " | " + std::to_string(d.pairs);
    for (int k = 0; k < 4; ++k) {
      if (std::isnan(d.low[k])) std::snprintf(cell, sizeof cell, " | %+.2f (n = %d)", d.mean[k], d.pairs);
      else std::snprintf(cell, sizeof cell, " | %+.2f [%+.2f, %+.2f]", d.mean[k], d.low[k], d.high[k]);
      out += cell;
    }
    out += " |\n";
  }
  return out;
}

namespace {
nlohmann::json number_or_null(double value) { return std::isnan(value) ? nlohmann::json(nullptr) : nlohmann::json(value); }
}  // namespace

nlohmann::json to_json(const std::vector<VariantSummary>& summaries, const std::vector<RunFigures>& runs,
                       const std::vector<PairedDifference>& differences) {
  nlohmann::json out = {{"variants", nlohmann::json::array()}, {"runs", nlohmann::json::array()}};
  const char* keys[4] = {"map_pct", "head_map_pct", "medium_map_pct", "tail_map_pct"};
  for (const auto& s : summaries) {
    nlohmann::json entry = {{"variant", s.variant}, {"runs", s.runs}};
    for (int k = 0; k < 4; ++k) entry[keys[k]] = {{"mean", number_or_null(s.mean[k])}, {"std", number_or_null(s.std[k])}};
    out["variants"].push_back(entry);
  }
  for (const auto& r : runs) {
    out["runs"].push_back({{"run_dir", r.run_dir}, {"variant", r.variant}, {"seed", r.seed}, {"ema", r.ema}, {keys[0], number_or_null(r.map)},
                           {keys[1], number_or_null(r.head)}, {keys[2], number_or_null(r.medium)},
                           {keys[3], number_or_null(r.tail)}});
  }
  for (const auto& d : differences) {
    nlohmann::json entry = {{"reference", d.reference}, {"variant", d.variant}, {"pairs", d.pairs}};
    for (int k = 0; k < 4; ++k)
      entry[keys[k]] = {{"mean", number_or_null(d.mean[k])}, {"std", number_or_null(d.std[k])},
                        {"ci95", {number_or_null(d.low[k]), number_or_null(d.high[k])}}};
    out["paired_differences"].push_back(entry);
  }
  return out;
}

}  // namespace cprfl
