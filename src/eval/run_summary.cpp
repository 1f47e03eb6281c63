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

RunFigures read_run_figures(const std::string& run_dir, bool prefer_ema) {
  std::string path = run_dir + "/metrics.jsonl";
  std::string text = read_text_file(path);
  auto lines = split_lines(text);
  nlohmann::json last;
  std::size_t line_number = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (trim(lines[i]).empty()) continue;
    try {
      auto record = nlohmann::json::parse(lines[i]);
      if (record.contains("test")) last = record, line_number = i + 1;
    } catch (const nlohmann::json::exception& e) {
      fail_at(path, i + 1, std::string("not a JSON record: ") + e.what());
    }
  }
  if (last.is_null()) fail_in(path, "no evaluated epoch in this run");
  RunFigures figures;
  figures.run_dir = run_dir;
  std::string name = std::filesystem::path(run_dir).filename().string();
  if (name.empty()) name = std::filesystem::path(run_dir).parent_path().filename().string();
  figures.variant = std::regex_replace(name, std::regex("_seed[0-9]+$"), "");
  figures.ema = prefer_ema && last.contains("test_ema");
  const auto& test = last[figures.ema ? "test_ema" : "test"];
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
      auto pick = [k](const RunFigures* r) { return k == 0 ? r->map : k == 1 ? r->head : k == 2 ? r->medium : r->tail; };
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

namespace {
nlohmann::json number_or_null(double value) { return std::isnan(value) ? nlohmann::json(nullptr) : nlohmann::json(value); }
}  // namespace

nlohmann::json to_json(const std::vector<VariantSummary>& summaries, const std::vector<RunFigures>& runs) {
  nlohmann::json out = {{"variants", nlohmann::json::array()}, {"runs", nlohmann::json::array()}};
  const char* keys[4] = {"map_pct", "head_map_pct", "medium_map_pct", "tail_map_pct"};
  for (const auto& s : summaries) {
    nlohmann::json entry = {{"variant", s.variant}, {"runs", s.runs}};
    for (int k = 0; k < 4; ++k) entry[keys[k]] = {{"mean", number_or_null(s.mean[k])}, {"std", number_or_null(s.std[k])}};
    out["variants"].push_back(entry);
  }
  for (const auto& r : runs) {
    out["runs"].push_back({{"run_dir", r.run_dir}, {"variant", r.variant}, {"ema", r.ema}, {keys[0], number_or_null(r.map)},
                           {keys[1], number_or_null(r.head)}, {keys[2], number_or_null(r.medium)},
                           {keys[3], number_or_null(r.tail)}});
  }
  return out;
}

}  // namespace cprfl
