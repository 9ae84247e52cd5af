// Large batches in slices (src/runtime/micro_batch.cpp, Session::run_in_slices): a detector-like
// graph gives the same outputs in slices of any size as whole, and every graph that mixes images
// along axis 0 (or reads the batch size as data, or fixes the batch) is run whole.
#include <gtest/gtest.h>

#include <cstdio>

#include "arcforge/runtime/model.hpp"
#include "micro_batch.hpp"
#include "onnx_builder.hpp"
#include "reference_ops.hpp"

namespace arcforge::test {
namespace {

using runtime::Model;
using runtime::Tensor;

constexpr int64_t kChannels = 8, kSize = 20;

// SCRFD's shape: reflect pad -> conv -> relu -> depthwise conv -> a 3x3 head -> NHWC -> reshaped to
// [N, H*W*2, 2] through Shape -> Gather -> Unsqueeze -> Concat (as torch.onnx writes
// x.reshape(x.shape[0], -1, 2)) -> Sigmoid; a second output flattened by a constant [0, -1].
void add_detector(OnnxBuilder& m) {
  m.input("x", {-1, 3, kSize, kSize});
  m.initializer("w0", {kChannels, 3, 3, 3}, random_values(kChannels * 27, 1, -0.4f, 0.4f));
  m.initializer("b0", {kChannels}, random_values(kChannels, 2));
  m.initializer("w1", {kChannels, 1, 3, 3}, random_values(kChannels * 9, 3, -0.4f, 0.4f));
  m.initializer("w2", {4, kChannels, 3, 3}, random_values(4 * kChannels * 9, 4, -0.3f, 0.3f));
  auto pads = std::vector<int64_t>{1, 1, 1, 1};
  // The first convolution's padding as a reflect Pad (which stays a Pad: only zeros fold).
  m.initializer_i64("reflect_pads", {8}, {0, 0, 1, 1, 0, 0, 1, 1});
  OnnxBuilder::attr(m.node("Pad", {"x", "reflect_pads"}, {"xp"}), "mode", std::string("reflect"));
  m.node("Conv", {"xp", "w0", "b0"}, {"c0"});
  m.node("Relu", {"c0"}, {"r0"});
  auto& dw = m.node("Conv", {"r0", "w1"}, {"c1"});
  OnnxBuilder::attr(dw, "pads", pads);
  OnnxBuilder::attr(dw, "group", kChannels);
  OnnxBuilder::attr(m.node("Conv", {"c1", "w2"}, {"head"}), "pads", pads);
  OnnxBuilder::attr(m.node("Transpose", {"head"}, {"nhwc"}), "perm", std::vector<int64_t>{0, 2, 3, 1});
  m.node("Shape", {"nhwc"}, {"shape"});
  m.initializer_i64("zero", {}, {0});
  OnnxBuilder::attr(m.node("Gather", {"shape", "zero"}, {"n"}), "axis", int64_t{0});
  m.initializer_i64("unsq_axes", {1}, {0});
  m.node("Unsqueeze", {"n", "unsq_axes"}, {"n1"});
  m.initializer_i64("rest", {2}, {-1, 2});
  OnnxBuilder::attr(m.node("Concat", {"n1", "rest"}, {"target"}), "axis", int64_t{0});
  m.node("Reshape", {"nhwc", "target"}, {"scores_raw"});
  m.node("Sigmoid", {"scores_raw"}, {"scores"});
  m.output("scores");
  m.initializer_i64("flat", {2}, {0, -1});
  m.node("Reshape", {"c1", "flat"}, {"features"});
  m.output("features");
}

Tensor images(int64_t n, uint32_t seed) {
  return Tensor{{n, 3, kSize, kSize}, random_values(static_cast<std::size_t>(n * 3 * kSize * kSize), seed)};
}

std::vector<Tensor> run_with(const std::string& path, int micro_batch, const std::vector<Tensor>& inputs,
                             int64_t* images_per_pass = nullptr) {
  const Model model = Model::load(path, {.threads = 2, .micro_batch = micro_batch});
  auto session = model.new_session();
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& t : inputs) shapes.push_back(t.shape);
  if (images_per_pass) *images_per_pass = session.micro_batch(shapes);
  return session.run(inputs);
}

void expect_same(const std::vector<Tensor>& got, const std::vector<Tensor>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].shape, want[k].shape) << what << ", output " << k;
    const double diff = ref::max_abs_diff(got[k].data, ref::to_double(want[k].data));
    // Plans for other batch sizes may pick other oneDNN kernels: the same sums in another order.
    EXPECT_LE(diff, 1e-5 * std::max(1.0, ref::max_abs(ref::to_double(want[k].data)))) << what << ", output " << k;
  }
}

