// `cprfl metrics` run as a user runs it, on small .npy files made with write_npy.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "cprfl/io/npy.h"
#include "test_support.h"

using cprfl::testing::read_text;
using cprfl::testing::run_cprfl;
using cprfl::testing::TempDir;
using cprfl::testing::write_text;

namespace {

// The 4 × 3 matrix of test_metrics.cpp: APs 1, 5/6, 1/2; at p >= 0.5 CP 11/18, OP 5/8.
struct Fixture {
  TempDir dir;
  std::string scores = dir.file("scores.npy");
  std::string targets = dir.file("targets.npy");
  std::string labels = dir.file("labels.txt");
  std::string train = dir.file("train.txt");
  Fixture() {
    cprfl::write_npy(scores, torch::tensor({{0.90f, 0.60f, 0.10f}, {0.80f, 0.20f, 0.70f}, {0.30f, 0.55f, 0.40f},
                                            {0.60f, 0.90f, 0.95f}}));
    cprfl::write_npy(targets, torch::tensor({{1, 0, 0}, {1, 0, 1}, {0, 1, 0}, {0, 1, 0}}, torch::kByte));
    write_text(labels, "cat\ndog\ntraffic light\n");
    // n_c: cat 3, dog 2, traffic light 1 -> with --head-min 3 --tail-below 2: head, medium, tail.
    write_text(train, "a.jpg 0 1\nb.jpg 0\nc.jpg 0 1 2\n");
  }
  std::string base() const { return "metrics --scores " + scores + " --targets " + targets; }
};

}  // namespace

TEST(MetricsCommand, PrintsTheTableAndWritesJson) {
  Fixture f;
  std::string json_path = f.dir.file("out/metrics.json");
  std::filesystem::create_directories(f.dir.file("out"));
  auto result = run_cprfl(f.base() + " --labels " + f.labels + " --train-list " + f.train +
                          " --head-min 3 --tail-below 2 --top-k 1 --json " + json_path);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string& out = result.output;
  EXPECT_NE(out.find("mAP  total 77.78   head 100.00 (1 classes)   medium 83.33 (1 classes)   tail 50.00 (1 classes)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("score >= 0.50"), std::string::npos) << out;
  EXPECT_NE(out.find("top-1, same threshold"), std::string::npos) << out;
  EXPECT_NE(out.find("traffic light"), std::string::npos) << out;
  EXPECT_NE(out.find("61.11"), std::string::npos) << out;  // CP = 11/18

  auto json = nlohmann::json::parse(read_text(json_path));
  EXPECT_NEAR(json["map_pct"].get<double>(), 700.0 / 9.0, 1e-4);
  EXPECT_NEAR(json["head_map_pct"].get<double>(), 100.0, 1e-4);
  EXPECT_NEAR(json["at_threshold"]["cp_pct"].get<double>(), 1100.0 / 18.0, 1e-4);
  EXPECT_NEAR(json["at_threshold"]["op_pct"].get<double>(), 62.5, 1e-4);
  EXPECT_NEAR(json["at_top_k"]["op_pct"].get<double>(), 75.0, 1e-4);
  EXPECT_EQ(json["top_k"], 1);
  EXPECT_EQ(json["classes"][2]["name"], "traffic light");
  EXPECT_EQ(json["classes"][2]["train_count"], 1);
  EXPECT_EQ(json["classes"][2]["group"], "tail");
}

TEST(MetricsCommand, LogitsFlagAppliesSigmoid) {
  Fixture f;
  std::string logits = f.dir.file("logits.npy");
  cprfl::write_npy(logits, torch::logit(cprfl::read_npy(f.scores)));
  std::string json_path = f.dir.file("m.json");
  auto result = run_cprfl("metrics --scores " + logits + " --targets " + f.targets + " --logits --json " + json_path);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("sigmoid(score) >= 0.50"), std::string::npos) << result.output;
  auto json = nlohmann::json::parse(read_text(json_path));
  EXPECT_NEAR(json["at_threshold"]["op_pct"].get<double>(), 62.5, 1e-4);
  EXPECT_NEAR(json["map_pct"].get<double>(), 700.0 / 9.0, 1e-4);
}

TEST(MetricsCommand, ErrorsNameTheFileAndTheProblem) {
  Fixture f;
  std::string narrow = f.dir.file("narrow.npy");
  cprfl::write_npy(narrow, torch::zeros({4, 2}, torch::kByte));
  auto mismatch = run_cprfl("metrics --scores " + f.scores + " --targets " + narrow);
  EXPECT_EQ(mismatch.exit_code, 1);
  EXPECT_NE(mismatch.output.find("error: shapes disagree: " + f.scores + " has shape [4, 3] but " + narrow +
                                 " has shape [4, 2]"),
            std::string::npos)
      << mismatch.output;

  std::string garbage = f.dir.file("garbage.npy");
  write_text(garbage, "not numpy at all");
  auto bad = run_cprfl("metrics --scores " + garbage + " --targets " + f.targets);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("error: " + garbage + ": not a .npy file"), std::string::npos) << bad.output;

  std::string wide_list = f.dir.file("wide.txt");
  write_text(wide_list, "a.jpg 0\nb.jpg 1 3\n");
  auto range = run_cprfl(f.base() + " --train-list " + wide_list);
  EXPECT_EQ(range.exit_code, 1);
  EXPECT_NE(range.output.find("error: " + wide_list + ":2: label id 3 is out of range for 3 classes"), std::string::npos)
      << range.output;

  std::string two_labels = f.dir.file("two.txt");
  write_text(two_labels, "cat\ndog\n");
  auto labels = run_cprfl(f.base() + " --labels " + two_labels);
  EXPECT_EQ(labels.exit_code, 1);
  EXPECT_NE(labels.output.find("error: " + two_labels + ": has 2 classes but " + f.scores + " has 3 columns"),
            std::string::npos)
      << labels.output;

  std::string half = f.dir.file("half.npy");
  cprfl::write_npy(half, torch::full({4, 3}, 0.5));
  auto targets = run_cprfl("metrics --scores " + f.scores + " --targets " + half);
  EXPECT_EQ(targets.exit_code, 1);
  EXPECT_NE(targets.output.find("targets must be 0 or 1"), std::string::npos) << targets.output;

  auto threshold = run_cprfl(f.base() + " --threshold 2");
  EXPECT_EQ(threshold.exit_code, 105);  // CLI11's ValidationError
  EXPECT_NE(threshold.output.find("--threshold"), std::string::npos) << threshold.output;
}

TEST(MetricsCommand, WarnsAboutClassesWithoutPositives) {
  Fixture f;
  std::string targets = f.dir.file("t.npy");
  cprfl::write_npy(targets, torch::tensor({{1, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 1, 0}}, torch::kBool));
  auto result = run_cprfl("metrics --scores " + f.scores + " --targets " + targets + " --labels " + f.labels);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("warning: 1 class(es) have no positive image in the evaluated set and are left out of "
                               "every mean: 2 (traffic light)"),
            std::string::npos)
      << result.output;
  // mAP of c0 and c1 only: (1 + 5/6) / 2.
  EXPECT_NE(result.output.find("mAP  total 91.67"), std::string::npos) << result.output;
}
