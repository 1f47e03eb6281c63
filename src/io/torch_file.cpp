#include "cprfl/io/torch_file.h"

#include <c10/util/Exception.h>

#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <new>

#include "cprfl/common/error.h"
#include "cprfl/io/pickle.h"
#include "cprfl/io/zip_archive.h"

namespace cprfl {

namespace {

constexpr int kMaxValueDepth = 500;  // nesting of the decoded tree
constexpr int64_t kMaxTensorDims = 64;

// torch.<Name>Storage → element type.
const std::map<std::string, torch::ScalarType>& storage_types() {
  static const std::map<std::string, torch::ScalarType> types = {
      {"torch.FloatStorage", torch::kFloat},   {"torch.HalfStorage", torch::kHalf},
      {"torch.DoubleStorage", torch::kDouble}, {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.LongStorage", torch::kLong},     {"torch.IntStorage", torch::kInt},
      {"torch.ShortStorage", torch::kShort},   {"torch.CharStorage", torch::kChar},
      {"torch.ByteStorage", torch::kByte},     {"torch.BoolStorage", torch::kBool},
  };
  return types;
}

bool allowed_global(const std::string& name) {
  static const char* const kAllowed[] = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_parameter",
      "numpy.core.multiarray.scalar",
      "numpy._core.multiarray.scalar",
      "numpy.dtype",
      "_codecs.encode",  // how protocol 2 stores bytes (the raw value of a numpy scalar)
  };
  for (const char* allowed : kAllowed)
    if (name == allowed) return true;
  return storage_types().count(name) > 0;
}

// Multiplication and addition of non-negative sizes, false on overflow.
bool checked_mul(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }
bool checked_add(int64_t a, int64_t b, int64_t* out) { return !__builtin_add_overflow(a, b, out); }

// The unpickler of a torch.save `data.pkl`: the globals it allows and what they build
// (tensors on the archive's storage records, numpy scalars, TorchScript objects on request).
class TorchUnpickler : public Unpickler {
 public:
  TorchUnpickler(const std::string& path, const char* data, std::size_t size, ZipArchive& reader,
                 const TorchFileOptions& options)
      : Unpickler(path, "data.pkl", data, size), reader_(reader), options_(options) {}

  // The plain value tree of `node` (from run()), refusing what only the unpickler uses
  // (globals, storages, dtypes, classes). At most set_conversion_limit() nodes are visited.
  TorchFileValue convert(const PickleNode& node, int depth) {
    if (depth > kMaxValueDepth) bad("is nested too deeply");
    if (++converted_ > converted_limit_) bad("refers to more objects than its size allows (a reference loop?)");
    TorchFileValue value;
    switch (node->kind) {
      case Kind::None: value.kind = TorchFileValue::Kind::None; break;
      case Kind::Bool: value.kind = TorchFileValue::Kind::Bool; value.boolean = node->boolean; break;
      case Kind::Int: value.kind = TorchFileValue::Kind::Int; value.integer = node->integer; break;
      case Kind::Float: value.kind = TorchFileValue::Kind::Float; value.number = node->number; break;
      case Kind::String: value.kind = TorchFileValue::Kind::String; value.text = node->text; break;
      case Kind::Bytes: value.kind = TorchFileValue::Kind::Bytes; value.text = node->text; break;
      case Kind::Tensor: value.kind = TorchFileValue::Kind::Tensor; value.tensor = node->tensor; break;
      case Kind::List:
      case Kind::Tuple:
      case Kind::Dict:
      case Kind::Object:
        value.kind = node->kind == Kind::List    ? TorchFileValue::Kind::List
                     : node->kind == Kind::Tuple ? TorchFileValue::Kind::Tuple
                     : node->kind == Kind::Dict  ? TorchFileValue::Kind::Dict
                                                 : TorchFileValue::Kind::Object;
        if (node->kind == Kind::Object) value.text = node->text;
        for (const auto& key : node->keys) value.keys.push_back(convert(key, depth + 1));
        for (const auto& item : node->items) value.items.push_back(convert(item, depth + 1));
        break;
      default:
        bad(std::string("holds a bare ") + kind_name(node->kind) + " (" + node->text +
            ") where only tensors, dicts, lists and numbers are read");
    }
    return value;
  }

  void set_conversion_limit(std::size_t limit) { converted_limit_ = limit; }

