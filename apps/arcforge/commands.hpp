#pragma once
// Each subcommand lives in its own file and registers itself on the CLI11 app. A command's run
// function returns the process exit code; library errors are turned into one line by main().
#include <CLI/CLI.hpp>

namespace arcforge::cli {

// Core commands (no libtorch), in every build.
void add_pack_commands(CLI::App& app);
void add_pack_bin_command(CLI::App& app);

#ifdef ARCFORGE_WITH_TRAIN
void add_model_info_command(CLI::App& app);
void add_bench_torch_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_reshard_command(CLI::App& app);
void add_synth_export_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_check_device_command(CLI::App& app);
void add_augment_preview_command(CLI::App& app);
#endif

#if defined(ARCFORGE_WITH_TRAIN) && defined(ARCFORGE_WITH_EXPORT)
void add_export_command(CLI::App& app);
void add_import_command(CLI::App& app);
#endif

#ifdef ARCFORGE_WITH_DEPLOY
void add_bench_model_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_infer_command(CLI::App& app);
void add_detect_command(CLI::App& app);
void add_align_command(CLI::App& app);
void add_embed_command(CLI::App& app);
void add_verify_command(CLI::App& app);
void add_analyze_command(CLI::App& app);
#endif

}  // namespace arcforge::cli
