#include <gtest/gtest.h>

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
  EXPECT_NE(format_markdown(summaries).find("| linear | 1 | 50.00 ± 0.00"), std::string::npos);
  EXPECT_DOUBLE_EQ(read_run_figures(dir.file("cprfl_seed0"), false).map, 0.0);
  std::filesystem::create_directories(dir.file("empty"));
  EXPECT_THROW(read_run_figures(dir.file("empty")), Error);
}
