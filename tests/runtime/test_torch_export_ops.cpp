// Operators torch.onnx.export writes for a Vision Transformer that the CNN models never used:
// ReduceMean, Pow, Gather, Cast and Split on run-time data (not just on shape arithmetic), each a small
// model checked against ONNX Runtime; then a whole transformer block in torch's opset-11 layout
// (decomposed LayerNorm, qkv reshaped by shape arithmetic, q/k/v gathered, attention, ReLU6 MLP).
#include <gtest/gtest.h>

#include <functional>

#include "arcforge/common/error.hpp"
#include "parity_util.hpp"

namespace arcforge::test {
namespace {

using B = OnnxBuilder;
using runtime::Tensor;

// Runs `path` on `inputs` in both engines; every output must match within `tol` x max |ORT|.
void expect_matches_ort(const std::string& path, const std::vector<Tensor>& inputs, const std::string& what,
                        double tol = 1e-5) {
  const auto ref = run_onnxruntime(path, inputs);
  const auto ours = runtime::Model::load(path, {.threads = 2}).run(inputs);
  ASSERT_EQ(ours.size(), ref.size()) << what;
  for (std::size_t k = 0; k < ref.size(); ++k) {
    ASSERT_EQ(ours[k].shape, ref[k].shape) << what << " output " << k;
    const Difference d = compare(ours[k], ref[k]);
    EXPECT_GT(d.scale, 0.0) << what;
    EXPECT_LE(d.max_abs, tol * d.scale) << what << " output " << k;
  }
}

struct OpCase {
  std::string name;
  int opset;
  std::vector<int64_t> input;                 // x0, uniform in [-2, 2]
  std::function<void(OnnxBuilder&)> body;     // reads x0, writes y
};

std::ostream& operator<<(std::ostream& os, const OpCase& c) { return os << c.name; }

class TorchExportOps : public ::testing::TestWithParam<OpCase> {};

TEST_P(TorchExportOps, MatchesOnnxRuntime) {
  const std::string why = ort_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "SKIPPED: " << why;
  const OpCase& c = GetParam();
  TempDir dir;
  OnnxBuilder m(c.opset);
  if (c.opset >= 18) m.proto().set_ir_version(8);
  m.input("x0", c.input);
  c.body(m);
  m.output("y");
  Tensor x{c.input, {}};
  x.data = random_values(static_cast<std::size_t>(x.numel()), 90, -2, 2);
  expect_matches_ort(m.save(dir.path() / "m.onnx"), {x}, c.name);
}

// Pow of a positive base: |x| + 0.25 first, so fractional and negative exponents are defined.
void positive_pow(B& m, float exponent) {
  m.initializer("off", {}, {0.25f}).initializer("e", {}, {exponent});
  m.node("Abs", {"x0"}, {"a"});
  m.node("Add", {"a", "off"}, {"p"});
  m.node("Pow", {"p", "e"}, {"y"});
}

INSTANTIATE_TEST_SUITE_P(
    Variants, TorchExportOps,
    ::testing::Values(
        OpCase{"reduce_mean_last_axis_keepdims", 11, {2, 3, 8},
               [](B& m) { B::attr(m.node("ReduceMean", {"x0"}, {"y"}), "axes", std::vector<int64_t>{-1}); }},
        OpCase{"reduce_mean_axis1_no_keepdims", 13, {2, 5, 4},
               [](B& m) {
                 auto& n = m.node("ReduceMean", {"x0"}, {"y"});
                 B::attr(n, "axes", std::vector<int64_t>{1});
                 B::attr(n, "keepdims", int64_t{0});
               }},
        OpCase{"reduce_mean_two_axes", 13, {3, 4, 5, 2},
               [](B& m) { B::attr(m.node("ReduceMean", {"x0"}, {"y"}), "axes", std::vector<int64_t>{0, -2}); }},
        OpCase{"reduce_mean_all_axes_no_keepdims", 13, {3, 4, 5},
               [](B& m) { B::attr(m.node("ReduceMean", {"x0"}, {"y"}), "keepdims", int64_t{0}); }},
        OpCase{"reduce_mean_opset18_axes_input", 18, {2, 6, 3},
               [](B& m) {
                 m.initializer_i64("ax", {1}, {-2});
                 m.node("ReduceMean", {"x0", "ax"}, {"y"});
               }},
        OpCase{"pow_2_of_negative_values", 11, {2, 3, 7},
               [](B& m) {
                 m.initializer("e", {}, {2.0f});
                 m.node("Pow", {"x0", "e"}, {"y"});
               }},
        OpCase{"pow_0_5", 13, {2, 9}, [](B& m) { positive_pow(m, 0.5f); }},
        OpCase{"pow_minus_0_5", 13, {4, 5}, [](B& m) { positive_pow(m, -0.5f); }},
        OpCase{"gather_scalar_index_axis0", 11, {3, 2, 4, 5},
               [](B& m) {
                 m.initializer_i64("i", {}, {1});
                 m.node("Gather", {"x0", "i"}, {"y"});
               }},
        OpCase{"gather_1d_index_axis1", 13, {2, 5, 3},
               [](B& m) {
                 m.initializer_i64("i", {3}, {4, 0, 4});
                 B::attr(m.node("Gather", {"x0", "i"}, {"y"}), "axis", int64_t{1});
               }},
        OpCase{"gather_negative_index_last_axis", 13, {2, 3, 6},
               [](B& m) {
                 m.initializer_i64("i", {}, {-2});
                 B::attr(m.node("Gather", {"x0", "i"}, {"y"}), "axis", int64_t{-1});
               }},
        OpCase{"gather_many_indices_2d", 13, {2, 7, 3},  // more indices than reorders: the loop
               [](B& m) {
                 m.initializer_i64("i", {2, 3}, {6, -1, 0, 2, 2, 5});
                 B::attr(m.node("Gather", {"x0", "i"}, {"y"}), "axis", int64_t{1});
               }},
        OpCase{"cast_float_to_float", 11, {2, 3, 4},
               [](B& m) {
                 B::attr(m.node("Cast", {"x0"}, {"c"}), "to", int64_t{1});
                 m.node("Relu", {"c"}, {"y"});
               }},
        // Split (qkv.unbind(0), torch.chunk): the pieces joined again in another order, so that each
        // piece's content and place are checked.
        OpCase{"split_unbind_opset11_attribute", 11, {3, 2, 4, 5},
               [](B& m) {
                 B::attr(m.node("Split", {"x0"}, {"s0", "s1", "s2"}), "split", std::vector<int64_t>{1, 1, 1});
                 B::attr(m.node("Concat", {"s2", "s0", "s1"}, {"y"}), "axis", int64_t{0});
               }},
        OpCase{"split_sizes_input_last_axis", 13, {2, 3, 12},
               [](B& m) {
                 m.initializer_i64("sizes", {3}, {2, 4, 6});
                 B::attr(m.node("Split", {"x0", "sizes"}, {"s0", "s1", "s2"}), "axis", int64_t{-1});
                 B::attr(m.node("Concat", {"s2", "s0", "s1"}, {"y"}), "axis", int64_t{-1});
               }},
        OpCase{"split_equal_pieces_axis1", 13, {2, 6, 4},
               [](B& m) {
                 B::attr(m.node("Split", {"x0"}, {"s0", "s1", "s2"}), "axis", int64_t{1});
                 B::attr(m.node("Concat", {"s1", "s2", "s0"}, {"y"}), "axis", int64_t{1});
               }},
        OpCase{"split_opset18_num_outputs_uneven", 18, {2, 7, 3},  // pieces of 3, 3 and 1
               [](B& m) {
                 auto& split = m.node("Split", {"x0"}, {"s0", "s1", "s2"});
                 B::attr(split, "axis", int64_t{1});
                 B::attr(split, "num_outputs", int64_t{3});
                 B::attr(m.node("Concat", {"s2", "s1", "s0"}, {"y"}), "axis", int64_t{1});
               }}),
    [](const auto& info) { return info.param.name; });

// Unsupported uses of these operators fail when planning, naming the file, the node and why.
TEST(TorchExportErrors, UnsupportedDataPathUsesNameTheNode) {
  TempDir dir;
  struct Bad {
    std::string name;
    std::function<void(B&)> body;
    std::string why;
  };
  const std::vector<Bad> cases = {
      {"pow_runtime_exponent", [](B& m) { m.node("Pow", {"x0", "x0"}, {"y"}, "the_pow"); }, "exponent must be a constant"},
      {"gather_runtime_indices", [](B& m) { m.node("Gather", {"x0", "x0"}, {"y"}, "the_gather"); }, "indices must be"},
      {"gather_out_of_range",
       [](B& m) {
         m.initializer_i64("i", {}, {3});
         m.node("Gather", {"x0", "i"}, {"y"}, "the_gather");
       },
       "out of range"},
      {"cast_to_int", [](B& m) { B::attr(m.node("Cast", {"x0"}, {"y"}, "the_cast"), "to", int64_t{7}); }, "to=7"},
      {"split_sizes_not_the_axis",
       [](B& m) {
         m.initializer_i64("sizes", {2}, {1, 1});
         m.node("Split", {"x0", "sizes"}, {"y", "rest"}, "the_split");
       },
       "split sizes add up to 2, not the axis' 3"},
      {"split_unequal_pieces",
       [](B& m) { B::attr(m.node("Split", {"x0"}, {"y", "b", "c"}, "the_split"), "axis", int64_t{1}); },
       "does not split into 3 equal pieces"},
  };
  for (const auto& c : cases) {
    OnnxBuilder m(13);
    m.input("x0", {3, 4});
    c.body(m);
    m.output("y");
    const std::string path = m.save(dir.path() / (c.name + ".onnx"));
    try {
      runtime::Model::load(path).run({{{3, 4}, std::vector<float>(12, 1.0f)}});
      ADD_FAILURE() << c.name << ": ran";
    } catch (const InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(path), std::string::npos) << what;
      EXPECT_NE(what.find("'the_"), std::string::npos) << what;
      EXPECT_NE(what.find(c.why), std::string::npos) << what;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A ViT block as torch.onnx.export (opset 11) writes it.

constexpr int64_t T = 5, D = 16, Heads = 2, Hidden = 32;

// x [N, T, D] -> LayerNorm as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add -> out.
void decomposed_layernorm(B& m, const std::string& x, const std::string& p, const std::string& out, uint32_t seed) {
  m.initializer(p + ".two", {}, {2.0f}).initializer(p + ".eps", {}, {1e-5f});
  m.initializer(p + ".weight", {D}, random_values(D, seed, 0.5f, 1.5f));
  m.initializer(p + ".bias", {D}, random_values(D, seed + 1, -0.2f, 0.2f));
  B::attr(m.node("ReduceMean", {x}, {p + "/mean"}), "axes", std::vector<int64_t>{-1});
  m.node("Sub", {x, p + "/mean"}, {p + "/d"});
  m.node("Pow", {p + "/d", p + ".two"}, {p + "/sq"});
  B::attr(m.node("ReduceMean", {p + "/sq"}, {p + "/var"}), "axes", std::vector<int64_t>{-1});
  m.node("Add", {p + "/var", p + ".eps"}, {p + "/ve"});
  m.node("Sqrt", {p + "/ve"}, {p + "/std"});
  m.node("Div", {p + "/d", p + "/std"}, {p + "/n"});
  m.node("Mul", {p + "/n", p + ".weight"}, {p + "/w"});
  m.node("Add", {p + "/w", p + ".bias"}, {out});
}

// Shape(v)[k] as a 1-element vector (Gather -> Unsqueeze), the way the exporter builds shapes.
std::string dim_of(B& m, const std::string& v, int64_t k, const std::string& p) {
  m.initializer_i64(p + ".k", {}, {k});
  m.node("Shape", {v}, {p + "/shape"});
  m.node("Gather", {p + "/shape", p + ".k"}, {p + "/dim"});
  B::attr(m.node("Unsqueeze", {p + "/dim"}, {p + "/u"}), "axes", std::vector<int64_t>{0});
  return p + "/u";
}

void vit_block(B& m) {
  decomposed_layernorm(m, "x", "norm1", "h", 1);
  m.initializer("qkv.w", {D, 3 * D}, random_values(D * 3 * D, 3, -0.4f, 0.4f));
  m.node("MatMul", {"h", "qkv.w"}, {"qkv"});
  // [B, N, 3, heads, C / heads]: C / heads through Div and two Casts (to int64), as exported.
  const std::string b = dim_of(m, "h", 0, "sb"), n = dim_of(m, "h", 1, "sn");
  m.initializer_i64("c", {}, {D}).initializer_i64("heads", {}, {Heads});
  m.initializer_i64("three", {1}, {3}).initializer_i64("heads1", {1}, {Heads});
  m.node("Div", {"c", "heads"}, {"hd"});
  B::attr(m.node("Cast", {"hd"}, {"hd64"}), "to", int64_t{7});
  B::attr(m.node("Cast", {"hd64"}, {"hd64b"}), "to", int64_t{7});
  B::attr(m.node("Unsqueeze", {"hd64b"}, {"hdu"}), "axes", std::vector<int64_t>{0});
  B::attr(m.node("Concat", {b, n, "three", "heads1", "hdu"}, {"qkv_shape"}), "axis", int64_t{0});
  m.node("Reshape", {"qkv", "qkv_shape"}, {"qkv5"});
  B::attr(m.node("Transpose", {"qkv5"}, {"qkvt"}), "perm", std::vector<int64_t>{2, 0, 3, 1, 4});
  // q, k, v = qkv[0], qkv[1], qkv[2]: Gathers of run-time data, each through a Cast to float.
  const char* parts[] = {"q", "k", "v"};
  for (int64_t j = 0; j < 3; ++j) {
    const std::string name = parts[j];
    m.initializer_i64("i" + name, {}, {j});
    m.node("Gather", {"qkvt", "i" + name}, {name + "0"});
    B::attr(m.node("Cast", {name + "0"}, {name}), "to", int64_t{1});
  }
  B::attr(m.node("Transpose", {"k"}, {"kt"}), "perm", std::vector<int64_t>{0, 1, 3, 2});
  m.node("MatMul", {"q", "kt"}, {"scores"});
  // scale = head_dim ** -0.5 from the shape arithmetic: Pow of a Cast on the host.
  m.initializer("minus_half", {}, {-0.5f});
  B::attr(m.node("Cast", {"hd64b"}, {"hdf"}), "to", int64_t{1});
  m.node("Pow", {"hdf", "minus_half"}, {"scale"});
  m.node("Mul", {"scores", "scale"}, {"scaled"});
  B::attr(m.node("Softmax", {"scaled"}, {"attn"}), "axis", int64_t{3});
  m.node("MatMul", {"attn", "v"}, {"ctx"});
  B::attr(m.node("Transpose", {"ctx"}, {"ctxt"}), "perm", std::vector<int64_t>{0, 2, 1, 3});
  const std::string b2 = dim_of(m, "h", 0, "sb2"), n2 = dim_of(m, "h", 1, "sn2"), c2 = dim_of(m, "h", 2, "sc2");
  B::attr(m.node("Concat", {b2, n2, c2}, {"ctx_shape"}), "axis", int64_t{0});
  m.node("Reshape", {"ctxt", "ctx_shape"}, {"ctx3"});
  m.initializer("proj.w", {D, D}, random_values(D * D, 4, -0.4f, 0.4f));
  m.initializer("proj.b", {D}, random_values(D, 5, -0.2f, 0.2f));
  m.node("MatMul", {"ctx3", "proj.w"}, {"pm"});
  m.node("Add", {"proj.b", "pm"}, {"proj"});
  m.node("Add", {"x", "proj"}, {"x1"});
  decomposed_layernorm(m, "x1", "norm2", "h2", 6);
  m.initializer("fc1.w", {D, Hidden}, random_values(D * Hidden, 8, -0.4f, 0.4f));
  m.initializer("fc1.b", {Hidden}, random_values(Hidden, 9, -0.2f, 0.2f));
  m.initializer("fc2.w", {Hidden, D}, random_values(Hidden * D, 10, -0.4f, 0.4f));
  m.initializer("fc2.b", {D}, random_values(D, 11, -0.2f, 0.2f));
  m.initializer("zero", {}, {0.0f}).initializer("six", {}, {6.0f});
  m.node("MatMul", {"h2", "fc1.w"}, {"f1"});
  m.node("Add", {"fc1.b", "f1"}, {"f1b"});
  m.node("Clip", {"f1b", "zero", "six"}, {"act"});
  m.node("MatMul", {"act", "fc2.w"}, {"f2"});
  m.node("Add", {"fc2.b", "f2"}, {"f2b"});
  m.node("Add", {"x1", "f2b"}, {"y"});
}

TEST(TorchExportBlock, VitBlockInTorchLayoutMatchesOnnxRuntime) {
  const std::string why = ort_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "SKIPPED: " << why;
  TempDir dir;
  OnnxBuilder m(11);
  m.input("x", {-1, T, D}).output("y");
  vit_block(m);
  const std::string path = m.save(dir.path() / "block.onnx");
  for (int64_t batch : {1, 3}) {
    // A residual stream far from zero mean with a wide range, as in a trained transformer.
    Tensor x{{batch, T, D}, random_values(static_cast<std::size_t>(batch * T * D), 20 + static_cast<uint32_t>(batch), -3, 5)};
    expect_matches_ort(path, {x}, "batch " + std::to_string(batch));
  }
}

}  // namespace
}  // namespace arcforge::test
