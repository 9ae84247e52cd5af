// The optimiser's attention fusion (optimize_attention.cpp): a Vision Transformer's multi-head
// attention as exporters write it, from the Transpose(s) that split the heads to the Transpose that
// merges them back, becomes one FusedAttention node computing softmax(q k^T * scale) v per image and
// head. Two layouts: PyTorch's packed qkv ([B,N,3,H,d], Transpose [2,0,3,1,4], Gathers of q, k, v,
// each optionally through a Cast to float) and arcforge's separate q, k, v ([B,N,H,d] each). The
// scale is a scalar: a constant (Mul either side, or Div), shape arithmetic known at plan time
// (head_dim ** -0.5 from Shape/Gather/Div/Cast/Pow, or Div by its Sqrt), or absent; q, k and v may
// be Gathered at any positions (the node reads each where its Gather did). Near misses seen at load
// (the softmax over another axis, a per-head constant scale, an intermediate read elsewhere, a
// missing output Transpose) are left as written; those seen only when planning (a shape-derived
// scale of several elements, q, k and v of different shapes) are fused at load and run as written
// by the planner. Either way the output matches ONNX Runtime
// running the nodes as written (graph optimizations disabled) at batch 1 and 3, and
// softmax(q k^T * scale) v written out here in double precision; a profiled run shows whether the
// fused kernel ran; it gives the same result at every instruction-set level this CPU runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>

#include "forced_isa.hpp"
#include "parity_util.hpp"

