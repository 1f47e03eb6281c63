#include "cprfl/io/pickle.h"

#include <cstdio>
#include <cstring>
#include <utility>

#include "cprfl/common/error.h"

namespace cprfl {

namespace {

constexpr std::size_t kMaxMarkDepth = 1000;  // nested MARKs (tuples/lists/dicts being built)

}  // namespace

const char* kind_name(PickleObject::Kind kind) {
  using Kind = PickleObject::Kind;
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
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::NumpyDtype: return "numpy dtype";
    case Kind::Class: return "class";
    case Kind::Object: return "object";
  }
  return "?";
}

Unpickler::Unpickler(std::string file_path, std::string record_name, const char* data, std::size_t size)
    : file_path_(std::move(file_path)), record_name_(std::move(record_name)), data_(data), size_(size) {}

Unpickler::~Unpickler() {
  for (auto& node : containers_) {
    node->items.clear();
    node->keys.clear();
  }
}

PickleNode Unpickler::run() {
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
      case '}': push(container(Kind::Dict)); break;
      case ']': push(container(Kind::List)); break;
      case ')': push(container(Kind::Tuple)); break;
      case '(':
        if (marks_.size() >= kMaxMarkDepth) bad("is nested too deeply");
        marks_.push_back(stack_.size());
        break;
      case 't': {  // TUPLE
        auto tuple = container(Kind::Tuple);
        tuple->items = pop_to_mark();
        push(tuple);
        break;
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        std::size_t count = op - 0x84;
        need_stack(count, "TUPLE");
        auto tuple = container(Kind::Tuple);
        tuple->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(count), stack_.end());
        stack_.resize(stack_.size() - count);
        push(tuple);
        break;
      }
      case 'X': push(string_node(Kind::String, read_u32())); break;  // BINUNICODE
      case 0x8c: push(string_node(Kind::String, read_u8())); break;  // SHORT_BINUNICODE
      case 0x8d: push(string_node(Kind::String, read_u64())); break;  // BINUNICODE8
      case 'C': push(string_node(Kind::Bytes, read_u8())); break;  // SHORT_BINBYTES
      case 'B': push(string_node(Kind::Bytes, read_u32())); break;  // BINBYTES
      case 0x8e: push(string_node(Kind::Bytes, read_u64())); break;  // BINBYTES8
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
        auto node = std::make_shared<PickleObject>();
        node->kind = Kind::Float;
        std::memcpy(&node->number, &bits, 8);
        push(node);
        break;
      }
      case 'N': push(std::make_shared<PickleObject>()); break;
      case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
        auto node = std::make_shared<PickleObject>();
        node->kind = Kind::Bool;
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
        PickleNode value = pop();
        PickleNode key = pop();
        add_item(top("SETITEM"), key, value);
        break;
      }
      case 'u': {  // SETITEMS
        auto pairs = pop_to_mark();
        if (pairs.size() % 2) bad("SETITEMS with an odd number of values");
        PickleNode dict = top("SETITEMS");
        for (std::size_t i = 0; i < pairs.size(); i += 2) add_item(dict, pairs[i], pairs[i + 1]);
        break;
      }
      case 'a': {  // APPEND
        need_stack(2, "APPEND");
        PickleNode value = pop();
        append(top("APPEND"), value);
        break;
      }
      case 'e': {  // APPENDS
        auto values = pop_to_mark();
        PickleNode list = top("APPENDS");
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
        PickleNode name = pop();
        PickleNode module = pop();
        if (module->kind != Kind::String || name->kind != Kind::String)
          bad("STACK_GLOBAL expects two strings");
        push(global(module->text, name->text));
        break;
      }
      case 'R': {  // REDUCE
        need_stack(2, "REDUCE");
        PickleNode args = pop();
        PickleNode callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args), where the hooks allow it
        if (!allows_newobj()) unsupported_opcode(op, opcode_pos);
        need_stack(2, "NEWOBJ");
        PickleNode args = pop();
        PickleNode cls = pop();
        push(new_object(cls, args));
        break;
      }
      case 'b': {  // BUILD
        need_stack(2, "BUILD");
        PickleNode state = pop();
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

void Unpickler::bad(const std::string& message) const { fail_in(file_path_, record_name_ + " " + message); }

void Unpickler::unsupported_opcode(uint8_t op, std::size_t at) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02x", op);
  bad(std::string("uses pickle opcode ") + hex + " at byte " + std::to_string(at) +
      ", which a weights file does not need (only tensors, dicts, lists and numbers are read)");
}

