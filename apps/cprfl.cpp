// cprfl: the command-line tool. Thin: it parses flags and calls the library.
#include <torch/torch.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <thread>

#include "command.h"
#include "cprfl/common/error.h"

namespace cprfl::app {

std::vector<CommandEntry>& command_registry() {
  static std::vector<CommandEntry> registry;
  return registry;
}

}  // namespace cprfl::app

int main(int argc, char** argv) {
  using namespace cprfl::app;
  CLI::App app{"cprfl — Category-Prompt Refined Feature Learning for long-tailed multi-label image classification"};
  app.option_defaults()->always_capture_default();
  app.require_subcommand(1);
  app.fallthrough();
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("--threads", threads, "LibTorch intra-op threads (default: all cores)")->check(CLI::PositiveNumber);
  app.set_version_flag("--version", "cprfl 0.1.0");

  auto& registry = command_registry();
  std::sort(registry.begin(), registry.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::map<CLI::App*, Runner> runners;
  for (auto& entry : registry) {
    Runner runner = entry.add(app);
    runners[app.get_subcommand(entry.name)] = std::move(runner);
  }
  try {
    app.parse(argc, argv);
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
