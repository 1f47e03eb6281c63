#pragma once
// Models trained with the authors' Python code (docs/METHOD.md §1-§4) as cprfl model files.
//
// Their checkpoint is torch.save({'state_dict': model.state_dict(), 'epoch': ..., ...}) or
// the bare state dict, keys possibly prefixed "module." (DataParallel):
//   Backbone.0.* conv1, Backbone.1.* bn1, Backbone.4-7.* layer1-4 (torchvision names inside)
//   fc.0.*                    φ: Linear(d0, d)
//   label_emb.0.*, .3.*       PI: Linear(m, t), GELU, Linear(t, d)
//   attention.layers.<i>.*    VSI (the same names as our CprflModel)
//   text_encoder.*            CLIP's text side (OpenAI names), often float16
// The text encoder runs once on the class prompts; its output W is kept in the model file
// and the encoder itself is dropped. All sizes come from the tensors' shapes except the
// number of VSI heads, which no tensor shows (ImportOptions::heads).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cprfl/clip/checkpoint.h"
#include "cprfl/clip/prompts.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/io/state_dict.h"

namespace cprfl {

struct ImportOptions {
  int64_t heads = 8;  // VSI heads (the official 8); head_dim = inner width / heads
  std::string prompt_template = clip::kDefaultPromptTemplate;
  std::string vocab_path = clip::default_vocab_path();  // CLIP BPE merges
  int64_t image_size = 448;                             // data.image_size of the model file
  std::string train_list;  // optional: training list for class counts (head/medium/tail groups)
};

// What the shapes say (plus the heads option).
struct OfficialArchitecture {
  std::string backbone;     // "resnet18" | "resnet34" | "resnet50" | "resnet101"
  int64_t backbone_width = 0;  // d0 (fc.0.weight columns)
  int64_t dim = 0;          // d (fc.0.weight rows)
  int64_t text_width = 0;   // m (label_emb.0.weight columns)
  int64_t prompt_hidden = 0;  // t (label_emb.0.weight rows); tau = t / d
  int64_t depth = 0;        // attention.layers.<i> count
  int64_t inner = 0;        // heads * head_dim (to_qkv rows / 3)
  int64_t heads = 0;
  int64_t head_dim = 0;
  int64_t ffn = 0;          // net.0 rows
  clip::ClipTextArchitecture text;
};

struct ImportedOfficialModel {
  ModelInfo info;  // config (model.* as inferred), class names, counts, W
  CprflModel model{nullptr};  // in eval mode, on the CPU
  OfficialArchitecture architecture;
};

// The state dict of an authors' checkpoint, "module." prefixes removed, in file order.
// Errors name the file: not a torch.save file, no state dict, two keys equal once the prefix
// is removed.
NamedTensors read_official_state(const std::string& checkpoint);

// Shapes → architecture. `source` names the file in errors (every error names the key).
OfficialArchitecture infer_official_architecture(const NamedTensors& state, int64_t heads, const std::string& source);

// The model for `class_names` (the labels file, in order). Every problem is a cprfl::Error
// naming `source` and the key: an unexpected or missing key, a shape that does not fit, a
// text width that differs from label_emb's input, heads that do not divide the inner width.
ImportedOfficialModel import_official_state(const NamedTensors& state, const std::string& source,
                                            const std::vector<std::string>& class_names, const ImportOptions& options);
// read_official_state(checkpoint), then the above.
ImportedOfficialModel import_official_checkpoint(const std::string& checkpoint,
                                                 const std::vector<std::string>& class_names,
                                                 const ImportOptions& options);

// The model file's content (no EMA weights: the authors' saved model is already their EMA
// model), with meta "imported_from" recording the checkpoint, template and architecture.
TensorFile make_imported_model_file(const ImportedOfficialModel& imported, const std::string& checkpoint,
                                    const ImportOptions& options);

}  // namespace cprfl
