#include "cprfl/io/npy.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <vector>

#include "cprfl/common/error.h"
#include "cprfl/common/text.h"
#include "cprfl/io/atomic_file.h"

// The element bytes are copied as they are, so the host must be little-endian like the
// files we write (every platform LibTorch ships for is).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy.cpp assumes a little-endian host");

namespace cprfl {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicSize = 6;
constexpr std::size_t kMaxDims = 32;

const char* kSupported =
    "supported: float16/32/64 ('<f2', '<f4', '<f8'), int32/int64 ('<i4', '<i8'), uint8 ('|u1'), bool ('|b1')";

// Where the header text lies, from the fixed-size preamble.
struct Preamble {
  int major = 0;
  int minor = 0;
  std::size_t header_offset = 0;  // first byte of the header text
  std::size_t header_length = 0;
};

// What the header says about the data.
struct Layout {
  torch::ScalarType dtype = torch::kFloat;
  std::size_t item_size = 0;
  bool byte_swap = false;
  std::vector<std::int64_t> shape;
  std::int64_t numel = 1;
  std::size_t data_offset = 0;
};

std::uint32_t little_endian(const unsigned char* bytes, int count) {
  std::uint32_t value = 0;
  for (int i = count - 1; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

// `start` holds the first min(12, total_size) bytes of the file.
Preamble parse_preamble(std::string_view start, std::uint64_t total_size, const std::string& name) {
  if (total_size < 10) fail_in(name, "too short to be a .npy file (" + std::to_string(total_size) + " bytes)");
  if (std::memcmp(start.data(), kMagic, kMagicSize) != 0) fail_in(name, "not a .npy file (it does not start with \\x93NUMPY)");
  const auto* bytes = reinterpret_cast<const unsigned char*>(start.data());
  Preamble preamble;
  preamble.major = bytes[6];
  preamble.minor = bytes[7];
  if (preamble.minor != 0 || preamble.major < 1 || preamble.major > 3) {
    fail_in(name, "unsupported .npy format version " + std::to_string(preamble.major) + "." +
                      std::to_string(preamble.minor) + " (1.0, 2.0 and 3.0 are read)");
  }
  if (preamble.major == 1) {
    preamble.header_offset = 10;
    preamble.header_length = little_endian(bytes + 8, 2);
  } else {
    if (total_size < 12) fail_in(name, "truncated .npy preamble (" + std::to_string(total_size) + " bytes)");
    preamble.header_offset = 12;
    preamble.header_length = little_endian(bytes + 8, 4);
  }
  if (preamble.header_offset + preamble.header_length > total_size) {
    fail_in(name, "truncated .npy header: it should be " + std::to_string(preamble.header_length) +
                      " bytes but the file has only " + std::to_string(total_size - preamble.header_offset) +
                      " bytes after the preamble");
  }
  return preamble;
}

// The header text as shown in messages: printable, and not too long.
std::string shown(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 160)) {
    if (c == '\n') out += "\\n";
    else if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) out += '?';
    else out += c;
  }
  if (text.size() > 160) out += "…";
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// A strict parser for the one Python literal numpy writes as the header:
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// Keys in any order, single or double quotes, a trailing comma, and padding spaces and a
// newline after the closing brace. Nothing else is accepted.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& name) : text_(text), name_(name) {}

