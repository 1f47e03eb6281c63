// `cprfl train` and `cprfl predict` as a user runs them, from a folder outside the repository:
// Ctrl-C mid-epoch checkpoints and continues to the uninterrupted result, inputs are checked
// before a run folder is made, a resumed run keeps its model, and predict can skip a broken file.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "cprfl/io/tensor_file.h"
#include "test_support.h"
#include "tiny_dataset.h"

using cprfl::testing::CommandResult;
using cprfl::testing::read_text;
using cprfl::testing::run_cprfl;
using cprfl::testing::TempDir;
using cprfl::testing::write_text;

namespace {

// Runs the test body with the working folder set to `dir` (ctest runs each test in its own process).
struct InFolder {
  std::string previous = std::filesystem::current_path().string();
  explicit InFolder(const std::string& dir) { std::filesystem::current_path(dir); }
  ~InFolder() { std::filesystem::current_path(previous); }
};

// Sets an environment variable for the commands run while it lives.
struct Env {
  std::string name;
  Env(const std::string& n, const std::string& value) : name(n) { setenv(n.c_str(), value.c_str(), 1); }
  ~Env() { unsetenv(name.c_str()); }
};

struct TinyRun {
  TempDir dir;
  std::string config_path = dir.file("tiny.yaml");
  TinyRun() {
    cprfl::testing::write_tiny_dataset(dir.file("data"));
    write_text(config_path, cprfl::testing::tiny_config(dir.file("data"), dir.file("unused")).to_yaml());
  }
  std::string train(const std::string& out, const std::string& extra = "") const {
    return "train --config " + config_path + " --quiet --set train.out_dir=" + dir.file(out) + " " + extra;
  }
};

}  // namespace

// SIGINT in the 5th step (epoch 2 of 3, its 2nd batch): the step finishes, a checkpoint of it is
// written, the command says how to continue and exits 130; resuming ends where an uninterrupted
// run ends (weights within float rounding across processes, the same metrics history).
TEST(CliRuns, CtrlCCheckpointsTheStepAndResumesToTheSameResult) {
  TinyRun run;
  InFolder here(run.dir.path());
  auto whole = run_cprfl(run.train("whole"));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;

  CommandResult stopped;
  {
    Env fault("CPRFL_FAULT_AT", "step:5:INT");
    stopped = run_cprfl(run.train("stopped"));
  }
  ASSERT_EQ(stopped.exit_code, 130) << stopped.output;
  EXPECT_NE(stopped.output.find("interrupted after step 5; continue with: cprfl train --resume " + run.dir.file("stopped")),
            std::string::npos) << stopped.output;
  auto checkpoint = cprfl::load_tensor_file(run.dir.file("stopped") + "/last.cprfl");
  EXPECT_EQ(checkpoint.meta["trainer"]["step"], 5);
  EXPECT_EQ(checkpoint.meta["trainer"]["epochs_done"], 1);
  EXPECT_EQ(checkpoint.meta["trainer"]["batches_into_epoch"], 2);

  auto resumed = run_cprfl("train --resume " + run.dir.file("stopped") + " --quiet --json");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  auto summary = nlohmann::json::parse(resumed.output.substr(resumed.output.rfind("\n{") + 1));
  EXPECT_EQ(summary["step"], 9);
  EXPECT_EQ(summary["interrupted"], false);

  auto a = cprfl::load_tensor_file(run.dir.file("whole") + "/last.cprfl");
  auto b = cprfl::load_tensor_file(run.dir.file("stopped") + "/last.cprfl");
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, tensor] : a.tensors) {
    if (name == "trainer/optimizer") continue;
    ASSERT_TRUE(b.tensors.count(name)) << name;
    // Same arithmetic in two processes with the same thread count; a float32 tolerance in case
    // the two processes' kernels choose differently.
    EXPECT_TRUE(torch::allclose(tensor.to(torch::kDouble), b.tensors.at(name).to(torch::kDouble), 1e-4, 1e-5)) << name;
  }
  auto history_a = a.meta["trainer"]["history"], history_b = b.meta["trainer"]["history"];
  ASSERT_EQ(history_a.size(), 3u);
  ASSERT_EQ(history_b.size(), 3u);
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(history_a[e]["step"], history_b[e]["step"]);
    EXPECT_NEAR(history_a[e]["train_loss"].get<double>(), history_b[e]["train_loss"].get<double>(), 1e-5) << e;
  }
}

