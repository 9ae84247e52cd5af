// Load-time graph rewrites. Each pass keeps the graph's meaning exactly (up to float rounding):
//   1. constant folding: nodes whose inputs are all constants become constants;
//   2. BatchNormalization, or a multiplication by a scalar constant, folded into the Conv or Gemm
//      that feeds it (into an int8 convolution's per-channel weight scales and bias);
//   3. activations (Relu, LeakyRelu, Clip, Sigmoid, Tanh, HardSwish, PRelu), multiplications by a
//      scalar constant and residual Adds become post-ops of the Conv that feeds them; the same (PRelu
//      excepted) for a Gemm with constant weights and for a MatMul with constant 2-D weights (which
//      also takes the Add of a constant bias, PyTorch's Linear), and scalar multiplications for a
//      MatMul of two run-time tensors (a transformer's attention scale);
//   4. PyTorch's decomposed LayerNorm (ReduceMean, Sub, Pow, ...) into one LayerNormalization
//      (optimize_layernorm.cpp);
//   5. a Vision Transformer's multi-head attention, from the heads' split to their merge, into one
//      FusedAttention node (optimize_attention.cpp), before pass 3 takes its scale as a post-op;
//   6. convolutions with few output channels reading the same input alike (a detector's heads)
//      into one convolution and a Split (optimize_siblings.cpp), after pass 3;
//   7. a zero Pad of the spatial axes into the padding of the convolutions it feeds
//      (optimize_pad.cpp), before the others.
// A fused node takes the position of the last node it absorbs, so every operand of a post-op
// (the residual addend) is computed before it runs.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>
#include <unordered_map>

#include "arcforge/common/error.hpp"
#include "graph.hpp"
#include "host_eval.hpp"
#include "optimize_attention.hpp"
#include "optimize_layernorm.hpp"
#include "optimize_pad.hpp"
#include "optimize_quant.hpp"
#include "optimize_siblings.hpp"

