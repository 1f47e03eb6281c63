#include "torch_file_writer.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <fstream>
#include <stdexcept>

namespace cprfl::testing {

namespace {

void append_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

std::string storage_type_of(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat: return "FloatStorage";
    case torch::kHalf: return "HalfStorage";
    case torch::kDouble: return "DoubleStorage";
    case torch::kBFloat16: return "BFloat16Storage";
    case torch::kLong: return "LongStorage";
    case torch::kInt: return "IntStorage";
    case torch::kByte: return "ByteStorage";
    case torch::kBool: return "BoolStorage";
    default: throw std::runtime_error("torch_file_writer: unsupported dtype");
  }
}

// Python writes bytes in protocol 2 as _codecs.encode(<the bytes as latin1 text>, 'latin1').
std::string latin1_as_utf8(const std::string& bytes) {
  std::string text;
  for (char c : bytes) {
    auto byte = static_cast<uint8_t>(c);
    if (byte < 0x80) {
      text += c;
    } else {
      text += static_cast<char>(0xC0 | (byte >> 6));
      text += static_cast<char>(0x80 | (byte & 0x3F));
    }
  }
  return text;
}

}  // namespace

PickleBuilder& PickleBuilder::proto() {
  bytes_ += "\x80\x02";
  return *this;
}

PickleBuilder& PickleBuilder::op(char opcode) {
  bytes_ += opcode;
  return *this;
}

PickleBuilder& PickleBuilder::raw(const std::string& bytes) {
  bytes_ += bytes;
  return *this;
}

PickleBuilder& PickleBuilder::str(const std::string& text) {
  bytes_ += 'X';
  append_le(bytes_, text.size(), 4);
  bytes_ += text;
  return *this;
}

PickleBuilder& PickleBuilder::integer(int64_t value) {
  if (value >= 0 && value < 256) {
    bytes_ += 'K';
    append_le(bytes_, static_cast<uint64_t>(value), 1);
  } else if (value >= 0 && value < 65536) {
    bytes_ += 'M';
    append_le(bytes_, static_cast<uint64_t>(value), 2);
  } else if (value >= INT32_MIN && value <= INT32_MAX) {
    bytes_ += 'J';
    append_le(bytes_, static_cast<uint32_t>(static_cast<int32_t>(value)), 4);
  } else {
    // LONG1: the shortest little-endian two's complement.
    std::string digits;
    append_le(digits, static_cast<uint64_t>(value), 8);
    while (digits.size() > 1) {
      char last = digits.back(), before = digits[digits.size() - 2];
      bool redundant = (last == 0 && !(before & 0x80)) || (last == '\xff' && (before & 0x80));
      if (!redundant) break;
      digits.pop_back();
    }
    bytes_ += '\x8a';
    bytes_ += static_cast<char>(digits.size());
    bytes_ += digits;
  }
  return *this;
}

PickleBuilder& PickleBuilder::real(double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, 8);
  bytes_ += 'G';
  for (int i = 7; i >= 0; --i) bytes_ += static_cast<char>((bits >> (8 * i)) & 0xFF);
  return *this;
}

PickleBuilder& PickleBuilder::boolean(bool value) { return op(value ? '\x88' : '\x89'); }

PickleBuilder& PickleBuilder::put() {
  uint32_t index = next_memo_++;
  if (index < 256) {
    bytes_ += 'q';
    append_le(bytes_, index, 1);
  } else {
    bytes_ += 'r';
    append_le(bytes_, index, 4);
  }
  return *this;
}

PickleBuilder& PickleBuilder::global(const std::string& module, const std::string& name) {
  auto known = globals_.find(module + "\n" + name);
  if (known != globals_.end()) {
    if (known->second < 256) {
      bytes_ += 'h';
      append_le(bytes_, known->second, 1);
    } else {
      bytes_ += 'j';
      append_le(bytes_, known->second, 4);
    }
    return *this;
  }
  bytes_ += 'c' + module + "\n" + name + "\n";
  globals_[module + "\n" + name] = next_memo_;
  return put();
}

