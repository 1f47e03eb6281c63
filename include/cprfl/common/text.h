#pragma once
// Small text helpers shared by the parsers.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cprfl {

// Splits on runs of spaces and tabs; no empty tokens.
std::vector<std::string_view> split_whitespace(std::string_view line);
// Removes leading/trailing spaces, tabs, CR and LF.
std::string_view trim(std::string_view text);
// A whole-token base-10 integer, or nothing (no sign games: "+3", "3x", "" are rejected).
std::optional<std::int64_t> parse_int(std::string_view token);
// Reads a whole text file; throws cprfl::Error naming the path if it cannot be opened.
std::string read_text_file(const std::string& path);
// Splits text into lines, dropping a trailing CR on each (CRLF files read like LF files).
std::vector<std::string_view> split_lines(std::string_view text);
// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF). Names and settings stored in model files must be: JSON holds only UTF-8.
bool is_valid_utf8(std::string_view text);

// Levenshtein distance (insertions, deletions, substitutions), for "did you mean" messages.
std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace cprfl
