// `cprfl metrics` run as a user runs it, on small .npy files made with write_npy.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <thread>

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

// The record `eval --save-scores S.npy` writes beside the scores (S.npy.json) says what they
// are; metrics follows it, and a flag that contradicts it is an error naming both.
TEST(MetricsCommand, FollowsTheScoresRecord) {
  Fixture f;
  const std::string logits = f.dir.file("logits.npy");
  cprfl::write_npy(logits, torch::logit(cprfl::read_npy(f.scores)));
  std::filesystem::copy_file(f.targets, f.dir.file("logits_targets.npy"));
  nlohmann::json record = {{"scores", "logits"}, {"shape", {4, 3}}, {"classes", {"cat", "dog", "traffic light"}},
                           {"targets", "logits_targets.npy"}, {"model", "m.cprfl"}, {"ema", true},
                           {"list", "test.txt"}, {"root", "/data"}};
  write_text(logits + ".json", record.dump());

  // No flag, no --targets: sigmoid applied, targets and class names from the record.
  const std::string json_path = f.dir.file("m.json");
  auto followed = run_cprfl("metrics --scores " + logits + " --json " + json_path);
  ASSERT_EQ(followed.exit_code, 0) << followed.output;
  EXPECT_NE(followed.output.find("scores " + logits + ": logits (recorded in " + logits + ".json, from model m.cprfl)"),
            std::string::npos)
      << followed.output;
  EXPECT_NE(followed.output.find("sigmoid(score) >= 0.50"), std::string::npos) << followed.output;
  EXPECT_EQ(followed.output.find("outside [0, 1]"), std::string::npos) << followed.output;
  auto json = nlohmann::json::parse(read_text(json_path));
  EXPECT_EQ(json["scores_are_logits"], true);
  // The same CF1 as the probabilities give (read as probabilities, the logits would give another).
  const std::string probabilities_json = f.dir.file("p.json");
  ASSERT_EQ(run_cprfl(f.base() + " --json " + probabilities_json).exit_code, 0);
  EXPECT_NEAR(json["at_threshold"]["cf1_pct"].get<double>(),
              nlohmann::json::parse(read_text(probabilities_json))["at_threshold"]["cf1_pct"].get<double>(), 1e-6);
  EXPECT_EQ(json["classes"][2]["name"], "traffic light");

  // --logits agrees with the record; --probabilities contradicts it.
  auto agreeing = run_cprfl("metrics --scores " + logits + " --targets " + f.targets + " --logits");
  EXPECT_EQ(agreeing.exit_code, 0) << agreeing.output;
  auto contradicting = run_cprfl("metrics --scores " + logits + " --probabilities");
  EXPECT_EQ(contradicting.exit_code, 1) << contradicting.output;
  EXPECT_NE(contradicting.output.find("error: --probabilities contradicts " + logits +
                                      ".json, which records \"scores\": \"logits\""),
            std::string::npos)
      << contradicting.output;

  // A record of probabilities: --logits is the contradiction.
  write_text(f.scores + ".json", nlohmann::json{{"scores", "probabilities"}}.dump());
  auto wrong = run_cprfl(f.base() + " --logits");
  EXPECT_EQ(wrong.exit_code, 1) << wrong.output;
  EXPECT_NE(wrong.output.find("error: --logits contradicts " + f.scores + ".json, which records \"scores\": \"probabilities\""),
            std::string::npos)
      << wrong.output;
  auto both = run_cprfl(f.base() + " --logits --probabilities");
  EXPECT_EQ(both.exit_code, 108) << both.output;  // CLI11's ExcludesError

  // A record of another matrix, and labels that differ from the recorded classes.
  record["shape"] = {5, 3};
  write_text(logits + ".json", record.dump());
  auto shape = run_cprfl("metrics --scores " + logits);
  EXPECT_EQ(shape.exit_code, 1) << shape.output;
  EXPECT_NE(shape.output.find(logits + ".json describes scores of shape [5, 3] but " + logits + " has shape [4, 3]"),
            std::string::npos)
      << shape.output;
  record["shape"] = {4, 3};
  record["classes"] = {"cat", "dog", "bus"};
  write_text(logits + ".json", record.dump());
  auto labels = run_cprfl("metrics --scores " + logits + " --labels " + f.labels);
  EXPECT_EQ(labels.exit_code, 1) << labels.output;
  EXPECT_NE(labels.output.find("its classes differ from those " + logits + ".json records"), std::string::npos)
      << labels.output;

  // Without a record --targets is required.
  auto no_targets = run_cprfl("metrics --scores " + f.scores);
  EXPECT_EQ(no_targets.exit_code, 1) << no_targets.output;
  EXPECT_NE(no_targets.output.find("--targets is required"), std::string::npos) << no_targets.output;
}