PickleBuilder& PickleBuilder::tensor(const std::string& storage_type, const std::string& key, int64_t storage_numel,
                                     int64_t offset, const std::vector<int64_t>& sizes,
                                     const std::vector<int64_t>& strides) {
  auto int_tuple = [this](const std::vector<int64_t>& values) -> PickleBuilder& {
    if (values.empty()) return op(')');
    if (values.size() > 3) mark();
    for (int64_t value : values) integer(value);
    if (values.size() > 3) return op('t');
    return op(static_cast<char>(0x84 + values.size()));  // TUPLE1..3
  };
  global("torch._utils", "_rebuild_tensor_v2");
  mark();
  mark().str("storage").put().global("torch", storage_type).str(key).put().str("cpu").put().integer(storage_numel);
  op('t').put().op('Q');
  integer(offset);
  int_tuple(sizes).put();
  int_tuple(strides).put();
  boolean(false);
  global("collections", "OrderedDict").op(')').op('R').put();
  op('t').put().op('R').put();
  return *this;
}

PickleBuilder& PickleBuilder::numpy_float64(double value) {
  std::string raw(8, '\0');
  std::memcpy(raw.data(), &value, 8);
  global("numpy.core.multiarray", "scalar");
  global("numpy", "dtype").str("f8").put().boolean(false).boolean(true).op('\x87').put().op('R').put();
  mark().integer(3).str("<").put().none().none().none().integer(-1).integer(-1).integer(0).op('t').put().op('b');
  global("_codecs", "encode").str(latin1_as_utf8(raw)).put().str("latin1").put().op('\x86').put().op('R').put();
  return op('\x86').put().op('R').put();
}

void write_torch_zip(const std::string& path, const std::string& pickle,
                     const std::vector<std::pair<std::string, std::string>>& storages) {
  std::string zip;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&zip](const void* data, size_t size) {
      zip.append(static_cast<const char*>(data), size);
      return size;
    });
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    writer.writeRecord("byteorder", "little", 6);
    for (const auto& [key, bytes] : storages) writer.writeRecord("data/" + key, bytes.data(), bytes.size());
    writer.writeEndOfFile();  // adds the "version" record
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(zip.data(), static_cast<std::streamsize>(zip.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

void write_torch_state_dict(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                            const TorchSaveOptions& options) {
  PickleBuilder pickle;
  std::vector<std::pair<std::string, std::string>> storages;
  std::map<const void*, std::string> storage_keys;

  pickle.proto();
  if (!options.wrap_key.empty()) pickle.op('}').put().mark().str(options.wrap_key).put();
  pickle.global("collections", "OrderedDict").op(')').op('R').put().mark();
  for (const auto& [name, tensor] : tensors) {
    const auto& storage = tensor.storage();
    const int64_t element_size = static_cast<int64_t>(tensor.element_size());
    const int64_t storage_numel = static_cast<int64_t>(storage.nbytes()) / element_size;
    auto known = storage_keys.find(storage.data());
    if (known == storage_keys.end()) {
      std::string key = std::to_string(storages.size());
      storages.emplace_back(key, std::string(static_cast<const char*>(storage.data()), storage.nbytes()));
      known = storage_keys.emplace(storage.data(), key).first;
    }
    pickle.str(name).put();
    pickle.tensor(storage_type_of(tensor.scalar_type()), known->second, storage_numel, tensor.storage_offset(),
                  tensor.sizes().vec(), tensor.strides().vec());
  }
  if (options.wrap_key.empty())
    for (const auto& [name, value] : options.numpy_scalars) pickle.str(name).put().numpy_float64(value);
  pickle.op('u');
  // The state dict's _metadata attribute, set through BUILD: {'': {'version': 1}, 'layer1': {'version': 1}}.
  pickle.op('}').put().str("_metadata").put().global("collections", "OrderedDict").op(')').op('R').put().mark();
  for (const char* module : {"", "layer1"})
    pickle.str(module).put().op('}').put().str("version").put().integer(1).op('s');
  pickle.op('u').op('s').op('b');
  if (!options.wrap_key.empty()) {
    for (const auto& [name, value] : options.numpy_scalars) pickle.str(name).put().numpy_float64(value);
    pickle.op('u');
  }
  pickle.stop();
  write_torch_zip(path, pickle.bytes(), storages);
}

}  // namespace cprfl::testing
