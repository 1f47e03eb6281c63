#pragma once
// Averages a model's gradients over the ranks of a data-parallel run while backward is still
// running, the way PyTorch's DDP does: the parameters are grouped into buckets of about
// `bucket_bytes`, in the reverse of their registration order (roughly the order backward
// produces their gradients); a post-hook on each parameter's gradient accumulator marks it
// ready, and a bucket's all-reduce starts once all of its gradients are in — buckets always
// start in the same order on every rank, so the collectives match. finish() waits for them and
// writes the averages back.
//
// A parameter without a gradient on every rank (unused in the forward) keeps no gradient, as
// in a single process; one with a gradient on some ranks only gets the average over all ranks
// (zeros standing in for the missing ones).
#include <torch/torch.h>
#include <torch/csrc/autograd/variable.h>

#include <cstdint>
#include <utility>
#include <memory>
#include <mutex>
#include <vector>

#include "cprfl/dist/communicator.h"

namespace cprfl {

class GradientSync {
 public:
  // `parameters`: those that take gradients, identical in order and shape on every rank.
  // overlap = false: nothing starts during backward; finish() does all the work (for comparison).
  GradientSync(Communicator& communicator, std::vector<torch::Tensor> parameters,
               int64_t bucket_bytes = 25ll << 20, bool overlap = true);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Before each backward of a step: `last` = this backward completes the step's gradients
  // (earlier micro-batches of an accumulated step only accumulate locally, like DDP's no_sync).
  void prepare(bool last);
  // After the step's last backward: starts the buckets not yet started, waits for all of them
  // and leaves every gradient equal to its mean over the ranks.
  void finish();

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  double last_wait_seconds() const { return last_wait_seconds_; }  // finish()'s blocking time

 private:
  struct Bucket;
  class ReadyHook;
  void mark_ready(std::size_t parameter);
  void launch_ready_buckets();  // under mutex_
  void launch(Bucket& bucket);

  Communicator& communicator_;
  std::vector<torch::Tensor> parameters_;
  // (A shared_ptr in LibTorch 1.13, an intrusive_ptr in 2.x.)
  using AccumulatorPtr = decltype(torch::autograd::impl::grad_accumulator(std::declval<const torch::Tensor&>()));
  std::vector<AccumulatorPtr> accumulators_;
  std::vector<uintptr_t> hook_keys_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<std::size_t> bucket_of_;  // parameter -> bucket
  std::size_t next_launch_ = 0;
  bool armed_ = false;
  bool overlap_;
  std::mutex mutex_;
  double last_wait_seconds_ = 0;
};

}  // namespace cprfl
