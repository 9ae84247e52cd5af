// `arcforge check-device`: CUDA against CPU numerics for every backbone and margin. The CPU fp32
// result is the reference; CUDA runs fp32 (TF32 off), then bf16 and fp16 autocast.
// `--device cpu` runs the same comparison CPU against CPU (fp32 only): it exercises this command's
// own code on machines without a GPU, so that a bug here is caught before a GPU session.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>
#include <memory>

#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "commands.hpp"
#include "train/compat/torch_compat.hpp"
#include "train/nn/backbone.hpp"
#include "train/nn/margin.hpp"
#include "train/nn/vit.hpp"
#include "train/train/checkpoint.hpp"

namespace arcforge::cli {
namespace {

struct CheckArgs {
  int64_t batch = 4;
  std::string device = "cuda";
  std::vector<std::string> archs;
  bool json = false;
};

double max_rel_error(const torch::Tensor& got, const torch::Tensor& ref) {
  auto g = got.to(torch::kCPU, torch::kDouble);
  auto r = ref.to(torch::kDouble);
  return ((g - r).abs().max() / r.abs().max().clamp_min(1e-12)).item<double>();
}

double min_row_cosine(const torch::Tensor& got, const torch::Tensor& ref) {
  auto g = got.to(torch::kCPU, torch::kDouble);
  auto r = ref.to(torch::kDouble);
  return torch::cosine_similarity(g, r, 1).min().item<double>();
}

// Tolerances: fp32 must agree to accumulation-order noise; bf16/fp16 autocast to the embedding's
// direction (what verification uses).
// The first layer's gradient passes back through every train-mode BatchNorm of the network at a
// batch of 4, which amplifies summation-order differences: on an H200 (TF32 off) it differed by
// 6e-4..3.4e-3 of its largest value while the outputs agreed to 2e-5..2e-4. A wrong kernel is off
// by O(1), so the gradient gets its own, looser bound.
constexpr double kFp32Tol = 1e-3, kFp32GradTol = 1e-2, kLowCosine = 0.99;

// Vision Transformers draw random token masks and stochastic depth in train mode, from each device's
// own generator: they are compared in eval mode (LayerNorms have no batch statistics to lose).
bool compare_in_train_mode(const nn::Backbone& model) {
  return dynamic_cast<const nn::VisionTransformer*>(&model) == nullptr;
}

// Forward and backward of `model` on `x` in train mode (batch statistics and gradients, the path
// training takes) where that is deterministic: the output and the gradient of the first
// parameter, both detached.
std::pair<torch::Tensor, torch::Tensor> forward_backward(const std::shared_ptr<nn::Backbone>& model,
                                                       const torch::Tensor& x) {
  model->train(compare_in_train_mode(*model));
  auto out = model->forward(x);
  auto first_param = model->parameters().front();
  auto grad = torch::autograd::grad({out.pow(2).sum()}, {first_param})[0];
  return {out.detach(), grad.detach()};
}

nlohmann::json check_backbone(const std::string& arch, int64_t batch, torch::Device target) {
  // Two models from the same seed: one stays on the CPU as the reference, one moves to the target.
  torch::manual_seed(7);
  auto reference = nn::make_backbone({arch, 512, 0.0});
  torch::manual_seed(7);
  auto model = nn::make_backbone({arch, 512, 0.0});
  model->to(target);
  auto x = torch::randn({batch, 3, 112, 112});
  auto xt = x.to(target);
  auto [ref_out, ref_grad] = forward_backward(reference, x);
  auto [out, grad] = forward_backward(model, xt);
  nlohmann::json r{{"arch", arch},
                   {"fp32_rel_err", max_rel_error(out, ref_out)},
                   {"fp32_grad_rel_err", max_rel_error(grad, ref_grad)}};
  bool ok = r["fp32_rel_err"].get<double>() < kFp32Tol && r["fp32_grad_rel_err"].get<double>() < kFp32GradTol;
  if (target.is_cuda()) {
    // Low precision compared in train mode too: untrained deep IResNets overflow in eval mode
    // (arcface_torch's init), which would say nothing about the device.
    torch::NoGradGuard no_grad;
    for (auto [name, dtype] : {std::pair{"bf16", at::kBFloat16}, std::pair{"fp16", at::kHalf}}) {
      torch::Tensor low;
      {
        compat::AutocastGuard guard(torch::kCUDA, true, dtype);
        low = model->forward(xt).to(torch::kFloat);
      }
      auto ref = reference->forward(x);
      const double cosine = min_row_cosine(low, ref);
      r[std::string(name) + "_min_cosine"] = cosine;
      ok = ok && cosine > kLowCosine;
    }
  }
  r["ok"] = ok;
  return r;
}

nlohmann::json check_margin(const std::string& name, torch::Device cuda) {
  torch::manual_seed(11);
  const int64_t n = 64, classes = 1000, dim = 128;
  auto emb = torch::randn({n, dim});
  auto labels = torch::randint(0, classes, {n}, torch::kInt64);
  nn::NormalizedLinear head(dim, classes);
  auto run = [&](torch::Device d) {
    nn::Margin margin(nn::margin_preset(name));  // fresh: AdaFace keeps running norm statistics
    head->weight.mutable_grad() = torch::Tensor();
    head->to(d);
    margin->to(d);
    // A fresh leaf per device: emb.to(kCPU) would alias emb itself and make the next copy non-leaf.
    auto e = emb.to(d).detach().clone().requires_grad_(true);
    auto logits = margin->forward(head->forward(e), labels.to(d), e.detach().norm(2, 1));
    auto loss = nn::margin_cross_entropy(logits, labels.to(d), 0.1);
    loss.backward();
    return std::tuple{logits.detach().cpu(), loss.detach().cpu(), e.grad().cpu()};
  };
  auto [l_cpu, loss_cpu, g_cpu] = run(torch::kCPU);
  auto [l_gpu, loss_gpu, g_gpu] = run(cuda);
  nlohmann::json r{{"margin", name},
                   {"logits_rel_err", max_rel_error(l_gpu, l_cpu)},
                   {"loss_rel_err", max_rel_error(loss_gpu, loss_cpu)},
                   {"grad_rel_err", max_rel_error(g_gpu, g_cpu)}};
  r["ok"] = r["logits_rel_err"].get<double>() < 1e-5 && r["loss_rel_err"].get<double>() < 1e-5 &&
            r["grad_rel_err"].get<double>() < 1e-4;
  return r;
}

// A checkpoint keeps and restores the random state of the device the model trains on: with
// several GPUs the last one (a rank's own LOCAL_RANK device, not device 0), so that a resumed run
// draws the numbers the uninterrupted one would have.
nlohmann::json check_checkpoint_rng(torch::Device target) {
  if (target.is_cuda())
    target = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(torch::cuda::device_count() - 1));
  train::TrainConfig config;
  config.model.arch = "mbf";
  config.model.embedding_size = 64;
  config.data.num_identities = 16;
  train::TrainModules modules = train::make_modules(config);
  modules.backbone->to(target);
  modules.head->to(target);
  modules.margin->to(target);
  const auto path = std::filesystem::temp_directory_path() /
                    ("arcforge_check_device_" + std::to_string(::getpid()) + ".pt");
  torch::manual_seed(3);
  torch::rand({1}, target);  // a state other than the seed's
  train::save_checkpoint(path.string(), config, modules, nullptr, {});
  const torch::Tensor after_save = torch::rand({1000}, torch::TensorOptions().device(target));
  train::load_checkpoint(path.string(), modules, nullptr, nullptr, /*restore_rng=*/true);
  const torch::Tensor after_load = torch::rand({1000}, torch::TensorOptions().device(target));
  std::filesystem::remove(path);
  return {{"device", target.str()}, {"ok", torch::equal(after_save.cpu(), after_load.cpu())}};
}

void run(const CheckArgs& a) {
  if (a.device != "cuda" && a.device != "cpu")
    throw ConfigError("check-device: --device must be cuda or cpu, not '" + a.device + "'");
  if (a.device == "cuda" && !torch::cuda::is_available())
    throw Error("check-device: no CUDA device is available");
  at::globalContext().setAllowTF32CuDNN(false);  // fp32 must mean fp32 for the comparison
  at::globalContext().setAllowTF32CuBLAS(false);
  const torch::Device target = a.device == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  std::vector<std::string> archs = a.archs;
  if (archs.empty()) archs = {"r18", "r34", "r50", "r100", "r200", "mbf", "mbf_large", "vit_t", "vit_s"};
  nlohmann::json out{{"torch", compat::torch_version_string()}, {"backbones", nlohmann::json::array()},
                     {"margins", nlohmann::json::array()}};
  bool ok = true;
  for (const auto& arch : archs) {
    auto r = check_backbone(arch, a.batch, target);
    ok = ok && r["ok"].get<bool>();
    out["backbones"].push_back(r);
  }
  for (const auto& name : nn::margin_names()) {
    auto r = check_margin(name, target);
    ok = ok && r["ok"].get<bool>();
    out["margins"].push_back(r);
  }
  out["checkpoint_rng"] = check_checkpoint_rng(target);
  ok = ok && out["checkpoint_rng"]["ok"].get<bool>();
  out["ok"] = ok;
  if (a.json) {
    std::cout << out.dump() << std::endl;
  } else {
    std::printf("%-10s %12s %12s %12s %12s %s\n", "backbone", "fp32 rel", "grad rel", "bf16 cos", "fp16 cos", "ok");
    auto cosine = [](const nlohmann::json& r, const char* key) {
      return r.contains(key) ? r[key].get<double>() : std::nan("");  // absent on CPU-only runs
    };
    for (auto& r : out["backbones"])
      std::printf("%-10s %12.2e %12.2e %12.6f %12.6f %s\n", r["arch"].get<std::string>().c_str(),
                  r["fp32_rel_err"].get<double>(), r["fp32_grad_rel_err"].get<double>(),
                  cosine(r, "bf16_min_cosine"), cosine(r, "fp16_min_cosine"), r["ok"].get<bool>() ? "yes" : "NO");
    std::printf("%-18s %12s %12s %12s %s\n", "margin", "logits rel", "loss rel", "grad rel", "ok");
    for (auto& r : out["margins"])
      std::printf("%-18s %12.2e %12.2e %12.2e %s\n", r["margin"].get<std::string>().c_str(),
                  r["logits_rel_err"].get<double>(), r["loss_rel_err"].get<double>(),
                  r["grad_rel_err"].get<double>(), r["ok"].get<bool>() ? "yes" : "NO");
    std::printf("checkpoint restores the RNG of %s: %s\n", out["checkpoint_rng"]["device"].get<std::string>().c_str(),
                out["checkpoint_rng"]["ok"].get<bool>() ? "yes" : "NO");
  }
  if (!ok) throw Error("check-device: CUDA results differ from CPU beyond tolerance (see above)");
}

}  // namespace

void add_check_device_command(CLI::App& app) {
  auto args = std::make_shared<CheckArgs>();
  CLI::App* cmd = app.add_subcommand("check-device", "Compare CUDA against CPU numerics for every backbone and margin");
  cmd->add_option("--batch", args->batch, "Images per backbone check");
  cmd->add_option("--device", args->device, "Device compared against the CPU: cuda, or cpu (a self-check)");
  cmd->add_option("--arch", args->archs, "Backbones to check (repeatable; default: all)");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
