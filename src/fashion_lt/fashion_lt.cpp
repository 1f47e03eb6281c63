#include "cprfl/fashion_lt/fashion_lt.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <limits>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cprfl/common/error.h"
#include "cprfl/common/progress.h"
#include "cprfl/data/class_stats.h"
#include "cprfl/io/atomic_file.h"

namespace cprfl {
namespace {

// Class ids, for the prior table.
enum : int { kTshirt, kTrouser, kPullover, kDress, kCoat, kSandal, kShirt, kSneaker, kBag, kAnkleBoot };

constexpr int kPngCompression = 6;  // fixed, so the same scene always gives the same bytes

// mt19937_64's output sequence is fixed by the C++ standard; the distributions in <random>
// are not, so the integer sampling and shuffling here are our own.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}

  // Uniform in [0, n), n > 0, without modulo bias.
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t limit = max - max % n;
    std::uint64_t x;
    do x = engine_();
    while (x >= limit);
    return x % n;
  }
  // Uniform in [lo, hi].
  int between(int lo, int hi) { return lo + static_cast<int>(below(static_cast<std::uint64_t>(hi - lo) + 1)); }

  template <typename T>
  void shuffle(std::vector<T>& values) {
    for (std::size_t i = values.size(); i > 1; --i) std::swap(values[i - 1], values[below(i)]);
  }

 private:
  std::mt19937_64 engine_;
};

// SplitMix64 finaliser: independent seeds for independent streams.
std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a + 0x9e3779b97f4a7c15ULL * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Separate streams: the layout knobs change where items sit, never which items a scene holds.
enum Stream : std::uint64_t { kComposition = 1, kGeometry = 2, kNoise = 3 };

std::uint64_t stream_seed(std::uint64_t seed, int split, Stream stream) { return mix(mix(seed, split), stream); }

// Scenes as slot contents (class id or -1), before layout.
using SlotContents = std::array<int, kOutfitSlots>;

int slot_index(OutfitSlot slot) { return static_cast<int>(slot); }

// How many of the loose-item scenes each trousers/footwear/bag class fills: in proportion
// to its count (largest remainder, ties to the lower id). Then every slot is as common
// among loose scenes as overall, so each co-occurs with a top more than chance whenever
// these items outnumber the scenes.
ClassCounts loose_items(const SplitPlan& plan) {
  std::int64_t others = 0;
  for (int c = 0; c < kFashionMnistClasses; ++c)
    if (outfit_slot(c) != OutfitSlot::kTop) others += plan.class_counts[c];
  ClassCounts loose{};
  std::array<std::int64_t, kFashionMnistClasses> remainder{};
  std::int64_t given = 0;
  for (int c = 0; c < kFashionMnistClasses; ++c) {
    if (outfit_slot(c) == OutfitSlot::kTop || others == 0) continue;
    loose[c] = plan.scenes_without_top * plan.class_counts[c] / others;
    remainder[c] = plan.scenes_without_top * plan.class_counts[c] % others;
    given += loose[c];
  }
  for (; given < plan.scenes_without_top; ++given) {
    int best = -1;
    for (int c = 0; c < kFashionMnistClasses; ++c)
      if (outfit_slot(c) != OutfitSlot::kTop && (best < 0 || remainder[c] > remainder[best])) best = c;
    ++loose[best];
    remainder[best] = -1;
  }
  return loose;
}

