#pragma once
// `cprfl train --nproc N`: a data-parallel run on this machine without Python. Starts N copies
// of this program (its command line without --nproc) with torchrun's environment — RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT —
// forwards SIGINT/SIGTERM to them, and when one fails stops the others.
#include <string>
#include <vector>

namespace cprfl {

// The command line without `--nproc N` / `--nproc=N` (argv[0] included).
std::vector<std::string> without_nproc(const std::vector<std::string>& args);

// This process's command line, from /proc/self/cmdline.
std::vector<std::string> own_command_line();

// Runs `args` (args[0] is replaced by this executable) as `nproc` workers and waits for them.
// Returns 0 when all succeed; else the first failure's exit code (128 + signal for a worker
// killed by a signal), after saying on stderr which rank failed and how; the other workers
// are sent SIGTERM, then SIGKILL after `grace_seconds`.
int launch_workers(int nproc, const std::vector<std::string>& args, int grace_seconds = 30);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
int free_loopback_port();

}  // namespace cprfl
