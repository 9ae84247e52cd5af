#pragma once
// Shared by the export tests (test_export.cpp, test_vit_export.cpp): randomised backbones, the
// double-precision libtorch reference, running a file through arcforge's runtime, and the gap
// between two outputs relative to the reference's scale.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/common/npy.hpp"
#include "arcforge/runtime/model.hpp"
#include "train/export/onnx_writer.hpp"
#include "train/nn/backbone.hpp"

namespace arcforge_export_test {

namespace io = arcforge::onnx_io;
namespace an = arcforge::nn;
namespace fs = std::filesystem;

constexpr double kTolerance = 1e-4;  // max abs diff / output scale (the parity bar)

class TempDir {
 public:
  TempDir() {
    static std::mt19937_64 gen(std::random_device{}());
    path_ = fs::temp_directory_path() / ("arcforge_export_" + std::to_string(gen()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Converts parameters and floating-point buffers in place (counters stay int64).
inline void set_dtype(an::Backbone& b, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  for (auto& p : b.parameters()) p.set_data(p.detach().to(dtype));
  for (auto& t : b.buffers()) {
    if (t.is_floating_point()) t.set_data(t.to(dtype));
  }
}

// Random BN affine parameters and PReLU slopes, then running statistics taken from one batch
// (momentum 1 in train mode), so every batch norm normalises like a trained one.
inline void randomise(an::Backbone& b, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto uniform = [&](torch::Tensor t, double lo, double hi) {
    torch::NoGradGuard no_grad;
    t.copy_(torch::rand(t.sizes(), gen) * (hi - lo) + lo);
  };
  for (const auto& m : b.modules(false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      uniform(bn->weight, 0.5, 1.5);
      uniform(bn->bias, -0.3, 0.3);
      bn->options.momentum(1.0);
    } else if (auto* bn1 = m->as<torch::nn::BatchNorm1d>()) {
      uniform(bn1->weight, 0.5, 1.5);
      uniform(bn1->bias, -0.3, 0.3);
      bn1->options.momentum(1.0);
    } else if (auto* prelu = m->as<torch::nn::PReLU>()) {
      uniform(prelu->weight, 0.0, 0.4);
    } else if (auto* ln = m->as<torch::nn::LayerNorm>()) {
      uniform(ln->weight, 0.5, 1.5);
      uniform(ln->bias, -0.3, 0.3);
    } else if (auto* linear = m->as<torch::nn::Linear>()) {
      if (linear->options.bias()) uniform(linear->bias, -0.1, 0.1);
    }
  }
  b.train();
  {
    torch::NoGradGuard no_grad;
    b.forward(torch::rand({4, 3, 112, 112}, gen) * 2 - 1);
  }
  for (const auto& m : b.modules(false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) bn->options.momentum(0.1);
    if (auto* bn1 = m->as<torch::nn::BatchNorm1d>()) bn1->options.momentum(0.1);
  }
  b.eval();
}

inline std::shared_ptr<an::Backbone> build(const std::string& arch, int64_t embedding, uint64_t seed) {
  torch::manual_seed(seed);
  an::BackboneOptions o;
  o.arch = arch;
  o.embedding_size = embedding;
  auto b = an::make_backbone(o);
  randomise(*b, seed + 1000);
  return b;
}

inline torch::Tensor images(int64_t batch, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::rand({batch, 3, 112, 112}, gen) * 2 - 1;
}

// The reference: libtorch's eval-mode forward of the same module, in double precision.
inline torch::Tensor reference(an::Backbone& b, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  b.eval();
  set_dtype(b, torch::kDouble);
  torch::Tensor y = b.forward(x.to(torch::kDouble));
  set_dtype(b, torch::kFloat);
  return y;
}

inline arcforge::runtime::Tensor runtime_tensor(const torch::Tensor& x) {
  arcforge::runtime::Tensor in;
  in.shape = std::vector<int64_t>(x.sizes().begin(), x.sizes().end());
  const torch::Tensor c = x.to(torch::kFloat).contiguous();
  in.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return in;
}

inline torch::Tensor run_runtime(const arcforge::runtime::Model& model, const torch::Tensor& x) {
  const auto out = model.run({runtime_tensor(x)});
  at::set_num_threads(2);  // the runtime sets the OpenMP team size of this thread
  return torch::tensor(out.at(0).data).view(out.at(0).shape);
}

inline torch::Tensor run_runtime(const std::string& onnx, const torch::Tensor& x) {
  return run_runtime(arcforge::runtime::Model::load(onnx, {.threads = 2}), x);
}

struct Gap {
  double max_abs = 0, scale = 0;
  double relative() const { return max_abs / scale; }
};

inline Gap gap(const torch::Tensor& got, const torch::Tensor& want) {
  EXPECT_EQ(got.sizes(), want.sizes());
  const torch::Tensor g = got.to(torch::kDouble), w = want.to(torch::kDouble);
  return {(g - w).abs().max().item<double>(), w.abs().max().item<double>()};
}

inline int count_batch_norms(an::Backbone& b) {
  int n = 0;
  for (const auto& m : b.modules(false)) {
    if (m->as<torch::nn::BatchNorm2d>() || m->as<torch::nn::BatchNorm1d>()) ++n;
  }
  return n;
}

// A randomised backbone, a batch of 3 images and the reference outputs on it.
struct Subject {
  std::shared_ptr<an::Backbone> model;
  torch::Tensor x;         // [3,3,112,112]
  torch::Tensor expected;  // double reference [3,E]
};

inline Subject make_subject(const std::string& arch) {
  Subject s;
  s.model = build(arch, 64, 11);
  s.x = images(3, 5);
  s.expected = reference(*s.model, s.x);
  return s;
}

inline std::shared_ptr<an::Backbone> plain(const std::string& arch, int64_t embedding, uint64_t seed) {
  torch::manual_seed(seed);
  return an::make_backbone({arch, embedding});
}

inline std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const arcforge::InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError";
  return "";
}

// The last line of a command's output that is a JSON object (the CLI's --json result).
inline nlohmann::json last_json_line(const std::string& text) {
  const size_t start = text.rfind("\n{");
  return nlohmann::json::parse(text.substr(start == std::string::npos ? 0 : start + 1));
}

// Why ONNX Runtime (node + onnxruntime-node, installed by the test set-up) cannot run here, or "".
inline std::string onnxruntime_unavailable() {
  const std::string node_dir = std::string(ARCFORGE_SOURCE_DIR) + "/tests/runtime/node";
  if (std::system("node --version > /dev/null 2>&1") != 0) return "node is not on PATH";
  if (!fs::exists(node_dir + "/node_modules/onnxruntime-node")) {
    return "onnxruntime-node is not installed in " + node_dir + " (scripts/setup-deploy-deps.sh)";
  }
  return "";
}

// `x` through ONNX Runtime (2 threads); files go to `dir`.
inline torch::Tensor run_onnxruntime(const std::string& onnx, const torch::Tensor& x, const TempDir& dir) {
  const std::string node_dir = std::string(ARCFORGE_SOURCE_DIR) + "/tests/runtime/node";
  const torch::Tensor c = x.to(torch::kFloat).contiguous();
  arcforge::write_npy(dir.file("ort_in.npy"), std::vector<int64_t>(c.sizes().begin(), c.sizes().end()), c.data_ptr<float>());
  const std::string cmd = "node '" + node_dir + "/run_model.js' '" + onnx + "' '" + dir.file("ort_out") + "' '" +
                          dir.file("ort_in.npy") + "' --threads 2";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const arcforge::NpyArray out = arcforge::read_npy(dir.file("ort_out/output_0.npy"));
  return torch::tensor(out.data).view(out.shape);
}

// ONNX Runtime on `onnx` against the double reference: prints the gap as a figure and checks the
// parity bar. Skips the calling test (after its other checks) where ONNX Runtime is unavailable.
#define EXPECT_ONNXRUNTIME_MATCHES(onnx, x, expected, dir, label)                                              \
  do {                                                                                                         \
    const std::string why_ = onnxruntime_unavailable();                                                        \
    if (!why_.empty()) GTEST_SKIP() << why_;                                                                   \
    const Gap g_ = gap(run_onnxruntime(onnx, x, dir), expected);                                               \
    std::printf("[figures] %s: ONNX Runtime vs libtorch(double) max abs diff %.3g, output scale %.3g\n", label, \
                g_.max_abs, g_.scale);                                                                         \
    EXPECT_LT(g_.relative(), kTolerance);                                                                      \
  } while (0)

}  // namespace arcforge_export_test
