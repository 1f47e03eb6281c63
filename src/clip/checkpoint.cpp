#include "cprfl/clip/checkpoint.h"

#include <cmath>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "cprfl/common/error.h"
#include "cprfl/common/text.h"
#include "cprfl/io/torch_file.h"

namespace cprfl::clip {

namespace {

// A module object's attributes as dotted names: tensors are kept, submodules recursed into,
// everything else (`training` flags, numbers, strings) is not a weight and is skipped.
void flatten_module(const TorchFileValue& object, const std::string& prefix, NamedTensors& out) {
  for (std::size_t i = 0; i < object.keys.size(); ++i) {
    const std::string name = prefix + object.keys[i].text;
    const TorchFileValue& value = object.items[i];
    if (value.kind == TorchFileValue::Kind::Tensor) out.emplace_back(name, value.tensor);
    if (value.kind == TorchFileValue::Kind::Object) flatten_module(value, name + ".", out);
  }
}

// The tensors by name, for lookups, with the message prefix of every error.
class TensorIndex {
 public:
  TensorIndex(const NamedTensors& tensors, std::string source) : source_(std::move(source)) {
    for (const auto& [name, tensor] : tensors) by_name_.emplace(name, tensor);
  }

  bool has(const std::string& name) const { return by_name_.count(name) > 0; }

  // The tensor `name`, which must exist and have `rank` dimensions.
  const torch::Tensor& need(const std::string& name, int64_t rank) const {
    auto found = by_name_.find(name);
    if (found == by_name_.end()) bad("missing tensor '" + name + "'");
    if (found->second.dim() != rank)
      bad("tensor '" + name + "' has shape " + shape_string(found->second) + ", expected " + std::to_string(rank) +
          " dimensions");
    return found->second;
  }

  // How many blocks `<prefix><i>.*` there are; they must be numbered 0..n-1 (n >= 1).
  int64_t count_blocks(const std::string& prefix) const {
    std::set<int64_t> indices;
    for (const auto& entry : by_name_) {
      const std::string& name = entry.first;
      if (name.rfind(prefix, 0) != 0) continue;
      std::size_t end = name.find('.', prefix.size());
      auto index = parse_int(name.substr(prefix.size(), end == std::string::npos ? std::string::npos : end - prefix.size()));
      if (!index || *index < 0 || *index > 100000) bad("unexpected tensor '" + name + "' (expected " + prefix + "<block>.*)");
      indices.insert(*index);
    }
    if (indices.empty()) bad("missing tensors '" + prefix + "0.*'");
    for (int64_t i = 0; i < static_cast<int64_t>(indices.size()); ++i)
      if (!indices.count(i)) bad("missing tensors '" + prefix + std::to_string(i) + ".*' (there are blocks up to " +
                                 std::to_string(*indices.rbegin()) + ")");
    return static_cast<int64_t>(indices.size());
  }

  bool any_with_prefix(const std::string& prefix) const {
    for (const auto& entry : by_name_)
      if (entry.first.rfind(prefix, 0) == 0) return true;
    return false;
  }

  [[noreturn]] void bad(const std::string& message) const { throw Error(source_ + ": " + message); }

  // Side s of a positional embedding with s*s + 1 rows (a class token plus an s x s grid).
  int64_t grid_side(const std::string& name, int64_t rows) const {
    auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(std::max<int64_t>(rows - 1, 0)))));
    if (side < 1 || side * side + 1 != rows)
      bad("tensor '" + name + "' has " + std::to_string(rows) + " rows, not a square grid plus one");
    return side;
  }

 private:
  std::string source_;
  std::unordered_map<std::string, torch::Tensor> by_name_;
};

int64_t heads_for(const TensorIndex& index, int64_t width, const std::string& what) {
  if (width <= 0 || width % 64 != 0)
    index.bad(what + " width " + std::to_string(width) + " is not a multiple of 64 (CLIP uses heads = width / 64)");
  return width / 64;
}

ClipTextArchitecture text_architecture(const TensorIndex& index, const std::string& prefix) {
  ClipTextArchitecture text;
  text.width = index.need(prefix + "ln_final.weight", 1).size(0);
  const auto& positional = index.need(prefix + "positional_embedding", 2);
  const auto& token = index.need(prefix + "token_embedding.weight", 2);
  const auto& projection = index.need(prefix + "text_projection", 2);
  text.context_length = positional.size(0);
  text.vocab_size = token.size(0);
  text.embed_dim = projection.size(1);
  text.layers = index.count_blocks(prefix + "transformer.resblocks.");
  text.heads = heads_for(index, text.width, "text transformer");
  auto same_width = [&](const std::string& name, int64_t size) {
    if (size != text.width)
      index.bad("tensor '" + prefix + name + "' does not match the text width " + std::to_string(text.width) +
                " of ln_final.weight");
  };
  same_width("positional_embedding", positional.size(1));
  same_width("token_embedding.weight", token.size(1));
  same_width("text_projection", projection.size(0));
  if (text.context_length < 1 || text.vocab_size < 1 || text.embed_dim < 1)
    index.bad("the text tensors have an empty dimension");
  return text;
}

