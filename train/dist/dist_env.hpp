#pragma once
// Who this process is in a multi-process run, read from the launcher's environment:
//   torchrun / arcforge train --nproc:  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
//   SLURM (srun):                       SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
//   Open MPI (mpirun):                  OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK
//   MPICH / Intel MPI:                  PMI_RANK, PMI_SIZE (MPI_LOCALRANKID)
// The rendezvous address always comes from MASTER_ADDR/MASTER_PORT (as torchrun and InsightFace's
// SLURM scripts set them; default 127.0.0.1:29500, one machine); with none of these variables the
// run is a single process.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace arcforge::train::dist {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string launcher = "single";  // single | torchrun | slurm | mpi

  bool distributed() const { return world_size > 1; }
};

// Reads the variables through `get` (tests pass a map); throws ConfigError naming the variable
// when one is malformed or inconsistent (rank outside [0, world_size), a port out of range).
DistEnv dist_env_from(const std::function<std::optional<std::string>(const std::string&)>& get);
DistEnv dist_env_from_process();

}  // namespace arcforge::train::dist