namespace arcforge::test {
namespace {

using B = OnnxBuilder;
using runtime::Tensor;

enum class Layout {
  packed,    // qkv5 [B,N,3,H,d] -> Transpose [2,0,3,1,4] -> Gather 0/1/2 (torch)
  separate,  // q4, k4, v4 [B,N,H,d] -> Transpose [0,2,1,3] / [0,2,3,1] / [0,2,1,3] (arcforge)
};

enum class Scale {
  none,            // Softmax(MatMul(q, kt)): scale 1
  mul,             // Mul(s, c), c = d^-0.5 a scalar initializer
  mul_scale_first, // Mul(c, s)
  div,             // Div(s, c), c = sqrt(d) a scalar initializer
  shape_pow,       // Mul(s, Pow(Cast(Gather(Shape(input), -1), to=float), -0.5)): known at plan time
  shape_sqrt_div,  // Div(s, Sqrt(Cast(Gather(Shape(input), -1), to=float)))
  per_head,        // Mul(s, c) with c a [1,H,1,1] constant: not a scalar, not fused
  shape_per_head,  // Mul(s, ConstantOfShape([1, Shape(input)[heads], 1, 1], 0.4)): known at plan time
                   // but [1,H,1,1], not a scalar: the planner runs the nodes as written
  sdpa,            // torch 2's scaled_dot_product_attention: c = 1 / Sqrt(Cast(Slice(Shape(q), -1:))),
                   // q and kt each multiplied by Sqrt(c) before the product (packed layout)
  sdpa_constant,   // the same with the scale given: q and kt times a constant Sqrt(d^-0.5) each
};

struct AttCase {
  std::string name;
  std::size_t nodes_after_fusion;  // what optimized_node_count() must be
  bool fused = true;               // the attention becomes one node at load
  bool plan_time_fallback = false;  // ... but the planner, seeing the shapes or the scale, runs the
                                    // nodes it stands for as written instead of the kernel
  Layout layout = Layout::packed;
  Scale scale = Scale::mul;
  bool cast = false;                // packed: q, k, v each through Cast(to=1) after the Gather
  bool torch_linear = false;        // packed: x [B,N,C] -> MatMul(x, Wqkv) -> Reshape to qkv5, y Reshaped
                                    // to [B,N,C]; shape_pow then as torch writes it from Shape(x)
  std::optional<int64_t> softmax_axis = -1;  // nullopt: no attribute (opset 13: -1; below: 1)
  bool scores_output = false;       // s is also a graph output
  bool probs_read_elsewhere = false;// p also feeds a ReduceMean over the queries, a second output
  bool output_transpose = true;     // false: y = o, [B,H,N,d]
  std::vector<int64_t> gather_indices{0, 1, 2};  // packed: the Gathers' indices of q, k and v
  bool unbind = false;              // packed: Squeeze(Split(t, axis 0)[j], axes [0]) (timm's
                                    // qkv.unbind(0)) instead of the Gathers
  bool split_sizes = true;          // unbind: the Split says its pieces are of 1 (else equal pieces)
  bool k_two_transposes = false;    // separate: kt = Transpose(Transpose(k4, [0,2,1,3]), [0,1,3,2])
  int opset = 13;
  int64_t tokens = 7, heads = 3, head_dim = 5;
  int64_t kv_tokens = 0, v_head_dim = 0;  // separate: k and v's tokens, v's head_dim (0: as q's)
};

std::ostream& operator<<(std::ostream& os, const AttCase& c) { return os << c.name; }

int64_t embed(const AttCase& c) { return c.heads * c.head_dim; }
int64_t kv_tokens(const AttCase& c) { return c.kv_tokens > 0 ? c.kv_tokens : c.tokens; }
int64_t v_head_dim(const AttCase& c) { return c.v_head_dim > 0 ? c.v_head_dim : c.head_dim; }

// The square root of 1 / sqrt(head_dim) that torch 2's scaled_dot_product_attention multiplies q
// and k^T by, in float as the graph computes it.
double sdpa_root(const AttCase& c) {
  return static_cast<double>(std::sqrt(1.0f / std::sqrt(static_cast<float>(c.head_dim))));
}

// The scalar the scores are multiplied by (as the graph computes it, in float).
double scale_value(const AttCase& c) {
  switch (c.scale) {
    case Scale::none: return 1.0;
    case Scale::mul:
    case Scale::mul_scale_first:
    case Scale::shape_pow: return static_cast<double>(std::pow(static_cast<float>(c.head_dim), -0.5f));
    case Scale::div:
    case Scale::shape_sqrt_div: return 1.0 / static_cast<double>(std::sqrt(static_cast<float>(c.head_dim)));
    case Scale::sdpa:
    case Scale::sdpa_constant: {
      const double root = sdpa_root(c);
      return root * root;
    }
    case Scale::per_head:
    case Scale::shape_per_head: break;
  }
  throw std::logic_error("no scalar scale");
}

std::vector<float> per_head_scale(const AttCase& c) {
  return random_values(static_cast<std::size_t>(c.heads), 11, 0.2f, 0.6f);
}

std::string build(const AttCase& c, const std::string& dir) {
  OnnxBuilder m(c.opset);
  const int64_t n = c.tokens, h = c.heads, d = c.head_dim, e = embed(c);
  m.output("y");
  if (c.scores_output) m.output("s");
  if (c.probs_read_elsewhere) m.output("probs_mean");

  // The value the shape-derived scale is computed from, and the index of head_dim in its shape.
  std::string shape_source;
  std::string qh, kt, vh;
  if (c.layout == Layout::packed) {
    std::string qkv5 = "qkv5";
    if (c.torch_linear) {
      m.input("x", {-1, n, e});
      m.initializer("qkv.w", {e, 3 * e}, random_values(static_cast<std::size_t>(e * 3 * e), 5, -0.5f, 0.5f));
      m.initializer_i64("qkv_shape", {5}, {-1, n, 3, h, d});
      m.node("MatMul", {"x", "qkv.w"}, {"qkv"});
      m.node("Reshape", {"qkv", "qkv_shape"}, {qkv5});
      shape_source = "x";
    } else {
      m.input(qkv5, {-1, n, 3, h, d});
      shape_source = qkv5;
    }
    B::attr(m.node("Transpose", {qkv5}, {"t"}), "perm", std::vector<int64_t>{2, 0, 3, 1, 4});
    const char* parts[] = {"q", "k", "v"};
    if (c.unbind) {
      // torch.onnx's unbind: attributes below opset 13, constant inputs from it.
      const bool inputs = c.opset >= 13;
      std::vector<std::string> split_in{"t"};
      if (inputs) {
        m.initializer_i64("pieces", {3}, {1, 1, 1}).initializer_i64("axis0", {1}, {0});
        if (c.split_sizes) split_in.push_back("pieces");
      }
      auto& split = m.node("Split", split_in, {"t0", "t1", "t2"});
      B::attr(split, "axis", int64_t{0});
      if (!inputs && c.split_sizes) B::attr(split, "split", std::vector<int64_t>{1, 1, 1});
      for (int64_t j = 0; j < 3; ++j) {
        const std::string piece = "t" + std::to_string(j), name = parts[j];
        const std::string squeezed = c.cast ? name + "0" : name;
        if (inputs) {
          m.node("Squeeze", {piece, "axis0"}, {squeezed});
        } else {
          B::attr(m.node("Squeeze", {piece}, {squeezed}), "axes", std::vector<int64_t>{0});
        }
        if (c.cast) B::attr(m.node("Cast", {squeezed}, {name}), "to", int64_t{1});
      }
    }
    for (int64_t j = 0; j < 3 && !c.unbind; ++j) {
      const std::string name = parts[j];
      m.initializer_i64("i_" + name, {}, {c.gather_indices.at(static_cast<std::size_t>(j))});
      if (c.cast) {
        m.node("Gather", {"t", "i_" + name}, {name + "0"});
        B::attr(m.node("Cast", {name + "0"}, {name}), "to", int64_t{1});
      } else {
        m.node("Gather", {"t", "i_" + name}, {name});
      }
    }
    B::attr(m.node("Transpose", {"k"}, {"kt"}), "perm", std::vector<int64_t>{0, 1, 3, 2});
    qh = "q", kt = "kt", vh = "v";
  } else {
    m.input("q4", {-1, n, h, d}).input("k4", {-1, kv_tokens(c), h, d}).input("v4", {-1, kv_tokens(c), h, v_head_dim(c)});
    B::attr(m.node("Transpose", {"q4"}, {"qh"}), "perm", std::vector<int64_t>{0, 2, 1, 3});
    if (c.k_two_transposes) {
      B::attr(m.node("Transpose", {"k4"}, {"kh"}), "perm", std::vector<int64_t>{0, 2, 1, 3});
      B::attr(m.node("Transpose", {"kh"}, {"kt"}), "perm", std::vector<int64_t>{0, 1, 3, 2});
    } else {
      B::attr(m.node("Transpose", {"k4"}, {"kt"}), "perm", std::vector<int64_t>{0, 2, 3, 1});
    }
    B::attr(m.node("Transpose", {"v4"}, {"vh"}), "perm", std::vector<int64_t>{0, 2, 1, 3});
    shape_source = "k4";
    qh = "qh", kt = "kt", vh = "vh";
  }

  if (c.scale == Scale::sdpa || c.scale == Scale::sdpa_constant) {
    std::string root_q = "root_q", root_k = "root_k";
    if (c.scale == Scale::sdpa) {
      // As torch 2 exports it: the scale from q's shape, its square root taken once per operand.
      m.initializer_i64("last_start", {1}, {-1}).initializer_i64("last_end", {1}, {INT64_MAX});
      m.initializer("one_f", {1}, {1.0f});
      m.node("Shape", {qh}, {"q_shape"});
      m.node("Slice", {"q_shape", "last_start", "last_end"}, {"q_last"});
      B::attr(m.node("Cast", {"q_last"}, {"q_last_f"}), "to", int64_t{1});
      m.node("Sqrt", {"q_last_f"}, {"q_root"});
      m.node("Div", {"one_f", "q_root"}, {"sdpa_scale"});
      m.node("Sqrt", {"sdpa_scale"}, {root_q});
      m.node("Sqrt", {"sdpa_scale"}, {root_k});
    } else {
      m.initializer(root_q, {}, {static_cast<float>(sdpa_root(c))});
      root_k = root_q;
    }
    m.node("Mul", {qh, root_q}, {"q_scaled"});
    m.node("Mul", {kt, root_k}, {"kt_scaled"});
    qh = "q_scaled", kt = "kt_scaled";
  }
  m.node("MatMul", {qh, kt}, {"s"});
  std::string scores = "s";
  switch (c.scale) {
    case Scale::none:
    case Scale::sdpa:
    case Scale::sdpa_constant: break;
    case Scale::mul:
      m.initializer("scale", {}, {static_cast<float>(scale_value(c))});
      m.node("Mul", {"s", "scale"}, {"s2"});
      scores = "s2";
      break;
    case Scale::mul_scale_first:
      m.initializer("scale", {}, {static_cast<float>(scale_value(c))});
      m.node("Mul", {"scale", "s"}, {"s2"});
      scores = "s2";
      break;
    case Scale::div:
      m.initializer("sqrt_d", {}, {std::sqrt(static_cast<float>(d))});
      m.node("Div", {"s", "sqrt_d"}, {"s2"});
      scores = "s2";
      break;
    case Scale::shape_pow:
      m.initializer("minus_half", {}, {-0.5f});
      m.node("Shape", {shape_source}, {"shape"});
      if (c.torch_linear) {
        // As torch writes head_dim ** -0.5 for x [B,N,C]: C = Shape(x)[2], C / H, two Casts to
        // int64, a Cast to float and Pow -0.5.
        m.initializer_i64("i_c", {}, {2}).initializer_i64("num_heads", {}, {h});
        m.node("Gather", {"shape", "i_c"}, {"c_dim"});
        m.node("Div", {"c_dim", "num_heads"}, {"hd"});
        B::attr(m.node("Cast", {"hd"}, {"hd64"}), "to", int64_t{7});
        B::attr(m.node("Cast", {"hd64"}, {"hd64b"}), "to", int64_t{7});
        B::attr(m.node("Cast", {"hd64b"}, {"hdf"}), "to", int64_t{1});
      } else {
        m.initializer_i64("i_last", {}, {-1});
        m.node("Gather", {"shape", "i_last"}, {"hd"});
        B::attr(m.node("Cast", {"hd"}, {"hdf"}), "to", int64_t{1});
      }
      m.node("Pow", {"hdf", "minus_half"}, {"scale"});
      m.node("Mul", {"s", "scale"}, {"s2"});
      scores = "s2";
      break;
    case Scale::shape_sqrt_div:
      m.initializer_i64("i_last", {}, {-1});
      m.node("Shape", {shape_source}, {"shape"});
      m.node("Gather", {"shape", "i_last"}, {"hd"});
      B::attr(m.node("Cast", {"hd"}, {"hdf"}), "to", int64_t{1});
      m.node("Sqrt", {"hdf"}, {"sqrt_d"});
      m.node("Div", {"s", "sqrt_d"}, {"s2"});
      scores = "s2";
      break;
    case Scale::per_head:
      m.initializer("scale", {1, h, 1, 1}, per_head_scale(c));
      m.node("Mul", {"s", "scale"}, {"s2"});
      scores = "s2";
      break;
    case Scale::shape_per_head: {
      // [1, H, 1, 1] from the heads axis of the input's shape, filled with 0.4.
      const int64_t heads_axis = c.layout == Layout::packed ? 3 : 2;
      m.initializer_i64("one", {1}, {1})
          .initializer_i64("heads_start", {1}, {heads_axis})
          .initializer_i64("heads_end", {1}, {heads_axis + 1});
      m.node("Shape", {shape_source}, {"shape"});
      m.node("Slice", {"shape", "heads_start", "heads_end"}, {"heads_dim"});
      B::attr(m.node("Concat", {"one", "heads_dim", "one", "one"}, {"scale_dims"}), "axis", int64_t{0});
      auto& fill = m.node("ConstantOfShape", {"scale_dims"}, {"scale"});
      auto* value = fill.add_attribute();
      value->set_name("value");
      value->set_type(onnx::AttributeProto::TENSOR);
      value->mutable_t()->set_data_type(onnx::TensorProto::FLOAT);
      value->mutable_t()->add_dims(1);
      value->mutable_t()->add_float_data(0.4f);
      m.node("Mul", {"s", "scale"}, {"s2"});
      scores = "s2";
      break;
    }
  }
  auto& softmax = m.node("Softmax", {scores}, {"p"});
  if (c.softmax_axis) B::attr(softmax, "axis", *c.softmax_axis);
  if (c.probs_read_elsewhere) {
    auto& mean = m.node("ReduceMean", {"p"}, {"probs_mean"});
    B::attr(mean, "axes", std::vector<int64_t>{2});
    B::attr(mean, "keepdims", int64_t{1});
  }
  const std::string out = c.torch_linear ? "ctx" : "y";
  if (c.output_transpose) {
    m.node("MatMul", {"p", vh}, {"o"});
    B::attr(m.node("Transpose", {"o"}, {out}), "perm", std::vector<int64_t>{0, 2, 1, 3});
  } else {
    m.node("MatMul", {"p", vh}, {out});
  }
  if (c.torch_linear) {
    m.initializer_i64("ctx_shape", {3}, {-1, n, e});
    m.node("Reshape", {"ctx", "ctx_shape"}, {"y"});
  }
  return m.save(std::filesystem::path(dir) / (c.name + ".onnx"));
}

// The graph inputs for `batch` images: values in [-3, 3], so that the scaled scores spread over a
// few units (standard deviation 3) and the softmax is neither flat nor one-hot. Without a scale the
// values shrink by head_dim^-1/4 to keep that spread: fp32 scores of tens would put the exp's
// amplified rounding (|s| * 2^-24 relative) in every comparison below, fused or not.
std::vector<Tensor> make_inputs(const AttCase& c, int64_t batch) {
  const int64_t n = c.tokens, h = c.heads, d = c.head_dim;
  const uint32_t seed = 40 + static_cast<uint32_t>(batch);
  const float r = c.scale == Scale::none ? 3.0f * std::pow(static_cast<float>(d), -0.25f) : 3.0f;
  std::vector<Tensor> in;
  if (c.layout == Layout::packed) {
    if (c.torch_linear) {
      in.push_back(Tensor{{batch, n, embed(c)}, random_values(static_cast<std::size_t>(batch * n * embed(c)), seed, -r, r)});
    } else {
      in.push_back(Tensor{{batch, n, 3, h, d}, random_values(static_cast<std::size_t>(batch * n * 3 * h * d), seed, -r, r)});
    }
  } else {
    const int64_t nk = kv_tokens(c), dv = v_head_dim(c);
    const std::vector<std::vector<int64_t>> dims = {{batch, n, h, d}, {batch, nk, h, d}, {batch, nk, h, dv}};
    for (uint32_t j = 0; j < 3; ++j) {
      const auto& dj = dims[j];
      in.push_back(Tensor{dj, random_values(static_cast<std::size_t>(dj[0] * dj[1] * dj[2] * dj[3]), seed + 100 * j, -r, r)});
    }
  }
  return in;
}

// Whether reference_attention() below computes this case's first output.
bool has_double_reference(const AttCase& c) {
  return !c.torch_linear && c.output_transpose && c.scale != Scale::per_head && c.scale != Scale::shape_per_head &&
         (c.softmax_axis == -1 || c.softmax_axis == 3);
}

// y[b,t,h,:] = sum_m softmax_m(scale * q[b,t,h,:] . k[b,m,h,:]) v[b,m,h,:], in double, from the
// graph inputs; y is [B, T, H, dv] (m over k's and v's tokens).
std::vector<double> reference_attention(const AttCase& c, const std::vector<Tensor>& in) {
  const int64_t n = c.tokens, nk = kv_tokens(c), h = c.heads, d = c.head_dim, dv = v_head_dim(c);
  const int64_t batch = in.at(0).shape.at(0);
  // part j (0 q, 1 k, 2 v) at image b, token t, head a, element e
  auto at = [&](int j, int64_t b, int64_t t, int64_t a, int64_t e) -> double {
    if (c.layout == Layout::packed) {
      const int64_t index = c.gather_indices.at(static_cast<std::size_t>(j));
      const int64_t slab = index < 0 ? index + 3 : index;  // the Gather's index along the 3 of [B,N,3,H,d]
      return in[0].data[static_cast<std::size_t>((((b * n + t) * 3 + slab) * h + a) * d + e)];
    }
    const int64_t tokens = j == 0 ? n : nk, width = j == 2 ? dv : d;
    return in[static_cast<std::size_t>(j)].data[static_cast<std::size_t>(((b * tokens + t) * h + a) * width + e)];
  };
  const double scale = scale_value(c);
  std::vector<double> y(static_cast<std::size_t>(batch * n * h * dv), 0.0);
  std::vector<double> p(static_cast<std::size_t>(nk));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t a = 0; a < h; ++a) {
      for (int64_t t = 0; t < n; ++t) {
        double top = -INFINITY;
        for (int64_t m = 0; m < nk; ++m) {
          double s = 0;
          for (int64_t e = 0; e < d; ++e) s += at(0, b, t, a, e) * at(1, b, m, a, e);
          p[static_cast<std::size_t>(m)] = s * scale;
          top = std::max(top, s * scale);
        }
        double sum = 0;
        for (double& v : p) sum += (v = std::exp(v - top));
        for (int64_t e = 0; e < dv; ++e) {
          double acc = 0;
          for (int64_t m = 0; m < nk; ++m) acc += p[static_cast<std::size_t>(m)] * at(2, b, m, a, e);
          y[static_cast<std::size_t>(((b * n + t) * h + a) * dv + e)] = acc / sum;
        }
      }
    }
  }
  return y;
}

