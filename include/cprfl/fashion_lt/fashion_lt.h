#pragma once
// Fashion-LT: the on-machine long-tailed multi-label benchmark, built from Fashion-MNIST.
//
// A scene is a 64×64 greyscale canvas (black, like Fashion-MNIST) cut into a 2×2 grid of
// 32×32 cells; it holds 1–4 items (28×28, a small random offset inside their cell) and its
// labels are the classes present. Scenes are composed from outfit slots — a top or a dress,
// trousers, footwear, a bag — so the slots co-occur more than chance, and each class
// appears in an exact, chosen number of scenes: a long tail from 800 down to 6 in train
// (head T-shirt/top, Trouser, Sneaker, Bag; medium Pullover, Dress, Ankle boot; tail
// Shirt, Sandal, Coat), at least 300 per class in test.
//
// Sources never mix and no item is used twice: train scenes draw only from Fashion-MNIST
// train items 50,000–59,999, test scenes only from t10k; train items 0–49,999 are kept for
// backbone pretraining. Everything follows from the seed: the same seed and config give
// byte-identical list files, stats and PNGs (mt19937_64 with our own integer sampling and
// shuffling, whose results do not depend on the standard library).
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cprfl/fashion_lt/fashion_mnist.h"

namespace cprfl {

// Bumped whenever the same seed and config would give different scenes.
inline constexpr int kFashionLtVersion = 1;

// Scenes per Fashion-MNIST class (a scene counts once per class it holds). Not the
// training-set ClassCounts of the losses (cprfl/data/class_stats.h): a fixed array, one
// entry per class, so a config can spell it out.
using PerClassScenes = std::array<std::int64_t, kFashionMnistClasses>;

// The four outfit slots a scene may fill, one item each (so 1–4 items, one per grid cell).
enum class OutfitSlot { kTop, kTrousers, kFootwear, kBag };
inline constexpr int kOutfitSlots = 4;
OutfitSlot outfit_slot(int label);          // tops and the dress share kTop
const char* outfit_slot_name(OutfitSlot slot);  // "top/dress", "trousers", "footwear", "bag"

// Exactly what one split holds.
struct SplitPlan {
  PerClassScenes class_counts{};        // number of scenes that contain each class
  std::int64_t scenes_without_top = 0;  // scenes holding one loose trousers, footwear or bag item
  // Scenes = (sum of the top/dress counts) + scenes_without_top.
  std::int64_t num_scenes() const;
};

// The outfit prior. Each scene has at most one top or dress; a scene without one holds a
// single loose item. Every other trousers, footwear or bag item joins a scene that has a
// top and that slot still free, drawn with weight max(0, base + sum of affinity[item][c]
// over the classes c already in it): items gather into outfits, with class preferences (a
// dress takes no trousers, sandals lean to dresses, ankle boots to coats and pullovers …).
// For the slots to co-occur more than chance, the trousers/footwear/bag items must
// outnumber the tops and dresses plus the loose scenes.
struct OutfitPrior {
  int base = 1;
  std::array<std::array<int, kFashionMnistClasses>, kFashionMnistClasses> affinity{};
};
OutfitPrior default_outfit_prior();

// Where items go on the canvas. The defaults give clean scenes; the last three knobs make
// them harder if a baseline finds the benchmark too easy.
struct SceneLayout {
  int canvas = 64;           // side of the square canvas (= 2 cells)
  int cell = 32;             // side of a grid cell
  int max_offset = 4;        // an item's corner moves 0..max_offset px inside its cell (+ 28 − side if shrunk)
  double scale_jitter = 0;   // item side drawn uniformly from [28·(1 − scale_jitter), 28] px
  int overlap = 0;           // items may also move this many px past their cell (drawn with max)
  int clutter = 0;           // background noise: each pixel gets uniform 0..clutter grey levels
};

struct FashionLtConfig {
  std::uint64_t seed = 0;
  // Train: 1,100 scenes, n_c from 800 to 6 (imbalance 133).
  //                     T-sh Trou Pull Dres Coat Sand Shir Snea  Bag Ankl
  SplitPlan train{{{800, 640, 90, 55, 6, 10, 16, 480, 320, 30}}, 133};
  // Test: 2,000 scenes, every class in at least 300.
  SplitPlan test{{{360, 620, 320, 300, 300, 340, 300, 520, 560, 400}}, 420};
  OutfitPrior prior = default_outfit_prior();
  SceneLayout layout;
};

// Throws cprfl::Error naming the field when the config cannot be built.
void validate(const FashionLtConfig& config);

struct SceneItem {
  int label = 0;
  std::int64_t source_index = 0;  // index in its Fashion-MNIST split (train or t10k)
  int x = 0, y = 0;               // top-left corner on the canvas (negative only with overlap)
  int size = kFashionMnistSide;   // side in pixels
};

struct Scene {
  std::vector<SceneItem> items;   // one per filled slot, in drawing order
  std::uint64_t noise_seed = 0;   // draws the clutter noise
  std::vector<int> labels() const;  // distinct classes, ascending
};

struct FashionLtSplit {
  std::string name;       // "train" or "test"
  SourceRange source;     // the only items it may use
  std::vector<Scene> scenes;
};

struct FashionLtBenchmark {
  FashionLtConfig config;
  FashionLtSplit train;
  FashionLtSplit test;
};

// Planning and drawing (fashion_lt.cpp).
// Chooses every scene (items, source indices, positions) without drawing anything.
// `train_items` / `test_items` are the loaded Fashion-MNIST splits (or slices covering
// kLtTrainSource / kLtTestSource).
FashionLtBenchmark plan_fashion_lt(const FashionMnist& train_items, const FashionMnist& test_items,
                                   const FashionLtConfig& config);

// Draws one scene: canvas×canvas greyscale bytes, row-major. `items` is the split it uses.
std::vector<std::uint8_t> render_scene(const Scene& scene, const FashionMnist& items, const SceneLayout& layout);

// Statistics (fashion_lt_report.cpp).
// counts[a][b] = scenes holding both a and b; the diagonal is the per-class count n_c.
std::vector<std::vector<std::int64_t>> cooccurrence_matrix(const FashionLtSplit& split);
// lift[s][t] = P(slots s and t both filled) / (P(s) P(t)); > 1 means they go together.
std::vector<std::vector<double>> outfit_lift(const FashionLtSplit& split);
PerClassScenes class_counts(const FashionLtSplit& split);
// histogram[k] = scenes with k items, k = 0..4.
std::array<std::int64_t, kOutfitSlots + 1> items_per_scene(const FashionLtSplit& split);

// Everything stats.json records: per-class train/test counts and groups, labels per image,
// items per scene, co-occurrence and lift, seed, config, source ranges, version.
nlohmann::json fashion_lt_stats(const FashionLtBenchmark& benchmark, const std::string& fashion_mnist_dir);
// The human-readable summary `cprfl make-fashion-lt` prints.
std::string format_fashion_lt_report(const FashionLtBenchmark& benchmark, const std::string& fashion_mnist_dir,
                                     const std::string& out_dir);

// Writing (fashion_lt_write.cpp).
// "images/<split>/NNNNNN.png": where scene `index` of a split lies under the output folder,
// as train.txt / test.txt name it.
std::string fashion_lt_image_path(const std::string& split, std::size_t index);

// Writes out_dir/images/{train,test}/NNNNNN.png (in parallel on `threads` threads, 0 = all
// cores), then train.txt, test.txt, labels.txt and stats.json atomically.
void write_fashion_lt(const FashionLtBenchmark& benchmark, const FashionMnist& train_items,
                      const FashionMnist& test_items, const std::string& fashion_mnist_dir,
                      const std::string& out_dir, int threads = 0);

// Loads Fashion-MNIST from `fashion_mnist_dir`, plans and writes the benchmark.
FashionLtBenchmark build_fashion_lt(const std::string& fashion_mnist_dir, const std::string& out_dir,
                                    const FashionLtConfig& config = {}, int threads = 0);

}  // namespace cprfl
