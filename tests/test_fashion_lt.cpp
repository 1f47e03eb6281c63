// Fashion-MNIST IDX reading and the Fashion-LT builder, on the real Fashion-MNIST files
// (Debian's dataset-fashion-mnist; scripts/setup.sh installs it). The tests that read them
// skip, saying so, where the package is not installed (REQUIRE_FASHION_MNIST).
#include <zlib.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include <opencv2/imgcodecs.hpp>

#include "cprfl/common/error.h"
#include "cprfl/common/text.h"
#include "cprfl/data/class_stats.h"
#include "cprfl/fashion_lt/fashion_lt.h"
#include "cprfl/fashion_lt/fashion_mnist.h"
#include "cprfl/data/list_file.h"
#include "test_support.h"

using cprfl::testing::error_of;

using namespace cprfl;
using cprfl::testing::read_text;
using cprfl::testing::TempDir;

namespace {

bool fashion_mnist_installed() {
  for (const char* file : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                           "t10k-labels-idx1-ubyte.gz"})
    if (!std::filesystem::is_regular_file(std::string(kFashionMnistDefaultDir) + "/" + file)) return false;
  return true;
}

// First line of a test that reads the installed Fashion-MNIST files.
#define REQUIRE_FASHION_MNIST()                                                                          \
  if (!fashion_mnist_installed())                                                                        \
  GTEST_SKIP() << "needs Fashion-MNIST in " << kFashionMnistDefaultDir                                   \
               << ": install the Debian package dataset-fashion-mnist (scripts/setup.sh does)"

// An IDX file: magic (0, 0, type, dims), big-endian sizes, then the data.
std::string idx_bytes(const std::vector<std::uint32_t>& dims, std::size_t data_size, std::uint8_t type = 0x08,
                      std::uint8_t fill = 0) {
  std::string bytes{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (auto dim : dims)
    for (int shift : {24, 16, 8, 0}) bytes += static_cast<char>((dim >> shift) & 0xff);
  bytes.append(data_size, static_cast<char>(fill));
  return bytes;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  gzclose(file);
}

// Every file under `dir`, by relative path, with its bytes.
std::map<std::string, std::string> folder_contents(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir))
    if (entry.is_regular_file())
      files[std::filesystem::relative(entry.path(), dir).string()] = read_text(entry.path().string());
  return files;
}

struct Loaded {
  FashionMnist train = load_fashion_mnist(kFashionMnistDefaultDir, FashionSplit::kTrain);
  FashionMnist test = load_fashion_mnist(kFashionMnistDefaultDir, FashionSplit::kTest);
};

}  // namespace

TEST(FashionMnist, ReadsTheInstalledFiles) {
  REQUIRE_FASHION_MNIST();
  Loaded data;
  ASSERT_EQ(data.train.size(), 60000);
  ASSERT_EQ(data.test.size(), 10000);
  EXPECT_EQ(data.train.rows, 28);
  EXPECT_EQ(data.train.pixels.size(), 60000u * 28 * 28);
  EXPECT_EQ(data.train.labels[0], 9);  // the well-known first item: an ankle boot
  EXPECT_EQ(data.test.labels[0], 9);
  std::array<int, 10> per_class{};
  for (auto label : data.test.labels) ++per_class[label];
  for (int count : per_class) EXPECT_EQ(count, 1000);
  // Items are not blank: the first image has ink.
  EXPECT_GT(*std::max_element(data.train.image(0), data.train.image(1)), 200);

  FashionMnist pool = slice(data.train, kPretrainingPool);
  EXPECT_EQ(pool.size(), 50000);
  EXPECT_EQ(pool.first_index, 0);
  EXPECT_TRUE(std::equal(pool.labels.begin(), pool.labels.end(), data.train.labels.begin()));
  FashionMnist lt = slice(data.train, kLtTrainSource);
  EXPECT_EQ(lt.first_index, 50000);
  EXPECT_EQ(lt.labels[0], data.train.labels[50000]);
  EXPECT_TRUE(std::equal(lt.image(0), lt.image(1), data.train.image(50000)));
  EXPECT_THROW(slice(lt, kPretrainingPool), Error);
  EXPECT_THROW(slice(data.train, kLtTestSource), Error);  // wrong split

  // The class order is the one the prompt embeddings were made with.
  auto names = read_labels(cprfl::testing::source_dir() + "/data/prompts/fashion_names.txt");
  const auto& ours = fashion_mnist_class_names();
  EXPECT_EQ(names, std::vector<std::string>(ours.begin(), ours.end()));
}

