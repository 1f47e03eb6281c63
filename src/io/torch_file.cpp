#include "cprfl/io/torch_file.h"

#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <unordered_map>

#include <zlib.h>

#include "cprfl/common/error.h"

namespace cprfl {

namespace {

constexpr std::size_t kMaxMarkDepth = 1000;   // nested MARKs (tuples/lists/dicts being built)
constexpr int kMaxValueDepth = 500;           // nesting of the decoded tree
constexpr int64_t kMaxTensorDims = 64;

// ---------------------------------------------------------------------------------------
// The unpickler's own objects. Shared pointers, because the memo and the stack refer to
// the same object (SETITEMS after BINPUT must be seen through a later BINGET).

struct Obj;
using Node = std::shared_ptr<Obj>;

struct Obj {
  enum class Kind {
    None, Bool, Int, Float, String, Bytes, List, Tuple, Dict, Tensor,
    Global,       // an allowed callable or class; `text` = "module.name"
    Storage,      // a persistent id resolved to a storage record
    NumpyDtype,   // numpy.dtype(text); `byte_order` from BUILD
    Class,        // a TorchScript class `__torch__.*` (opt-in); `text` = its name
    Object,       // an object of a Class; `text` = class name, keys/items = attributes from BUILD
  };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0.0;
  std::string text;
  std::vector<Node> items;
  std::vector<Node> keys;
  torch::Tensor tensor;
  // Storage
  torch::ScalarType dtype = torch::kFloat;
  int64_t numel = 0;
  // NumpyDtype
  char byte_order = '=';
};

const char* kind_name(Obj::Kind kind) {
  switch (kind) {
    case Obj::Kind::None: return "None";
    case Obj::Kind::Bool: return "bool";
    case Obj::Kind::Int: return "int";
    case Obj::Kind::Float: return "float";
    case Obj::Kind::String: return "str";
    case Obj::Kind::Bytes: return "bytes";
    case Obj::Kind::List: return "list";
    case Obj::Kind::Tuple: return "tuple";
    case Obj::Kind::Dict: return "dict";
    case Obj::Kind::Tensor: return "tensor";
    case Obj::Kind::Global: return "global";
    case Obj::Kind::Storage: return "storage";
    case Obj::Kind::NumpyDtype: return "numpy dtype";
    case Obj::Kind::Class: return "class";
    case Obj::Kind::Object: return "object";
  }
  return "?";
}

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

// ---------------------------------------------------------------------------------------

// The records of a torch.save zip, each checked against the CRC-32 that the zip's central
// directory holds for it (LibTorch's reader does not check them, so a flipped bit in the
// tensor data would otherwise pass silently).
class ZipRecords {
 public:
  // The zip directory is checked first: LibTorch's reader leaks its zip state when it
  // refuses a malformed archive, so it is only opened on a plausible one.
  explicit ZipRecords(const std::string& path) : path_(path) {
    read_checksums();
    reader_ = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  }

  bool has(const std::string& name) { return reader_->hasRecord(name); }

  std::tuple<at::DataPtr, std::size_t> get(const std::string& name) {
    auto [data, size] = reader_->getRecord(name);
    auto expected = checksums_.find(name);
    if (expected == checksums_.end()) fail_in(path_, "record '" + name + "' is missing from the zip directory");
    uLong crc = crc32(0L, Z_NULL, 0);
    const auto* bytes = static_cast<const Bytef*>(data.get());
    for (std::size_t done = 0; done < size;) {
      auto chunk = static_cast<uInt>(std::min<std::size_t>(size - done, 1u << 30));
      crc = crc32(crc, bytes + done, chunk);
      done += chunk;
    }
    if (static_cast<uint32_t>(crc) != expected->second)
      fail_in(path_, "record '" + name + "' fails its CRC-32 check (the file is corrupted)");
    return {std::move(data), size};
  }