 protected:
  PickleNode global(const std::string& module, const std::string& name) override {
    std::string full = module + "." + name;
    if (options_.torchscript_objects && (module == "__torch__" || module.rfind("__torch__.", 0) == 0)) {
      auto node = std::make_shared<PickleObject>();
      node->kind = Kind::Class;  // opaque: nothing of the class is looked up or run
      node->text = full;
      return node;
    }
    if (options_.torchscript_objects && torchscript_helper(full)) {
      auto node = std::make_shared<PickleObject>();
      node->kind = Kind::Global;
      node->text = full;
      return node;
    }
    if (!allowed_global(full))
      bad("refuses to load global '" + full + "' (only tensors, dicts, lists and numbers are read)");
    auto node = std::make_shared<PickleObject>();
    node->kind = Kind::Global;
    node->text = full;
    return node;
  }

  // An empty object of a TorchScript class; its attributes come with BUILD.
  PickleNode new_object(const PickleNode& cls, const PickleNode& args) override {
    if (cls->kind != Kind::Class) bad(std::string("creates an object of a ") + kind_name(cls->kind));
    if (args->kind != Kind::Tuple || !args->items.empty())
      bad("creates an object of class '" + cls->text + "' with arguments (only an empty tuple is read)");
    auto object = container(Kind::Object);
    object->text = cls->text;
    return object;
  }

  bool allows_newobj() const override { return options_.torchscript_objects; }

  PickleNode reduce(const PickleNode& callable, const PickleNode& args) override {
    if (callable->kind == Kind::Class) return new_object(callable, args);
    if (callable->kind != Kind::Global) bad(std::string("calls a ") + kind_name(callable->kind));
    const std::string& name = callable->text;
    if (torchscript_helper(name)) {  // restore_type_tag(value, type name), build_*list(list)
      const auto& a = args_of(args, name, 1, 2);
      if (name != "torch.jit._pickle.restore_type_tag" && a[0]->kind != Kind::List)
        bad("calls " + name + " on a " + kind_name(a[0]->kind));
      return a[0];
    }
    if (name == "collections.OrderedDict") {
      args_of(args, name, 0, 0);
      return container(Kind::Dict);
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      const auto& a = args_of(args, name, 4, 7);
      return rebuild_tensor(a[0], int_arg(a[1], "tensor storage offset"), int_tuple(a[2], "tensor size"),
                            int_tuple(a[3], "tensor stride"));
    }
    if (name == "torch._utils._rebuild_parameter") {  // (data, requires_grad, backward_hooks)
      const auto& a = args_of(args, name, 1, 3);
      if (a[0]->kind != Kind::Tensor) bad("_rebuild_parameter of a " + std::string(kind_name(a[0]->kind)));
      return a[0];
    }
    if (name == "numpy.dtype") {  // ('f8', False, True)
      const auto& a = args_of(args, name, 1, 3);
      if (a[0]->kind != Kind::String) bad("numpy.dtype of a " + std::string(kind_name(a[0]->kind)));
      auto node = std::make_shared<PickleObject>();
      node->kind = Kind::NumpyDtype;
      node->text = a[0]->text;
      return node;
    }
    if (name == "numpy.core.multiarray.scalar" || name == "numpy._core.multiarray.scalar") {
      const auto& a = args_of(args, name, 2, 2);
      return numpy_scalar(a[0], a[1]);
    }
    if (name == "_codecs.encode") {  // (text, 'latin1'): bytes as protocol 2 writes them
      const auto& a = args_of(args, name, 2, 2);
      if (a[0]->kind != Kind::String || a[1]->kind != Kind::String ||
          (a[1]->text != "latin1" && a[1]->text != "latin-1"))
        bad("calls _codecs.encode with arguments other than (str, 'latin1')");
      auto node = std::make_shared<PickleObject>();
      node->kind = Kind::Bytes;
      node->text = latin1_from_utf8(a[0]->text);
      return node;
    }
    bad("cannot call '" + name + "'");
  }

  std::string latin1_from_utf8(const std::string& text) {
    std::string bytes;
    for (std::size_t i = 0; i < text.size(); ++i) {
      auto c = static_cast<uint8_t>(text[i]);
      if (c < 0x80) {
        bytes += static_cast<char>(c);
      } else if ((c == 0xC2 || c == 0xC3) && i + 1 < text.size() && (static_cast<uint8_t>(text[i + 1]) & 0xC0) == 0x80) {
        bytes += static_cast<char>(((c & 0x03) << 6) | (static_cast<uint8_t>(text[i + 1]) & 0x3F));
        ++i;
      } else {
        bad("holds a latin1 byte string that is not valid");
      }
    }
    return bytes;
  }

