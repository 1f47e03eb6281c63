#include "cprfl/clip/tokenizer.h"

#include <utf8proc.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstdint>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "cprfl/common/error.h"
#include "cprfl/common/shipped_data.h"

namespace cprfl::clip {
namespace {

using CodePoint = utf8proc_int32_t;

// The merges OpenAI's code reads: merges[1 : 49152 - 256 - 2 + 1] of the file's lines.
constexpr std::size_t kMergeCount = 49152 - 256 - 2;
constexpr std::size_t kCacheLimit = 200000;  // BPE cache entries before it is cleared
const char* const kStartText = "<|startoftext|>";
const char* const kEndText = "<|endoftext|>";
const char* const kWordEnd = "</w>";

// ---- UTF-8 -------------------------------------------------------------------------------

void append_utf8(std::string& out, CodePoint c) {
  utf8proc_uint8_t buffer[4];
  auto n = utf8proc_encode_char(c, buffer);
  out.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(n));
}

std::vector<CodePoint> decode_utf8(const std::string& text) {
  std::vector<CodePoint> out;
  out.reserve(text.size());
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  std::size_t i = 0;
  while (i < text.size()) {
    CodePoint c;
    auto n = utf8proc_iterate(bytes + i, static_cast<utf8proc_ssize_t>(text.size() - i), &c);
    if (n < 0) throw Error("text is not valid UTF-8 (byte " + std::to_string(i) + ")");
    out.push_back(c);
    i += static_cast<std::size_t>(n);
  }
  return out;
}

std::string encode_utf8(const std::vector<CodePoint>& code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (CodePoint c : code_points) append_utf8(out, c);
  return out;
}

// Python's bytes.decode('utf-8', errors='replace'): each maximal invalid subpart → U+FFFD.
std::string repair_utf8(const std::string& bytes) {
  std::string out;
  std::size_t i = 0;
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
  while (i < bytes.size()) {
    unsigned char lead = byte(i);
    std::size_t length = 0;
    unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
    if (lead < 0x80) length = 1;
    else if (lead >= 0xC2 && lead <= 0xDF) length = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
    }
    if (length == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    std::size_t k = 1;
    for (; k < length && i + k < bytes.size(); ++k) {
      unsigned char b = byte(i + k);
      unsigned char lo = k == 1 ? low : 0x80, hi = k == 1 ? high : 0xBF;
      if (b < lo || b > hi) break;
    }
    if (k == length) out.append(bytes, i, length);
    else out += "\xEF\xBF\xBD";
    i += k;
  }
  return out;
}

// ---- Unicode classes, as the `regex` module and str methods see them ----------------------

utf8proc_category_t category(CodePoint c) { return utf8proc_category(c); }

bool is_letter(CodePoint c) {  // \p{L}
  switch (category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: return true;
    default: return false;
  }
}

bool is_number(CodePoint c) {  // \p{N}
  switch (category(c)) {
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: return true;
    default: return false;
  }
}

// \s: the Unicode White_Space property (Zs, Zl, Zp, TAB..CR, NEL).
bool is_space(CodePoint c) {
  if ((c >= 0x09 && c <= 0x0D) || c == 0x85) return true;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: return true;
    default: return false;
  }
}

// str.strip() also removes the information separators U+001C..U+001F.
bool is_strip_space(CodePoint c) { return is_space(c) || (c >= 0x1C && c <= 0x1F); }

bool is_cased(CodePoint c) {
  auto cat = category(c);
  if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT) return true;
  return utf8proc_tolower(c) != c || utf8proc_toupper(c) != c;  // e.g. Ⓐ, Ⅻ
}

bool is_case_ignorable(CodePoint c) {
  switch (category(c)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK: return true;
    default: break;
  }
  static const CodePoint word_inner[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,  0x5F4,  0x2018, 0x2019,
                                         0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
  return std::find(std::begin(word_inner), std::end(word_inner), c) != std::end(word_inner);
}

// ---- text clean-up -------------------------------------------------------------------------

// The part of ftfy.fix_text that ordinary captions need: NFC and straight quotes.
std::vector<CodePoint> fix_text(const std::string& text) {
  decode_utf8(text);  // reports invalid UTF-8 with its byte offset
  utf8proc_uint8_t* composed = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.c_str()),
                        static_cast<utf8proc_ssize_t>(text.size()), &composed,
                        static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw Error(std::string("cannot normalise text: ") + utf8proc_errmsg(n));
  std::string nfc(reinterpret_cast<char*>(composed), static_cast<std::size_t>(n));
  std::free(composed);
  auto code_points = decode_utf8(nfc);
  for (CodePoint& c : code_points) {
    if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
    else if (c >= 0x201C && c <= 0x201F) c = '"';
  }
  return code_points;
}

