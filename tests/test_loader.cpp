#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include <opencv2/imgcodecs.hpp>

#include "cprfl/common/error.h"
#include "cprfl/data/loader.h"
#include "test_support.h"

using namespace cprfl;
using cprfl::testing::TempDir;
using cprfl::testing::write_text;

namespace {

constexpr int kClasses = 4;
constexpr int kSize = 8;

// Image i is a flat colour whose red value is 10·i, so a batch row tells which image it holds.
// Labels: i % 4 always, and (i + 1) % 4 for even i.
std::vector<int> labels_of(int i) {
  std::vector<int> labels = {i % kClasses};
  if (i % 2 == 0) labels.push_back((i + 1) % kClasses);
  return labels;
}

std::shared_ptr<const ImageDataset> make_dataset(const TempDir& dir, int count, bool train,
                                                 const std::set<int>& bad = {}) {
  std::string list;
  for (int i = 0; i < count; ++i) {
    std::string name = "img" + std::to_string(i) + (i % 3 == 0 ? ".jpg" : ".png");
    if (bad.count(i)) {
      write_text(dir.file(name), i % 2 ? "" : "not an image");
    } else {
      cv::Mat bgr(kSize + 4, kSize + 2, CV_8UC3, cv::Scalar(30, 5 * i % 256, 10 * i));
      bgr(cv::Rect(0, 0, 3, 3)).setTo(cv::Scalar(200, 200, 200));  // asymmetric, so flips show
      std::vector<std::uint8_t> png;
      cv::imencode(".png", bgr, png);  // lossless; every third one under a .jpg name
      write_text(dir.file(name), std::string(png.begin(), png.end()));
    }
    list += name;
    for (int label : labels_of(i)) list += " " + std::to_string(label);
    list += "\n";
  }
  write_text(dir.file("list.txt"), list);
  TransformConfig transform;
  transform.image_size = kSize;
  transform.train = train;
  transform.normalize = "none";
  return std::make_shared<ImageDataset>(read_image_list(dir.file("list.txt"), kClasses), dir.path(), kClasses,
                                        transform);
}

std::vector<Batch> whole_epoch(DataLoader& loader, std::int64_t epoch, std::int64_t first_batch = 0) {
  loader.start_epoch(epoch, first_batch);
  std::vector<Batch> batches;
  while (auto batch = loader.next()) batches.push_back(std::move(*batch));
  return batches;
}

LoaderOptions options_with(int batch_size, int workers, bool shuffle = true) {
  LoaderOptions options;
  options.batch_size = batch_size;
  options.workers = workers;
  options.shuffle = shuffle;
  options.seed = 42;
  return options;
}

void expect_same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].indices, b[i].indices);
    EXPECT_EQ(a[i].position, b[i].position);
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].targets, b[i].targets)) << "batch " << i;
  }
}

}  // namespace

TEST(Loader, SampleHasImageAndMultiHotTarget) {
  TempDir dir;
  auto dataset = make_dataset(dir, 3, false);
  auto sample = dataset->get(2);
  EXPECT_EQ(sample.image.sizes(), (std::vector<std::int64_t>{3, kSize, kSize}));
  EXPECT_EQ(sample.target.sizes(), (std::vector<std::int64_t>{kClasses}));
  EXPECT_TRUE(torch::equal(sample.target, torch::tensor({0.0f, 0.0f, 1.0f, 1.0f})));
  EXPECT_NEAR(sample.image[0][kSize - 1][kSize - 1].item<float>(), 20 / 255.0f, 1e-6);  // red = 10·2
}

