// The cprfl command line as a user meets it: `summarize`, `eval` with and without the EMA
// weights, `predict --top-k/--threshold`, `train --list-keys`, and the exact exit codes of
// parse errors, missing files and crashes. Every call goes through the real binary.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <numeric>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/data/image.h"
#include "cprfl/data/transforms.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/npy.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/model/build.h"
#include "cprfl/config/config.h"
#include "test_support.h"
#include "tiny_dataset.h"

using cprfl::testing::read_text;
using cprfl::testing::run_cprfl;
using cprfl::testing::TempDir;
using cprfl::testing::write_text;

namespace {

// The exit codes apps/cprfl.cpp gives: CLI11's own for parse errors (app.exit(e) returns
// e.get_exit_code()), 1 for an error while running a command. The numbers are spelled out so
// that a reader sees them; the static_asserts tie them to CLI11.
constexpr int kRunError = 1;
constexpr int kValidationError = 105;
constexpr int kRequiredError = 106;
constexpr int kExtrasError = 109;
constexpr int kArgumentMismatch = 114;
static_assert(kValidationError == static_cast<int>(CLI::ExitCodes::ValidationError));
static_assert(kRequiredError == static_cast<int>(CLI::ExitCodes::RequiredError));
static_assert(kExtrasError == static_cast<int>(CLI::ExitCodes::ExtrasError));
static_assert(kArgumentMismatch == static_cast<int>(CLI::ExitCodes::ArgumentMismatch));

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string shell_quoted(const std::string& path) { return "'" + path + "'"; }

// Runs independent commands side by side (each start of the binary costs most of a second,
// nearly all of it LibTorch's start-up); results in the order given.
std::vector<cprfl::testing::CommandResult> run_all(const std::vector<std::string>& arguments) {
  std::vector<cprfl::testing::CommandResult> results(arguments.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < arguments.size(); ++i)
    threads.emplace_back([&, i] { results[i] = run_cprfl(arguments[i]); });
  for (auto& thread : threads) thread.join();
  return results;
}

// ---- summarize ------------------------------------------------------------------------------

struct Figures {
  double map, head, medium, tail;
};

void write_run(const std::string& dir, const Figures& raw, const Figures& ema) {
  std::filesystem::create_directories(dir);
  auto group = [](const Figures& f) {
    return nlohmann::json{{"map_pct", f.map}, {"head_map_pct", f.head}, {"medium_map_pct", f.medium}, {"tail_map_pct", f.tail}};
  };
  // An earlier epoch with other figures: only the last evaluated one counts.
  nlohmann::json first = {{"epoch", 1}, {"test", group({1, 2, 3, 4})}, {"test_ema", group({5, 6, 7, 8})}};
  nlohmann::json last = {{"epoch", 2}, {"test", group(raw)}, {"test_ema", group(ema)}};
  write_text(dir + "/metrics.jsonl", first.dump() + "\n" + last.dump() + "\n");
}

double mean_of(const std::vector<double>& values) {
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

// Sample standard deviation (n − 1), 0 for a single run.
double sample_std_of(const std::vector<double>& values) {
  if (values.size() < 2) return 0.0;
  const double mean = mean_of(values);
  double squares = 0;
  for (double v : values) squares += (v - mean) * (v - mean);
  return std::sqrt(squares / static_cast<double>(values.size() - 1));
}

std::string two_decimals(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.2f", value);
  return text;
}

// ---- a small model file with distinct raw and EMA weights -----------------------------------

struct ModelFixture {
  TempDir dir;
  std::string data = dir.file("data");
  std::string model_path = dir.file("model.cprfl");
  cprfl::Config config;
  std::shared_ptr<cprfl::MultiLabelClassifier> raw, ema;

  ModelFixture() {
    cprfl::testing::write_tiny_dataset(data, 4, 8);
    config = cprfl::testing::tiny_config(data, dir.file("run"));
    cprfl::ModelInfo info;
    info.config = config;
    info.class_names = {"red", "green", "blue", "yellow"};
    info.class_counts = {2, 2, 3, 1};
    info.num_train_images = 4;
    info.prompt_embeddings = cprfl::load_prompt_embeddings(config, 4);
    torch::manual_seed(1);
    raw = cprfl::build_model(config, 4, info.prompt_embeddings);
    torch::manual_seed(2);
    ema = cprfl::build_model(config, 4, info.prompt_embeddings);
    cprfl::save_tensor_file(model_path, cprfl::make_model_file(info, *raw, ema.get()));
    raw->eval();
    ema->eval();
  }

  std::string image(int i) const { return data + "/img/" + std::to_string(i) + ".png"; }

  // The test list of the tiny set: images 4..11.
  std::vector<std::string> test_images() const {
    std::vector<std::string> images;
    for (int i = 4; i < 12; ++i) images.push_back(image(i));
    return images;
  }

  // The reference logits: the model in eval mode on the evaluation preprocessing.
  torch::Tensor logits(cprfl::MultiLabelClassifier& model, const std::vector<std::string>& images) const {
    cprfl::ImageTransform transform(cprfl::transform_config_of(config, /*train=*/false));
    auto batch = torch::empty({static_cast<int64_t>(images.size()), 3, 32, 32});
    std::mt19937_64 rng(0);
    for (std::size_t i = 0; i < images.size(); ++i)
      transform.apply(cprfl::read_image(images[i]), rng, batch[static_cast<int64_t>(i)].data_ptr<float>());
    torch::NoGradGuard no_grad;
    return model.forward(batch);
  }
};

// What `predict` documents: the classes in order of probability, at most k of them (0 = all),
// each with probability >= threshold.
std::vector<std::string> expected_prediction(const nlohmann::json& classes, int top_k, double threshold) {
  std::vector<std::pair<double, std::string>> ranked;
  for (const auto& entry : classes) ranked.emplace_back(entry["probability"].get<double>(), entry["class"].get<std::string>());
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> predicted;
  for (std::size_t rank = 0; rank < ranked.size(); ++rank) {
    if (top_k > 0 && rank >= static_cast<std::size_t>(top_k)) break;
    if (ranked[rank].first >= threshold) predicted.push_back(ranked[rank].second);
  }
  return predicted;
}

std::string exact(double value) {
  std::ostringstream out;
  out << std::setprecision(17) << value;
  return out.str();
}

}  // namespace

TEST(Cli, SummarizeGivesMeanAndSampleStdPerVariant) {
  TempDir dir;
  // Three seeds of "asl", two of "bce"; the EMA figures differ from the raw ones.
  const std::vector<std::pair<std::string, std::pair<Figures, Figures>>> runs = {
      {"asl_seed0", {{60.10, 70.00, 55.25, 40.00}, {61.00, 71.50, 56.00, 41.25}}},
      {"asl_seed1", {{62.30, 71.20, 57.75, 42.50}, {63.40, 72.00, 58.50, 44.00}}},
      {"asl_seed2", {{59.00, 69.40, 54.00, 37.00}, {60.20, 70.10, 55.50, 39.75}}},
      {"bce_seed0", {{50.00, 60.00, 45.00, 30.00}, {51.50, 61.00, 46.00, 31.00}}},
      {"bce_seed7", {{53.00, 62.50, 47.00, 35.00}, {52.50, 63.00, 49.00, 33.00}}},
  };
  std::string args;
  for (const auto& [name, figures] : runs) {
    write_run(dir.file(name), figures.first, figures.second);
    args += " " + shell_quoted(dir.file(name));
  }

  // A folder without metrics.jsonl among them: exit 1, naming the file.
  std::filesystem::create_directories(dir.file("empty_seed0"));
  std::vector<std::string> commands;
  for (const bool no_ema : {false, true})
    commands.push_back("summarize" + args + " --json " + shell_quoted(dir.file(no_ema ? "raw.json" : "ema.json")) +
                       " --markdown " + shell_quoted(dir.file(no_ema ? "raw.md" : "ema.md")) + (no_ema ? " --no-ema" : ""));
  commands.push_back("summarize" + args + " " + shell_quoted(dir.file("empty_seed0")));
  const auto results = run_all(commands);

  for (const bool no_ema : {false, true}) {
    SCOPED_TRACE(no_ema ? "--no-ema" : "EMA");
    const std::string json_path = dir.file(no_ema ? "raw.json" : "ema.json");
    const std::string markdown_path = dir.file(no_ema ? "raw.md" : "ema.md");
    const auto& result = results[no_ema ? 1 : 0];
    ASSERT_EQ(result.exit_code, 0) << result.output;
    auto json = nlohmann::json::parse(read_text(json_path));
    ASSERT_EQ(json["variants"].size(), 2u) << json.dump(2);
    std::string table = "| variant | runs | total mAP | head | medium | tail |\n|---|---|---|---|---|---|\n";
    const char* keys[4] = {"map_pct", "head_map_pct", "medium_map_pct", "tail_map_pct"};
    const std::vector<std::pair<std::string, std::vector<std::size_t>>> variants = {{"asl", {0, 1, 2}}, {"bce", {3, 4}}};
    for (std::size_t v = 0; v < variants.size(); ++v) {
      const auto& [variant, members] = variants[v];
      const auto& entry = json["variants"][v];
      EXPECT_EQ(entry["variant"], variant);
      EXPECT_EQ(entry["runs"], static_cast<int>(members.size()));
      table += "| " + variant + " | " + std::to_string(members.size());
      for (int k = 0; k < 4; ++k) {
        std::vector<double> values;
        for (std::size_t m : members) {
          const Figures& f = no_ema ? runs[m].second.first : runs[m].second.second;
          values.push_back(k == 0 ? f.map : k == 1 ? f.head : k == 2 ? f.medium : f.tail);
        }
        EXPECT_NEAR(entry[keys[k]]["mean"].get<double>(), mean_of(values), 1e-9) << variant << " " << keys[k];
        EXPECT_NEAR(entry[keys[k]]["std"].get<double>(), sample_std_of(values), 1e-9) << variant << " " << keys[k];
        table += " | " + two_decimals(mean_of(values)) + " ± " + two_decimals(sample_std_of(values));
      }
      table += " |\n";
    }
    for (const auto& run : json["runs"]) EXPECT_EQ(run["ema"], !no_ema) << run.dump();
    EXPECT_EQ(read_text(markdown_path), table);
    EXPECT_TRUE(contains(result.output, table)) << result.output << "\nexpected:\n" << table;
  }
  // asl, seed-averaged EMA mAP: (61.0 + 63.4 + 60.2)/3 = 61.533…, sample std 1.6653…
  EXPECT_TRUE(contains(read_text(dir.file("ema.md")), "| asl | 3 | 61.53 ± 1.67 |"));

  const auto& missing = results[2];
  EXPECT_EQ(missing.exit_code, kRunError) << missing.output;
  EXPECT_FALSE(missing.signalled);
  EXPECT_TRUE(contains(missing.output, "error: " + dir.file("empty_seed0") + "/metrics.jsonl")) << missing.output;
}

TEST(Cli, EvalScoresTheEmaWeightsUnlessNoEma) {
  ModelFixture fixture;
  const auto images = fixture.test_images();
  const auto ema_logits = fixture.logits(*fixture.ema, images);
  const auto raw_logits = fixture.logits(*fixture.raw, images);
  ASSERT_GT((ema_logits - raw_logits).abs().max().item<double>(), 1e-2) << "the fixture's two models must differ";

  std::vector<std::string> commands;
  for (const bool no_ema : {false, true})
    commands.push_back("eval --workers 0 --precision fp32 --model " + shell_quoted(fixture.model_path) + " --save-scores " +
                       shell_quoted(fixture.dir.file(no_ema ? "raw.npy" : "ema.npy")) + (no_ema ? " --no-ema" : ""));
  const auto results = run_all(commands);
  std::vector<torch::Tensor> scores;
  for (const bool no_ema : {false, true}) {
    SCOPED_TRACE(no_ema ? "--no-ema" : "default");
    const std::string scores_path = fixture.dir.file(no_ema ? "raw.npy" : "ema.npy");
    const auto& result = results[no_ema ? 1 : 0];
    ASSERT_EQ(result.exit_code, 0) << result.output;
    EXPECT_TRUE(contains(result.output, no_ema ? "(weights)" : "(EMA weights)")) << result.output;
    EXPECT_TRUE(contains(result.output, ", 8 images")) << result.output;
    scores.push_back(cprfl::read_npy(scores_path));
  }
  ASSERT_EQ(scores[0].sizes(), ema_logits.sizes());
  EXPECT_TRUE(torch::allclose(scores[0], ema_logits, 1e-4, 1e-4)) << scores[0] << ema_logits;
  EXPECT_TRUE(torch::allclose(scores[1], raw_logits, 1e-4, 1e-4)) << scores[1] << raw_logits;
  EXPECT_GT((scores[0] - scores[1]).abs().max().item<double>(), 1e-2);
}

// eval --json says what was scored (model, EMA or not, list, root) with the key names of
// stats --json; eval --save-scores records that the scores are logits, and metrics follows
// the record, so the chain eval → metrics reproduces eval's figures without --logits.
TEST(Cli, EvalRecordsWhatItScoredAndMetricsFollowsIt) {
  ModelFixture fixture;
  const std::string scores = fixture.dir.file("s.npy");
  const std::string eval_json = fixture.dir.file("eval.json");
  const std::string stats_json = fixture.dir.file("stats.json");
  const std::string metrics_json = fixture.dir.file("metrics.json");
  const auto eval = run_cprfl("eval --workers 0 --top-k 0 --model " + shell_quoted(fixture.model_path) + " --json " +
                              shell_quoted(eval_json) + " --save-scores " + shell_quoted(scores));
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  const auto e = nlohmann::json::parse(read_text(eval_json));
  EXPECT_EQ(e["model"], fixture.model_path);
  EXPECT_EQ(e["ema"], true);
  EXPECT_EQ(e["list"], fixture.config.get_string("data.test_list"));
  EXPECT_EQ(e["root"], fixture.config.get_string("data.root"));
  EXPECT_TRUE(e["labels"].is_null()) << e.dump();  // the model's own classes
  EXPECT_EQ(e["classes"][2]["train_count"], 3);
  EXPECT_EQ(e["top_k"], 4);                     // --top-k 0: no limit, k = every class
  EXPECT_EQ(e["at_top_k"], e["at_threshold"]);

  const auto record = nlohmann::json::parse(read_text(scores + ".json"));
  EXPECT_EQ(record["scores"], "logits");
  EXPECT_EQ(record["shape"], nlohmann::json({8, 4}));
  EXPECT_EQ(record["classes"], nlohmann::json({"red", "green", "blue", "yellow"}));
  EXPECT_EQ(record["targets"], "s_targets.npy");
  for (const char* key : {"model", "ema", "list", "root"}) EXPECT_EQ(record[key], e[key]) << key;

  const auto results = run_all({"metrics --top-k 0 --scores " + shell_quoted(scores) + " --json " + shell_quoted(metrics_json),
                                "metrics --scores " + shell_quoted(scores) + " --probabilities",
                                "stats --list " + shell_quoted(fixture.data + "/train.txt") + " --labels " +
                                    shell_quoted(fixture.data + "/labels.txt") + " --json " + shell_quoted(stats_json)});
  ASSERT_EQ(results[0].exit_code, 0) << results[0].output;
  const auto m = nlohmann::json::parse(read_text(metrics_json));
  EXPECT_EQ(m["scores_are_logits"], true);
  EXPECT_NEAR(m["map_pct"].get<double>(), e["map_pct"].get<double>(), 1e-9);
  for (const char* key : {"cp_pct", "cr_pct", "cf1_pct", "op_pct", "or_pct", "of1_pct"})
    EXPECT_NEAR(m["at_threshold"][key].get<double>(), e["at_threshold"][key].get<double>(), 1e-9) << key;
  EXPECT_EQ(m["classes"][3]["name"], "yellow");  // class names from the record

  EXPECT_EQ(results[1].exit_code, kRunError) << results[1].output;
  EXPECT_TRUE(contains(results[1].output, "error: --probabilities contradicts " + scores +
                                              ".json, which records \"scores\": \"logits\""))
      << results[1].output;

  ASSERT_EQ(results[2].exit_code, 0) << results[2].output;
  const auto st = nlohmann::json::parse(read_text(stats_json));
  EXPECT_EQ(st["list"], fixture.data + "/train.txt");
  EXPECT_EQ(st["labels"], fixture.data + "/labels.txt");
  ASSERT_TRUE(st["classes"][0].contains("train_count")) << st["classes"][0].dump();
  EXPECT_FALSE(st["classes"][0].contains("count")) << st["classes"][0].dump();
}

TEST(Cli, PredictTopKLimitsTheListAndThresholdFiltersIt) {
  ModelFixture fixture;
  std::string image_args;
  for (int i = 0; i < 4; ++i) image_args += " " + shell_quoted(fixture.image(i));
  // Runs predict with each set of flags side by side; returns each one's JSON.
  auto predict = [&](const std::vector<std::string>& flag_sets) {
    std::vector<std::string> commands;
    for (std::size_t i = 0; i < flag_sets.size(); ++i)
      commands.push_back("predict --model " + shell_quoted(fixture.model_path) + " " + flag_sets[i] + " --out " +
                         shell_quoted(fixture.dir.file("predictions" + std::to_string(i) + ".json")) + image_args);
    auto results = run_all(commands);
    std::vector<nlohmann::json> outputs;
    for (std::size_t i = 0; i < flag_sets.size(); ++i) {
      EXPECT_EQ(results[i].exit_code, 0) << flag_sets[i] << "\n" << results[i].output;
      outputs.push_back(results[i].exit_code == 0
                            ? nlohmann::json::parse(read_text(fixture.dir.file("predictions" + std::to_string(i) + ".json")))
                            : nlohmann::json::array());
    }
    return outputs;
  };

  // Threshold 0: with no limit, every class, most probable first; --top-k 2 keeps exactly the
  // 2 most probable.
  auto first = predict({"--threshold 0", "--threshold 0 --top-k 2"});
  const auto& all = first[0];
  const auto& top_two = first[1];
  ASSERT_EQ(all.size(), 4u);
  ASSERT_EQ(top_two.size(), 4u);
  for (std::size_t i = 0; i < all.size(); ++i) {
    auto ranked = all[i]["predicted"].get<std::vector<std::string>>();
    EXPECT_EQ(ranked, expected_prediction(all[i]["classes"], 0, 0.0));
    EXPECT_EQ(ranked.size(), 4u);
    ranked.resize(2);
    EXPECT_EQ(top_two[i]["predicted"].get<std::vector<std::string>>(), ranked) << top_two[i].dump();
  }

  // A threshold between image 0's second and third probabilities: with --top-k 3 it predicts
  // only 2 classes (the threshold still applies inside the top k), and without a limit too.
  std::vector<double> probabilities;
  for (const auto& entry : all[0]["classes"]) probabilities.push_back(entry["probability"].get<double>());
  std::sort(probabilities.rbegin(), probabilities.rend());
  ASSERT_GT(probabilities[1] - probabilities[2], 1e-6) << "the fixture needs distinct probabilities";
  const double threshold = (probabilities[1] + probabilities[2]) / 2;
  const std::vector<int> limits = {3, 0};
  auto filtered = predict({"--threshold " + exact(threshold) + " --top-k 3", "--threshold " + exact(threshold)});
  for (std::size_t run = 0; run < limits.size(); ++run) {
    ASSERT_EQ(filtered[run].size(), 4u);
    for (const auto& row : filtered[run])
      EXPECT_EQ(row["predicted"].get<std::vector<std::string>>(), expected_prediction(row["classes"], limits[run], threshold))
          << "--top-k " << limits[run] << ": " << row.dump();
    EXPECT_EQ(filtered[run][0]["predicted"].size(), 2u) << filtered[run][0].dump();
  }
}

TEST(Cli, TrainListKeysListsEveryKeyOfTheSchema) {
  auto result = run_cprfl("train --list-keys");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::vector<std::string> listed;
  std::istringstream lines(result.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("  ", 0) != 0) continue;
    listed.push_back(line.substr(2, line.find(" (") - 2));
  }
  std::vector<std::string> schema;
  for (const auto& entry : cprfl::config_schema()) {
    schema.push_back(entry.key);
    EXPECT_TRUE(contains(result.output, "  " + entry.key + " (")) << entry.key;
    EXPECT_TRUE(contains(result.output, "default '" + entry.default_value + "')")) << entry.key;
  }
  EXPECT_EQ(listed, schema);
  EXPECT_EQ(result.output, cprfl::Config::describe_schema());
}

