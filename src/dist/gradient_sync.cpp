#include "cprfl/dist/gradient_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <chrono>

#include "cprfl/common/error.h"

namespace cprfl {

struct GradientSync::Bucket {
  std::vector<std::size_t> members;  // parameter indices
  std::size_t pending = 0;           // members not yet ready in this backward
  bool launched = false;
  torch::Tensor flat;                // the members' gradients, then one has-gradient flag each
  c10::intrusive_ptr<c10d::Work> work;
};

// Runs after a parameter's gradient accumulator: its .grad() is final for this backward.
class GradientSync::ReadyHook : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(GradientSync* sync, std::size_t parameter) : sync_(sync), parameter_(parameter) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    sync_->mark_ready(parameter_);
    return outputs;
  }

 private:
  GradientSync* sync_;
  std::size_t parameter_;
};

GradientSync::GradientSync(Communicator& communicator, std::vector<torch::Tensor> parameters, int64_t bucket_bytes,
                           bool overlap)
    : communicator_(communicator), parameters_(std::move(parameters)), overlap_(overlap) {
  bucket_of_.resize(parameters_.size());
  int64_t bytes = bucket_bytes;  // start a new bucket at once
  for (std::size_t i = parameters_.size(); i-- > 0;) {
    const auto& parameter = parameters_[i];
    if (!parameter.requires_grad()) throw Error("gradient sync: parameter " + std::to_string(i) + " takes no gradient");
    const int64_t size = parameter.numel() * static_cast<int64_t>(parameter.element_size());
    if (buckets_.empty() || bytes + size > bucket_bytes) {
      buckets_.push_back(std::make_unique<Bucket>());
      bytes = 0;
    }
    buckets_.back()->members.push_back(i);
    bucket_of_[i] = buckets_.size() - 1;
    bytes += size;
  }
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    auto accumulator = torch::autograd::impl::grad_accumulator(parameters_[i]);
    hook_keys_.push_back(accumulator->add_post_hook(std::make_unique<ReadyHook>(this, i)));
    accumulators_.push_back(std::move(accumulator));  // kept alive: the hook lives on it
  }
}

GradientSync::~GradientSync() {
  for (std::size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void GradientSync::prepare(bool last) {
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = last;
  next_launch_ = 0;
  for (auto& bucket : buckets_) {
    bucket->pending = bucket->members.size();
    bucket->launched = false;
    bucket->work.reset();
  }
}

void GradientSync::mark_ready(std::size_t parameter) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_ || !overlap_) return;
  Bucket& bucket = *buckets_[bucket_of_[parameter]];
  if (bucket.pending > 0) --bucket.pending;
  launch_ready_buckets();
}

void GradientSync::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_]->pending == 0) launch(*buckets_[next_launch_++]);
}

void GradientSync::launch(Bucket& bucket) {
  std::vector<torch::Tensor> parts;
  for (std::size_t index : bucket.members) {
    const auto& grad = parameters_[index].grad();
    parts.push_back(grad.defined() ? grad.reshape(-1).to(torch::kFloat) : torch::zeros({parameters_[index].numel()}));
  }
  auto flags = torch::empty({static_cast<int64_t>(bucket.members.size())});
  for (std::size_t k = 0; k < bucket.members.size(); ++k)
    flags[static_cast<int64_t>(k)] = parameters_[bucket.members[k]].grad().defined() ? 1.0f : 0.0f;
  parts.push_back(flags);
  bucket.flat = torch::cat(parts);
  bucket.work = communicator_.all_reduce_sum_async(bucket.flat);
  bucket.launched = true;
}

void GradientSync::finish() {
  const auto start = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (; next_launch_ < buckets_.size(); ++next_launch_) launch(*buckets_[next_launch_]);
    armed_ = false;
  }
  torch::NoGradGuard no_grad;
  const double ranks = static_cast<double>(communicator_.world_size());
  for (auto& bucket : buckets_) {
    communicator_.wait(bucket->work, "gradient all-reduce");
    int64_t offset = 0;
    const int64_t flags_at = bucket->flat.numel() - static_cast<int64_t>(bucket->members.size());
    for (std::size_t k = 0; k < bucket->members.size(); ++k) {
      auto& parameter = parameters_[bucket->members[k]];
      const int64_t count = parameter.numel();
      auto mean = bucket->flat.slice(0, offset, offset + count).view(parameter.sizes()).div(ranks);
      offset += count;
      if (bucket->flat[flags_at + static_cast<int64_t>(k)].item<float>() == 0) continue;  // no rank had one
      if (parameter.grad().defined()) parameter.mutable_grad().copy_(mean);
      else parameter.mutable_grad() = mean.to(parameter.dtype()).contiguous(parameter.suggest_memory_format());
    }
    bucket->work.reset();
    bucket->flat = torch::Tensor();
  }
  last_wait_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace cprfl
