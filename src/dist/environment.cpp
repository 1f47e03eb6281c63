#include "cprfl/dist/environment.h"

#include <cerrno>
#include <cstdlib>

#include "cprfl/common/error.h"

namespace cprfl {
namespace {

std::optional<std::string> from_process(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

int parse_int(const std::string& name, const std::string& text, long low, long high) {
  errno = 0;
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < low || value > high)
    throw Error("environment variable " + name + "='" + text + "': expected a whole number from " +
                std::to_string(low) + " to " + std::to_string(high));
  return static_cast<int>(value);
}

}  // namespace

DistEnvironment read_dist_environment(
    const std::function<std::optional<std::string>(const std::string&)>& lookup_or_null) {
  const auto lookup = lookup_or_null ? lookup_or_null : from_process;
  DistEnvironment env;
  // torchrun's names first; SLURM's only where torchrun's are absent.
  struct Role {
    const char* torchrun;
    const char* slurm;
  };
  const Role rank{"RANK", "SLURM_PROCID"}, world{"WORLD_SIZE", "SLURM_NTASKS"}, local{"LOCAL_RANK", "SLURM_LOCALID"},
      local_world{"LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"};
  const bool torchrun = lookup(world.torchrun).has_value();
  const bool slurm = !torchrun && lookup(world.slurm).has_value() && lookup(rank.slurm).has_value();
  if (!torchrun && !slurm) return env;
  env.source = torchrun ? "torchrun" : "slurm";
  auto read = [&](const Role& role, int fallback, long low, long high, bool required) {
    const char* name = torchrun ? role.torchrun : role.slurm;
    auto value = lookup(name);
    if (!value) {
      if (required) throw Error(std::string("environment variable ") + name + " is missing (" + env.source +
                                " sets " + (torchrun ? world.torchrun : world.slurm) + ", so it must set " + name + ")");
      return fallback;
    }
    // SLURM_NTASKS_PER_NODE may read "2(x3)": the count before the parenthesis.
    std::string text = *value;
    if (!torchrun) text = text.substr(0, text.find('('));
    return parse_int(name, text, low, high);
  };
  env.world_size = read(world, 1, 1, 1 << 20, true);
  env.rank = read(rank, 0, 0, env.world_size - 1, true);
  env.local_rank = read(local, 0, 0, env.world_size - 1, false);
  env.local_world_size = read(local_world, env.world_size, 1, env.world_size, false);
  if (env.local_rank >= env.local_world_size)
    throw Error("environment: local rank " + std::to_string(env.local_rank) + " is not below the local world size " +
                std::to_string(env.local_world_size));
  if (auto addr = lookup("MASTER_ADDR")) env.master_addr = *addr;
  else if (env.world_size > 1 && slurm)
    throw Error("environment variable MASTER_ADDR is missing: under SLURM set it to the first node's host name "
                "(e.g. MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1))");
  if (env.master_addr.empty()) throw Error("environment variable MASTER_ADDR is empty");
  if (auto port = lookup("MASTER_PORT")) env.master_port = parse_int("MASTER_PORT", *port, 1, 65535);
  if (auto agent = lookup("TORCHELASTIC_USE_AGENT_STORE")) env.agent_store = *agent == "True" || *agent == "1";
  if (env.agent_store && env.master_port == 65535)
    throw Error("environment variable MASTER_PORT=65535: cprfl's store needs the next port (MASTER_PORT + 1)");
  if (auto attempt = lookup("TORCHELASTIC_RESTART_COUNT")) env.attempt = *attempt;
  return env;
}

}  // namespace cprfl
