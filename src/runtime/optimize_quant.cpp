// QDQ rewrites. A QDQ model says "round this activation to u8/s8 with scale s" around every
// quantized operator; oneDNN computes the same thing directly when the rounding steps are fused
// into an int8 convolution (or inner product, for a Gemm): u8/s8 source, s8 weights, int32 accumulation, per-channel output
// scales s_x * s_w[c], and (when a QuantizeLinear follows) an int8 destination.
#include "optimize_quant.hpp"

#include <cmath>
#include <set>
#include <unordered_map>

#include "arcforge/common/error.hpp"
#include "shape_util.hpp"

namespace arcforge::runtime::detail {
namespace {

const HostTensor* constant(const Graph& g, const std::string& name) {
  if (name.empty()) return nullptr;
  auto it = g.constants.find(name);
  return it == g.constants.end() ? nullptr : &it->second;
}

std::unordered_map<std::string, std::size_t> producers(const Graph& g) {
  std::unordered_map<std::string, std::size_t> p;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    for (const auto& o : g.nodes[k].outputs) {
      if (!o.empty()) p[o] = k;
    }
  }
  return p;
}

std::unordered_map<std::string, int> read_counts(const Graph& g) {
  std::unordered_map<std::string, int> c;
  for (const auto& n : g.nodes) {
    for (const auto& value : n.values_read()) ++c[value];
  }
  for (const auto& o : g.outputs) ++c[o.name];
  return c;
}

const Node* produced_by(const Graph& g, const std::unordered_map<std::string, std::size_t>& p, const std::string& v,
                        const char* op) {
  auto it = p.find(v);
  if (it == p.end() || g.nodes[it->second].op != op) return nullptr;
  return &g.nodes[it->second];
}

}  // namespace

bool QuantParams::symmetric() const {
  for (int64_t z : zero_point) {
    if (z != 0) return false;
  }
  return true;
}

QuantParams quant_params(const Graph& g, const Node& n) {
  QuantParams q;
  const HostTensor* s = constant(g, n.input(1));
  if (!s || s->dtype != DType::f32 || s->numel() < 1) node_error(n, "the scale must be a float constant");
  q.scale = s->f;
  for (float v : q.scale) {
    if (!(v > 0) || !std::isfinite(v)) node_error(n, "scales must be positive and finite");
  }
  q.axis = n.attr_i("axis", 1);
  if (n.input(2).empty()) {
    q.zero_point.assign(q.scale.size(), 0);
    q.kind = IntKind::u8;
  } else {
    const HostTensor* z = constant(g, n.input(2));
    if (!z || z->dtype != DType::i64) node_error(n, "the zero point must be an integer constant");
    if (z->numel() != s->numel()) node_error(n, "scale and zero point have different sizes");
    q.zero_point = z->i;
    q.kind = z->int_kind;
  }
  if (q.kind != IntKind::u8 && q.kind != IntKind::s8 && n.op == "QuantizeLinear") {
    node_error(n, "only uint8 and int8 quantization is supported");
  }
  return q;
}

