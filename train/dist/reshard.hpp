#pragma once
// `arcforge reshard`: converts the checkpoint of a run of W processes into one for N processes.
// The backbone, margin buffers, counters and the backbone's optimizer state are every rank's
// (rank 0's copy is taken); the head's class centres and their optimizer state (SGD momentum, AdamW
// moments) are concatenated in class order and cut again with arcface_torch's split.
#include <string>
#include <vector>

namespace arcforge::train::dist {

// `checkpoint`: rank 0's file of the run (the others beside it, checkpoint.rank<r>.pt). Writes
// <out_dir>/checkpoint.pt and checkpoint.rank<r>.pt for r < new_world_size and returns their
// paths; the stored config's checkpoint.dir becomes out_dir. The CPU random state is rank 0's.
// When a run stopped while saving left the ranks' files at different steps, the newest step every
// rank holds (current or checkpoint.prev*.pt) is taken, with a warning, as resume does.
// Throws InputError naming the file when a rank's file is missing, the ranks share no step, or a
// file is from another run.
std::vector<std::string> reshard_checkpoint(const std::string& checkpoint, int new_world_size,
                                            const std::string& out_dir);

}  // namespace arcforge::train::dist