ClipVisualArchitecture resnet_architecture(const TensorIndex& index) {
  ClipVisualArchitecture visual;
  visual.kind = ClipVisualKind::ModifiedResNet;
  for (int stage = 1; stage <= 4; ++stage)
    visual.stage_blocks.push_back(index.count_blocks("visual.layer" + std::to_string(stage) + "."));
  visual.width = index.need("visual.layer1.0.conv1.weight", 4).size(0);
  const std::string pool_name = "visual.attnpool.positional_embedding";
  const auto& pool_positional = index.need(pool_name, 2);
  visual.image_resolution = 32 * index.grid_side(pool_name, pool_positional.size(0));
  if (pool_positional.size(1) != visual.width * 32)
    index.bad("tensor '" + pool_name + "' has width " + std::to_string(pool_positional.size(1)) + ", expected " +
              std::to_string(visual.width * 32) + " (32 x the width of visual.layer1.0.conv1.weight)");
  visual.heads = heads_for(index, visual.width * 32, "attention pool");
  visual.output_dim = index.need("visual.attnpool.c_proj.weight", 2).size(0);
  return visual;
}

ClipVisualArchitecture vit_architecture(const TensorIndex& index) {
  ClipVisualArchitecture visual;
  visual.kind = ClipVisualKind::VisionTransformer;
  const auto& conv = index.need("visual.conv1.weight", 4);
  visual.width = conv.size(0);
  visual.patch_size = conv.size(3);
  if (visual.patch_size < 1 || conv.size(2) != visual.patch_size)
    index.bad("tensor 'visual.conv1.weight' has shape " + shape_string(conv) + ", expected square patches");
  const std::string positional_name = "visual.positional_embedding";
  const auto& positional = index.need(positional_name, 2);
  visual.image_resolution = visual.patch_size * index.grid_side(positional_name, positional.size(0));
  const auto& projection = index.need("visual.proj", 2);
  visual.output_dim = projection.size(1);
  if (positional.size(1) != visual.width || projection.size(0) != visual.width)
    index.bad("visual.positional_embedding and visual.proj do not match the width " + std::to_string(visual.width) +
              " of visual.conv1.weight");
  visual.layers = index.count_blocks("visual.transformer.resblocks.");
  visual.heads = heads_for(index, visual.width, "vision transformer");
  return visual;
}

}  // namespace

NamedTensors read_clip_checkpoint(const std::string& path) {
  TorchFileOptions options;
  options.torchscript_objects = true;
  const TorchFileValue root = read_torch_file(path, options);
  NamedTensors tensors;
  if (root.kind == TorchFileValue::Kind::Object) {
    flatten_module(root, "", tensors);
  } else if (root.is_dict()) {
    tensors = state_dict_in(root, path);
  } else {
    fail_in(path, "holds a " + root.kind_name() + ", neither a state dict nor a TorchScript module");
  }
  if (tensors.empty()) fail_in(path, "holds no tensors");
  std::unordered_set<std::string> seen;
  for (auto& [name, tensor] : tensors) {
    if (!seen.insert(name).second) fail_in(path, "holds the tensor '" + name + "' twice");
    if (tensor.is_floating_point()) tensor = tensor.to(torch::kFloat);
  }
  return tensors;
}

ClipTextArchitecture infer_clip_text_architecture(const NamedTensors& tensors, const std::string& prefix,
                                                  const std::string& source) {
  return text_architecture(TensorIndex(tensors, source), prefix);
}

ClipArchitecture infer_clip_architecture(const NamedTensors& tensors, const std::string& source) {
  TensorIndex index(tensors, source);
  ClipArchitecture architecture;
  architecture.text = text_architecture(index, "");
  const bool vit = index.has("visual.proj") || index.has("visual.class_embedding") ||
                   index.any_with_prefix("visual.transformer.");
  const bool resnet = index.any_with_prefix("visual.layer1.") || index.any_with_prefix("visual.attnpool.");
  if (vit && resnet) index.bad("has tensors of both a vision transformer and a ResNet under visual.*");
  if (vit) {
    architecture.visual = vit_architecture(index);
  } else if (resnet) {
    architecture.visual = resnet_architecture(index);
  } else if (index.any_with_prefix("visual.")) {
    index.bad("has visual.* tensors of neither a CLIP ResNet (visual.layer1.*, visual.attnpool.*) nor a CLIP ViT "
              "(visual.proj, visual.class_embedding, visual.transformer.*)");
  }
  return architecture;
}

}  // namespace cprfl::clip