std::vector<SlotContents> compose_scenes(const SplitPlan& plan, const OutfitPrior& prior, const std::string& split,
                                         Rng& rng) {
  // Scenes [0, tops) have a top or dress; the rest hold one loose item each.
  ClassCounts loose = loose_items(plan);
  std::vector<int> tops, loose_tokens, others;
  for (int c = 0; c < kFashionMnistClasses; ++c) {
    if (outfit_slot(c) == OutfitSlot::kTop) {
      tops.insert(tops.end(), static_cast<std::size_t>(plan.class_counts[c]), c);
    } else {
      loose_tokens.insert(loose_tokens.end(), static_cast<std::size_t>(loose[c]), c);
      others.insert(others.end(), static_cast<std::size_t>(plan.class_counts[c] - loose[c]), c);
    }
  }
  rng.shuffle(tops);
  rng.shuffle(others);

  std::vector<SlotContents> scenes(static_cast<std::size_t>(plan.num_scenes()), SlotContents{-1, -1, -1, -1});
  for (std::size_t i = 0; i < tops.size(); ++i) scenes[i][slot_index(OutfitSlot::kTop)] = tops[i];
  for (std::size_t k = 0; k < loose_tokens.size(); ++k)
    scenes[tops.size() + k][slot_index(outfit_slot(loose_tokens[k]))] = loose_tokens[k];

  // The other items join scenes with a top by the outfit prior: trousers first, then
  // footwear, then bags, so each sees the outfit built so far.
  for (OutfitSlot slot : {OutfitSlot::kTrousers, OutfitSlot::kFootwear, OutfitSlot::kBag}) {
    int s = slot_index(slot);
    for (int label : others) {
      if (outfit_slot(label) != slot) continue;
      std::vector<std::uint64_t> weights(scenes.size(), 0);
      std::uint64_t total = 0;
      for (std::size_t i = 0; i < tops.size(); ++i) {  // the loose-item scenes take nothing more
        if (scenes[i][s] >= 0) continue;
        std::int64_t weight = prior.base;
        for (int present : scenes[i])
          if (present >= 0) weight += prior.affinity[label][present];
        weights[i] = static_cast<std::uint64_t>(std::max<std::int64_t>(0, weight));
        total += weights[i];
      }
      if (total == 0) {
        throw Error("fashion-lt " + split + ": no scene with a top can take another " +
                    fashion_mnist_class_names()[label] + " (its " + outfit_slot_name(slot) +
                    " slot is full or excluded everywhere); lower its count or raise the top/dress counts");
      }
      std::uint64_t pick = rng.below(total);
      std::size_t chosen = 0;
      while (pick >= weights[chosen]) pick -= weights[chosen++];
      scenes[chosen][s] = label;
    }
  }
  rng.shuffle(scenes);
  return scenes;
}

FashionLtSplit plan_split(const std::string& name, int split_id, const FashionMnist& items, const SourceRange& range,
                          const SplitPlan& plan, const FashionLtConfig& config) {
  if (items.split != range.split || range.begin < items.first_index ||
      range.end > items.first_index + items.size()) {
    throw Error("fashion-lt " + name + ": the loaded Fashion-MNIST items do not cover " + split_name(range.split) +
                " items [" + std::to_string(range.begin) + ", " + std::to_string(range.end) + ")");
  }
  Rng composition(stream_seed(config.seed, split_id, kComposition));
  Rng geometry(stream_seed(config.seed, split_id, kGeometry));

  // Each class's source items, in a seeded order; each is used at most once.
  std::array<std::vector<std::int64_t>, kFashionMnistClasses> pools;
  for (std::int64_t i = range.begin; i < range.end; ++i) pools[items.labels[i - items.first_index]].push_back(i);
  for (int c = 0; c < kFashionMnistClasses; ++c) {
    if (plan.class_counts[c] > static_cast<std::int64_t>(pools[c].size())) {
      throw Error("fashion-lt " + name + ": " + std::to_string(plan.class_counts[c]) + " scenes need " +
                  fashion_mnist_class_names()[c] + " items but " + split_name(range.split) + " items [" +
                  std::to_string(range.begin) + ", " + std::to_string(range.end) + ") hold only " +
                  std::to_string(pools[c].size()));
    }
    composition.shuffle(pools[c]);
  }
  std::vector<SlotContents> contents = compose_scenes(plan, config.prior, name, composition);

  const SceneLayout& layout = config.layout;
  const int jitter_px = static_cast<int>(kFashionMnistSide * layout.scale_jitter);
  std::array<std::size_t, kFashionMnistClasses> used{};
  FashionLtSplit split{name, range, {}};
  split.scenes.reserve(contents.size());
  for (std::size_t i = 0; i < contents.size(); ++i) {
    std::vector<int> cells{0, 1, 2, 3};
    geometry.shuffle(cells);
    Scene scene;
    scene.noise_seed = mix(stream_seed(config.seed, split_id, kNoise), i);
    for (int s = 0; s < kOutfitSlots; ++s) {
      int label = contents[i][s];
      if (label < 0) continue;
      SceneItem item;
      item.label = label;
      item.source_index = pools[label][used[label]++];
      item.size = kFashionMnistSide - (jitter_px ? geometry.between(0, jitter_px) : 0);
      int slack = layout.max_offset + (kFashionMnistSide - item.size);
      int cell = cells[static_cast<std::size_t>(s)];
      item.x = (cell % 2) * layout.cell + geometry.between(-layout.overlap, slack + layout.overlap);
      item.y = (cell / 2) * layout.cell + geometry.between(-layout.overlap, slack + layout.overlap);
      scene.items.push_back(item);
    }
    split.scenes.push_back(std::move(scene));
  }
  return split;
}

