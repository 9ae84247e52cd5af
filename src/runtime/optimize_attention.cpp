// A Vision Transformer's multi-head attention becomes one FusedAttention node (ops_attention.cpp):
// one kernel per image and head instead of a dozen steps that each write a [B,heads,T,T] or
// [B,heads,T,hd] tensor. The two layouts exporters write:
//
//   PyTorch (torch.onnx.export of arcface_torch's and timm's ViT), from qkv [B,T,3,heads,hd]:
//     t = Transpose(qkv, [2,0,3,1,4]); q, k, v = Gather(t, 0 / 1 / 2, axis 0) [Cast to float]
//     (any scalar indices: the fused node reads q, k and v where the Gathers did), or, for
//     qkv.unbind(0) (timm), Squeeze(Split(t, axis 0, pieces of 1)[0 / 1 / 2], axes [0])
//     kt = Transpose(k, [0,1,3,2])
//   arcforge's exporter, from q, k, v [B,T,heads,hd] each:
//     q' = Transpose(q, [0,2,1,3]); kt = Transpose(k, [0,2,3,1]) (or [0,2,1,3] then [0,1,3,2])
//     v' = Transpose(v, [0,2,1,3])
//   then, both: s = MatMul(q', kt) [Mul by, or Div by, a scalar]; p = Softmax(s, last axis)
//     o = MatMul(p, v'); y = Transpose(o, [0,2,1,3])  -> [B,T,heads,hd]
//   where q' and kt may each be multiplied by a scalar before the product: torch 2's export of
//   scaled_dot_product_attention multiplies both by the square root of 1 / sqrt(head_dim), which
//   it computes from Shape(q) (packed layout: that Shape then reads qkv's, permuted).
//
// The scale must be one number known when planning: a constant, or shape arithmetic such as
// PyTorch's Pow(Cast(head_dim), -0.5). Every intermediate must be read by the pattern alone. Anything
// else runs node by node, as written; so does a fused node whose shapes, known only when planning,
// do not fit the kernel (cross-attention with another number of tokens for k and v, broadcasting
// operands, a scale of several elements): it keeps the nodes it replaced.
#include "optimize_attention.hpp"

#include <algorithm>
#include <map>

#include "graph_rewrite.hpp"
#include "host_eval.hpp"

namespace arcforge::runtime::detail {
namespace {

using Perm = std::vector<int64_t>;

struct Match {
  std::vector<std::size_t> nodes;            // every absorbed node
  std::vector<std::string> inputs;           // qkv, or q, k, v; then the scale and the factors
  std::vector<int64_t> indices;              // packed: the positions of q, k, v along qkv's third axis
  int64_t split_outputs = 0;                 // packed: 3 when a Split cut qkv (0: Gathers)
  std::string scale, output, name;
  std::vector<std::string> factors;          // scalars q and k^T were multiplied by (torch 2's SDPA)
  std::vector<std::size_t> shapes_of_parts;  // packed: Shape nodes reading q, k or v
  bool divide = false;
};

class Matcher {
 public:
  explicit Matcher(const Graph& g) : g_(g), readers_(g) {
    for (std::size_t k = 0; k < g.nodes.size(); ++k) {
      for (const auto& out : g.nodes[k].outputs) producer_[out] = k;
    }
  }