Difference compare_double(const Tensor& ours, const std::vector<double>& ref) {
  Difference diff;
  EXPECT_EQ(ours.data.size(), ref.size());
  for (std::size_t k = 0; k < ref.size() && k < ours.data.size(); ++k) {
    diff.max_abs = std::max(diff.max_abs, std::abs(static_cast<double>(ours.data[k]) - ref[k]));
    diff.scale = std::max(diff.scale, std::abs(ref[k]));
  }
  return diff;
}

// Largest |ours - ref| allowed, relative to max |ref|: fp32 dot products of <= 24 terms and a softmax
// over <= 19 scores of a few units. Node by node (ARCFORGE_RUNTIME_FUSE=0) the runtime is within
// 1.1e-6 of ONNX Runtime and 1.0e-6 of the double reference here; fused, within 4.6e-7 of ONNX
// Runtime and 9.7e-7 of the double reference (packed_cast_long_fused, batch 1), on AVX2.
constexpr double kTolerance = 2e-6;

std::vector<int64_t> y_shape(const AttCase& c, int64_t batch) {
  if (c.torch_linear) return {batch, c.tokens, embed(c)};
  if (!c.output_transpose) return {batch, c.heads, c.tokens, v_head_dim(c)};
  return {batch, c.tokens, c.heads, v_head_dim(c)};
}

