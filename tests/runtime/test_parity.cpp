// Parity with ONNX Runtime on the real third-party models in ../shared/models: every output of
// every model, fp32, max |ours - ORT| <= 1e-4 x max |ORT| (the output's scale).
#include <gtest/gtest.h>

#include <filesystem>

#include "parity_util.hpp"

namespace arcforge::test {
namespace {

struct ParityCase {
  std::string name;   // test name
  std::string model;  // file in shared/models
  std::vector<int64_t> shape;
  float lo, hi;       // input value range (what the model's pre-processing produces)
};

std::ostream& operator<<(std::ostream& os, const ParityCase& c) { return os << c.name; }

class Parity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(Parity, MatchesOnnxRuntime) {
  const ParityCase& c = GetParam();
  const std::string path = shared_models_dir() + "/" + c.model;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "SKIPPED: shared model not found: " << path;
  const std::string why = ort_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "SKIPPED: " << why;

  runtime::Tensor input{c.shape, random_values(static_cast<std::size_t>(runtime::Tensor{c.shape, {}}.numel()), 1234, c.lo, c.hi)};
  const auto ref = run_onnxruntime(path, {input});
  const auto model = runtime::Model::load(path, {.threads = 2});
  const auto ours = model.run({input});
  std::string ops;
  for (const auto& [op, count] : model.op_histogram()) ops += " " + op + ":" + std::to_string(count);
  std::printf("[ops] %s:%s -> %zu nodes after fusion\n", c.model.c_str(), ops.c_str(), model.optimized_node_count());
  ASSERT_EQ(ours.size(), ref.size());
  ASSERT_EQ(ours.size(), model.outputs().size());
  for (std::size_t k = 0; k < ref.size(); ++k) {
    const std::string& name = model.outputs()[k].name;
    ASSERT_EQ(ours[k].shape, ref[k].shape) << "output " << name;
    const Difference d = compare(ours[k], ref[k]);
    EXPECT_GT(d.scale, 0.0) << "output " << name << " is all zeros: the comparison would be vacuous";
    EXPECT_LE(d.max_abs, 1e-4 * d.scale) << "output " << name << ": max abs diff " << d.max_abs << ", scale " << d.scale;
    RecordProperty("max_rel_diff_" + name, std::to_string(d.max_abs / d.scale));
    std::printf("[parity] %s %s: max abs diff %.3g, scale %.3g, relative %.3g\n", c.name.c_str(), name.c_str(),
                d.max_abs, d.scale, d.max_abs / d.scale);
  }
}

INSTANTIATE_TEST_SUITE_P(
    SharedModels, Parity,
    ::testing::Values(
        ParityCase{"scrfd_500m_640x640", "scrfd_500m_bnkps.onnx", {1, 3, 640, 640}, -1, 1},
        ParityCase{"scrfd_500m_224x320", "scrfd_500m_bnkps.onnx", {1, 3, 224, 320}, -1, 1},
        ParityCase{"scrfd_500m_batch2_320", "scrfd_500m_bnkps.onnx", {2, 3, 320, 320}, -1, 1},
        ParityCase{"scrfd_2_5g_640x640", "scrfd_2.5g_bnkps.onnx", {1, 3, 640, 640}, -1, 1},
        ParityCase{"scrfd_2_5g_480x352", "scrfd_2.5g_bnkps.onnx", {1, 3, 480, 352}, -1, 1},
        ParityCase{"yunet_320", "yunet_n_320_320.onnx", {1, 3, 320, 320}, 0, 255},
        ParityCase{"rfb_320", "version-RFB-320.onnx", {1, 3, 240, 320}, -1, 1},
        ParityCase{"paddle_mbf_batch1", "paddle_mobilefacenet128.onnx", {1, 3, 112, 112}, -1, 1},
        ParityCase{"paddle_mbf_batch4", "paddle_mobilefacenet128.onnx", {4, 3, 112, 112}, -1, 1},
        ParityCase{"mbf_relu6", "mobilefacenet128_relu6.onnx", {1, 3, 112, 112}, -2, 2}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace arcforge::test