TEST(MicroBatch, SlicesOfAnySizeGiveTheWholeBatchsOutputs) {
  TempDir dir;
  OnnxBuilder m(13);
  add_detector(m);
  const std::string path = m.save(dir.file("detector.onnx"));
  const std::vector<Tensor> inputs = {images(5, 7)};
  int64_t per_pass = 0;
  const std::vector<Tensor> whole = run_with(path, -1, inputs, &per_pass);
  EXPECT_EQ(per_pass, 5);
  ASSERT_EQ(whole.size(), 2u);
  EXPECT_EQ(whole[0].shape, (std::vector<int64_t>{5, kSize * kSize * 2, 2}));
  EXPECT_EQ(whole[1].shape, (std::vector<int64_t>{5, kChannels * kSize * kSize}));
  // Each image alone, run as a batch of one: what every slice must reproduce in its place.
  std::vector<Tensor> alone = whole;
  for (int64_t i = 0; i < 5; ++i) {
    const int64_t per_image = 3 * kSize * kSize;
    Tensor one{{1, 3, kSize, kSize}, std::vector<float>(inputs[0].data.begin() + i * per_image,
                                                         inputs[0].data.begin() + (i + 1) * per_image)};
    const std::vector<Tensor> y = run_with(path, -1, {one});
    for (std::size_t k = 0; k < y.size(); ++k) {
      std::copy(y[k].data.begin(), y[k].data.end(), alone[k].data.begin() + i * static_cast<int64_t>(y[k].data.size()));
    }
  }
  expect_same(whole, alone, "the whole batch against each image alone");
  for (int slice : {1, 2, 3, 4}) {
    const std::vector<Tensor> sliced = run_with(path, slice, inputs, &per_pass);
    EXPECT_EQ(per_pass, slice);
    expect_same(sliced, whole, "slices of " + std::to_string(slice));
  }
}

TEST(MicroBatch, AProfiledRunTimesEverySlice) {
  TempDir dir;
  OnnxBuilder m(13);
  add_detector(m);
  const std::string path = m.save(dir.file("detector.onnx"));
  const Model whole_model = Model::load(path, {.threads = 1, .micro_batch = -1});
  const Model sliced_model = Model::load(path, {.threads = 1, .micro_batch = 2});
  auto whole = whole_model.new_session();
  auto sliced = sliced_model.new_session();
  std::vector<runtime::StepTiming> whole_steps, sliced_steps;
  const std::vector<Tensor> inputs = {images(4, 9)};
  whole.run(inputs, whole_steps);
  sliced.run(inputs, sliced_steps);
  EXPECT_EQ(sliced_steps.size(), 2 * whole_steps.size());
  for (std::size_t k = 1; k < sliced_steps.size(); ++k) EXPECT_GE(sliced_steps[k].start_ms, sliced_steps[k - 1].start_ms);
  // Two slices hold one slice's activations, not the batch's.
  EXPECT_LT(sliced.arena_bytes({{4, 3, kSize, kSize}}), whole.arena_bytes({{4, 3, kSize, kSize}}));
}

// A graph that takes the detector's input x ([N, 3, H, W]) and ends in output "y" through `tail`.
struct Mixer {
  std::string name;
  void (*tail)(OnnxBuilder&);
};

void check_runs_whole(const Mixer& mixer) {
  TempDir dir;
  OnnxBuilder m(13);
  m.input("x", {-1, 3, kSize, kSize});
  mixer.tail(m);
  m.output("y");
  const std::string path = m.save(dir.file(mixer.name + ".onnx"));
  const std::vector<Tensor> inputs = {images(4, 11)};
  int64_t per_pass = 0;
  const std::vector<Tensor> forced = run_with(path, 1, inputs, &per_pass);
  EXPECT_EQ(per_pass, 4) << mixer.name << " must run whole";
  expect_same(forced, run_with(path, -1, inputs), mixer.name);
}

