#include "train/dist/dist_env.hpp"

#include <cstdlib>

#include "arcforge/common/error.hpp"

namespace arcforge::train::dist {
namespace {

using Getter = std::function<std::optional<std::string>(const std::string&)>;

int read_int(const Getter& get, const std::string& name, int lo, int hi) {
  const std::string text = *get(name);
  size_t used = 0;
  long value = 0;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < lo || value > hi)
    throw ConfigError("environment variable " + name + "='" + text + "' must be an integer in [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(value);
}

// The first of the (rank, size, local rank) variable triples that is set names the launcher.
struct Convention {
  const char* launcher;
  const char* rank;
  const char* size;
  const char* local_rank;
};
constexpr Convention kConventions[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
    {"mpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"mpi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
};

}  // namespace

DistEnv dist_env_from(const Getter& get) {
  DistEnv env;
  for (const Convention& c : kConventions) {
    if (!get(c.rank) || !get(c.size)) continue;
    env.launcher = c.launcher;
    env.world_size = read_int(get, c.size, 1, 1 << 20);
    env.rank = read_int(get, c.rank, 0, env.world_size - 1);
    env.local_rank = get(c.local_rank) ? read_int(get, c.local_rank, 0, env.world_size - 1) : 0;
    break;
  }
  if (get("MASTER_ADDR") && !get("MASTER_ADDR")->empty()) env.master_addr = *get("MASTER_ADDR");
  if (get("MASTER_PORT")) env.master_port = read_int(get, "MASTER_PORT", 1, 65535);
  return env;
}

DistEnv dist_env_from_process() {
  return dist_env_from([](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace arcforge::train::dist
