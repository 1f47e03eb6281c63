#include "cprfl/dist/communicator.h"

// c10d's headers declare each backend only where the build says it has it.
#define USE_C10D_GLOO 1
#ifdef CPRFL_WITH_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef CPRFL_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <map>
#include <sstream>

#include "cprfl/common/error.h"
#include "cprfl/common/torch_compat.h"

namespace cprfl {

// LibTorch 2.x split the process group into a front and per-device backends; the backends
// (ProcessGroupGloo, ProcessGroupNCCL) keep the collective calls 1.13's ProcessGroup had.
#if CPRFL_TORCH_AT_LEAST(2, 0)
using GroupBase = c10d::Backend;
#else
using GroupBase = c10d::ProcessGroup;
#endif

std::string Communicator::beat_key(int rank) const {
  return "cprfl/" + env_.attempt + "/heartbeat/" + std::to_string(rank);
}

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store, heartbeat_store;
  c10::intrusive_ptr<GroupBase> group;
};

std::string dist_backend_problem(const std::string& name) {
  if (name == "auto" || name == "gloo" || name == "nccl") return "";
  return "'" + name + "' is not one of auto, gloo, nccl";
}

bool dist_backend_available(const std::string& name) {
#ifdef CPRFL_WITH_NCCL
  if (name == "nccl") return true;
#endif
  return name == "gloo";
}

namespace {

constexpr auto kBeatInterval = std::chrono::milliseconds(500);


std::shared_ptr<::gloo::transport::Device> gloo_device(const DistEnvironment& env) {
  // GLOO_SOCKET_IFNAME picks the network interface, as in PyTorch; a loopback master means a
  // single machine; otherwise the interface this host name resolves to.
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface)
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

Communicator::Communicator(const DistEnvironment& env, const std::string& backend, std::chrono::milliseconds timeout)
    : env_(env), backend_(backend), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  if (!dist_backend_available(backend))
    throw Error("train.dist_backend: " + backend + " is not in this build" +
                (backend == "nccl" ? " (NCCL needs a CUDA LibTorch: scripts/setup.sh --torch pip on a GPU machine)" : ""));
  const std::string where = env.master_addr + ":" + std::to_string(env.store_port());
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(env.store_port());
    options.isServer = env.rank == 0;
    options.numWorkers = static_cast<std::size_t>(env.world_size);
    options.waitWorkers = true;
    options.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    c10d::TCPStoreOptions client = options;
    client.isServer = false;
    client.waitWorkers = false;
    impl_->heartbeat_store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, client);
  } catch (const std::exception& e) {
    throw Error("rendezvous at " + where + " (rank " + std::to_string(env.rank) + " of " +
                std::to_string(env.world_size) + ") failed: " + e.what());
  }
  auto prefixed =
      c10::make_intrusive<c10d::PrefixStore>("cprfl/" + env.attempt + "/" + backend + "/", impl_->store);
  try {
    if (backend == "gloo") {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      options->devices.push_back(gloo_device(env));
      impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, env.rank, env.world_size, options);
    }
#ifdef CPRFL_WITH_NCCL
    if (backend == "nccl") {
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, env.rank, env.world_size, options);
    }
#endif
  } catch (const std::exception& e) {
    throw Error("process group (" + backend + ", " + where + ", rank " + std::to_string(env.rank) + ") failed: " + e.what());
  }
  heartbeat_ = std::thread([this] {
    const std::string key = beat_key(env_.rank);
    while (!stopping_) {
      try {
        impl_->heartbeat_store->add(key, 1);
      } catch (const std::exception&) {
        return;  // the store's host (rank 0) is gone; the next collective says so
      }
      for (int i = 0; i < 5 && !stopping_; ++i) std::this_thread::sleep_for(kBeatInterval / 5);
    }
  });
}

Communicator::~Communicator() {
  stopping_ = true;
  if (heartbeat_.joinable()) heartbeat_.join();
}

c10::intrusive_ptr<c10d::Work> Communicator::all_reduce_sum_async(torch::Tensor& tensor) {
  std::vector<at::Tensor> tensors{tensor};
  return impl_->group->allreduce(tensors);
}