  bool match_at(std::size_t k, Match& m) {
    const Node& softmax = g_.nodes[k];
    if (!plain_node(softmax, "Softmax") || !softmax_over_last_axis(softmax)) return false;
    m = Match{};
    m.nodes.push_back(k);
    // The scale, if any, between the scores and the softmax.
    std::string scores = softmax.input(0);
    const int scaled = producer_of(scores);
    if (scaled < 0) return false;
    const Node& s = g_.nodes[scaled];
    if ((plain_node(s, "Mul") || plain_node(s, "Div")) && s.inputs.size() == 2) {
      const bool divide = s.op == "Div";
      int product = -1;
      for (int side = 0; side < (divide ? 1 : 2); ++side) {
        const std::string& x = s.inputs[side];
        const std::string& factor = s.inputs[1 - side];
        if (scalar_at_plan_time(factor) && is_product(x)) {
          product = side;
          m.scale = factor;
        }
      }
      if (product < 0 || !read_only_by(scores, k)) return false;
      m.divide = divide;
      m.nodes.push_back(static_cast<std::size_t>(scaled));
      scores = s.inputs[product];
      if (!read_only_by(scores, static_cast<std::size_t>(scaled))) return false;
    } else if (!read_only_by(scores, k)) {
      return false;
    }
    const int qk = producer_of(scores);
    if (qk < 0 || !is_product(scores)) return false;
    m.nodes.push_back(static_cast<std::size_t>(qk));
    m.name = g_.nodes[qk].name;
    // p = softmax(...) feeds the product with v, whose heads a Transpose merges.
    const int pv = only_reader(g_, readers_, softmax.outputs[0], "MatMul");
    if (pv < 0 || g_.nodes[pv].input(0) != softmax.outputs[0]) return false;
    m.nodes.push_back(static_cast<std::size_t>(pv));
    const int merge = only_reader(g_, readers_, g_.nodes[pv].outputs[0], "Transpose");
    if (merge < 0 || perm_of(g_.nodes[merge]) != Perm{0, 2, 1, 3}) return false;
    m.nodes.push_back(static_cast<std::size_t>(merge));
    m.output = g_.nodes[merge].outputs[0];
    const std::string q = prescaled(g_.nodes[qk].input(0), static_cast<std::size_t>(qk), m);
    const std::string kt = prescaled(g_.nodes[qk].input(1), static_cast<std::size_t>(qk), m);
    const std::string v = g_.nodes[pv].input(1);
    if (!match_packed(q, kt, v, m) && !match_separate(q, kt, v, m)) return false;
    m.inputs.push_back(m.scale);
    m.inputs.insert(m.inputs.end(), m.factors.begin(), m.factors.end());
    return true;
  }

 private:
  bool softmax_over_last_axis(const Node& n) const {
    // Below opset 13 Softmax flattens at `axis` (default 1): axis 3 of the rank-4 scores is their last.
    const int64_t axis = n.attr_i("axis", g_.opset < 13 ? 1 : -1);
    return axis == -1 || axis == 3;
  }

  int producer_of(const std::string& value) const {
    auto it = producer_.find(value);
    return it == producer_.end() ? -1 : static_cast<int>(it->second);
  }

  bool read_only_by(const std::string& value, std::size_t reader) const {
    const auto readers = readers_.internal(value);
    return readers.size() == 1 && readers[0] == reader;
  }

  // How many nodes read q, k or v's `value` for its data; plain Shape nodes, which want only its
  // dims (torch 2's scaled_dot_product_attention takes the scale from Shape(q)), are noted in `m`:
  // the fusion has them read qkv's shape instead.
  std::size_t data_readers(const std::string& value, Match& m) const {
    std::size_t count = 0;
    for (std::size_t r : readers_.internal(value)) {
      const Node& n = g_.nodes[r];
      if (plain_node(n, "Shape") && !n.has("start") && !n.has("end")) {
        m.shapes_of_parts.push_back(r);
      } else {
        ++count;
      }
    }
    return count;
  }

  // A MatMul of two run-time tensors, as written (no fused post-ops).
  bool is_product(const std::string& value) const {
    const int k = producer_of(value);
    if (k < 0 || !plain_node(g_.nodes[k], "MatMul") || g_.nodes[k].inputs.size() != 2) return false;
    return !g_.is_constant(g_.nodes[k].inputs[0]) && !g_.is_constant(g_.nodes[k].inputs[1]);
  }

