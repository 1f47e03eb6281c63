#pragma once
// Reads files written by PyTorch's torch.save (the zip format of torch >= 1.6): torchvision
// weights, state dicts, training checkpoints. The zip container is opened with LibTorch's
// own reader; `data.pkl` is decoded by a small restricted unpickler that builds only plain
// data (none, bools, numbers, strings, lists, tuples, dicts, tensors, numpy scalars as
// numbers) and refuses every other global, so nothing in a file is ever executed (the same
// allow-list idea as PyTorch's weights_only=True). Every record is checked against its zip
// CRC-32 and every size against the bytes present before anything is allocated: a malformed
// file is a cprfl::Error naming it. (The zip container is io/zip_archive.h, the pickle
// protocol io/pickle.h; torch_file.cpp holds the allow-list and the tensor rebuilding.)
//
// TorchScript archives (torch.jit.save, e.g. OpenAI's CLIP `RN50.pt`) are read only on request
// (TorchFileOptions::torchscript_objects): their module tree is pickled as objects of
// `__torch__.*` classes, which then become opaque Object values holding just the attribute
// dict that BUILD gives them. The archive's code is neither compiled nor run.
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cprfl {

// A decoded pickle: a small tree of plain values.
struct TorchFileValue {
  // Object: a TorchScript object (only with TorchFileOptions::torchscript_objects); `text` is
  // its class ("__torch__.model.CLIP") and keys/items its attributes.
  enum class Kind { None, Bool, Int, Float, String, Bytes, List, Tuple, Dict, Tensor, Object };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0.0;
  std::string text;                    // String (UTF-8) and Bytes
  std::vector<TorchFileValue> items;   // List and Tuple elements; Dict and Object values
  std::vector<TorchFileValue> keys;    // Dict keys / Object attribute names, in order (parallel to items)
  torch::Tensor tensor;                // CPU, dtype as stored (float16 stays float16)

  bool is_dict() const { return kind == Kind::Dict; }
  // The value under string key `key` of a Dict (or attribute of an Object), or nullptr.
  const TorchFileValue* find(const std::string& key) const;
  // "dict", "tensor", "float", ... (for messages).
  std::string kind_name() const;
};

struct TorchFileOptions {
  // Also read TorchScript archives: a `__torch__.*` class is allowed as an opaque class whose
  // objects (NEWOBJ or REDUCE with no arguments) keep the attribute dict set by BUILD, and
  // the wrappers of typed containers (torch.jit._pickle.restore_type_tag, build_intlist, ...)
  // give back the container.
  bool torchscript_objects = false;
};

// The object stored in a torch.save file. Errors (cprfl::Error, naming the file): not a
// PyTorch zip file, a pre-1.6 legacy file (the message says how to re-save it), a refused
// global, a truncated or corrupted file, sizes that do not fit the data present.
TorchFileValue read_torch_file(const std::string& path, const TorchFileOptions& options = {});

// The flat name → tensor map of a state dict, in file order. With `key_in_dict` empty: the
// top-level dict if all its values are tensors, else the dict under "state_dict" or "model".
// With a key: the dict under that key. An error names the file when there is no such dict
// or an entry is not a tensor.
std::vector<std::pair<std::string, torch::Tensor>> read_torch_state_dict(const std::string& path,
                                                                          const std::string& key_in_dict = "");
// The same, from a value already read from the file `path` (named in errors).
std::vector<std::pair<std::string, torch::Tensor>> state_dict_in(const TorchFileValue& root, const std::string& path,
                                                                  const std::string& key_in_dict = "");

// True when the file starts with the zip magic "PK\x03\x04" (how torch.save files begin).
bool looks_like_zip_file(const std::string& path);

}  // namespace cprfl