  PickleNode numpy_scalar(const PickleNode& dtype, const PickleNode& raw) {
    if (dtype->kind != Kind::NumpyDtype || raw->kind != Kind::Bytes)
      bad("numpy scalar without a dtype and its bytes");
    if (dtype->byte_order == '>') bad("holds a big-endian numpy scalar");
    const std::string& code = dtype->text;
    const std::string& bytes = raw->text;
    auto node = std::make_shared<PickleObject>();
    auto expect = [&](std::size_t size) {
      if (bytes.size() != size) bad("numpy scalar of type " + code + " has " + std::to_string(bytes.size()) + " bytes");
    };
    auto load = [&](auto value) {  // the raw bytes as `value`'s type, size checked first
      expect(sizeof value);
      std::memcpy(&value, bytes.data(), sizeof value);
      return value;
    };
    if (code == "f8" || code == "f4" || code == "f2") {
      node->kind = Kind::Float;
      if (code == "f8") node->number = load(double{});
      if (code == "f4") node->number = load(float{});
      if (code == "f2") node->number = static_cast<float>(c10::Half(load(uint16_t{}), c10::Half::from_bits()));
    } else if (code == "i8" || code == "i4" || code == "i2" || code == "i1" || code == "u4" || code == "u2" ||
               code == "u1") {
      node->kind = Kind::Int;
      if (code == "i8") node->integer = load(int64_t{});
      if (code == "i4") node->integer = load(int32_t{});
      if (code == "i2") node->integer = load(int16_t{});
      if (code == "i1") node->integer = load(int8_t{});
      if (code == "u4") node->integer = load(uint32_t{});
      if (code == "u2") node->integer = load(uint16_t{});
      if (code == "u1") node->integer = load(uint8_t{});
    } else if (code == "b1") {
      expect(1);
      node->kind = Kind::Bool;
      node->boolean = bytes[0] != 0;
    } else {
      bad("holds a numpy scalar of type '" + code + "' (only numbers are read)");
    }
    return node;
  }

  void build(const PickleNode& target, const PickleNode& state) override {
    switch (target->kind) {
      case Kind::Dict:    // OrderedDict attributes such as a state dict's _metadata
      case Kind::Tensor:  // tensor attributes
        return;
      case Kind::Object:  // a TorchScript object: its attribute dict
        if (state->kind != Kind::Dict)
          bad("sets the state of an object of class '" + target->text + "' with a " + kind_name(state->kind) +
              " (only an attribute dict is read)");
        for (std::size_t i = 0; i < state->keys.size(); ++i) {
          if (state->keys[i]->kind != Kind::String)
            bad("gives an object of class '" + target->text + "' an attribute name that is not a string");
          add_item(target, state->keys[i], state->items[i]);
        }
        return;
      case Kind::NumpyDtype:  // (version, byte order, ...)
        if (state->kind == Kind::Tuple && state->items.size() >= 2 && state->items[1]->kind == Kind::String &&
            state->items[1]->text.size() == 1)
          target->byte_order = state->items[1]->text[0];
        return;
      default:
        bad(std::string("sets the state of a ") + kind_name(target->kind));
    }
  }

  // ('storage', torch.FloatStorage, key, location, numel)
  PickleNode persistent_load(const PickleNode& pid) override {
    if (pid->kind != Kind::Tuple || pid->items.size() != 5 || pid->items[0]->kind != Kind::String ||
        pid->items[0]->text != "storage")
      bad("has a persistent id that is not a ('storage', type, key, location, size) tuple");
    const PickleNode& type = pid->items[1];
    const PickleNode& key = pid->items[2];
    if (type->kind != Kind::Global || !storage_types().count(type->text))
      bad("has a storage whose type is not a torch storage type");
    if (key->kind != Kind::String) bad("has a storage key that is not a string");
    int64_t numel = int_arg(pid->items[4], "storage size");
    if (numel < 0) bad("has a storage of negative size");
    auto node = std::make_shared<PickleObject>();
    node->kind = Kind::Storage;
    node->text = key->text;
    node->dtype = storage_types().at(type->text);
    node->numel = numel;
    return node;
  }

 private:
  std::vector<int64_t> int_tuple(const PickleNode& node, const std::string& what) {
    if (node->kind != Kind::Tuple) bad(what + " is a " + kind_name(node->kind) + ", expected a tuple");
    if (static_cast<int64_t>(node->items.size()) > kMaxTensorDims) bad(what + " has too many dimensions");
    std::vector<int64_t> values;
    for (const auto& item : node->items) values.push_back(int_arg(item, what));
    return values;
  }
  // What TorchScript's pickler wraps typed containers in; all of them give back their value.
  static bool torchscript_helper(const std::string& name) {
    return name == "torch.jit._pickle.restore_type_tag" || name == "torch.jit._pickle.build_intlist" ||
           name == "torch.jit._pickle.build_doublelist" || name == "torch.jit._pickle.build_boollist" ||
           name == "torch.jit._pickle.build_tensorlist";
  }

