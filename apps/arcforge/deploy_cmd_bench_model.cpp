// `arcforge bench-model MODEL.onnx`: times a model on the arcforge runtime the way
// onnxruntime_perf_test does: build the plan, warm up, then the median of repeated runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/cpu/isa.hpp"
#include "arcforge/runtime/model.hpp"
#include "commands.hpp"

namespace arcforge::cli {
namespace {

struct BenchArgs {
  std::string model;
  int64_t batch = 1;
  int threads = 0;
  std::string input_size;
  std::string precision = "fp32";
  int warmup = 3;
  int repeats = 0;  // 0: as many as fit in about two seconds, at least 5
  std::string profile;  // Chrome trace of one more run, step by step
  int micro_batch = 0;  // Options::micro_batch: 0 the runtime's choice, -1 the whole batch at once
  bool json = false;
};

std::pair<int64_t, int64_t> parse_hw(const std::string& text) {
  const auto x = text.find('x');
  auto side = [&](const std::string& s) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (s.empty() || used != s.size() || v < 1 || v > 8192) {
      throw InputError("--input-size: expected HxW with sides in 1..8192, got '" + text + "'");
    }
    return static_cast<int64_t>(v);
  };
  if (x == std::string::npos) throw InputError("--input-size: expected HxW, got '" + text + "'");
  return {side(text.substr(0, x)), side(text.substr(x + 1))};
}

// The input shape: the model's declared shape with the batch and (optionally) H, W filled in.
std::vector<int64_t> input_shape(const runtime::TensorInfo& info, const BenchArgs& a) {
  std::vector<int64_t> shape = info.shape;
  if (shape.empty()) throw InputError(a.model + ": input '" + info.name + "' has no declared shape");
  auto set = [&](std::size_t axis, int64_t value, const std::string& flag) {
    if (shape[axis] >= 0 && shape[axis] != value) {
      throw InputError(a.model + ": input '" + info.name + "' has a fixed " + flag + " of " + std::to_string(shape[axis]) +
                       ", cannot use " + std::to_string(value));
    }
    shape[axis] = value;
  };
  set(0, a.batch, "batch");
  if (!a.input_size.empty()) {
    if (shape.size() != 4) throw InputError(a.model + ": --input-size needs an NCHW input");
    const auto [h, w] = parse_hw(a.input_size);
    set(2, h, "height");
    set(3, w, "width");
  }
  for (int64_t d : shape) {
    if (d < 0) throw InputError(a.model + ": input '" + info.name + "' has dynamic dimensions: pass --input-size HxW");
  }
  return shape;
}

// One profiled run as a Chrome trace (chrome://tracing, Perfetto), like ONNX Runtime's profile: an
// array of complete events ("ph": "X") in microseconds, one per executed step. Returns the summary
// that --json reports: the file, the step count, the summed step time and the five slowest steps.
nlohmann::json write_profile(runtime::Session& session, const std::vector<runtime::Tensor>& inputs,
                             const std::string& path) {
  std::vector<runtime::StepTiming> steps;
  session.run(inputs, steps);
  nlohmann::json trace = nlohmann::json::array();
  double total_ms = 0;
  for (const auto& step : steps) {
    trace.push_back({{"cat", "Node"}, {"name", step.node}, {"ph", "X"}, {"pid", 0}, {"tid", 0},
                     {"ts", step.start_ms * 1000.0}, {"dur", step.ms * 1000.0}, {"args", {{"kernel", step.kernel}}}});
    total_ms += step.ms;
  }
  write_file_atomically(path, trace.dump(1) + "\n");
  std::vector<runtime::StepTiming> slowest = steps;
  std::sort(slowest.begin(), slowest.end(), [](const auto& x, const auto& y) { return x.ms > y.ms; });
  slowest.resize(std::min<std::size_t>(slowest.size(), 5));
  nlohmann::json top = nlohmann::json::array();
  for (const auto& step : slowest) top.push_back({{"node", step.node}, {"kernel", step.kernel}, {"ms", step.ms}});
  return {{"file", path}, {"steps", steps.size()}, {"ms", total_ms}, {"slowest", top}};
}

void run(const BenchArgs& a) {
  if (a.batch < 1 || a.batch > 4096) throw InputError("--batch must be in 1..4096");
  if (a.threads < 0) throw InputError("--threads must be >= 0");
  if (a.warmup < 0 || a.repeats < 0) throw InputError("--warmup and --repeats must be >= 0");
  if (a.micro_batch < -1) throw InputError("--micro-batch must be -1, 0 or a number of images");
  runtime::Options options;
  options.precision = runtime::parse_precision(a.precision);
  options.threads = a.threads;
  options.micro_batch = a.micro_batch;
  const auto model = runtime::Model::load(a.model, options);
  std::vector<runtime::Tensor> inputs;
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const auto& info : model.inputs()) {
    runtime::Tensor t;
    t.shape = input_shape(info, a);
    t.data.resize(static_cast<std::size_t>(t.numel()));
    for (auto& v : t.data) v = dist(gen);
    inputs.push_back(std::move(t));
  }
  auto session = model.new_session();
  using clock = std::chrono::steady_clock;
  const auto plan_start = clock::now();
  session.run(inputs);  // builds the plan and packs the weights
  const double first_ms = std::chrono::duration<double, std::milli>(clock::now() - plan_start).count();
  for (int k = 0; k < a.warmup; ++k) session.run(inputs);
  std::vector<double> times;
  const auto bench_start = clock::now();
  while (true) {
    const auto t0 = clock::now();
    session.run(inputs);
    times.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
    const double elapsed = std::chrono::duration<double>(clock::now() - bench_start).count();
    if (a.repeats > 0 ? static_cast<int>(times.size()) >= a.repeats : (times.size() >= 5 && elapsed > 2.0)) break;
  }
  std::sort(times.begin(), times.end());
  const std::size_t n = times.size();
  const double median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  const double per_image = median / static_cast<double>(a.batch);
  const int threads = a.threads > 0 ? a.threads : -1;
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& t : inputs) shapes.push_back(t.shape);
  nlohmann::json out = {{"model", a.model},
                        {"precision", runtime::to_string(model.options().precision)},  // as it ran
                        {"requested_precision", runtime::to_string(options.precision)},
                        {"batch", a.batch},
                        {"threads", threads > 0 ? nlohmann::json(threads) : nlohmann::json("all")},
                        {"input_shape", inputs.at(0).shape},
                        {"ms_per_batch", median},
                        {"ms_per_image", per_image},
                        {"images_per_s", 1000.0 / per_image},
                        {"first_run_ms", first_ms},
                        {"repeats", n},
                        {"micro_batch", session.micro_batch(shapes)},
                        {"arena_bytes", session.arena_bytes(shapes)},
                        {"onednn_isa", runtime::onednn_isa_name()},
                        {"kernel_isa", cpu::cpu_kernel_isa_name(cpu::cpu_kernel_active_isa())}};
  if (!a.profile.empty()) out["profile"] = write_profile(session, inputs, a.profile);
  if (a.json) {
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  std::printf("%s: %s batch %lld (%lld images per pass), %.3f ms/image, %.1f images/s "
              "(median of %zu runs; first run %.1f ms)\n",
              a.model.c_str(), runtime::to_string(model.options().precision).c_str(), static_cast<long long>(a.batch),
              static_cast<long long>(session.micro_batch(shapes)), per_image, 1000.0 / per_image, n, first_ms);
  if (out.contains("profile")) {
    const auto& p = out["profile"];
    std::printf("profile: %zu steps, %.3f ms in one run, written to %s; slowest:\n", p["steps"].get<std::size_t>(),
                p["ms"].get<double>(), a.profile.c_str());
    for (const auto& step : p["slowest"])
      std::printf("  %8.3f ms  %-16s %s\n", step["ms"].get<double>(), step["kernel"].get<std::string>().c_str(),
                  step["node"].get<std::string>().c_str());
  }
}

}  // namespace

