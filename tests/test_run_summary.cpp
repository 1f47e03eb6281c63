#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "cprfl/common/error.h"
#include "cprfl/eval/run_summary.h"
#include "test_support.h"

using namespace cprfl;

TEST(RunSummary, MeanAndSampleStdPerVariant) {
  cprfl::testing::TempDir dir;
  auto write_run = [&](const std::string& name, double map) {
    std::filesystem::create_directories(dir.file(name));
    cprfl::testing::write_text(
        dir.file(name + "/metrics.jsonl"),
        "{\"epoch\":1,\"test\":{\"map_pct\":1,\"head_map_pct\":1,\"medium_map_pct\":1,\"tail_map_pct\":1}}\n"
        "{\"epoch\":2,\"test\":{\"map_pct\":0,\"head_map_pct\":0,\"medium_map_pct\":0,\"tail_map_pct\":0},"
        "\"test_ema\":{\"map_pct\":" + std::to_string(map) + ",\"head_map_pct\":50,\"medium_map_pct\":40,\"tail_map_pct\":null}}\n");
  };
  write_run("cprfl_seed0", 60);
  write_run("cprfl_seed1", 64);
  write_run("linear_seed0", 50);
  std::vector<RunFigures> runs;
  for (const char* name : {"cprfl_seed0", "cprfl_seed1", "linear_seed0"}) runs.push_back(read_run_figures(dir.file(name)));
  EXPECT_TRUE(runs[0].ema);
  auto summaries = summarize_runs(runs);
  ASSERT_EQ(summaries.size(), 2u);
  EXPECT_EQ(summaries[0].variant, "cprfl");
  EXPECT_DOUBLE_EQ(summaries[0].mean[0], 62.0);
  EXPECT_NEAR(summaries[0].std[0], 2.8284271, 1e-6);  // sample std of {60, 64}
  EXPECT_TRUE(std::isnan(summaries[0].mean[3]));        // no tail figure recorded
  // One run has no spread: the table says n = 1 and the JSON std is null, not 0.
  const std::string table = format_markdown(summaries);
  EXPECT_NE(table.find("| linear | 1 | 50.00 (n = 1) | 50.00 (n = 1) | 40.00 (n = 1) | - |"), std::string::npos) << table;
  EXPECT_TRUE(std::isnan(summaries[1].std[0]));
  const auto json = to_json(summaries, runs);
  EXPECT_TRUE(json["variants"][1]["map_pct"]["std"].is_null()) << json.dump();
  EXPECT_DOUBLE_EQ(json["variants"][1]["map_pct"]["mean"].get<double>(), 50.0);
  EXPECT_DOUBLE_EQ(read_run_figures(dir.file("cprfl_seed0"), false).map, 0.0);
  std::filesystem::create_directories(dir.file("empty"));
  EXPECT_THROW(read_run_figures(dir.file("empty")), Error);
}

// The best variant: highest mean total mAP; the first of equals; one without a figure never wins.
TEST(RunSummary, BestVariantByMeanTotalMap) {
  std::vector<VariantSummary> summaries(4);
  const char* names[] = {"a", "b", "c", "d"};
  const double means[] = {61.0, std::nan(""), 64.5, 64.5};
  for (int i = 0; i < 4; ++i) summaries[i].variant = names[i], summaries[i].mean[0] = means[i];
  EXPECT_EQ(best_variant(summaries).variant, "c");
  summaries[0].mean[0] = 70.0;
  EXPECT_EQ(best_variant(summaries).variant, "a");
  EXPECT_THROW(best_variant({}), Error);
  EXPECT_THROW(best_variant({summaries[1]}), Error);
}

// A parent such as runs/ stands for its run sub-folders (those with metrics.jsonl), sorted;
// a run folder stands for itself; a folder with neither stands for itself, to be reported.
TEST(RunSummary, RunDirsInAParentFolder) {
  cprfl::testing::TempDir dir;
  for (const char* name : {"runs/b_seed1", "runs/a_seed0", "runs/b_seed0", "runs/data", "empty"})
    std::filesystem::create_directories(dir.file(name));
  for (const char* name : {"runs/b_seed1", "runs/a_seed0", "runs/b_seed0"})
    cprfl::testing::write_text(dir.file(std::string(name) + "/metrics.jsonl"), "");
  cprfl::testing::write_text(dir.file("runs/notes.txt"), "");
  EXPECT_EQ(run_dirs_in(dir.file("runs")),
            (std::vector<std::string>{dir.file("runs/a_seed0"), dir.file("runs/b_seed0"), dir.file("runs/b_seed1")}));
  EXPECT_EQ(run_dirs_in(dir.file("runs/a_seed0")), std::vector<std::string>{dir.file("runs/a_seed0")});
  EXPECT_EQ(run_dirs_in(dir.file("empty")), std::vector<std::string>{dir.file("empty")});
  EXPECT_EQ(run_dirs_in(dir.file("absent")), std::vector<std::string>{dir.file("absent")});
}

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
std::string shell_quoted(const std::string& path) { return "'" + path + "'"; }

