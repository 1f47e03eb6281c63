#include "tiny_clip.h"

#include <torch/script.h>

#include <functional>
#include <map>

#include "torch_file_writer.h"

namespace cprfl::testing {

namespace {

void add_linear(NamedTensors& out, const std::string& name, int64_t in, int64_t out_features) {
  out.emplace_back(name + ".weight", torch::randn({out_features, in}) * 0.1);
  out.emplace_back(name + ".bias", torch::randn({out_features}) * 0.1);
}

void add_norm(NamedTensors& out, const std::string& name, int64_t width) {
  out.emplace_back(name + ".weight", 1 + 0.1 * torch::randn({width}));
  out.emplace_back(name + ".bias", 0.1 * torch::randn({width}));
}

void add_batch_norm(NamedTensors& out, const std::string& name, int64_t width) {
  add_norm(out, name, width);
  out.emplace_back(name + ".running_mean", 0.1 * torch::randn({width}));
  out.emplace_back(name + ".running_var", 1 + torch::rand({width}));
  out.emplace_back(name + ".num_batches_tracked", torch::tensor(int64_t{7}));
}

void add_resblocks(NamedTensors& out, const std::string& prefix, int64_t width, int64_t layers) {
  for (int64_t i = 0; i < layers; ++i) {
    const std::string block = prefix + std::to_string(i) + ".";
    out.emplace_back(block + "attn.in_proj_weight", torch::randn({3 * width, width}) * 0.1);
    out.emplace_back(block + "attn.in_proj_bias", torch::randn({3 * width}) * 0.1);
    add_linear(out, block + "attn.out_proj", width, width);
    add_norm(out, block + "ln_1", width);
    add_linear(out, block + "mlp.c_fc", width, 4 * width);
    add_linear(out, block + "mlp.c_proj", 4 * width, width);
    add_norm(out, block + "ln_2", width);
  }
}

}  // namespace

NamedTensors tiny_clip_tensors(const TinyClipShape& shape, uint64_t seed) {
  torch::manual_seed(seed);
  NamedTensors out;
  out.emplace_back("positional_embedding", torch::randn({shape.context_length, shape.text_width}) * 0.1);
  out.emplace_back("text_projection", torch::randn({shape.text_width, shape.embed_dim}) * 0.1);
  out.emplace_back("logit_scale", torch::tensor(4.6f));
  if (shape.visual == clip::ClipVisualKind::ModifiedResNet) {
    const int64_t width = 8;
    out.emplace_back("visual.conv1.weight", torch::randn({width / 2, 3, 3, 3}));
    add_batch_norm(out, "visual.bn1", width / 2);
    out.emplace_back("visual.conv2.weight", torch::randn({width / 2, width / 2, 3, 3}));
    add_batch_norm(out, "visual.bn2", width / 2);
    out.emplace_back("visual.conv3.weight", torch::randn({width, width / 2, 3, 3}));
    add_batch_norm(out, "visual.bn3", width);
    const int64_t blocks[4] = {2, 1, 1, 1};
    int64_t in = width;
    for (int stage = 0; stage < 4; ++stage) {
      const int64_t planes = width << stage;
      for (int64_t b = 0; b < blocks[stage]; ++b) {
        const std::string block = "visual.layer" + std::to_string(stage + 1) + "." + std::to_string(b) + ".";
        out.emplace_back(block + "conv1.weight", torch::randn({planes, in, 1, 1}));
        add_batch_norm(out, block + "bn1", planes);
        out.emplace_back(block + "conv3.weight", torch::randn({planes * 4, planes, 1, 1}));
        if (b == 0) out.emplace_back(block + "downsample.0.weight", torch::randn({planes * 4, in, 1, 1}));
        in = planes * 4;
      }
    }
    const int64_t embed = width * 32;
    out.emplace_back("visual.attnpool.positional_embedding", torch::randn({2 * 2 + 1, embed}));
    for (const char* projection : {"k_proj", "q_proj", "v_proj"})
      add_linear(out, std::string("visual.attnpool.") + projection, embed, embed);
    add_linear(out, "visual.attnpool.c_proj", embed, shape.embed_dim);
  } else if (shape.visual == clip::ClipVisualKind::VisionTransformer) {
    const int64_t width = 64;
    out.emplace_back("visual.class_embedding", torch::randn({width}));
    out.emplace_back("visual.positional_embedding", torch::randn({4 * 4 + 1, width}));
    out.emplace_back("visual.proj", torch::randn({width, shape.embed_dim}));
    out.emplace_back("visual.conv1.weight", torch::randn({width, 3, 8, 8}));
    add_norm(out, "visual.ln_pre", width);
    add_resblocks(out, "visual.transformer.resblocks.", width, 2);
    add_norm(out, "visual.ln_post", width);
  }
  add_resblocks(out, "transformer.resblocks.", shape.text_width, shape.text_layers);
  out.emplace_back("token_embedding.weight", torch::randn({shape.vocab_size, shape.text_width}) * 0.1);
  add_norm(out, "ln_final", shape.text_width);
  return out;
}

void save_clip_state_dict(const std::string& path, const NamedTensors& tensors) {
  write_torch_state_dict(path, tensors);
}

void save_clip_torchscript(const std::string& path, const NamedTensors& tensors, bool half_weights) {
  torch::jit::Module root("__torch__.model.CLIP");
  root.register_attribute("training", c10::BoolType::get(), false);
  std::map<std::string, torch::jit::Module> modules;  // by dotted path
  // The module at `path`, created (and registered under its parent) on first use.
  std::function<torch::jit::Module(const std::string&)> module_at = [&](const std::string& dotted) {
    if (dotted.empty()) return root;
    auto found = modules.find(dotted);
    if (found != modules.end()) return found->second;
    const auto dot = dotted.rfind('.');
    torch::jit::Module parent = module_at(dot == std::string::npos ? "" : dotted.substr(0, dot));
    // One class name for all submodules: the archive writer then mangles the names
    // (`___torch_mangle_<n>`), as in OpenAI's files.
    torch::jit::Module child("__torch__.torch.nn.modules.module.Module");
    child.register_attribute("training", c10::BoolType::get(), false);
    parent.register_module(dot == std::string::npos ? dotted : dotted.substr(dot + 1), child);
    modules.emplace(dotted, child);
    return child;
  };
  for (const auto& [name, tensor] : tensors) {
    const auto dot = name.rfind('.');
    torch::jit::Module owner = module_at(dot == std::string::npos ? "" : name.substr(0, dot));
    const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
    if (tensor.is_floating_point())
      owner.register_parameter(leaf, half_weights && tensor.dim() > 1 ? tensor.to(torch::kHalf) : tensor, false);
    else
      owner.register_buffer(leaf, tensor);
  }
  // What OpenAI's archives hold beside the weights: int64 scalars and plain attributes.
  root.register_buffer("input_resolution", torch::tensor(int64_t{224}));
  root.register_buffer("context_length", torch::tensor(int64_t{77}));
  root.register_buffer("vocab_size", torch::tensor(int64_t{49408}));
  root.register_attribute("note", c10::StringType::get(), std::string("not a tensor"));
  root.register_attribute("sizes", c10::ListType::ofInts(), c10::List<int64_t>({3, 4}));
  c10::Dict<std::string, double> scales;
  scales.insert("a", 0.5);
  root.register_attribute("scales", c10::DictType::create(c10::StringType::get(), c10::FloatType::get()), scales);
  root.save(path);
}

}  // namespace cprfl::testing
