#include "cprfl/clip/prompts.h"

#include <algorithm>
#include <memory>

#include "cprfl/clip/token_tensor.h"
#include "cprfl/common/error.h"
#include "cprfl/common/progress.h"

namespace cprfl::clip {

std::string fill_prompt_template(const std::string& template_text, const std::string& class_name) {
  const auto slot = template_text.find("{}");
  if (slot == std::string::npos || template_text.find("{}", slot + 2) != std::string::npos)
    throw Error("prompt template '" + template_text + "' must contain '{}' exactly once (where the class name goes)");
  std::string name = class_name;
  std::replace(name.begin(), name.end(), '_', ' ');
  return template_text.substr(0, slot) + name + template_text.substr(slot + 2);
}

torch::Tensor encode_class_prompts(ClipTextEncoderImpl& encoder, const ClipTokenizer& tokenizer,
                                   const std::vector<std::string>& class_names, const std::string& template_text) {
  if (class_names.empty()) throw Error("no class names to encode");
  std::vector<std::string> prompts;
  for (const auto& name : class_names) prompts.push_back(fill_prompt_template(template_text, name));
  const auto context = static_cast<int>(encoder.architecture().context_length);

  torch::NoGradGuard no_grad;
  constexpr std::size_t kBatch = 128;
  std::unique_ptr<ProgressBar> progress;
  if (prompts.size() > kBatch)
    progress = std::make_unique<ProgressBar>("encode prompts", static_cast<int64_t>(prompts.size()), "prompt");
  std::vector<torch::Tensor> rows;
  for (std::size_t start = 0; start < prompts.size(); start += kBatch) {
    std::vector<std::string> batch(prompts.begin() + static_cast<std::ptrdiff_t>(start),
                                   prompts.begin() + static_cast<std::ptrdiff_t>(std::min(prompts.size(), start + kBatch)));
    rows.push_back(encoder.encode(tokenize_batch(tokenizer, batch, context)).to(torch::kCPU, torch::kFloat));
    if (progress) progress->advance(static_cast<int64_t>(batch.size()));
  }
  if (progress) progress->finish();
  return torch::cat(rows).contiguous();
}

torch::Tensor encode_class_prompts(const std::string& checkpoint_path, const std::vector<std::string>& class_names,
                                   const std::string& template_text, const std::string& vocab_path) {
  fill_prompt_template(template_text, "x");  // a bad template fails before the checkpoint is read
  auto tokenizer = ClipTokenizer::load(vocab_path);
  auto encoder = load_clip_text_encoder(checkpoint_path);
  encoder->eval();
  return encode_class_prompts(*encoder, tokenizer, class_names, template_text);
}

}  // namespace cprfl::clip
