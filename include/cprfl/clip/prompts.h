#pragma once
// Class-name prompts through CLIP's text encoder: the prompt embeddings W of CPRFL
// (docs/METHOD.md §2), as the official code makes them: "a photo of a {}." with `_` → space.
#include <torch/types.h>

#include <string>
#include <vector>

#include "cprfl/clip/text_encoder.h"
#include "cprfl/clip/tokenizer.h"

namespace cprfl::clip {

constexpr const char* kDefaultPromptTemplate = "a photo of a {}.";

// The template with its one "{}" replaced by the class name, underscores in the name turned
// into spaces: ("a photo of a {}.", "traffic_light") → "a photo of a traffic light.".
// A template without exactly one "{}" is a cprfl::Error.
std::string fill_prompt_template(const std::string& template_text, const std::string& class_name);

// W [C, embed_dim] float32 on the CPU: the encoder's raw (not normalised) output for each
// class's prompt, in the order of `class_names`. Runs without gradients, in batches.
torch::Tensor encode_class_prompts(ClipTextEncoderImpl& encoder, const ClipTokenizer& tokenizer,
                                   const std::vector<std::string>& class_names,
                                   const std::string& template_text = kDefaultPromptTemplate);

// The same with the text encoder of a CLIP checkpoint file (state dict or TorchScript archive).
torch::Tensor encode_class_prompts(const std::string& checkpoint_path, const std::vector<std::string>& class_names,
                                   const std::string& template_text = kDefaultPromptTemplate,
                                   const std::string& vocab_path = default_vocab_path());

}  // namespace cprfl::clip
