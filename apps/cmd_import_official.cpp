// cprfl import-official: a checkpoint of the authors' Python code → a cprfl model file.
#include <iostream>
#include <memory>

#include "command.h"
#include "cprfl/data/list_file.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/config/import_official.h"

namespace cprfl::app {
namespace {

struct ImportOfficialOptions {
  std::string checkpoint;
  std::string labels;
  std::string out;
  ImportOptions import;
};

Runner add_import_official(CLI::App& root) {
  auto options = std::make_shared<ImportOfficialOptions>();
  CLI::App* cmd = root.add_subcommand(
      "import-official",
      "Convert a model trained with the authors' Python code (torch.save, 'state_dict', `module.` prefixes allowed) "
      "into a cprfl model file for eval and predict; its CLIP text encoder runs once to give W");
  cmd->add_option("--checkpoint", options->checkpoint, "the authors' checkpoint (.ckpt/.pth saved by torch.save)")
      ->required();
  cmd->add_option("--labels", options->labels,
                  "labels file: the class names in the order the model was trained with (`_` becomes a space)")
      ->required();
  cmd->add_option("--out", options->out, "output model file (.cprfl, written atomically)")->required();
  cmd->add_option("--heads", options->import.heads,
                  "VSI attention heads (no tensor shows them; the official code uses 8)")
      ->check(at_least(1));
  cmd->add_option("--template", options->import.prompt_template, "prompt; {} is replaced by the class name");
  cmd->add_option("--train-list", options->import.train_list,
                  "training list: stores the class counts, so eval reports head/medium/tail mAP");
  cmd->add_option("--image-size", options->import.image_size, "input side in pixels (the official 448)")
      ->check(CLI::Range(32, 4096));
  cmd->add_option("--vocab", options->import.vocab_path, "CLIP BPE merges file (.txt.gz)");
  return [options] {
    auto names = read_labels(options->labels);
    auto imported = import_official_checkpoint(options->checkpoint, names, options->import);
    save_tensor_file(options->out, make_imported_model_file(imported, options->checkpoint, options->import));
    const auto& a = imported.architecture;
    std::cout << "wrote " << options->out << ": " << a.backbone << ", d " << a.dim << ", tau " << a.prompt_hidden << "/"
              << a.dim << ", VSI " << a.depth << " layer(s) x " << a.heads << " heads x " << a.head_dim << ", ffn "
              << a.ffn << ", W " << names.size() << " x " << a.text_width << " from \""
              << clip::fill_prompt_template(options->import.prompt_template, names.front()) << "\", ...\n";
    return 0;
  };
}

RegisterCommand registration("import-official", add_import_official);

}  // namespace
}  // namespace cprfl::app
