// `arcforge check-device`: CUDA against CPU numerics for every backbone and margin. The CPU fp32
// result is the reference; CUDA runs fp32 (TF32 off), then bf16 and fp16 autocast.
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "commands.hpp"
#include "train/compat/torch_compat.hpp"
#include "train/nn/backbone.hpp"
#include "train/nn/margin.hpp"

namespace arcforge::cli {
namespace {

struct CheckArgs {
  int64_t batch = 4;
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
constexpr double kFp32Tol = 1e-3, kLowCosine = 0.99;

nlohmann::json check_backbone(const std::string& arch, int64_t batch, torch::Device cuda) {
  torch::manual_seed(7);
  auto model = nn::make_backbone({arch, 512, 0.0});
  auto x = torch::randn({batch, 3, 112, 112});
  // Train mode forward + backward: batch statistics and gradients, the path training takes.
  model->train();
  auto cpu_out = model->forward(x);
  cpu_out.pow(2).sum().backward();
  auto first_param = model->parameters().front();
  auto cpu_grad = first_param.grad().clone();
  // Drop the CPU gradients: they would otherwise be accumulated into by the CUDA backward.
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();

  model->to(cuda);
  auto xc = x.to(cuda);
  auto out = model->forward(xc);
  out.pow(2).sum().backward();
  first_param = model->parameters().front();  // libtorch 2.x replaces parameters on to()
  nlohmann::json r{{"arch", arch},
                   {"fp32_rel_err", max_rel_error(out.detach(), cpu_out.detach())},
                   {"fp32_grad_rel_err", max_rel_error(first_param.grad(), cpu_grad)}};
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
  // Low precision compared in train mode too: untrained deep IResNets overflow in eval mode
  // (arcface_torch's init), which would say nothing about the device.
  torch::NoGradGuard no_grad;
  for (auto [name, dtype] : {std::pair{"bf16", at::kBFloat16}, std::pair{"fp16", at::kHalf}}) {
    compat::AutocastGuard guard(torch::kCUDA, true, dtype);
    auto low = model->forward(xc).to(torch::kFloat);
    model->to(torch::kCPU);
    auto ref = model->forward(x);
    model->to(cuda);
    r[std::string(name) + "_min_cosine"] = min_row_cosine(low, ref);
  }
  r["ok"] = r["fp32_rel_err"].get<double>() < kFp32Tol && r["fp32_grad_rel_err"].get<double>() < kFp32Tol &&
            r["bf16_min_cosine"].get<double>() > kLowCosine && r["fp16_min_cosine"].get<double>() > kLowCosine;
  return r;
}

nlohmann::json check_margin(const std::string& name, torch::Device cuda) {
  torch::manual_seed(11);
  const int64_t n = 64, classes = 1000, dim = 128;
  auto emb = torch::randn({n, dim});
  auto labels = torch::randint(0, classes, {n}, torch::kInt64);
  nn::NormalizedLinear head(dim, classes);
  nn::Margin margin(nn::margin_preset(name));
  auto run = [&](torch::Device d) {
    head->weight.mutable_grad() = torch::Tensor();
    head->to(d);
    margin->to(d);
    auto e = emb.to(d).requires_grad_(true);
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

void run(const CheckArgs& a) {
  if (!torch::cuda::is_available()) throw Error("check-device: no CUDA device is available");
  at::globalContext().setAllowTF32CuDNN(false);  // fp32 must mean fp32 for the comparison
  at::globalContext().setAllowTF32CuBLAS(false);
  torch::Device cuda(torch::kCUDA, 0);
  nlohmann::json out{{"torch", compat::torch_version_string()}, {"backbones", nlohmann::json::array()},
                     {"margins", nlohmann::json::array()}};
  bool ok = true;
  for (const char* arch : {"r18", "r34", "r50", "r100", "r200", "mbf", "mbf_large"}) {
    auto r = check_backbone(arch, a.batch, cuda);
    ok = ok && r["ok"].get<bool>();
    out["backbones"].push_back(r);
  }
  for (const auto& name : nn::margin_names()) {
    auto r = check_margin(name, cuda);
    ok = ok && r["ok"].get<bool>();
    out["margins"].push_back(r);
  }
  out["ok"] = ok;
  if (a.json) {
    std::cout << out.dump() << std::endl;
  } else {
    std::printf("%-10s %12s %12s %12s %12s %s\n", "backbone", "fp32 rel", "grad rel", "bf16 cos", "fp16 cos", "ok");
    for (auto& r : out["backbones"])
      std::printf("%-10s %12.2e %12.2e %12.6f %12.6f %s\n", r["arch"].get<std::string>().c_str(),
                  r["fp32_rel_err"].get<double>(), r["fp32_grad_rel_err"].get<double>(),
                  r["bf16_min_cosine"].get<double>(), r["fp16_min_cosine"].get<double>(),
                  r["ok"].get<bool>() ? "yes" : "NO");
    std::printf("%-18s %12s %12s %12s %s\n", "margin", "logits rel", "loss rel", "grad rel", "ok");
    for (auto& r : out["margins"])
      std::printf("%-18s %12.2e %12.2e %12.2e %s\n", r["margin"].get<std::string>().c_str(),
                  r["logits_rel_err"].get<double>(), r["loss_rel_err"].get<double>(),
                  r["grad_rel_err"].get<double>(), r["ok"].get<bool>() ? "yes" : "NO");
  }
  if (!ok) throw Error("check-device: CUDA results differ from CPU beyond tolerance (see above)");
}

}  // namespace

void add_check_device_command(CLI::App& app) {
  auto args = std::make_shared<CheckArgs>();
  CLI::App* cmd = app.add_subcommand("check-device", "Compare CUDA against CPU numerics for every backbone and margin");
  cmd->add_option("--batch", args->batch, "Images per backbone check");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
