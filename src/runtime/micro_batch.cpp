// Whether a graph computes each image of a batch alone, and how many images a slice takes.
#include "micro_batch.hpp"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <set>

#include "optimize_attention.hpp"

namespace arcforge::runtime::detail {

namespace {

// Ops whose effect on the batch axis the checks below cover: given inputs and outputs that carry
// the batch on axis 0, they compute each image alone, or break a rule checked below.
bool judged_op(const std::string& op) {
  static const std::set<std::string> ops = {
      "Conv", "Gemm", "MatMul", "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
      "GlobalMaxPool", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Exp", "Sqrt", "Abs", "Neg", "HardSwish", "Elu",
      "Clip", "PRelu", "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Softmax", "LayerNormalization",
      fused_attention_op, "Concat", "Transpose", "Slice", "Split", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
      "Identity", "Dropout", "Cast", "Gather", "ReduceMean", "Resize", "Upsample", "QuantizeLinear",
      "DequantizeLinear", "Shape", "ConstantOfShape", "Pad"};
  return ops.count(op) != 0;
}

// Inputs through which an op reads sizes, not data: a Reshape's target shape, a Resize's scales or
// sizes, a Slice's bounds, ... Only these may hold values computed from the batch size (Shape).
bool is_size_operand(const Node& n, std::size_t k) {
  static const std::set<std::string> ops = {"Reshape", "Resize", "Upsample", "Slice", "Split", "Squeeze", "Unsqueeze"};
  if (n.op == "Pad") return k == 1 || k == 3;  // pads and axes; not the constant
  return k > 0 && ops.count(n.op) != 0;
}

// Element-wise ops: each operand computed from the inputs must have the output's rank, so that its
// axis 0 lines up with the output's batch axis under broadcasting.
bool is_elementwise(const std::string& op) {
  static const std::set<std::string> ops = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu"};
  return ops.count(op) != 0;
}

struct Views {
  const Graph& graph;
  const Plan& one;
  const Plan& two;