  // The record `data/<key>`, read once and shared by all tensors that view it.
  torch::Tensor storage_bytes(const PickleObject& storage) {
    auto cached = storages_.find(storage.text);
    if (cached != storages_.end()) return cached->second;
    const std::string record = "data/" + storage.text;
    if (!reader_.has(record)) bad("refers to storage record '" + record + "', which the file lacks");
    auto [data_ptr, record_size] = reader_.get(record);
    auto holder = std::make_shared<at::DataPtr>(std::move(data_ptr));
    auto bytes = torch::from_blob(holder->get(), {static_cast<int64_t>(record_size)},
                                  [holder](void*) {}, torch::TensorOptions().dtype(torch::kByte));
    storages_.emplace(storage.text, bytes);
    return bytes;
  }

  PickleNode rebuild_tensor(const PickleNode& storage, int64_t offset, const std::vector<int64_t>& sizes,
                            const std::vector<int64_t>& strides) {
    if (storage->kind != Kind::Storage) bad("builds a tensor from a " + std::string(kind_name(storage->kind)));
    const std::string where = "tensor on storage '" + storage->text + "'";
    if (sizes.size() != strides.size()) bad(where + " has " + std::to_string(sizes.size()) + " sizes but " +
                                            std::to_string(strides.size()) + " strides");
    if (offset < 0) bad(where + " has a negative storage offset");
    // The furthest element the view touches must lie inside the storage.
    int64_t numel = 1;
    int64_t last = offset;
    for (std::size_t d = 0; d < sizes.size(); ++d) {
      if (sizes[d] < 0 || strides[d] < 0) bad(where + " has a negative size or stride");
      int64_t reach = 0;
      if (!checked_mul(numel, sizes[d], &numel) ||
          (sizes[d] > 0 && (!checked_mul(sizes[d] - 1, strides[d], &reach) || !checked_add(last, reach, &last))))
        bad(where + " has absurd sizes");
    }
    if (numel > 0 && last >= storage->numel)
      bad(where + " reads element " + std::to_string(last) + " of a storage of " + std::to_string(storage->numel));
    const int64_t element_size = static_cast<int64_t>(c10::elementSize(storage->dtype));
    int64_t storage_bytes_needed = 0;
    if (!checked_mul(storage->numel, element_size, &storage_bytes_needed)) bad(where + " has an absurd storage size");
    torch::Tensor bytes = storage_bytes(*storage);
    if (bytes.numel() < storage_bytes_needed)
      bad("storage record 'data/" + storage->text + "' has " + std::to_string(bytes.numel()) + " bytes but " +
          std::to_string(storage_bytes_needed) + " are needed (truncated?)");
    auto node = std::make_shared<PickleObject>();
    node->kind = Kind::Tensor;
    if (numel == 0) {
      node->tensor = torch::empty(sizes, torch::TensorOptions().dtype(storage->dtype));
      return node;
    }
    auto typed = torch::from_blob(bytes.data_ptr(), {storage->numel}, torch::TensorOptions().dtype(storage->dtype));
    node->tensor = typed.as_strided(sizes, strides, offset).clone(torch::MemoryFormat::Contiguous);
    return node;
  }