TEST(Loader, BatchesCarryImagesTargetsAndIndicesInOrder) {
  TempDir dir;
  auto dataset = make_dataset(dir, 10, false);
  DataLoader loader(dataset, options_with(4, 2));
  EXPECT_EQ(loader.batches_per_epoch(), 3);
  auto batches = whole_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 3u);
  std::vector<std::int64_t> seen;
  for (const Batch& batch : batches) {
    ASSERT_EQ(batch.images.dim(), 4);
    EXPECT_EQ(batch.images.size(1), 3);
    EXPECT_EQ(batch.images.size(2), kSize);
    EXPECT_EQ(batch.images.scalar_type(), torch::kFloat32);
    EXPECT_EQ(batch.targets.size(1), kClasses);
    for (std::size_t row = 0; row < batch.indices.size(); ++row) {
      int i = static_cast<int>(batch.indices[row]);
      seen.push_back(i);
      auto r = static_cast<std::int64_t>(row);
      EXPECT_NEAR(batch.images[r][0][kSize - 1][kSize - 1].item<float>(), 10 * i / 255.0f, 1e-6);
      torch::Tensor expected = torch::zeros({kClasses});
      for (int label : labels_of(i)) expected[label] = 1.0f;
      EXPECT_TRUE(torch::equal(batch.targets[r], expected)) << "image " << i;
    }
  }
  EXPECT_EQ(batches[0].indices.size(), 4u);
  EXPECT_EQ(batches[2].indices.size(), 2u);  // the partial last batch is kept
  std::vector<std::int64_t> order = loader.epoch_order(0);
  EXPECT_EQ(seen, order);
  std::sort(seen.begin(), seen.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], i);
}

TEST(Loader, DropLastDropsThePartialBatch) {
  TempDir dir;
  auto dataset = make_dataset(dir, 10, false);
  LoaderOptions options = options_with(4, 1);
  options.drop_last = true;
  DataLoader loader(dataset, options);
  EXPECT_EQ(loader.batches_per_epoch(), 2);
  auto batches = whole_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[1].images.size(0), 4);
}

TEST(Loader, SameSeedSameBatchesForAnyWorkerCount) {
  TempDir dir;
  auto dataset = make_dataset(dir, 13, true);  // training augmentation on
  DataLoader inline_loader(dataset, options_with(4, 0));
  DataLoader one(dataset, options_with(4, 1));
  DataLoader two(dataset, options_with(4, 2));
  auto reference = whole_epoch(one, 3);
  expect_same_batches(reference, whole_epoch(two, 3));
  expect_same_batches(reference, whole_epoch(inline_loader, 3));
  expect_same_batches(reference, whole_epoch(two, 3));  // and again on a reused loader
}

TEST(Loader, ReshufflesEachEpoch) {
  TempDir dir;
  auto dataset = make_dataset(dir, 20, false);
  DataLoader loader(dataset, options_with(5, 1));
  auto order0 = loader.epoch_order(0);
  auto order1 = loader.epoch_order(1);
  EXPECT_NE(order0, order1);
  EXPECT_EQ(order0, loader.epoch_order(0));
  auto sorted = order1;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t i = 0; i < 20; ++i) EXPECT_EQ(sorted[static_cast<std::size_t>(i)], i);

  DataLoader plain(dataset, options_with(5, 1, false));
  auto fixed = plain.epoch_order(1);
  for (std::int64_t i = 0; i < 20; ++i) EXPECT_EQ(fixed[static_cast<std::size_t>(i)], i);
}

TEST(Loader, StartingAtABatchOffsetResumesExactly) {
  TempDir dir;
  auto dataset = make_dataset(dir, 11, true);
  DataLoader loader(dataset, options_with(3, 2));
  auto full = whole_epoch(loader, 5);
  ASSERT_EQ(full.size(), 4u);
  auto resumed = whole_epoch(loader, 5, 2);
  ASSERT_EQ(resumed.size(), 2u);
  EXPECT_EQ(resumed[0].position, 2);
  expect_same_batches(std::vector<Batch>(full.begin() + 2, full.end()), resumed);
  EXPECT_TRUE(whole_epoch(loader, 5, 4).empty());
  EXPECT_THROW(loader.start_epoch(5, 5), Error);
}