void add_bench_model_command(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench-model", "Time an ONNX model on the arcforge runtime (median of runs)");
  cmd->add_option("model", args->model, "ONNX model file")->required();
  cmd->add_option("--batch", args->batch, "Batch size (default 1)");
  cmd->add_option("--threads", args->threads, "CPU threads (default: all cores)");
  cmd->add_option("--input-size", args->input_size, "Input HxW for models with dynamic height/width");
  cmd->add_option("--precision", args->precision,
                  "fp32 (default), bf16, auto (bf16 where this CPU runs it faster than fp32), int8 (a QDQ model "
                  "from `arcforge quantize`), int8+bf16 (int8, and what the model keeps in float in bf16), or int8+auto "
                  "(int8+bf16 where bf16 is faster here, else int8)");
  cmd->add_option("--micro-batch", args->micro_batch,
                  "Images per pass for a larger batch: 0 (default) the runtime's choice, -1 the whole batch at once, "
                  "N at most N (where the model computes each image alone)");
  cmd->add_option("--warmup", args->warmup, "Warm-up runs after the first (default 3)");
  cmd->add_option("--repeats", args->repeats, "Timed runs (default: about 2 s worth, at least 5)");
  cmd->add_option("--profile", args->profile,
                  "Then time one more run step by step and write it to FILE as a Chrome trace (JSON)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