TEST(FashionMnist, PretrainingPoolIsTrainItemsBelow50000) {
  REQUIRE_FASHION_MNIST();
  FashionMnist pool = pretraining_pool();
  EXPECT_EQ(pool.size(), 50000);
  EXPECT_EQ(pool.split, FashionSplit::kTrain);
  EXPECT_EQ(pool.labels[0], 9);
}

TEST(FashionMnist, BadIdxFilesGiveClearErrors) {
  TempDir dir;
  auto images = dir.file("images.gz"), labels = dir.file("labels.gz");
  auto image_error = [&](const std::string& bytes) {
    write_gz(images, bytes);
    return error_of([&] { read_idx_file(images, 3); });
  };
  EXPECT_NE(image_error(std::string("\x1f\x00\x08\x03", 4) + std::string(12, '\0')).find("images.gz: not an IDX file (bad magic"),
            std::string::npos);
  EXPECT_NE(image_error(idx_bytes({2, 28, 28}, 2 * 784, 0x0D)).find("element type 0x0d"), std::string::npos);
  EXPECT_NE(image_error(idx_bytes({2, 784}, 2 * 784)).find("has 2 dimensions, expected 3"), std::string::npos);
  EXPECT_NE(image_error(std::string("\0\0", 2)).find("truncated IDX header"), std::string::npos);
  EXPECT_NE(image_error(idx_bytes({2, 28, 28}, 0).substr(0, 9)).find("truncated IDX header"), std::string::npos);
  EXPECT_NE(image_error(idx_bytes({5, 28, 28}, 3 * 784)).find("truncated IDX data: the header says 5×28×28 = 3920 bytes, "
                                                               "the file holds 2352"),
            std::string::npos);
  EXPECT_NE(image_error(idx_bytes({2, 28, 28}, 2 * 784 + 1)).find("extra bytes"), std::string::npos);
  EXPECT_NE(image_error(idx_bytes({0, 28, 28}, 0)).find("dimension 0 is 0"), std::string::npos);
  // Sizes from the header are capped before anything is allocated.
  EXPECT_NE(image_error(idx_bytes({0xFFFFFFFF, 28, 28}, 0)).find("dimension 0 is 4294967295, outside"),
            std::string::npos);
  EXPECT_NE(image_error(idx_bytes({1u << 20, 1u << 20, 2}, 0)).find("would exceed"), std::string::npos);

  // A broken gzip stream.
  std::string good;
  {
    write_gz(images, idx_bytes({2, 28, 28}, 2 * 784));
    good = read_text(images);
    std::string broken = good.substr(0, 12) + std::string(good.size() - 12, '\x55');
    cprfl::testing::write_text(images, broken);
    EXPECT_NE(error_of([&] { read_idx_file(images, 3); }).find("images.gz: "), std::string::npos);
  }
  // Plain (uncompressed) IDX files read the same.
  cprfl::testing::write_text(dir.file("plain"), idx_bytes({3}, 3, 0x08, 7));
  EXPECT_EQ(read_idx_file(dir.file("plain"), 1).data, (std::vector<std::uint8_t>{7, 7, 7}));
  EXPECT_NE(error_of([&] { read_idx_file(dir.file("missing"), 1); }).find("missing: cannot open file"),
            std::string::npos);

  // Images and labels must agree; labels are 0–9; items are 28×28.
  write_gz(images, idx_bytes({2, 28, 28}, 2 * 784));
  write_gz(labels, idx_bytes({3}, 3));
  EXPECT_NE(error_of([&] { read_fashion_mnist_files(images, labels); }).find("holds 3 labels but"), std::string::npos);
  write_gz(labels, idx_bytes({2}, 2, 0x08, 10));
  EXPECT_NE(error_of([&] { read_fashion_mnist_files(images, labels); }).find("label of item 0 is 10"),
            std::string::npos);
  write_gz(images, idx_bytes({2, 27, 28}, 2 * 27 * 28));
  EXPECT_NE(error_of([&] { read_fashion_mnist_files(images, labels); }).find("images are 27×28, expected 28×28"),
            std::string::npos);
  write_gz(images, idx_bytes({2, 28, 28}, 2 * 784, 0x08, 3));
  write_gz(labels, idx_bytes({2}, 2, 0x08, 4));
  auto set = read_fashion_mnist_files(images, labels);
  EXPECT_EQ(set.size(), 2);
  EXPECT_EQ(set.image(1)[783], 3);

  // A folder without Fashion-MNIST, or with a short split, says what to do.
  EXPECT_NE(error_of([&] { load_fashion_mnist(dir.path(), FashionSplit::kTrain); })
                .find("train-images-idx3-ubyte.gz: cannot open file: Fashion-MNIST is not there. Install the Debian "
                      "package dataset-fashion-mnist"),
            std::string::npos);
  write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_bytes({2, 28, 28}, 2 * 784));
  write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes({2}, 2));
  EXPECT_NE(error_of([&] { load_fashion_mnist(dir.path(), FashionSplit::kTest); })
                .find("holds 2 items; Fashion-MNIST t10k has 10000"),
            std::string::npos);
}