// --- reading the pickle bytes, each length checked against what is left ---
std::string_view Unpickler::read_bytes(uint64_t count) {
  if (count > size_ - pos_)
    bad("is truncated or corrupted (needs " + std::to_string(count) + " bytes at byte " + std::to_string(pos_) +
        ", " + std::to_string(size_ - pos_) + " left)");
  std::string_view bytes(data_ + pos_, count);
  pos_ += count;
  return bytes;
}
uint8_t Unpickler::read_u8() { return static_cast<uint8_t>(read_bytes(1)[0]); }
uint32_t Unpickler::read_u32() {
  std::string_view raw = read_bytes(4);
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(raw[i]);
  return value;
}
uint64_t Unpickler::read_u64() {
  std::string_view raw = read_bytes(8);
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(raw[i]);
  return value;
}
int64_t Unpickler::read_long1() {
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
std::string Unpickler::read_line() {
  std::size_t end = pos_;
  while (end < size_ && end - pos_ < 256 && data_[end] != '\n') ++end;
  if (end >= size_ || data_[end] != '\n') bad("has a malformed GLOBAL name");
  std::string line(data_ + pos_, end - pos_);
  pos_ = end + 1;
  return line;
}

// --- stack and memo ---
void Unpickler::need_stack(std::size_t count, const char* what) {
  std::size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() < floor + count) bad(std::string(what) + " on a stack with too few values (corrupted?)");
}
PickleNode Unpickler::pop() {
  PickleNode node = std::move(stack_.back());
  stack_.pop_back();
  return node;
}
PickleNode Unpickler::top(const char* what) {
  need_stack(1, what);
  return stack_.back();
}
std::vector<PickleNode> Unpickler::pop_to_mark() {
  if (marks_.empty()) bad("uses a MARK that was never set (corrupted?)");
  std::size_t mark = marks_.back();
  marks_.pop_back();
  std::vector<PickleNode> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
  stack_.resize(mark);
  return items;
}
void Unpickler::memo_put(std::size_t index) {
  need_stack(1, "BINPUT");
  memo_[index] = stack_.back();
}
void Unpickler::memo_get(std::size_t index) {
  auto it = memo_.find(index);
  if (it == memo_.end()) bad("refers to memo entry " + std::to_string(index) + ", which was never stored");
  push(it->second);
}

PickleNode Unpickler::container(Kind kind) {
  auto node = std::make_shared<PickleObject>();
  node->kind = kind;
  containers_.push_back(node);
  return node;
}
PickleNode Unpickler::int_node(int64_t value) {
  auto node = std::make_shared<PickleObject>();
  node->kind = Kind::Int;
  node->integer = value;
  return node;
}
PickleNode Unpickler::string_node(Kind kind, uint64_t length) {
  auto node = std::make_shared<PickleObject>();
  node->kind = kind;
  node->text = std::string(read_bytes(length));
  return node;
}

void Unpickler::add_item(const PickleNode& dict, const PickleNode& key, const PickleNode& value) {
  if (dict->kind != Kind::Dict && dict->kind != Kind::Object)
    bad(std::string("sets an item on a ") + kind_name(dict->kind));
  // Python semantics: a repeated key replaces the value (keeps the first position).
  if (key->kind == Kind::String || key->kind == Kind::Int) {
    for (std::size_t i = 0; i < dict->keys.size(); ++i) {
      const PickleNode& existing = dict->keys[i];
      if (existing->kind == key->kind && existing->text == key->text && existing->integer == key->integer) {
        dict->items[i] = value;
        return;
      }
    }
  }
  dict->keys.push_back(key);
  dict->items.push_back(value);
}
void Unpickler::append(const PickleNode& list, const PickleNode& value) {
  if (list->kind != Kind::List) bad(std::string("appends to a ") + kind_name(list->kind));
  list->items.push_back(value);
}

// --- calls ---
const std::vector<PickleNode>& Unpickler::args_of(const PickleNode& args, const std::string& callee, std::size_t min,
                                                  std::size_t max) {
  if (args->kind != Kind::Tuple) bad("calls " + callee + " without an argument tuple");
  if (args->items.size() < min || args->items.size() > max)
    bad("calls " + callee + " with " + std::to_string(args->items.size()) + " arguments");
  return args->items;
}
int64_t Unpickler::int_arg(const PickleNode& node, const std::string& what) {
  if (node->kind != Kind::Int) bad(what + " is a " + kind_name(node->kind) + ", expected an int");
  return node->integer;
}

}  // namespace cprfl