 private:
  // The same wording as LibTorch's reader errors get in read_torch_file.
  [[noreturn]] void unreadable(const std::string& what) const {
    fail_in(path_, "is not a readable PyTorch zip file (truncated or corrupted?): " + what);
  }

  std::string read_at(uint64_t offset, uint64_t count) {
    if (offset > file_size_ || count > file_size_ - offset) unreadable("corrupted zip directory");
    std::string bytes(count, '\0');
    file_.seekg(static_cast<std::streamoff>(offset));
    file_.read(bytes.data(), static_cast<std::streamsize>(count));
    if (!file_) unreadable("cannot read the zip directory");
    return bytes;
  }
  static uint64_t le(const std::string& bytes, std::size_t at, int width) {
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(bytes[at + i]);
    return value;
  }

  // CRC-32 of every entry, by its name without the archive folder ("data/0").
  void read_checksums() {
    file_.open(path_, std::ios::binary);
    file_.seekg(0, std::ios::end);
    file_size_ = static_cast<uint64_t>(file_.tellg());
    // End of central directory: 22 bytes + a comment of up to 65535.
    const uint64_t tail_size = std::min<uint64_t>(file_size_, 22 + 65535);
    const std::string tail = read_at(file_size_ - tail_size, tail_size);
    std::size_t eocd = std::string::npos;
    for (std::size_t i = tail.size() >= 22 ? tail.size() - 22 + 1 : 0; i-- > 0;)
      if (le(tail, i, 4) == 0x06054b50) {
        eocd = i;
        break;
      }
    if (eocd == std::string::npos) unreadable("no zip directory");
    uint64_t entries = le(tail, eocd + 10, 2);
    uint64_t directory_size = le(tail, eocd + 12, 4);
    uint64_t directory_offset = le(tail, eocd + 16, 4);
    if (directory_offset == 0xFFFFFFFFu || entries == 0xFFFFu || directory_size == 0xFFFFFFFFu) {
      // Zip64: a locator just before the end record points to the zip64 end record.
      const uint64_t eocd_in_file = file_size_ - tail_size + eocd;
      if (eocd_in_file < 20) unreadable("corrupted zip directory");
      std::string locator = read_at(eocd_in_file - 20, 20);
      if (le(locator, 0, 4) != 0x07064b50) unreadable("corrupted zip64 directory");
      std::string end64 = read_at(le(locator, 8, 8), 56);
      if (le(end64, 0, 4) != 0x06064b50) unreadable("corrupted zip64 directory");
      entries = le(end64, 32, 8);
      directory_size = le(end64, 40, 8);
      directory_offset = le(end64, 48, 8);
    }
    const std::string directory = read_at(directory_offset, directory_size);
    std::size_t at = 0;
    for (uint64_t i = 0; i < entries; ++i) {
      if (directory.size() - at < 46 || le(directory, at, 4) != 0x02014b50)
        unreadable("corrupted zip directory");
      const uint32_t crc = static_cast<uint32_t>(le(directory, at + 16, 4));
      const std::size_t name_length = le(directory, at + 28, 2);
      const std::size_t entry_size = 46 + name_length + le(directory, at + 30, 2) + le(directory, at + 32, 2);
      if (directory.size() - at < entry_size) unreadable("corrupted zip directory");
      std::string name = directory.substr(at + 46, name_length);
      auto slash = name.find('/');
      checksums_[slash == std::string::npos ? name : name.substr(slash + 1)] = crc;
      at += entry_size;
    }
  }

  const std::string& path_;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader_;
  std::ifstream file_;
  uint64_t file_size_ = 0;
  std::map<std::string, uint32_t> checksums_;
};

class Unpickler {
 public:
  Unpickler(const std::string& path, const char* data, std::size_t size, ZipRecords& reader,
            const TorchFileOptions& options)
      : path_(path), data_(data), size_(size), reader_(reader), options_(options) {}