int fuse_quantized_nodes(Graph& g) {
  const auto prod = producers(g);
  int fused = 0;
  for (auto& conv : g.nodes) {
    // Conv, or Gemm (transA 0, alpha 1, beta 1 when there is a C), whose weights come quantized.
    const bool gemm = conv.op == "Gemm";
    if ((conv.op != "Conv" && !gemm) || conv.quant.active || !conv.post_ops.empty()) continue;
    if (gemm && (conv.attr_i("transA", 0) != 0 || conv.attr_f("alpha", 1.0f) != 1.0f ||
                 (!conv.input(2).empty() && conv.attr_f("beta", 1.0f) != 1.0f))) {
      continue;
    }
    const Node* dq_x = produced_by(g, prod, conv.input(0), "DequantizeLinear");
    const Node* dq_w = produced_by(g, prod, conv.input(1), "DequantizeLinear");
    if (!dq_x || !dq_w || g.is_constant(dq_x->input(0))) continue;
    const QuantParams qx = quant_params(g, *dq_x);
    const QuantParams qw = quant_params(g, *dq_w);
    const HostTensor* w = constant(g, dq_w->input(0));
    const std::size_t w_rank = gemm ? 2 : 4;
    if (!qx.per_tensor() || !qx.symmetric() || !w || w->dims.size() != w_rank || w->int_kind != IntKind::s8 ||
        !qw.symmetric()) {
      continue;  // runs with float semantics instead
    }
    // The output-channel axis of the weights: 0 for Conv [OC,...] and Gemm transB=1 [N,K]; 1 for
    // Gemm transB=0 [K,N], whose weights are transposed to [N,K] below.
    const bool transposed_b = gemm && conv.attr_i("transB", 0) == 0;
    const int64_t channel_axis = transposed_b ? 1 : 0;
    const int64_t oc = w->dims[static_cast<std::size_t>(channel_axis)];
    if (!qw.per_tensor() && (qw.axis != channel_axis || static_cast<int64_t>(qw.scale.size()) != oc)) continue;
    // Bias: a float constant, or DequantizeLinear of an int32 constant.
    HostTensor bias;
    bool has_bias = false;
    if (!conv.input(2).empty()) {
      if (const HostTensor* b = constant(g, conv.input(2)); b && b->dtype == DType::f32 && b->numel() == oc) {
        bias = *b;
        has_bias = true;
      } else if (const Node* dq_b = produced_by(g, prod, conv.input(2), "DequantizeLinear")) {
        const HostTensor* bq = constant(g, dq_b->input(0));
        const QuantParams qb = quant_params(g, *dq_b);
        if (!bq || bq->dtype != DType::i64 || bq->numel() != oc) continue;
        if (!qb.per_tensor() && static_cast<int64_t>(qb.scale.size()) != oc) continue;
        bias = HostTensor::from_f32({oc}, std::vector<float>(oc));
        for (int64_t c = 0; c < oc; ++c) {
          const std::size_t j = qb.per_tensor() ? 0 : c;
          bias.f[c] = static_cast<float>(static_cast<double>(bq->i[c] - qb.zero_point[j]) * qb.scale[j]);
        }
        has_bias = true;
      } else {
        continue;
      }
    }
    HostTensor wf = HostTensor::from_f32(w->dims, std::vector<float>(w->i.begin(), w->i.end()));
    if (transposed_b) {
      const int64_t k = w->dims[0];
      wf = HostTensor::from_f32({oc, k}, std::vector<float>(wf.f.size()));
      for (int64_t r = 0; r < k; ++r) {
        for (int64_t c = 0; c < oc; ++c) wf.f[c * k + r] = static_cast<float>(w->i[r * oc + c]);
      }
      conv.attrs["transB"].i = 1;  // Kind::i by default
    }
    conv.quant.active = true;
    conv.quant.src_signed = qx.kind == IntKind::s8;
    conv.quant.src_scale = qx.scale[0];
    conv.quant.weight_scales.resize(oc);
    for (int64_t c = 0; c < oc; ++c) conv.quant.weight_scales[c] = qw.scale[qw.per_tensor() ? 0 : c];
    const std::string x_q = dq_x->input(0);
    conv.inputs = {x_q, conv.name + "/int8_weight", has_bias ? conv.name + "/int8_bias" : std::string()};
    g.constants[conv.inputs[1]] = std::move(wf);
    if (has_bias) g.constants[conv.inputs[2]] = std::move(bias);
    ++fused;
  }
  return fused;
}

