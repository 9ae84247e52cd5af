#include "train/export/onnx_graph_reader.hpp"

#include <cstring>
#include <functional>
#include <map>
#include <optional>
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
// In a transformer, nodes that rearrange or scale activations without weights of their own (the
// attention's head split, q.k^T and softmax): looked through to their first data input.
const std::set<std::string> kTransformerPassthrough = {"Transpose", "Gather", "Cast", "Split", "Slice", "Softmax",
                                                       "MatMul", "Mul", "Div"};

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
    for (int i = 0; i < g.node_size(); ++i) {
      for (const auto& in : g.node(i).input()) consumers_[in].push_back(i);
      const auto* value = g.node(i).op_type() == "Constant" ? attribute(g.node(i), "value") : nullptr;
      if (value && value->type() == onnx::AttributeProto::TENSOR && g.node(i).output_size() == 1) {
        constant_nodes_[g.node(i).output(0)] = &value->t();
      }
      const std::string& type = g.node(i).op_type();
      if (transformer_evidence_.empty() && (type == "LayerNormalization" || type == "ReduceMean")) {
        transformer_evidence_ = label(g.node(i), i);
      }
    }
    out.transformer_evidence = transformer_evidence_;
    if (g.output_size() != 1) {
      fail("has " + std::to_string(g.output_size()) + " outputs; a face recognizer has one (the embedding)");
    }
    for (int index : topological_order(out.input)) {
      if (consumed_.count(index)) continue;  // part of a LayerNorm pattern already read
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
           "PRelu, Gemm/MatMul, Add or LayerNorm)");
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

  // Initializers, Identity copies of them, and Constant nodes (known before their turn in the
  // traversal, so a pattern read ahead can see them).
  const onnx::TensorProto* find_constant(const std::string& name) const {
    auto it = constants_.find(name);
    if (it != constants_.end()) return it->second;
    auto node = constant_nodes_.find(name);
    return node != constant_nodes_.end() ? node->second : nullptr;
  }
  bool is_constant(const std::string& name) const { return find_constant(name) != nullptr; }

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
    const onnx::TensorProto* t = find_constant(name);
    if (!t) fail(n, index, "takes '" + name + "' as a weight, but it is computed, not a constant initializer");
    return to_tensor(*t, n, index);
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
    } else if (kShapeArithmetic.count(type) && (transformer_evidence_.empty() || type == "Shape" || !reads_data(n))) {
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
    } else if (type == "MatMul" && n.input_size() != 2) {
      fail(n, index, "has " + std::to_string(n.input_size()) + " inputs; MatMul takes two");
    } else if (type == "MatMul" && (transformer_evidence_.empty() || is_constant(n.input(1)))) {
      OnnxOp op = make_op(OnnxOpKind::linear, n, index);
      const torch::Tensor b = constant(n, index, 1);
      if (b.dim() != 2) fail(n, index, "has a " + dims_text(b) + " weight; a linear layer's is 2-D");
      op.weight = b.t().contiguous();  // y = x B, B [in, out]
      ops_.push_back(std::move(op));
    } else if (type == "Add") {
      visit_add(n, index);
    } else if (!transformer_evidence_.empty() && visit_transformer_node(n, index)) {
      // read
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
      if (!transformer_evidence_.empty() && !reads_data(n)) return;  // shape arithmetic
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
      if (!transformer_evidence_.empty()) {  // the position embedding, on either side
        OnnxOp op;
        op.kind = OnnxOpKind::add_constant;
        op.label = label(n, index);
        op.inputs = {data_input(n, index, c0 ? 1 : 0)};
        op.output = n.output(0);
        op.weight = bias;
        ops_.push_back(std::move(op));
        return;
      }
      fail(n, index, "adds a constant to something other than a bias-free Gemm/MatMul output; "
                     "arcforge's backbones have no such layer");
    }
    const int64_t out = linear->weight.size(0);
    if (bias.numel() != out && bias.numel() != 1) fail(n, index, "has a bias of shape " + dims_text(bias));
    linear->bias = bias.flatten().expand({out}).contiguous();
    alias_[n.output(0)] = data;
  }

  // ---- transformers ----------------------------------------------------------------------------

  bool is_data(const std::string& name) const { return !name.empty() && computed_.count(resolve(name)) > 0; }
  bool reads_data(const onnx::NodeProto& n) const {
    for (const auto& in : n.input()) {
      if (is_data(in)) return true;
    }
    return false;
  }

  // A constant that holds one value (a scalar or a one-element tensor), or nullopt.
  std::optional<double> scalar(const std::string& name, const onnx::NodeProto& n, int index) const {
    if (!is_constant(name)) return std::nullopt;
    const torch::Tensor t = to_tensor(*find_constant(name), n, index);
    if (t.numel() != 1) return std::nullopt;
    return t.item<double>();
  }

  // Input k or the first output of a node, "" when it has none (fuzzed files may lack any).
  static const std::string& input_of(const onnx::NodeProto& n, int k) {
    static const std::string none;
    return k < n.input_size() ? n.input(k) : none;
  }
  static const std::string& output_of(const onnx::NodeProto& n) {
    static const std::string none;
    return n.output_size() > 0 ? n.output(0) : none;
  }

  // The one node that reads `value`, when exactly one does and it is of `type`.
  const onnx::NodeProto* sole_reader(const std::string& value, const std::string& type, int* index) const {
    if (value.empty()) return nullptr;
    auto it = consumers_.find(value);
    if (it == consumers_.end() || it->second.size() != 1) return nullptr;
    const onnx::NodeProto& n = model_.graph().node(it->second[0]);
    if (n.op_type() != type || output_of(n).empty()) return nullptr;
    *index = it->second[0];
    return &n;
  }

  // Over the last axis only, keeping it. (PyTorch writes LayerNormalization from opset 17 on, so
  // the decomposed form never carries opset 18's axes input.)
  static bool reduces_last_axis(const onnx::NodeProto& n) {
    return int_attribute(n, "keepdims", 1) == 1 && ints_attribute(n, "axes", {}) == std::vector<int64_t>{-1};
  }

  bool visit_transformer_node(const onnx::NodeProto& n, int index) {
    const std::string& type = n.op_type();
    if (type == "LayerNormalization") {
      if (int_attribute(n, "axis", -1) != -1) {
        fail(n, index, "normalises from axis " + std::to_string(int_attribute(n, "axis", -1)) +
                           "; a ViT's LayerNorm uses the last axis only (-1)");
      }
      OnnxOp op = make_op(OnnxOpKind::layer_norm, n, index);
      op.weight = constant(n, index, 1).flatten();
      op.bias = optional_constant(n, index, 2);
      op.bias = op.bias.defined() ? op.bias.flatten() : torch::zeros_like(op.weight);
      op.eps = float_attribute(n, "epsilon", 1e-5f);
      if (op.bias.numel() != op.weight.numel()) fail(n, index, "has a scale and a bias of different lengths");
      ops_.push_back(std::move(op));
      return true;
    }
    if (type == "ReduceMean") {
      visit_decomposed_layer_norm(n, index);
      return true;
    }
    if (!reads_data(n)) return kShapeArithmetic.count(type) || type == "Mul" || type == "Div" || type == "Pow" ||
                               type == "Sqrt" || type == "Sub";  // shape arithmetic (e.g. head_dim ** -0.5)
    if (type == "Clip") {
      visit_relu6(n, index);
      return true;
    }
    if (!kTransformerPassthrough.count(type)) return false;
    if (type == "Mul" || type == "Div") {
      // Scaling by a scalar (the attention's 1/sqrt(head_dim)), constant or computed from shapes.
      const int data = is_data(n.input(0)) ? 0 : 1;
      if (n.input_size() != 2 || is_data(n.input(1 - data)) || (type == "Div" && data != 0) ||
          (is_constant(n.input(1 - data)) && !scalar(n.input(1 - data), n, index))) {
        fail(n, index, "scales activations by something other than a scalar; arcforge's ViT has no such layer");
      }
      alias_outputs(n, n.input(data));
      return true;
    }
    // Transpose, Gather/Split/Slice of qkv, Cast, Softmax, and MatMul of two activations (q.k^T and
    // attention.v): the result stands for its first data input.
    for (const auto& in : n.input()) {
      if (is_data(in)) {
        alias_outputs(n, in);
        return true;
      }
    }
    return false;
  }

  void alias_outputs(const onnx::NodeProto& n, const std::string& input) {
    for (const auto& o : n.output()) {
      if (!o.empty()) alias_[o] = resolve(input);
    }
  }

  // The MLP's activation: arcface_torch's ViT uses ReLU6 (Clip to [0, 6]).
  void visit_relu6(const onnx::NodeProto& n, int index) {
    std::optional<double> lo, hi;
    if (n.input_size() > 1 || attribute(n, "min") == nullptr) {  // opset 11+: bounds as inputs
      if (n.input_size() > 1 && !n.input(1).empty()) lo = scalar(n.input(1), n, index);
      if (n.input_size() > 2 && !n.input(2).empty()) hi = scalar(n.input(2), n, index);
    } else {
      lo = float_attribute(n, "min", 0.0f);
      hi = float_attribute(n, "max", 0.0f);
    }
    if (lo != 0.0 || hi != 6.0) {
      fail(n, index, "is not a Clip to [0, 6]; arcforge's ViT MLP uses ReLU6");
    }
    alias_outputs(n, n.input(0));
  }

  // PyTorch below opset 17 writes LayerNorm(x) as
  //   d = x - ReduceMean(x); y = d / Sqrt(ReduceMean(Pow(d, 2)) + eps) * weight + bias
  // with both means over the last axis. Read from the first ReduceMean, the rest marked consumed.
  void visit_decomposed_layer_norm(const onnx::NodeProto& mean, int index) {
    const auto not_layer_norm = [&](const std::string& why) {
      fail(mean, index, "does not start a LayerNorm (" + why + "); arcforge's ViT has no other reduction");
    };
    if (!reduces_last_axis(mean)) not_layer_norm("it does not average over the last axis alone");
    if (input_of(mean, 0).empty() || output_of(mean).empty()) not_layer_norm("it lacks an input or output");
    const std::string x = input_of(mean, 0);
    // d = x - mean: read by Pow and Div only.
    auto readers = consumers_.find(output_of(mean));
    if (readers == consumers_.end() || readers->second.size() != 1) not_layer_norm("its mean has other readers");
    const int sub_index = readers->second[0];
    const onnx::NodeProto& sub = model_.graph().node(sub_index);
    if (sub.op_type() != "Sub" || sub.input_size() != 2 || input_of(sub, 0) != x || input_of(sub, 1) != output_of(mean)) {
      not_layer_norm("the mean is not subtracted from its input");
    }
    int pow_index = -1, div_index = -1;
    if (output_of(sub).empty()) not_layer_norm("the subtraction has no output");
    for (int r : consumers_[output_of(sub)]) {
      const std::string& t = model_.graph().node(r).op_type();
      if (t == "Pow" && pow_index < 0) pow_index = r;
      else if (t == "Div" && div_index < 0) div_index = r;
      else not_layer_norm("the centred input has a reader other than Pow and Div");
    }
    if (pow_index < 0 || div_index < 0) not_layer_norm("the centred input is not both squared and divided");
    const onnx::NodeProto& pow = model_.graph().node(pow_index);
    if (input_of(pow, 0) != output_of(sub) || scalar(input_of(pow, 1), pow, pow_index) != 2.0) {
      not_layer_norm("the square is not Pow(d, 2)");
    }
    int var_index = -1, add_index = -1, sqrt_index = -1, mul_index = -1, bias_index = -1;
    const onnx::NodeProto* var = sole_reader(output_of(pow), "ReduceMean", &var_index);
    if (!var || !reduces_last_axis(*var)) not_layer_norm("the variance is not a mean over the last axis");
    const onnx::NodeProto* add = sole_reader(output_of(*var), "Add", &add_index);
    if (!add || add->input_size() != 2) not_layer_norm("no epsilon is added to the variance");
    const int eps_input = input_of(*add, 0) == output_of(*var) ? 1 : 0;
    const std::optional<double> eps = scalar(input_of(*add, eps_input), *add, add_index);
    if (!eps) not_layer_norm("the epsilon is not a constant scalar");
    const onnx::NodeProto* sqrt = sole_reader(output_of(*add), "Sqrt", &sqrt_index);
    const onnx::NodeProto& div = model_.graph().node(div_index);
    if (!sqrt || input_of(div, 0) != output_of(sub) || input_of(div, 1) != output_of(*sqrt)) {
      not_layer_norm("the centred input is not divided by the standard deviation");
    }
    const onnx::NodeProto* mul = sole_reader(output_of(div), "Mul", &mul_index);
    const onnx::NodeProto* bias = mul ? sole_reader(output_of(*mul), "Add", &bias_index) : nullptr;
    if (!mul || !bias) not_layer_norm("it is not followed by a scale (Mul) and a bias (Add)");
    OnnxOp op = make_op(OnnxOpKind::layer_norm, mean, index);
    op.weight = constant(*mul, mul_index, input_of(*mul, 0) == output_of(div) ? 1 : 0).flatten();
    op.bias = constant(*bias, bias_index, input_of(*bias, 0) == output_of(*mul) ? 1 : 0).flatten();
    op.eps = *eps;
    op.output = output_of(*bias);
    if (op.bias.numel() != op.weight.numel()) {
      fail(*bias, bias_index, "adds a bias whose length differs from the LayerNorm's scale");
    }
    for (int i : {sub_index, pow_index, var_index, add_index, sqrt_index, div_index, mul_index, bias_index}) {
      consumed_.insert(i);
    }
    ops_.push_back(std::move(op));
  }

  const onnx::ModelProto& model_;
  std::string path_;
  std::map<std::string, const onnx::TensorProto*> constants_;
  std::map<std::string, std::string> alias_;  // passthrough output -> its input
  std::set<std::string> computed_;            // the data input and every layer's output
  std::vector<OnnxOp> ops_;
  std::string transformer_evidence_;             // see RecognizerGraph::transformer_evidence
  std::map<std::string, std::vector<int>> consumers_;  // value -> indices of the nodes reading it
  std::set<int> consumed_;                       // nodes read as part of a LayerNorm pattern
  std::map<std::string, const onnx::TensorProto*> constant_nodes_;  // every Constant node's value
};

}  // namespace