TEST(MicroBatch, GraphsThatMixImagesRunWhole) {
  const std::vector<Mixer> mixers = {
      {"softmax_over_the_batch",
       [](OnnxBuilder& m) { OnnxBuilder::attr(m.node("Softmax", {"x"}, {"y"}), "axis", int64_t{0}); }},
      {"transpose_of_the_batch",
       [](OnnxBuilder& m) {
         OnnxBuilder::attr(m.node("Transpose", {"x"}, {"y"}), "perm", std::vector<int64_t>{1, 0, 2, 3});
       }},
      {"batch_folded_into_axis_1",
       [](OnnxBuilder& m) {
         m.initializer_i64("target", {2}, {1, -1});
         m.node("Reshape", {"x", "target"}, {"y"});
       }},
      {"concat_along_the_batch",
       [](OnnxBuilder& m) { OnnxBuilder::attr(m.node("Concat", {"x", "x"}, {"y"}), "axis", int64_t{0}); }},
      {"slice_of_the_first_two",
       [](OnnxBuilder& m) {
         m.initializer_i64("starts", {1}, {0});
         m.initializer_i64("ends", {1}, {2});
         m.initializer_i64("axes", {1}, {0});
         m.node("Slice", {"x", "starts", "ends", "axes"}, {"y"});
       }},
      {"reversed_batch",
       [](OnnxBuilder& m) {
         m.initializer_i64("starts", {1}, {-1});
         m.initializer_i64("ends", {1}, {INT64_MIN});
         m.initializer_i64("axes", {1}, {0});
         m.initializer_i64("steps", {1}, {-1});
         m.node("Slice", {"x", "starts", "ends", "axes", "steps"}, {"y"});
       }},
      {"mean_over_the_batch",
       [](OnnxBuilder& m) {
         OnnxBuilder::attr(m.node("ReduceMean", {"x"}, {"y"}), "axes", std::vector<int64_t>{0});
       }},
      {"batch_size_as_data",
       [](OnnxBuilder& m) {
         m.node("Shape", {"x"}, {"shape"});
         m.initializer_i64("zero", {}, {0});
         OnnxBuilder::attr(m.node("Gather", {"shape", "zero"}, {"n"}), "axis", int64_t{0});
         OnnxBuilder::attr(m.node("Cast", {"n"}, {"n_float"}), "to", int64_t{1});
         m.node("Mul", {"x", "n_float"}, {"y"});
       }},
      {"batch_shifted_by_pads",
       [](OnnxBuilder& m) {
         m.initializer_i64("pads", {8}, {-1, 0, 0, 0, 1, 0, 0, 0});
         m.node("Pad", {"x", "pads"}, {"y"});
       }},
      {"first_image_broadcast",
       [](OnnxBuilder& m) {
         m.initializer_i64("starts", {1}, {0});
         m.initializer_i64("ends", {1}, {1});
         m.initializer_i64("axes", {1}, {0});
         m.node("Slice", {"x", "starts", "ends", "axes"}, {"first"});
         m.node("Sub", {"x", "first"}, {"y"});
       }},
  };
  for (const auto& mixer : mixers) check_runs_whole(mixer);
}

TEST(MicroBatch, AFixedBatchIsNeverSplit) {
  TempDir dir;
  OnnxBuilder m(13);
  m.input("x", {4, 3, kSize, kSize});
  m.node("Relu", {"x"}, {"y"});
  m.output("y");
  const std::string path = m.save(dir.file("fixed.onnx"));
  int64_t per_pass = 0;
  const std::vector<Tensor> y = run_with(path, 1, {images(4, 3)}, &per_pass);
  EXPECT_EQ(per_pass, 4);
  ASSERT_EQ(y.size(), 1u);
  EXPECT_EQ(y[0].shape, (std::vector<int64_t>{4, 3, kSize, kSize}));
}