  HostLookup lookup(const Plan& plan) const {
    return [this, &plan](const std::string& v) -> const HostTensor* {
      if (auto c = graph.constants.find(v); c != graph.constants.end()) return &c->second;
      auto h = plan.host_values.find(v);
      return h == plan.host_values.end() ? nullptr : &h->second;
    };
  }
  bool is_host(const std::string& v) const { return graph.is_constant(v) || one.host_values.count(v) != 0; }
  // A host value whose contents differ between the two plans: computed from the batch size.
  bool depends_on_batch_size(const std::string& v) const {
    auto a = one.host_values.find(v), b = two.host_values.find(v);
    if (a == one.host_values.end() || b == two.host_values.end()) return false;
    return a->second.dims != b->second.dims || a->second.f != b->second.f || a->second.i != b->second.i;
  }
  // Size 1 on axis 0 in `one`, 2 in `two`, the other dims alike.
  bool carries_batch(const std::string& v) const {
    const Dims* a = one.dims_of(v);
    const Dims* b = two.dims_of(v);
    if (!a || !b || a->empty() || a->size() != b->size() || (*a)[0] != 1 || (*b)[0] != 2) return false;
    return std::equal(a->begin() + 1, a->end(), b->begin() + 1);
  }
  int64_t rank(const std::string& v) const {
    const Dims* d = one.dims_of(v);
    return d ? static_cast<int64_t>(d->size()) : -1;
  }
};

std::string dims_text(const Dims* d) { return d ? dims_str(*d) : std::string("(none)"); }

// The rule of an op that could mix images along axis 0 even with every dims check passed; "" when
// the node keeps to it. `data_from_inputs[k]`: input k is computed from the graph's inputs.
std::string axis_rule_broken(const Views& v, const Node& n, const std::vector<bool>& data_from_inputs) {
  const auto from_inputs = [&](std::size_t k) { return k < data_from_inputs.size() && data_from_inputs[k]; };
  const int64_t rank = v.rank(n.input(0));
  const auto axis_is_batch = [&](int64_t axis) { return rank > 0 && (axis < 0 ? axis + rank : axis) == 0; };
  if (n.op == "Softmax") {
    if (axis_is_batch(n.attr_i("axis", v.graph.opset < 13 ? 1 : -1))) return "normalises across the batch axis";
  } else if (n.op == "LayerNormalization") {
    if (axis_is_batch(n.attr_i("axis", -1))) return "normalises across the batch axis";
  } else if (n.op == "Concat" || n.op == "Split") {
    if (axis_is_batch(n.attr_i("axis", 0))) return "works along the batch axis";
  } else if (n.op == "Gather") {
    if (from_inputs(0) && axis_is_batch(n.attr_i("axis", 0))) return "gathers along the batch axis";
  } else if (n.op == "Transpose") {
    const std::vector<int64_t> perm = n.attr_ints("perm");
    if (rank > 1 && (perm.empty() || perm[0] != 0)) return "moves the batch axis";
  } else if (n.op == "ReduceMean") {
    const std::vector<int64_t> axes = ints_param(n, 1, "axes", v.lookup(v.one));
    if (axes.empty() && n.attr_i("noop_with_empty_axes", 0) == 0) return "reduces every axis";
    for (int64_t a : axes) {
      if (axis_is_batch(a)) return "reduces the batch axis";
    }
  } else if (n.op == "Gemm") {
    if (from_inputs(1)) return "multiplies by a matrix computed from the batch";
    if (from_inputs(0) && n.attr_i("transA", 0) != 0) return "transposes the batch axis into the product";
  } else if (n.op == "MatMul") {
    if (from_inputs(0) && v.rank(n.input(0)) < 2) return "contracts the batch axis";
    if (from_inputs(1) && (v.rank(n.input(1)) < 3 || (from_inputs(0) && v.rank(n.input(0)) != v.rank(n.input(1))))) {
      return "contracts or broadcasts the batch axis";
    }
  } else if (n.op == "Pad") {
    // Pads (or crops) of axis 0 would add images, or shift them between slices.
    for (const Plan* plan : {&v.one, &v.two}) {
      const Dims* in = plan->dims_of(n.input(0));
      if (!in) return "pads a value of unknown dims";
      const PadSpec s = pad_spec(n, *in, v.lookup(*plan));
      if (!s.begin.empty() && (s.begin[0] != 0 || s.end[0] != 0)) return "pads the batch axis";
    }
  } else if (n.op == "Slice") {
    // Axis 0 may only be taken whole: from 0 (or from before the start) to the end (or to the batch
    // size itself, read through Shape), step 1, in both plans.
    for (const Plan* plan : {&v.one, &v.two}) {
      const HostLookup host = v.lookup(*plan);
      const std::vector<int64_t> starts = ints_param(n, 1, "starts", host), ends = ints_param(n, 2, "ends", host);
      std::vector<int64_t> axes = ints_param(n, 3, "axes", host);
      const std::vector<int64_t> steps = n.has("starts") ? std::vector<int64_t>{} : ints_param(n, 4, "steps", host);
      if (axes.empty()) {
        for (std::size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<int64_t>(k));
      }
      const int64_t batch = plan == &v.one ? 1 : 2;
      constexpr int64_t far = std::numeric_limits<int32_t>::max();
      for (std::size_t k = 0; k < axes.size() && k < starts.size() && k < ends.size(); ++k) {
        if (!axis_is_batch(axes[k])) continue;
        const bool whole = (starts[k] == 0 || starts[k] <= -far) && (ends[k] >= far || ends[k] == batch) &&
                           (k >= steps.size() || steps[k] == 1);
        if (!whole) return "slices the batch axis";
      }
    }
  }
  return "";
}

}  // namespace

bool may_split_batch(const Graph& graph) {
  if (graph.inputs.empty()) return false;
  for (const auto& in : graph.inputs) {
    if (!in.shape.empty() && in.shape[0] >= 0) return false;  // a fixed batch
  }
  return std::all_of(graph.nodes.begin(), graph.nodes.end(), [](const Node& n) { return judged_op(n.op); });
}

std::string batch_split_obstacle(const Graph& graph, const Plan& one, const Plan& two) {
  const Views v{graph, one, two};
  std::set<std::string> from_inputs;  // values computed from the graph inputs' data
  for (const auto& in : graph.inputs) {
    if (!v.carries_batch(in.name)) return "input '" + in.name + "' does not carry the batch on axis 0";
    from_inputs.insert(in.name);
  }
  for (const auto& n : graph.nodes) {
    if (!judged_op(n.op)) return n.describe() + ": an op the batch split does not judge";
    const bool on_host = !n.outputs.empty() && v.is_host(n.outputs[0]);
    std::vector<bool> data_from_inputs(n.inputs.size(), false);
    bool any = false;
    for (std::size_t k = 0; k < n.inputs.size(); ++k) {
      const std::string& in = n.inputs[k];
      if (in.empty()) continue;
      data_from_inputs[k] = from_inputs.count(in) != 0;
      any = any || data_from_inputs[k];
      if (!on_host && v.depends_on_batch_size(in) && !is_size_operand(n, k)) {
        return n.describe() + " reads the batch size as data (input '" + in + "')";
      }
    }
    if (on_host) continue;  // shape arithmetic: judged where a run-time node reads it
    std::vector<std::string> batched_values;
    for (std::size_t k = 0; k < n.inputs.size(); ++k) {
      if (data_from_inputs[k]) batched_values.push_back(n.inputs[k]);
    }
    for (const auto& p : n.post_ops) {
      if (p.operand.empty() || !from_inputs.count(p.operand)) continue;
      any = true;
      batched_values.push_back(p.operand);
      if (v.rank(p.operand) != v.rank(n.outputs.at(0))) return n.describe() + ": an addend broadcast over the batch";
    }
    if (!any) continue;  // computed from constants alone
    for (const auto& out : n.outputs) {
      if (out.empty() || !one.dims_of(out)) continue;  // an unused optional output
      batched_values.push_back(out);
      from_inputs.insert(out);
    }
    for (const auto& value : batched_values) {
      if (!v.carries_batch(value)) {
        return n.describe() + ": '" + value + "' has dims " + dims_text(one.dims_of(value)) + " for a batch of 1 and " +
               dims_text(two.dims_of(value)) + " for 2";
      }
    }
    if (is_elementwise(n.op)) {
      for (std::size_t k = 0; k < n.inputs.size(); ++k) {
        if (data_from_inputs[k] && v.rank(n.inputs[k]) != v.rank(n.outputs.at(0))) {
          return n.describe() + ": input '" + n.inputs[k] + "' is broadcast over the batch";
        }
      }
    }
    if (std::string rule = axis_rule_broken(v, n, data_from_inputs); !rule.empty()) return n.describe() + " " + rule;
  }
  for (std::size_t k = 0; k < graph.outputs.size(); ++k) {
    const std::string& name = graph.outputs[k].name;
    if (!from_inputs.count(name) || !v.carries_batch(name)) {
      return "output '" + name + "' is not computed image by image";
    }
  }
  return "";
}

int64_t micro_batch_size(int64_t n, std::size_t arena_per_image, std::size_t weight_bytes, std::size_t cache_bytes) {
  if (n <= 1 || arena_per_image == 0) return n;
  const int64_t fits = std::max<int64_t>(1, static_cast<int64_t>(cache_bytes / 2 / arena_per_image));
  if (fits >= n) return n;
  if (weight_bytes / static_cast<std::size_t>(fits) > 2 * arena_per_image) return n;
  return fits;
}

namespace {

// "32768K" -> bytes; 0 when unreadable.
std::size_t sysfs_size(const std::string& path) {
  std::ifstream in(path);
  std::size_t value = 0;
  std::string unit;
  if (!(in >> value)) return 0;
  in >> unit;
  if (unit == "K") return value << 10;
  if (unit == "M") return value << 20;
  return value;
}

}  // namespace

std::size_t last_level_cache_bytes() {
  // The cache one core sees, from sysfs: glibc's sysconf reports the sum over an AMD EPYC's
  // core complexes (320 MB on a 32 MB-per-complex host), which no one image's layers share.
  std::size_t largest = 0;
  for (int k = 0; k < 8; ++k) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(k) + "/";
    std::ifstream type(dir + "type");
    std::string kind;
    if (!(type >> kind)) break;
    if (kind != "Instruction") largest = std::max(largest, sysfs_size(dir + "size"));
  }
  if (largest > 0) return std::min(largest, kCoreCacheShareCap);
  for (int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
    const long bytes = sysconf(name);
    if (bytes > 0) return std::min(static_cast<std::size_t>(bytes), kCoreCacheShareCap);
  }
  return std::size_t{8} << 20;
}

std::size_t weight_bytes(const Graph& graph, Precision precision) {
  // An int8 convolution's or inner product's weights are held as integer-valued floats in the graph
  // but reordered to one byte each for its kernel.
  std::set<std::string> int8_weights;
  for (const Node& n : graph.nodes) {
    if (n.quant.active && n.inputs.size() > 1) int8_weights.insert(n.inputs[1]);
  }
  const std::size_t per_float = floats_in_bf16(precision) ? 2 : 4;
  std::size_t total = 0;
  for (const auto& [name, t] : graph.constants) {
    total += static_cast<std::size_t>(t.numel()) * (int8_weights.count(name) ? 1 : per_float);
  }
  return total;
}

}  // namespace arcforge::runtime::detail