std::string image_path(const std::string& split, std::size_t index) {
  char name[64];
  std::snprintf(name, sizeof name, "images/%s/%06zu.png", split.c_str(), index);
  return name;
}

std::string list_text(const FashionLtSplit& split) {
  std::string text;
  for (std::size_t i = 0; i < split.scenes.size(); ++i) {
    text += image_path(split.name, i);
    for (int label : split.scenes[i].labels()) text += " " + std::to_string(label);
    text += "\n";
  }
  return text;
}

ImageList as_image_list(const FashionLtSplit& split) {
  ImageList list;
  list.source = split.name + ".txt";
  for (std::size_t i = 0; i < split.scenes.size(); ++i)
    list.records.push_back({image_path(split.name, i), split.scenes[i].labels(), i + 1});
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

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) fail_in(path, "cannot write file");
}

}  // namespace

OutfitSlot outfit_slot(int label) {
  switch (label) {
    case kTrouser: return OutfitSlot::kTrousers;
    case kSandal:
    case kSneaker:
    case kAnkleBoot: return OutfitSlot::kFootwear;
    case kBag: return OutfitSlot::kBag;
    default: return OutfitSlot::kTop;
  }
}

const char* outfit_slot_name(OutfitSlot slot) {
  switch (slot) {
    case OutfitSlot::kTop: return "top/dress";
    case OutfitSlot::kTrousers: return "trousers";
    case OutfitSlot::kFootwear: return "footwear";
    case OutfitSlot::kBag: return "bag";
  }
  return "?";
}

std::int64_t SplitPlan::num_scenes() const {
  std::int64_t scenes = scenes_without_top;
  for (int c = 0; c < kFashionMnistClasses; ++c)
    if (outfit_slot(c) == OutfitSlot::kTop) scenes += class_counts[c];
  return scenes;
}

OutfitPrior default_outfit_prior() {
  OutfitPrior prior;
  auto& a = prior.affinity;
  // Trousers go with tops, never with a dress.
  for (int top : {kTshirt, kPullover, kShirt, kCoat}) a[kTrouser][top] = 4;
  a[kTrouser][kDress] = -1000;
  // Footwear completes trousers (or a dress), each kind with its own tops.
  for (int shoe : {kSneaker, kSandal, kAnkleBoot}) a[shoe][kTrouser] = 8;
  a[kSneaker][kTshirt] = 4, a[kSneaker][kShirt] = 2, a[kSneaker][kPullover] = 1, a[kSneaker][kCoat] = 1;
  a[kSandal][kDress] = 8, a[kSandal][kTshirt] = 3, a[kSandal][kShirt] = 1;
  a[kAnkleBoot][kDress] = 6, a[kAnkleBoot][kCoat] = 6, a[kAnkleBoot][kPullover] = 6, a[kAnkleBoot][kShirt] = 2,
  a[kAnkleBoot][kTshirt] = 1;
  // A bag joins the fullest outfits, dresses and coats most of all.
  for (int c = 0; c < kFashionMnistClasses; ++c) a[kBag][c] = 5;
  for (int shoe : {kSneaker, kSandal, kAnkleBoot}) a[kBag][shoe] = 12;
  a[kBag][kDress] = 8, a[kBag][kCoat] = 8, a[kBag][kBag] = 0;
  return prior;
}