TEST(FashionLt, StatisticsAreAsDesigned) {
  REQUIRE_FASHION_MNIST();
  Loaded data;
  FashionLtConfig config;
  auto benchmark = plan_fashion_lt(data.train, data.test, config);
  const auto& names = fashion_mnist_class_names();
  auto index_of = [&](const std::string& name) {
    return static_cast<int>(std::find(names.begin(), names.end(), name) - names.begin());
  };

  // Train: exact counts, the stated groups, the stated ranking, 800 down to 6.
  auto train = class_counts(benchmark.train);
  EXPECT_EQ(train, config.train.class_counts);
  auto groups = groups_from_counts(std::vector<std::int64_t>(train.begin(), train.end()), {});
  for (auto name : {"T-shirt/top", "Trouser", "Sneaker", "Bag"}) EXPECT_EQ(groups[index_of(name)], Group::kHead) << name;
  for (auto name : {"Pullover", "Dress", "Ankle boot"}) EXPECT_EQ(groups[index_of(name)], Group::kMedium) << name;
  for (auto name : {"Shirt", "Sandal", "Coat"}) EXPECT_EQ(groups[index_of(name)], Group::kTail) << name;
  std::vector<std::string> ranking{"T-shirt/top", "Trouser", "Sneaker", "Bag", "Pullover",
                                   "Dress",       "Ankle boot", "Shirt", "Sandal", "Coat"};
  for (std::size_t r = 1; r < ranking.size(); ++r)
    EXPECT_GT(train[index_of(ranking[r - 1])], train[index_of(ranking[r])]) << ranking[r];
  EXPECT_EQ(train[index_of("T-shirt/top")], 800);
  EXPECT_EQ(train[index_of("Coat")], 6);
  EXPECT_GE(static_cast<double>(train[index_of("T-shirt/top")]) / train[index_of("Coat")], 100.0);
  EXPECT_EQ(benchmark.train.scenes.size(), 1100u);

  // Test: about 2,000 scenes, every class in at least 300.
  EXPECT_EQ(benchmark.test.scenes.size(), 2000u);
  auto test = class_counts(benchmark.test);
  for (int c = 0; c < kFashionMnistClasses; ++c) EXPECT_GE(test[c], 300) << names[c];

  for (const FashionLtSplit* split : {&benchmark.train, &benchmark.test}) {
    std::set<std::int64_t> used;
    for (const auto& scene : split->scenes) {
      // 1–4 items, one per grid cell, each class at most once, labels = the classes drawn.
      ASSERT_GE(scene.items.size(), 1u);
      ASSERT_LE(scene.items.size(), 4u);
      EXPECT_EQ(scene.labels().size(), scene.items.size());
      std::set<int> cells;
      for (const auto& item : scene.items) {
        // Sources never mix and no item is used twice.
        EXPECT_TRUE(split->source.contains(item.source_index)) << item.source_index;
        EXPECT_TRUE(used.insert(item.source_index).second) << "item used twice: " << item.source_index;
        const auto& items = split == &benchmark.train ? data.train : data.test;
        EXPECT_EQ(items.labels[item.source_index], item.label);
        EXPECT_EQ(item.size, 28);
        int cell_x = item.x / 32, cell_y = item.y / 32;
        EXPECT_LE(item.x % 32, 4);
        EXPECT_LE(item.y % 32, 4);
        cells.insert(cell_y * 2 + cell_x);
      }
      EXPECT_EQ(cells.size(), scene.items.size());
    }
    // Every outfit slot co-occurs with every other more than chance; a dress never meets trousers.
    auto lift = outfit_lift(*split);
    for (int s = 0; s < kOutfitSlots; ++s)
      for (int t = 0; t < kOutfitSlots; ++t)
        if (s != t) EXPECT_GT(lift[s][t], 1.0) << split->name << " slots " << s << "," << t;
    auto matrix = cooccurrence_matrix(*split);
    EXPECT_EQ(matrix[index_of("Dress")][index_of("Trouser")], 0);
    for (int c = 0; c < kFashionMnistClasses; ++c) EXPECT_EQ(matrix[c][c], (split == &benchmark.train ? train : test)[c]);
  }
  EXPECT_EQ(benchmark.train.source.split, FashionSplit::kTrain);
  EXPECT_EQ(benchmark.train.source.begin, 50000);
  EXPECT_EQ(benchmark.test.source.split, FashionSplit::kTest);
}

