#pragma once
// Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it: four gzip-compressed IDX
// files in /usr/share/datasets/fashion-mnist/ (train 60,000 and t10k 10,000 greyscale
// 28×28 items, labels 0–9). Read with zlib; every header field is checked before anything
// is allocated, and every error names the file.
//
// Fashion-LT splits the train set in two so that sources never mix: items 0–49,999 are the
// backbone-pretraining pool (a 10-way single-label classification set, the analogue of
// ImageNet), items 50,000–59,999 feed the Fashion-LT training scenes; test scenes come
// from t10k.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cprfl {

inline constexpr int kFashionMnistClasses = 10;
inline constexpr int kFashionMnistSide = 28;

// T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.
const std::array<std::string, kFashionMnistClasses>& fashion_mnist_class_names();

// Where Debian installs the files.
inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";

enum class FashionSplit { kTrain, kTest };
const char* split_name(FashionSplit split);  // "train", "t10k" (the files' prefix)

// A half-open range [begin, end) of item indices in one Fashion-MNIST split.
struct SourceRange {
  FashionSplit split = FashionSplit::kTrain;
  std::int64_t begin = 0;
  std::int64_t end = 0;
  std::int64_t size() const { return end - begin; }
  bool contains(std::int64_t index) const { return index >= begin && index < end; }
};

inline constexpr SourceRange kPretrainingPool{FashionSplit::kTrain, 0, 50000};
inline constexpr SourceRange kLtTrainSource{FashionSplit::kTrain, 50000, 60000};
inline constexpr SourceRange kLtTestSource{FashionSplit::kTest, 0, 10000};

// Items stored row-major: item i is pixels[i*rows*cols, (i+1)*rows*cols), 0 = black.
// For LibTorch: torch::from_blob(set.pixels.data(), {set.size(), rows, cols}, torch::kUInt8).
struct FashionMnist {
  FashionSplit split = FashionSplit::kTrain;
  std::int64_t rows = kFashionMnistSide;
  std::int64_t cols = kFashionMnistSide;
  std::vector<std::uint8_t> pixels;
  std::vector<std::uint8_t> labels;  // 0–9
  std::int64_t first_index = 0;      // index of item 0 in its split (non-zero for a slice)

  std::int64_t size() const { return static_cast<std::int64_t>(labels.size()); }
  const std::uint8_t* image(std::int64_t i) const { return pixels.data() + i * rows * cols; }
};

// One IDX file of unsigned bytes (type code 0x08), gzip-compressed or plain.
struct IdxArray {
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> data;
};

// Reads an IDX file and checks it has `expected_dims` dimensions, each in [1, 2^20] and at
// most 2^31 bytes in all, and exactly that much data. Throws cprfl::Error naming the path.
IdxArray read_idx_file(const std::string& path, int expected_dims);

// Reads an images file (N×28×28) and its labels file (N, ids 0–9) and checks they agree.
FashionMnist read_fashion_mnist_files(const std::string& images_path, const std::string& labels_path);

// Reads one split from `dir` ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, or the same
// names without .gz) and checks its size (60,000 / 10,000). A missing file is an error that
// says to install `dataset-fashion-mnist`.
FashionMnist load_fashion_mnist(const std::string& dir, FashionSplit split);

// Items [range.begin, range.end) of a loaded split or slice (their first_index is
// range.begin); the range must lie inside `set` and name its split.
FashionMnist slice(const FashionMnist& set, const SourceRange& range);

// The backbone-pretraining pool: train items 0–49,999, 10 classes, one label each.
FashionMnist pretraining_pool(const std::string& dir = kFashionMnistDefaultDir);

}  // namespace cprfl
