// Fashion-LT statistics: per-class counts, co-occurrence, outfit lift, items per scene,
// and what is made of them: stats.json (fashion_lt_stats) and the printed summary
// (format_fashion_lt_report).
#include "cprfl/fashion_lt/fashion_lt.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "cprfl/data/class_stats.h"
#include "cprfl/data/list_file.h"

namespace cprfl {
namespace {

int slot_index(OutfitSlot slot) { return static_cast<int>(slot); }

ImageList as_image_list(const FashionLtSplit& split) {
  ImageList list;
  list.source = split.name + ".txt";
  for (std::size_t i = 0; i < split.scenes.size(); ++i)
    list.records.push_back({fashion_lt_image_path(split.name, i), split.scenes[i].labels(), i + 1});
  return list;
}

std::vector<std::string> class_name_list() {
  const auto& names = fashion_mnist_class_names();
  return {names.begin(), names.end()};
}

double rounded(double value) { return std::round(value * 1e4) / 1e4; }

std::int64_t items_used(const FashionLtSplit& split) {
  std::int64_t used = 0;
  for (const auto& scene : split.scenes) used += static_cast<std::int64_t>(scene.items.size());
  return used;
}

nlohmann::json range_json(const SourceRange& range) {
  return {{"split", split_name(range.split)}, {"begin", range.begin}, {"end", range.end}};
}

nlohmann::json split_json(const FashionLtSplit& split) {
  auto counts = class_counts(split);
  auto histogram = items_per_scene(split);
  auto lift = outfit_lift(split);
  nlohmann::json lift_json = nlohmann::json::array();
  for (const auto& row : lift) {
    nlohmann::json values = nlohmann::json::array();
    for (double value : row) values.push_back(rounded(value));
    lift_json.push_back(values);
  }
  std::int64_t labels = 0;
  for (auto count : counts) labels += count;
  nlohmann::json source = range_json(split.source);
  source["items_used"] = items_used(split);
  return {{"num_images", split.scenes.size()},
          {"num_labels", labels},
          {"labels_per_image", rounded(static_cast<double>(labels) / static_cast<double>(split.scenes.size()))},
          {"class_counts", counts},
          {"items_per_image", {{"1", histogram[1]}, {"2", histogram[2]}, {"3", histogram[3]}, {"4", histogram[4]}}},
          {"cooccurrence", cooccurrence_matrix(split)},
          {"outfit_slots", {"top/dress", "trousers", "footwear", "bag"}},
          {"outfit_lift", lift_json},
          {"source", source}};
}

}  // namespace

PerClassScenes class_counts(const FashionLtSplit& split) {
  PerClassScenes counts{};
  for (const auto& scene : split.scenes)
    for (int label : scene.labels()) ++counts[label];
  return counts;
}

std::vector<std::vector<std::int64_t>> cooccurrence_matrix(const FashionLtSplit& split) {
  std::vector<std::vector<std::int64_t>> counts(kFashionMnistClasses, std::vector<std::int64_t>(kFashionMnistClasses));
  for (const auto& scene : split.scenes) {
    auto labels = scene.labels();
    for (int a : labels)
      for (int b : labels) ++counts[a][b];
  }
  return counts;
}

std::vector<std::vector<double>> outfit_lift(const FashionLtSplit& split) {
  std::array<std::array<double, kOutfitSlots>, kOutfitSlots> both{};
  for (const auto& scene : split.scenes) {
    std::array<bool, kOutfitSlots> filled{};
    for (const auto& item : scene.items) filled[slot_index(outfit_slot(item.label))] = true;
    for (int s = 0; s < kOutfitSlots; ++s)
      for (int t = 0; t < kOutfitSlots; ++t)
        if (filled[s] && filled[t]) both[s][t] += 1;
  }
  double n = static_cast<double>(split.scenes.size());
  std::vector<std::vector<double>> lift(kOutfitSlots, std::vector<double>(kOutfitSlots, 0.0));
  for (int s = 0; s < kOutfitSlots; ++s)
    for (int t = 0; t < kOutfitSlots; ++t)
      if (both[s][s] > 0 && both[t][t] > 0) lift[s][t] = n * both[s][t] / (both[s][s] * both[t][t]);
  return lift;
}

std::array<std::int64_t, kOutfitSlots + 1> items_per_scene(const FashionLtSplit& split) {
  std::array<std::int64_t, kOutfitSlots + 1> histogram{};
  for (const auto& scene : split.scenes) ++histogram[std::min<std::size_t>(scene.items.size(), kOutfitSlots)];
  return histogram;
}

nlohmann::json fashion_lt_stats(const FashionLtBenchmark& benchmark, const std::string& fashion_mnist_dir) {
  const FashionLtConfig& config = benchmark.config;
  auto names = class_name_list();
  ClassStats train = compute_class_stats(as_image_list(benchmark.train), names);
  auto test_counts = class_counts(benchmark.test);
  nlohmann::json classes = nlohmann::json::array();
  for (int c = 0; c < kFashionMnistClasses; ++c) {
    classes.push_back({{"id", c},
                       {"name", names[c]},
                       {"train_count", train.counts[c]},
                       {"test_count", test_counts[c]},
                       {"group", group_name(train.groups[c])},
                       {"outfit_slot", outfit_slot_name(outfit_slot(c))}});
  }
  nlohmann::json groups;
  for (Group g : {Group::kHead, Group::kMedium, Group::kTail}) groups[group_name(g)] = train.classes_in(g);
  auto plan_json = [](const SplitPlan& plan) {
    return nlohmann::json{{"class_counts", plan.class_counts}, {"scenes_without_top", plan.scenes_without_top}};
  };
  const SceneLayout& layout = config.layout;
  return {
      {"generator", {{"name", "cprfl make-fashion-lt"}, {"version", kFashionLtVersion}}},
      {"seed", config.seed},
      {"classes", classes},
      {"groups", groups},
      {"thresholds", {{"head_min", train.thresholds.head_min}, {"tail_below", train.thresholds.tail_below}}},
      {"imbalance_ratio", rounded(train.imbalance_ratio())},
      {"train", split_json(benchmark.train)},
      {"test", split_json(benchmark.test)},
      {"sources",
       {{"fashion_mnist_dir", fashion_mnist_dir},
        {"pretraining_pool", range_json(kPretrainingPool)},
        {"train_scenes", range_json(kLtTrainSource)},
        {"test_scenes", range_json(kLtTestSource)}}},
      {"config",
       {{"train", plan_json(config.train)},
        {"test", plan_json(config.test)},
        {"prior", {{"base", config.prior.base}, {"affinity", config.prior.affinity}}},
        {"layout",
         {{"canvas", layout.canvas},
          {"cell", layout.cell},
          {"max_offset", layout.max_offset},
          {"scale_jitter", layout.scale_jitter},
          {"overlap", layout.overlap},
          {"clutter", layout.clutter}}}}},
  };
}

std::string format_fashion_lt_report(const FashionLtBenchmark& benchmark, const std::string& fashion_mnist_dir,
                                     const std::string& out_dir) {
  auto names = class_name_list();
  ClassStats train = compute_class_stats(as_image_list(benchmark.train), names);
  auto test_counts = class_counts(benchmark.test);
  std::ostringstream out;
  char line[512];
  out << "Fashion-LT (seed " << benchmark.config.seed << ", generator version " << kFashionLtVersion << ") in "
      << out_dir << "\n";
  for (const FashionLtSplit* split : {&benchmark.train, &benchmark.test}) {
    std::int64_t labels = 0;
    for (auto count : class_counts(*split)) labels += count;
    auto histogram = items_per_scene(*split);
    std::snprintf(line, sizeof line,
                  "  %-5s %5zu scenes from Fashion-MNIST %s items %lld-%lld (%lld used), %.2f labels per image, "
                  "items per scene 1/2/3/4: %lld/%lld/%lld/%lld\n",
                  split->name.c_str(), split->scenes.size(), split_name(split->source.split),
                  static_cast<long long>(split->source.begin), static_cast<long long>(split->source.end - 1),
                  static_cast<long long>(items_used(*split)),
                  static_cast<double>(labels) / static_cast<double>(split->scenes.size()),
                  static_cast<long long>(histogram[1]), static_cast<long long>(histogram[2]),
                  static_cast<long long>(histogram[3]), static_cast<long long>(histogram[4]));
    out << line;
  }
  out << "  backbone pretraining pool: Fashion-MNIST train items " << kPretrainingPool.begin << "-"
      << kPretrainingPool.end - 1 << " (10 classes, one label each), read in place from " << fashion_mnist_dir
      << "/train-{images-idx3,labels-idx1}-ubyte.gz\n\n";

  std::snprintf(line, sizeof line, "  %2s  %-11s  %6s  %6s  %s\n", "id", "class", "train", "test", "group");
  out << line;
  for (int c = 0; c < kFashionMnistClasses; ++c) {
    std::snprintf(line, sizeof line, "  %2d  %-11s  %6lld  %6lld  %s\n", c, names[c].c_str(),
                  static_cast<long long>(train.counts[c]), static_cast<long long>(test_counts[c]),
                  group_name(train.groups[c]));
    out << line;
  }
  auto [lo, hi] = std::minmax_element(train.counts.begin(), train.counts.end());
  std::snprintf(line, sizeof line,
                "  train n_c from %lld to %lld (imbalance %.1f); head %zu / medium %zu / tail %zu "
                "(head n_c >= %lld, tail n_c < %lld)\n\n",
                static_cast<long long>(*lo), static_cast<long long>(*hi), train.imbalance_ratio(),
                train.classes_in(Group::kHead).size(), train.classes_in(Group::kMedium).size(),
                train.classes_in(Group::kTail).size(), static_cast<long long>(train.thresholds.head_min),
                static_cast<long long>(train.thresholds.tail_below));
  out << line;

  for (const FashionLtSplit* split : {&benchmark.train, &benchmark.test}) {
    auto matrix = cooccurrence_matrix(*split);
    out << "  co-occurrence, " << split->name << " (scenes holding both classes; diagonal = n_c):\n";
    std::snprintf(line, sizeof line, "  %-15s", "");
    out << line;
    for (int c = 0; c < kFashionMnistClasses; ++c) {
      std::snprintf(line, sizeof line, "%5d", c);
      out << line;
    }
    out << "\n";
    for (int a = 0; a < kFashionMnistClasses; ++a) {
      std::snprintf(line, sizeof line, "  %2d %-12s", a, names[a].c_str());
      out << line;
      for (int b = 0; b < kFashionMnistClasses; ++b) {
        std::snprintf(line, sizeof line, "%5lld", static_cast<long long>(matrix[a][b]));
        out << line;
      }
      out << "\n";
    }
    auto lift = outfit_lift(*split);
    out << "  outfit slots together, " << split->name << " (observed / expected if independent):\n";
    std::snprintf(line, sizeof line, "  %-12s", "");
    out << line;
    for (int t = 0; t < kOutfitSlots; ++t) {
      std::snprintf(line, sizeof line, "%10s", outfit_slot_name(static_cast<OutfitSlot>(t)));
      out << line;
    }
    out << "\n";
    for (int s = 0; s < kOutfitSlots; ++s) {
      std::snprintf(line, sizeof line, "  %-12s", outfit_slot_name(static_cast<OutfitSlot>(s)));
      out << line;
      for (int t = 0; t < kOutfitSlots; ++t) {
        if (s == t) std::snprintf(line, sizeof line, "%10s", "-");
        else std::snprintf(line, sizeof line, "%10.2f", lift[s][t]);
        out << line;
      }
      out << "\n";
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace cprfl
