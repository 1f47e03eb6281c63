#include <gtest/gtest.h>
#include <zlib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cprfl/clip/token_tensor.h"
#include "cprfl/clip/tokenizer.h"
#include "cprfl/common/error.h"
#include "test_support.h"

using namespace cprfl::clip;
using cprfl::testing::error_of;
using cprfl::testing::TempDir;

namespace {

const ClipTokenizer& tokenizer() {
  static const ClipTokenizer shared = ClipTokenizer::load();
  return shared;
}

void write_gzip(const std::string& path, const std::string& text) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(gzwrite(file, text.data(), static_cast<unsigned>(text.size())), static_cast<int>(text.size()));
  gzclose(file);
}

}  // namespace

// Ids from OpenAI's clip.tokenize (start and end tokens included).
TEST(ClipTokenizer, MatchesOpenAiIds) {
  struct Case {
    std::string text;
    std::vector<int> ids;
  };
  std::vector<Case> cases = {
      {"a photo of a cat.", {49406, 320, 1125, 539, 320, 2368, 269, 49407}},
      {"a photo of a traffic light.", {49406, 320, 1125, 539, 320, 3399, 1395, 269, 49407}},
      {"A Photo Of A TV-Monitor!!", {49406, 320, 1125, 539, 320, 1583, 268, 10198, 748, 49407}},
      {"it's a teddy_bear", {49406, 585, 568, 320, 11798, 318, 4298, 49407}},
      {"3.14159 and 42", {49406, 274, 269, 272, 275, 272, 276, 280, 537, 275, 273, 49407}},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(tokenizer().tokenize(c.text), c.ids) << c.text;
    std::vector<int> body(c.ids.begin() + 1, c.ids.end() - 1);
    EXPECT_EQ(tokenizer().encode(c.text), body) << c.text;
  }
}

TEST(ClipTokenizer, VocabularyLayout) {
  EXPECT_EQ(tokenizer().vocabulary_size(), 49408u);
  EXPECT_EQ(static_cast<int>(tokenizer().vocabulary_size()), kVocabularySize);
  EXPECT_EQ(tokenizer().token(0), "!");              // bytes_to_unicode starts at '!'
  EXPECT_EQ(tokenizer().token(320), "a</w>");        // 256 + index of 'a'
  EXPECT_EQ(tokenizer().token(512), "in");           // the first merge
  EXPECT_EQ(tokenizer().token(kStartToken), "<|startoftext|>");
  EXPECT_EQ(tokenizer().token(kEndToken), "<|endoftext|>");
  EXPECT_NE(error_of([] { tokenizer().token(49408); }).find("outside the CLIP vocabulary"), std::string::npos);
  EXPECT_NE(error_of([] { tokenizer().decode({-1}); }).find("-1"), std::string::npos);
}

TEST(ClipTokenizer, DecodeRoundTrip) {
  for (std::string text : {"a photo of a cat", "two dogs playing in the snow", "café naïve"}) {
    EXPECT_EQ(tokenizer().decode(tokenizer().encode(text)), text + " ");  // every word ends in </w>
  }
  EXPECT_EQ(tokenizer().decode(tokenizer().encode("A  Photo, of a CAT")), "a photo , of a cat ");
  EXPECT_EQ(tokenizer().decode(tokenizer().tokenize("a cat")), "<|startoftext|>a cat <|endoftext|>");
  // A lone UTF-8 lead byte (the byte token of 0xC3) decodes to U+FFFD, as errors="replace".
  EXPECT_EQ(tokenizer().token(127), "\xC3\x83");
  EXPECT_EQ(tokenizer().decode({127}), "\xEF\xBF\xBD");
}

TEST(ClipTokenizer, NonAsciiLettersStayOnePreToken) {
  auto pieces = pre_tokenize(clean_text("Café NAÏVE Ελληνικά Привет 東京"));
  EXPECT_EQ(pieces, (std::vector<std::string>{"café", "naïve", "ελληνικά", "привет", "東京"}));
  // Decomposed input is NFC-normalised first (as ftfy does): the same ids as precomposed.
  EXPECT_EQ(tokenizer().encode("cafe\xCC\x81"), tokenizer().encode("caf\xC3\xA9"));
  // Python's lower(): final sigma, and İ → i + combining dot.
  EXPECT_EQ(clean_text("ΟΔΟΣ ΣΟΦΟΣ"), "οδος σοφος");
  EXPECT_EQ(clean_text("\xC4\xB0"), "i\xCC\x87");
  // Numbers split into single characters, any script; other symbols stay together.
  EXPECT_EQ(pre_tokenize("٣٤ x²"), (std::vector<std::string>{"٣", "٤", "x", "²"}));
  EXPECT_EQ(pre_tokenize("we'll they're i'd ?!'s"),
            (std::vector<std::string>{"we", "'ll", "they", "'re", "i", "'d", "?!'", "s"}));
  EXPECT_NE(error_of([] { tokenizer().encode("bad \xFF byte"); }).find("not valid UTF-8"), std::string::npos);
}