  // One float constant, or shape arithmetic that the planner evaluates on the host (whose size
  // the planner checks: the scale of a fused node must be one number).
  bool scalar_at_plan_time(const std::string& value) {
    if (auto c = g_.constants.find(value); c != g_.constants.end()) return c->second.numel() == 1;
    return computed_at_plan_time(value);
  }
  bool computed_at_plan_time(const std::string& value) {
    if (g_.is_constant(value)) return true;
    if (auto it = plan_time_.find(value); it != plan_time_.end()) return it->second;
    plan_time_[value] = false;  // cycles cannot occur in a valid graph; this also ends them
    const int k = producer_of(value);
    bool known = false;
    if (k >= 0 && is_host_op(g_.nodes[k].op)) {
      known = true;
      if (g_.nodes[k].op != "Shape") {  // Shape needs only its input's dimensions
        for (const auto& in : g_.nodes[k].inputs) known = known && (in.empty() || computed_at_plan_time(in));
      }
    }
    return plan_time_[value] = known;
  }

  Perm perm_of(const Node& transpose) const { return transpose.attr_ints("perm"); }

  // The plain Transpose with permutation `perm` producing `value`, read by nothing else; -1 if none.
  int transpose_into(const std::string& value, const Perm& perm) const {
    const int k = producer_of(value);
    if (k < 0 || !plain_node(g_.nodes[k], "Transpose") || perm_of(g_.nodes[k]) != perm) return -1;
    return readers_.internal(value).size() == 1 ? k : -1;
  }

  // An operand of the q k^T product with its multiplication by a scalar looked through: torch 2's
  // scaled_dot_product_attention scales q and k^T by the scale's square root each.
  std::string prescaled(const std::string& value, std::size_t product, Match& m) {
    const int k = producer_of(value);
    if (k < 0 || !plain_node(g_.nodes[k], "Mul") || g_.nodes[k].inputs.size() != 2 || !read_only_by(value, product))
      return value;
    for (int side = 0; side < 2; ++side) {
      const std::string& factor = g_.nodes[k].inputs[1 - side];
      if (!scalar_at_plan_time(factor) || g_.is_constant(g_.nodes[k].inputs[side])) continue;
      m.factors.push_back(factor);
      m.nodes.push_back(static_cast<std::size_t>(k));
      return g_.nodes[k].inputs[side];
    }
    return value;
  }

  // `value` with a Cast to float in front of it looked through (PyTorch writes one after each Gather).
  std::string through_cast(const std::string& value, Match& m) const {
    const int k = producer_of(value);
    if (k < 0 || !plain_node(g_.nodes[k], "Cast") || g_.nodes[k].attr_i("to", 0) != 1) return value;
    Match probe = m;  // the Shape readers count only if the Cast is looked through
    if (data_readers(value, probe) != 1) return value;
    m = std::move(probe);
    m.nodes.push_back(static_cast<std::size_t>(k));
    return g_.nodes[k].input(0);
  }

  // Whether `value` is Gather(t, scalar index, axis 0), read by nothing else; sets the index.
  bool gather_from(const std::string& value, const std::string& t, int64_t& index, Match& m) const {
    const int k = producer_of(value);
    if (k < 0 || !plain_node(g_.nodes[k], "Gather") || g_.nodes[k].attr_i("axis", 0) != 0) return false;
    if (g_.nodes[k].input(0) != t || data_readers(value, m) != 1) return false;
    auto c = g_.constants.find(g_.nodes[k].input(1));
    if (c == g_.constants.end() || c->second.dtype != DType::i64 || !c->second.dims.empty()) return false;
    index = c->second.i.at(0);
    m.nodes.push_back(static_cast<std::size_t>(k));
    return true;
  }

