// `arcforge train`: trains a backbone + margin head from a TOML preset with command-line overrides.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "arcforge/eval/report_json.hpp"
#include "commands.hpp"
#include "train/dist/dist_env.hpp"
#include "train/dist/local_launcher.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/trainer.hpp"

namespace arcforge::cli {
namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string resume;
  std::string out, arch, margin, precision, device, profile;
  int64_t steps = 0, batch = 0;
  int threads = 0;
  int nproc = 0;
  bool json = false;
};

std::string percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * v);
  return buf;
}

// --nproc N: this process only starts the ranks (each runs the same command without --nproc).
int launch(const TrainArgs& a) {
  std::vector<std::string> argv;  // this process's command line, exactly as given
  {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(arg);
  }
  std::vector<std::string> args;
  for (size_t k = 0; k < argv.size(); ++k) {
    const std::string& arg = argv[k];
    if (arg == "--nproc") {
      ++k;  // and its value
      continue;
    }
    if (arg.rfind("--nproc=", 0) == 0) continue;
    args.push_back(arg);
  }
  // The cores are shared out unless the caller chose a thread count.
  if (a.threads == 0) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    args.push_back("--threads");
    args.push_back(std::to_string(std::max(1u, cores / static_cast<unsigned>(a.nproc))));
  }
  return train::dist::launch_local_ranks(a.nproc, args);
}

