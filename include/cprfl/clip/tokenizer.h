#pragma once
// OpenAI CLIP's byte-level BPE tokenizer (clip/simple_tokenizer.py and clip.tokenize),
// reimplemented so that prompts get the same ids as in the original code.
//
// Text clean-up follows OpenAI's basic_clean/whitespace_clean/lower. ftfy is not available, so
// only the parts of ftfy.fix_text that matter for ordinary captions are done: NFC
// normalisation and curly quotes to straight ones. HTML entities: the common named ones
// (&amp; &lt; &gt; &quot; &apos; &nbsp;) and numeric ones, unescaped twice as OpenAI does.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace cprfl::clip {

constexpr int kVocabularySize = 49408;
constexpr int kStartToken = 49406;  // <|startoftext|>
constexpr int kEndToken = 49407;    // <|endoftext|>
constexpr int kContextLength = 77;

// The merges file shipped with cprfl (data/clip/, found as common/shipped_data.h says).
std::string default_vocab_path();

class ClipTokenizer {
 public:
  // Reads the gzip'd merges file (a plain text file works too). A missing file, a bad line
  // or too few merges throw cprfl::Error naming the file (and line).
  static ClipTokenizer load(const std::string& path = default_vocab_path());

  ClipTokenizer(ClipTokenizer&&) noexcept;
  ClipTokenizer& operator=(ClipTokenizer&&) noexcept;
  ~ClipTokenizer();

  // BPE ids of the cleaned text, without start/end tokens. Text must be UTF-8.
  std::vector<int> encode(const std::string& text) const;
  // clip.tokenize for one text, unpadded: start + encode(text) + end. Longer than `context`:
  // cut to `context` ids with the end token last, or an error when truncate is false.
  std::vector<int> tokenize(const std::string& text, int context = kContextLength, bool truncate = true) const;
  // Ids back to text: "</w>" word ends become spaces, bad UTF-8 becomes U+FFFD (as OpenAI).
  std::string decode(const std::vector<int>& ids) const;

  std::size_t vocabulary_size() const;
  // The token string of an id (byte-level characters, "</w>" word ends).
  const std::string& token(int id) const;

 private:
  struct State;
  explicit ClipTokenizer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The pieces of the pipeline, exposed for tests and for callers that need them.
// basic_clean + whitespace_clean + lower, as OpenAI's encode does before splitting.
std::string clean_text(const std::string& text);
// The pre-tokenisation pattern of OpenAI's tokenizer applied to cleaned text.
std::vector<std::string> pre_tokenize(const std::string& cleaned);

}  // namespace cprfl::clip
