#pragma once
// A multi-label image dataset over a list file, and a threaded, deterministic batch loader.
//
// Determinism: the sample order of epoch e is a pure function of (seed, e), and a sample's
// augmentation a pure function of (seed, e, sample index), so the batches — order and
// pixels — are the same for any number of worker threads, and an epoch can be resumed at
// any batch.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "cprfl/data/image.h"
#include "cprfl/data/list_file.h"
#include "cprfl/data/transforms.h"

namespace cprfl {

// Sample i of a list: image [3, S, S] float32 and multi-hot target [C] float32.
class ImageDataset {
 public:
  ImageDataset(ImageList list, std::string root, int num_classes, TransformConfig transform,
               DecodeOptions decode = {});

  std::size_t size() const { return list_.records.size(); }
  int num_classes() const { return num_classes_; }
  int image_size() const { return transform_.output_size(); }
  const ImageRecord& record(std::size_t index) const { return list_.records.at(index); }
  std::string image_path(std::size_t index) const;

  // Reads, decodes and transforms sample `index` for (seed, epoch) into image[3·S·S] and
  // target[C]. Throws cprfl::Error naming the file for an unreadable image.
  void load(std::size_t index, std::uint64_t seed, std::int64_t epoch, float* image, float* target) const;
  void fill_target(std::size_t index, float* target) const;

  struct Sample {
    torch::Tensor image;   // [3, S, S]
    torch::Tensor target;  // [C]
  };
  Sample get(std::size_t index, std::uint64_t seed = 0, std::int64_t epoch = 0) const;

 private:
  ImageList list_;
  std::string root_;
  int num_classes_;
  ImageTransform transform_;
  DecodeOptions decode_;
};

// What to do with an image that cannot be decoded.
enum class BadImagePolicy {
  error,  // the first bad file (in batch order) stops the epoch with its message
  skip,   // a warning names the file; the sample is dropped from its batch
};
BadImagePolicy bad_image_policy_named(const std::string& name);  // "error" | "skip"

struct LoaderOptions {
  int batch_size = 16;
  bool shuffle = true;
  bool drop_last = false;     // false: the last, partial batch is kept
  int workers = 2;            // decoding threads; 0 decodes on the caller's thread
  int prefetch_batches = 2;   // batches decoded ahead of the consumer
  std::uint64_t seed = 0;                       // sample order (and augmentation unless set below)
  std::optional<std::uint64_t> augment_seed;    // augmentation's own seed
  BadImagePolicy bad_images = BadImagePolicy::error;
  bool pin_memory = false;    // page-locked batches for asynchronous copies to a GPU (CUDA builds only)
  // Data-parallel shard, as PyTorch's DistributedSampler makes it: the epoch's order (the same
  // on every rank) padded with its own first samples to a multiple of shard_count, then every
  // shard_count-th sample from shard_rank — equal lengths, so every rank takes as many steps.
  // shard_pad = false (evaluation: every sample once): no padding, so shards may differ by one.
  int shard_rank = 0;
  int shard_count = 1;
  bool shard_pad = true;
};

struct Batch {
  torch::Tensor images;               // [B, 3, S, S] float32
  torch::Tensor targets;              // [B, C] float32
  std::vector<std::int64_t> indices;  // dataset index of each row
  std::int64_t position = 0;          // batch number within the epoch, from 0
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const ImageDataset> dataset, LoaderOptions options);
  ~DataLoader();  // abandons the epoch in progress and joins the workers
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  const ImageDataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return options_; }
  std::int64_t batches_per_epoch() const;
  // Dataset indices in the order epoch `epoch` visits them (before drop_last); this shard's.
  std::vector<std::int64_t> epoch_order(std::int64_t epoch) const;

  // Starts epoch `epoch` at batch `first_batch` (0 ≤ first_batch ≤ batches_per_epoch());
  // an epoch still in progress is abandoned.
  void start_epoch(std::int64_t epoch, std::int64_t first_batch = 0);
  // The next batch, or nothing once the epoch is over (then skipped images, if any, are
  // reported in one warning). Throws the first bad image's error under policy `error`.
  std::optional<Batch> next();
  // Images skipped so far in the current epoch (policy `skip`).
  std::int64_t skipped() const { return skipped_; }

 private:
  struct Slot;
  struct Run;
  void stop_workers();
  void worker_loop(Run* run);
  Slot make_slot(const Run& run, std::int64_t batch);
  torch::Tensor image_buffer(std::int64_t rows);
  void load_row(Run& run, Slot& slot, std::int64_t sample) const;
  Slot take_slot(std::int64_t batch);

  std::shared_ptr<const ImageDataset> dataset_;
  LoaderOptions options_;
  std::unique_ptr<Run> run_;
  std::vector<std::thread> threads_;
  std::vector<torch::Tensor> image_buffers_;  // reusable batch tensors (see image_buffer)
  std::int64_t skipped_ = 0;
};

}  // namespace cprfl
