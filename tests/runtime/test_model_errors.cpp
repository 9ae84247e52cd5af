// Untrusted model files: every failure is an InputError that names the file (and the node).
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <limits>

#include "arcforge/common/error.hpp"
#include "arcforge/runtime/model.hpp"
#include "onnx_builder.hpp"

namespace arcforge::test {
namespace {

using runtime::Model;

// `action` must throw an InputError whose message holds every needle.
void expect_input_error(const std::function<void()>& action, const std::vector<std::string>& needles) {
  try {
    action();
    FAIL() << "no error; expected one naming " << ::testing::PrintToString(needles);
  } catch (const InputError& e) {
    const std::string what = e.what();
    for (const auto& n : needles) EXPECT_NE(what.find(n), std::string::npos) << "missing '" << n << "' in: " << what;
  }
}

void expect_load_error(const std::string& path, std::vector<std::string> needles,
                       const runtime::Options& options = {}) {
  needles.push_back(path);
  expect_input_error([&] { Model::load(path, options); }, needles);
}

// Loading succeeds (the problem shows only at run time); running on `input` fails naming the file
// and every needle.
void expect_run_error(const std::string& path, const runtime::Tensor& input,
                      std::vector<std::string> needles, const runtime::Options& options = {}) {
  needles.push_back(path);
  const Model model = Model::load(path, options);
  expect_input_error([&] { model.run({input}); }, needles);
}

OnnxBuilder relu_model() {
  OnnxBuilder m;
  m.input("x", {1, 4}).output("y");
  m.node("Relu", {"x"}, {"y"}, "the_relu");
  return m;
}

TEST(ModelErrors, GarbageAndTruncatedFiles) {
  TempDir dir;
  std::ofstream(dir.file("garbage.onnx")) << "this is not a protobuf \xff\xff\xff";
  expect_load_error(dir.file("garbage.onnx"), {"not a valid ONNX model"});
  const std::string bytes = relu_model().bytes();
  std::ofstream(dir.file("cut.onnx"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  expect_load_error(dir.file("cut.onnx"), {"not a valid ONNX model"});
  std::ofstream(dir.file("empty.onnx")).flush();
  expect_load_error(dir.file("empty.onnx"), {"not a valid ONNX model"});
  expect_load_error(dir.file("missing.onnx"), {"cannot read"});
}

TEST(ModelErrors, SizeCap) {
  TempDir dir;
  const std::string path = relu_model().save(dir.path() / "m.onnx");
  runtime::Options small;
  small.max_model_bytes = 10;
  expect_load_error(path, {"over the limit"}, small);
  EXPECT_NO_THROW(Model::load(path));
}

TEST(ModelErrors, UnsupportedOperatorNamesTheNode) {
  TempDir dir;
  OnnxBuilder m;
  m.input("x", {1, 4}).output("y");
  m.node("Relu", {"x"}, {"r"});
  m.node("NonMaxSuppression", {"r"}, {"y"}, "nms_7");
  expect_load_error(m.save(dir.path() / "m.onnx"), {"nms_7", "NonMaxSuppression", "unsupported"});
}

TEST(ModelErrors, CustomDomainIsRejected) {
  TempDir dir;
  OnnxBuilder m = relu_model();
  m.proto().mutable_graph()->mutable_node(0)->set_domain("com.microsoft");
  expect_load_error(m.save(dir.path() / "m.onnx"), {"the_relu", "com.microsoft"});
}

TEST(ModelErrors, MissingInitializerNamesTheNodeAndValue) {
  TempDir dir;
  OnnxBuilder m;
  m.input("x", {1, 3, 8, 8}).output("y");
  m.node("Conv", {"x", "conv_w_missing"}, {"y"}, "conv_3");
  expect_load_error(m.save(dir.path() / "m.onnx"), {"conv_3", "conv_w_missing", "missing initializer"});
}

TEST(ModelErrors, CycleAndDuplicateOutputs) {
  TempDir dir;
  OnnxBuilder cyc;
  cyc.input("x", {1, 4}).output("b");
  cyc.node("Add", {"x", "b"}, {"a"}, "add_a");
  cyc.node("Relu", {"a"}, {"b"}, "relu_b");
  expect_load_error(cyc.save(dir.path() / "cycle.onnx"), {"cycle"});
  OnnxBuilder dup;
  dup.input("x", {1, 4}).output("y");
  dup.node("Relu", {"x"}, {"y"}, "r1");
  dup.node("Relu", {"x"}, {"y"}, "r2");
  expect_load_error(dup.save(dir.path() / "dup.onnx"), {"r2", "output 'y' is defined twice"});
}

// Found by fuzz_onnx_loader: names that an ONNX graph defines must be defined once, and a
// Constant's attribute must have the type its name promises.
TEST(ModelErrors, ValuesDefinedTwiceAndMistypedConstants) {
  TempDir dir;
  OnnxBuilder twice_input = relu_model();
  twice_input.input("x", {1, 4});
  expect_load_error(twice_input.save(dir.path() / "input.onnx"), {"graph input 'x' is defined twice"});
  OnnxBuilder twice_initializer = relu_model();
  twice_initializer.initializer("w", {1}, {1}).initializer("w", {1}, {2});
  expect_load_error(twice_initializer.save(dir.path() / "init.onnx"), {"initializer 'w' is defined twice"});
  OnnxBuilder shadow;
  shadow.input("x", {1, 4}).output("y");
  shadow.node("Relu", {"x"}, {"x"}, "relu_x");
  shadow.node("Relu", {"x"}, {"y"});
  expect_load_error(shadow.save(dir.path() / "shadow.onnx"), {"relu_x", "output 'x' is defined twice"});
  OnnxBuilder constant_over_initializer;
  constant_over_initializer.input("x", {1, 4}).output("y");
  constant_over_initializer.initializer("w", {1, 4}, {1, 2, 3, 4});
  OnnxBuilder::attr(constant_over_initializer.node("Constant", {}, {"w"}, "const_w"), "value_int", int64_t{3});
  constant_over_initializer.node("Add", {"x", "w"}, {"y"});
  expect_load_error(constant_over_initializer.save(dir.path() / "const.onnx"), {"const_w", "output 'w' is defined twice"});
  OnnxBuilder unnamed_output;  // a node's optional output left empty must not "produce" output ''
  unnamed_output.input("x", {1, 4}).output("");
  unnamed_output.node("Relu", {"x"}, {""});
  expect_load_error(unnamed_output.save(dir.path() / "unnamed.onnx"), {"a graph output has no name"});
  OnnxBuilder mistyped;
  mistyped.input("x", {1, 4}).output("y");
  OnnxBuilder::attr(mistyped.node("Constant", {}, {"c"}, "const_c"), "value", std::vector<int64_t>{1, 2});
  mistyped.node("Add", {"x", "c"}, {"y"});
  expect_load_error(mistyped.save(dir.path() / "mistyped.onnx"), {"const_c", "attribute 'value' must be a tensor"});
}

TEST(ModelErrors, BadInitializerData) {
  TempDir dir;
  OnnxBuilder m;
  m.input("x", {1, 4}).output("y");
  m.initializer("w", {2, 4}, {1, 2, 3});  // 3 values for 8
  m.node("Add", {"x", "w"}, {"y"});
  expect_load_error(m.save(dir.path() / "m.onnx"), {"initializer 'w'", "raw_data"});
}

TEST(ModelErrors, BadConvWeightsAreReportedWhenPlanning) {
  TempDir dir;
  OnnxBuilder m;
  m.input("x", {1, 3, 8, 8}).output("y");
  m.initializer("w", {4, 5, 3, 3}, std::vector<float>(4 * 5 * 9, 0.1f));  // 5 input channels, input has 3
  m.node("Conv", {"x", "w"}, {"y"}, "conv_bad");
  expect_run_error(m.save(dir.path() / "m.onnx"), {{1, 3, 8, 8}, std::vector<float>(3 * 64, 1.0f)}, {"conv_bad"});
}

TEST(ModelErrors, InputShapeMismatchAtRun) {
  TempDir dir;
  const Model model = Model::load(relu_model().save(dir.path() / "m.onnx"));
  EXPECT_THROW(model.run({{{1, 5}, std::vector<float>(5)}}), InputError);        // fixed dim differs
  EXPECT_THROW(model.run({{{1, 4}, std::vector<float>(3)}}), InputError);        // data too short
  EXPECT_THROW(model.run({}), InputError);                                       // no input
  EXPECT_EQ(model.run({{{1, 4}, {-1, 2, -3, 4}}})[0].data, (std::vector<float>{0, 2, 0, 4}));
}

// Found by fuzz_model_load: a Concat with no inputs was read past its (empty) list of inputs.
TEST(ModelErrors, ConcatWithoutInputsNamesTheNode) {
  TempDir dir;
  OnnxBuilder m;
  m.input("x", {1, 4}).output("y");
  m.node("Concat", {}, {"c"}, "concat_empty");
  m.node("Add", {"x", "c"}, {"y"});
  expect_run_error(m.save(dir.path() / "m.onnx"), {{1, 4}, {1, 2, 3, 4}}, {"concat_empty", "has no inputs"});
}

// Found by fuzz_model_load: a MatMul's integer constant B (int32 there) was packed as if it held floats.
TEST(ModelErrors, MatMulWithIntegerWeightsNamesTheNode) {
  TempDir dir;
  OnnxBuilder m;
  m.input("x", {2, 4}).output("y");
  m.initializer_i64("w", {4, 3}, std::vector<int64_t>(12, 1));
  m.node("MatMul", {"x", "w"}, {"y"}, "matmul_int_weights");
  expect_run_error(m.save(dir.path() / "m.onnx"), {{2, 4}, std::vector<float>(8, 1.0f)},
                   {"matmul_int_weights", "must be a float constant"});
}

// Found by fuzz_model_load: a Slice of a scalar, folded at load, indexed an empty list of axes.
TEST(ModelErrors, SliceOfAScalarNamesTheNode) {
  TempDir dir;
  OnnxBuilder m;
  m.input("x", {1, 4}).output("y");
  m.initializer("scalar", {}, {2.0f});
  m.initializer_i64("starts", {1}, {0});
  m.initializer_i64("ends", {1}, {1});
  m.node("Slice", {"scalar", "starts", "ends"}, {"s"}, "slice_scalar");
  m.node("Add", {"x", "s"}, {"y"});
  expect_load_error(m.save(dir.path() / "m.onnx"), {"slice_scalar", "cannot slice a scalar"});
}

// Found by reading the shape code while adding fuzz_model_load: shapes that overflow int64 or ask
// for absurd amounts of memory are InputErrors naming the file and node, and an extreme but valid
// Slice step still works.
TEST(ModelErrors, HugeShapesAreRejectedNotAllocated) {
  TempDir dir;
  {
    OnnxBuilder m;
    m.input("x", {1, 4}).output("y");
    m.initializer_i64("huge", {3}, {int64_t{1} << 40, int64_t{1} << 40, 8});
    m.node("ConstantOfShape", {"huge"}, {"c"}, "cos_huge");
    m.node("Add", {"x", "c"}, {"y"});
    expect_load_error(m.save(dir.path() / "cos.onnx"), {"cos_huge", "max_activation_bytes"});
  }
  const runtime::Tensor x{{1, 1, 2, 2}, {1, 2, 3, 4}};
  {
    OnnxBuilder m;
    m.input("x", {1, 1, 2, 2}).output("y");
    m.initializer_i64("shape", {3}, {int64_t{1} << 40, int64_t{1} << 40, 1 << 20});  // product overflows
    m.node("Reshape", {"x", "shape"}, {"y"}, "reshape_huge");
    expect_run_error(m.save(dir.path() / "reshape.onnx"), x, {"reshape_huge"});
  }
  {
    OnnxBuilder m;
    m.input("x", {1, 1, 2, 2}).output("y");
    m.initializer("scales", {4}, {1, 1, 1e30f, 1e30f});
    m.node("Resize", {"x", "", "scales"}, {"y"}, "resize_huge");
    expect_run_error(m.save(dir.path() / "resize.onnx"), x, {"resize_huge"});
  }
  {
    OnnxBuilder m;
    m.input("x", {1, 1, 2, 2}).output("y");
    m.initializer("scales", {4}, {1, 1, 1e5f, 1e5f});  // 1.6e10 floats: over a small cap
    m.node("Resize", {"x", "", "scales"}, {"y"}, "resize_big");
    runtime::Options small;
    small.max_activation_bytes = 1 << 20;
    expect_run_error(m.save(dir.path() / "resize_big.onnx"), x, {"resize_big"}, small);
  }
  {
    OnnxBuilder m;
    m.input("x", {1, 1, 2, 2}).output("y");
    m.initializer_i64("starts", {1}, {0});
    m.initializer_i64("ends", {1}, {2});
    m.initializer_i64("axes", {1}, {3});
    m.initializer_i64("steps", {1}, {std::numeric_limits<int64_t>::max()});
    m.node("Slice", {"x", "starts", "ends", "axes", "steps"}, {"y"}, "slice_big_step");
    const auto out = Model::load(m.save(dir.path() / "slice.onnx")).run({{{1, 1, 2, 2}, {1, 2, 3, 4}}});
    EXPECT_EQ(out[0].shape, (std::vector<int64_t>{1, 1, 2, 1}));
    EXPECT_EQ(out[0].data, (std::vector<float>{1, 3}));
  }
  {
    // PyTorch exports x[..., 1:] with ends = INT64_MAX. Read through a double it became INT64_MIN
    // (an out-of-range conversion) and the slice came out empty.
    OnnxBuilder m;
    m.input("x", {1, 1, 2, 3}).output("y");
    m.initializer_i64("starts", {1}, {1});
    m.initializer_i64("ends", {1}, {std::numeric_limits<int64_t>::max()});
    m.initializer_i64("axes", {1}, {3});
    m.node("Slice", {"x", "starts", "ends", "axes"}, {"y"}, "slice_to_end");
    const auto out = Model::load(m.save(dir.path() / "to_end.onnx")).run({{{1, 1, 2, 3}, {1, 2, 3, 4, 5, 6}}});
    EXPECT_EQ(out[0].shape, (std::vector<int64_t>{1, 1, 2, 2}));
    EXPECT_EQ(out[0].data, (std::vector<float>{2, 3, 5, 6}));
  }
}

}  // namespace
}  // namespace arcforge::test
