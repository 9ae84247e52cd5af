#pragma once
// Running a model through ONNX Runtime (npm onnxruntime-node, tests/runtime/node/run_model.js) and
// locating the shared third-party models. Tests that need either skip loudly when it is missing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "arcforge/common/npy.hpp"
#include "arcforge/runtime/model.hpp"
#include "onnx_builder.hpp"

namespace arcforge::test {

inline std::string node_dir() { return std::string(ARCFORGE_SOURCE_DIR) + "/tests/runtime/node"; }

// Empty when ONNX Runtime cannot be run here; else the reason is in the skip message.
inline std::string ort_unavailable_reason() {
  if (std::system("node --version > /dev/null 2>&1") != 0) return "node is not on PATH";
  if (!std::filesystem::exists(node_dir() + "/node_modules/onnxruntime-node")) {
    return "onnxruntime-node is not installed in " + node_dir() + " (run scripts/setup-deploy-deps.sh)";
  }
  return "";
}

inline std::string shared_models_dir() {
  if (const char* env = std::getenv("ARCFORGE_SHARED_DIR")) return std::string(env) + "/models";
  return std::string(ARCFORGE_SOURCE_DIR) + "/../shared/models";
}

inline std::string quoted(const std::string& s) {
  std::string q(1, '\'');
  q += s;
  q += '\'';
  return q;
}

// Runs `model` on `inputs` with ONNX Runtime; returns its outputs in graph order. `optimization` is
// its graph optimization level ("disabled" runs the nodes as written).
inline std::vector<runtime::Tensor> run_onnxruntime(const std::string& model, const std::vector<runtime::Tensor>& inputs,
                                                    int threads = 1, const std::string& optimization = "all") {
  TempDir dir;
  std::string cmd = "node " + quoted(node_dir() + "/run_model.js") + " " + quoted(model) + " " + quoted(dir.file("out"));
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    std::string name = "in_";
    name += std::to_string(k);
    name += ".npy";
    const std::string f = dir.file(name);
    write_npy(f, inputs[k].shape, inputs[k].data.data());
    cmd += ' ';
    cmd += quoted(f);
  }
  cmd += " --threads " + std::to_string(threads) + " --optimization " + optimization + " 2> " + quoted(dir.file("stderr.txt"));
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream err(dir.file("stderr.txt"));
    std::stringstream ss;
    ss << err.rdbuf();
    throw std::runtime_error("onnxruntime failed: " + ss.str());
  }
  std::vector<runtime::Tensor> out;
  for (std::size_t k = 0;; ++k) {
    std::string name = "out/output_";
    name += std::to_string(k);
    name += ".npy";
    const std::string f = dir.file(name);
    if (!std::filesystem::exists(f)) break;
    NpyArray a = read_npy(f);
    out.push_back({a.shape, std::move(a.data)});
  }
  return out;
}

struct Difference {
  double max_abs = 0;  // max |a - b|
  double scale = 0;    // max |b|
};

inline Difference compare(const runtime::Tensor& ours, const runtime::Tensor& ref) {
  Difference d;
  for (std::size_t k = 0; k < ref.data.size() && k < ours.data.size(); ++k) {
    d.max_abs = std::max(d.max_abs, std::abs(static_cast<double>(ours.data[k]) - ref.data[k]));
    d.scale = std::max(d.scale, std::abs(static_cast<double>(ref.data[k])));
  }
  return d;
}

// Runs the model at `p` on x (2 threads): its first output, and the kernels of the steps that ran
// node `node`, joined with " + ". A step that ran node `absorbed` (one that should have been fused
// into another) fails the test.
inline std::pair<std::string, runtime::Tensor> run_naming_kernels(const std::string& path, runtime::Precision p,
                                                                  const runtime::Tensor& x, const std::string& node,
                                                                  const std::string& absorbed) {
  const auto model = runtime::Model::load(path, {.precision = p, .threads = 2});
  std::vector<runtime::StepTiming> steps;
  auto y = model.new_session().run({x}, steps);
  std::string kernel;
  for (const auto& step : steps) {
    EXPECT_NE(step.node, absorbed) << absorbed << " runs as a step of its own";
    if (step.node == node) kernel += (kernel.empty() ? "" : " + ") + step.kernel;
  }
  return {kernel, y.at(0)};
}

// Runs a model whose step `node` one of the runtime's own loops may take, then again with the loop's
// switch `loop_switch` (read when planning) set to 0, and checks which kernel ran that step: the
// first run `loop_kernel`, or no loop at all where `loop_kernel` is empty; the second no loop.
// `absorbed` (the activation after `node`) must run in the same step both times. Returns how far
// the first output lies from the second (oneDNN's).
inline Difference loop_against_onednn(const std::string& path, runtime::Precision p, const runtime::Tensor& x,
                                      const std::string& node, const std::string& absorbed,
                                      const char* loop_switch, const std::string& loop_kernel) {
  const auto [kernel, ours] = run_naming_kernels(path, p, x, node, absorbed);
  if (loop_kernel.empty()) {
    EXPECT_EQ(kernel.find("loop"), std::string::npos) << kernel;
  } else {
    EXPECT_EQ(kernel, loop_kernel);
  }
  ::setenv(loop_switch, "0", 1);
  const auto [onednn_kernel, theirs] = run_naming_kernels(path, p, x, node, absorbed);
  ::unsetenv(loop_switch);
  EXPECT_EQ(onednn_kernel.find("loop"), std::string::npos) << onednn_kernel;
  EXPECT_EQ(ours.shape, theirs.shape);
  if (ours.shape != theirs.shape) return {};
  return compare(ours, theirs);
}

}  // namespace arcforge::test

// Skips (loudly) a test of bf16 arithmetic where oneDNN has no bf16 convolutions: AVX2 and older
// CPUs run a bf16 request as fp32 (tested by Cli.Bf16RunsAsFp32WhereTheCpuHasNoBf16Convolutions).
#define REQUIRE_CPU_BF16()                                                                              \
  do {                                                                                                  \
    if (!arcforge::runtime::cpu_runs_bf16()) {                                                          \
      GTEST_SKIP() << "SKIPPED: oneDNN has no bf16 convolutions on this CPU (it needs AVX-512): bf16 " \
                      "runs as fp32 here";                                                              \
    }                                                                                                   \
  } while (0)

// Skips (loudly) a test that holds int8 results to the exact integer arithmetic where the CPU has no
// VNNI: there oneDNN sums u8 x s8 product pairs with 16-bit saturation.
#define REQUIRE_CPU_VNNI()                                                                               \
  do {                                                                                                   \
    if (!arcforge::runtime::cpu_has_int8_dot_product()) {                                                \
      GTEST_SKIP() << "SKIPPED: this CPU has no VNNI (int8 product pairs saturate at 16 bits in oneDNN)"; \
    }                                                                                                    \
  } while (0)