bool is_invalid_charref_codepoint(std::int64_t n) {  // html._invalid_codepoints
  return (n >= 0x1 && n <= 0x8) || n == 0xB || (n >= 0xE && n <= 0x1F) || (n >= 0x7F && n <= 0x9F) ||
         (n >= 0xFDD0 && n <= 0xFDEF) || (n & 0xFFFE) == 0xFFFE;
}

// html._invalid_charrefs: NUL, CR and the Windows-1252 meanings of 0x80..0x9F.
CodePoint fix_charref(std::int64_t n) {
  static const CodePoint cp1252[32] = {0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                       0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D,   0x017D, 0x8F,
                                       0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                       0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};
  if (n == 0) return 0xFFFD;
  if (n >= 0x80 && n <= 0x9F) return cp1252[n - 0x80];
  return static_cast<CodePoint>(n);
}

// html.unescape for numeric references and the common named entities.
std::vector<CodePoint> unescape_html(const std::vector<CodePoint>& in) {
  struct Entity {
    const char* name;
    CodePoint value;
    bool needs_semicolon;
  };
  static const Entity entities[] = {{"amp", '&', false},  {"lt", '<', false},    {"gt", '>', false},
                                    {"quot", '"', false}, {"nbsp", 0xA0, false}, {"apos", '\'', true}};
  std::vector<CodePoint> out;
  out.reserve(in.size());
  std::size_t i = 0;
  while (i < in.size()) {
    if (in[i] != '&' || i + 1 >= in.size()) {
      out.push_back(in[i++]);
      continue;
    }
    std::size_t j = i + 1;
    if (in[j] == '#') {  // &#123; or &#x7b; (semicolon optional)
      bool hex = j + 1 < in.size() && (in[j + 1] == 'x' || in[j + 1] == 'X');
      std::size_t k = j + (hex ? 2 : 1), digits_start = k;
      std::int64_t value = 0;
      while (k < in.size() && (hex ? in[k] < 0x80 && std::isxdigit(in[k]) : (in[k] >= '0' && in[k] <= '9'))) {
        int digit = in[k] <= '9' ? in[k] - '0' : (in[k] | 0x20) - 'a' + 10;
        value = std::min<std::int64_t>(value * (hex ? 16 : 10) + digit, 0x7FFFFFFF);
        ++k;
      }
      if (k == digits_start) {
        out.push_back(in[i++]);
        continue;
      }
      if (k < in.size() && in[k] == ';') ++k;
      if (value == 0 || value == 0xD || (value >= 0x80 && value <= 0x9F)) out.push_back(fix_charref(value));
      else if ((value >= 0xD800 && value <= 0xDFFF) || value > 0x10FFFF) out.push_back(0xFFFD);
      else if (!is_invalid_charref_codepoint(value)) out.push_back(static_cast<CodePoint>(value));
      i = k;
      continue;
    }
    // A name: up to 32 characters other than \t \n \f space < & # ;, then an optional ';'.
    std::size_t k = j;
    auto in_name = [](CodePoint c) { return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' && c != ';'; };
    while (k < in.size() && k - j < 32 && in_name(in[k])) ++k;
    bool semicolon = k < in.size() && in[k] == ';';
    std::string name;
    for (std::size_t m = j; m < k; ++m) name += in[m] < 0x80 ? static_cast<char>(in[m]) : '\x01';
    const Entity* found = nullptr;
    std::size_t used = 0;  // characters of the name the entity takes
    for (const Entity& e : entities)
      if (semicolon && name == e.name) found = &e, used = name.size() + 1;
    if (!found) {  // the longest entity that may go without ';' and starts the name
      for (const Entity& e : entities) {
        std::size_t len = std::char_traits<char>::length(e.name);
        if (!e.needs_semicolon && len <= name.size() && name.compare(0, len, e.name) == 0 && len > used) found = &e, used = len;
      }
    }
    if (!found) {
      out.push_back(in[i++]);
      continue;
    }
    out.push_back(found->value);
    i = j + used;
  }
  return out;
}

// Python's str.lower(): full lower-case mapping, with the final-sigma rule.
std::vector<CodePoint> lower(const std::vector<CodePoint>& in) {
  std::vector<CodePoint> out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    CodePoint c = in[i];
    if (c == 0x130) {  // İ → i + combining dot above
      out.push_back('i');
      out.push_back(0x307);
    } else if (c == 0x3A3) {
      std::size_t j = i;
      while (j > 0 && is_case_ignorable(in[j - 1])) --j;
      bool final_sigma = j > 0 && is_cased(in[j - 1]);
      if (final_sigma) {
        std::size_t k = i + 1;
        while (k < in.size() && is_case_ignorable(in[k])) ++k;
        final_sigma = k == in.size() || !is_cased(in[k]);
      }
      out.push_back(final_sigma ? 0x3C2 : 0x3C3);
    } else {
      out.push_back(utf8proc_tolower(c));
    }
  }
  return out;
}