// A run folder whose last evaluated epoch has these raw and EMA figures (map, head, medium, tail).
void write_run(const std::string& dir, const std::vector<double>& raw, const std::vector<double>& ema) {
  std::filesystem::create_directories(dir);
  auto group = [](const std::vector<double>& f) {
    return nlohmann::json{{"map_pct", f[0]}, {"head_map_pct", f[1]}, {"medium_map_pct", f[2]}, {"tail_map_pct", f[3]}};
  };
  const nlohmann::json record = {{"epoch", 1}, {"test", group(raw)}, {"test_ema", group(ema)}};
  cprfl::testing::write_text(dir + "/metrics.jsonl", record.dump() + "\n");
}

}  // namespace

// summarize runs/: the run folders inside, not runs/metrics.jsonl; one run says n = 1.
TEST(RunSummary, CommandScansAParentFolderAndSaysNIsOne) {
  cprfl::testing::TempDir dir;
  const std::string runs = dir.file("runs");
  write_run(runs + "/asl_seed0", {60, 70, 50, 40}, {61, 71, 51, 41});
  write_run(runs + "/asl_seed1", {62, 72, 52, 42}, {63, 73, 53, 43});
  write_run(runs + "/bce_seed0", {50, 60, 40, 30}, {51.5, 61, 41, 31});
  std::filesystem::create_directories(runs + "/fashion-lt");  // not a run: no metrics.jsonl
  std::filesystem::create_directories(dir.file("nothing"));
  const auto result = cprfl::testing::run_cprfl("summarize " + shell_quoted(runs) + " --json " + shell_quoted(dir.file("s.json")));
  const auto missing = cprfl::testing::run_cprfl("summarize " + shell_quoted(dir.file("nothing")));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(contains(result.output, "summarize: " + runs + " holds 3 run folder(s)")) << result.output;
  EXPECT_TRUE(contains(result.output, "| asl | 2 | 62.00 ± 1.41 |")) << result.output;
  EXPECT_TRUE(contains(result.output, "| bce | 1 | 51.50 (n = 1) | 61.00 (n = 1) | 41.00 (n = 1) | 31.00 (n = 1) |\n"))
      << result.output;
  EXPECT_FALSE(contains(result.output, "± 0.00")) << result.output;
  const auto json = nlohmann::json::parse(cprfl::testing::read_text(dir.file("s.json")));
  EXPECT_EQ(json["runs"].size(), 3u);
  EXPECT_TRUE(json["variants"][1]["map_pct"]["std"].is_null()) << json.dump();

  // --best names only the variant with the highest mean total mAP (asl: 62 against 51.5).
  const auto best = cprfl::testing::run_cprfl("summarize " + shell_quoted(runs) + " --best");
  ASSERT_EQ(best.exit_code, 0) << best.output;
  EXPECT_TRUE(contains(best.output, "\nasl\n")) << best.output;
  EXPECT_FALSE(contains(best.output, "| asl |")) << best.output;

  EXPECT_EQ(missing.exit_code, 1) << missing.output;  // an error while running
  EXPECT_TRUE(contains(missing.output, "error: " + dir.file("nothing") + "/metrics.jsonl")) << missing.output;
}

// Paired differences against values worked by hand: reference − other over seeds 0..4 is
// {10, 9, 11, 8, 13}: mean 10.2, sample std √3.7, 95% half-width t(0.975, 4)·√3.7/√5. A seed
// the reference lacks is left out; an unknown reference names the variants there are.
TEST(RunSummary, PairedDifferencesWithStudentInterval) {
  std::vector<RunFigures> runs;
  auto add = [&](const std::string& variant, int64_t seed, double map) {
    RunFigures r;
    r.variant = variant;
    r.seed = seed;
    r.map = r.head = r.medium = r.tail = map;
    runs.push_back(r);
  };
  const double reference[5] = {70, 72, 71, 73, 74}, other[5] = {60, 63, 60, 65, 61};
  for (int k = 0; k < 5; ++k) add("cprfl", k, reference[k]), add("linear", k, other[k]);
  add("linear", 7, 0);  // unpaired
  const auto differences = paired_differences(runs, "cprfl");
  ASSERT_EQ(differences.size(), 1u);
  const auto& d = differences[0];
  EXPECT_EQ(d.variant, "linear");
  EXPECT_EQ(d.pairs, 5);
  EXPECT_NEAR(d.mean[0], 10.2, 1e-12);
  EXPECT_NEAR(d.std[0], std::sqrt(3.7), 1e-12);
  const double half = 2.776445105 * std::sqrt(3.7) / std::sqrt(5.0);
  EXPECT_NEAR(d.low[0], 10.2 - half, 1e-4);
  EXPECT_NEAR(d.high[0], 10.2 + half, 1e-4);
  EXPECT_NE(format_markdown(differences).find("| linear | 5 | +10.20 ["), std::string::npos) << format_markdown(differences);
  EXPECT_NE(cprfl::testing::error_of([&] { paired_differences(runs, "absent"); }).find("cprfl, linear"), std::string::npos);
  // Published quantiles of Student's t at 0.975.
  EXPECT_NEAR(student_t_975(1), 12.7062, 1e-4);
  EXPECT_NEAR(student_t_975(40), 2.021075, 1e-4);
  EXPECT_NEAR(student_t_975(100), 1.983972, 1e-4);
  EXPECT_NEAR(student_t_975(1000), 1.962339, 1e-4);
}
