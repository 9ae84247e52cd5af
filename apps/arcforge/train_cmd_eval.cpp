// `arcforge eval`: the verification protocol on a checkpoint (held-out synth pairs for now).
#include <iostream>
#include <memory>
#include <thread>

#include "arcforge/eval/report_json.hpp"
#include "commands.hpp"
#include "train/train/checkpoint.hpp"
#include "train/train/embed.hpp"
#include "train/train/synth_batches.hpp"
#include "train/train/trainer.hpp"

namespace arcforge::cli {
namespace {

struct EvalArgs {
  std::string checkpoint;
  int64_t pairs = 0, identities = 0;
  int64_t seed = -1;
  std::string precision = "fp32", device = "auto";
  int threads = 0;
  bool json = false;
};

void run(const EvalArgs& a) {
  at::set_num_threads(a.threads > 0 ? a.threads
                                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  train::TrainConfig config;
  train::TrainModules modules = train::load_modules_from_checkpoint(a.checkpoint, &config);
  torch::Device device = train::resolve_device(a.device);
  modules.backbone->to(device);
  train::EvalConfig eval_config = config.eval;
  if (a.pairs > 0) eval_config.pairs = a.pairs;
  if (eval_config.pairs == 0) eval_config.pairs = 1000;
  if (a.identities > 0) eval_config.identities = a.identities;
  if (a.seed >= 0) eval_config.seed = static_cast<uint64_t>(a.seed);
  train::SynthBatches data(config.data, 1, 0);
  auto report = train::evaluate_synth(*modules.backbone, data.faces(), eval_config, device, a.precision);
  if (a.json) {
    std::cout << eval::to_json(report).dump() << std::endl;
    return;
  }
  std::printf("held-out synth pairs  %lld (synthetic faces, not real-face accuracy)\n",
              static_cast<long long>(report.pairs));
  std::printf("accuracy              %.4f +- %.4f\n", report.accuracy, report.accuracy_std);
  std::printf("threshold (cosine)    %.4f\n", report.threshold);
  std::printf("VAL @ FAR=1e-3        %.4f +- %.4f (FAR %.5f)\n", report.val_at_far, report.val_std, report.far);
  std::printf("AUC                   %.5f\nEER                   %.4f\n", report.auc, report.eer);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Verification accuracy of a checkpoint (10-fold protocol)");
  cmd->add_option("checkpoint", args->checkpoint, "Checkpoint file")->required();
  cmd->add_option("--pairs", args->pairs, "Number of held-out synth pairs");
  cmd->add_option("--identities", args->identities, "Held-out identities the pairs come from");
  cmd->add_option("--seed", args->seed, "Pair seed");
  cmd->add_option("--precision", args->precision, "fp32 | bf16 | fp16");
  cmd->add_option("--device", args->device, "auto | cpu | cuda");
  cmd->add_option("--threads", args->threads, "CPU threads (default all)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
