#pragma once
// Who this process is in a data-parallel run, read the way PyTorch's launchers say it:
// torchrun (and `cprfl train --nproc N`) set RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT; under SLURM's srun, SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
// and SLURM_NTASKS_PER_NODE stand for the first four (MASTER_ADDR/MASTER_PORT still come from
// the job script). Without either, the process is the whole run (rank 0 of 1).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace cprfl {

struct DistEnvironment {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "none";  // "torchrun" | "slurm" | "none"
  // torchrun's agent already serves its own store on MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE=True).
  // cprfl does not join it — a LibTorch older than that torchrun's cannot speak its protocol and
  // hangs (measured: 1.13 against torch 2.15's torchrun) — but hosts its own on rank 0 at
  // MASTER_PORT + 1 (store_port()). The restart count keeps a restarted attempt's keys apart.
  bool agent_store = false;
  std::string attempt = "0";  // TORCHELASTIC_RESTART_COUNT

  bool distributed() const { return world_size > 1; }
  int store_port() const { return agent_store ? master_port + 1 : master_port; }
  bool is_main() const { return rank == 0; }
};

// Reads `lookup` (the process environment by default). A malformed or inconsistent variable
// is an error naming it (RANK=3 with WORLD_SIZE=2, a port out of range, ...).
DistEnvironment read_dist_environment(
    const std::function<std::optional<std::string>(const std::string&)>& lookup = nullptr);

}  // namespace cprfl
