// cprfl encode-prompts: the prompt embeddings W of a labels file through a CLIP text encoder.
#include <iostream>
#include <memory>

#include "command.h"
#include "cprfl/common/shipped_data.h"
#include "cprfl/clip/prompts.h"
#include "cprfl/data/list_file.h"
#include "cprfl/io/npy.h"

namespace cprfl::app {
namespace {

struct EncodePromptsOptions {
  std::string clip;
  std::string labels;
  std::string template_text = clip::kDefaultPromptTemplate;
  std::string out;
  std::string vocab = "data/clip/bpe_simple_vocab_16e6.txt.gz";
};

Runner add_encode_prompts(CLI::App& root) {
  auto options = std::make_shared<EncodePromptsOptions>();
  CLI::App* cmd = root.add_subcommand(
      "encode-prompts", "Class-name prompts through CLIP's text encoder: W [classes, embed] float32 .npy, not normalised");
  cmd->add_option("--clip", options->clip,
                  "CLIP checkpoint: OpenAI TorchScript archive (RN50.pt, ...; read for its tensors only, never run) "
                  "or a torch.save state dict")
      ->required();
  cmd->add_option("--labels", options->labels, "labels file: one class name per line (`_` becomes a space)")->required();
  cmd->add_option("--template", options->template_text, "prompt; {} is replaced by the class name");
  cmd->add_option("--out", options->out, "output .npy file (written atomically)")->required();
  cmd->add_option("--vocab", options->vocab, "CLIP BPE merges file (.txt.gz)");
  return [options] {
    auto names = read_labels(options->labels);
    auto embeddings = clip::encode_class_prompts(options->clip, names, options->template_text, resolve_input_path(options->vocab));
    write_npy(options->out, embeddings);
    std::cout << "wrote " << options->out << ": " << embeddings.size(0) << " x " << embeddings.size(1)
              << " float32 (prompt \"" << clip::fill_prompt_template(options->template_text, names.front())
              << "\", ...)\n";
    return 0;
  };
}

RegisterCommand registration("encode-prompts", add_encode_prompts);

}  // namespace
}  // namespace cprfl::app