namespace arcforge::runtime::detail {
namespace {

struct Uses {
  std::unordered_map<std::string, std::vector<std::size_t>> consumers;
  std::set<std::string> graph_outputs;
};

Uses find_uses(const Graph& g) {
  Uses u;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    for (const auto& value : g.nodes[k].values_read()) u.consumers[value].push_back(k);
  }
  for (const auto& o : g.outputs) u.graph_outputs.insert(o.name);
  return u;
}

// The single node that reads `value`, or -1 when there are several, none, or it is a graph output.
int single_consumer(const Uses& u, const std::string& value) {
  if (u.graph_outputs.count(value)) return -1;
  auto it = u.consumers.find(value);
  if (it == u.consumers.end() || it->second.size() != 1) return -1;
  return static_cast<int>(it->second[0]);
}

int fold_constants(Graph& g, std::size_t max_bytes) {
  HostLookup host = [&](const std::string& v) -> const HostTensor* {
    auto it = g.constants.find(v);
    return it == g.constants.end() ? nullptr : &it->second;
  };
  auto dims = [&](const std::string& v) -> Dims { return g.constants.at(v).dims; };
  std::vector<Node> kept;
  int folded = 0;
  for (auto& node : g.nodes) {
    bool all_constant = !node.inputs.empty();
    for (const auto& in : node.inputs) all_constant = all_constant && (in.empty() || g.is_constant(in));
    if (is_host_op(node.op) && all_constant && node.outputs.size() == 1) {
      try {
        g.constants[node.outputs[0]] = eval_host(node, host, dims, max_bytes).at(0);
      } catch (const InputError& e) {
        throw InputError(file_message(g.path, e.what()));
      }
      ++folded;
      continue;
    }
    kept.push_back(std::move(node));
  }
  g.nodes = std::move(kept);
  return folded;
}

const HostTensor* constant_f32(const Graph& g, const std::string& name) {
  if (name.empty()) return nullptr;
  auto it = g.constants.find(name);
  if (it == g.constants.end() || it->second.dtype != DType::f32) return nullptr;
  return &it->second;
}

// Per-channel scale and shift of an inference BatchNormalization, or false if not constant.
bool batchnorm_affine(const Graph& g, const Node& bn, int64_t channels, std::vector<float>& scale,
                      std::vector<float>& shift) {
  if (bn.inputs.size() < 5 || bn.outputs.size() != 1) return false;
  const HostTensor* gamma = constant_f32(g, bn.inputs[1]);
  const HostTensor* beta = constant_f32(g, bn.inputs[2]);
  const HostTensor* mean = constant_f32(g, bn.inputs[3]);
  const HostTensor* var = constant_f32(g, bn.inputs[4]);
  if (!gamma || !beta || !mean || !var) return false;
  for (const HostTensor* t : {gamma, beta, mean, var}) {
    if (t->numel() != channels) return false;
  }
  const float eps = bn.attr_f("epsilon", 1e-5f);
  scale.resize(channels);
  shift.resize(channels);
  for (int64_t c = 0; c < channels; ++c) {
    const double s = gamma->f[c] / std::sqrt(static_cast<double>(var->f[c]) + eps);
    scale[c] = static_cast<float>(s);
    shift[c] = static_cast<float>(beta->f[c] - mean->f[c] * s);
  }
  return true;
}

// The per-channel scale and shift of `next` applied to `value` (`channels` of them): an inference
// BatchNormalization, or a multiplication by a scalar constant (SCRFD's per-level box scales).
bool affine_of(const Graph& g, const Node& next, const std::string& value, int64_t channels, std::vector<float>& scale,
               std::vector<float>& shift) {
  if (next.op == "BatchNormalization") {
    return next.input(0) == value && batchnorm_affine(g, next, channels, scale, shift);
  }
  if (next.op != "Mul" || next.inputs.size() != 2 || next.outputs.size() != 1) return false;
  const std::string& other = next.inputs[0] == value ? next.inputs[1] : next.inputs[0];
  const HostTensor* c = constant_f32(g, other);
  if (other == value || !c || c->numel() != 1 || !std::isfinite(c->f[0])) return false;
  scale.assign(static_cast<std::size_t>(channels), c->f[0]);
  shift.assign(static_cast<std::size_t>(channels), 0.0f);
  return true;
}

// Folds BN, or a multiplication by a scalar constant, into the Conv (weights [OC, ...]) or Gemm with
// transB=1 (weights [N, K]) before it; new constants are named after the node so shared
// initializers are never modified.
int fold_batchnorm(Graph& g) {
  int folded = 0;
  Uses u = find_uses(g);
  std::vector<bool> dead(g.nodes.size(), false);
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    Node& producer = g.nodes[k];
    const bool conv = producer.op == "Conv";
    const bool gemm = producer.op == "Gemm" && producer.attr_i("transB", 0) == 1 &&
                      producer.attr_i("transA", 0) == 0;
    const bool quantized = producer.quant.active;
    if ((!conv && !gemm) || !producer.post_ops.empty() || producer.outputs.size() != 1) continue;
    if (quantized && (producer.quant.dst_quantized || producer.quant.weight_scales.empty())) continue;
    const int c = single_consumer(u, producer.outputs[0]);
    if (c < 0) continue;
    if (gemm && producer.attr_f("alpha", 1.0f) != 1.0f) continue;
    const HostTensor* w = constant_f32(g, producer.input(1));
    if (!w || w->dims.empty()) continue;
    const int64_t channels = w->dims[0];
    const HostTensor* b = producer.input(2).empty() ? nullptr : constant_f32(g, producer.input(2));
    if (!producer.input(2).empty() && (!b || b->numel() != channels)) continue;
    if (gemm && b && producer.attr_f("beta", 1.0f) != 1.0f) continue;
    std::vector<float> scale, shift;
    if (!affine_of(g, g.nodes[c], producer.outputs[0], channels, scale, shift)) continue;

    HostTensor new_w = *w;
    const int64_t per_channel = w->numel() / channels;
    std::vector<float> weight_scales;
    if (quantized) {
      // int8 weights stay integers: the BN scale moves into the per-channel weight scale, its sign
      // into the weights (negating -127..127 is exact). A zero scale would zero the weight scale.
      if (static_cast<int64_t>(producer.quant.weight_scales.size()) != channels) continue;
      if (std::any_of(scale.begin(), scale.end(), [](float v) { return !(std::abs(v) > 0.0f) || !std::isfinite(v); })) continue;
      weight_scales = producer.quant.weight_scales;
      for (int64_t oc = 0; oc < channels; ++oc) {
        weight_scales[oc] *= std::abs(scale[oc]);
        if (scale[oc] < 0) {
          for (int64_t j = 0; j < per_channel; ++j) new_w.f[oc * per_channel + j] = -new_w.f[oc * per_channel + j];
        }
      }
    } else {
      for (int64_t oc = 0; oc < channels; ++oc) {
        for (int64_t j = 0; j < per_channel; ++j) new_w.f[oc * per_channel + j] *= scale[oc];
      }
    }
    HostTensor new_b = HostTensor::from_f32({channels}, std::vector<float>(channels, 0.0f));
    for (int64_t oc = 0; oc < channels; ++oc) new_b.f[oc] = (b ? b->f[oc] * scale[oc] : 0.0f) + shift[oc];

    Node fused = producer;
    fused.name = producer.name;
    fused.inputs.resize(3);
    fused.inputs[1] = producer.name + "/bn_folded_weight";
    fused.inputs[2] = producer.name + "/bn_folded_bias";
    fused.outputs = g.nodes[c].outputs;
    if (gemm) fused.attrs.erase("beta");
    if (quantized) fused.quant.weight_scales = std::move(weight_scales);
    g.constants[fused.inputs[1]] = std::move(new_w);
    g.constants[fused.inputs[2]] = std::move(new_b);
    g.nodes[c] = std::move(fused);  // takes the BN's position
    dead[k] = true;
    ++folded;
  }
  std::vector<Node> kept;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    if (!dead[k]) kept.push_back(std::move(g.nodes[k]));
  }
  g.nodes = std::move(kept);
  return folded;
}

