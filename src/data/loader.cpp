#include "cprfl/data/loader.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>

#include <opencv2/core.hpp>

#include "cprfl/common/error.h"

namespace cprfl {

// ---------------------------------------------------------------------------------------
// ImageDataset

ImageDataset::ImageDataset(ImageList list, std::string root, int num_classes, TransformConfig transform,
                           DecodeOptions decode)
    : list_(std::move(list)),
      root_(std::move(root)),
      num_classes_(num_classes),
      transform_(std::move(transform)),
      decode_(decode) {
  if (num_classes_ <= 0) fail_in(list_.source, "a dataset needs at least one class");
  for (const ImageRecord& record : list_.records)
    for (int label : record.labels)
      if (label < 0 || label >= num_classes_)
        fail_at(list_.source, record.line,
                "label id " + std::to_string(label) + " is out of range [0, " + std::to_string(num_classes_) + ")");
}

std::string ImageDataset::image_path(std::size_t index) const {
  return resolve_image_path(root_, record(index).path);
}

void ImageDataset::fill_target(std::size_t index, float* target) const {
  std::fill(target, target + num_classes_, 0.0f);
  for (int label : record(index).labels) target[label] = 1.0f;
}

void ImageDataset::load(std::size_t index, std::uint64_t seed, std::int64_t epoch, float* image, float* target) const {
  fill_target(index, target);
  cv::Mat rgb = read_image(image_path(index), decode_);
  std::mt19937_64 rng(augmentation_seed(seed, epoch, index));
  transform_.apply(rgb, rng, image);
}

ImageDataset::Sample ImageDataset::get(std::size_t index, std::uint64_t seed, std::int64_t epoch) const {
  Sample sample;
  sample.image = torch::empty({3, image_size(), image_size()}, torch::kFloat32);
  sample.target = torch::empty({num_classes_}, torch::kFloat32);
  load(index, seed, epoch, sample.image.data_ptr<float>(), sample.target.data_ptr<float>());
  return sample;
}

BadImagePolicy bad_image_policy_named(const std::string& name) {
  if (name == "error") return BadImagePolicy::error;
  if (name == "skip") return BadImagePolicy::skip;
  throw Error("bad_images must be 'error' or 'skip', got '" + name + "'");
}

// ---------------------------------------------------------------------------------------
// DataLoader

// One batch being filled by the workers.
struct DataLoader::Slot {
  torch::Tensor images;
  torch::Tensor targets;
  std::vector<std::int64_t> indices;
  std::vector<std::exception_ptr> failures;  // per row; written only by the row's worker
  std::int64_t remaining = 0;                // rows not loaded yet
};

// The state of one epoch (from its first requested batch to its end).
struct DataLoader::Run {
  std::int64_t epoch = 0;
  std::int64_t first_position = 0;    // epoch position of this run's batch 0
  std::vector<std::int64_t> samples;  // dataset indices in delivery order
  std::int64_t batch_count = 0;
  std::mutex mutex;
  std::condition_variable work_ready;  // workers wait for room in the prefetch window
  std::condition_variable slot_ready;  // the consumer waits for a complete batch
  std::int64_t next_sample = 0;        // next entry of `samples` to hand out
  std::int64_t delivered = 0;          // batches handed to the consumer
  std::map<std::int64_t, Slot> slots;  // batches in flight, by run-relative number
  bool stopping = false;
  bool reported = false;
  std::exception_ptr fatal;            // a worker could not continue
};

DataLoader::DataLoader(std::shared_ptr<const ImageDataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  if (!dataset_) throw Error("DataLoader: no dataset");
  if (options_.batch_size < 1) throw Error("loader: batch_size must be at least 1, got " + std::to_string(options_.batch_size));
  if (options_.workers < 0 || options_.workers > 256)
    throw Error("loader: workers must be in [0, 256], got " + std::to_string(options_.workers));
  if (options_.shard_count < 1 || options_.shard_rank < 0 || options_.shard_rank >= options_.shard_count)
    throw Error("loader: shard " + std::to_string(options_.shard_rank) + " of " + std::to_string(options_.shard_count) +
                " does not exist");
  if (options_.prefetch_batches < 1)
    throw Error("loader: prefetch_batches must be at least 1, got " + std::to_string(options_.prefetch_batches));
}

DataLoader::~DataLoader() { stop_workers(); }

std::int64_t DataLoader::batches_per_epoch() const {
  const std::int64_t shards = options_.shard_count, size = static_cast<std::int64_t>(dataset_->size());
  const std::int64_t n = options_.shard_pad ? (size + shards - 1) / shards  // this shard's length
                                            : (size - options_.shard_rank + shards - 1) / shards;
  std::int64_t b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<std::int64_t> DataLoader::epoch_order(std::int64_t epoch) const {
  std::vector<std::int64_t> order(dataset_->size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);
  if (options_.shuffle) {
    // Its own stream: no sample index reaches 2^64 − 1, so no augmentation seed collides.
    std::mt19937_64 rng(augmentation_seed(options_.seed, epoch, ~std::uint64_t{0}));
    for (std::size_t i = order.size(); i > 1; --i)
      std::swap(order[i - 1], order[static_cast<std::size_t>(uniform_int(rng, static_cast<std::int64_t>(i)))]);
  }
  if (options_.shard_count == 1) return order;
  const std::size_t shards = static_cast<std::size_t>(options_.shard_count);
  const std::size_t padded = options_.shard_pad ? (order.size() + shards - 1) / shards * shards : order.size();
  std::vector<std::int64_t> shard;
  for (std::size_t i = static_cast<std::size_t>(options_.shard_rank); i < padded; i += shards)
    shard.push_back(order[i % order.size()]);
  return shard;
}

void DataLoader::stop_workers() {
  if (run_) {
    std::lock_guard<std::mutex> lock(run_->mutex);
    run_->stopping = true;
    run_->work_ready.notify_all();
    run_->slot_ready.notify_all();
  }
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
}

void DataLoader::start_epoch(std::int64_t epoch, std::int64_t first_batch) {
  stop_workers();
  std::int64_t batches = batches_per_epoch();
  if (first_batch < 0 || first_batch > batches)
    throw Error("loader: cannot start epoch " + std::to_string(epoch) + " at batch " + std::to_string(first_batch) +
                " (an epoch has " + std::to_string(batches) + " batches)");
  auto run = std::make_unique<Run>();
  run->epoch = epoch;
  run->first_position = first_batch;
  run->batch_count = batches - first_batch;
  std::vector<std::int64_t> order = epoch_order(epoch);
  std::int64_t end = std::min<std::int64_t>(batches * options_.batch_size, static_cast<std::int64_t>(order.size()));
  std::int64_t begin = std::min(first_batch * options_.batch_size, end);
  run->samples.assign(order.begin() + begin, order.begin() + end);
  run_ = std::move(run);
  skipped_ = 0;
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back(&DataLoader::worker_loop, this, run_.get());
}

void DataLoader::load_row(Run& run, Slot& slot, std::int64_t sample) const {
  std::int64_t row = sample % options_.batch_size;
  std::int64_t image_floats = 3LL * dataset_->image_size() * dataset_->image_size();
  float* image = slot.images.data_ptr<float>() + row * image_floats;
  float* target = slot.targets.data_ptr<float>() + row * dataset_->num_classes();
  try {
    dataset_->load(static_cast<std::size_t>(run.samples[sample]), options_.augment_seed.value_or(options_.seed), run.epoch,
                   image, target);
  } catch (...) {
    slot.failures[row] = std::current_exception();
  }
}

// Full-batch image tensors are recycled once the consumer has dropped every reference to
// them (the handle and any view): a fresh 77 MB tensor (32 × 3 × 448²) costs ~40 ms of page
// faults, more than a tenth of the time it takes to decode and augment its images.
torch::Tensor DataLoader::image_buffer(std::int64_t rows) {
  int size = dataset_->image_size();
  // Pinned batches come from LibTorch's pinned-memory cache, which already recycles blocks
  // and, unlike the pool below, knows when an asynchronous copy out of one has finished.
  if (options_.pin_memory) return torch::empty({rows, 3, size, size}, torch::TensorOptions(torch::kFloat32).pinned_memory(true));
  if (rows != options_.batch_size) return torch::empty({rows, 3, size, size}, torch::kFloat32);
  for (const torch::Tensor& buffer : image_buffers_)
    if (buffer.use_count() == 1 && buffer.storage().use_count() == 1) return buffer;
  torch::Tensor buffer = torch::empty({rows, 3, size, size}, torch::kFloat32);
  if (static_cast<int>(image_buffers_.size()) < options_.prefetch_batches + 2) image_buffers_.push_back(buffer);
  return buffer;
}

// A slot for run-relative batch `batch`, its tensors allocated (not filled). Called under
// the run's lock (or on the only thread).
DataLoader::Slot DataLoader::make_slot(const Run& run, std::int64_t batch) {
  std::int64_t begin = batch * options_.batch_size;
  std::int64_t rows = std::min<std::int64_t>(options_.batch_size, static_cast<std::int64_t>(run.samples.size()) - begin);
  Slot slot;
  slot.images = image_buffer(rows);
  slot.targets = torch::empty({rows, dataset_->num_classes()}, torch::TensorOptions(torch::kFloat32).pinned_memory(options_.pin_memory));
  slot.indices.assign(run.samples.begin() + begin, run.samples.begin() + begin + rows);
  slot.failures.resize(static_cast<std::size_t>(rows));
  slot.remaining = rows;
  return slot;
}

void DataLoader::worker_loop(Run* run) {
  cv::setNumThreads(0);  // parallelism comes from the workers; no OpenCV thread pool on top
  auto total = static_cast<std::int64_t>(run->samples.size());
  std::int64_t window = options_.prefetch_batches;
  std::unique_lock<std::mutex> lock(run->mutex);
  while (true) {
    run->work_ready.wait(lock, [&] {
      return run->stopping || run->next_sample >= total ||
             run->next_sample / options_.batch_size < run->delivered + window;
    });
    if (run->stopping || run->next_sample >= total) return;
    std::int64_t sample = run->next_sample++;
    std::int64_t batch = sample / options_.batch_size;
    auto found = run->slots.find(batch);
    if (found == run->slots.end()) {
      try {
        found = run->slots.emplace(batch, make_slot(*run, batch)).first;
      } catch (...) {  // out of memory: hand it to the consumer rather than terminate
        run->fatal = std::current_exception();
        run->stopping = true;
        run->work_ready.notify_all();
        run->slot_ready.notify_all();
        return;
      }
    }
    Slot& slot = found->second;  // map nodes stay put; the consumer erases it only when complete
    lock.unlock();
    load_row(*run, slot, sample);
    lock.lock();
    if (--slot.remaining == 0) run->slot_ready.notify_all();
  }
}

DataLoader::Slot DataLoader::take_slot(std::int64_t batch) {
  Run& run = *run_;
  if (threads_.empty()) {  // no workers: load on this thread
    Slot slot = make_slot(run, batch);
    for (std::int64_t row = 0; row < static_cast<std::int64_t>(slot.indices.size()); ++row)
      load_row(run, slot, batch * options_.batch_size + row);
    ++run.delivered;
    return slot;
  }
  std::unique_lock<std::mutex> lock(run.mutex);
  run.slot_ready.wait(lock, [&] {
    auto found = run.slots.find(batch);
    return run.fatal || (found != run.slots.end() && found->second.remaining == 0);
  });
  if (run.fatal) {
    run.delivered = run.batch_count;  // the epoch ends here
    std::exception_ptr fatal = run.fatal;
    lock.unlock();
    stop_workers();
    std::rethrow_exception(fatal);
  }
  Slot slot = std::move(run.slots.at(batch));
  run.slots.erase(batch);
  ++run.delivered;
  run.work_ready.notify_all();
  return slot;
}

std::optional<Batch> DataLoader::next() {
  if (!run_) throw Error("DataLoader: next() called before start_epoch()");
  Run& run = *run_;
  while (run.delivered < run.batch_count) {
    std::int64_t batch = run.delivered;
    Slot slot = take_slot(batch);
    std::vector<std::int64_t> kept;
    for (std::size_t row = 0; row < slot.failures.size(); ++row) {
      if (!slot.failures[row]) {
        kept.push_back(static_cast<std::int64_t>(row));
        continue;
      }
      try {
        std::rethrow_exception(slot.failures[row]);
      } catch (const Error& e) {
        if (options_.bad_images == BadImagePolicy::error) {
          stop_workers();
          run.delivered = run.batch_count;  // the epoch ends here
          throw;
        }
        warn("skipping unreadable image: " + std::string(e.what()));
        ++skipped_;
      } catch (...) {  // not a bad image but a bug or out of memory: never skipped
        stop_workers();
        run.delivered = run.batch_count;
        throw;
      }
    }
    if (kept.empty()) continue;  // every image of this batch was skipped
    Batch out;
    out.position = run.first_position + batch;
    if (kept.size() == slot.indices.size()) {
      out.images = std::move(slot.images);
      out.targets = std::move(slot.targets);
      out.indices = std::move(slot.indices);
    } else {
      torch::Tensor rows = torch::tensor(kept, torch::kInt64);
      out.images = slot.images.index_select(0, rows);
      out.targets = slot.targets.index_select(0, rows);
      for (std::int64_t row : kept) out.indices.push_back(slot.indices[static_cast<std::size_t>(row)]);
    }
    return out;
  }
  if (skipped_ > 0 && !run.reported) {
    warn(std::to_string(skipped_) + " unreadable image(s) skipped in epoch " + std::to_string(run.epoch));
    run.reported = true;
  }
  return std::nullopt;
}

}  // namespace cprfl
