// `arcforge bench-torch --arch r50`: times the trainable backbone itself on libtorch (eval mode,
// inference mode, CPU), the way `bench-model` times an ONNX file on the arcforge runtime: warm-up,
// then the median of repeated runs. bench/runtime/compare_all.sh puts it next to the ONNX engines.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "commands.hpp"
#include "train/nn/backbone.hpp"
#ifdef ARCFORGE_WITH_EXPORT
#include "train/export/batch_norm_calibration.hpp"
#endif

namespace arcforge::cli {
namespace {

constexpr int64_t kInputSide = 112;  // the backbones' heads need a 7x7 final map

struct BenchTorchArgs {
  std::string arch;
  int64_t batch = 1;
  int threads = 1;
  std::string precision = "fp32";
  int64_t embedding_size = 512;
  int warmup = 3;
  int repeats = 0;  // 0: as many as fit in about two seconds, at least 5
  uint64_t seed = 0;
  bool json = false;
};

torch::ScalarType parse_torch_precision(const std::string& text) {
  if (text == "fp32") return torch::kFloat;
  if (text == "bf16") return torch::kBFloat16;
  throw InputError("--precision: expected fp32 or bf16, got '" + text + "'");
}

// The backbone as `arcforge export --arch A --random-init --seed S` builds it (same weights, same
// batch-norm statistics), so the timing is of the same network the exported ONNX files hold.
// Without the export half (DEPLOY=OFF builds) the statistics stay at their initial values, whose
// activations fall into float denormals; flushing them keeps that from dominating the timing.
std::shared_ptr<nn::Backbone> build_backbone(const BenchTorchArgs& a, std::string& batch_norm) {
  torch::manual_seed(a.seed);
  nn::BackboneOptions options;
  options.arch = a.arch;
  options.embedding_size = a.embedding_size;
  std::shared_ptr<nn::Backbone> backbone = nn::make_backbone(options);
#ifdef ARCFORGE_WITH_EXPORT
  onnx_io::calibrate_batch_norm_statistics(*backbone, a.seed);
  batch_norm = "calibrated";
#else
  at::globalContext().setFlushDenormal(true);
  batch_norm = "initial (denormals flushed)";
#endif
  backbone->eval();
  return backbone;
}

void run(const BenchTorchArgs& a) {
  if (a.batch < 1 || a.batch > 4096) throw InputError("--batch must be in 1..4096");
  if (a.threads < 1) throw InputError("--threads must be >= 1");
  if (a.warmup < 0 || a.repeats < 0) throw InputError("--warmup and --repeats must be >= 0");
  const torch::ScalarType dtype = parse_torch_precision(a.precision);
  at::set_num_threads(a.threads);
  std::string batch_norm;
  std::shared_ptr<nn::Backbone> backbone = build_backbone(a, batch_norm);
  backbone->to(torch::kCPU, dtype);

  torch::InferenceMode inference;  // implies no gradients, and skips autograd's bookkeeping
  const torch::Tensor images =
      (torch::rand({a.batch, 3, kInputSide, kInputSide}, torch::kFloat) * 2.0 - 1.0).to(dtype);
  using clock = std::chrono::steady_clock;
  const auto first_start = clock::now();
  backbone->forward(images);  // oneDNN primitive creation, allocator warm-up
  const double first_ms = std::chrono::duration<double, std::milli>(clock::now() - first_start).count();
  for (int k = 0; k < a.warmup; ++k) backbone->forward(images);
  std::vector<double> times;
  const auto bench_start = clock::now();
  while (true) {
    const auto t0 = clock::now();
    const torch::Tensor out = backbone->forward(images);
    times.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
    const double elapsed = std::chrono::duration<double>(clock::now() - bench_start).count();
    if (a.repeats > 0 ? static_cast<int>(times.size()) >= a.repeats : (times.size() >= 5 && elapsed > 2.0)) break;
  }
  std::sort(times.begin(), times.end());
  const std::size_t n = times.size();
  const double median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  const double per_image = median / static_cast<double>(a.batch);
  if (a.json) {
    const nlohmann::ordered_json out = {{"arch", backbone->arch()},
                                       {"engine", "libtorch"},
                                       {"precision", a.precision},
                                       {"batch", a.batch},
                                       {"threads", a.threads},
                                       {"input_shape", {a.batch, 3, kInputSide, kInputSide}},
                                       {"batch_norm", batch_norm},
                                       {"ms_per_batch", median},
                                       {"ms_per_image", per_image},
                                       {"images_per_s", 1000.0 / per_image},
                                       {"first_run_ms", first_ms},
                                       {"repeats", n}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("libtorch %s: %s batch %lld, %d threads, %.3f ms/image, %.1f images/s (median of %zu runs; first run %.1f ms)\n",
                backbone->arch().c_str(), a.precision.c_str(), static_cast<long long>(a.batch), a.threads, per_image,
                1000.0 / per_image, n, first_ms);
  }
}

}  // namespace

void add_bench_torch_command(CLI::App& app) {
  auto args = std::make_shared<BenchTorchArgs>();
  CLI::App* cmd = app.add_subcommand("bench-torch", "Time a backbone on libtorch (CPU, eval mode, median of runs)");
  std::string names;
  for (const std::string& n : nn::backbone_names()) names += (names.empty() ? "" : " ") + n;
  cmd->add_option("--arch", args->arch, "Backbone: " + names)->required();
  cmd->add_option("--batch", args->batch, "Batch size (default 1)");
  cmd->add_option("--threads", args->threads, "CPU threads (default 1)");
  cmd->add_option("--precision", args->precision, "fp32 (default) or bf16 (weights and input cast)");
  cmd->add_option("--embedding-size", args->embedding_size, "Embedding size (default 512)");
  cmd->add_option("--seed", args->seed, "Seed of the weights, as `export --random-init --seed` (default 0)");
  cmd->add_option("--warmup", args->warmup, "Warm-up runs after the first (default 3)");
  cmd->add_option("--repeats", args->repeats, "Timed runs (default: about 2 s worth, at least 5)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
