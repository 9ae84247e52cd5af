// `arcforge reshard`: a checkpoint of W training processes into one for N (Partial FC's head
// shards re-cut by class; the rest copied).
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "train/dist/reshard.hpp"

namespace arcforge::cli {

void add_reshard_command(CLI::App& app) {
  struct Args {
    std::string checkpoint, out;
    int world = 0;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("reshard", "Convert a multi-process checkpoint to another world size");
  cmd->add_option("checkpoint", args->checkpoint, "Rank 0's checkpoint.pt (the other ranks' files beside it)")
      ->required();
  cmd->add_option("--world", args->world, "The new number of processes")->required();
  cmd->add_option("--out", args->out, "Run directory to write the new checkpoint files into")->required();
  cmd->add_flag("--json", args->json, "Print one JSON object with the files written");
  cmd->callback([args] {
    const auto files = train::dist::reshard_checkpoint(args->checkpoint, args->world, args->out);
    if (args->json) {
      std::cout << nlohmann::json{{"world_size", args->world}, {"files", files}}.dump() << std::endl;
      return;
    }
    for (const auto& f : files) std::cout << f << "\n";
  });
}

}  // namespace arcforge::cli
