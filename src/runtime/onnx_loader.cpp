// ONNX file -> runtime Graph. The only file that sees protobuf types. Every check here names the
// file, and the node or tensor, because models come from outside.
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <unordered_map>

#include "arcforge/common/error.hpp"
#include "graph.hpp"

namespace arcforge::runtime::detail {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw InputError(file_message(path, what));
}

std::string read_capped(const std::string& path, std::size_t max_bytes) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(path, "cannot read model file: " + ec.message());
  if (size > max_bytes) {
    fail(path, "model file is " + std::to_string(size) + " bytes, over the limit of " + std::to_string(max_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open model file");
  std::string bytes(size, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::size_t>(in.gcount()) != size) fail(path, "short read of model file");
  return bytes;
}

template <typename T>
std::vector<T> raw_values(const std::string& raw, int64_t count, const std::string& where) {
  if (raw.size() != static_cast<std::size_t>(count) * sizeof(T)) {
    throw InputError(where + ": raw_data has " + std::to_string(raw.size()) + " bytes, shape needs " +
                     std::to_string(count * static_cast<int64_t>(sizeof(T))));
  }
  std::vector<T> out(static_cast<std::size_t>(count));
  if (count > 0) std::memcpy(out.data(), raw.data(), raw.size());
  return out;
}

template <typename Field>
void check_count(const Field& field, int64_t count, const std::string& where) {
  if (static_cast<int64_t>(field.size()) != count) {
    throw InputError(where + ": has " + std::to_string(field.size()) + " values, shape needs " + std::to_string(count));
  }
}

HostTensor convert_tensor(const onnx::TensorProto& t, const std::string& where) {
  if (t.data_location() == onnx::TensorProto::EXTERNAL) throw InputError(where + ": external tensor data is not supported");
  if (t.has_segment()) throw InputError(where + ": segmented tensors are not supported");
  HostTensor out;
  int64_t count = 1;
  for (int64_t d : t.dims()) {
    if (d < 0) throw InputError(where + ": negative dimension " + std::to_string(d));
    if (d > 0 && count > (int64_t{1} << 40) / d) throw InputError(where + ": tensor too large");
    count *= d;
    out.dims.push_back(d);
  }
  const bool raw = t.has_raw_data();
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
      out.dtype = DType::f32;
      if (raw) {
        out.f = raw_values<float>(t.raw_data(), count, where);
      } else {
        check_count(t.float_data(), count, where);
        out.f.assign(t.float_data().begin(), t.float_data().end());
      }
      break;
    case onnx::TensorProto::DOUBLE: {
      out.dtype = DType::f32;
      std::vector<double> v;
      if (raw) {
        v = raw_values<double>(t.raw_data(), count, where);
      } else {
        check_count(t.double_data(), count, where);
        v.assign(t.double_data().begin(), t.double_data().end());
      }
      out.f.assign(v.begin(), v.end());
      break;
    }
    case onnx::TensorProto::INT64:
      out.dtype = DType::i64;
      if (raw) {
        out.i = raw_values<int64_t>(t.raw_data(), count, where);
      } else {
        check_count(t.int64_data(), count, where);
        out.i.assign(t.int64_data().begin(), t.int64_data().end());
      }
      break;
    case onnx::TensorProto::INT32:
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::BOOL: {
      out.dtype = DType::i64;
      if (raw) {
        if (t.data_type() == onnx::TensorProto::INT32) {
          auto v = raw_values<int32_t>(t.raw_data(), count, where);
          out.i.assign(v.begin(), v.end());
        } else if (t.data_type() == onnx::TensorProto::INT8) {
          auto v = raw_values<int8_t>(t.raw_data(), count, where);
          out.i.assign(v.begin(), v.end());
        } else {
          auto v = raw_values<uint8_t>(t.raw_data(), count, where);
          out.i.assign(v.begin(), v.end());
        }
      } else {
        check_count(t.int32_data(), count, where);
        out.i.assign(t.int32_data().begin(), t.int32_data().end());
      }
      out.int_kind = t.data_type() == onnx::TensorProto::INT8    ? IntKind::s8
                     : t.data_type() == onnx::TensorProto::UINT8 ? IntKind::u8
                     : t.data_type() == onnx::TensorProto::INT32 ? IntKind::i32
                                                                 : IntKind::i64;
      break;
    }
    default:
      throw InputError(where + ": unsupported tensor data type " + std::to_string(t.data_type()));
  }
  return out;
}

Attribute convert_attribute(const onnx::AttributeProto& a, const std::string& where) {
  Attribute out;
  if (!a.ref_attr_name().empty()) throw InputError(where + ": attribute references are not supported");
  switch (a.type()) {
    case onnx::AttributeProto::INT: out.kind = Attribute::Kind::i; out.i = a.i(); break;
    case onnx::AttributeProto::FLOAT: out.kind = Attribute::Kind::f; out.f = a.f(); break;
    case onnx::AttributeProto::STRING: out.kind = Attribute::Kind::s; out.s = a.s(); break;
    case onnx::AttributeProto::INTS:
      out.kind = Attribute::Kind::ints;
      out.ints.assign(a.ints().begin(), a.ints().end());
      break;
    case onnx::AttributeProto::FLOATS:
      out.kind = Attribute::Kind::floats;
      out.floats.assign(a.floats().begin(), a.floats().end());
      break;
    case onnx::AttributeProto::TENSOR:
      out.kind = Attribute::Kind::tensor;
      out.t = convert_tensor(a.t(), where + " attribute '" + a.name() + "'");
      break;
    default:
      throw InputError(where + ": attribute '" + a.name() + "' has an unsupported type " + std::to_string(a.type()));
  }
  return out;
}

std::vector<int64_t> declared_shape(const onnx::ValueInfoProto& v) {
  std::vector<int64_t> shape;
  if (!v.type().has_tensor_type() || !v.type().tensor_type().has_shape()) return shape;
  for (const auto& d : v.type().tensor_type().shape().dim()) {
    shape.push_back(d.has_dim_value() && d.dim_value() > 0 ? d.dim_value() : -1);
  }
  return shape;
}

// The value of a Constant node, whichever attribute carries it.
HostTensor constant_value(const Node& node, const std::string& where) {
  auto it = node.attrs.begin();
  if (node.attrs.size() != 1) throw InputError(where + ": Constant needs exactly one value attribute");
  const std::string& key = it->first;
  const Attribute& a = it->second;
  // The attribute's name promises its type; a file may break that promise.
  auto expect = [&](Attribute::Kind kind, const char* type) {
    if (a.kind != kind) throw InputError(where + ": Constant attribute '" + key + "' must be " + type);
  };
  if (key == "value") return expect(Attribute::Kind::tensor, "a tensor"), a.t;
  if (key == "value_float") return expect(Attribute::Kind::f, "a float"), HostTensor::from_f32({}, {a.f});
  if (key == "value_floats") {
    expect(Attribute::Kind::floats, "floats");
    return HostTensor::from_f32({static_cast<int64_t>(a.floats.size())}, a.floats);
  }
  if (key == "value_int") return expect(Attribute::Kind::i, "an int"), HostTensor::from_i64({}, {a.i});
  if (key == "value_ints") {
    expect(Attribute::Kind::ints, "ints");
    return HostTensor::from_i64({static_cast<int64_t>(a.ints.size())}, a.ints);
  }
  throw InputError(where + ": unsupported Constant attribute '" + key + "'");
}

// Every value of a graph is defined once: by an initializer, a graph input, or one node output.
class DefinedNames {
 public:
  explicit DefinedNames(std::string path) : path_(std::move(path)) {}
  // `what` says who defines it, for the error: "initializer", "graph input", "Relu 'r1': output".
  void define(const std::string& name, const std::string& what) {
    if (!names_.insert(name).second) fail(path_, what + " '" + name + "' is defined twice");
  }

 private:
  std::string path_;
  std::set<std::string> names_;
};

// Kahn's algorithm; keeps the file's order among ready nodes so plans are reproducible.
std::vector<Node> topological_order(std::vector<Node> nodes, const Graph& g) {
  // parse_onnx has already checked that every value is defined once.
  std::set<std::string> graph_inputs;
  for (const auto& in : g.inputs) graph_inputs.insert(in.name);
  std::unordered_map<std::string, std::size_t> producer;
  for (std::size_t k = 0; k < nodes.size(); ++k) {
    for (const auto& out : nodes[k].outputs) {
      if (!out.empty()) producer.emplace(out, k);
    }
  }
  std::vector<int> pending(nodes.size(), 0);
  std::vector<std::vector<std::size_t>> consumers(nodes.size());
  for (std::size_t k = 0; k < nodes.size(); ++k) {
    for (const auto& in : nodes[k].inputs) {
      if (in.empty() || g.is_constant(in) || graph_inputs.count(in)) continue;
      auto p = producer.find(in);
      if (p == producer.end()) {
        throw InputError(g.error(nodes[k], "input '" + in +
                                               "' is not produced by any node, initializer or graph input "
                                               "(missing initializer?)"));
      }
      ++pending[k];
      consumers[p->second].push_back(k);
    }
  }
  std::set<std::size_t> ready;
  for (std::size_t k = 0; k < nodes.size(); ++k) {
    if (pending[k] == 0) ready.insert(k);
  }
  std::vector<Node> order;
  order.reserve(nodes.size());
  while (!ready.empty()) {
    std::size_t k = *ready.begin();
    ready.erase(ready.begin());
    for (std::size_t c : consumers[k]) {
      if (--pending[c] == 0) ready.insert(c);
    }
    order.push_back(std::move(nodes[k]));
  }
  if (order.size() != nodes.size()) {
    for (std::size_t k = 0; k < nodes.size(); ++k) {
      if (pending[k] > 0) throw InputError(g.error(nodes[k], "is part of a cycle"));
    }
  }
  return order;
}

}  // namespace

