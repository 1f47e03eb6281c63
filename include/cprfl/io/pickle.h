#pragma once
// A reader of Python's pickle protocol (versions 2-5), the format of the `data.pkl` record in
// a torch.save file. It runs the pickle machine (stack, marks, memo, containers), checking
// every length against the bytes left and every stack access against what is there, so a
// malformed pickle is a cprfl::Error and never a crash.
//
// It never decides what an object *is*: the opcodes that name, call or build objects (GLOBAL,
// REDUCE, NEWOBJ, BUILD, BINPERSID) go to virtual hooks, which a subclass implements with its
// own allow-list (torch_file.cpp allows tensors and plain data only). That keeps the protocol
// apart from the policy of which globals a file may use, as Python's own Unpickler does with
// find_class and persistent_load.
#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cprfl {

struct PickleObject;
// Shared, because the memo and the stack refer to the same object (SETITEMS after BINPUT
// must be seen through a later BINGET).
using PickleNode = std::shared_ptr<PickleObject>;

// One object built by the unpickler.
struct PickleObject {
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
  std::string text;               // String (UTF-8), Bytes, and the names above
  std::vector<PickleNode> items;  // List and Tuple elements; Dict and Object values
  std::vector<PickleNode> keys;   // Dict keys / Object attribute names (parallel to items)
  torch::Tensor tensor;
  // Storage
  torch::ScalarType dtype = torch::kFloat;
  int64_t numel = 0;
  // NumpyDtype
  char byte_order = '=';
};

// "None", "dict", "global", ... (for messages).
const char* kind_name(PickleObject::Kind kind);

class Unpickler {
 public:
  // Reads the pickle `data` (`size` bytes), the record `record_name` of the file `file_path`;
  // errors read "<file_path>: <record_name> <what is wrong>". The bytes must outlive run().
  Unpickler(std::string file_path, std::string record_name, const char* data, std::size_t size);
  // Breaks every link first, so that deep chains and cycles built through the memo are
  // neither destroyed recursively (stack overflow) nor leaked.
  virtual ~Unpickler();
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  // Runs the pickle up to its STOP opcode and returns the one object left on the stack.
  // Nodes it returns stay linked only while the Unpickler lives.
  PickleNode run();

  // Fails with "<file_path>: <record_name> <message>".
  [[noreturn]] void bad(const std::string& message) const;

 protected:
  using Kind = PickleObject::Kind;

  // --- hooks: what the pickle's objects are ---
  // GLOBAL / STACK_GLOBAL: the callable or class `module.name`.
  virtual PickleNode global(const std::string& module, const std::string& name) = 0;
  // REDUCE: callable(*args).
  virtual PickleNode reduce(const PickleNode& callable, const PickleNode& args) = 0;
  // Whether NEWOBJ is read at all; when not, it is an unsupported opcode.
  virtual bool allows_newobj() const = 0;
  // NEWOBJ: cls.__new__(cls, *args).
  virtual PickleNode new_object(const PickleNode& cls, const PickleNode& args) = 0;
  // BUILD: sets `state` on `target` (which stays on the stack).
  virtual void build(const PickleNode& target, const PickleNode& state) = 0;
  // BINPERSID: the object a persistent id refers to.
  virtual PickleNode persistent_load(const PickleNode& pid) = 0;

  // --- for the hooks ---
  // A new List, Tuple, Dict or Object, registered so that the destructor unlinks it.
  PickleNode container(Kind kind);
  // dict[key] = value on a Dict or an Object (a repeated string or int key replaces the value).
  void add_item(const PickleNode& dict, const PickleNode& key, const PickleNode& value);
  // The elements of the argument tuple of a call of `callee`, between min and max of them.
  const std::vector<PickleNode>& args_of(const PickleNode& args, const std::string& callee, std::size_t min,
                                         std::size_t max);
  // The integer `node` (named `what` in errors).
  int64_t int_arg(const PickleNode& node, const std::string& what);

 private:
  [[noreturn]] void unsupported_opcode(uint8_t op, std::size_t at);

  // Reading the pickle bytes, each length checked against what is left.
  std::string_view read_bytes(uint64_t count);
  uint8_t read_u8();
  uint32_t read_u32();
  uint64_t read_u64();
  int64_t read_long1();
  std::string read_line();

  // Stack and memo.
  void push(PickleNode node) { stack_.push_back(std::move(node)); }
  void need_stack(std::size_t count, const char* what);
  PickleNode pop();
  PickleNode top(const char* what);
  std::vector<PickleNode> pop_to_mark();
  void memo_put(std::size_t index);
  void memo_get(std::size_t index);

  PickleNode int_node(int64_t value);
  PickleNode string_node(Kind kind, uint64_t length);
  void append(const PickleNode& list, const PickleNode& value);

  const std::string file_path_;
  const std::string record_name_;
  const char* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  std::vector<PickleNode> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::size_t, PickleNode> memo_;
  std::vector<PickleNode> containers_;
};

}  // namespace cprfl
