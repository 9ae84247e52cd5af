#include "train/export/onnx_graph_reader.hpp"

#include <cstring>
#include <functional>
#include <map>
#include <queue>
#include <set>
#include <sstream>

#include "arcforge/common/error.hpp"
#include "train/export/onnx_proto_util.hpp"

namespace arcforge::onnx_io {
namespace {

constexpr int64_t kMaxTensorElements = int64_t{1} << 31;

// Nodes that only move data around (looked through when resolving inputs).
const std::set<std::string> kDataPassthrough = {"Flatten", "Reshape", "Dropout", "Identity", "Squeeze",
                                                "Unsqueeze"};
// Nodes of the shape arithmetic PyTorch exports around Reshape; they carry no weights. If one of
// them ends up on the data path, the wiring check of the next layer fails.
const std::set<std::string> kShapeArithmetic = {"Shape", "Gather", "Concat", "Cast", "ConstantOfShape",
                                                "Slice", "Range", "Constant"};

std::string dims_text(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

class Reader {
 public:
  Reader(const onnx::ModelProto& model, std::string path) : model_(model), path_(std::move(path)) {}

  RecognizerGraph read() {
    const onnx::GraphProto& g = model_.graph();
    check_domains();
    for (const auto& t : g.initializer()) constants_[t.name()] = &t;
    RecognizerGraph out;
    out.path = path_;
    out.producer = model_.producer_name() + " " + model_.producer_version();
    for (const auto& in : g.input()) {
      if (!constants_.count(in.name())) {
        if (!out.input.empty()) fail("has more than one data input ('" + out.input + "', '" + in.name() + "'); a face recognizer has one");
        out.input = in.name();
      }
    }
    if (out.input.empty()) fail("has no data input");
    computed_.insert(out.input);
    if (g.output_size() != 1) {
      fail("has " + std::to_string(g.output_size()) + " outputs; a face recognizer has one (the embedding)");
    }
    for (int index : topological_order(out.input)) {
      const std::size_t before = ops_.size();
      visit(g.node(index), index);
      if (ops_.size() > before) computed_.insert(ops_.back().output);
    }
    out.ops = std::move(ops_);
    out.input = resolve(out.input);
    out.output = resolve(g.output(0).name());
    // Found by fuzz_onnx_import: an output nothing computes would otherwise reach the importer,
    // whose wiring error would blame the architecture instead of the file.
    if (out.output == out.input || !computed_.count(out.output)) {
      fail("graph output '" + g.output(0).name() + "' is not computed by any layer (Conv, BatchNormalization, "
           "PRelu, Gemm/MatMul or Add)");
    }
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw InputError(file_message(path_, what)); }
  [[noreturn]] void fail(const onnx::NodeProto& n, int index, const std::string& what) const {
    fail("node " + label(n, index) + " " + what);
  }

  static std::string label(const onnx::NodeProto& n, int index) {
    if (!n.name().empty()) return "'" + n.name() + "' (" + n.op_type() + ")";
    return "#" + std::to_string(index) + " (" + n.op_type() +
           (n.output_size() > 0 ? ", output '" + n.output(0) + "'" : std::string()) + ")";
  }

  void check_domains() const {
    for (const auto& op : model_.opset_import()) {
      if (!op.domain().empty() && op.domain() != "ai.onnx" && op.domain() != "ai.onnx.ml") {
        fail("uses the custom operator domain '" + op.domain() + "'");
      }
    }
  }

  // Kahn's algorithm, file order among ready nodes (PyTorch writes nodes in forward order).
  std::vector<int> topological_order(const std::string& graph_input) {
    const onnx::GraphProto& g = model_.graph();
    const int n = g.node_size();
    std::map<std::string, int> producer;
    for (int i = 0; i < n; ++i) {
      for (const auto& o : g.node(i).output()) {
        if (o.empty()) continue;
        if (producer.count(o) || constants_.count(o) || o == graph_input) {
          fail(g.node(i), i, "writes '" + o + "', which is already defined");
        }
        producer[o] = i;
      }
    }
    std::vector<int> waiting(n, 0);
    std::vector<std::vector<int>> readers(n);
    for (int i = 0; i < n; ++i) {
      for (const auto& in : g.node(i).input()) {
        if (in.empty() || constants_.count(in) || in == graph_input) continue;
        auto it = producer.find(in);
        if (it == producer.end()) {
          fail(g.node(i), i, "reads '" + in + "', which no node, initializer or graph input provides");
        }
        ++waiting[i];
        readers[it->second].push_back(i);
      }
    }
    std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
    for (int i = 0; i < n; ++i) {
      if (waiting[i] == 0) ready.push(i);
    }
    std::vector<int> order;
    while (!ready.empty()) {
      const int i = ready.top();
      ready.pop();
      order.push_back(i);
      for (int r : readers[i]) {
        if (--waiting[r] == 0) ready.push(r);
      }
    }
    if (static_cast<int>(order.size()) != n) {
      for (int i = 0; i < n; ++i) {
        if (waiting[i] > 0) fail(g.node(i), i, "is part of a cycle");
      }
    }
    return order;
  }

  std::string resolve(const std::string& value) const {
    std::string v = value;
    for (auto it = alias_.find(v); it != alias_.end(); it = alias_.find(v)) v = it->second;
    return v;
  }

  bool is_constant(const std::string& name) const { return constants_.count(name) > 0; }

  // Input `input` of a layer as the value it reads through reshaping nodes, which must be the
  // image or a layer's output (found by fuzz_onnx_import: a layer fed by shape arithmetic).
  std::string data_input(const onnx::NodeProto& n, int index, int input) const {
    const std::string value = resolve(n.input(input));
    if (!computed_.count(value)) {
      fail(n, index, "reads '" + n.input(input) + "' as data, but no layer computes it and it is not the input image");
    }
    return value;
  }

  torch::Tensor constant(const onnx::NodeProto& n, int index, int input) const {
    if (input >= n.input_size() || n.input(input).empty()) fail(n, index, "lacks input " + std::to_string(input));
    const std::string& name = n.input(input);
    auto it = constants_.find(name);
    if (it == constants_.end()) {
      fail(n, index, "takes '" + name + "' as a weight, but it is computed, not a constant initializer");
    }
    return to_tensor(*it->second, n, index);
  }

  torch::Tensor optional_constant(const onnx::NodeProto& n, int index, int input) const {
    if (input >= n.input_size() || n.input(input).empty()) return {};
    return constant(n, index, input);
  }

  torch::Tensor to_tensor(const onnx::TensorProto& t, const onnx::NodeProto& n, int index) const {
    const std::string what = "weight '" + t.name() + "'";
    if (t.data_location() == onnx::TensorProto::EXTERNAL) fail(n, index, what + " is stored as external data");
    std::vector<int64_t> dims;
    int64_t count = 1;
    for (int64_t d : t.dims()) {
      if (d < 0 || (d > 0 && count > kMaxTensorElements / d)) fail(n, index, what + " has a bad shape");
      dims.push_back(d);
      count *= d;
    }
    auto from_raw = [&](at::ScalarType type, size_t element_bytes) {
      if (t.raw_data().size() != static_cast<size_t>(count) * element_bytes) {
        fail(n, index, what + " holds " + std::to_string(t.raw_data().size()) + " bytes for " +
                           std::to_string(count) + " elements");
      }
      torch::Tensor out = torch::empty(dims, type);
      if (count > 0) std::memcpy(out.data_ptr(), t.raw_data().data(), t.raw_data().size());
      return out.to(torch::kFloat);
    };
    auto check_count = [&](int64_t have) {
      if (have != count) {
        fail(n, index, what + " holds " + std::to_string(have) + " values for " + std::to_string(count) + " elements");
      }
    };
    switch (t.data_type()) {
      case onnx::TensorProto::FLOAT: {
        if (t.has_raw_data()) return from_raw(torch::kFloat, 4);
        check_count(t.float_data_size());
        return torch::tensor(std::vector<float>(t.float_data().begin(), t.float_data().end())).view(dims);
      }
      case onnx::TensorProto::DOUBLE: {
        if (t.has_raw_data()) return from_raw(torch::kDouble, 8);
        check_count(t.double_data_size());
        return torch::tensor(std::vector<double>(t.double_data().begin(), t.double_data().end()))
            .view(dims)
            .to(torch::kFloat);
      }
      case onnx::TensorProto::FLOAT16: {
        if (t.has_raw_data()) return from_raw(torch::kHalf, 2);
        check_count(t.int32_data_size());  // float16 bit patterns, one per int32
        std::vector<int16_t> bits(t.int32_data().begin(), t.int32_data().end());
        return torch::from_blob(bits.data(), {count}, torch::kInt16).view(torch::kHalf).view(dims).to(torch::kFloat);
      }
      default:
        fail(n, index, what + " has ONNX data type " + std::to_string(t.data_type()) + "; weights must be floating point");
    }
  }

  static const onnx::AttributeProto* attribute(const onnx::NodeProto& n, const std::string& name) {
    for (const auto& a : n.attribute()) {
      if (a.name() == name) return &a;
    }
    return nullptr;
  }
  static int64_t int_attribute(const onnx::NodeProto& n, const std::string& name, int64_t fallback) {
    const auto* a = attribute(n, name);
    return a ? a->i() : fallback;
  }
  static float float_attribute(const onnx::NodeProto& n, const std::string& name, float fallback) {
    const auto* a = attribute(n, name);
    return a ? a->f() : fallback;
  }
  static std::vector<int64_t> ints_attribute(const onnx::NodeProto& n, const std::string& name,
                                             std::vector<int64_t> fallback) {
    const auto* a = attribute(n, name);
    return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : fallback;
  }

  OnnxOp make_op(OnnxOpKind kind, const onnx::NodeProto& n, int index) const {
    OnnxOp op;
    op.kind = kind;
    op.label = label(n, index);
    if (n.input_size() < 1 || n.input(0).empty()) fail(n, index, "has no data input");
    if (is_constant(n.input(0))) fail(n, index, "reads a constant as its data input");
    op.inputs = {data_input(n, index, 0)};
    if (n.output_size() < 1 || n.output(0).empty()) fail(n, index, "has no output");
    op.output = n.output(0);
    return op;
  }

  void visit(const onnx::NodeProto& n, int index) {
    const std::string& type = n.op_type();
    if (type == "Constant") {
      const auto* value = attribute(n, "value");
      if (value && value->type() == onnx::AttributeProto::TENSOR && n.output_size() == 1) {
        constants_[n.output(0)] = &value->t();
      }
    } else if (kDataPassthrough.count(type)) {
      if (n.input_size() < 1 || n.output_size() < 1) fail(n, index, "has no input or output");
      if (is_constant(n.input(0))) {
        if (type == "Identity") constants_[n.output(0)] = constants_.at(n.input(0));
      } else {
        alias_[n.output(0)] = resolve(n.input(0));
      }
    } else if (kShapeArithmetic.count(type)) {
      // carries no weights (see kShapeArithmetic)
    } else if (type == "Conv") {
      visit_conv(n, index);
    } else if (type == "BatchNormalization") {
      visit_batch_norm(n, index);
    } else if (type == "PRelu") {
      OnnxOp op = make_op(OnnxOpKind::prelu, n, index);
      op.weight = constant(n, index, 1).flatten();
      ops_.push_back(std::move(op));
    } else if (type == "Gemm") {
      visit_gemm(n, index);
    } else if (type == "MatMul") {
      OnnxOp op = make_op(OnnxOpKind::linear, n, index);
      const torch::Tensor b = constant(n, index, 1);
      if (b.dim() != 2) fail(n, index, "has a " + dims_text(b) + " weight; a linear layer's is 2-D");
      op.weight = b.t().contiguous();  // y = x B, B [in, out]
      ops_.push_back(std::move(op));
    } else if (type == "Add") {
      visit_add(n, index);
    } else {
      fail(n, index, "has no counterpart in arcforge's backbones (they are built from Conv, "
                     "BatchNormalization, PRelu, Gemm/MatMul, Add and reshaping nodes)");
    }
  }

  void visit_conv(const onnx::NodeProto& n, int index) {
    OnnxOp op = make_op(OnnxOpKind::conv, n, index);
    op.weight = constant(n, index, 1);
    if (op.weight.dim() != 4) fail(n, index, "has a " + dims_text(op.weight) + " weight; only 2-D convolutions are supported");
    op.bias = optional_constant(n, index, 2);
    if (op.bias.defined() && op.bias.numel() != op.weight.size(0)) {
      fail(n, index, "has " + std::to_string(op.bias.numel()) + " biases for " + std::to_string(op.weight.size(0)) + " outputs");
    }
    const std::vector<int64_t> kernel = ints_attribute(n, "kernel_shape", {op.weight.size(2), op.weight.size(3)});
    if (kernel != std::vector<int64_t>{op.weight.size(2), op.weight.size(3)}) {
      fail(n, index, "has kernel_shape attributes that disagree with its weight " + dims_text(op.weight));
    }
    op.strides = ints_attribute(n, "strides", {1, 1});
    op.dilations = ints_attribute(n, "dilations", {1, 1});
    op.pads = ints_attribute(n, "pads", {0, 0, 0, 0});
    op.group = int_attribute(n, "group", 1);
    const auto* auto_pad = attribute(n, "auto_pad");
    if (auto_pad && auto_pad->s() != "NOTSET") {
      if (auto_pad->s() != "VALID") fail(n, index, "uses auto_pad " + auto_pad->s() + "; only explicit pads are supported");
      op.pads = {0, 0, 0, 0};
    }
    if (op.strides.size() != 2 || op.dilations.size() != 2 || op.pads.size() != 4) {
      fail(n, index, "has strides/dilations/pads of the wrong length for a 2-D convolution");
    }
    ops_.push_back(std::move(op));
  }

  void visit_batch_norm(const onnx::NodeProto& n, int index) {
    if (int_attribute(n, "training_mode", 0) != 0) fail(n, index, "is in training mode");
    OnnxOp op = make_op(OnnxOpKind::batch_norm, n, index);
    op.weight = constant(n, index, 1).flatten();
    op.bias = constant(n, index, 2).flatten();
    op.mean = constant(n, index, 3).flatten();
    op.var = constant(n, index, 4).flatten();
    op.eps = float_attribute(n, "epsilon", 1e-5f);
    const int64_t c = op.weight.numel();
    if (op.bias.numel() != c || op.mean.numel() != c || op.var.numel() != c) {
      fail(n, index, "has scale, bias, mean and variance of different lengths");
    }
    ops_.push_back(std::move(op));
  }

  void visit_gemm(const onnx::NodeProto& n, int index) {
    OnnxOp op = make_op(OnnxOpKind::linear, n, index);
    if (int_attribute(n, "transA", 0) != 0) fail(n, index, "transposes its data input (transA)");
    torch::Tensor b = constant(n, index, 1);
    if (b.dim() != 2) fail(n, index, "has a " + dims_text(b) + " weight; a linear layer's is 2-D");
    op.weight = int_attribute(n, "transB", 0) != 0 ? b : b.t().contiguous();  // -> [out, in]
    op.weight = op.weight * float_attribute(n, "alpha", 1.0f);
    torch::Tensor c = optional_constant(n, index, 2);
    if (c.defined()) {
      const int64_t out = op.weight.size(0);
      if (c.numel() != out && c.numel() != 1) fail(n, index, "has a bias C of shape " + dims_text(c));
      op.bias = (c.flatten() * float_attribute(n, "beta", 1.0f)).expand({out}).contiguous();
    }
    ops_.push_back(std::move(op));
  }

  // Add of two computed values is a residual sum; Add of a constant is the bias of the MatMul
  // before it (how PyTorch exports a Linear as MatMul + Add).
  void visit_add(const onnx::NodeProto& n, int index) {
    if (n.input_size() != 2 || n.output_size() < 1) fail(n, index, "does not have two inputs");
    const bool c0 = is_constant(n.input(0)), c1 = is_constant(n.input(1));
    if (!c0 && !c1) {
      OnnxOp op = make_op(OnnxOpKind::add, n, index);
      op.inputs = {data_input(n, index, 0), data_input(n, index, 1)};
      ops_.push_back(std::move(op));
      return;
    }
    if (c0 && c1) fail(n, index, "adds two constants");
    const std::string data = resolve(n.input(c0 ? 1 : 0));
    const torch::Tensor bias = constant(n, index, c0 ? 0 : 1);
    OnnxOp* linear = ops_.empty() ? nullptr : &ops_.back();
    if (!linear || linear->kind != OnnxOpKind::linear || linear->output != data || linear->bias.defined()) {
      fail(n, index, "adds a constant to something other than a bias-free Gemm/MatMul output; "
                     "arcforge's backbones have no such layer");
    }
    const int64_t out = linear->weight.size(0);
    if (bias.numel() != out && bias.numel() != 1) fail(n, index, "has a bias of shape " + dims_text(bias));
    linear->bias = bias.flatten().expand({out}).contiguous();
    alias_[n.output(0)] = data;
  }

  const onnx::ModelProto& model_;
  std::string path_;
  std::map<std::string, const onnx::TensorProto*> constants_;
  std::map<std::string, std::string> alias_;  // passthrough output -> its input
  std::set<std::string> computed_;            // the data input and every layer's output
  std::vector<OnnxOp> ops_;
};

}  // namespace

std::string to_string(OnnxOpKind kind) {
  switch (kind) {
    case OnnxOpKind::conv: return "Conv";
    case OnnxOpKind::batch_norm: return "BatchNormalization";
    case OnnxOpKind::prelu: return "PRelu";
    case OnnxOpKind::linear: return "Gemm/MatMul";
    case OnnxOpKind::add: return "Add";
  }
  return "?";
}

RecognizerGraph read_recognizer_graph(const std::string& path, std::size_t max_bytes) {
  const onnx::ModelProto model = read_model(path, max_bytes);
  return Reader(model, path).read();
}

RecognizerGraph parse_recognizer_graph(const std::string& bytes, const std::string& path) {
  const onnx::ModelProto model = parse_model(bytes, path);
  return Reader(model, path).read();
}

}  // namespace arcforge::onnx_io
