// `arcforge infer` and `arcforge bench-model` end to end, through the built binary.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "arcforge/cpu/bf16_speed.hpp"
#include "arcforge/cpu/isa.hpp"
#include "arcforge/runtime/model.hpp"
#include "arcforge/runtime/quantize.hpp"

#include "arcforge/common/npy.hpp"
#include "onnx_builder.hpp"
#include "reference_ops.hpp"

namespace arcforge::test {
namespace {

std::string capture(const std::string& cmd, int* rc) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  *rc = p ? pclose(p) : -1;
  return out;
}

// The command's stdout alone (JSON), its stderr going to `stderr_path`.
std::string stdout_of(const std::string& cmd, int* rc, const std::string& stderr_path = "/dev/null") {
  std::string out;
  FILE* p = popen((cmd + " 2> " + stderr_path).c_str(), "r");
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  *rc = p ? pclose(p) : -1;
  return out;
}

std::string scale_model(const TempDir& dir) {
  OnnxBuilder m(13);
  m.input("x", {-1, 3}).output("y").initializer("k", {3}, {2.0f, -1.0f, 0.5f});
  m.node("Mul", {"x", "k"}, {"m"});
  m.node("Relu", {"m"}, {"y"});
  return m.save(dir.path() / "scale.onnx");
}

TEST(Cli, InferWritesTheModelOutput) {
  TempDir dir;
  const std::string model = scale_model(dir);
  const std::vector<float> x = {1, 2, 3, -4, -5, -6};
  write_npy(dir.file("x.npy"), {2, 3}, x.data());
  int rc = 0;
  const std::string out = capture(std::string(ARCFORGE_CLI) + " infer " + model + " --input " + dir.file("x.npy") +
                                      " --output " + dir.file("y.npy") + " --threads 1",
                                  &rc);
  ASSERT_EQ(rc, 0) << out;
  const NpyArray y = read_npy(dir.file("y.npy"));
  EXPECT_EQ(y.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(y.data, (std::vector<float>{2, 0, 1.5f, 0, 5, 0}));
}

TEST(Cli, InferRejectsACorruptTensorWithOneLine) {
  TempDir dir;
  const std::string model = scale_model(dir);
  std::ofstream(dir.file("bad.npy")) << "\x93NUMPY garbage";
  int rc = 0;
  const std::string out = capture(std::string(ARCFORGE_CLI) + " infer " + model + " --input " + dir.file("bad.npy") +
                                      " --output " + dir.file("y.npy"),
                                  &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("arcforge: error: " + dir.file("bad.npy")), std::string::npos) << out;
}

TEST(Cli, BenchModelPrintsTheJsonFields) {
  TempDir dir;
  const std::string model = scale_model(dir);
  int rc = 0;
  const std::string out = capture(std::string(ARCFORGE_CLI) + " bench-model " + model +
                                      " --batch 4 --threads 1 --repeats 5 --json",
                                  &rc);
  ASSERT_EQ(rc, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j.at("batch"), 4);
  EXPECT_EQ(j.at("threads"), 1);
  EXPECT_EQ(j.at("precision"), "fp32");
  EXPECT_EQ(j.at("input_shape"), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(j.at("repeats"), 5);
  EXPECT_GT(j.at("ms_per_image").get<double>(), 0.0);
  EXPECT_NEAR(j.at("images_per_s").get<double>() * j.at("ms_per_image").get<double>(), 1000.0, 1e-6);
  // int8 on a model without QDQ nodes is a clear error, not a silent fp32 run.
  const std::string bad = capture(std::string(ARCFORGE_CLI) + " bench-model " + model + " --precision int8", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(bad.find("int8"), std::string::npos) << bad;
  EXPECT_NE(bad.find("arcforge quantize"), std::string::npos) << bad;
  EXPECT_NE(bad.find(model), std::string::npos) << bad;
  // bf16 on the same model runs (an element-wise graph: no convolution to convert).
  const std::string bf16 = stdout_of(std::string(ARCFORGE_CLI) + " bench-model " + model +
                                         " --precision bf16 --threads 1 --repeats 3 --json",
                                     &rc);
  ASSERT_EQ(rc, 0) << bf16;
  EXPECT_EQ(nlohmann::json::parse(bf16).at("requested_precision"), "bf16");
  EXPECT_EQ(nlohmann::json::parse(bf16).at("precision"), runtime::cpu_runs_bf16() ? "bf16" : "fp32");
}

// x [N, 8, 6, 6] -> 3x3 Conv to 16 channels -> y: one convolution, the layer bf16 changes.
std::string conv_model(const TempDir& dir) {
  OnnxBuilder m(13);
  m.input("x", {-1, 8, 6, 6}).output("y").initializer("w", {16, 8, 3, 3}, std::vector<float>(16 * 8 * 9, 0.01f));
  m.node("Conv", {"x", "w"}, {"y"});
  return m.save(dir.path() / "conv.onnx");
}

// ONEDNN_MAX_CPU_ISA caps arcforge's own kernels (the depthwise and quantizing loops, Winograd,
// attention) with oneDNN's, so that one variable runs the process as on an older CPU; bench-model
// reports both levels.
TEST(Cli, OneDnnIsaCapAlsoCapsArcforgesKernels) {
  TempDir dir;
  const std::string bench =
      std::string(ARCFORGE_CLI) + " bench-model " + conv_model(dir) + " --threads 1 --repeats 2 --json";
  int rc = 0;
  const auto native = nlohmann::json::parse(stdout_of(bench, &rc));
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(native.at("kernel_isa"), cpu::cpu_kernel_isa_name(cpu::cpu_kernel_best_isa()));
  EXPECT_EQ(native.at("onednn_isa"), runtime::onednn_isa_name());
  std::printf("[isa] this CPU: oneDNN %s, arcforge's kernels %s\n", runtime::onednn_isa_name().c_str(),
              cpu::cpu_kernel_isa_name(cpu::cpu_kernel_best_isa()));
  if (cpu::cpu_kernel_best_isa() < cpu::CpuKernelIsa::avx2) GTEST_SKIP() << "no AVX2 here: nothing to cap";
  const auto avx2 = nlohmann::json::parse(stdout_of("ONEDNN_MAX_CPU_ISA=AVX2 " + bench, &rc));
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(avx2.at("kernel_isa"), "avx2");
  EXPECT_EQ(avx2.at("onednn_isa"), "AVX2");
  const auto baseline = nlohmann::json::parse(stdout_of("DNNL_MAX_CPU_ISA=SSE41 " + bench, &rc));  // the old name
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(baseline.at("kernel_isa"), "baseline");
  EXPECT_EQ(baseline.at("onednn_isa"), "SSE41");
}

// On a CPU without bf16 convolutions in oneDNN (AVX2; forced here with oneDNN's own
// ONEDNN_MAX_CPU_ISA, which it reads at start-up), a bf16 request runs fp32 rather than failing on
// the first convolution: stderr says so, naming the model, --json reports both precisions, and the
// outputs are fp32's exactly.
TEST(Cli, Bf16RunsAsFp32WhereTheCpuHasNoBf16Convolutions) {
  TempDir dir;
  const std::string model = conv_model(dir);
  const std::string bench = std::string(ARCFORGE_CLI) + " bench-model " + model + " --precision bf16 --threads 1 --repeats 2 --json";
  int rc = 0;
  const auto forced = nlohmann::json::parse(stdout_of("ONEDNN_MAX_CPU_ISA=AVX2 " + bench, &rc, dir.file("stderr.txt")));
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(forced.at("precision"), "fp32");
  EXPECT_EQ(forced.at("requested_precision"), "bf16");
  std::ifstream err_file(dir.file("stderr.txt"));
  const std::string err((std::istreambuf_iterator<char>(err_file)), std::istreambuf_iterator<char>());
  EXPECT_NE(err.find(model + ": runs in fp32, not bf16"), std::string::npos) << err;
  // Without the cap, this CPU's own answer.
  const auto native = nlohmann::json::parse(stdout_of(bench, &rc));
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(native.at("precision"), runtime::cpu_runs_bf16() ? "bf16" : "fp32");
  std::printf("[bf16] this CPU runs bf16 convolutions: %s\n", runtime::cpu_runs_bf16() ? "yes" : "no (AVX2 or older)");
  // The same outputs as fp32, bit for bit.
  const std::vector<float> x(2 * 8 * 6 * 6, 0.5f);
  write_npy(dir.file("x.npy"), {2, 8, 6, 6}, x.data());
  const std::string infer = std::string(ARCFORGE_CLI) + " infer " + model + " --input " + dir.file("x.npy") + " --threads 1";
  stdout_of("ONEDNN_MAX_CPU_ISA=AVX2 " + infer + " --precision bf16 --output " + dir.file("bf16.npy"), &rc);
  ASSERT_EQ(rc, 0);
  stdout_of(infer + " --output " + dir.file("fp32.npy"), &rc);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(read_npy(dir.file("bf16.npy")).data, read_npy(dir.file("fp32.npy")).data);
}

// Every step of a plan run by `arcforge infer` with oneDNN capped at AVX2: the profile lines on
// stderr (ARCFORGE_RUNTIME_PROFILE=1). Writes y.npy next to x.npy.
std::vector<std::string> avx2_profile(const TempDir& dir, const std::string& model, const std::string& precision) {
  int rc = 0;
  stdout_of("ONEDNN_MAX_CPU_ISA=AVX2 ARCFORGE_RUNTIME_PROFILE=1 " + std::string(ARCFORGE_CLI) + " infer " + model +
                " --precision " + precision + " --input " + dir.file("x.npy") + " --output " + dir.file("y.npy") +
                " --threads 1",
            &rc, dir.file("stderr.txt"));
  EXPECT_EQ(rc, 0);
  std::ifstream err(dir.file("stderr.txt"));
  std::vector<std::string> steps;
  for (std::string line; std::getline(err, line);) {
    if (line.rfind("[profile]", 0) == 0) steps.push_back(line);
  }
  return steps;
}

// Whether a profile line names one of oneDNN's reference kernels ("ref:any", "ref_int8:any", ...).
bool runs_reference_kernel(const std::string& line) {
  return line.find(" ref:") != std::string::npos || line.find(" ref_") != std::string::npos;
}

// PReLU and a stand-alone BatchNormalization on an AVX2 CPU (forced with ONEDNN_MAX_CPU_ISA): there
// oneDNN lays activations out in blocks of 8 channels, and with plain per-channel operands (slope;
// BN's scale and shift) it ran its reference kernels, which made MobileFaceNet and r50 5 to 10 times
// slower. The operands are packed into a layout oneDNN has a kernel for: no step may run a
// reference kernel, and the result must stay right, in fp32 and in int8 (where the BN also
// quantizes its output for the next convolution). x -> Conv -> PRelu (unfused) -> MaxPool -> PRelu
// (stand-alone, blocked input) -> BatchNormalization (stand-alone) -> Conv 3x3 in 12 groups of 2
// input channels (as mbf's second layer: oneDNN 2.6 has no optimised int8 kernel for it on AVX2,
// so int8 runs it with the file's float semantics); 24 channels (three blocks), slopes of both
// signs and above 1.
TEST(Cli, PreluAndBatchNormRunOptimisedKernelsOnAvx2) {
  constexpr int64_t N = 2, C = 24, H = 6, W = 6, OC = 24, G = 12;
  TempDir dir;
  const std::vector<float> w = random_values(C * C * 9, 301, -0.3f, 0.3f), bias = random_values(C, 302);
  const std::vector<float> s1 = random_values(C, 303, -0.5f, 1.5f), s2 = random_values(C, 304, -1.0f, 2.0f);
  const std::vector<float> gamma = random_values(C, 306, 0.5f, 1.5f), beta = random_values(C, 307);
  const std::vector<float> mean = random_values(C, 308), var = random_values(C, 309, 0.5f, 2.0f);
  const std::vector<float> w2 = random_values(OC * (C / G) * 9, 310, -0.3f, 0.3f);
  OnnxBuilder m(13);
  m.input("x", {-1, C, H, W}).output("y").initializer("w", {C, C, 3, 3}, w).initializer("b", {C}, bias);
  m.initializer("s1", {C, 1, 1}, s1).initializer("s2", {C, 1, 1}, s2).initializer("w2", {OC, C / G, 3, 3}, w2);
  m.initializer("gamma", {C}, gamma).initializer("beta", {C}, beta).initializer("mean", {C}, mean);
  m.initializer("var", {C}, var);
  OnnxBuilder::attr(m.node("Conv", {"x", "w", "b"}, {"c"}, "conv"), "pads", std::vector<int64_t>{1, 1, 1, 1});
  m.node("PRelu", {"c", "s1"}, {"p"}, "prelu1");
  auto& pool = m.node("MaxPool", {"p"}, {"mp"}, "pool");
  OnnxBuilder::attr(pool, "kernel_shape", std::vector<int64_t>{2, 2});
  OnnxBuilder::attr(pool, "strides", std::vector<int64_t>{2, 2});
  m.node("PRelu", {"mp", "s2"}, {"p2"}, "prelu2");
  m.node("BatchNormalization", {"p2", "gamma", "beta", "mean", "var"}, {"bn"}, "bn");
  auto& conv2 = m.node("Conv", {"bn", "w2"}, {"y"}, "conv2");
  OnnxBuilder::attr(conv2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  OnnxBuilder::attr(conv2, "group", G);
  const std::string model = m.save(dir.path() / "net.onnx");
  const std::vector<float> x = random_values(N * C * H * W, 305, -2.0f, 2.0f);
  write_npy(dir.file("x.npy"), {N, C, H, W}, x.data());

  // fp32 against the graph in double.
  const auto steps = avx2_profile(dir, model, "fp32");
  for (const auto& line : steps) EXPECT_FALSE(runs_reference_kernel(line)) << line;
  EXPECT_GE(steps.size(), 6u) << "conv, prelu1, pool, prelu2, bn, conv2";
  int64_t oh = 0, ow = 0;
  ref::Vec c = ref::conv2d(ref::to_double(x), N, C, H, W, ref::to_double(w), C, 3, 3, ref::to_double(bias), 1, 1, 1,
                           1, 1, 1, 1, oh, ow);
  for (std::size_t k = 0; k < c.size(); ++k) {
    if (c[k] < 0) c[k] *= s1[(k / (H * W)) % C];
  }
  constexpr int64_t PH = H / 2, PW = W / 2;
  ref::Vec bn(static_cast<std::size_t>(N * C * PH * PW));
  for (int64_t nc = 0; nc < N * C; ++nc) {
    const int64_t ch = nc % C;
    for (int64_t i = 0; i < PH; ++i) {
      for (int64_t j = 0; j < PW; ++j) {
        double v = -INFINITY;
        for (int64_t a = 0; a < 2; ++a) {
          for (int64_t e = 0; e < 2; ++e) v = std::max(v, c[(nc * H + 2 * i + a) * W + 2 * j + e]);
        }
        if (v < 0) v *= s2[ch];
        bn[(nc * PH + i) * PW + j] = (v - mean[ch]) / std::sqrt(var[ch] + 1e-5) * gamma[ch] + beta[ch];
      }
    }
  }
  const ref::Vec want = ref::conv2d(bn, N, C, PH, PW, ref::to_double(w2), OC, 3, 3, {}, 1, 1, 1, 1, 1, G, 1, oh, ow);
  EXPECT_LE(ref::max_abs_diff(read_npy(dir.file("y.npy")).data, want), 1e-4 * ref::max_abs(want));

  // int8: the QDQ file (conv2 quantized, so the BN quantizes its output; conv kept in fp32, so the
  // BN reads the blocked layout, for which oneDNN has no int8-output kernel on AVX2) against the
  // same file run with ONNX's float semantics; without VNNI, int8 is close, not exact.
  runtime::QuantizeOptions o;
  o.keep_fp32 = {"conv"};
  o.threads = 1;
  const std::string q = dir.file("net.int8.onnx");
  std::vector<runtime::Tensor> calib;
  for (uint32_t k = 0; k < 4; ++k) calib.push_back({{N, C, H, W}, random_values(N * C * H * W, 320 + k, -2.0f, 2.0f)});
  EXPECT_EQ(runtime::quantize_model(model, calib, q, o).quantized_convs, std::vector<std::string>{"conv2"});
  const auto int8_steps = avx2_profile(dir, q, "int8");
  for (const auto& line : int8_steps) EXPECT_FALSE(runs_reference_kernel(line)) << line;
  const auto qdq = runtime::Model::load(q, {.threads = 1}).run({{{N, C, H, W}, x}});
  const std::vector<float> got = read_npy(dir.file("y.npy")).data;
  ASSERT_EQ(got.size(), qdq[0].data.size());
  double dot = 0, na = 0, nb = 0;
  for (std::size_t k = 0; k < got.size(); ++k) {
    dot += double(got[k]) * qdq[0].data[k];
    na += double(got[k]) * got[k];
    nb += double(qdq[0].data[k]) * qdq[0].data[k];
  }
  std::printf("[avx2] int8 against the QDQ file in fp32: cosine %.6f, %zu steps\n", dot / std::sqrt(na * nb),
              int8_steps.size());
  EXPECT_GE(dot / std::sqrt(na * nb), 0.999);
}

TEST(Precision, EffectivePrecisionIsWhatThisCpuRuns) {
  using runtime::Precision;
  const bool bf16 = runtime::cpu_runs_bf16();
  EXPECT_EQ(runtime::effective_precision(Precision::bf16), bf16 ? Precision::bf16 : Precision::fp32);
  EXPECT_EQ(runtime::effective_precision(Precision::int8_bf16), bf16 ? Precision::int8_bf16 : Precision::int8);
  EXPECT_EQ(runtime::effective_precision(Precision::fp32), Precision::fp32);
  EXPECT_EQ(runtime::effective_precision(Precision::int8), Precision::int8);
}

// The rule behind precision "auto", for each kind of CPU: AMX, or AVX512-BF16 at AMD's full rate.
TEST(Precision, Bf16OutpacesFp32WithAmxOrOnAmdsAvx512Bf16) {
  using cpu::Bf16Hardware;
  EXPECT_TRUE(cpu::bf16_outpaces_fp32(Bf16Hardware{.amx = true, .avx512_bf16 = true}));   // Sapphire Rapids
  EXPECT_TRUE(cpu::bf16_outpaces_fp32(Bf16Hardware{.avx512_bf16 = true, .amd = true}));   // Zen 4
  EXPECT_FALSE(cpu::bf16_outpaces_fp32(Bf16Hardware{.avx512_bf16 = true}));               // Cooper Lake, AMX hidden
  EXPECT_FALSE(cpu::bf16_outpaces_fp32(Bf16Hardware{.amd = true}));                       // Zen 3
  EXPECT_FALSE(cpu::bf16_outpaces_fp32(Bf16Hardware{}));                                  // Skylake-SP, Ice Lake
  // cpuid's answers against the compiler's own detection.
  const Bf16Hardware here = cpu::this_cpus_bf16_hardware();
  EXPECT_EQ(here.avx512_bf16, __builtin_cpu_supports("avx512bf16") != 0);
  EXPECT_EQ(here.amd, __builtin_cpu_is("amd") != 0);
  std::printf("[bf16] this CPU: AMX %d, AVX512-BF16 %d, AMD %d; oneDNN runs bf16 %d, faster than fp32 %d\n", here.amx,
              here.avx512_bf16, here.amd, runtime::cpu_runs_bf16(), runtime::cpu_bf16_outpaces_fp32());
  if (runtime::cpu_bf16_outpaces_fp32()) {
    EXPECT_TRUE(runtime::cpu_runs_bf16());
  }
}

// "auto" resolves at load to bf16 where bf16 outpaces fp32 and to fp32 elsewhere; the model says
// which, and its outputs are that precision's.
TEST(Precision, AutoLoadsAsTheFasterOfBf16AndFp32) {
  using runtime::Precision;
  EXPECT_EQ(runtime::parse_precision("auto"), Precision::automatic);
  EXPECT_EQ(runtime::to_string(Precision::automatic), "auto");
  const Precision faster = runtime::cpu_bf16_outpaces_fp32() ? Precision::bf16 : Precision::fp32;
  EXPECT_EQ(runtime::effective_precision(Precision::automatic), faster);
  TempDir dir;
  OnnxBuilder m(13);
  m.input("x", {1, 16, 6, 6}).output("y").initializer("w", {16, 16, 3, 3}, random_values(16 * 16 * 9, 3));
  m.node("Conv", {"x", "w"}, {"y"});
  const std::string model = m.save(dir.path() / "conv.onnx");
  const auto automatic = runtime::Model::load(model, {.precision = Precision::automatic, .threads = 1});
  const auto chosen = runtime::Model::load(model, {.precision = faster, .threads = 1});
  EXPECT_EQ(automatic.options().precision, faster);
  const runtime::Tensor x{{1, 16, 6, 6}, random_values(16 * 36, 4)};
  EXPECT_EQ(automatic.run({x}).at(0).data, chosen.run({x}).at(0).data);
}

// bf16 asked for where it does not outpace fp32 runs, with a warning that names the model and
// points at "auto". oneDNN capped at plain AVX-512 (no AVX512-BF16) stands for such a CPU; where
// even that is above the CPU, the fp32 fallback's warning comes instead.
TEST(Cli, Bf16WhereItIsSlowerThanFp32RunsWithAWarningAndAutoPicksFp32) {
  TempDir dir;
  const std::string model = conv_model(dir);
  const std::string bench = "ONEDNN_MAX_CPU_ISA=AVX512_CORE " + std::string(ARCFORGE_CLI) + " bench-model " + model +
                            " --threads 1 --repeats 2 --json --precision ";
  int rc = 0;
  const auto bf16 = nlohmann::json::parse(stdout_of(bench + "bf16", &rc, dir.file("stderr.txt")));
  ASSERT_EQ(rc, 0);
  std::ifstream err_file(dir.file("stderr.txt"));
  const std::string err((std::istreambuf_iterator<char>(err_file)), std::istreambuf_iterator<char>());
  if (bf16.at("precision") == "bf16") {
    EXPECT_NE(err.find(model + ": bf16 is likely slower than fp32 on this CPU"), std::string::npos) << err;
    EXPECT_NE(err.find("precision `auto`"), std::string::npos) << err;
  } else {
    EXPECT_NE(err.find(model + ": runs in fp32, not bf16"), std::string::npos) << err;
  }
  const auto automatic = nlohmann::json::parse(stdout_of(bench + "auto", &rc, dir.file("stderr.txt")));
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(automatic.at("requested_precision"), "auto");
  EXPECT_EQ(automatic.at("precision"), "fp32");
  std::ifstream auto_err(dir.file("stderr.txt"));
  const std::string quiet((std::istreambuf_iterator<char>(auto_err)), std::istreambuf_iterator<char>());
  EXPECT_EQ(quiet.find("likely slower"), std::string::npos) << "auto chose; nothing to warn about: " << quiet;
  EXPECT_EQ(quiet.find("not bf16"), std::string::npos) << "auto chose; nothing to warn about: " << quiet;
  // Uncapped, this CPU's own choice.
  const auto native = nlohmann::json::parse(stdout_of(std::string(ARCFORGE_CLI) + " bench-model " + model +
                                                          " --threads 1 --repeats 2 --json --precision auto",
                                                      &rc));
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(native.at("precision"), runtime::cpu_bf16_outpaces_fp32() ? "bf16" : "fp32");
}

// --profile: one more run timed step by step, written as a Chrome trace (ONNX Runtime's profile
// format: complete events in microseconds) and summarised in the JSON.
TEST(Cli, BenchModelProfileWritesAChromeTrace) {
  TempDir dir;
  const std::string model = scale_model(dir);
  int rc = 0;
  const std::string out = capture(std::string(ARCFORGE_CLI) + " bench-model " + model + " --batch 2 --threads 1 --repeats 3" +
                                      " --profile " + dir.file("trace.json") + " --json",
                                  &rc);
  ASSERT_EQ(rc, 0) << out;
  const auto summary = nlohmann::json::parse(out).at("profile");
  std::ifstream in(dir.file("trace.json"));
  const auto trace = nlohmann::json::parse(in);
  ASSERT_TRUE(trace.is_array());
  ASSERT_GE(trace.size(), 1u);
  EXPECT_EQ(summary.at("steps").get<std::size_t>(), trace.size());
  EXPECT_EQ(summary.at("file"), dir.file("trace.json"));
  double sum_us = 0, last_ts = -1;
  bool saw_mul = false;
  for (const auto& event : trace) {
    EXPECT_EQ(event.at("ph"), "X");
    EXPECT_GE(event.at("dur").get<double>(), 0.0);
    EXPECT_GE(event.at("ts").get<double>(), last_ts) << "steps run in order";
    last_ts = event.at("ts").get<double>();
    EXPECT_FALSE(event.at("args").at("kernel").get<std::string>().empty());
    saw_mul = saw_mul || event.at("name").get<std::string>().find("Mul") != std::string::npos;
    sum_us += event.at("dur").get<double>();
  }
  EXPECT_TRUE(saw_mul) << trace.dump();
  EXPECT_NEAR(summary.at("ms").get<double>(), sum_us / 1000.0, 1e-6);
  EXPECT_LE(summary.at("slowest").size(), 5u);
}

}  // namespace
}  // namespace arcforge::test
