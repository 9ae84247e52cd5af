// LayerNorm as torch.onnx.export writes it below opset 17:
//   m = ReduceMean(x, axes=[-1]); d = Sub(x, m); v = ReduceMean(Pow(d, 2), axes=[-1])
//   y = Div(d, Sqrt(Add(v, eps))) [* weight] [+ bias]
// becomes one LayerNormalization (axis -1), which computes exactly this: nine memory-bound passes
// become one (ONNX Runtime's LayerNormFusion does the same). Only the exact pattern is rewritten:
// keepdims means over the last axis alone, the exponent exactly 2, a scalar epsilon, 1-D (or
// scalar) weight and bias constants, and no intermediate read by anything else. Anything else is
// left to run node by node.
#include "optimize_layernorm.hpp"

#include "graph_rewrite.hpp"

namespace arcforge::runtime::detail {
namespace {

const HostTensor* constant_f32(const Graph& g, const std::string& name) {
  auto it = name.empty() ? g.constants.end() : g.constants.find(name);
  return it == g.constants.end() || it->second.dtype != DType::f32 ? nullptr : &it->second;
}

// A constant that broadcasts over the last axis without adding axes: a scalar, [1] or [D].
bool is_row_constant(const Graph& g, const std::string& name) {
  const HostTensor* t = constant_f32(g, name);
  return t && t->dims.size() <= 1;
}

// ReduceMean over the last axis alone, keeping it.
bool mean_of_last_axis(const Graph& g, const Node& n) {
  if (!plain_node(n, "ReduceMean") || n.attr_i("keepdims", 1) != 1) return false;
  std::vector<int64_t> axes;
  if (n.has("axes")) {
    axes = n.attr_ints("axes");
  } else {  // opset 18: the axes input
    auto it = n.input(1).empty() ? g.constants.end() : g.constants.find(n.input(1));
    if (it == g.constants.end() || it->second.dtype != DType::i64) return false;
    axes = it->second.i;
  }
  return axes == std::vector<int64_t>{-1};
}

// For an Add or Mul reading `value` and a row constant, the constant's name; else "".
std::string constant_operand(const Graph& g, const Node& n, const std::string& value) {
  if (n.inputs.size() != 2) return "";
  const std::string& other = n.inputs[0] == value ? n.inputs[1] : n.inputs[0];
  if (other == value || (n.inputs[0] != value && n.inputs[1] != value)) return "";
  return is_row_constant(g, other) ? other : "";
}

struct Match {
  std::vector<std::size_t> nodes;  // all absorbed nodes; the last one is replaced
  std::string x, scale, bias, y;
  float epsilon = 0;
};

bool match_at(const Graph& g, const Readers& r, std::size_t k, Match& m) {
  const Node& mean = g.nodes[k];
  if (!mean_of_last_axis(g, mean)) return false;
  m = Match{};
  m.x = mean.input(0);
  if (m.x.empty() || g.is_constant(m.x)) return false;
  const int sub = only_reader(g, r, mean.outputs[0], "Sub");
  if (sub < 0 || g.nodes[sub].inputs != std::vector<std::string>{m.x, mean.outputs[0]}) return false;
  const std::string& d = g.nodes[sub].outputs[0];
  // d feeds exactly the Pow (the variance) and the Div (the normalised value).
  const auto d_readers = r.internal(d);
  if (d_readers.size() != 2) return false;
  int pow = -1, div = -1;
  for (std::size_t c : d_readers) {
    if (plain_node(g.nodes[c], "Pow")) pow = static_cast<int>(c);
    if (plain_node(g.nodes[c], "Div")) div = static_cast<int>(c);
  }
  if (pow < 0 || div < 0 || g.nodes[pow].inputs.size() != 2 || g.nodes[pow].input(0) != d) return false;
  auto exponent = g.constants.find(g.nodes[pow].input(1));
  if (exponent == g.constants.end() || exponent->second.numel() != 1 || exponent->second.at(0) != 2.0) return false;
  const int var = only_reader(g, r, g.nodes[pow].outputs[0], "ReduceMean");
  if (var < 0 || !mean_of_last_axis(g, g.nodes[var]) || g.nodes[var].input(0) != g.nodes[pow].outputs[0]) return false;
  const int add = only_reader(g, r, g.nodes[var].outputs[0], "Add");
  if (add < 0) return false;
  const std::string eps = constant_operand(g, g.nodes[add], g.nodes[var].outputs[0]);
  if (eps.empty() || g.constants.at(eps).numel() != 1) return false;
  m.epsilon = g.constants.at(eps).f[0];
  const int sqrt = only_reader(g, r, g.nodes[add].outputs[0], "Sqrt");
  if (sqrt < 0 || only_reader(g, r, g.nodes[sqrt].outputs[0], "Div") != div) return false;
  if (g.nodes[div].inputs != std::vector<std::string>{d, g.nodes[sqrt].outputs[0]}) return false;
  m.nodes = {k, static_cast<std::size_t>(sub), static_cast<std::size_t>(pow), static_cast<std::size_t>(var),
             static_cast<std::size_t>(add), static_cast<std::size_t>(sqrt), static_cast<std::size_t>(div)};
  m.y = g.nodes[div].outputs[0];
  // The optional affine part: * weight, then + bias.
  if (const int mul = only_reader(g, r, m.y, "Mul"); mul >= 0) {
    if (const std::string w = constant_operand(g, g.nodes[mul], m.y); !w.empty()) {
      m.scale = w;
      m.nodes.push_back(static_cast<std::size_t>(mul));
      m.y = g.nodes[mul].outputs[0];
    }
  }
  if (const int shift = only_reader(g, r, m.y, "Add"); shift >= 0) {
    if (const std::string bias = constant_operand(g, g.nodes[shift], m.y); !bias.empty()) {
      m.bias = bias;
      m.nodes.push_back(static_cast<std::size_t>(shift));
      m.y = g.nodes[shift].outputs[0];
    }
  }
  return true;
}

}  // namespace

int fuse_layernorm(Graph& g) {
  const Readers readers(g);
  return fuse_each(g, [&](std::size_t k) -> std::optional<Fusion> {
    Match m;
    if (!match_at(g, readers, k, m)) return std::nullopt;
    Node ln;
    ln.name = g.nodes[k].name;  // named after the node it starts from, like the other fusions
    ln.op = "LayerNormalization";
    if (m.scale.empty()) {  // no weight: LayerNormalization's scale input is required
      m.scale = ln.name + "/ln_unit_scale";
      g.constants[m.scale] = HostTensor::from_f32({1}, {1.0f});
    }
    ln.inputs = {m.x, m.scale, m.bias};
    ln.outputs = {m.y};
    Attribute axis, eps;
    axis.kind = Attribute::Kind::i;
    axis.i = -1;
    eps.kind = Attribute::Kind::f;
    eps.f = m.epsilon;
    ln.attrs = {{"axis", axis}, {"epsilon", eps}};
    return Fusion{std::move(m.nodes), std::move(ln), {}};
  });
}

}  // namespace arcforge::runtime::detail