void validate(const FashionLtConfig& config) {
  auto bad = [](const std::string& field, const std::string& why) { throw Error("fashion-lt config: " + field + " " + why); };
  const SceneLayout& layout = config.layout;
  if (layout.cell < kFashionMnistSide) bad("layout.cell", "must be at least 28 (an item's side)");
  if (layout.canvas != 2 * layout.cell) bad("layout.canvas", "must be 2 × layout.cell (a 2×2 grid)");
  if (layout.max_offset < 0 || kFashionMnistSide + layout.max_offset > layout.cell)
    bad("layout.max_offset", "must be in [0, cell − 28]");
  if (!(layout.scale_jitter >= 0 && layout.scale_jitter <= 0.5)) bad("layout.scale_jitter", "must be in [0, 0.5]");
  if (layout.overlap < 0 || layout.overlap > layout.cell / 2) bad("layout.overlap", "must be in [0, cell / 2]");
  if (layout.clutter < 0 || layout.clutter > 255) bad("layout.clutter", "must be in [0, 255]");
  if (config.prior.base < 0) bad("prior.base", "must not be negative");
  for (const auto* plan : {&config.train, &config.test}) {
    std::string name = plan == &config.train ? "train" : "test";
    std::int64_t others = 0;
    for (int c = 0; c < kFashionMnistClasses; ++c) {
      if (plan->class_counts[c] < 0) bad(name + ".class_counts[" + std::to_string(c) + "]", "must not be negative");
      if (outfit_slot(c) != OutfitSlot::kTop) others += plan->class_counts[c];
    }
    if (plan->scenes_without_top < 0) bad(name + ".scenes_without_top", "must not be negative");
    if (plan->scenes_without_top > others)
      bad(name + ".scenes_without_top", "exceeds the trousers/footwear/bag items that could fill those scenes");
    if (plan->num_scenes() < 1) bad(name, "has no scenes");
  }
}

