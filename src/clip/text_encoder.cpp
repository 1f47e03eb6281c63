#include "cprfl/clip/text_encoder.h"

#include <cmath>

#include "cprfl/common/error.h"

namespace cprfl::clip {

ClipTextEncoderImpl::ClipTextEncoderImpl(const ClipTextArchitecture& architecture) : architecture_(architecture) {
  const auto& a = architecture;
  if (a.width <= 0 || a.layers <= 0 || a.heads <= 0 || a.width % a.heads != 0 || a.context_length <= 0 ||
      a.vocab_size <= 0 || a.embed_dim <= 0)
    throw Error("CLIP text encoder: invalid architecture (width " + std::to_string(a.width) + ", layers " +
                std::to_string(a.layers) + ", heads " + std::to_string(a.heads) + ")");
  // OpenAI's registration order, so named_state() lists tensors as a CLIP state dict does.
  transformer = register_module("transformer", ClipTransformer(a.width, a.layers, a.heads));
  token_embedding = register_module("token_embedding", torch::nn::Embedding(a.vocab_size, a.width));
  positional_embedding = register_parameter("positional_embedding", torch::empty({a.context_length, a.width}));
  ln_final = register_module("ln_final", torch::nn::LayerNorm(torch::nn::LayerNormOptions({a.width}).eps(1e-5)));
  text_projection = register_parameter("text_projection", torch::empty({a.width, a.embed_dim}));

  torch::NoGradGuard no_grad;
  token_embedding->weight.normal_(0.0, 0.02);
  positional_embedding.normal_(0.0, 0.01);
  text_projection.normal_(0.0, std::pow(static_cast<double>(a.width), -0.5));
  init_clip_transformer(*transformer);
}

torch::Tensor ClipTextEncoderImpl::encode(const torch::Tensor& tokens) { return run(tokens, true); }

torch::Tensor ClipTextEncoderImpl::encode_all_positions(const torch::Tensor& tokens) { return run(tokens, false); }

torch::Tensor ClipTextEncoderImpl::run(const torch::Tensor& tokens, bool early_stop) {
  if (!tokens.defined() || tokens.dim() != 2 || tokens.size(0) < 1 || tokens.size(1) < 1 ||
      tokens.size(1) > architecture_.context_length)
    throw Error("CLIP text encoder: expected token ids [N, T] with 1 <= T <= " +
                std::to_string(architecture_.context_length) + ", got " + shape_string(tokens));
  if (tokens.is_floating_point() || tokens.is_complex() || tokens.scalar_type() == torch::kBool)
    throw Error("CLIP text encoder: token ids must be integers");
  const torch::Device device = positional_embedding.device();
  auto ids = tokens.to(device, torch::kLong);
  if (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= architecture_.vocab_size)
    throw Error("CLIP text encoder: token ids must lie in [0, " + std::to_string(architecture_.vocab_size) + ")");

  const auto end_positions = ids.argmax(-1);  // the end token has the largest id
  int64_t length = ids.size(1);
  if (early_stop) {
    length = end_positions.max().item<int64_t>() + 1;
    ids = ids.narrow(1, 0, length);
  }
  auto x = token_embedding(ids) + positional_embedding.narrow(0, 0, length);
  x = transformer(x, causal_mask(length, x.options()));
  auto batch = torch::arange(ids.size(0), torch::TensorOptions().dtype(torch::kLong).device(device));
  // ln_final acts per position, so only the end positions need it.
  return torch::matmul(ln_final(x.index({batch, end_positions})), text_projection);
}

ClipTextEncoder load_clip_text_encoder(const NamedTensors& tensors, const std::string& source,
                                       const std::string& prefix) {
  ClipTextEncoder encoder(infer_clip_text_architecture(tensors, prefix, source));
  NamedTensors text;
  for (const auto& [name, tensor] : tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    std::string local = name.substr(prefix.size());
    if (local == "token_embedding.weight" || local == "positional_embedding" || local == "text_projection" ||
        local.rfind("transformer.", 0) == 0 || local.rfind("ln_final.", 0) == 0)
      text.emplace_back(local, tensor);
  }
  load_named_state(*encoder, text, source + (prefix.empty() ? "" : " (under '" + prefix + "')"));
  return encoder;
}

ClipTextEncoder load_clip_text_encoder(const std::string& checkpoint_path) {
  return load_clip_text_encoder(read_clip_checkpoint(checkpoint_path), checkpoint_path);
}

}  // namespace cprfl::clip