// re.sub(r'\s+', ' ', text).strip(), with str.strip()'s idea of space at the ends.
std::vector<CodePoint> collapse_whitespace(const std::vector<CodePoint>& in) {
  std::size_t begin = 0, end = in.size();
  while (begin < end && is_strip_space(in[begin])) ++begin;
  while (end > begin && is_strip_space(in[end - 1])) --end;
  std::vector<CodePoint> out;
  out.reserve(end - begin);
  for (std::size_t i = begin; i < end; ++i) {
    if (!is_space(in[i])) {
      out.push_back(in[i]);
    } else if (!is_space(in[i - 1])) {  // the first of a run
      out.push_back(' ');
    }
  }
  return out;
}

// ---- pre-tokenisation ----------------------------------------------------------------------

bool starts_with(const std::vector<CodePoint>& text, std::size_t at, const char* ascii) {
  for (std::size_t k = 0; ascii[k]; ++k)
    if (at + k >= text.size() || text[at + k] != static_cast<unsigned char>(ascii[k])) return false;
  return true;
}

// Length of a contraction ('s 't 're 've 'm 'll 'd) at `at`, or 0. The pattern is compiled
// with IGNORECASE; after lower() only the long s (ſ) still folds to one of these letters.
std::size_t contraction_at(const std::vector<CodePoint>& text, std::size_t at) {
  if (text[at] != '\'' || at + 1 >= text.size()) return 0;
  CodePoint c = text[at + 1] == 0x17F ? 's' : text[at + 1];
  if (c == 's' || c == 't' || c == 'm' || c == 'd') return 2;
  CodePoint next = at + 2 < text.size() ? text[at + 2] : 0;
  if ((c == 'r' || c == 'v') && next == 'e') return 3;
  if (c == 'l' && next == 'l') return 3;
  return 0;
}

std::vector<std::vector<CodePoint>> split_pattern(const std::vector<CodePoint>& text) {
  std::vector<std::vector<CodePoint>> pieces;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t end = i;
    if (starts_with(text, i, kStartText)) end = i + std::char_traits<char>::length(kStartText);
    else if (starts_with(text, i, kEndText)) end = i + std::char_traits<char>::length(kEndText);
    else if (std::size_t n = contraction_at(text, i)) end = i + n;
    else if (is_letter(text[i])) {
      end = i + 1;
      while (end < text.size() && is_letter(text[end])) ++end;
    } else if (is_number(text[i])) {
      end = i + 1;
    } else if (!is_space(text[i])) {
      end = i + 1;
      while (end < text.size() && !is_space(text[end]) && !is_letter(text[end]) && !is_number(text[end])) ++end;
    }
    if (end == i) {  // whitespace matches nothing
      ++i;
      continue;
    }
    pieces.emplace_back(text.begin() + static_cast<std::ptrdiff_t>(i), text.begin() + static_cast<std::ptrdiff_t>(end));
    i = end;
  }
  return pieces;
}