// Whether a run at these inputs executes the fused kernel: one "loop" step and no Softmax step (the
// nodes as written, or the planner's fallback to them, run the softmax as a oneDNN primitive).
bool runs_fused_kernel(const runtime::Model& model, const std::vector<Tensor>& inputs) {
  auto session = model.new_session();
  std::vector<runtime::StepTiming> steps;
  session.run(inputs, steps);
  int loops = 0;
  bool softmax = false;
  for (const auto& step : steps) {
    loops += step.kernel == "loop";
    softmax = softmax || step.node.rfind("Softmax", 0) == 0;
  }
  return loops == 1 && !softmax;
}

class AttentionFusion : public ::testing::TestWithParam<AttCase> {};

TEST_P(AttentionFusion, FusesOnlyTheExactPatternAndMatchesOnnxRuntime) {
  const AttCase& c = GetParam();
  TempDir dir;
  const std::string path = build(c, dir.path().string());
  const runtime::Model model = runtime::Model::load(path, {.threads = 2});
  EXPECT_EQ(model.optimized_node_count(), c.nodes_after_fusion)
      << (c.fused ? "the attention should be one FusedAttention node" : "a near miss should stay as written");
  EXPECT_EQ(runs_fused_kernel(model, make_inputs(c, 3)), c.fused && !c.plan_time_fallback);

  const std::string why = ort_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "SKIPPED: " << why;
  for (int64_t batch : {1, 3}) {
    const std::vector<Tensor> inputs = make_inputs(c, batch);
    const auto ref = run_onnxruntime(path, inputs, 1, "disabled");
    const auto ours = model.run(inputs);
    ASSERT_EQ(ours.size(), ref.size());
    ASSERT_EQ(ours.at(0).shape, y_shape(c, batch));
    for (std::size_t k = 0; k < ref.size(); ++k) {
      ASSERT_EQ(ours[k].shape, ref[k].shape) << "output " << k;
      const Difference d = compare(ours[k], ref[k]);
      EXPECT_GT(d.scale, 0.0);
      EXPECT_LE(d.max_abs, kTolerance * d.scale) << "batch " << batch << ", output " << k << ": max |ours - ort| "
                                                 << d.max_abs << " of " << d.scale;
    }
  }
}