  ZipArchive& reader_;
  const TorchFileOptions& options_;
  std::map<std::string, torch::Tensor> storages_;
  std::size_t converted_ = 0;
  std::size_t converted_limit_ = 0;
};

std::string first_line(const char* text) {
  std::string line(text);
  auto end = line.find('\n');
  return end == std::string::npos ? line : line.substr(0, end);
}

std::string read_prefix(const std::string& path, std::size_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_in(path, "cannot open the file");
  std::string bytes(count, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(count));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  return bytes;
}

TorchFileValue read_zip(const std::string& path, const TorchFileOptions& options) {
  ZipArchive reader(path);
  if (reader.has("byteorder")) {
    auto [order, order_size] = reader.get("byteorder");
    std::string text(static_cast<const char*>(order.get()), order_size);
    if (text != "little") fail_in(path, "stores its tensors in '" + text + "' byte order; only little-endian is read");
  }
  if (!reader.has("data.pkl")) fail_in(path, "is a zip file without a data.pkl record (not written by torch.save)");
  auto [pickle, pickle_size] = reader.get("data.pkl");
  TorchUnpickler unpickler(path, static_cast<const char*>(pickle.get()), pickle_size, reader, options);
  PickleNode root = unpickler.run();
  unpickler.set_conversion_limit(4 * pickle_size + 16);
  return unpickler.convert(root, 0);
}

bool is_string_keyed_tensor_dict(const TorchFileValue& value) {
  if (!value.is_dict()) return false;
  for (std::size_t i = 0; i < value.keys.size(); ++i)
    if (value.keys[i].kind != TorchFileValue::Kind::String || value.items[i].kind != TorchFileValue::Kind::Tensor)
      return false;
  return true;
}

std::string key_list(const TorchFileValue& dict) {
  std::string text;
  for (std::size_t i = 0; i < dict.keys.size() && i < 8; ++i)
    text += (i ? ", " : "") + (dict.keys[i].kind == TorchFileValue::Kind::String ? "'" + dict.keys[i].text + "'"
                                                                                  : dict.keys[i].kind_name());
  if (dict.keys.size() > 8) text += ", ...";
  return text.empty() ? "none" : text;
}

}  // namespace

const TorchFileValue* TorchFileValue::find(const std::string& key) const {
  if (kind != Kind::Dict && kind != Kind::Object) return nullptr;
  for (std::size_t i = 0; i < keys.size(); ++i)
    if (keys[i].kind == Kind::String && keys[i].text == key) return &items[i];
  return nullptr;
}

std::string TorchFileValue::kind_name() const {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Tensor: return "tensor";
    case Kind::Object: return "object";
  }
  return "?";
}

bool looks_like_zip_file(const std::string& path) { return read_prefix(path, 4) == std::string("PK\x03\x04", 4); }

TorchFileValue read_torch_file(const std::string& path, const TorchFileOptions& options) {
  const std::string head = read_prefix(path, 4);
  if (head != std::string("PK\x03\x04", 4)) {
    if (!head.empty() && static_cast<uint8_t>(head[0]) == 0x80)
      fail_in(path, "is a PyTorch file in the legacy (pre-1.6, non-zip) format, which is not read; re-save it "
                    "with a newer torch in Python: torch.save(torch.load(old), new, "
                    "_use_new_zipfile_serialization=True)");
    fail_in(path, "is not a PyTorch file (torch.save writes a zip archive, starting with 'PK')");
  }
  try {
    return read_zip(path, options);
  } catch (const c10::Error& error) {
    fail_in(path, "is not a readable PyTorch zip file (truncated or corrupted?): " +
                      first_line(error.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    fail_in(path, "declares a record too large to load (corrupted?)");
  }
}

std::vector<std::pair<std::string, torch::Tensor>> read_torch_state_dict(const std::string& path,
                                                                          const std::string& key_in_dict) {
  return state_dict_in(read_torch_file(path), path, key_in_dict);
}

std::vector<std::pair<std::string, torch::Tensor>> state_dict_in(const TorchFileValue& root, const std::string& path,
                                                                  const std::string& key_in_dict) {
  if (!root.is_dict()) fail_in(path, "holds a " + root.kind_name() + ", not a state dict");
  const TorchFileValue* dict = nullptr;
  std::string where = "at the top level";
  if (!key_in_dict.empty()) {
    dict = root.find(key_in_dict);
    if (!dict) fail_in(path, "has no entry '" + key_in_dict + "' (its keys: " + key_list(root) + ")");
    where = "under '" + key_in_dict + "'";
    if (!dict->is_dict()) fail_in(path, "holds a " + dict->kind_name() + " " + where + ", not a state dict");
  } else if (is_string_keyed_tensor_dict(root)) {
    dict = &root;
  } else {
    for (const char* key : {"state_dict", "model"}) {
      const TorchFileValue* candidate = root.find(key);
      if (candidate && candidate->is_dict()) {
        dict = candidate;
        where = std::string("under '") + key + "'";
        break;
      }
    }
    if (!dict)
      fail_in(path, "holds no state dict (a dict of tensors at the top level or under 'state_dict' or 'model'); "
                    "its keys: " + key_list(root));
  }
  std::vector<std::pair<std::string, torch::Tensor>> state;
  for (std::size_t i = 0; i < dict->keys.size(); ++i) {
    const TorchFileValue& key = dict->keys[i];
    if (key.kind != TorchFileValue::Kind::String) fail_in(path, "the state dict " + where + " has a non-string key");
    if (dict->items[i].kind != TorchFileValue::Kind::Tensor)
      fail_in(path, "the state dict " + where + " holds a " + dict->items[i].kind_name() + " under '" + key.text +
                        "', not a tensor");
    state.emplace_back(key.text, dict->items[i].tensor);
  }
  return state;
}

}  // namespace cprfl