  Layout parse() {
    std::optional<std::string> descr;
    std::optional<bool> fortran_order;
    std::optional<std::vector<std::int64_t>> shape;
    skip_spaces();
    expect('{');
    skip_spaces();
    while (peek() != '}') {
      std::string key = parse_string("a quoted key");
      skip_spaces();
      expect(':');
      skip_spaces();
      if (key == "descr") {
        if (descr) fail("key 'descr' appears twice");
        if (peek() == '[') fail("structured dtypes (a list as 'descr') are not supported; " + std::string(kSupported));
        descr = parse_string("a quoted dtype string as 'descr'");
      } else if (key == "fortran_order") {
        if (fortran_order) fail("key 'fortran_order' appears twice");
        fortran_order = parse_bool();
      } else if (key == "shape") {
        if (shape) fail("key 'shape' appears twice");
        shape = parse_shape();
      } else {
        fail("unexpected key '" + key + "'");
      }
      skip_spaces();
      if (peek() == ',') {
        ++pos_;
        skip_spaces();
      } else if (peek() != '}') {
        fail("expected ',' or '}' after the value of '" + key + "'");
      }
    }
    ++pos_;  // '}'
    for (; pos_ < text_.size(); ++pos_)
      if (text_[pos_] != ' ' && text_[pos_] != '\n' && text_[pos_] != '\r' && text_[pos_] != '\t')
        fail("unexpected text after the closing '}'");
    if (!descr) fail("key 'descr' is missing");
    if (!fortran_order) fail("key 'fortran_order' is missing");
    if (!shape) fail("key 'shape' is missing");
    if (*fortran_order) fail_in(name_, "Fortran-order (column-major) arrays are not supported; save it in C order");

    Layout layout = layout_of(*descr);
    layout.shape = *shape;
    return layout;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    fail_in(name_, "bad .npy header: " + what + " (at byte " + std::to_string(pos_) + " of \"" + shown(text_) + "\")");
  }

  char peek() {
    if (pos_ >= text_.size()) fail("the header ends too early");
    return text_[pos_];
  }

  void expect(char wanted) {
    if (peek() != wanted) fail(std::string("expected '") + wanted + "'");
    ++pos_;
  }

  void skip_spaces() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n')) ++pos_;
  }

  std::string parse_string(const char* what) {
    char quote = peek();
    if (quote != '\'' && quote != '"') fail(std::string("expected ") + what);
    std::size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string value(text_.substr(pos_ + 1, end - pos_ - 1));
    if (value.find('\\') != std::string::npos || value.find('\n') != std::string::npos) fail("unexpected escape in a string");
    pos_ = end + 1;
    return value;
  }

  bool parse_bool() {
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("'fortran_order' must be True or False");
  }

  // A Python tuple of non-negative integers: (), (5,), (2, 3) or (2, 3,).
  std::vector<std::int64_t> parse_shape() {
    if (peek() != '(') fail("'shape' must be a tuple such as (2, 3)");
    ++pos_;
    std::vector<std::int64_t> dims;
    bool saw_comma = false;
    skip_spaces();
    while (peek() != ')') {
      dims.push_back(parse_dim());
      if (dims.size() > kMaxDims) fail("more than " + std::to_string(kMaxDims) + " dimensions");
      skip_spaces();
      if (peek() == ',') {
        saw_comma = true;
        ++pos_;
        skip_spaces();
      } else if (peek() != ')') {
        fail("expected ',' or ')' in 'shape'");
      }
    }
    ++pos_;
    if (dims.size() == 1 && !saw_comma) fail("'shape' must be a tuple: a single dimension is written (n,)");
    return dims;
  }

  std::int64_t parse_dim() {
    std::size_t start = pos_;
    if (peek() == '-') fail("negative dimension in 'shape'");
    std::int64_t value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      int digit = text_[pos_] - '0';
      if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) fail("dimension too large in 'shape'");
      value = value * 10 + digit;
      ++pos_;
    }
    if (pos_ == start) fail("expected an integer dimension in 'shape'");
    if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;  // Python 2 long literal, as old numpy wrote
    return value;
  }

  // Maps a dtype string such as '<f4' to the tensor dtype; anything unsupported is an error.
  Layout layout_of(const std::string& descr) {
    if (descr == "O" || descr == "|O") fail_in(name_, "object arrays (dtype 'O', pickled Python objects) are not supported");
    Layout layout;
    if (descr.size() < 2) fail_in(name_, "unsupported dtype '" + descr + "'; " + kSupported);
    char order = descr[0];
    std::string kind = descr.substr(1);
    if (order != '<' && order != '>' && order != '|' && order != '=')
      fail_in(name_, "dtype '" + descr + "' has no byte-order mark ('<', '>' or '|'); " + kSupported);
    struct Entry { const char* kind; torch::ScalarType dtype; std::size_t size; };
    static const Entry kTypes[] = {{"f2", torch::kHalf, 2}, {"f4", torch::kFloat, 4}, {"f8", torch::kDouble, 8},
                                   {"i4", torch::kInt, 4},  {"i8", torch::kLong, 8},  {"u1", torch::kByte, 1},
                                   {"b1", torch::kBool, 1}};
    const Entry* found = nullptr;
    for (const auto& entry : kTypes)
      if (kind == entry.kind) found = &entry;
    if (!found) fail_in(name_, "unsupported dtype '" + descr + "'; " + kSupported);
    if (order == '|' && found->size > 1) fail_in(name_, "dtype '" + descr + "' needs a byte order ('<' or '>')");
    layout.dtype = found->dtype;
    layout.item_size = found->size;
    layout.byte_swap = order == '>' && found->size > 1;
    return layout;
  }

  std::string_view text_;
  const std::string& name_;
  std::size_t pos_ = 0;
};

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