TEST(Cli, ParseErrorsExitWithCli11sCodeAndNameTheFlag) {
  struct Case {
    std::string arguments;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases = {
      // Unknown flags.
      {"eval --model m.cprfl --bogus", kExtrasError, "--bogus"},
      {"--bogus eval --model m.cprfl", kExtrasError, "--bogus"},
      // Missing required options and values.
      {"eval", kRequiredError, "--model is required"},
      {"predict --model m.cprfl", kRequiredError, "inputs is required"},
      {"eval --model", kArgumentMismatch, "--model"},
      // Bad values.
      {"eval --model m.cprfl --top-k abc", kValidationError, "--top-k: must be a whole number, got 'abc'"},
      {"eval --model m.cprfl --top-k -1", kValidationError, "--top-k: must be at least 0, got -1"},
      {"eval --model m.cprfl --device tpu", kValidationError, "--device"},
      {"eval --model m.cprfl --precision fp16", kValidationError, "--precision: fp16 not in {auto,fp32,bf16}"},
      {"predict --model m.cprfl a.png --precision half", kValidationError, "--precision"},
      {"train --config c.yaml --nproc 0", kValidationError, "--nproc: must be at least 1, got 0"},
      {"predict --model m.cprfl a.png --threshold 2", kValidationError, "--threshold: must be between 0 and 1, got 2"},
      // --threads 0 is caught before any command runs.
      {"--threads 0 eval --model m.cprfl", kValidationError, "--threads: must be at least 1, got 0"},
      // No subcommand at all.
      {"", kRequiredError, "A subcommand is required"},
  };
  std::vector<std::string> commands;
  for (const auto& c : cases) commands.push_back(c.arguments);
  const auto results = run_all(commands);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto& result = results[i];
    EXPECT_EQ(result.exit_code, c.exit_code) << "cprfl " << c.arguments << "\n" << result.output;
    EXPECT_FALSE(result.signalled) << c.arguments;
    EXPECT_TRUE(contains(result.output, c.message)) << "cprfl " << c.arguments << "\n" << result.output;
    EXPECT_TRUE(contains(result.output, "Run with --help for more information.")) << c.arguments;
    // The same prefix as every other error.
    EXPECT_EQ(result.output.rfind("error: ", 0), 0u) << "cprfl " << c.arguments << "\n" << result.output;
  }
}

