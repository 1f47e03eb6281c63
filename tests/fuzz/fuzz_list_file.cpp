// Benchmark list files and labels files (data/list_file.h): every input goes to both readers.
#include <set>

#include "cprfl/common/error.h"
#include "cprfl/common/text.h"
#include "cprfl/data/list_file.h"
#include "fuzz_support.h"

namespace cprfl::fuzz {

void fuzz_one(std::string_view bytes) {
  const std::string& path = scratch_file(bytes, ".txt");
  constexpr int kClasses = 20;
  try {
    ImageList list = read_image_list(path, kClasses);
    if (list.records.empty()) invariant_failed("a list was read without records");
    for (const auto& record : list.records) {
      if (record.path.empty()) invariant_failed("a record without a path on line " + std::to_string(record.line));
      std::set<int> seen;
      for (int id : record.labels)
        if (id < 0 || id >= kClasses || !seen.insert(id).second) invariant_failed("a bad label id was accepted");
    }
  } catch (const Error&) {
  }
  std::vector<std::string> names = read_labels(path);
  if (names.empty()) invariant_failed("a labels file was read without classes");
  for (const auto& name : names)
    if (name.empty() || !is_valid_utf8(name)) invariant_failed("an empty or non-UTF-8 class name was accepted");
}

}  // namespace cprfl::fuzz