TEST(MicroBatch, TheRuntimesChoiceFollowsTheCacheRule) {
  TempDir dir;
  OnnxBuilder m(13);
  add_detector(m);
  const std::string path = m.save(dir.file("detector.onnx"));
  const Model model = Model::load(path, {.threads = 2});
  auto session = model.new_session();
  const std::size_t per_image = session.arena_bytes({{1, 3, kSize, kSize}});
  const std::size_t weights = (kChannels * 27 + kChannels + kChannels * 9 + 4 * kChannels * 9) * sizeof(float);
  for (int64_t n : {2, 64, 4096}) {
    const int64_t want = runtime::detail::micro_batch_size(n, per_image, weights, runtime::detail::last_level_cache_bytes());
    EXPECT_EQ(session.micro_batch({{n, 3, kSize, kSize}}), want) << "batch " << n;
  }
  // The rule on the figures it was made from (2-core Zen 4, 32 MiB L3; sweep in docs/results.md).
  constexpr std::size_t MiB = 1 << 20, cache = 32 * MiB;
  EXPECT_EQ(runtime::detail::micro_batch_size(32, 157 * MiB / 10, 5 * MiB / 2, cache), 1);  // SCRFD-500m fp32
  EXPECT_EQ(runtime::detail::micro_batch_size(32, 76 * MiB / 10, 5 * MiB / 4, cache), 2);   // SCRFD-500m bf16
  EXPECT_EQ(runtime::detail::micro_batch_size(32, 27 * MiB / 10, 4 * MiB, cache), 5);       // MobileFaceNet fp32
  EXPECT_EQ(runtime::detail::micro_batch_size(32, 137 * MiB / 10, 174 * MiB, cache), 32);   // r50: weights rule
  EXPECT_EQ(runtime::detail::micro_batch_size(3, 1 * MiB, 0, cache), 3);                    // fits whole
  EXPECT_EQ(runtime::detail::micro_batch_size(1, 100 * MiB, 0, cache), 1);
  // A whole socket's L3 (a VM on a server sees the host's) counts as one core's share of it.
  const std::size_t llc = runtime::detail::last_level_cache_bytes();
  EXPECT_GT(llc, 0u);
  EXPECT_LE(llc, runtime::detail::kCoreCacheShareCap);
  std::printf("[micro-batch] cache share per core: %zu KiB\n", llc >> 10);
}

// The weights rule counts what the kernels read: an int8 kernel's weights (held in the graph as
// integer-valued floats) one byte each, other constants 2 bytes in bf16 and 4 in fp32.
TEST(MicroBatch, WeightBytesCountInt8WeightsAtOneByte) {
  runtime::detail::Graph g;
  g.constants["conv/int8_weight"] = runtime::detail::HostTensor::from_f32({4, 25}, std::vector<float>(100, 3.0f));
  g.constants["conv/int8_bias"] = runtime::detail::HostTensor::from_f32({4}, std::vector<float>(4, 0.5f));
  g.constants["fc_weight"] = runtime::detail::HostTensor::from_f32({10}, std::vector<float>(10, 0.1f));
  runtime::detail::Node conv;
  conv.name = "conv";
  conv.op = "Conv";
  conv.inputs = {"x_q", "conv/int8_weight", "conv/int8_bias"};
  conv.outputs = {"y"};
  conv.quant.active = true;
  runtime::detail::Node fc;
  fc.name = "fc";
  fc.op = "Gemm";
  fc.inputs = {"y", "fc_weight"};
  fc.outputs = {"z"};
  g.nodes = {conv, fc};
  using runtime::Precision;
  EXPECT_EQ(runtime::detail::weight_bytes(g, Precision::int8), 100u * 1 + 14u * 4);
  EXPECT_EQ(runtime::detail::weight_bytes(g, Precision::int8_bf16), 100u * 1 + 14u * 2);
  g.nodes[0].quant.active = false;  // the same graph run in float
  EXPECT_EQ(runtime::detail::weight_bytes(g, Precision::fp32), 114u * 4);
  EXPECT_EQ(runtime::detail::weight_bytes(g, Precision::bf16), 114u * 2);
}

}  // namespace
}  // namespace arcforge::test
