// cprfl summarize: mean ± std of the final test mAP (total/head/medium/tail) over run folders
// (given one by one, or as the folder that holds them).
#include <iostream>
#include <memory>

#include "command.h"
#include "cprfl/eval/run_summary.h"
#include "cprfl/io/atomic_file.h"

namespace cprfl::app {
namespace {

struct SummarizeOptions {
  std::vector<std::string> runs;
  std::string json;
  std::string markdown;
  bool no_ema = false;
  std::string split = "test";
  std::string reference;
  bool best = false;
};

Runner add_summarize(CLI::App& root) {
  auto options = std::make_shared<SummarizeOptions>();
  CLI::App* cmd = root.add_subcommand(
      "summarize", "Table of final test mAP over runs; folders named <variant>_seed<k> are averaged per variant");
  cmd->add_option("runs", options->runs,
                  "run folders (each with metrics.jsonl), or folders of run folders such as runs/ (each of its "
                  "sub-folders with a metrics.jsonl is a run)")
      ->required();
  cmd->add_option("--json", options->json, "write the summary and per-run figures as JSON");
  cmd->add_option("--markdown", options->markdown, "write the Markdown table to this file too");
  cmd->add_flag("--no-ema", options->no_ema, "use the raw model's figures even when EMA figures exist");
  cmd->add_option("--split", options->split,
                  "which figures: test (the test list) or val (the validation part, for choosing settings)")
      ->check(CLI::IsMember({"test", "val"}));
  cmd->add_option("--reference", options->reference,
                  "also tabulate this variant minus each other variant over the seeds both ran, with a 95% "
                  "confidence interval (paired by the _seed<k> folder names)");
  cmd->add_flag("--best", options->best,
                "print only the name of the variant with the highest mean total mAP (for scripts that choose "
                "settings; the table still goes to --markdown and --json)");
  return [options] {
    std::vector<RunFigures> runs;
    for (const auto& dir : options->runs) {
      const auto dirs = run_dirs_in(dir);
      if (dirs.size() > 1 || dirs.front() != dir)
        std::cerr << "summarize: " << dir << " holds " << dirs.size() << " run folder(s)\n";
      for (const auto& run_dir : dirs) runs.push_back(read_run_figures(run_dir, !options->no_ema, options->split));
    }
    auto summaries = summarize_runs(runs);
    std::vector<PairedDifference> differences;
    if (!options->reference.empty()) differences = paired_differences(runs, options->reference);
    std::string table = format_markdown(summaries);
    if (!differences.empty()) table += "\n" + format_markdown(differences);
    if (options->best)
      std::cout << best_variant(summaries).variant << "\n";
    else
      std::cout << table;
    if (!options->markdown.empty()) write_file_atomic(options->markdown, table);
    if (!options->json.empty()) write_file_atomic(options->json, to_json(summaries, runs, differences).dump(2) + "\n");
    return 0;
  };
}

RegisterCommand registration("summarize", add_summarize);

}  // namespace
}  // namespace cprfl::app
