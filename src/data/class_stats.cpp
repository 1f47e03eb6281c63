#include "cprfl/data/class_stats.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "cprfl/common/error.h"

namespace cprfl {

const char* group_name(Group group) {
  switch (group) {
    case Group::kHead: return "head";
    case Group::kMedium: return "medium";
    case Group::kTail: return "tail";
  }
  return "?";
}

Group group_of(std::int64_t count, const GroupThresholds& thresholds) {
  if (count >= thresholds.head_min) return Group::kHead;
  if (count < thresholds.tail_below) return Group::kTail;
  return Group::kMedium;
}

std::vector<Group> groups_from_counts(const std::vector<std::int64_t>& counts, const GroupThresholds& thresholds) {
  if (thresholds.tail_below > thresholds.head_min) {
    throw Error("group thresholds: tail bound (" + std::to_string(thresholds.tail_below) +
                ") must not exceed the head bound (" + std::to_string(thresholds.head_min) + ")");
  }
  std::vector<Group> groups;
  for (auto count : counts) groups.push_back(group_of(count, thresholds));
  return groups;
}

std::vector<int> ClassStats::classes_in(Group group) const {
  std::vector<int> ids;
  for (std::size_t c = 0; c < groups.size(); ++c)
    if (groups[c] == group) ids.push_back(static_cast<int>(c));
  return ids;
}

double ClassStats::labels_per_image() const {
  return num_images ? static_cast<double>(num_labels) / static_cast<double>(num_images) : 0.0;
}

double ClassStats::imbalance_ratio() const {
  std::int64_t lo = 0, hi = 0;
  for (auto count : counts) {
    if (count <= 0) continue;
    lo = lo ? std::min(lo, count) : count;
    hi = std::max(hi, count);
  }
  return lo ? static_cast<double>(hi) / static_cast<double>(lo) : 0.0;
}

ClassStats compute_class_stats(const ImageList& list, const std::vector<std::string>& names,
                               const GroupThresholds& thresholds) {
  ClassStats stats;
  stats.names = names;
  stats.thresholds = thresholds;
  stats.counts.assign(names.size(), 0);
  for (const auto& record : list.records) {
    ++stats.num_images;
    stats.num_labels += static_cast<std::int64_t>(record.labels.size());
    if (record.labels.empty()) ++stats.images_without_labels;
    for (int id : record.labels) {
      if (id < 0 || id >= static_cast<int>(names.size())) {
        fail_at(list.source, record.line, "label id " + std::to_string(id) + " is out of range for " +
                                              std::to_string(names.size()) + " classes");
      }
      ++stats.counts[id];
    }
  }
  stats.groups = groups_from_counts(stats.counts, thresholds);
  return stats;
}

nlohmann::json to_json(const ClassStats& stats) {
  nlohmann::json classes = nlohmann::json::array();
  for (std::size_t c = 0; c < stats.names.size(); ++c) {
    classes.push_back({{"id", c}, {"name", stats.names[c]}, {"train_count", stats.counts[c]},
                       {"group", group_name(stats.groups[c])}});
  }
  nlohmann::json groups;
  for (Group g : {Group::kHead, Group::kMedium, Group::kTail}) groups[group_name(g)] = stats.classes_in(g);
  auto [lo, hi] = std::minmax_element(stats.counts.begin(), stats.counts.end());
  return {{"num_images", stats.num_images},
          {"num_classes", stats.names.size()},
          {"num_labels", stats.num_labels},
          {"labels_per_image", stats.labels_per_image()},
          {"images_without_labels", stats.images_without_labels},
          {"min_count", *lo},
          {"max_count", *hi},
          {"imbalance_ratio", stats.imbalance_ratio()},
          {"thresholds", {{"head_min", stats.thresholds.head_min}, {"tail_below", stats.thresholds.tail_below}}},
          {"group_sizes",
           {{"head", stats.classes_in(Group::kHead).size()},
            {"medium", stats.classes_in(Group::kMedium).size()},
            {"tail", stats.classes_in(Group::kTail).size()}}},
          {"groups", groups},
          {"classes", classes}};
}

std::string format_table(const ClassStats& stats) {
  std::ostringstream out;
  std::size_t width = 5;
  for (const auto& name : stats.names) width = std::max(width, name.size());
  char buffer[512];
  std::snprintf(buffer, sizeof buffer, "%4s  %-*s  %7s  %s\n", "id", static_cast<int>(width), "class", "n_c", "group");
  out << buffer;
  for (std::size_t c = 0; c < stats.names.size(); ++c) {
    std::snprintf(buffer, sizeof buffer, "%4zu  %-*s  %7lld  %s\n", c, static_cast<int>(width), stats.names[c].c_str(),
                  static_cast<long long>(stats.counts[c]), group_name(stats.groups[c]));
    out << buffer;
  }
  auto [lo, hi] = std::minmax_element(stats.counts.begin(), stats.counts.end());
  out << "\nimages N = " << stats.num_images << ", classes C = " << stats.names.size()
      << ", labels per image = " << stats.labels_per_image() << ", images without labels = "
      << stats.images_without_labels << "\n";
  out << "n_c from " << *lo << " to " << *hi << " (imbalance " << stats.imbalance_ratio() << ")\n";
  out << "groups (head n_c >= " << stats.thresholds.head_min << ", tail n_c < " << stats.thresholds.tail_below
      << "): head " << stats.classes_in(Group::kHead).size() << " / medium " << stats.classes_in(Group::kMedium).size()
      << " / tail " << stats.classes_in(Group::kTail).size() << "\n";
  return out.str();
}

}  // namespace cprfl
