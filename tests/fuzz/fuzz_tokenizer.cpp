// The CLIP BPE tokenizer (clip/tokenizer.h) on arbitrary text (class names and prompts come
// from users' files). Loads the shipped merges file once.
#include "cprfl/clip/tokenizer.h"
#include "fuzz_support.h"

namespace cprfl::fuzz {

void fuzz_one(std::string_view bytes) {
  static const clip::ClipTokenizer tokenizer = clip::ClipTokenizer::load();
  const std::string text(bytes);
  std::vector<int> ids = tokenizer.encode(text);
  for (int id : ids)
    if (id < 0 || static_cast<std::size_t>(id) >= tokenizer.vocabulary_size()) invariant_failed("an id outside the vocabulary");
  std::vector<int> tokens = tokenizer.tokenize(text);
  if (tokens.size() > static_cast<std::size_t>(clip::kContextLength) || tokens.front() != clip::kStartToken ||
      tokens.back() != clip::kEndToken)
    invariant_failed("tokenize broke its start/end/length contract");
  tokenizer.decode(ids);
}

}  // namespace cprfl::fuzz
