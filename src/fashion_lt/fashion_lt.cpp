// Fashion-LT, planning and drawing: which items each scene holds and where (plan_fashion_lt),
// and the pixels of one scene (render_scene). The statistics and the report are in
// fashion_lt_report.cpp, the files in fashion_lt_write.cpp.
#include "cprfl/fashion_lt/fashion_lt.h"

#include <algorithm>
#include <limits>
#include <random>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "cprfl/common/error.h"

namespace cprfl {
namespace {

// Class ids, for the prior table.
enum : int { kTshirt, kTrouser, kPullover, kDress, kCoat, kSandal, kShirt, kSneaker, kBag, kAnkleBoot };

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
PerClassScenes loose_items(const SplitPlan& plan) {
  std::int64_t others = 0;
  for (int c = 0; c < kFashionMnistClasses; ++c)
    if (outfit_slot(c) != OutfitSlot::kTop) others += plan.class_counts[c];
  PerClassScenes loose{};
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
  PerClassScenes loose = loose_items(plan);
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

}  // namespace cprfl