// Parses the header and checks that the shape accounts for exactly the bytes after it.
// The element count is bounded by the data size as it is multiplied, so a corrupt shape
// fails here, before any allocation.
Layout read_layout(const Preamble& preamble, std::string_view header, std::uint64_t total_size, const std::string& name) {
  Layout layout = HeaderParser(header, name).parse();
  layout.data_offset = preamble.header_offset + preamble.header_length;
  std::uint64_t data_bytes = total_size - layout.data_offset;
  std::uint64_t max_elements = data_bytes / layout.item_size;
  bool empty = std::find(layout.shape.begin(), layout.shape.end(), 0) != layout.shape.end();
  if (empty) {
    // No data, but the other dimensions must still multiply to a representable size, as
    // numpy and LibTorch require (LibTorch throws on overflow even next to a zero).
    std::uint64_t product = 1;
    const std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / layout.item_size;
    for (std::int64_t dim : layout.shape) {
      auto d = static_cast<std::uint64_t>(dim);
      if (d != 0 && product > limit / d) fail_in(name, "shape " + shape_text(layout.shape) + " is too large");
      if (d != 0) product *= d;
    }
  }
  std::uint64_t numel = 1;
  for (std::int64_t dim : layout.shape) {
    if (empty) break;
    auto d = static_cast<std::uint64_t>(dim);
    if (numel > max_elements / d) {
      fail_in(name, "shape " + shape_text(layout.shape) + " needs more data than the file holds (" +
                        std::to_string(data_bytes) + " bytes after the header)");
    }
    numel *= d;
  }
  if (empty) numel = 0;
  if (numel * layout.item_size != data_bytes) {
    fail_in(name, "shape " + shape_text(layout.shape) + " of " + std::to_string(layout.item_size) + "-byte elements needs " +
                      std::to_string(numel * layout.item_size) + " bytes of data, but the file has " +
                      std::to_string(data_bytes) + " after the header");
  }
  layout.numel = static_cast<std::int64_t>(numel);
  return layout;
}

// Big-endian data to host order, and bool bytes checked (anything but 0/1 is not a bool).
void finish_tensor(torch::Tensor& tensor, const Layout& layout, const std::string& name) {
  auto* bytes = static_cast<unsigned char*>(tensor.data_ptr());
  std::size_t total = static_cast<std::size_t>(layout.numel) * layout.item_size;
  if (layout.byte_swap)
    for (std::size_t i = 0; i < total; i += layout.item_size) std::reverse(bytes + i, bytes + i + layout.item_size);
  if (layout.dtype == torch::kBool) {
    for (std::size_t i = 0; i < total; ++i)
      if (bytes[i] > 1) fail_in(name, "bool element " + std::to_string(i) + " has byte value " + std::to_string(bytes[i]) + " (not 0 or 1)");
  }
}

const char* descr_of(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kHalf: return "<f2";
    case torch::kFloat: return "<f4";
    case torch::kDouble: return "<f8";
    case torch::kInt: return "<i4";
    case torch::kLong: return "<i8";
    case torch::kByte: return "|u1";
    case torch::kBool: return "|b1";
    default: return nullptr;
  }
}

}  // namespace