TEST(FashionLt, SeedDecidesEverything) {
  REQUIRE_FASHION_MNIST();
  Loaded data;
  FashionLtConfig config;
  auto a = plan_fashion_lt(data.train, data.test, config);
  auto b = plan_fashion_lt(data.train, data.test, config);
  config.seed = 1;
  auto c = plan_fashion_lt(data.train, data.test, config);
  auto sources = [](const FashionLtSplit& split) {
    std::vector<std::int64_t> indices;
    for (const auto& scene : split.scenes)
      for (const auto& item : scene.items) indices.push_back(item.source_index * 10000 + item.x * 100 + item.y);
    return indices;
  };
  EXPECT_EQ(sources(a.train), sources(b.train));
  EXPECT_EQ(sources(a.test), sources(b.test));
  EXPECT_NE(sources(a.train), sources(c.train));
  EXPECT_NE(sources(a.test), sources(c.test));
  EXPECT_EQ(class_counts(c.train), class_counts(a.train));  // the counts are fixed, not sampled

  // The layout knobs move items but never change which items a scene holds.
  FashionLtConfig harder;
  harder.layout.scale_jitter = 0.25;
  harder.layout.overlap = 4;
  harder.layout.clutter = 40;
  auto h = plan_fashion_lt(data.train, data.test, harder);
  bool moved = false, shrunk = false;
  for (std::size_t i = 0; i < a.train.scenes.size(); ++i) {
    ASSERT_EQ(h.train.scenes[i].items.size(), a.train.scenes[i].items.size());
    for (std::size_t k = 0; k < a.train.scenes[i].items.size(); ++k) {
      const auto &plain = a.train.scenes[i].items[k], &jittered = h.train.scenes[i].items[k];
      EXPECT_EQ(jittered.source_index, plain.source_index);
      EXPECT_GE(jittered.size, 21);
      EXPECT_LE(jittered.size, 28);
      shrunk |= jittered.size < 28;
      moved |= jittered.x != plain.x;
    }
  }
  EXPECT_TRUE(moved);
  EXPECT_TRUE(shrunk);
  auto pixels = render_scene(h.train.scenes[0], data.train, harder.layout);
  ASSERT_EQ(pixels.size(), 64u * 64u);
  EXPECT_GT(std::count_if(pixels.begin(), pixels.end(), [](auto p) { return p > 0; }), 64 * 64 / 2);  // noisy
}

TEST(FashionLt, BadConfigsAreRejected) {
  REQUIRE_FASHION_MNIST();
  Loaded data;
  auto error_with = [&](const std::function<void(FashionLtConfig&)>& change) {
    FashionLtConfig config;
    change(config);
    return error_of([&] { plan_fashion_lt(data.train, data.test, config); });
  };
  EXPECT_NE(error_with([](auto& c) { c.layout.max_offset = 5; }).find("layout.max_offset"), std::string::npos);
  EXPECT_NE(error_with([](auto& c) { c.layout.canvas = 60; }).find("layout.canvas"), std::string::npos);
  EXPECT_NE(error_with([](auto& c) { c.layout.scale_jitter = 0.9; }).find("layout.scale_jitter"), std::string::npos);
  EXPECT_NE(error_with([](auto& c) { c.train.class_counts[4] = -1; }).find("train.class_counts[4]"), std::string::npos);
  EXPECT_NE(error_with([](auto& c) { c.test.class_counts[0] = 1001; })
                .find("1001 scenes need T-shirt/top items but t10k items [0, 10000) hold only 1000"),
            std::string::npos);
  EXPECT_NE(error_with([](auto& c) { c.train.scenes_without_top = 5000; }).find("train.scenes_without_top"),
            std::string::npos);
  // More trousers than scenes with a top that can wear them.
  EXPECT_NE(error_with([](auto& c) { c.train.class_counts = {50, 60, 0, 0, 0, 0, 0, 0, 0, 0}; c.train.scenes_without_top = 0; })
                .find("no scene with a top can take another Trouser"),
            std::string::npos);
}

