#pragma once
// The processes of one data-parallel run talking to each other through LibTorch's own
// distributed layer (c10d): a TCPStore on MASTER_ADDR:MASTER_PORT for the rendezvous (rank 0
// hosts it), and a process group over it — Gloo on the CPU, NCCL for CUDA tensors where the
// LibTorch build has it. Every rank must make the same calls in the same order.
//
// Faults: every collective gives up after `timeout`; each rank also beats a heartbeat into
// the store, so that when a collective fails the survivors can say which rank stopped.
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cprfl/dist/environment.h"

namespace c10d {
class Work;
}  // namespace c10d

namespace cprfl {

// "gloo" | "nccl" | "auto" (NCCL for a CUDA run, else Gloo); empty when the name is known.
std::string dist_backend_problem(const std::string& name);
// Whether this build can make the backend ("gloo": always; "nccl": a CUDA LibTorch with NCCL).
bool dist_backend_available(const std::string& name);

class Communicator {
 public:
  // Joins the run: blocks until all `env.world_size` ranks have arrived, or throws after
  // `timeout` naming the address waited on.
  Communicator(const DistEnvironment& env, const std::string& backend, std::chrono::milliseconds timeout);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  const std::string& backend() const { return backend_; }

  // Sums `tensor` over the ranks in place; the returned work finishes it (wait()).
  c10::intrusive_ptr<c10d::Work> all_reduce_sum_async(torch::Tensor& tensor);
  void all_reduce_sum(torch::Tensor& tensor);
  // Overwrites every rank's `tensor` with rank `root`'s.
  void broadcast(torch::Tensor& tensor, int root = 0);
  // The ranks' row blocks [n_r, ...] stacked in rank order (n_r may differ between ranks).
  torch::Tensor all_gather_rows(const torch::Tensor& rows);
  void barrier();

  // Waits for `work`; a failure (a rank died, the timeout passed) becomes a cprfl::Error that
  // names the rank which stopped beating, when one did.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what);
  // The same message for an exception caught elsewhere around a collective.
  std::string explain_failure(const std::string& what, const std::string& detail);

 private:
  struct Impl;  // the c10d objects (their classes differ between LibTorch 1.13 and 2.x)
  std::vector<int> silent_ranks();
  std::string beat_key(int rank) const;

  DistEnvironment env_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> stopping_{false};
  std::thread heartbeat_;
};

// Every parameter and buffer of `module` overwritten with rank `root`'s (one collective per
// number type: the tensors travel flattened together).
void broadcast_state(Communicator& communicator, torch::nn::Module& module, int root = 0);

}  // namespace cprfl