std::vector<int> Scene::labels() const {
  std::vector<int> ids;
  for (const auto& item : items) ids.push_back(item.label);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

FashionLtBenchmark plan_fashion_lt(const FashionMnist& train_items, const FashionMnist& test_items,
                                   const FashionLtConfig& config) {
  validate(config);
  FashionLtBenchmark benchmark;
  benchmark.config = config;
  benchmark.train = plan_split("train", 0, train_items, kLtTrainSource, config.train, config);
  benchmark.test = plan_split("test", 1, test_items, kLtTestSource, config.test, config);
  return benchmark;
}

std::vector<std::uint8_t> render_scene(const Scene& scene, const FashionMnist& items, const SceneLayout& layout) {
  const int side = layout.canvas;
  std::vector<std::uint8_t> canvas(static_cast<std::size_t>(side) * side, 0);
  if (layout.clutter > 0) {
    Rng noise(scene.noise_seed);
    for (auto& pixel : canvas) pixel = static_cast<std::uint8_t>(noise.below(layout.clutter + 1));
  }
  for (const auto& item : scene.items) {
    std::int64_t local = item.source_index - items.first_index;
    if (local < 0 || local >= items.size()) {
      throw Error(std::string("fashion-lt: scene item ") + std::to_string(item.source_index) +
                  " is not among the loaded " + split_name(items.split) + " items");
    }
    cv::Mat source(static_cast<int>(items.rows), static_cast<int>(items.cols), CV_8UC1,
                   const_cast<std::uint8_t*>(items.image(local)));
    cv::Mat drawn = source;
    if (item.size != source.cols) cv::resize(source, drawn, cv::Size(item.size, item.size), 0, 0, cv::INTER_AREA);
    // Max-compositing: items are light on black, so overlapping items stay visible.
    for (int r = 0; r < drawn.rows; ++r) {
      int y = item.y + r;
      if (y < 0 || y >= side) continue;
      const std::uint8_t* row = drawn.ptr<std::uint8_t>(r);
      for (int c = 0; c < drawn.cols; ++c) {
        int x = item.x + c;
        if (x < 0 || x >= side) continue;
        auto& pixel = canvas[static_cast<std::size_t>(y) * side + x];
        pixel = std::max(pixel, row[c]);
      }
    }
  }
  return canvas;
}

ClassCounts class_counts(const FashionLtSplit& split) {
  ClassCounts counts{};
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

void write_fashion_lt(const FashionLtBenchmark& benchmark, const FashionMnist& train_items,
                      const FashionMnist& test_items, const std::string& fashion_mnist_dir,
                      const std::string& out_dir, int threads) {
  struct Job {
    const FashionLtSplit* split;
    const FashionMnist* items;
    std::size_t index;
  };
  std::vector<Job> jobs;
  for (auto [split, items] : {std::pair{&benchmark.train, &train_items}, std::pair{&benchmark.test, &test_items}}) {
    make_directories(out_dir + "/images/" + split->name);
    for (std::size_t i = 0; i < split->scenes.size(); ++i) jobs.push_back({split, items, i});
  }

  // PNG encoding is the slow part and each scene is independent: workers take the next
  // job; the main thread draws the progress bar.
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min<int>(threads, static_cast<int>(jobs.size()));
  std::atomic<std::size_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    const std::vector<int> png_params{cv::IMWRITE_PNG_COMPRESSION, kPngCompression};
    try {
      while (!failed) {
        std::size_t j = next++;
        if (j >= jobs.size()) break;
        const Job& job = jobs[j];
        auto pixels = render_scene(job.split->scenes[job.index], *job.items, benchmark.config.layout);
        int side = benchmark.config.layout.canvas;
        cv::Mat image(side, side, CV_8UC1, pixels.data());
        std::vector<std::uint8_t> png;
        std::string path = out_dir + "/" + image_path(job.split->name, job.index);
        if (!cv::imencode(".png", image, png, png_params)) fail_in(path, "PNG encoding failed");
        write_bytes(path, png);
        ++done;
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  {
    ProgressBar bar("fashion-lt scenes", static_cast<std::int64_t>(jobs.size()), "img");
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) workers.emplace_back(work);
    while (done < jobs.size() && !failed) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      bar.update(static_cast<std::int64_t>(done.load()));
    }
    for (auto& worker : workers) worker.join();
    if (error) std::rethrow_exception(error);
    bar.finish();
  }

  std::string labels;
  for (const auto& name : fashion_mnist_class_names()) labels += name + "\n";
  write_file_atomic(out_dir + "/labels.txt", labels);
  write_file_atomic(out_dir + "/train.txt", list_text(benchmark.train));
  write_file_atomic(out_dir + "/test.txt", list_text(benchmark.test));
  write_file_atomic(out_dir + "/stats.json", fashion_lt_stats(benchmark, fashion_mnist_dir).dump(2) + "\n");
}

FashionLtBenchmark build_fashion_lt(const std::string& fashion_mnist_dir, const std::string& out_dir,
                                    const FashionLtConfig& config, int threads) {
  validate(config);
  FashionMnist train = load_fashion_mnist(fashion_mnist_dir, FashionSplit::kTrain);
  FashionMnist test = load_fashion_mnist(fashion_mnist_dir, FashionSplit::kTest);
  FashionLtBenchmark benchmark = plan_fashion_lt(train, test, config);
  make_directories(out_dir);
  write_fashion_lt(benchmark, train, test, fashion_mnist_dir, out_dir, threads);
  return benchmark;
}

}  // namespace cprfl
