#include "cprfl/fashion_lt/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cprfl/common/error.h"

namespace cprfl {
namespace {

constexpr std::int64_t kMaxDim = std::int64_t{1} << 20;
constexpr std::int64_t kMaxBytes = std::int64_t{1} << 31;
constexpr unsigned kChunk = 1u << 20;

struct GzCloser {
  void operator()(gzFile file) const { gzclose(file); }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

// Reads up to `size` bytes; fewer only at the end of the data. A corrupt stream is an error.
std::size_t read_some(gzFile file, const std::string& path, std::uint8_t* out, std::size_t size) {
  std::size_t got = 0;
  while (got < size) {
    unsigned want = static_cast<unsigned>(std::min<std::size_t>(size - got, kChunk));
    int n = gzread(file, out + got, want);
    if (n < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      fail_in(path, std::string("cannot decompress: ") + (message ? message : "zlib error"));
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

std::string join(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

// Debian ships the .gz files; an unpacked copy under the plain name works as well.
std::string find_idx(const std::string& dir, const std::string& stem) {
  std::string gz = join(dir, stem + ".gz");
  std::error_code ignored;
  if (std::filesystem::is_regular_file(gz, ignored)) return gz;
  std::string plain = join(dir, stem);
  if (std::filesystem::is_regular_file(plain, ignored)) return plain;
  fail_in(gz, "cannot open file: Fashion-MNIST is not there. Install the Debian package dataset-fashion-mnist "
              "(sudo apt-get install dataset-fashion-mnist), or give the folder that holds its four IDX files");
}

std::string dims_text(const std::vector<std::int64_t>& dims) {
  std::string text;
  for (std::size_t i = 0; i < dims.size(); ++i) text += (i ? "×" : "") + std::to_string(dims[i]);
  return text;
}

}  // namespace

const std::array<std::string, kFashionMnistClasses>& fashion_mnist_class_names() {
  static const std::array<std::string, kFashionMnistClasses> names{
      "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  return names;
}

const char* split_name(FashionSplit split) { return split == FashionSplit::kTrain ? "train" : "t10k"; }

IdxArray read_idx_file(const std::string& path, int expected_dims) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) fail_in(path, "cannot open file");
  GzHandle file(gzopen(path.c_str(), "rb"));  // reads plain files unchanged
  if (!file) fail_in(path, "cannot open file");

  std::uint8_t magic[4];
  if (read_some(file.get(), path, magic, 4) != 4) fail_in(path, "truncated IDX header (fewer than 4 bytes)");
  if (magic[0] != 0 || magic[1] != 0) fail_in(path, "not an IDX file (bad magic number)");
  if (magic[2] != 0x08) {
    char type[8];
    std::snprintf(type, sizeof type, "0x%02x", magic[2]);
    fail_in(path, std::string("IDX element type ") + type + " is not unsigned byte (0x08)");
  }
  if (magic[3] != expected_dims) {
    fail_in(path, "IDX file has " + std::to_string(magic[3]) + " dimensions, expected " +
                      std::to_string(expected_dims));
  }

  IdxArray array;
  std::int64_t total = 1;
  for (int d = 0; d < expected_dims; ++d) {
    std::uint8_t bytes[4];
    if (read_some(file.get(), path, bytes, 4) != 4) fail_in(path, "truncated IDX header (dimension sizes)");
    std::int64_t size = (std::int64_t{bytes[0]} << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3];
    if (size < 1 || size > kMaxDim) {
      fail_in(path, "IDX dimension " + std::to_string(d) + " is " + std::to_string(size) + ", outside [1, " +
                        std::to_string(kMaxDim) + "]");
    }
    array.dims.push_back(size);
    total *= size;
    if (total > kMaxBytes) fail_in(path, "IDX data would exceed " + std::to_string(kMaxBytes) + " bytes");
  }

  // Grow as the data arrives, so a lying header cannot make us allocate what is not there.
  std::size_t expected = static_cast<std::size_t>(total);
  std::size_t got = 0;
  while (got < expected) {
    std::size_t step = std::min<std::size_t>(expected - got, 16 * kChunk);
    array.data.resize(got + step);
    std::size_t n = read_some(file.get(), path, array.data.data() + got, step);
    got += n;
    if (n < step) break;
  }
  if (got < expected) {
    fail_in(path, "truncated IDX data: the header says " + dims_text(array.dims) + " = " + std::to_string(expected) +
                      " bytes, the file holds " + std::to_string(got));
  }
  std::uint8_t extra;
  if (read_some(file.get(), path, &extra, 1) != 0) {
    fail_in(path, "extra bytes after the " + dims_text(array.dims) + " IDX data");
  }
  return array;
}

FashionMnist read_fashion_mnist_files(const std::string& images_path, const std::string& labels_path) {
  IdxArray images = read_idx_file(images_path, 3);
  if (images.dims[1] != kFashionMnistSide || images.dims[2] != kFashionMnistSide) {
    fail_in(images_path, "images are " + std::to_string(images.dims[1]) + "×" + std::to_string(images.dims[2]) +
                             ", expected 28×28");
  }
  IdxArray labels = read_idx_file(labels_path, 1);
  if (labels.dims[0] != images.dims[0]) {
    fail_in(labels_path, "holds " + std::to_string(labels.dims[0]) + " labels but " + images_path + " holds " +
                             std::to_string(images.dims[0]) + " images");
  }
  for (std::size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= kFashionMnistClasses) {
      fail_in(labels_path, "label of item " + std::to_string(i) + " is " + std::to_string(labels.data[i]) +
                               ", not a class id 0–9");
    }
  }
  FashionMnist set;
  set.rows = images.dims[1];
  set.cols = images.dims[2];
  set.pixels = std::move(images.data);
  set.labels = std::move(labels.data);
  return set;
}

FashionMnist load_fashion_mnist(const std::string& dir, FashionSplit split) {
  std::string prefix = split_name(split);
  std::string images_path = find_idx(dir, prefix + "-images-idx3-ubyte");
  std::string labels_path = find_idx(dir, prefix + "-labels-idx1-ubyte");
  FashionMnist set = read_fashion_mnist_files(images_path, labels_path);
  set.split = split;
  std::int64_t expected = split == FashionSplit::kTrain ? 60000 : 10000;
  if (set.size() != expected) {
    fail_in(images_path, "holds " + std::to_string(set.size()) + " items; Fashion-MNIST " + prefix + " has " +
                             std::to_string(expected));
  }
  return set;
}

FashionMnist slice(const FashionMnist& set, const SourceRange& range) {
  std::int64_t first = set.first_index, last = set.first_index + set.size();
  if (range.split != set.split || range.begin < first || range.end > last || range.begin > range.end) {
    throw Error(std::string("Fashion-MNIST ") + split_name(range.split) + " items [" + std::to_string(range.begin) +
                ", " + std::to_string(range.end) + ") are not inside the loaded " + split_name(set.split) +
                " items [" + std::to_string(first) + ", " + std::to_string(last) + ")");
  }
  FashionMnist part;
  part.split = set.split;
  part.rows = set.rows;
  part.cols = set.cols;
  part.first_index = range.begin;
  std::int64_t offset = range.begin - first, pixels = set.rows * set.cols;
  part.labels.assign(set.labels.begin() + offset, set.labels.begin() + (range.end - first));
  part.pixels.assign(set.pixels.begin() + offset * pixels, set.pixels.begin() + (range.end - first) * pixels);
  return part;
}

FashionMnist pretraining_pool(const std::string& dir) {
  return slice(load_fashion_mnist(dir, FashionSplit::kTrain), kPretrainingPool);
}

}  // namespace cprfl