TEST(ClipTokenizer, CleansWhitespaceQuotesAndEntities) {
  EXPECT_EQ(clean_text("  a \t\n b\xC2\xA0\xE2\x80\x83"
                       "c  "),
            "a b c");
  EXPECT_EQ(tokenizer().encode(" a\n\nphoto   of\ta cat. "), tokenizer().encode("a photo of a cat."));
  EXPECT_EQ(clean_text("&amp;amp; &lt;b&gt; &quot;x&#39; &#x41;&nbsp;z"), "& <b> \"x' a z");
  EXPECT_EQ(clean_text("&zzz; & &#; &#x;"), "&zzz; & &#; &#x;");  // not entities: left alone
  EXPECT_EQ(tokenizer().encode("it\xE2\x80\x99s"), tokenizer().encode("it's"));  // curly quote
  EXPECT_EQ(tokenizer().encode("<|startoftext|>"), (std::vector<int>{kStartToken}));
}

TEST(ClipTokenizer, TruncatesKeepingEndTokenLast) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "cat ";
  auto ids = tokenizer().tokenize(text);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), kStartToken);
  EXPECT_EQ(ids.back(), kEndToken);
  EXPECT_EQ(ids[75], tokenizer().encode("cat").at(0));
  EXPECT_EQ(tokenizer().tokenize(text, 10).size(), 10u);
  EXPECT_NE(error_of([&] { tokenizer().tokenize(text, 77, false); }).find("too long for context length 77"),
            std::string::npos);
  EXPECT_NE(error_of([] { tokenizer().tokenize("a", 1); }).find("at least 2"), std::string::npos);

  auto padded = pad_tokens(tokenizer().tokenize("a photo of a cat."));
  EXPECT_EQ(padded.sizes(), (std::vector<int64_t>{77}));
  EXPECT_EQ(padded.scalar_type(), torch::kInt64);
  EXPECT_EQ(padded[7].item<int64_t>(), kEndToken);
  EXPECT_EQ(padded.slice(0, 8).abs().sum().item<int64_t>(), 0);
  auto batch = tokenize_batch(tokenizer(), {"a photo of a cat.", text});
  EXPECT_EQ(batch.sizes(), (std::vector<int64_t>{2, 77}));
  EXPECT_EQ(batch[1][76].item<int64_t>(), kEndToken);
  EXPECT_TRUE(batch[0].equal(padded));
}

TEST(ClipTokenizer, BrokenVocabularyFilesNameFileAndLine) {
  TempDir dir;
  std::string missing = dir.file("missing.txt.gz");
  EXPECT_NE(error_of([&] { ClipTokenizer::load(missing); }).find(missing), std::string::npos);

  std::string bad_line = dir.file("bad_line.txt.gz");
  write_gzip(bad_line, "#version: 0.2\ni n\nt h e\n");
  EXPECT_NE(error_of([&] { ClipTokenizer::load(bad_line); }).find(bad_line + ":3: expected a merge"), std::string::npos);

  std::string unknown = dir.file("unknown.txt.gz");
  write_gzip(unknown, "#version: 0.2\ni n\nzz q\n");
  EXPECT_NE(error_of([&] { ClipTokenizer::load(unknown); }).find(unknown + ":3:"), std::string::npos);

  std::string short_file = dir.file("short.txt.gz");
  write_gzip(short_file, "#version: 0.2\ni n\nt h\n");
  EXPECT_NE(error_of([&] { ClipTokenizer::load(short_file); }).find("has 2 merges"), std::string::npos);

  std::string not_gzip = dir.file("corrupt.txt.gz");
  cprfl::testing::write_text(not_gzip, std::string("\x1f\x8b\x08\x00garbage", 12));
  EXPECT_NE(error_of([&] { ClipTokenizer::load(not_gzip); }).find(not_gzip), std::string::npos);
}

TEST(ClipTokenizer, Cli) {
  std::string vocab = default_vocab_path();
  auto plain = cprfl::testing::run_cprfl("tokenize 'a photo of a cat.' 'it'\"'\"'s a teddy_bear' --vocab " + vocab);
  EXPECT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_EQ(plain.output, "49406 320 1125 539 320 2368 269 49407\n49406 585 568 320 11798 318 4298 49407\n");

  auto json = cprfl::testing::run_cprfl("tokenize 'a photo of a cat.' --json --vocab " + vocab);
  ASSERT_EQ(json.exit_code, 0) << json.output;
  auto parsed = nlohmann::json::parse(json.output);
  EXPECT_EQ(parsed.at(0).at("text"), "a photo of a cat.");
  EXPECT_EQ(parsed.at(0).at("ids").get<std::vector<int>>(), (std::vector<int>{49406, 320, 1125, 539, 320, 2368, 269, 49407}));

  auto cut = cprfl::testing::run_cprfl("tokenize 'a photo of a cat.' --context 4 --vocab " + vocab);
  EXPECT_EQ(cut.output, "49406 320 1125 49407\n");

  auto missing = cprfl::testing::run_cprfl("tokenize 'a cat' --vocab /nonexistent/vocab.txt.gz");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("error: /nonexistent/vocab.txt.gz"), std::string::npos) << missing.output;
}