// The post-op equivalent of `act` applied to a Conv with `channels` outputs, if there is one.
bool as_post_op(const Graph& g, const Node& act, int64_t channels, int64_t spatial_rank, PostOp& p) {
  p = PostOp{};
  p.fused_node = act.name;
  const std::string& op = act.op;
  if (op == "Relu") { p.kind = PostOp::Kind::relu; return true; }
  if (op == "LeakyRelu") { p.kind = PostOp::Kind::leaky_relu; p.alpha = act.attr_f("alpha", 0.01f); return true; }
  if (op == "Sigmoid") { p.kind = PostOp::Kind::sigmoid; return true; }
  if (op == "Tanh") { p.kind = PostOp::Kind::tanh; return true; }
  if (op == "HardSwish") { p.kind = PostOp::Kind::hardswish; return true; }
  if (op == "Clip") {
    p.kind = PostOp::Kind::clip;
    p.alpha = -INFINITY;
    p.beta = INFINITY;
    if (g.opset < 11) {
      p.alpha = act.attr_f("min", -INFINITY);
      p.beta = act.attr_f("max", INFINITY);
      return true;
    }
    for (std::size_t k : {std::size_t{1}, std::size_t{2}}) {
      if (act.input(k).empty()) continue;
      const HostTensor* t = constant_f32(g, act.input(k));
      if (!t || t->numel() != 1) return false;
      (k == 1 ? p.alpha : p.beta) = t->f[0];
    }
    return true;
  }
  if (op == "Mul" && act.inputs.size() == 2) {
    // x * c with a scalar constant c on either side (the producer's output is the other operand).
    const HostTensor* c = constant_f32(g, act.input(1));
    if (!c) c = constant_f32(g, act.input(0));
    if (!c || c->numel() != 1) return false;
    p.kind = PostOp::Kind::scale;
    p.alpha = c->f[0];
    return true;
  }
  if (op == "PRelu") {
    const HostTensor* slope = constant_f32(g, act.input(1));
    if (!slope) return false;
    // The slope must broadcast along the channel axis only: [C,1,1], [1,C,1,1] or a scalar.
    const Dims& d = slope->dims;
    const int64_t out_rank = 2 + spatial_rank;
    if (static_cast<int64_t>(d.size()) > out_rank) return false;
    for (std::size_t j = 0; j < d.size(); ++j) {
      const int64_t axis = out_rank - static_cast<int64_t>(d.size()) + static_cast<int64_t>(j);
      if (axis != 1 && d[j] != 1) return false;
      if (axis == 1 && d[j] != 1 && d[j] != channels) return false;
    }
    p.kind = PostOp::Kind::prelu;
    p.operand = act.input(1);
    return true;
  }
  return false;
}

