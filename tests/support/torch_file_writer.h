#pragma once
// Writes PyTorch torch.save files without Python, for the tests of the .pth reader: pickle
// protocol 2 as Python's pickle emits it for a state dict (OrderedDict + `_metadata` set by
// BUILD, tensors through torch._utils._rebuild_tensor_v2 and persistent ids, numpy scalars
// through numpy.core.multiarray.scalar and _codecs.encode), stored with LibTorch's
// PyTorchStreamWriter in torch.save's layout (archive/data.pkl, archive/data/<key>, version).
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cprfl::testing {

// Emits pickle opcodes; the tests also use it to craft hostile pickles.
class PickleBuilder {
 public:
  PickleBuilder& proto();  // PROTO 2
  PickleBuilder& op(char opcode);
  PickleBuilder& raw(const std::string& bytes);
  PickleBuilder& mark() { return op('('); }
  PickleBuilder& str(const std::string& text);  // BINUNICODE
  PickleBuilder& integer(int64_t value);        // BININT1 / BININT2 / BININT / LONG1, as pickle picks
  PickleBuilder& real(double value);            // BINFLOAT
  PickleBuilder& boolean(bool value);
  PickleBuilder& none() { return op('N'); }
  // GLOBAL, memoised: a repeated global is a BINGET, as pickle does it.
  PickleBuilder& global(const std::string& module, const std::string& name);
  PickleBuilder& put();  // BINPUT / LONG_BINPUT of the next memo index
  PickleBuilder& stop() { return op('.'); }
  // tensor: _rebuild_tensor_v2(('storage', <type>Storage, key, 'cpu', numel), offset, size, stride, False, OrderedDict())
  PickleBuilder& tensor(const std::string& storage_type, const std::string& key, int64_t storage_numel,
                        int64_t offset, const std::vector<int64_t>& sizes, const std::vector<int64_t>& strides);
  PickleBuilder& numpy_float64(double value);  // numpy.core.multiarray.scalar(dtype('f8'), b'...')
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
  uint32_t next_memo_ = 0;
  std::map<std::string, uint32_t> globals_;
};

// Stores data.pkl plus data/<key> records as torch.save does (archive name "archive").
void write_torch_zip(const std::string& path, const std::string& pickle,
                     const std::vector<std::pair<std::string, std::string>>& storages);

struct TorchSaveOptions {
  // Empty: the file holds the state dict itself. Otherwise a dict {wrap_key: state dict, ...extras}.
  std::string wrap_key;
  // Numpy float64 scalars stored beside the state dict (like the authors' `score`); with no
  // wrap_key they go into the state dict itself.
  std::vector<std::pair<std::string, double>> numpy_scalars;
};

// torch.save(OrderedDict(tensors)) as Python writes it: each tensor saved as a view
// (offset, sizes, strides) of its whole storage; tensors sharing a storage share a record.
void write_torch_state_dict(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                            const TorchSaveOptions& options = {});

}  // namespace cprfl::testing