int absorb_output_quantize(Graph& g) {
  int absorbed = 0;
  auto counts = read_counts(g);
  std::unordered_map<std::string, std::size_t> consumer;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    for (const auto& in : g.nodes[k].inputs) {
      if (!in.empty()) consumer[in] = k;
    }
  }
  std::vector<bool> dead(g.nodes.size(), false);
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    Node& conv = g.nodes[k];
    // An int8 convolution, or a stand-alone BatchNormalization (IResNet's pre-activation BN before
    // an int8 convolution), writes the quantized output itself; so does a float convolution whose
    // last post-op is a PReLU (a depthwise one kept in fp32), which oneDNN cannot fuse: the
    // quantizing pass applies it (ops_conv.cpp), one pass over the output less.
    const bool batch_norm = conv.op == "BatchNormalization" && conv.post_ops.empty();
    const bool float_conv_prelu = conv.op == "Conv" && !conv.quant.active && !conv.post_ops.empty() &&
                                  conv.post_ops.back().kind == PostOp::Kind::prelu;
    if ((!conv.quant.active && !batch_norm && !float_conv_prelu) || conv.quant.dst_quantized ||
        conv.outputs.size() != 1) {
      continue;
    }
    bool has_sum = false;
    for (const auto& p : conv.post_ops) has_sum = has_sum || p.kind == PostOp::Kind::sum;
    if (has_sum) continue;  // the in-place sum would have to read an int8 addend
    const std::string& y = conv.outputs[0];
    if (counts[y] != 1 || !consumer.count(y)) continue;
    const std::size_t c = consumer[y];
    Node& q = g.nodes[c];
    if (q.op != "QuantizeLinear" || q.input(0) != y || q.outputs.size() != 1) continue;
    const QuantParams qy = quant_params(g, q);
    if (!qy.per_tensor() || !qy.symmetric()) continue;
    Node fused = std::move(conv);
    fused.quant.dst_quantized = true;
    fused.quant.dst_signed = qy.kind == IntKind::s8;
    fused.quant.dst_scale = qy.scale[0];
    fused.outputs = q.outputs;
    q = std::move(fused);  // takes the Q's position, like the other fusions
    dead[k] = true;
    ++absorbed;
  }
  std::vector<Node> kept;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    if (!dead[k]) kept.push_back(std::move(g.nodes[k]));
  }
  g.nodes = std::move(kept);
  return absorbed;
}

int fold_dequantize(Graph& g) {
  std::vector<Node> kept;
  int folded = 0;
  for (auto& n : g.nodes) {
    const HostTensor* x = n.op == "DequantizeLinear" ? constant(g, n.input(0)) : nullptr;
    if (!x || n.outputs.size() != 1) {
      kept.push_back(std::move(n));
      continue;
    }
    const QuantParams q = quant_params(g, n);
    HostTensor out = HostTensor::from_f32(x->dims, std::vector<float>(static_cast<std::size_t>(x->numel())));
    // Index of the quantization axis for each element (per-axis: the axis' coordinate).
    int64_t inner = 1, extent = 1;
    if (!q.per_tensor()) {
      const int64_t axis = normalize_axis(n, q.axis, static_cast<int64_t>(x->dims.size()));
      extent = x->dims[axis];
      if (extent != static_cast<int64_t>(q.scale.size())) node_error(n, "scale size does not match the axis");
      for (std::size_t d = axis + 1; d < x->dims.size(); ++d) inner *= x->dims[d];
    }
    for (int64_t k = 0; k < x->numel(); ++k) {
      const std::size_t j = q.per_tensor() ? 0 : static_cast<std::size_t>((k / inner) % extent);
      const double v = x->dtype == DType::f32 ? x->f[k] : static_cast<double>(x->i[k]);
      out.f[k] = static_cast<float>((v - static_cast<double>(q.zero_point[j])) * q.scale[j]);
    }
    g.constants[n.outputs[0]] = std::move(out);
    ++folded;
  }
  g.nodes = std::move(kept);
  return folded;
}

int remove_dead_nodes(Graph& g) {
  std::set<std::string> needed;
  for (const auto& o : g.outputs) needed.insert(o.name);
  std::vector<bool> live(g.nodes.size(), false);
  for (std::size_t k = g.nodes.size(); k-- > 0;) {
    const Node& n = g.nodes[k];
    for (const auto& o : n.outputs) live[k] = live[k] || (!o.empty() && needed.count(o));
    if (!live[k]) continue;
    for (const auto& value : n.values_read()) needed.insert(value);
  }
  std::vector<Node> kept;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    if (live[k]) kept.push_back(std::move(g.nodes[k]));
  }
  const int removed = static_cast<int>(g.nodes.size() - kept.size());
  g.nodes = std::move(kept);
  return removed;
}

}  // namespace arcforge::runtime::detail