// ---- the merges file -------------------------------------------------------------------------

std::string read_gzip_file(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) fail_in(path, "cannot open the CLIP BPE merges file");
  std::string content;
  char buffer[1 << 16];
  while (true) {
    int n = gzread(file, buffer, sizeof buffer);
    if (n < 0) {
      int code = 0;
      std::string message = gzerror(file, &code);
      gzclose(file);
      fail_in(path, "cannot decompress: " + message);
    }
    if (n == 0) break;
    content.append(buffer, static_cast<std::size_t>(n));
  }
  gzclose(file);
  return content;
}

// OpenAI's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others are
// moved to U+0100 onwards so that every byte is a visible character.
std::array<CodePoint, 256> bytes_to_unicode() {
  std::array<CodePoint, 256> table{};
  std::array<bool, 256> printable{};
  for (int b = 0; b < 256; ++b) printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  int moved = 0;
  for (int b = 0; b < 256; ++b) table[b] = printable[b] ? b : 256 + moved++;
  return table;
}

// The vocabulary order of OpenAI's code: the printable bytes first, then the moved ones.
std::vector<int> byte_vocabulary_order() {
  std::vector<int> order;
  for (int b = 0; b < 256; ++b)
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) order.push_back(b);
  for (int b = 0; b < 256; ++b)
    if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) order.push_back(b);
  return order;
}

}  // namespace

// ---- the tokenizer ---------------------------------------------------------------------------

struct ClipTokenizer::State {
  std::array<std::string, 256> byte_symbol;         // byte → its character, as UTF-8
  std::unordered_map<CodePoint, unsigned char> symbol_byte;
  std::vector<std::string> vocabulary;               // id → token
  std::unordered_map<std::string, int> ids;          // token → id
  std::unordered_map<std::string, int> merge_rank;   // "first second" → priority
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int>> cache;  // byte-encoded word → ids

  std::vector<int> bpe(const std::string& word) const;
};

std::string default_vocab_path() { return resolve_input_path("data/clip/bpe_simple_vocab_16e6.txt.gz"); }

ClipTokenizer::ClipTokenizer(std::unique_ptr<State> state) : state_(std::move(state)) {}
ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;
ClipTokenizer::~ClipTokenizer() = default;

ClipTokenizer ClipTokenizer::load(const std::string& path) {
  auto state = std::make_unique<State>();
  auto table = bytes_to_unicode();
  for (int b = 0; b < 256; ++b) {
    append_utf8(state->byte_symbol[b], table[b]);
    state->symbol_byte[table[b]] = static_cast<unsigned char>(b);
  }
  auto add_token = [&](const std::string& token) {
    state->ids.emplace(token, static_cast<int>(state->vocabulary.size()));
    state->vocabulary.push_back(token);
  };
  auto order = byte_vocabulary_order();
  for (int b : order) add_token(state->byte_symbol[b]);
  for (int b : order) add_token(state->byte_symbol[b] + kWordEnd);

  std::string content = read_gzip_file(path);
  std::size_t line_number = 0, start = 0, merges = 0;
  while (merges < kMergeCount) {
    if (start >= content.size()) {
      fail_in(path, "has " + std::to_string(merges) + " merges; CLIP's tokenizer needs " + std::to_string(kMergeCount) +
                        " (after the header line)");
    }
    std::size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    std::string line = content.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (line_number == 1) continue;  // a version header, ignored as OpenAI does
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() || line.find(' ', space + 1) != std::string::npos) {
      fail_at(path, line_number, "expected a merge \"first second\", got \"" + line + "\"");
    }
    std::string first = line.substr(0, space), second = line.substr(space + 1);
    if (!state->ids.count(first) || !state->ids.count(second)) {
      fail_at(path, line_number, "merge \"" + line + "\" uses a symbol that no earlier line defines");
    }
    if (!state->merge_rank.emplace(line, static_cast<int>(merges)).second) {
      fail_at(path, line_number, "merge \"" + line + "\" appears twice");
    }
    if (state->ids.count(first + second)) fail_at(path, line_number, "merge \"" + line + "\" makes a token that exists already");
    add_token(first + second);
    ++merges;
  }
  add_token(kStartText);
  add_token(kEndText);
  state->cache[kStartText] = {kStartToken};
  state->cache[kEndText] = {kEndToken};
  return ClipTokenizer(std::move(state));
}

