#include "cprfl/data/list_file.h"

#include <algorithm>
#include <map>
#include <set>

#include "cprfl/common/error.h"
#include "cprfl/common/text.h"

namespace cprfl {
namespace {

bool all_digits(std::string_view token) {
  std::size_t start = (!token.empty() && token[0] == '-') ? 1 : 0;
  if (start == token.size()) return false;
  return std::all_of(token.begin() + start, token.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int parse_label_id(std::string_view token, int num_classes, const std::string& path, std::size_t line) {
  std::string shown(token);
  if (!all_digits(token)) fail_at(path, line, "label '" + shown + "' is not an integer class id");
  auto value = parse_int(token);
  if (!value || *value < 0 || *value >= num_classes) {
    fail_at(path, line,
            "label id " + shown + " is out of range [0, " + std::to_string(num_classes) + ") — the labels file has " +
                std::to_string(num_classes) + " classes");
  }
  return static_cast<int>(*value);
}

}  // namespace

ImageList read_image_list(const std::string& path, int num_classes) {
  if (num_classes <= 0) fail_in(path, "cannot read a list without classes (num_classes = " + std::to_string(num_classes) + ")");
  std::string text = read_text_file(path);
  ImageList list;
  list.source = path;
  auto lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = trim(lines[i]);
    if (line.empty()) continue;
    ImageRecord record;
    record.line = i + 1;
    std::string_view rest;
    if (std::size_t tab = line.find('\t'); tab != std::string_view::npos) {
      record.path = std::string(trim(line.substr(0, tab)));
      rest = line.substr(tab + 1);
    } else {
      std::size_t space = line.find(' ');
      record.path = std::string(line.substr(0, space));
      rest = space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
    }
    std::set<int> seen;
    for (std::string_view token : split_whitespace(rest)) {
      int id = parse_label_id(token, num_classes, path, record.line);
      if (!seen.insert(id).second) fail_at(path, record.line, "label id " + std::to_string(id) + " appears twice");
      record.labels.push_back(id);
    }
    list.records.push_back(std::move(record));
  }
  if (list.records.empty()) fail_in(path, "the list is empty (no image lines)");
  return list;
}

std::vector<std::string> read_labels(const std::string& path) {
  std::string text = read_text_file(path);
  struct Entry { std::string name; std::size_t line; };
  std::vector<Entry> plain;
  std::map<std::int64_t, Entry> numbered;
  auto lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = trim(lines[i]);
    if (line.empty()) continue;
    auto tokens = split_whitespace(line);
    std::optional<std::int64_t> id = tokens.size() >= 2 ? parse_int(tokens.back()) : std::nullopt;
    if (id) {
      std::string_view name = trim(line.substr(0, line.size() - tokens.back().size()));
      if (*id < 0) fail_at(path, i + 1, "class id " + std::to_string(*id) + " is negative");
      if (numbered.count(*id)) {
        fail_at(path, i + 1, "class id " + std::to_string(*id) + " was already given on line " +
                                 std::to_string(numbered[*id].line));
      }
      numbered[*id] = Entry{std::string(name), i + 1};
    } else {
      plain.push_back(Entry{std::string(line), i + 1});
    }
  }
  if (!plain.empty() && !numbered.empty()) {
    fail_at(path, plain.front().line, "mixes `name` lines with `name id` lines; use one form throughout");
  }
  std::vector<Entry> entries = plain;
  if (!numbered.empty()) {
    std::int64_t expected = 0;
    for (auto& [id, entry] : numbered) {
      if (id != expected) {
        fail_at(path, entry.line, "class ids must be 0.." + std::to_string(numbered.size() - 1) + " without gaps; id " +
                                      std::to_string(expected) + " is missing");
      }
      entries.push_back(entry);
      ++expected;
    }
  }
  if (entries.empty()) fail_in(path, "the labels file is empty (no class names)");
  std::map<std::string, std::size_t> first_line;
  std::vector<std::string> names;
  for (auto& entry : entries) {
    if (!is_valid_utf8(entry.name))  // names are stored as JSON in model files
      fail_at(path, entry.line, "class name is not valid UTF-8 text (save the labels file as UTF-8)");
    auto [it, inserted] = first_line.emplace(entry.name, entry.line);
    // The published COCO-LT labels file truncates names ("baseball" twice), so a repeat is
    // a warning: ids, not names, identify classes.
    if (!inserted) {
      warn(path + ":" + std::to_string(entry.line) + ": class name '" + entry.name + "' repeats line " +
           std::to_string(it->second));
    }
    names.push_back(entry.name);
  }
  return names;
}

std::string resolve_image_path(const std::string& root, const std::string& relative) {
  if (root.empty() || (!relative.empty() && relative[0] == '/')) return relative;
  if (root.back() == '/') return root + relative;
  return root + "/" + relative;
}

}  // namespace cprfl