TEST(Cli, UnknownSubcommandIsNamedWithTheNearestOne) {
  const auto results = run_all({"evaluate --model m.cprfl", "predcit a.png", "--threads 1 evl", "frobnicate"});
  const char* expected[] = {"error: unknown command 'evaluate' — did you mean 'eval'?",
                            "error: unknown command 'predcit' — did you mean 'predict'?",
                            "error: unknown command 'evl' — did you mean 'eval'?", "error: unknown command 'frobnicate'\n"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(results[i].exit_code, kExtrasError) << results[i].output;
    EXPECT_FALSE(results[i].signalled);
    EXPECT_TRUE(contains(results[i].output, expected[i])) << results[i].output;
    EXPECT_TRUE(contains(results[i].output, "cprfl --help")) << results[i].output;
  }
}

TEST(Cli, HelpCommandShowsTheToolsOrACommandsHelp) {
  const auto results = run_all({"help", "help predict", "help predcit"});
  EXPECT_EQ(results[0].exit_code, 0) << results[0].output;
  EXPECT_TRUE(contains(results[0].output, "make-fashion-lt")) << results[0].output;
  EXPECT_EQ(results[1].exit_code, 0) << results[1].output;
  EXPECT_TRUE(contains(results[1].output, "--top-k")) << results[1].output;  // predict's own options
  EXPECT_EQ(results[2].exit_code, kExtrasError) << results[2].output;
  EXPECT_TRUE(contains(results[2].output, "did you mean 'predict'?")) << results[2].output;
}