TEST(FashionLt, BuildWritesByteIdenticalFilesForTheSameSeed) {
  REQUIRE_FASHION_MNIST();
  TempDir first, second;
  auto benchmark = build_fashion_lt(kFashionMnistDefaultDir, first.path(), {}, 2);
  build_fashion_lt(kFashionMnistDefaultDir, second.path(), {}, 1);
  auto files = folder_contents(first.path());
  EXPECT_EQ(files.size(), 1100u + 2000u + 4u);
  EXPECT_TRUE(files == folder_contents(second.path())) << "two builds with seed 0 differ";

  // The lists read back with the VOC-LT reader and match the plan.
  auto names = read_labels(first.file("labels.txt"));
  ASSERT_EQ(names.size(), 10u);
  EXPECT_EQ(names[9], "Ankle boot");
  auto train = read_image_list(first.file("train.txt"), 10);
  ASSERT_EQ(train.records.size(), 1100u);
  EXPECT_EQ(train.records[5].path, "images/train/000005.png");
  EXPECT_EQ(train.records[5].labels, benchmark.train.scenes[5].labels());
  auto stats = compute_class_stats(train, names);
  EXPECT_EQ(stats.classes_in(Group::kTail), (std::vector<int>{4, 5, 6}));
  EXPECT_EQ(read_image_list(first.file("test.txt"), 10).records.size(), 2000u);

  // Each PNG is the 64×64 greyscale scene.
  cv::Mat image = cv::imread(first.file("images/test/000007.png"), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(image.type(), CV_8UC1);
  ASSERT_EQ(image.rows, 64);
  ASSERT_EQ(image.cols, 64);
  auto expected = render_scene(benchmark.test.scenes[7], load_fashion_mnist(kFashionMnistDefaultDir, FashionSplit::kTest),
                               benchmark.config.layout);
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), image.data));

  auto json = nlohmann::json::parse(files["stats.json"]);
  EXPECT_EQ(json["seed"], 0);
  EXPECT_EQ(json["generator"]["version"], kFashionLtVersion);
  EXPECT_EQ(json["sources"]["pretraining_pool"]["end"], 50000);
  EXPECT_EQ(json["sources"]["train_scenes"]["begin"], 50000);
  EXPECT_EQ(json["sources"]["test_scenes"]["split"], "t10k");
  EXPECT_EQ(json["classes"][4]["group"], "tail");
  EXPECT_EQ(json["classes"][0]["train_count"], 800);
  EXPECT_EQ(json["train"]["cooccurrence"][0][0], 800);
  EXPECT_EQ(json["train"]["items_per_image"]["1"].get<int>() + json["train"]["items_per_image"]["2"].get<int>() +
                json["train"]["items_per_image"]["3"].get<int>() + json["train"]["items_per_image"]["4"].get<int>(),
            1100);
  EXPECT_GE(json["imbalance_ratio"].get<double>(), 100.0);
}

TEST(MakeFashionLtCommand, BuildsAndReports) {
  REQUIRE_FASHION_MNIST();
  TempDir dir;
  auto result = cprfl::testing::run_cprfl("make-fashion-lt --out " + dir.file("fashion_lt") + " --seed 3");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (auto text : {"1100 scenes from Fashion-MNIST train items 50000-59999", "2000 scenes from Fashion-MNIST t10k", "imbalance 133.3", "head 4 / medium 3 / tail 3",
                    "co-occurrence, train", "outfit slots together", "pretraining pool: Fashion-MNIST train items 0-49999"})
    EXPECT_NE(result.output.find(text), std::string::npos) << text << "\n" << result.output;
  auto json = nlohmann::json::parse(read_text(dir.file("fashion_lt/stats.json")));
  EXPECT_EQ(json["seed"], 3);
  EXPECT_TRUE(std::filesystem::exists(dir.file("fashion_lt/images/train/001099.png")));
}

TEST(MakeFashionLtCommand, WithoutFashionMnistSaysWhatToInstall) {
  TempDir dir;
  auto missing = cprfl::testing::run_cprfl("make-fashion-lt --out " + dir.file("x") + " --fashion-mnist " + dir.path());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("error: "), std::string::npos);
  EXPECT_NE(missing.output.find("Install the Debian package dataset-fashion-mnist"), std::string::npos)
      << missing.output;
}
