#pragma once
// Reads an ONNX face recognizer into the few operators a backbone is made of, in topological order,
// with their weights as torch tensors. Reshaping nodes (Flatten, Reshape, Dropout, Identity, ...)
// are looked through: every data input is "resolved" to the value produced by the last
// weight-bearing node or Add before it, so the importer can check the wiring layer by layer.
// Any other operator (Sub, Mul, Relu, pooling, ...) is an InputError naming the node: importing it
// into a backbone that has no such layer would silently change the outputs.
//
// A file with LayerNorm (LayerNormalization, or the ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/
// Mul/Add chain PyTorch writes below opset 17) is read as a Vision Transformer: the LayerNorms and
// the position-embedding Add become ops of their own, and the attention's data movement (Transpose,
// Gather and Split of qkv, Cast, MatMul of two activations, scaling by a scalar, Softmax) and ReLU6
// (Clip to [0, 6]) are looked through like Reshape. The attention's wiring is therefore not checked
// node by node; `arcforge import` compares the imported backbone with the file's outputs instead.
#include <torch/torch.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace arcforge::onnx_io {

enum class OnnxOpKind {
  conv,
  batch_norm,
  prelu,
  linear,
  add,
  layer_norm,    // transformers: over the last axis; weight = scale, bias, eps
  add_constant,  // transformers: a learned tensor added to the data (the position embedding), in `weight`
};

struct OnnxOp {
  OnnxOpKind kind;
  std::string label;                // "'layer1.0.conv1' (Conv)" or "#12 (Conv, output '345')"
  std::vector<std::string> inputs;  // resolved data inputs (two for add, one otherwise)
  std::string output;               // the value it produces
  // conv: weight [O, I/group, kh, kw], bias [O] or undefined; linear: weight [out, in] (Gemm's
  // transB and alpha/beta and MatMul's layout already applied), bias [out] or undefined;
  // prelu: weight = slopes, flattened.
  torch::Tensor weight, bias;
  std::vector<int64_t> strides, pads, dilations;  // conv; pads as [begin_h, begin_w, end_h, end_w]
  int64_t group = 1;
  // batch_norm: y = scale * (x - mean) / sqrt(var + eps) + bias (bias in `bias`, scale in `weight`);
  // layer_norm: the same with the mean and variance of each row, and `eps`
  torch::Tensor mean, var;
  double eps = 1e-5;
};

struct RecognizerGraph {
  std::string path;
  std::string producer;           // producer_name producer_version, for reports
  std::vector<OnnxOp> ops;        // topological order (file order among ready nodes)
  std::string input;              // the one graph input that is not an initializer
  std::string output;             // the first graph output, resolved
  // Non-empty when the file was read as a Vision Transformer: the first LayerNorm node's label.
  std::string transformer_evidence;
};

// Throws InputError naming the file: not protobuf, no graph, a cycle, a node input nothing
// produces, a weight that is not a constant, bad tensor data, an operator that has no counterpart.
RecognizerGraph read_recognizer_graph(const std::string& path, std::size_t max_bytes = std::size_t{2} << 30);

// The same from a serialised model in memory; `path` only names it in errors (fuzz_onnx_import).
RecognizerGraph parse_recognizer_graph(const std::string& bytes, const std::string& path);

std::string to_string(OnnxOpKind kind);

// "[2,3,4]", for messages.
template <typename Sizes>
std::string sizes_text(const Sizes& sizes) {
  std::ostringstream out;
  out << '[';
  bool first = true;
  for (auto d : sizes) {
    out << (first ? "" : ",") << d;
    first = false;
  }
  out << ']';
  return out.str();
}

// An op's kind and shapes, for messages: "Conv, weight [64,3,3,3], strides [1,1], ...".
std::string describe(const OnnxOp& op);

}  // namespace arcforge::onnx_io