// eval of a model whose test list is not here says to pass --list and --root.
TEST(CliRuns, EvalElsewhereSaysToPassAList) {
  TinyRun run;
  InFolder here(run.dir.path());
  ASSERT_EQ(run_cprfl(run.train("run", "--set optim.epochs=1")).exit_code, 0);
  std::filesystem::rename(run.dir.file("data/test.txt"), run.dir.file("moved.txt"));
  auto result = run_cprfl("eval --model " + run.dir.file("run") + "/last.cprfl");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("test.txt: no such file: the test list named in the model's config (data.test_list); "
                               "pass --list and --root"),
            std::string::npos) << result.output;
  auto given = run_cprfl("eval --model " + run.dir.file("run") + "/last.cprfl --list moved.txt --root data");
  EXPECT_EQ(given.exit_code, 0) << given.output;
}

TEST(CliRuns, MissingInputsAreNamedBeforeARunFolderIsMade) {
  TinyRun run;
  InFolder here(run.dir.path());
  auto result = run_cprfl(run.train("never", "--set data.labels=fashion-lt/labels.txt"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("fashion-lt/labels.txt: no such file (data.labels); make the Fashion-LT benchmark first: "
                               "cprfl make-fashion-lt --out fashion-lt"),
            std::string::npos) << result.output;
  EXPECT_FALSE(std::filesystem::exists(run.dir.file("never")));
}

TEST(CliRuns, ResumeCannotChangeTheModel) {
  TinyRun run;
  InFolder here(run.dir.path());
  ASSERT_EQ(run_cprfl(run.train("run", "--epochs-this-run 1")).exit_code, 0);
  auto result = run_cprfl("train --resume " + run.dir.file("run") + " --quiet --set model.d=32 --set model.heads=4");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("--resume cannot change the model of a run: model.d (the run has 16, given 32), "
                               "model.heads (the run has 2, given 4)"),
            std::string::npos) << result.output;
  // Settings that do not shape the model may change; --resume also takes the checkpoint file.
  auto longer = run_cprfl("train --resume " + run.dir.file("run") + "/last.cprfl --quiet --set optim.lr=1e-3");
  EXPECT_EQ(longer.exit_code, 0) << longer.output;
}

TEST(CliRuns, PredictSkipsABrokenImageWhenAsked) {
  TinyRun run;
  InFolder here(run.dir.path());
  ASSERT_EQ(run_cprfl(run.train("run", "--set optim.epochs=1")).exit_code, 0);
  std::filesystem::create_directories(run.dir.file("photos"));
  std::filesystem::copy_file(run.dir.file("data/img/0.png"), run.dir.file("photos/a.png"));
  std::filesystem::copy_file(run.dir.file("data/img/1.png"), run.dir.file("photos/b.png"));
  write_text(run.dir.file("photos/broken.png"), "not a png");
  const std::string model = run.dir.file("run") + "/last.cprfl";
  auto strict = run_cprfl("predict --model " + model + " photos");
  EXPECT_EQ(strict.exit_code, 1) << strict.output;
  EXPECT_NE(strict.output.find("broken.png"), std::string::npos) << strict.output;
  auto skipping = run_cprfl("predict --model " + model + " photos --on-bad-image skip --out p.json");
  ASSERT_EQ(skipping.exit_code, 0) << skipping.output;
  EXPECT_NE(skipping.output.find("predict: 2 image(s), 1 skipped as unreadable"), std::string::npos) << skipping.output;
  const std::string text = read_text(run.dir.file("p.json"));
  // Each entry reads image, predicted, then the classes.
  EXPECT_LT(text.find("\"image\""), text.find("\"predicted\""));
  EXPECT_LT(text.find("\"predicted\""), text.find("\"classes\""));
  auto results = nlohmann::json::parse(text);
  // Probabilities as the shortest decimal of the float: at most 9 significant digits.
  for (const auto& entry : results[0]["classes"]) {
    const std::string number = entry["probability"].dump();
    const std::string mantissa = number.substr(0, number.find_first_of("eE"));
    const auto first = mantissa.find_first_not_of("0.");
    int digits = 0;
    for (std::size_t i = first; i != std::string::npos && i < mantissa.size(); ++i) digits += std::isdigit(mantissa[i]) ? 1 : 0;
    EXPECT_LE(digits, 9) << number;
  }
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0]["image"], "photos/a.png");
  EXPECT_EQ(results[1]["image"], "photos/b.png");
}