torch::Tensor parse_npy(std::string_view bytes, const std::string& name_for_errors) {
  const std::string& name = name_for_errors;
  Preamble preamble = parse_preamble(bytes.substr(0, 12), bytes.size(), name);
  std::string_view header = bytes.substr(preamble.header_offset, preamble.header_length);
  Layout layout = read_layout(preamble, header, bytes.size(), name);
  torch::Tensor tensor = torch::empty(layout.shape, torch::TensorOptions().dtype(layout.dtype));
  if (layout.numel > 0)
    std::memcpy(tensor.data_ptr(), bytes.data() + layout.data_offset, static_cast<std::size_t>(layout.numel) * layout.item_size);
  finish_tensor(tensor, layout, name);
  return tensor;
}

torch::Tensor read_npy(const std::string& path) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) fail_in(path, "is a directory, not a .npy file");
  // A pipe or device (e.g. bash's <(…)) has no size to check against: read it all first.
  if (std::filesystem::exists(path, ignored) && !std::filesystem::is_regular_file(path, ignored))
    return parse_npy(read_text_file(path), path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_in(path, std::string("cannot open file: ") + std::strerror(errno));
  in.seekg(0, std::ios::end);
  std::streamoff end = in.tellg();
  if (end < 0) fail_in(path, "cannot determine the file size (is it a regular file?)");
  auto total_size = static_cast<std::uint64_t>(end);
  in.seekg(0);
  auto read_exactly = [&](char* into, std::size_t count) {
    in.read(into, static_cast<std::streamsize>(count));
    if (static_cast<std::size_t>(in.gcount()) != count) fail_in(path, "read error (the file changed or is unreadable)");
  };
  std::string start(static_cast<std::size_t>(std::min<std::uint64_t>(12, total_size)), '\0');
  read_exactly(start.data(), start.size());
  Preamble preamble = parse_preamble(start, total_size, path);
  std::string header(preamble.header_length, '\0');
  in.seekg(static_cast<std::streamoff>(preamble.header_offset));
  read_exactly(header.data(), header.size());
  Layout layout = read_layout(preamble, header, total_size, path);
  // Sizes are now known to match the file, so this allocation is at most the file's size.
  torch::Tensor tensor = torch::empty(layout.shape, torch::TensorOptions().dtype(layout.dtype));
  if (layout.numel > 0) read_exactly(static_cast<char*>(tensor.data_ptr()), static_cast<std::size_t>(layout.numel) * layout.item_size);
  finish_tensor(tensor, layout, path);
  return tensor;
}

std::string encode_npy(const torch::Tensor& tensor, const std::string& name_for_errors) {
  if (!tensor.defined()) fail_in(name_for_errors, "cannot save an undefined tensor as .npy");
  const char* descr = descr_of(tensor.scalar_type());
  if (!descr) {
    fail_in(name_for_errors, std::string("cannot save a tensor of dtype ") + c10::toString(tensor.scalar_type()) +
                                 " as .npy; " + kSupported);
  }
  torch::Tensor data = tensor.to(torch::kCPU).contiguous();
  std::vector<std::int64_t> shape(data.sizes().begin(), data.sizes().end());
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
  // Pad with spaces and end with '\n' so the data starts at a multiple of 64 bytes.
  std::size_t preamble_size = 10;
  std::size_t unpadded = preamble_size + dict.size() + 1;
  std::size_t header_length = dict.size() + 1 + (64 - unpadded % 64) % 64;
  bool version2 = header_length > 0xFFFF;
  if (version2) {
    preamble_size = 12;
    unpadded = preamble_size + dict.size() + 1;
    header_length = dict.size() + 1 + (64 - unpadded % 64) % 64;
  }
  std::string bytes(kMagic, kMagicSize);
  bytes += static_cast<char>(version2 ? 2 : 1);
  bytes += '\0';
  for (std::size_t i = 0; i < (version2 ? 4u : 2u); ++i) bytes += static_cast<char>((header_length >> (8 * i)) & 0xFF);
  bytes += dict;
  bytes.append(header_length - dict.size() - 1, ' ');
  bytes += '\n';
  std::size_t data_size = static_cast<std::size_t>(data.numel()) * data.element_size();
  if (data_size > 0) bytes.append(static_cast<const char*>(data.data_ptr()), data_size);
  return bytes;
}

void write_npy(const std::string& path, const torch::Tensor& tensor) { write_file_atomic(path, encode_npy(tensor, path)); }

}  // namespace cprfl
