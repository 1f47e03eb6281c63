#pragma once
// clip.tokenize's output: token ids zero-padded to the context length, as an int64 tensor.
#include <torch/types.h>

#include <string>
#include <vector>

#include "cprfl/clip/tokenizer.h"

namespace cprfl::clip {

// [context] int64: `ids` followed by zeros. Longer than `context` is an error (tokenize()
// already truncates).
torch::Tensor pad_tokens(const std::vector<int>& ids, int context = kContextLength);
// [texts.size(), context] int64, exactly what clip.tokenize(texts) returns.
torch::Tensor tokenize_batch(const ClipTokenizer& tokenizer, const std::vector<std::string>& texts,
                             int context = kContextLength, bool truncate = true);

}  // namespace cprfl::clip