void run(const TrainArgs& a) {
  if (a.nproc > 1) {
    if (train::dist::dist_env_from_process().distributed())
      throw ConfigError("--nproc starts the ranks itself; do not combine it with RANK/WORLD_SIZE from a launcher");
    if (int code = launch(a); code != 0) throw CLI::RuntimeError(code);
    return;
  }
  // Shortcut flags are plain overrides, applied after the --set ones so that they win.
  std::vector<std::string> overrides = a.overrides;
  if (!a.out.empty()) overrides.push_back("checkpoint.dir=\"" + a.out + "\"");
  if (!a.arch.empty()) overrides.push_back("model.arch=\"" + a.arch + "\"");
  if (!a.margin.empty()) overrides.push_back("head.margin=\"" + a.margin + "\"");
  if (!a.precision.empty()) overrides.push_back("train.precision=\"" + a.precision + "\"");
  if (!a.device.empty()) overrides.push_back("train.device=\"" + a.device + "\"");
  if (a.steps > 0) overrides.push_back("train.steps=" + std::to_string(a.steps));
  if (a.batch > 0) overrides.push_back("train.batch_size=" + std::to_string(a.batch));
  if (!a.profile.empty()) overrides.push_back("log.profile=\"" + a.profile + "\"");
  if (a.threads > 0) overrides.push_back("train.threads=" + std::to_string(a.threads));

  std::string resume = a.resume;
  train::TrainConfig config;
  if (!resume.empty()) {
    // Resuming: the checkpoint's own config, with any overrides given now on top.
    if (resume == "latest") {
      train::TrainConfig base = train::load_config(a.config, overrides);
      resume = train::latest_checkpoint_path(base.checkpoint.dir);
    }
    // Killed between the renames of a save, only the previous checkpoint is there.
    const std::string existing = train::existing_checkpoint(resume);
    if (!std::filesystem::exists(existing))
      throw InputError(file_message(resume, "no checkpoint to resume from (nor " +
                                                train::previous_checkpoint_path(resume) + ")"));
    std::string saved = train::to_toml(train::read_checkpoint_config(existing));
    config = train::parse_config(saved, overrides, resume);
  } else {
    config = train::load_config(a.config, overrides);
  }

  train::TrainResult r = train::run_training(config, resume);
  if (train::dist::dist_env_from_process().rank != 0) return;  // the leader reports
  if (a.json) {
    nlohmann::json out{{"steps", r.steps},
                       {"steps_this_run", r.steps_this_run},
                       {"images_per_s", r.images_per_s},
                       {"final_loss", r.final_loss},
                       {"skipped_steps", r.skipped_steps},
                       {"checkpoint", r.checkpoint},
                       {"metrics", r.metrics},
                       {"device", r.device},
                       {"peak_device_memory_mb", r.peak_device_memory_mb},
                       {"peak_host_memory_mb", r.peak_host_memory_mb},
                       {"batch_size", config.train.batch_size},
                       {"arch", config.model.arch},
                       {"margin", config.margin_preset},
                       {"dataset", config.data.dataset},
                       {"precision", r.precision},
                       {"cuda_graph", config.train.cuda_graph}};
    if (r.eval_before) out["eval_before"] = eval::to_json(*r.eval_before);
    if (r.eval_after) out["eval_after"] = eval::to_json(*r.eval_after);
    for (const auto& [name, report] : r.eval_sets_after) out["eval_sets"][name] = eval::to_json(report);
    if (!r.phases.empty()) out["phase_ms"] = train::phase_json(r.phases);
    if (config.log.sync_check) out["sync_checked_steps"] = r.sync_checked_steps;
    std::cout << out.dump() << std::endl;
    return;
  }
  std::cout << "arch " << config.model.arch << ", margin " << config.margin_preset << ", precision "
            << r.precision << ", device " << r.device << "\n"
            << "steps            " << r.steps << " (" << r.steps_this_run << " this run, "
            << r.skipped_steps << " skipped)\n"
            << "images/s         " << r.images_per_s << "\n"
            << "final loss       " << r.final_loss << "\n";
  if (r.eval_before)
    std::cout << "held-out synth verification before training: " << percent(r.eval_before->accuracy)
              << " (AUC " << r.eval_before->auc << ")\n";
  if (r.eval_after)
    std::cout << "held-out synth verification after training:  " << percent(r.eval_after->accuracy)
              << " +- " << percent(r.eval_after->accuracy_std) << " (AUC " << r.eval_after->auc
              << ", " << r.eval_after->pairs << " pairs)\n";
  if (!r.phases.empty()) {
    std::cout << "step phases, ms per step (issued by the host / done on the device):\n";
    for (const auto& t : r.phases) std::printf("  %-20s %9.3f %9.3f\n", t.phase.c_str(), t.host_ms, t.done_ms);
  }
  std::cout << "checkpoint       " << r.checkpoint << "\nmetrics          " << r.metrics << "\n"
            << "(synthetic faces: these figures are not real-face accuracy)\n";
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train a backbone with a margin head");
  cmd->add_option("-c,--config", args->config, "TOML preset (configs/*.toml); defaults otherwise");
  cmd->add_option("-s,--set", args->overrides, "Override a key: section.key=value (repeatable)");
  cmd->add_option("--resume", args->resume, "Checkpoint to continue from, or 'latest'");
  cmd->add_option("--out", args->out, "Run directory (checkpoint.dir)");
  cmd->add_option("--arch", args->arch, "Backbone (model.arch)");
  cmd->add_option("--margin", args->margin, "Margin preset (head.margin)");
  cmd->add_option("--precision", args->precision, "fp32 | bf16 | fp16 | auto: bf16 where native (train.precision)");
  cmd->add_option("--device", args->device, "auto | cpu | cuda (train.device)");
  cmd->add_option("--steps", args->steps, "Optimizer steps (train.steps)");
  cmd->add_option("--batch", args->batch, "Batch size (train.batch_size)");
  cmd->add_option("--threads", args->threads, "CPU threads (train.threads; default all)");
  cmd->add_option("--profile", args->profile,
                  "Write a Chrome trace of log.profile_steps (2) steps after the warm-up to FILE (log.profile)");
  cmd->add_option("--nproc", args->nproc,
                  "Start N training processes on this machine (c10d Gloo; one GPU each on CUDA)");
  cmd->add_flag("--json", args->json, "Print one JSON object with the results");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
