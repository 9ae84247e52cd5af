#pragma once
// The runtime's own graph IR: what the ONNX loader produces and the planner consumes. It owns no
// protobuf types, so only onnx_loader.cpp compiles against libonnx.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "arcforge/runtime/model.hpp"

namespace arcforge::runtime::detail {

enum class DType { f32, i64 };
// The element type an integer tensor had in the file: QuantizeLinear's output type (and its
// saturation range) follows its zero point's.
enum class IntKind { i64, i32, s8, u8 };

// A tensor that lives on the host at plan time: initializers, Constant outputs, folded shape
// arithmetic. Floats and integers are kept apart so shape math never rounds.
struct HostTensor {
  DType dtype = DType::f32;
  std::vector<int64_t> dims;
  std::vector<float> f;    // dtype == f32
  std::vector<int64_t> i;  // dtype == i64
  IntKind int_kind = IntKind::i64;

  int64_t numel() const;
  double at(int64_t k) const { return dtype == DType::f32 ? f[k] : static_cast<double>(i[k]); }
  static HostTensor from_i64(std::vector<int64_t> dims, std::vector<int64_t> values);
  static HostTensor from_f32(std::vector<int64_t> dims, std::vector<float> values);
};

struct Attribute {
  enum class Kind { i, f, s, ints, floats, tensor };
  Kind kind = Kind::i;
  int64_t i = 0;
  float f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  HostTensor t;
};

// An activation, scalar multiplication or residual add executed as a post-op of the preceding
// Conv, Gemm or MatMul.
struct PostOp {
  // bias: a constant per output column (or one value) added to a MatMul with constant weights,
  // which its inner product takes as its bias (PyTorch writes Linear as MatMul + Add); always first.
  enum class Kind { relu, leaky_relu, clip, sigmoid, tanh, hardswish, prelu, scale, sum, bias };
  Kind kind = Kind::relu;
  float alpha = 0, beta = 0;  // leaky slope; clip min/max; scale factor
  std::string operand;        // prelu: slope constant; sum: the addend value; bias: the constant
  std::string fused_node;     // name of the node this came from, for messages
};

// A convolution fused from DequantizeLinear(x_q) -> Conv <- DequantizeLinear(w_s8, per channel)
// [-> QuantizeLinear]: input 0 is then x_q itself, input 1 the int8 weights as integer-valued floats,
// input 2 the bias in float.
struct QuantConv {
  bool active = false;
  bool src_signed = false;  // x_q is s8 (else u8); zero point 0
  float src_scale = 1;
  std::vector<float> weight_scales;  // one per output channel
  bool dst_quantized = false;        // the output is QuantizeLinear's (s8/u8, zero point 0)
  bool dst_signed = false;
  float dst_scale = 1;
};

struct Node {
  std::string name;  // never empty: unnamed ONNX nodes get "<op>_<index>"
  std::string op;
  std::vector<std::string> inputs;  // "" marks an omitted optional input
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attrs;
  std::vector<PostOp> post_ops;
  QuantConv quant;
  // Precision::bf16: a Gemm whose output only feeds other Gemms writes it in bf16, the type they
  // read it in (the same rounding a conversion before them would do, one pass less).
  bool bf16_output = false;
  // A node the optimiser fused from several (FusedAttention): the nodes it replaced, in graph order,
  // which the planner runs as written when the shapes it meets do not fit the fused kernel.
  std::vector<Node> unfused;

  bool has(const std::string& key) const { return attrs.count(key) != 0; }
  int64_t attr_i(const std::string& key, int64_t fallback) const;
  float attr_f(const std::string& key, float fallback) const;
  std::string attr_s(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& key, std::vector<int64_t> fallback = {}) const;
  std::string input(std::size_t k) const { return k < inputs.size() ? inputs[k] : std::string(); }
  // "node 'Conv_12' (Conv)": the prefix of every message about this node.
  std::string describe() const { return "node '" + name + "' (" + op + ")"; }
  // Every value the node reads: its inputs, and its post-ops' operands.
  std::vector<std::string> values_read() const;
};

struct Graph {
  std::string path;  // for messages
  int64_t opset = 0;
  std::vector<Node> nodes;  // topological order
  std::map<std::string, HostTensor> constants;
  std::vector<TensorInfo> inputs;   // graph inputs that are not initializers
  std::vector<TensorInfo> outputs;
  std::map<std::string, int> op_histogram;  // ops as loaded, before any fusion

  bool is_constant(const std::string& value) const { return constants.count(value) != 0; }
  // "path: node 'X' (Op): what"
  std::string error(const Node& node, const std::string& what) const;
};

// Parses and validates an ONNX file; throws InputError naming the file (and the node) on failure.
Graph load_onnx(const std::string& path, std::size_t max_bytes);
// The same on a file's bytes already in memory; `path` names them in errors. (Fuzzed directly.)
Graph parse_onnx(const std::string& bytes, const std::string& path);

// Load-time rewrites: constant folding, BatchNorm into Conv/Gemm, activations and residual adds into
// Conv post-ops. Returns the number of nodes removed.
// With Precision::int8, QDQ-wrapped convolutions become int8 convolutions first (throws InputError
// when there are none); DequantizeLinear of constants is folded into float constants.
// Constants folded at load larger than max_tensor_bytes are rejected (Options::max_activation_bytes).
int optimize_graph(Graph& graph, Precision precision = Precision::fp32, std::size_t max_tensor_bytes = std::size_t{1} << 34);

// True when the runtime has a kernel for this ONNX operator (default domain).
bool is_supported_op(const std::string& op);

}  // namespace arcforge::runtime::detail
