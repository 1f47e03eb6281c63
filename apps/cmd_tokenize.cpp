// cprfl tokenize: CLIP BPE token ids of texts (start and end tokens included, no padding).
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "command.h"
#include "cprfl/common/shipped_data.h"
#include "cprfl/clip/tokenizer.h"

namespace cprfl::app {
namespace {

struct TokenizeOptions {
  std::vector<std::string> texts;
  std::string vocab = "data/clip/bpe_simple_vocab_16e6.txt.gz";
  int context = clip::kContextLength;
  bool json = false;
};

Runner add_tokenize(CLI::App& root) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = root.add_subcommand("tokenize", "CLIP BPE token ids of each text (as clip.tokenize, without padding)");
  cmd->add_option("texts", options->texts, "texts to tokenize; one output line each")->required();
  cmd->add_option("--vocab", options->vocab, "CLIP BPE merges file (.txt.gz)");
  cmd->add_option("--context", options->context, "context length: longer texts are cut, the end token kept last")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_flag("--json", options->json, "print a JSON array of {\"text\", \"ids\"} instead");
  return [options] {
    auto tokenizer = clip::ClipTokenizer::load(resolve_input_path(options->vocab));
    nlohmann::json all = nlohmann::json::array();
    for (const auto& text : options->texts) {
      auto ids = tokenizer.tokenize(text, options->context);
      if (options->json) {
        all.push_back({{"text", text}, {"ids", ids}});
        continue;
      }
      for (std::size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
      std::cout << "\n";
    }
    if (options->json) std::cout << all.dump(2) << "\n";
    return 0;
  };
}

RegisterCommand registration("tokenize", add_tokenize);

}  // namespace
}  // namespace cprfl::app