// A node that can take post-ops: a Conv or a Gemm with constant weights, a MatMul with constant
// 2-D weights (an inner product over all leading rows, as Gemm; also takes a bias), or a MatMul of
// two run-time tensors (oneDNN matmul; scalar multiplications only).
struct Producer {
  enum class Kind { none, conv, gemm, dense_matmul, matmul } kind = Kind::none;
  int64_t channels = 0;      // output channels (Conv) or columns (Gemm, dense MatMul)
  int64_t spatial_rank = 0;  // Conv: 2 for [N,C,H,W]
};

Producer post_op_producer(const Graph& g, const Node& n) {
  Producer p;
  if (n.op == "Conv") {
    const HostTensor* w = constant_f32(g, n.input(1));
    if (!w || w->dims.size() < 3) return p;
    p = {Producer::Kind::conv, w->dims[0], static_cast<int64_t>(w->dims.size()) - 2};
  } else if (n.op == "Gemm") {
    const HostTensor* w = constant_f32(g, n.input(1));
    if (!w || w->dims.size() != 2) return p;
    p = {Producer::Kind::gemm, n.attr_i("transB", 0) ? w->dims[0] : w->dims[1], 0};
  } else if (n.op == "MatMul" && !n.quant.active && !g.is_constant(n.input(0))) {
    const HostTensor* w = constant_f32(g, n.input(1));
    if (w && w->dims.size() == 2) p = {Producer::Kind::dense_matmul, w->dims[1], 0};
    if (!g.is_constant(n.input(1))) p.kind = Producer::Kind::matmul;
  }
  return p;
}

int fuse_post_ops(Graph& g) {
  int fused_count = 0;
  bool changed = true;
  while (changed) {
    changed = false;
    Uses u = find_uses(g);
    for (std::size_t k = 0; k < g.nodes.size() && !changed; ++k) {
      Node& conv = g.nodes[k];
      const Producer producer = post_op_producer(g, conv);
      if (producer.kind == Producer::Kind::none || conv.outputs.size() != 1) continue;
      const int c = single_consumer(u, conv.outputs[0]);
      if (c < 0) continue;
      const Node& next = g.nodes[c];
      PostOp p;
      if (next.op == "Add" && next.inputs.size() == 2 && next.outputs.size() == 1) {
        const std::string& other = next.inputs[0] == conv.outputs[0] ? next.inputs[1] : next.inputs[0];
        if (producer.kind == Producer::Kind::matmul || other == conv.outputs[0]) continue;
        p.operand = other;
        p.fused_node = next.name;
        if (!g.is_constant(other)) {
          p.kind = PostOp::Kind::sum;
        } else {
          // A dense MatMul's bias: a scalar or [N] constant, before any other post-op.
          const HostTensor* bias = constant_f32(g, other);
          if (producer.kind != Producer::Kind::dense_matmul || !conv.post_ops.empty() || !bias ||
              bias->dims.size() > 1 || (bias->numel() != 1 && bias->numel() != producer.channels)) {
            continue;
          }
          p.kind = PostOp::Kind::bias;
        }
      } else {
        const bool scaled_first = next.op == "Mul" && next.input(1) == conv.outputs[0];
        if ((next.input(0) != conv.outputs[0] && !scaled_first) ||
            !as_post_op(g, next, producer.channels, producer.spatial_rank, p)) {
          continue;
        }
        if ((producer.kind == Producer::Kind::gemm || producer.kind == Producer::Kind::dense_matmul) &&
            p.kind == PostOp::Kind::prelu) {
          continue;
        }
        if (producer.kind == Producer::Kind::matmul && p.kind != PostOp::Kind::scale) continue;
      }
      Node fused = std::move(conv);
      fused.post_ops.push_back(p);
      fused.outputs = next.outputs;
      g.nodes[c] = std::move(fused);
      g.nodes.erase(g.nodes.begin() + static_cast<std::ptrdiff_t>(k));
      ++fused_count;
      changed = true;
    }
  }
  return fused_count;
}

