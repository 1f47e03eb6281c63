#pragma once
// Per-class training counts (ClassCounts, ClassStats) and the head / medium / tail split used
// by every long-tail benchmark: head n_c >= head_min, tail n_c < tail_below, medium in between.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cprfl/data/list_file.h"

namespace cprfl {

enum class Group { kHead, kMedium, kTail };
const char* group_name(Group group);  // "head", "medium", "tail"

struct GroupThresholds {
  std::int64_t head_min = 100;   // n_c >= head_min  -> head
  std::int64_t tail_below = 20;  // n_c <  tail_below -> tail
};

Group group_of(std::int64_t count, const GroupThresholds& thresholds);

// The training-set label counts the class-aware losses (DB, CB) need: n_c per class and N.
struct ClassCounts {
  std::vector<std::int64_t> counts;  // n_c: training images containing class c
  std::int64_t num_images = 0;       // N: training images
};

struct ClassStats {
  std::vector<std::string> names;
  std::vector<std::int64_t> counts;  // n_c: images whose labels contain class c
  std::vector<Group> groups;
  std::int64_t num_images = 0;       // N
  std::int64_t num_labels = 0;       // sum over images of their label count
  std::int64_t images_without_labels = 0;
  GroupThresholds thresholds;

  std::vector<int> classes_in(Group group) const;
  double labels_per_image() const;
  double imbalance_ratio() const;  // max n_c / min n_c over classes with n_c > 0
};

ClassStats compute_class_stats(const ImageList& list, const std::vector<std::string>& names,
                               const GroupThresholds& thresholds = {});

// Groups from given counts (e.g. the counts stored in a model file).
std::vector<Group> groups_from_counts(const std::vector<std::int64_t>& counts, const GroupThresholds& thresholds);

nlohmann::json to_json(const ClassStats& stats);
// A readable table: one row per class (id, name, n_c, group), then the group summary.
std::string format_table(const ClassStats& stats);

}  // namespace cprfl