// Byte-pair merges of one pre-token (its bytes already mapped to characters), exactly as
// OpenAI's bpe(): repeatedly merge every occurrence of the best-ranked adjacent pair.
std::vector<int> ClipTokenizer::State::bpe(const std::string& word) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto hit = cache.find(word);
    if (hit != cache.end()) return hit->second;
  }
  std::vector<std::string> symbols;
  for (CodePoint c : decode_utf8(word)) {
    symbols.emplace_back();
    append_utf8(symbols.back(), c);
  }
  symbols.back() += kWordEnd;
  std::string key;
  while (symbols.size() > 1) {
    int best_rank = std::numeric_limits<int>::max();
    std::size_t best = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      key.assign(symbols[i]).append(" ").append(symbols[i + 1]);
      auto rank = merge_rank.find(key);
      if (rank != merge_rank.end() && rank->second < best_rank) best_rank = rank->second, best = i;
    }
    if (best_rank == std::numeric_limits<int>::max()) break;
    std::string first = symbols[best], second = symbols[best + 1];
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (std::size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size() && symbols[i] == first && symbols[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(symbols[i++]);
      }
    }
    symbols = std::move(merged);
  }
  std::vector<int> out;
  out.reserve(symbols.size());
  for (const auto& symbol : symbols) out.push_back(ids.at(symbol));
  std::lock_guard<std::mutex> lock(cache_mutex);
  if (cache.size() >= kCacheLimit) {
    cache.clear();
    cache[kStartText] = {kStartToken};
    cache[kEndText] = {kEndToken};
  }
  cache.emplace(word, out);
  return out;
}

std::string clean_text(const std::string& text) {
  auto code_points = fix_text(text);
  code_points = unescape_html(unescape_html(code_points));
  return encode_utf8(lower(collapse_whitespace(code_points)));
}

std::vector<std::string> pre_tokenize(const std::string& cleaned) {
  std::vector<std::string> out;
  for (const auto& piece : split_pattern(decode_utf8(cleaned))) out.push_back(encode_utf8(piece));
  return out;
}

std::vector<int> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  for (const std::string& piece : pre_tokenize(clean_text(text))) {
    std::string word;
    if (piece == kStartText || piece == kEndText) {
      word = piece;
    } else {
      for (unsigned char b : piece) word += state_->byte_symbol[b];
    }
    auto word_ids = state_->bpe(word);
    ids.insert(ids.end(), word_ids.begin(), word_ids.end());
  }
  return ids;
}

std::vector<int> ClipTokenizer::tokenize(const std::string& text, int context, bool truncate) const {
  if (context < 2) throw Error("context length must be at least 2 (start and end tokens), got " + std::to_string(context));
  std::vector<int> ids{kStartToken};
  auto body = encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(kEndToken);
  if (ids.size() > static_cast<std::size_t>(context)) {
    if (!truncate) {
      throw Error("text is too long for context length " + std::to_string(context) + " (" + std::to_string(ids.size()) +
                  " tokens): \"" + text + "\"");
    }
    ids.resize(static_cast<std::size_t>(context));
    ids.back() = kEndToken;
  }
  return ids;
}

std::string ClipTokenizer::decode(const std::vector<int>& ids) const {
  std::string symbols;
  for (int id : ids) symbols += token(id);
  std::string bytes;
  for (CodePoint c : decode_utf8(symbols)) bytes += static_cast<char>(state_->symbol_byte.at(c));
  std::string text = repair_utf8(bytes);
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    if (text.compare(i, 4, kWordEnd) == 0) {
      out += ' ';
      i += 4;
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::size_t ClipTokenizer::vocabulary_size() const { return state_->vocabulary.size(); }

const std::string& ClipTokenizer::token(int id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= state_->vocabulary.size()) {
    throw Error("token id " + std::to_string(id) + " is outside the CLIP vocabulary (0.." +
                std::to_string(state_->vocabulary.size() - 1) + ")");
  }
  return state_->vocabulary[static_cast<std::size_t>(id)];
}

}  // namespace cprfl::clip