  ~Unpickler() {
    // Break every link first, so that deep chains and cycles built through the memo are
    // neither destroyed recursively (stack overflow) nor leaked.
    for (auto& node : containers_) {
      node->items.clear();
      node->keys.clear();
    }
  }

  Node run() {
    while (true) {
      if (pos_ >= size_) bad("ends before its STOP opcode (truncated?)");
      const std::size_t opcode_pos = pos_;
      const uint8_t op = read_u8();
      switch (op) {
        case 0x80: {  // PROTO
          uint8_t version = read_u8();
          if (version > 5) bad("pickle protocol " + std::to_string(version) + " is not supported");
          break;
        }
        case 0x95: read_bytes(8); break;  // FRAME (a length hint only)
        case '}': push(container(Obj::Kind::Dict)); break;
        case ']': push(container(Obj::Kind::List)); break;
        case ')': push(container(Obj::Kind::Tuple)); break;
        case '(':
          if (marks_.size() >= kMaxMarkDepth) bad("is nested too deeply");
          marks_.push_back(stack_.size());
          break;
        case 't': {  // TUPLE
          auto tuple = container(Obj::Kind::Tuple);
          tuple->items = pop_to_mark();
          push(tuple);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          std::size_t count = op - 0x84;
          need_stack(count, "TUPLE");
          auto tuple = container(Obj::Kind::Tuple);
          tuple->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(count), stack_.end());
          stack_.resize(stack_.size() - count);
          push(tuple);
          break;
        }
        case 'X': push(string_node(Obj::Kind::String, read_u32())); break;  // BINUNICODE
        case 0x8c: push(string_node(Obj::Kind::String, read_u8())); break;  // SHORT_BINUNICODE
        case 0x8d: push(string_node(Obj::Kind::String, read_u64())); break;  // BINUNICODE8
        case 'C': push(string_node(Obj::Kind::Bytes, read_u8())); break;  // SHORT_BINBYTES
        case 'B': push(string_node(Obj::Kind::Bytes, read_u32())); break;  // BINBYTES
        case 0x8e: push(string_node(Obj::Kind::Bytes, read_u64())); break;  // BINBYTES8
        case 'J': {  // BININT
          uint32_t raw = read_u32();
          int32_t value;
          std::memcpy(&value, &raw, 4);
          push(int_node(value));
          break;
        }
        case 'K': push(int_node(read_u8())); break;  // BININT1
        case 'M': {                                  // BININT2
          uint16_t low = read_u8();
          uint16_t high = read_u8();
          push(int_node(low | (high << 8)));
          break;
        }
        case 0x8a: push(int_node(read_long1())); break;  // LONG1
        case 'G': {                                      // BINFLOAT (big-endian)
          std::string_view raw = read_bytes(8);
          uint64_t bits = 0;
          for (char c : raw) bits = (bits << 8) | static_cast<uint8_t>(c);
          auto node = std::make_shared<Obj>();
          node->kind = Obj::Kind::Float;
          std::memcpy(&node->number, &bits, 8);
          push(node);
          break;
        }
        case 'N': push(std::make_shared<Obj>()); break;
        case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
          auto node = std::make_shared<Obj>();
          node->kind = Obj::Kind::Bool;
          node->boolean = op == 0x88;
          push(node);
          break;
        }
        case 'q': memo_put(read_u8()); break;   // BINPUT
        case 'r': memo_put(read_u32()); break;  // LONG_BINPUT
        case 0x94: memo_put(memo_.size()); break;  // MEMOIZE
        case 'h': memo_get(read_u8()); break;   // BINGET
        case 'j': memo_get(read_u32()); break;  // LONG_BINGET
        case 's': {  // SETITEM
          need_stack(3, "SETITEM");
          Node value = pop();
          Node key = pop();
          add_item(top("SETITEM"), key, value);
          break;
        }
        case 'u': {  // SETITEMS
          auto pairs = pop_to_mark();
          if (pairs.size() % 2) bad("SETITEMS with an odd number of values");
          Node dict = top("SETITEMS");
          for (std::size_t i = 0; i < pairs.size(); i += 2) add_item(dict, pairs[i], pairs[i + 1]);
          break;
        }
        case 'a': {  // APPEND
          need_stack(2, "APPEND");
          Node value = pop();
          append(top("APPEND"), value);
          break;
        }
        case 'e': {  // APPENDS
          auto values = pop_to_mark();
          Node list = top("APPENDS");
          for (auto& value : values) append(list, value);
          break;
        }
        case 'c': {  // GLOBAL "module\nname\n"
          std::string module = read_line();
          std::string name = read_line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          need_stack(2, "STACK_GLOBAL");
          Node name = pop();
          Node module = pop();
          if (module->kind != Obj::Kind::String || name->kind != Obj::Kind::String)
            bad("STACK_GLOBAL expects two strings");
          push(global(module->text, name->text));
          break;
        }
        case 'R': {  // REDUCE
          need_stack(2, "REDUCE");
          Node args = pop();
          Node callable = pop();
          push(reduce(callable, args));
          break;
        }
        case 0x81: {  // NEWOBJ: only TorchScript objects, cls.__new__(cls)
          if (!options_.torchscript_objects) unsupported_opcode(op, opcode_pos);
          need_stack(2, "NEWOBJ");
          Node args = pop();
          Node cls = pop();
          push(new_object(cls, args));
          break;
        }
        case 'b': {  // BUILD
          need_stack(2, "BUILD");
          Node state = pop();
          build(top("BUILD"), state);
          break;
        }
        case 'Q': {  // BINPERSID
          need_stack(1, "BINPERSID");
          push(persistent_load(pop()));
          break;
        }
        case '.': {  // STOP
          if (stack_.size() != 1 || !marks_.empty()) bad("STOP with " + std::to_string(stack_.size()) + " values on the stack");
          return stack_.back();
        }
        default:
          unsupported_opcode(op, opcode_pos);
      }
    }
  }

