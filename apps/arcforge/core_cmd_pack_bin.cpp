// `arcforge pack-bin --pairs LIST [--root DIR] --out OUT.bin`: an InsightFace .bin verification file
// from a pair list (CSV or LFW pairs.txt): each pair's two image files, stored as they are, in pair
// order, with issame. `arcforge pack-bin --info FILE.bin` counts the pairs of an existing .bin.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/data/verification_set.hpp"
#include "commands.hpp"

namespace arcforge::cli {
namespace {

struct PackBinArgs {
  std::string pairs;
  std::string root;
  std::string out;
  std::string info;
  int protocol = 2;
  bool json = false;
};

void run_pack(const PackBinArgs& a) {
  if (a.out.empty()) throw InputError("pack-bin: --out is required with --pairs");
  const data::PairList list = data::read_pair_list(a.pairs, a.root);
  const std::vector<std::string> missing = data::missing_files(list);
  if (!missing.empty()) {
    std::string examples;
    for (size_t i = 0; i < missing.size() && i < 3; ++i) examples += (i ? ", " : "") + missing[i];
    throw InputError(file_message(a.pairs, std::to_string(missing.size()) + " of " + std::to_string(list.files.size()) +
                                               " images are missing (" + examples + (missing.size() > 3 ? ", ..." : "") +
                                               "); use --root to say where they are"));
  }
  // Each file is read once; a file used by several pairs is stored once per use, as .bin requires.
  std::vector<std::string> contents(list.files.size());
  for (size_t i = 0; i < list.files.size(); ++i) {
    contents[i] = read_file(list.files[i]);
    if (contents[i].empty()) throw InputError(file_message(list.files[i], "the image file is empty"));
  }
  data::VerificationSet set;
  set.images.reserve(2 * list.pairs.size());
  for (const auto& [x, y] : list.pairs) {
    set.images.push_back(contents[x]);
    set.images.push_back(contents[y]);
  }
  set.issame = list.same;
  data::write_bin(a.out, set, a.protocol);

  if (a.json) {
    const nlohmann::ordered_json out = {{"pairs", set.pair_count()},
                                       {"same", set.same_count()},
                                       {"images", static_cast<int64_t>(set.images.size())},
                                       {"out", a.out}};
    std::cout << out.dump() << std::endl;
    return;
  }
  std::cout << "wrote " << a.out << ": " << set.pair_count() << " pairs (" << set.same_count() << " same), "
            << set.images.size() << " images from " << list.files.size() << " files\n";
}

void run_info(const PackBinArgs& a) {
  const data::VerificationSet set = data::read_bin(a.info);
  if (a.json) {
    const nlohmann::ordered_json out = {{"pairs", set.pair_count()},
                                       {"same", set.same_count()},
                                       {"images", static_cast<int64_t>(set.images.size())}};
    std::cout << out.dump() << std::endl;
    return;
  }
  std::cout << a.info << ": " << set.pair_count() << " pairs (" << set.same_count() << " same, "
            << set.pair_count() - set.same_count() << " different), " << set.images.size() << " images\n";
}

}  // namespace

void add_pack_bin_command(CLI::App& app) {
  auto args = std::make_shared<PackBinArgs>();
  CLI::App* cmd = app.add_subcommand("pack-bin", "Write an InsightFace .bin verification file from a pair list, or inspect one");
  CLI::Option* pairs = cmd->add_option("--pairs", args->pairs, "Pair list: .csv (file_x,file_y,same) or LFW pairs.txt");
  cmd->add_option("--root", args->root, "Folder the list's image paths are relative to (default: the list's folder)");
  cmd->add_option("--out", args->out, "The .bin to write");
  cmd->add_option("--protocol", args->protocol,
                  "Pickle protocol: 2 (default; Python 2 str like the classic files) or 3/4 (Python 3 bytes)")
      ->check(CLI::IsMember({2, 3, 4}));
  CLI::Option* info = cmd->add_option("--info", args->info, "Count the pairs of this .bin instead of writing one");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  pairs->excludes(info);
  cmd->callback([args] {
    if (!args->info.empty()) {
      run_info(*args);
    } else if (!args->pairs.empty()) {
      run_pack(*args);
    } else {
      throw InputError("pack-bin: give --pairs LIST --out OUT.bin, or --info FILE.bin");
    }
  });
}

}  // namespace arcforge::cli