// --top-k 0 is "no limit", as in predict: the top-k row equals the threshold row.
TEST(MetricsCommand, TopKZeroIsNoLimit) {
  Fixture f;
  const std::string json_path = f.dir.file("m.json");
  auto result = run_cprfl(f.base() + " --top-k 0 --json " + json_path);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto json = nlohmann::json::parse(read_text(json_path));
  EXPECT_EQ(json["at_top_k"], json["at_threshold"]);
  EXPECT_EQ(json["top_k"], 3);  // k = every class
  auto negative = run_cprfl(f.base() + " --top-k -1");
  EXPECT_EQ(negative.exit_code, 105) << negative.output;
  EXPECT_NE(negative.output.find("--top-k: must be at least 0, got -1"), std::string::npos) << negative.output;
}

namespace {
// What `help` output says of `flag`: its line, and the next one when the text is there.
std::string help_line(const std::string& help, const std::string& flag) {
  std::istringstream lines(help);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("  " + flag + " ") == std::string::npos) continue;
    std::string next;
    if (std::getline(lines, next) && next.rfind("      ", 0) == 0) line += next;
    return line;
  }
  return "";
}
bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
}  // namespace

// The flags metrics shares with other commands mean the same everywhere.
// --top-k: the k most probable classes, 0 = no limit, in eval, metrics and predict.
// --workers: N threads beside the main one, 0 = none, in eval, predict and make-fashion-lt
// (whose default, formerly 0 = all cores, is now the core count itself).
TEST(MetricsCommand, SharedFlagsMeanTheSameInEveryCommand) {
  const std::vector<std::string> top_k = {"eval --model m.cprfl", "metrics --scores s.npy", "predict --model m.cprfl a.png"};
  const std::vector<std::string> workers = {"eval --model m.cprfl", "predict --model m.cprfl a.png", "make-fashion-lt --out x"};
  std::vector<std::string> commands;
  for (const auto& c : top_k) commands.push_back(c + " --top-k -1");
  for (const auto& c : workers) commands.push_back(c + " --workers -1");
  for (const char* c : {"eval", "metrics", "predict", "make-fashion-lt"}) commands.push_back(std::string("help ") + c);
  std::vector<cprfl::testing::CommandResult> results(commands.size());
  std::vector<std::thread> threads;  // side by side: each start of the binary costs most of a second
  for (std::size_t i = 0; i < commands.size(); ++i) threads.emplace_back([&, i] { results[i] = run_cprfl(commands[i]); });
  for (auto& thread : threads) thread.join();
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(results[i].exit_code, 105 /* CLI11 ValidationError */) << commands[i] << "\n" << results[i].output;
    EXPECT_TRUE(contains(results[i].output, i < 3 ? "--top-k: must be at least 0, got -1" : "--workers: must be at least 0, got -1"))
        << commands[i] << "\n" << results[i].output;
  }
  const auto& eval_help = results[6].output;
  const auto& metrics_help = results[7].output;
  const auto& predict_help = results[8].output;
  const auto& make_help = results[9].output;
  for (const auto* help : {&eval_help, &metrics_help, &predict_help})
    EXPECT_TRUE(contains(help_line(*help, "--top-k"), "0 = no limit")) << *help;
  EXPECT_TRUE(contains(help_line(eval_help, "--top-k"), ">= 0=3 ")) << eval_help;  // CLI11 shows the default as "=3"
  EXPECT_TRUE(contains(help_line(metrics_help, "--top-k"), ">= 0=3 ")) << metrics_help;
  EXPECT_TRUE(contains(help_line(eval_help, "--workers"), "0 = none")) << eval_help;
  EXPECT_TRUE(contains(help_line(make_help, "--workers"), "0 = none")) << make_help;
  EXPECT_FALSE(contains(make_help, "all cores")) << make_help;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  EXPECT_TRUE(contains(help_line(make_help, "--workers"), ">= 0=" + std::to_string(cores) + " ")) << make_help;
}