  bool match_packed(const std::string& q, const std::string& kt, const std::string& v, Match& m) const {
    Match t = m;
    const int k_transpose = transpose_into(kt, {0, 1, 3, 2});
    if (k_transpose < 0) return false;
    t.nodes.push_back(static_cast<std::size_t>(k_transpose));
    const std::string parts[3] = {through_cast(q, t), through_cast(g_.nodes[k_transpose].input(0), t),
                                  through_cast(v, t)};
    // The heads' split: Gathers of t (torch.onnx of qkv[0], qkv[1], qkv[2]), or one Split of t
    // whose pieces are Squeezed (of qkv.unbind(0)).
    std::string heads;
    int64_t index[3] = {0, 0, 0};
    if (!taken_apart(parts, heads, index, t)) return false;
    const int split = producer_of(heads);
    if (split < 0 || !plain_node(g_.nodes[split], "Transpose") || perm_of(g_.nodes[split]) != Perm{2, 0, 3, 1, 4}) {
      return false;
    }
    t.nodes.push_back(static_cast<std::size_t>(split));
    t.inputs = {g_.nodes[split].input(0)};
    t.indices = {index[0], index[1], index[2]};
    m = std::move(t);
    return true;
  }

  // Whether q, k and v (`parts`) are slabs of one tensor along axis 0, read by nothing else: sets
  // that tensor and each part's index.
  bool taken_apart(const std::string (&parts)[3], std::string& heads, int64_t (&index)[3], Match& m) const {
    const int first = producer_of(parts[0]);
    if (first < 0) return false;
    if (g_.nodes[first].op == "Gather") {
      heads = g_.nodes[first].input(0);
      if (readers_.internal(heads).size() != 3) return false;
      for (int j = 0; j < 3; ++j) {
        if (!gather_from(parts[j], heads, index[j], m)) return false;
      }
      return true;
    }
    // Squeeze(Split(heads, axis 0, pieces of 1)[j], axes [0]).
    int split = -1;
    for (int j = 0; j < 3; ++j) {
      const int squeeze = producer_of(parts[j]);
      if (squeeze < 0 || !plain_node(g_.nodes[squeeze], "Squeeze") || data_readers(parts[j], m) != 1) return false;
      if (squeeze_axes(g_.nodes[squeeze]) != std::vector<int64_t>{0}) return false;
      const std::string& piece = g_.nodes[squeeze].input(0);
      const int from = producer_of(piece);
      if (from < 0 || (split >= 0 && from != split) || readers_.internal(piece).size() != 1) return false;
      split = from;
      const Node& sp = g_.nodes[split];
      const auto at = std::find(sp.outputs.begin(), sp.outputs.end(), piece);
      index[j] = at - sp.outputs.begin();
      m.nodes.push_back(static_cast<std::size_t>(squeeze));
    }
    const Node& sp = g_.nodes[split];
    if (sp.op != "Split" || !sp.post_ops.empty() || sp.outputs.size() != 3 || sp.attr_i("axis", 0) != 0 ||
        !unit_pieces(sp))
      return false;
    heads = sp.input(0);
    if (readers_.internal(heads).size() != 1) return false;
    m.nodes.push_back(static_cast<std::size_t>(split));
    m.split_outputs = 3;
    return true;
  }

  // A Squeeze's axes: the attribute (below opset 13) or the constant second input.
  std::vector<int64_t> squeeze_axes(const Node& n) const {
    if (n.has("axes")) return n.attr_ints("axes");
    auto c = n.input(1).empty() ? g_.constants.end() : g_.constants.find(n.input(1));
    return c == g_.constants.end() || c->second.dtype != DType::i64 ? std::vector<int64_t>{} : c->second.i;
  }

  // A Split into pieces of one: its `split` attribute or constant input all 1s (absent: equal pieces,
  // of one when the axis has 3 elements, which the planner checks).
  bool unit_pieces(const Node& n) const {
    std::vector<int64_t> sizes;
    if (n.has("split")) {
      sizes = n.attr_ints("split");
    } else if (!n.input(1).empty()) {
      auto c = g_.constants.find(n.input(1));
      if (c == g_.constants.end() || c->second.dtype != DType::i64) return false;
      sizes = c->second.i;
    } else {
      return true;
    }
    return std::all_of(sizes.begin(), sizes.end(), [](int64_t v) { return v == 1; });
  }