TEST_P(AttentionFusion, MatchesAttentionInDoublePrecision) {
  const AttCase& c = GetParam();
  if (!has_double_reference(c)) GTEST_SKIP() << "SKIPPED: no double reference for this graph (ONNX Runtime checks it)";
  TempDir dir;
  const runtime::Model model = runtime::Model::load(build(c, dir.path().string()), {.threads = 2});
  for (int64_t batch : {1, 3}) {
    const std::vector<Tensor> inputs = make_inputs(c, batch);
    const auto ours = model.run(inputs);
    ASSERT_EQ(ours.at(0).shape, y_shape(c, batch));
    const Difference d = compare_double(ours[0], reference_attention(c, inputs));
    EXPECT_GT(d.scale, 0.0);
    EXPECT_LE(d.max_abs, kTolerance * d.scale) << "batch " << batch << ": max |ours - double| " << d.max_abs << " of "
                                               << d.scale;
  }
}

// Node counts. Outside the attention the runtime keeps every node here (nothing is constant-folded:
// the shape arithmetic reads a graph input's Shape, evaluated on the host at plan time). Inside it,
// without the fusion, each node stays, except that a Mul by a scalar constant (either side) is
// already absorbed as a post-op scale into the MatMul of the scores; Div, shape-derived and per-head
// scales stay nodes. A fused attention is one node for everything from the Transpose(s) splitting
// the heads (t; qh, kt, vh) to the Transpose merging them (y):
//   packed:   Transpose, 3 Gathers [+ 3 Casts], Transpose(k), MatMul, [Mul|Div], Softmax, MatMul,
//             Transpose = 9 [+3] [+1] nodes
//   separate: 3 Transposes, MatMul, [Mul|Div], Softmax, MatMul, Transpose = 7 [+1] nodes
// so it removes (absorbed - 1) nodes. Shape-derived scales keep their chain outside, as the fused
// node's scale input: Shape, Gather, Cast, Pow (4); Shape, Gather, Cast, Sqrt (4); torch's Shape,
// Gather, Div, Cast, Cast, Cast, Pow (7).
INSTANTIATE_TEST_SUITE_P(
    Patterns, AttentionFusion,
    ::testing::Values(
        // --- fused ----------------------------------------------------------------------------
        // 10 nodes (today 9: the Mul is the MatMul's post-op) -> 1.
        AttCase{.name = "packed_mul_fused", .nodes_after_fusion = 1},
        // 13 nodes with the Casts (today 12) -> 1.
        AttCase{.name = "packed_cast_mul_scale_first_fused", .nodes_after_fusion = 1, .scale = Scale::mul_scale_first,
                .cast = true},
        // 10 nodes, the Div stays today -> 1.
        AttCase{.name = "packed_div_fused", .nodes_after_fusion = 1, .scale = Scale::div},
        // 10 + 4 shape nodes -> 1 + 4.
        AttCase{.name = "packed_shape_pow_fused", .nodes_after_fusion = 5, .scale = Scale::shape_pow},
        // 9 nodes, no scale -> 1.
        AttCase{.name = "packed_no_scale_fused", .nodes_after_fusion = 1, .scale = Scale::none},
        // Softmax axis 3 is the last axis of the [B,H,N,N] scores: 10 (today 9) -> 1.
        AttCase{.name = "packed_softmax_axis3_fused", .nodes_after_fusion = 1, .softmax_axis = 3},
        // 19 tokens and head_dim 20: partial vectors of 8 and 16 lanes in both. 13 (today 12) -> 1.
        AttCase{.name = "packed_cast_long_fused", .nodes_after_fusion = 1, .cast = true, .tokens = 19, .heads = 2,
                .head_dim = 20},
        // head_dim 8 (whole AVX2 vectors), 17 tokens: 9 -> 1.
        AttCase{.name = "packed_no_scale_d8_fused", .nodes_after_fusion = 1, .scale = Scale::none, .tokens = 17,
                .heads = 2, .head_dim = 8},
        // As torch.onnx.export writes arcface_torch's ViT attention: MatMul(x, Wqkv), Reshape, 13
        // attention nodes with the Casts, 7 shape nodes, Reshape back: 23 -> 2 + 1 + 7 + 1 = 11.
        AttCase{.name = "torch_vit_attention_fused", .nodes_after_fusion = 11, .scale = Scale::shape_pow, .cast = true,
                .torch_linear = true, .tokens = 19, .heads = 2, .head_dim = 12},
        // 8 nodes (today 7) -> 1.
        AttCase{.name = "separate_mul_fused", .nodes_after_fusion = 1, .layout = Layout::separate},
        // 8 + 4 shape nodes -> 1 + 4.
        AttCase{.name = "separate_shape_sqrt_div_fused", .nodes_after_fusion = 5, .layout = Layout::separate,
                .scale = Scale::shape_sqrt_div},
        // k's heads split, then transposed, by two Transposes: 9 nodes (today 8) -> 1.
        AttCase{.name = "separate_k_two_transposes_fused", .nodes_after_fusion = 1, .layout = Layout::separate,
                .k_two_transposes = true},
        // torch's opset-11 export: Softmax with axis 3 flattens at the last axis: 13 (today 12) -> 1.
        AttCase{.name = "packed_opset11_softmax_axis3_fused", .nodes_after_fusion = 1, .cast = true,
                .softmax_axis = 3, .opset = 11},
        // 7 nodes, 19 tokens, head_dim 20 -> 1.
        AttCase{.name = "separate_no_scale_long_fused", .nodes_after_fusion = 1, .layout = Layout::separate,
                .scale = Scale::none, .tokens = 19, .heads = 2, .head_dim = 20},
        // --- fused at load, run as written by the planner: what does not fit the kernel is known
        // only when planning (the scale's size, the operands' shapes) -----------------------------
        // A [1,H,1,1] scale from shape arithmetic (Shape, Slice, Concat, ConstantOfShape): 10 + 4
        // nodes -> 1 + 4.
        AttCase{.name = "shape_derived_per_head_scale_runs_unfused", .nodes_after_fusion = 5,
                .plan_time_fallback = true, .scale = Scale::shape_per_head},
        // Shapes the kernel does not take: 8 nodes -> 1. Cross-attention: k and v have 11 tokens, q 7.
        AttCase{.name = "separate_cross_attention_runs_unfused", .nodes_after_fusion = 1, .plan_time_fallback = true,
                .layout = Layout::separate, .kv_tokens = 11},
        // v's head_dim 7, q's and k's 5.
        AttCase{.name = "separate_value_dim_differs_runs_unfused", .nodes_after_fusion = 1, .plan_time_fallback = true,
                .layout = Layout::separate, .v_head_dim = 7},
        // --- not fused: every node stays as today (its Mul a post-op where it is a scalar constant) --
        // Softmax over the queries (axis 2): 10 nodes, the Mul a post-op -> 9.
        AttCase{.name = "softmax_axis2_not_fused", .nodes_after_fusion = 9, .fused = false, .softmax_axis = 2},
        // A [1,H,1,1] scale is not a scalar: no post-op either -> 10.
        AttCase{.name = "per_head_scale_not_fused", .nodes_after_fusion = 10, .fused = false, .scale = Scale::per_head},
        // The raw scores s are also a graph output: the Mul is not a post-op either -> 10.
        AttCase{.name = "scores_also_output_not_fused", .nodes_after_fusion = 10, .fused = false, .scores_output = true},
        // p also feeds a ReduceMean (a second output): 10 + 1 nodes, the Mul a post-op -> 10.
        AttCase{.name = "probs_read_elsewhere_not_fused", .nodes_after_fusion = 10, .fused = false,
                .probs_read_elsewhere = true},
        // y = o [B,H,N,d], no merging Transpose: 9 nodes (today 8).
        AttCase{.name = "output_transpose_absent_not_fused", .nodes_after_fusion = 8, .fused = false,
                .output_transpose = false},
        // timm's qkv.unbind(0): Split(t) into 3 pieces of 1 and a Squeeze of each instead of the
        // Gathers. Transpose, Split, 3 Squeezes, Transpose(k), MatMul, Mul, Softmax, MatMul,
        // Transpose: 11 nodes -> 1; at opset 11 as attributes; with 3 Casts 14 -> 1; a Split without
        // sizes (equal pieces, of 1 because the axis has 3) -> 1.
        AttCase{.name = "packed_unbind_fused", .nodes_after_fusion = 1, .unbind = true},
        AttCase{.name = "packed_unbind_opset11_fused", .nodes_after_fusion = 1, .softmax_axis = 3, .unbind = true,
                .opset = 11},
        AttCase{.name = "packed_unbind_cast_equal_pieces_fused", .nodes_after_fusion = 1, .cast = true, .unbind = true,
                .split_sizes = false},
        // torch 2's scaled_dot_product_attention on timm's unbind: Transpose, Split, 3 Squeezes,
        // Transpose(k), 2 Muls, MatMul, Softmax, MatMul, Transpose absorbed (12 -> 1); Shape(q)
        // becomes Shape(qkv) and a Gather of its head axes (+2); Slice, Cast, Sqrt, Div and two
        // Sqrts stay, the scale's shape arithmetic (+6) -> 9.
        AttCase{.name = "packed_unbind_sdpa_fused", .nodes_after_fusion = 9, .scale = Scale::sdpa, .unbind = true,
                .opset = 14},
        // The same with the scale given: 12 nodes -> 1.
        AttCase{.name = "packed_unbind_sdpa_given_scale_fused", .nodes_after_fusion = 1, .scale = Scale::sdpa_constant,
                .unbind = true, .opset = 14},
        // q = Gather(t, 1), k = Gather(t, 0): the fused node reads each from where its Gather did
        // (the `indices` attribute): 10 nodes, all absorbed -> 1.
        AttCase{.name = "q_and_k_swapped_fused", .nodes_after_fusion = 1, .fused = true, .gather_indices = {1, 0, 2}},
        // v = Gather(t, -1), the same slab as index 2 counted from the end, resolved when planning -> 1.
        AttCase{.name = "negative_v_index_fused", .nodes_after_fusion = 1, .fused = true, .gather_indices = {0, 1, -1}},
        // Opset 11 without an axis: Softmax flattens at axis 1, one softmax over all heads' scores
        // of an image: 10 (today 9).
        AttCase{.name = "opset11_softmax_default_axis_not_fused", .nodes_after_fusion = 9, .fused = false,
                .softmax_axis = std::nullopt, .opset = 11},
        // Separate layout, softmax over axis 2: 8 (today 7).
        AttCase{.name = "separate_softmax_axis2_not_fused", .nodes_after_fusion = 7, .fused = false,
                .layout = Layout::separate, .softmax_axis = 2}),
    [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------
// The fused kernel at every instruction-set level this CPU runs.

TEST(AttentionFusionIsa, SameResultAtEveryKernelIsa) {
  // Packed torch layout with the Casts, 19 tokens and head_dim 20 (partial vectors at every width).
  const AttCase c{.name = "isa", .nodes_after_fusion = 1, .cast = true, .tokens = 19, .heads = 2, .head_dim = 20};
  TempDir dir;
  const std::string path = build(c, dir.path().string());
  const std::string why = ort_unavailable_reason();
  const std::vector<Tensor> inputs = make_inputs(c, 3);
  std::vector<double> ref;
  if (why.empty()) {
    const auto ort = run_onnxruntime(path, inputs, 1, "disabled");
    ref.assign(ort.at(0).data.begin(), ort.at(0).data.end());
  } else {
    ref = reference_attention(c, inputs);  // ONNX Runtime unavailable: the double reference
  }
  const auto best = cpu::cpu_kernel_best_isa();
  std::vector<Tensor> results;
  for (int level = 0; level <= static_cast<int>(best); ++level) {
    const auto isa = static_cast<cpu::CpuKernelIsa>(level);
    SCOPED_TRACE(isa_name(isa));
    ForcedIsa forced(isa);
    ASSERT_EQ(cpu::cpu_kernel_active_isa(), isa);
    const runtime::Model model = runtime::Model::load(path, {.threads = 2});
    EXPECT_EQ(model.optimized_node_count(), c.nodes_after_fusion);
    EXPECT_TRUE(runs_fused_kernel(model, inputs));
    const auto ours = model.run(inputs);
    ASSERT_EQ(ours.at(0).shape, y_shape(c, 3));
    const Difference d = compare_double(ours[0], ref);
    EXPECT_GT(d.scale, 0.0);
    EXPECT_LE(d.max_abs, kTolerance * d.scale) << "max |ours - " << (why.empty() ? "ort" : "double") << "| " << d.max_abs
                                               << " of " << d.scale;
    results.push_back(ours[0]);
  }
  // Every level against the baseline, the same bound.
  for (std::size_t k = 1; k < results.size(); ++k) {
    const Difference d = compare(results[k], results[0]);
    EXPECT_LE(d.max_abs, kTolerance * d.scale) << isa_name(static_cast<cpu::CpuKernelIsa>(k)) << " vs baseline";
  }
  EXPECT_EQ(cpu::cpu_kernel_active_isa(), best);  // nothing left forced
}


}  // namespace
}  // namespace arcforge::test