void Communicator::all_reduce_sum(torch::Tensor& tensor) { wait(all_reduce_sum_async(tensor), "all-reduce"); }

void Communicator::broadcast(torch::Tensor& tensor, int root) {
  std::vector<at::Tensor> tensors{tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  wait(impl_->group->broadcast(tensors, options), "broadcast");
}

torch::Tensor Communicator::all_gather_rows(const torch::Tensor& rows) {
  // The counts first, then every block padded to the largest, then the padding dropped.
  auto count = torch::tensor({rows.size(0)}, torch::kLong);
  std::vector<std::vector<at::Tensor>> counts(1);
  for (int r = 0; r < world_size(); ++r) counts[0].push_back(torch::empty({1}, torch::kLong));
  std::vector<at::Tensor> count_input{count};
  wait(impl_->group->allgather(counts, count_input), "all-gather");
  int64_t largest = 0;
  for (const auto& c : counts[0]) largest = std::max(largest, c.item<int64_t>());
  auto shape = rows.sizes().vec();
  shape[0] = largest;
  auto padded = torch::zeros(shape, rows.options());
  padded.slice(0, 0, rows.size(0)).copy_(rows);
  std::vector<std::vector<at::Tensor>> blocks(1);
  for (int r = 0; r < world_size(); ++r) blocks[0].push_back(torch::empty(shape, rows.options()));
  std::vector<at::Tensor> input{padded.contiguous()};
  wait(impl_->group->allgather(blocks, input), "all-gather");
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < world_size(); ++r) parts.push_back(blocks[0][r].slice(0, 0, counts[0][r].item<int64_t>()));
  return torch::cat(parts);
}

void broadcast_state(Communicator& communicator, torch::nn::Module& module, int root) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors = module.parameters();
  for (const auto& buffer : module.buffers()) tensors.push_back(buffer);
  std::map<torch::ScalarType, std::vector<torch::Tensor>> by_type;
  for (const auto& tensor : tensors)
    if (tensor.defined() && tensor.numel() > 0) by_type[tensor.scalar_type()].push_back(tensor);
  for (auto& [type, group] : by_type) {
    std::vector<torch::Tensor> flat;
    for (const auto& tensor : group) flat.push_back(tensor.reshape(-1));
    auto packed = torch::cat(flat);
    communicator.broadcast(packed, root);
    int64_t offset = 0;
    for (auto& tensor : group) {
      tensor.copy_(packed.slice(0, offset, offset + tensor.numel()).view(tensor.sizes()));
      offset += tensor.numel();
    }
  }
}

void Communicator::barrier() { wait(impl_->group->barrier(), "barrier"); }

std::vector<int> Communicator::silent_ranks() {
  // Two readings of every rank's beat counter, a few beats apart: whose did not move stopped.
  auto read = [&] {
    std::vector<int64_t> beats;
    for (int r = 0; r < world_size(); ++r) beats.push_back(impl_->heartbeat_store->add(beat_key(r), 0));
    return beats;
  };
  try {
    auto before = read();
    std::this_thread::sleep_for(kBeatInterval * 5);
    auto after = read();
    std::vector<int> silent;
    for (int r = 0; r < world_size(); ++r)
      if (r != rank() && after[r] == before[r]) silent.push_back(r);
    return silent;
  } catch (const std::exception&) {
    return {0};  // the store is unreachable: rank 0, its host, is gone
  }
}

std::string Communicator::explain_failure(const std::string& what, const std::string& detail) {
  std::ostringstream out;
  auto silent = silent_ranks();
  out << "distributed " << what << " failed on rank " << rank() << " of " << world_size();
  if (!silent.empty()) {
    out << ": rank";
    for (std::size_t i = 0; i < silent.size(); ++i) out << (i ? ", " : " ") << silent[i];
    out << (silent.size() > 1 ? " have" : " has") << " stopped (no heartbeat)";
  }
  out << " — " << detail;
  return out.str();
}

void Communicator::wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
  try {
    work->wait(timeout_);
  } catch (const std::exception& e) {
    std::string detail = e.what();
    detail = detail.substr(0, detail.find('\n'));
    throw Error(explain_failure(what, detail));
  }
}

}  // namespace cprfl
