// arcforge: one binary, one subcommand per job. Errors become one clear line and exit code 1.
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "arcforge/common/error.hpp"
#include "commands.hpp"
#ifdef ARCFORGE_WITH_DEPLOY
#include "face_cli.hpp"
#include "gallery_cli.hpp"
#include "serve_cli.hpp"
#endif
#ifdef ARCFORGE_TRAIN_BINARY_SPLIT
#include "train_binary.hpp"
#endif

int main(int argc, char** argv) {
  CLI::App app{"arcforge: train, evaluate, export and run ArcFace-style face recognition"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "arcforge 0.1.0");
  // Core commands (no libtorch), in every build.
  arcforge::cli::add_pack_commands(app);
  arcforge::cli::add_pack_bin_command(app);
#ifdef ARCFORGE_WITH_TRAIN
  arcforge::cli::add_model_info_command(app);
  arcforge::cli::add_bench_torch_command(app);
  arcforge::cli::add_train_command(app);
  arcforge::cli::add_reshard_command(app);
  arcforge::cli::add_synth_export_command(app);
  arcforge::cli::add_eval_command(app);
  arcforge::cli::add_check_device_command(app);
  arcforge::cli::add_augment_preview_command(app);
#endif
#if defined(ARCFORGE_WITH_TRAIN) && defined(ARCFORGE_WITH_EXPORT)
  arcforge::cli::add_export_command(app);
  arcforge::cli::add_import_command(app);
#endif
#ifdef ARCFORGE_WITH_DEPLOY
  arcforge::cli::add_bench_model_command(app);
  arcforge::cli::add_quantize_command(app);
  arcforge::cli::add_infer_command(app);
  arcforge::cli::add_detect_command(app);
  arcforge::cli::add_align_command(app);
  arcforge::cli::add_embed_command(app);
  arcforge::cli::add_verify_command(app);
  arcforge::cli::add_analyze_command(app);
  arcforge::cli::add_serve_command(app);
  arcforge::cli::add_gallery_command(app);
#if !defined(ARCFORGE_WITH_TRAIN) && !defined(ARCFORGE_TRAIN_BINARY_SPLIT)
  arcforge::cli::add_face_eval_command(app);  // the training build's eval covers photos too
#endif
#endif
#ifdef ARCFORGE_TRAIN_BINARY_SPLIT
  // This is the libtorch-free `arcforge` of a training build: what it does not hold runs in
  // `arcforge-train` (train_binary.hpp).
  if (arcforge::cli::belongs_to_train_binary(app, argc, argv)) {
    arcforge::cli::exec_train_binary(argv);
    return 1;
  }
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "arcforge: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
