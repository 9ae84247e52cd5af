// `arcforge pack FOLDER OUT.rec` turns root/<identity>/<image> into InsightFace's train.rec/.idx;
// `arcforge unpack IN.rec OUT-FOLDER` writes the images back out as OUT/<label>/<key>.<ext>.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "arcforge/common/log.hpp"
#include "arcforge/data/image_folder.hpp"
#include "commands.hpp"

namespace arcforge::cli {
namespace {

struct PackArgs {
  std::string folder;
  std::string rec;
  bool json = false;
};

struct UnpackArgs {
  std::string rec;
  std::string out;
  bool json = false;
};

void run_pack(const PackArgs& a) {
  const data::ImageFolder folder = data::scan_image_folder(a.folder);
  if (folder.empty_identities_skipped > 0) {
    log::warn(log::cat(a.folder, ": skipped ", folder.empty_identities_skipped,
                       " identity folders without images"));
  }
  const data::PackSummary s = data::pack_image_folder(folder, a.rec);
  if (a.json) {
    const nlohmann::ordered_json out = {{"images", s.images},
                                        {"identities", s.identities},
                                        {"rec", s.rec},
                                        {"idx", s.idx},
                                        {"empty_identities_skipped", s.empty_identities_skipped}};
    std::cout << out.dump() << std::endl;
    return;
  }
  std::cout << "packed " << s.images << " images of " << s.identities << " identities into "
            << s.rec << " and " << s.idx << "\n";
}

void run_unpack(const UnpackArgs& a) {
  const data::UnpackSummary s = data::unpack_to_image_folder(a.rec, a.out);
  if (s.skipped_unknown_format > 0) {
    log::warn(log::cat(a.rec, ": skipped ", s.skipped_unknown_format,
                       " records whose bytes are not JPEG, PNG or WebP"));
  }
  if (a.json) {
    const nlohmann::ordered_json out = {{"images", s.images},
                                        {"classes", s.classes},
                                        {"skipped", s.skipped_unknown_format},
                                        {"out", s.out_dir}};
    std::cout << out.dump() << std::endl;
    return;
  }
  std::cout << "unpacked " << s.images << " images of " << s.classes << " classes into "
            << s.out_dir << "\n";
}

}  // namespace

void add_pack_commands(CLI::App& app) {
  auto pack = std::make_shared<PackArgs>();
  CLI::App* pack_cmd = app.add_subcommand(
      "pack", "Pack an image folder root/<identity>/<image> into InsightFace .rec + .idx");
  pack_cmd->add_option("folder", pack->folder, "Image folder root")->required();
  pack_cmd->add_option("rec", pack->rec, "Output .rec (the .idx is written next to it)")
      ->required();
  pack_cmd->add_flag("--json", pack->json, "Print one JSON object");
  pack_cmd->callback([pack] { run_pack(*pack); });

  auto unpack = std::make_shared<UnpackArgs>();
  CLI::App* unpack_cmd = app.add_subcommand(
      "unpack", "Write the images of a .rec out as OUT/<label>/<key>.<jpg|png|webp>");
  unpack_cmd->add_option("rec", unpack->rec, "Input .rec (its .idx next to it)")->required();
  unpack_cmd->add_option("out", unpack->out, "Output folder (must not exist or be empty)")
      ->required();
  unpack_cmd->add_flag("--json", unpack->json, "Print one JSON object");
  unpack_cmd->callback([unpack] { run_unpack(*unpack); });
}

}  // namespace arcforge::cli