TEST(Cli, HelpExitsZero) {
  auto help = run_cprfl("--help");
  EXPECT_EQ(help.exit_code, 0) << help.output;
  for (const char* command : {"eval", "predict", "summarize", "train", "metrics"})
    EXPECT_TRUE(contains(help.output, command)) << command << "\n" << help.output;
}

TEST(Cli, MissingModelFileExitsOneNamingThePath) {
  TempDir dir;
  const std::string missing = dir.file("no/such/model.cprfl");
  std::filesystem::create_directories(dir.file("img"));
  write_text(dir.file("list.txt"), "a.png 0\n");
  const std::vector<std::string> commands = {
      "eval --no-ema --model " + shell_quoted(missing) + " --list " + shell_quoted(dir.file("list.txt")),
      "predict --model " + shell_quoted(missing) + " " + shell_quoted(dir.path())};
  const auto results = run_all(commands);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    const auto& arguments = commands[i];
    const auto& result = results[i];
    EXPECT_EQ(result.exit_code, kRunError) << arguments << "\n" << result.output;
    EXPECT_FALSE(result.signalled);
    EXPECT_TRUE(contains(result.output, "error: " + missing + ": ")) << arguments << "\n" << result.output;
  }
}

// Output paths are checked before any work: the model file here does not even exist, and the
// error is about the output.
TEST(Cli, OutputPathsAreCheckedBeforeTheWork) {
  TempDir dir;
  const std::string missing_model = shell_quoted(dir.file("absent.cprfl"));
  const std::string no_folder = dir.file("nodir/e.json");
  const std::vector<std::string> commands = {
      "eval --model " + missing_model + " --json " + shell_quoted(no_folder),
      "eval --model " + missing_model + " --save-scores " + shell_quoted(dir.path()),
      "predict --model " + missing_model + " a.png --out " + shell_quoted(no_folder)};
  const auto results = run_all(commands);
  const std::string expected[] = {no_folder + ": cannot write: its folder " + dir.file("nodir") + " does not exist",
                                  dir.path() + ": is a folder; give a file name to write",
                                  no_folder + ": cannot write: its folder " + dir.file("nodir") + " does not exist"};
  for (std::size_t i = 0; i < commands.size(); ++i) {
    EXPECT_EQ(results[i].exit_code, kRunError) << commands[i] << "\n" << results[i].output;
    EXPECT_TRUE(contains(results[i].output, "error: " + expected[i])) << commands[i] << "\n" << results[i].output;
  }
}