// Precision::bf16 (and int8_bf16): marks the Gemms (constant weights, no residual sum) whose output is read only
// as the first input of other such Gemms, e.g. a transformer MLP's fc1 -> fc2.
int mark_bf16_gemm_outputs(Graph& g) {
  const Uses u = find_uses(g);
  auto is_dense = [&](const Node& n) {  // a float Gemm (an int8 one reads and writes int8 or fp32)
    const HostTensor* w = n.op == "Gemm" && !n.quant.active ? constant_f32(g, n.input(1)) : nullptr;
    return w && w->dims.size() == 2 && n.outputs.size() == 1;
  };
  int marked = 0;
  for (Node& n : g.nodes) {
    if (!is_dense(n) || u.graph_outputs.count(n.outputs[0])) continue;
    bool sum = false;
    for (const PostOp& p : n.post_ops) sum = sum || p.kind == PostOp::Kind::sum;
    const auto it = u.consumers.find(n.outputs[0]);
    if (sum || it == u.consumers.end() || it->second.empty()) continue;
    bool all_dense = true;
    for (std::size_t c : it->second) {
      const Node& reader = g.nodes[c];
      all_dense = all_dense && is_dense(reader) && reader.input(0) == n.outputs[0] && reader.input(1) != n.outputs[0] &&
                  reader.input(2) != n.outputs[0];
    }
    if (!all_dense) continue;
    n.bf16_output = true;
    ++marked;
  }
  return marked;
}

}  // namespace

int optimize_graph(Graph& g, Precision precision, std::size_t max_tensor_bytes) {
  int removed = fold_constants(g, max_tensor_bytes);
  if (runs_int8(precision) && fuse_quantized_nodes(g) == 0) {
    throw InputError(file_message(g.path, "precision " + to_string(precision) + " needs a quantized (QDQ) model, and this one has no "
                                          "QuantizeLinear/DequantizeLinear around its convolutions or Gemms: run "
                                          "`arcforge quantize MODEL.onnx --calib IMAGES --out MODEL.int8.onnx` first"));
  }
  removed += fold_dequantize(g);
  // ARCFORGE_RUNTIME_FUSE=0 turns the fusions off: a debugging aid for bisecting a wrong output.
  const char* fuse = std::getenv("ARCFORGE_RUNTIME_FUSE");
  if (!fuse || std::string(fuse) != "0") {
    removed += fold_pad_into_conv(g);
    removed += fuse_layernorm(g);
    removed += fuse_attention(g);
    removed += fold_batchnorm(g);
    removed += fuse_post_ops(g);
    removed += merge_sibling_convs(g);
  }
  if (runs_int8(precision)) removed += absorb_output_quantize(g);
  if (floats_in_bf16(precision)) mark_bf16_gemm_outputs(g);
  removed += remove_dead_nodes(g);
  return removed;
}

}  // namespace arcforge::runtime::detail