  bool match_separate(const std::string& q, const std::string& kt, const std::string& v, Match& m) const {
    Match t = m;
    const int q_heads = transpose_into(q, {0, 2, 1, 3}), v_heads = transpose_into(v, {0, 2, 1, 3});
    if (q_heads < 0 || v_heads < 0) return false;
    t.nodes.push_back(static_cast<std::size_t>(q_heads));
    t.nodes.push_back(static_cast<std::size_t>(v_heads));
    std::string k;
    if (const int direct = transpose_into(kt, {0, 2, 3, 1}); direct >= 0) {
      t.nodes.push_back(static_cast<std::size_t>(direct));
      k = g_.nodes[direct].input(0);
    } else {
      const int inner = transpose_into(kt, {0, 1, 3, 2});
      const int outer = inner < 0 ? -1 : transpose_into(g_.nodes[inner].input(0), {0, 2, 1, 3});
      if (outer < 0) return false;
      t.nodes.push_back(static_cast<std::size_t>(inner));
      t.nodes.push_back(static_cast<std::size_t>(outer));
      k = g_.nodes[outer].input(0);
    }
    t.inputs = {g_.nodes[q_heads].input(0), k, g_.nodes[v_heads].input(0)};
    m = std::move(t);
    return true;
  }

  const Graph& g_;
  const Readers readers_;
  std::map<std::string, std::size_t> producer_;
  std::map<std::string, bool> plan_time_;
};

Attribute int_attribute(int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::i;
  a.i = v;
  return a;
}

}  // namespace

int fuse_attention(Graph& g) {
  Matcher matcher(g);
  return fuse_each(g, [&](std::size_t k) -> std::optional<Fusion> {
    Match m;
    if (!matcher.match_at(k, m)) return std::nullopt;
    Node fused;
    fused.name = m.name;  // the q k^T product's name, as the other fusions name theirs
    fused.op = fused_attention_op;
    fused.inputs = m.inputs;
    fused.outputs = {m.output};
    Attribute layout;
    layout.kind = Attribute::Kind::s;
    layout.s = m.indices.empty() ? "separate" : "packed";
    Attribute indices;
    indices.kind = Attribute::Kind::ints;
    indices.ints = m.indices;
    fused.attrs = {{"layout", layout},
                   {"divide", int_attribute(m.divide ? 1 : 0)},
                   {"indices", indices},
                   {"split_outputs", int_attribute(m.split_outputs)}};
    std::sort(m.nodes.begin(), m.nodes.end());
    for (std::size_t j : m.nodes) fused.unfused.push_back(g.nodes[j]);
    Fusion f{std::move(m.nodes), std::move(fused), {}};
    // Shape(q) (or of k or v) becomes Shape(qkv) permuted as the heads' split does: q is [B, heads,
    // T, hd] = qkv [B, T, E, heads, hd] at axes 0, 3, 1, 4; q itself is no longer computed.
    for (std::size_t r : m.shapes_of_parts) {
      const Node& shape = g.nodes[r];
      const std::string qkv_shape = shape.outputs[0] + "/qkv_shape", axes = shape.outputs[0] + "/head_axes";
      g.constants[axes] = HostTensor::from_i64({4}, {0, 3, 1, 4});
      Node of_qkv = shape, picked;
      of_qkv.inputs = {f.fused.inputs[0]};
      of_qkv.outputs = {qkv_shape};
      picked.name = shape.name + "/head_axes";
      picked.op = "Gather";
      picked.inputs = {qkv_shape, axes};
      picked.outputs = shape.outputs;
      f.rewritten.emplace_back(r, std::vector<Node>{std::move(of_qkv), std::move(picked)});
    }
    return f;
  });
}

}  // namespace arcforge::runtime::detail
