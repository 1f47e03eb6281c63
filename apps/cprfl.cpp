// cprfl: the command-line tool. Thin: it parses flags and calls the library.
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "command.h"
#include "cprfl/common/cpu_features.h"
#include "cprfl/common/device.h"
#include "cprfl/common/precision.h"
#include "cprfl/common/error.h"
#include "cprfl/common/shipped_data.h"
#include "cprfl/common/text.h"

namespace cprfl::app {

std::vector<CommandEntry>& command_registry() {
  static std::vector<CommandEntry> registry;
  return registry;
}

CLI::Validator at_least(long long minimum) {
  return CLI::Validator(
      [minimum](std::string& text) -> std::string {
        auto value = cprfl::parse_int(text);
        if (!value) return "must be a whole number, got '" + text + "'";
        if (*value < minimum) return "must be at least " + std::to_string(minimum) + ", got " + text;
        return "";
      },
      "INT >= " + std::to_string(minimum));
}

CLI::Validator between(double low, double high) {
  auto format = [](double v) {
    std::ostringstream out;
    out << v;
    return out.str();
  };
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double value = 0;
        std::istringstream in(text);
        if (!(in >> value) || !in.eof()) return "must be a number, got '" + text + "'";
        if (!(value >= low && value <= high)) return "must be between " + format(low) + " and " + format(high) + ", got " + text;
        return "";
      },
      "in [" + format(low) + ", " + format(high) + "]");
}

CLI::Validator device_name() {
  return CLI::Validator([](std::string& text) { return cprfl::device_name_problem(text); }, "auto|cpu|cuda|cuda:N");
}

std::string precision_help() {
  return std::string("number format of the image side: auto = bf16 on a CPU with AVX512-BF16 or AMX-BF16 (this one: ") +
         (cprfl::cpu_has_bf16_hardware() ? "yes" : "no") +
         "), fp32 on CUDA and other CPUs; fp32; bf16 (the prompt side and the final scores stay fp32)";
}

namespace {

// The first word on the command line that is not an option of the root (or its value).
int subcommand_position(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    if (word == "--threads") ++i;            // its value follows
    else if (word.rfind("-", 0) != 0) return i;
  }
  return -1;
}

bool is_command(const std::string& word) {
  for (const auto& entry : command_registry())
    if (entry.name == word) return true;
  return false;
}

// "unknown command 'predcit' — did you mean 'predict'?" (CLI11's exit code for an unknown argument).
int unknown_command(const std::string& word) {
  std::string nearest;
  std::size_t best = 4;  // suggest only close words
  for (const auto& entry : command_registry()) {
    std::size_t distance = cprfl::edit_distance(word, entry.name);
    // A longer or shorter form of a command ("evaluate", "pred") counts as close.
    if (word.rfind(entry.name, 0) == 0 || entry.name.rfind(word, 0) == 0) distance = std::min<std::size_t>(distance, 1);
    if (distance < best) best = distance, nearest = entry.name;
  }
  std::cerr << "error: unknown command '" << word << "'";
  if (!nearest.empty()) std::cerr << " — did you mean '" << nearest << "'?";
  std::cerr << "\nRun `cprfl --help` for the list of commands.\n";
  return static_cast<int>(CLI::ExitCodes::ExtrasError);
}

}  // namespace

}  // namespace cprfl::app

int main(int argc, char** argv) {
  using namespace cprfl::app;
  CLI::App app{"cprfl — Category-Prompt Refined Feature Learning for long-tailed multi-label image classification"};
  app.option_defaults()->always_capture_default();
  // Command-line mistakes read like every other error: "error: <what>".
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "error: " + std::string(e.what()) + "\nRun with --help for more information.\n";
  });
  app.require_subcommand(1);
  app.fallthrough();
  // One of several processes on this machine (torchrun, train --nproc): its share of the cores.
  int processes_here = 1;
  if (const char* local = std::getenv("LOCAL_WORLD_SIZE")) processes_here = std::max(1, std::atoi(local));
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / static_cast<unsigned>(processes_here)));
  app.add_option("--threads", threads,
                 "LibTorch intra-op threads (default: all cores, shared out among the processes of a data-parallel "
                 "run on this machine: cores / LOCAL_WORLD_SIZE)")
      ->check(at_least(1));
  app.set_version_flag("--version", [] {
    const std::string vocab = cprfl::find_shipped_data("data/clip/bpe_simple_vocab_16e6.txt.gz");
    const std::string data = vocab.empty() ? "not found (set CPRFL_DATA_DIR)"
                                           : std::filesystem::path(vocab).parent_path().parent_path().string();
    return "cprfl 0.1.0\nshipped data: " + data + "\nLibTorch " + TORCH_VERSION +
           ", CUDA GPUs visible: " + std::to_string(torch::cuda::device_count()) +
           "\nCPU: " + cprfl::cpu_model_name() + ", bf16 hardware: " + cprfl::bf16_hardware_name(cprfl::cpu_bf16_hardware());
  });

  auto& registry = command_registry();
  std::sort(registry.begin(), registry.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::map<CLI::App*, Runner> runners;
  for (auto& entry : registry) {
    Runner runner = entry.add(app);
    runners[app.get_subcommand(entry.name)] = std::move(runner);
  }
  // Name an unknown command (CLI11 would only say that one is required), and make
  // `cprfl help [COMMAND]` mean `cprfl [COMMAND] --help`.
  std::vector<char*> args(argv, argv + argc);
  const int position = subcommand_position(argc, argv);
  if (position > 0 && std::string(argv[position]) == "help") {
    args.erase(args.begin() + position);
    static char help_flag[] = "--help";
    if (position < static_cast<int>(args.size()) && !is_command(args[position])) return unknown_command(args[position]);
    args.insert(args.begin() + std::min<int>(position + 1, static_cast<int>(args.size())), help_flag);
  } else if (position > 0 && !is_command(argv[position])) {
    return unknown_command(argv[position]);
  }
  try {
    app.parse(static_cast<int>(args.size()), args.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  torch::set_num_threads(threads);
  try {
    for (auto& [sub, runner] : runners)
      if (sub->parsed()) return runner();
  } catch (const cprfl::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
