#pragma once
// `arcforge train --nproc N`: starts N copies of this program on this machine as ranks 0..N-1,
// with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and a free
// MASTER_PORT), and waits for them. When one rank fails the others are stopped (as torchrun
// does) and its exit status is returned; 0 when all succeed.
#include <string>
#include <vector>

namespace arcforge::train::dist {

// args: the full command line for each rank, args[0] ignored (this executable runs).
int launch_local_ranks(int nproc, const std::vector<std::string>& args);

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_local_port();

}  // namespace arcforge::train::dist