TEST(Loader, BadImageStopsWithItsFileNameByDefault) {
  TempDir dir;
  auto dataset = make_dataset(dir, 6, false, {4});
  DataLoader loader(dataset, options_with(2, 2, false));
  loader.start_epoch(0);
  ASSERT_TRUE(loader.next());  // images 0, 1
  ASSERT_TRUE(loader.next());  // images 2, 3
  try {
    loader.next();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("img4.png: not a JPEG or PNG image"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(loader.next());  // the epoch is over after the error
}

TEST(Loader, SkipPolicyDropsAndCountsBadImages) {
  TempDir dir;
  auto dataset = make_dataset(dir, 9, false, {1, 4, 5});
  LoaderOptions options = options_with(2, 2, false);
  options.bad_images = BadImagePolicy::skip;
  DataLoader loader(dataset, options);
  auto batches = whole_epoch(loader, 0);
  std::vector<std::int64_t> seen;
  for (const Batch& batch : batches) {
    EXPECT_EQ(batch.images.size(0), static_cast<std::int64_t>(batch.indices.size()));
    EXPECT_EQ(batch.targets.size(0), static_cast<std::int64_t>(batch.indices.size()));
    for (std::size_t row = 0; row < batch.indices.size(); ++row) {
      seen.push_back(batch.indices[row]);
      EXPECT_NEAR(batch.images[static_cast<std::int64_t>(row)][0][0][kSize - 1].item<float>(),
                  10 * batch.indices[row] / 255.0f, 1e-6);
    }
  }
  EXPECT_EQ(seen, (std::vector<std::int64_t>{0, 2, 3, 6, 7, 8}));
  ASSERT_EQ(batches.size(), 4u);  // batch {4, 5} vanished entirely
  EXPECT_EQ(batches[2].position, 3);
  EXPECT_EQ(loader.skipped(), 3);
}

TEST(Loader, StoppingEarlyDoesNotHang) {
  TempDir dir;
  auto dataset = make_dataset(dir, 40, true);
  {
    DataLoader loader(dataset, options_with(2, 2));
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next());
    loader.start_epoch(1);  // abandon mid-epoch
    ASSERT_TRUE(loader.next());
  }  // destroyed with batches in flight
  DataLoader never_read(dataset, options_with(2, 2));
  never_read.start_epoch(0);
}

TEST(Loader, RecyclesBatchTensorsOnlyWhenNobodyHoldsThem) {
  TempDir dir;
  auto dataset = make_dataset(dir, 24, false);
  DataLoader loader(dataset, options_with(2, 2, false));
  loader.start_epoch(0);
  auto first = loader.next();
  auto second = loader.next();
  torch::Tensor view = first->images[1];
  // An alias of the storage that is not a tracked view (no reference to the handle).
  torch::Tensor alias = torch::empty({0}, torch::kFloat32);
  alias.set_(second->images.storage(), 0, {2, 3, kSize, kSize}, second->images.strides());
  torch::Tensor saved_view = view.clone(), saved_alias = alias.clone();
  first.reset();
  second.reset();
  std::set<const void*> buffers;
  while (auto batch = loader.next()) buffers.insert(batch->images.data_ptr());
  EXPECT_TRUE(torch::equal(view, saved_view));  // never overwritten while in use
  EXPECT_TRUE(torch::equal(alias, saved_alias));
  EXPECT_LE(buffers.size(), 5u);  // 10 batches dropped as they came: buffers reused
}

TEST(Loader, RejectsBadOptions) {
  TempDir dir;
  auto dataset = make_dataset(dir, 2, false);
  EXPECT_THROW(DataLoader(dataset, options_with(0, 1)), Error);
  EXPECT_THROW(DataLoader(dataset, options_with(1, -1)), Error);
  EXPECT_EQ(bad_image_policy_named("skip"), BadImagePolicy::skip);
  EXPECT_THROW(bad_image_policy_named("ignore"), Error);
  DataLoader loader(dataset, options_with(1, 1));
  EXPECT_THROW(loader.next(), Error);  // before start_epoch
}