// From a folder outside the repository: the shipped vocabulary and prompt embeddings are found,
// and a missing Fashion-LT list says how to make it.
TEST(CliRuns, ShippedDataIsFoundFromAnyFolder) {
  TempDir dir;
  InFolder here(dir.path());
  auto tokens = run_cprfl("tokenize \"a dog\"");
  EXPECT_EQ(tokens.exit_code, 0) << tokens.output;
  EXPECT_NE(tokens.output.find("49406"), std::string::npos) << tokens.output;  // the start token
  auto train = run_cprfl("train --config " + cprfl::testing::source_dir() + "/configs/fashion_lt_ci.yaml --quiet");
  EXPECT_EQ(train.exit_code, 1) << train.output;
  EXPECT_NE(train.output.find("runs/fashion-lt/labels.txt: no such file (data.labels); make the Fashion-LT benchmark "
                              "first: cprfl make-fashion-lt --out runs/fashion-lt"),
            std::string::npos) << train.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("runs")));
}

// Input paths in a config file are read beside it; outputs stay in the current folder.
TEST(CliRuns, ConfigPathsAreRelativeToTheConfigFile) {
  TinyRun run;
  std::filesystem::create_directories(run.dir.file("project/configs"));
  std::filesystem::create_directories(run.dir.file("elsewhere"));
  std::filesystem::copy(run.dir.file("data"), run.dir.file("project/configs/data"), std::filesystem::copy_options::recursive);
  auto config = cprfl::testing::tiny_config("data", "out");
  config.set("data.root", "data", "test");
  config.set("data.train_list", "data/train.txt", "test");
  config.set("data.test_list", "data/test.txt", "test");
  config.set("data.labels", "data/labels.txt", "test");
  config.set("optim.epochs", "1", "test");
  write_text(run.dir.file("project/configs/run.yaml"), config.to_yaml());
  InFolder here(run.dir.file("elsewhere"));
  auto result = run_cprfl("train --config ../project/configs/run.yaml --quiet");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(std::filesystem::exists(run.dir.file("elsewhere/out/last.cprfl")));
}

// Progress on stderr (not a terminal: a plain line every 10%): '–' until the loss is first
// read, the learning rate in scientific form; --quiet drops the bars but keeps the epoch's mAP line.
TEST(CliRuns, ProgressLinesAndQuiet) {
  TinyRun run;
  InFolder here(run.dir.path());
  auto shown = run_cprfl("train --config " + run.config_path + " --set train.out_dir=" + run.dir.file("a") +
                         " --epochs-this-run 1");
  ASSERT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_NE(shown.output.find("epoch 1/3"), std::string::npos) << shown.output;
  EXPECT_NE(shown.output.find("loss – lr "), std::string::npos) << shown.output;
  EXPECT_TRUE(std::regex_search(shown.output, std::regex("lr [0-9]\\.[0-9]{2}e-0[0-9]"))) << shown.output;
  auto quiet = run_cprfl("train --config " + run.config_path + " --quiet --set train.out_dir=" + run.dir.file("b") +
                         " --epochs-this-run 1");
  ASSERT_EQ(quiet.exit_code, 0) << quiet.output;
  EXPECT_EQ(quiet.output.find("epoch 1/3"), std::string::npos) << quiet.output;
  EXPECT_NE(quiet.output.find("  test mAP "), std::string::npos) << quiet.output;
}