// A folder where a file is expected is called a folder, whatever reads it.
TEST(Cli, AFolderGivenForAFileIsCalledAFolder) {
  TempDir dir;
  const std::string folder = shell_quoted(dir.path());
  const std::vector<std::string> commands = {"stats --list " + folder + " --labels " + folder,
                                             "eval --model " + folder, "train --quiet --config " + folder};
  const auto results = run_all(commands);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    EXPECT_EQ(results[i].exit_code, kRunError) << commands[i] << "\n" << results[i].output;
    EXPECT_TRUE(contains(results[i].output, "error: " + dir.path() + ": is a folder; a file is expected here"))
        << commands[i] << "\n" << results[i].output;
  }
}

TEST(Cli, DeathBySignalIsReportedAsOneTwentyEightPlusTheSignal) {
  // `train --config <fifo>` blocks opening the FIFO; the test then kills that cprfl (found by
  // its command line, which names this test's own FIFO) with SIGKILL.
  TempDir dir;
  const std::string fifo = dir.file("config.yaml");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  cprfl::testing::CommandResult result;
  std::thread runner([&] { result = run_cprfl("train --quiet --config " + shell_quoted(fifo)); });
  pid_t target = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (target == 0 && std::chrono::steady_clock::now() < deadline) {
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
      std::string cmdline = read_text(entry.path().string() + "/cmdline");
      const std::string argv0 = cmdline.substr(0, cmdline.find('\0'));
      std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
      // After the shell's exec: argv[0] is the tool itself (before it, the shell).
      if (std::filesystem::path(argv0).filename() == "cprfl" && contains(cmdline, fifo)) {
        target = static_cast<pid_t>(std::stol(name));
        break;
      }
    }
    if (target == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (target == 0) {
    // Unblock the command so that the thread ends, then fail.
    std::FILE* writer = std::fopen(fifo.c_str(), "w");
    if (writer) std::fclose(writer);
    runner.join();
    FAIL() << "did not find the cprfl process; output: " << result.output;
  }
  ASSERT_EQ(kill(target, SIGKILL), 0);
  runner.join();
  EXPECT_TRUE(result.signalled) << result.output;
  EXPECT_EQ(result.signal, SIGKILL);
  EXPECT_EQ(result.exit_code, 128 + SIGKILL);
}
