#pragma once
// Subcommand registry. Each apps/cmd_*.cpp adds its own subcommand with a static
// RegisterCommand; apps/cprfl.cpp parses and runs the one the user chose. Adding a
// command therefore touches only its own file.
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace cprfl::app {

// Runs a parsed subcommand; returns the process exit code.
using Runner = std::function<int()>;
// Adds the subcommand (and its options) to the root app; returns what runs it.
using AddCommand = std::function<Runner(CLI::App& root)>;

struct CommandEntry {
  std::string name;
  AddCommand add;
};

std::vector<CommandEntry>& command_registry();

struct RegisterCommand {
  RegisterCommand(std::string name, AddCommand add) { command_registry().push_back({std::move(name), std::move(add)}); }
};

// Option checks whose messages say the allowed range in words ("must be a whole number of at
// least 1, got 0"), instead of CLI11's "not in range 0.000000 to 1797693…".
CLI::Validator at_least(long long minimum);
CLI::Validator between(double low, double high);
// auto | cpu | cuda | cuda:N (common/device.h).
CLI::Validator device_name();
// --precision's help: what auto means, and what it picks on this CPU.
std::string precision_help();

}  // namespace cprfl::app