Graph load_onnx(const std::string& path, std::size_t max_bytes) {
  return parse_onnx(read_capped(path, max_bytes), path);
}

Graph parse_onnx(const std::string& bytes, const std::string& path) {
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    fail(path, "model file is over protobuf's 2 GiB limit (external data is not supported)");
  onnx::ModelProto model;
  if (bytes.empty() || !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    fail(path, "not a valid ONNX model (protobuf parse failed)");
  }
  if (!model.has_graph()) fail(path, "not a valid ONNX model (no graph)");
  Graph g;
  g.path = path;
  for (const auto& op : model.opset_import()) {
    if (op.domain().empty() || op.domain() == "ai.onnx") g.opset = op.version();
  }
  if (g.opset == 0) fail(path, "no opset import for the default ONNX domain");
  if (g.opset < 7) fail(path, "opset " + std::to_string(g.opset) + " is too old (need 7 or later)");

  const auto& graph = model.graph();
  if (graph.sparse_initializer_size() > 0) fail(path, "sparse initializers are not supported");
  DefinedNames defined(path);
  for (const auto& init : graph.initializer()) {
    if (init.name().empty()) fail(path, "an initializer has no name");
    defined.define(init.name(), "initializer");
    g.constants[init.name()] = convert_tensor(init, path + ": initializer '" + init.name() + "'");
  }
  for (const auto& in : graph.input()) {
    if (g.is_constant(in.name())) continue;  // IR < 4 lists initializers as inputs too
    if (!in.type().has_tensor_type() || in.type().tensor_type().elem_type() != onnx::TensorProto::FLOAT) {
      fail(path, "graph input '" + in.name() + "' is not a float32 tensor");
    }
    defined.define(in.name(), "graph input");
    g.inputs.push_back({in.name(), declared_shape(in)});
  }
  if (g.inputs.empty()) fail(path, "the graph has no (non-initializer) inputs");

  std::vector<Node> nodes;
  for (int k = 0; k < graph.node_size(); ++k) {
    const auto& n = graph.node(k);
    Node node;
    node.op = n.op_type();
    node.name = n.name().empty() ? node.op + "_" + std::to_string(k) : n.name();
    const std::string where = path + ": " + node.describe();
    if (!n.domain().empty() && n.domain() != "ai.onnx") {
      fail(path, node.describe() + ": operator domain '" + n.domain() + "' is not supported");
    }
    node.inputs.assign(n.input().begin(), n.input().end());
    node.outputs.assign(n.output().begin(), n.output().end());
    for (const auto& a : n.attribute()) node.attrs[a.name()] = convert_attribute(a, where);
    ++g.op_histogram[node.op];
    if (!is_supported_op(node.op)) fail(path, node.describe() + ": unsupported operator '" + node.op + "'");
    for (const auto& out : node.outputs) {
      if (!out.empty()) defined.define(out, node.describe() + ": output");
    }
    if (node.op == "Constant") {
      if (node.outputs.size() != 1 || node.outputs[0].empty()) fail(path, node.describe() + ": Constant needs one output");
      g.constants[node.outputs[0]] = constant_value(node, where);
      continue;
    }
    nodes.push_back(std::move(node));
  }
  g.nodes = topological_order(std::move(nodes), g);

  std::set<std::string> produced;
  for (const auto& in : g.inputs) produced.insert(in.name);
  for (const auto& n : g.nodes) produced.insert(n.outputs.begin(), n.outputs.end());
  for (const auto& out : graph.output()) {
    // An empty name is ONNX's "optional output not produced", never a value (found by fuzz_onnx_loader).
    if (out.name().empty()) fail(path, "a graph output has no name");
    if (!produced.count(out.name()) && !g.is_constant(out.name())) {
      fail(path, "graph output '" + out.name() + "' is not produced by any node");
    }
    g.outputs.push_back({out.name(), declared_shape(out)});
  }
  if (g.outputs.empty()) fail(path, "the graph has no outputs");
  return g;
}

}  // namespace arcforge::runtime::detail
