// `arcforge synth-export`: a finite synth dataset written as an image folder (PNG), to pack into a
// .rec and train through the real-data loader (the same images as data.samples_per_identity).
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "train/data/synth_export.hpp"

namespace arcforge::cli {

void add_synth_export_command(CLI::App& app) {
  struct Args {
    std::string root;
    int64_t identities = 100, samples = 10;
    uint64_t seed = 0;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "synth-export", "Write synth faces as root/<identity>/<sample>.png (then `arcforge pack` makes a .rec)");
  cmd->add_option("root", args->root, "New folder to write")->required();
  cmd->add_option("--identities", args->identities, "Identities (data.num_identities)")->check(CLI::PositiveNumber);
  cmd->add_option("--samples", args->samples, "Images per identity (data.samples_per_identity)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", args->seed, "Dataset seed (data.seed)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] {
    const auto summary = data::export_synth_folder(data::SynthOptions{args->identities, args->seed, 112},
                                                   args->samples, args->root);
    if (args->json) {
      std::cout << nlohmann::json{{"root", args->root},
                                  {"identities", summary.identities},
                                  {"images", summary.images},
                                  {"bytes", summary.bytes}}
                       .dump()
                << std::endl;
      return;
    }
    std::cout << args->root << ": " << summary.images << " images of " << summary.identities << " identities, "
              << summary.bytes / 1024 << " KiB\n";
  });
}

}  // namespace arcforge::cli