  TorchFileValue convert(const Node& node, int depth) {
    if (depth > kMaxValueDepth) bad("is nested too deeply");
    if (++converted_ > converted_limit_) bad("refers to more objects than its size allows (a reference loop?)");
    TorchFileValue value;
    switch (node->kind) {
      case Obj::Kind::None: value.kind = TorchFileValue::Kind::None; break;
      case Obj::Kind::Bool: value.kind = TorchFileValue::Kind::Bool; value.boolean = node->boolean; break;
      case Obj::Kind::Int: value.kind = TorchFileValue::Kind::Int; value.integer = node->integer; break;
      case Obj::Kind::Float: value.kind = TorchFileValue::Kind::Float; value.number = node->number; break;
      case Obj::Kind::String: value.kind = TorchFileValue::Kind::String; value.text = node->text; break;
      case Obj::Kind::Bytes: value.kind = TorchFileValue::Kind::Bytes; value.text = node->text; break;
      case Obj::Kind::Tensor: value.kind = TorchFileValue::Kind::Tensor; value.tensor = node->tensor; break;
      case Obj::Kind::List:
      case Obj::Kind::Tuple:
      case Obj::Kind::Dict:
      case Obj::Kind::Object:
        value.kind = node->kind == Obj::Kind::List    ? TorchFileValue::Kind::List
                     : node->kind == Obj::Kind::Tuple ? TorchFileValue::Kind::Tuple
                     : node->kind == Obj::Kind::Dict  ? TorchFileValue::Kind::Dict
                                                      : TorchFileValue::Kind::Object;
        if (node->kind == Obj::Kind::Object) value.text = node->text;
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

 private:
  [[noreturn]] void bad(const std::string& message) { fail_in(path_, "data.pkl " + message); }

  [[noreturn]] void unsupported_opcode(uint8_t op, std::size_t at) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", op);
    bad(std::string("uses pickle opcode ") + hex + " at byte " + std::to_string(at) +
        ", which a weights file does not need (only tensors, dicts, lists and numbers are read)");
  }

  // --- reading the pickle bytes, each length checked against what is left ---
  std::string_view read_bytes(uint64_t count) {
    if (count > size_ - pos_)
      bad("is truncated or corrupted (needs " + std::to_string(count) + " bytes at byte " + std::to_string(pos_) +
          ", " + std::to_string(size_ - pos_) + " left)");
    std::string_view bytes(data_ + pos_, count);
    pos_ += count;
    return bytes;
  }
  uint8_t read_u8() { return static_cast<uint8_t>(read_bytes(1)[0]); }
  uint32_t read_u32() {
    std::string_view raw = read_bytes(4);
    uint32_t value = 0;
    for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(raw[i]);
    return value;
  }
  uint64_t read_u64() {
    std::string_view raw = read_bytes(8);
    uint64_t value = 0;
    for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(raw[i]);
    return value;
  }
  int64_t read_long1() {
    uint8_t count = read_u8();
    if (count > 8) bad("holds an integer wider than 64 bits");
    std::string_view raw = read_bytes(count);
    if (count == 0) return 0;
    uint64_t value = 0;
    for (int i = count - 1; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(raw[i]);
    if (count < 8 && (static_cast<uint8_t>(raw[count - 1]) & 0x80)) value |= ~uint64_t{0} << (8 * count);  // sign
    int64_t signed_value;
    std::memcpy(&signed_value, &value, 8);
    return signed_value;
  }
  std::string read_line() {
    std::size_t end = pos_;
    while (end < size_ && end - pos_ < 256 && data_[end] != '\n') ++end;
    if (end >= size_ || data_[end] != '\n') bad("has a malformed GLOBAL name");
    std::string line(data_ + pos_, end - pos_);
    pos_ = end + 1;
    return line;
  }

  // --- stack and memo ---
  void push(Node node) { stack_.push_back(std::move(node)); }
  void need_stack(std::size_t count, const char* what) {
    std::size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() < floor + count) bad(std::string(what) + " on a stack with too few values (corrupted?)");
  }
  Node pop() {
    Node node = std::move(stack_.back());
    stack_.pop_back();
    return node;
  }
  Node top(const char* what) {
    need_stack(1, what);
    return stack_.back();
  }
  std::vector<Node> pop_to_mark() {
    if (marks_.empty()) bad("uses a MARK that was never set (corrupted?)");
    std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Node> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  void memo_put(std::size_t index) {
    need_stack(1, "BINPUT");
    memo_[index] = stack_.back();
  }
  void memo_get(std::size_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) bad("refers to memo entry " + std::to_string(index) + ", which was never stored");
    push(it->second);
  }

  Node container(Obj::Kind kind) {
    auto node = std::make_shared<Obj>();
    node->kind = kind;
    containers_.push_back(node);
    return node;
  }
  Node int_node(int64_t value) {
    auto node = std::make_shared<Obj>();
    node->kind = Obj::Kind::Int;
    node->integer = value;
    return node;
  }
  Node string_node(Obj::Kind kind, uint64_t length) {
    auto node = std::make_shared<Obj>();
    node->kind = kind;
    node->text = std::string(read_bytes(length));
    return node;
  }

  void add_item(const Node& dict, const Node& key, const Node& value) {
    if (dict->kind != Obj::Kind::Dict && dict->kind != Obj::Kind::Object) bad(std::string("sets an item on a ") + kind_name(dict->kind));
    // Python semantics: a repeated key replaces the value (keeps the first position).
    if (key->kind == Obj::Kind::String || key->kind == Obj::Kind::Int) {
      for (std::size_t i = 0; i < dict->keys.size(); ++i) {
        const Node& existing = dict->keys[i];
        if (existing->kind == key->kind && existing->text == key->text && existing->integer == key->integer) {
          dict->items[i] = value;
          return;
        }
      }
    }
    dict->keys.push_back(key);
    dict->items.push_back(value);
  }
  void append(const Node& list, const Node& value) {
    if (list->kind != Obj::Kind::List) bad(std::string("appends to a ") + kind_name(list->kind));
    list->items.push_back(value);
  }

  Node global(const std::string& module, const std::string& name) {
    std::string full = module + "." + name;
    if (options_.torchscript_objects && (module == "__torch__" || module.rfind("__torch__.", 0) == 0)) {
      auto node = std::make_shared<Obj>();
      node->kind = Obj::Kind::Class;  // opaque: nothing of the class is looked up or run
      node->text = full;
      return node;
    }
    if (options_.torchscript_objects && torchscript_helper(full)) {
      auto node = std::make_shared<Obj>();
      node->kind = Obj::Kind::Global;
      node->text = full;
      return node;
    }
    if (!allowed_global(full))
      bad("refuses to load global '" + full + "' (only tensors, dicts, lists and numbers are read)");
    auto node = std::make_shared<Obj>();
    node->kind = Obj::Kind::Global;
    node->text = full;
    return node;
  }

  // --- calls of allowed globals ---
  const std::vector<Node>& args_of(const Node& args, const std::string& callee, std::size_t min, std::size_t max) {
    if (args->kind != Obj::Kind::Tuple) bad("calls " + callee + " without an argument tuple");
    if (args->items.size() < min || args->items.size() > max)
      bad("calls " + callee + " with " + std::to_string(args->items.size()) + " arguments");
    return args->items;
  }
  int64_t int_arg(const Node& node, const std::string& what) {
    if (node->kind != Obj::Kind::Int) bad(what + " is a " + kind_name(node->kind) + ", expected an int");
    return node->integer;
  }
  std::vector<int64_t> int_tuple(const Node& node, const std::string& what) {
    if (node->kind != Obj::Kind::Tuple) bad(what + " is a " + kind_name(node->kind) + ", expected a tuple");
    if (static_cast<int64_t>(node->items.size()) > kMaxTensorDims) bad(what + " has too many dimensions");
    std::vector<int64_t> values;
    for (const auto& item : node->items) values.push_back(int_arg(item, what));
    return values;
  }

  // An empty object of a TorchScript class; its attributes come with BUILD.
  Node new_object(const Node& cls, const Node& args) {
    if (cls->kind != Obj::Kind::Class) bad(std::string("creates an object of a ") + kind_name(cls->kind));
    if (args->kind != Obj::Kind::Tuple || !args->items.empty())
      bad("creates an object of class '" + cls->text + "' with arguments (only an empty tuple is read)");
    auto object = container(Obj::Kind::Object);
    object->text = cls->text;
    return object;
  }

  // What TorchScript's pickler wraps typed containers in; all of them give back their value.
  static bool torchscript_helper(const std::string& name) {
    return name == "torch.jit._pickle.restore_type_tag" || name == "torch.jit._pickle.build_intlist" ||
           name == "torch.jit._pickle.build_doublelist" || name == "torch.jit._pickle.build_boollist" ||
           name == "torch.jit._pickle.build_tensorlist";
  }

  Node reduce(const Node& callable, const Node& args) {
    if (callable->kind == Obj::Kind::Class) return new_object(callable, args);
    if (callable->kind != Obj::Kind::Global) bad(std::string("calls a ") + kind_name(callable->kind));
    const std::string& name = callable->text;
    if (torchscript_helper(name)) {  // restore_type_tag(value, type name), build_*list(list)
      const auto& a = args_of(args, name, 1, 2);
      if (name != "torch.jit._pickle.restore_type_tag" && a[0]->kind != Obj::Kind::List)
        bad("calls " + name + " on a " + kind_name(a[0]->kind));
      return a[0];
    }
    if (name == "collections.OrderedDict") {
      args_of(args, name, 0, 0);
      return container(Obj::Kind::Dict);
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      const auto& a = args_of(args, name, 4, 7);
      return rebuild_tensor(a[0], int_arg(a[1], "tensor storage offset"), int_tuple(a[2], "tensor size"),
                            int_tuple(a[3], "tensor stride"));
    }
    if (name == "torch._utils._rebuild_parameter") {  // (data, requires_grad, backward_hooks)
      const auto& a = args_of(args, name, 1, 3);
      if (a[0]->kind != Obj::Kind::Tensor) bad("_rebuild_parameter of a " + std::string(kind_name(a[0]->kind)));
      return a[0];
    }
    if (name == "numpy.dtype") {  // ('f8', False, True)
      const auto& a = args_of(args, name, 1, 3);
      if (a[0]->kind != Obj::Kind::String) bad("numpy.dtype of a " + std::string(kind_name(a[0]->kind)));
      auto node = std::make_shared<Obj>();
      node->kind = Obj::Kind::NumpyDtype;
      node->text = a[0]->text;
      return node;
    }
    if (name == "numpy.core.multiarray.scalar" || name == "numpy._core.multiarray.scalar") {
      const auto& a = args_of(args, name, 2, 2);
      return numpy_scalar(a[0], a[1]);
    }
    if (name == "_codecs.encode") {  // (text, 'latin1'): bytes as protocol 2 writes them
      const auto& a = args_of(args, name, 2, 2);
      if (a[0]->kind != Obj::Kind::String || a[1]->kind != Obj::Kind::String ||
          (a[1]->text != "latin1" && a[1]->text != "latin-1"))
        bad("calls _codecs.encode with arguments other than (str, 'latin1')");
      auto node = std::make_shared<Obj>();
      node->kind = Obj::Kind::Bytes;
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

  Node numpy_scalar(const Node& dtype, const Node& raw) {
    if (dtype->kind != Obj::Kind::NumpyDtype || raw->kind != Obj::Kind::Bytes)
      bad("numpy scalar without a dtype and its bytes");
    if (dtype->byte_order == '>') bad("holds a big-endian numpy scalar");
    const std::string& code = dtype->text;
    const std::string& bytes = raw->text;
    auto node = std::make_shared<Obj>();
    auto expect = [&](std::size_t size) {
      if (bytes.size() != size) bad("numpy scalar of type " + code + " has " + std::to_string(bytes.size()) + " bytes");
    };
    auto load = [&](auto value) {  // the raw bytes as `value`'s type, size checked first
      expect(sizeof value);
      std::memcpy(&value, bytes.data(), sizeof value);
      return value;
    };
    if (code == "f8" || code == "f4" || code == "f2") {
      node->kind = Obj::Kind::Float;
      if (code == "f8") node->number = load(double{});
      if (code == "f4") node->number = load(float{});
      if (code == "f2") node->number = static_cast<float>(c10::Half(load(uint16_t{}), c10::Half::from_bits()));
    } else if (code == "i8" || code == "i4" || code == "i2" || code == "i1" || code == "u4" || code == "u2" ||
               code == "u1") {
      node->kind = Obj::Kind::Int;
      if (code == "i8") node->integer = load(int64_t{});
      if (code == "i4") node->integer = load(int32_t{});
      if (code == "i2") node->integer = load(int16_t{});
      if (code == "i1") node->integer = load(int8_t{});
      if (code == "u4") node->integer = load(uint32_t{});
      if (code == "u2") node->integer = load(uint16_t{});
      if (code == "u1") node->integer = load(uint8_t{});
    } else if (code == "b1") {
      expect(1);
      node->kind = Obj::Kind::Bool;
      node->boolean = bytes[0] != 0;
    } else {
      bad("holds a numpy scalar of type '" + code + "' (only numbers are read)");
    }
    return node;
  }

  void build(const Node& target, const Node& state) {
    switch (target->kind) {
      case Obj::Kind::Dict:    // OrderedDict attributes such as a state dict's _metadata
      case Obj::Kind::Tensor:  // tensor attributes
        return;
      case Obj::Kind::Object:  // a TorchScript object: its attribute dict
        if (state->kind != Obj::Kind::Dict)
          bad("sets the state of an object of class '" + target->text + "' with a " + kind_name(state->kind) +
              " (only an attribute dict is read)");
        for (std::size_t i = 0; i < state->keys.size(); ++i) {
          if (state->keys[i]->kind != Obj::Kind::String)
            bad("gives an object of class '" + target->text + "' an attribute name that is not a string");
          add_item(target, state->keys[i], state->items[i]);
        }
        return;
      case Obj::Kind::NumpyDtype:  // (version, byte order, ...)
        if (state->kind == Obj::Kind::Tuple && state->items.size() >= 2 && state->items[1]->kind == Obj::Kind::String &&
            state->items[1]->text.size() == 1)
          target->byte_order = state->items[1]->text[0];
        return;
      default:
        bad(std::string("sets the state of a ") + kind_name(target->kind));
    }
  }

  // ('storage', torch.FloatStorage, key, location, numel)
  Node persistent_load(const Node& pid) {
    if (pid->kind != Obj::Kind::Tuple || pid->items.size() != 5 || pid->items[0]->kind != Obj::Kind::String ||
        pid->items[0]->text != "storage")
      bad("has a persistent id that is not a ('storage', type, key, location, size) tuple");
    const Node& type = pid->items[1];
    const Node& key = pid->items[2];
    if (type->kind != Obj::Kind::Global || !storage_types().count(type->text))
      bad("has a storage whose type is not a torch storage type");
    if (key->kind != Obj::Kind::String) bad("has a storage key that is not a string");
    int64_t numel = int_arg(pid->items[4], "storage size");
    if (numel < 0) bad("has a storage of negative size");
    auto node = std::make_shared<Obj>();
    node->kind = Obj::Kind::Storage;
    node->text = key->text;
    node->dtype = storage_types().at(type->text);
    node->numel = numel;
    return node;
  }

  // The record `data/<key>`, read once and shared by all tensors that view it.
  torch::Tensor storage_bytes(const Obj& storage) {
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

  Node rebuild_tensor(const Node& storage, int64_t offset, const std::vector<int64_t>& sizes,
                      const std::vector<int64_t>& strides) {
    if (storage->kind != Obj::Kind::Storage) bad("builds a tensor from a " + std::string(kind_name(storage->kind)));
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
    auto node = std::make_shared<Obj>();
    node->kind = Obj::Kind::Tensor;
    if (numel == 0) {
      node->tensor = torch::empty(sizes, torch::TensorOptions().dtype(storage->dtype));
      return node;
    }
    auto typed = torch::from_blob(bytes.data_ptr(), {storage->numel}, torch::TensorOptions().dtype(storage->dtype));
    node->tensor = typed.as_strided(sizes, strides, offset).clone(torch::MemoryFormat::Contiguous);
    return node;
  }

  const std::string& path_;
  const char* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  ZipRecords& reader_;
  const TorchFileOptions& options_;
  std::vector<Node> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::size_t, Node> memo_;
  std::vector<Node> containers_;
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
  ZipRecords reader(path);
  if (reader.has("byteorder")) {
    auto [order, order_size] = reader.get("byteorder");
    std::string text(static_cast<const char*>(order.get()), order_size);
    if (text != "little") fail_in(path, "stores its tensors in '" + text + "' byte order; only little-endian is read");
  }
  if (!reader.has("data.pkl")) fail_in(path, "is a zip file without a data.pkl record (not written by torch.save)");
  auto [pickle, pickle_size] = reader.get("data.pkl");
  Unpickler unpickler(path, static_cast<const char*>(pickle.get()), pickle_size, reader, options);
  Node root = unpickler.run();
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