std::string to_string(OnnxOpKind kind) {
  switch (kind) {
    case OnnxOpKind::conv: return "Conv";
    case OnnxOpKind::batch_norm: return "BatchNormalization";
    case OnnxOpKind::prelu: return "PRelu";
    case OnnxOpKind::linear: return "Gemm/MatMul";
    case OnnxOpKind::add: return "Add";
    case OnnxOpKind::layer_norm: return "LayerNorm";
    case OnnxOpKind::add_constant: return "Add (constant)";
  }
  return "?";
}

std::string describe(const OnnxOp& op) {
  switch (op.kind) {
    case OnnxOpKind::conv:
      return "Conv, weight " + sizes_text(op.weight.sizes()) + ", strides " + sizes_text(op.strides) + ", pads " +
             sizes_text(op.pads) + ", group " + std::to_string(op.group);
    case OnnxOpKind::batch_norm: return "BatchNormalization, " + std::to_string(op.weight.numel()) + " channels";
    case OnnxOpKind::prelu: return "PRelu, " + std::to_string(op.weight.numel()) + " slopes";
    case OnnxOpKind::linear: return "linear, weight " + sizes_text(op.weight.sizes());
    case OnnxOpKind::add: return "Add";
    case OnnxOpKind::layer_norm: return "LayerNorm, " + std::to_string(op.weight.numel()) + " channels";
    case OnnxOpKind::add_constant: return "Add of a constant " + sizes_text(op.weight.sizes());
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
