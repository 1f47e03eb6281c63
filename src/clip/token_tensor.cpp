#include "cprfl/clip/token_tensor.h"

#include <algorithm>

#include "cprfl/common/error.h"

namespace cprfl::clip {

torch::Tensor pad_tokens(const std::vector<int>& ids, int context) {
  if (context < 1 || ids.size() > static_cast<std::size_t>(context)) {
    throw Error(std::to_string(ids.size()) + " token ids do not fit the context length " + std::to_string(context));
  }
  auto out = torch::zeros({context}, torch::kInt64);
  auto* data = out.data_ptr<std::int64_t>();
  std::copy(ids.begin(), ids.end(), data);
  return out;
}

torch::Tensor tokenize_batch(const ClipTokenizer& tokenizer, const std::vector<std::string>& texts, int context,
                             bool truncate) {
  auto out = torch::zeros({static_cast<std::int64_t>(texts.size()), context}, torch::kInt64);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    out[static_cast<std::int64_t>(i)].copy_(pad_tokens(tokenizer.tokenize(texts[i], context, truncate), context));
  }
  return out;
}

}  // namespace cprfl::clip
