// libFuzzer target for the training side's ONNX reader (train/export/onnx_graph_reader.cpp), which
// `arcforge import` runs on downloaded face recognizers before fine-tuning them: arbitrary bytes
// as a model file. Only arcforge::InputError may escape (a c10::Error from a tensor operation on
// a malformed weight is a bug too). A graph that reads must be one the importer can walk:
//   - ops in order: every op input is the graph input or the output of an earlier op;
//   - the resolved graph output is the graph input or an op's output;
//   - weights of the shape each op kind promises (conv 4-D with matching bias, linear 2-D,
//     batch norm's four vectors of one length, layer norm's scale and bias of one length), all
//     float32. The transformer seed (vit_torch_layout.onnx) takes it through the LayerNorm
//     pattern and the attention's looked-through nodes.
//
// libtorch 1.13's headers do not compile with clang in C++20 mode, hence -std=c++17 here; the
// reader and its proto helpers are compiled in (fuzz-sources), libtorch is Debian's.
// fuzz-sources: train/export/onnx_graph_reader.cpp train/export/onnx_proto_util.cpp
// fuzz-cxxflags: -std=c++17 -DONNX_ML=1 -DONNX_NAMESPACE=onnx -isystem /usr/include/torch/csrc/api/include
// fuzz-libs: -ltorch -ltorch_cpu -lc10 -lonnx -lonnx_proto -lprotobuf
// fuzz-needs-header: onnx/onnx_pb.h torch/torch.h
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "arcforge/common/error.hpp"
#include "train/export/onnx_graph_reader.hpp"

namespace {

namespace io = arcforge::onnx_io;

void check_weights(const io::OnnxOp& op) {
  auto is_float = [](const torch::Tensor& t) { return !t.defined() || t.scalar_type() == torch::kFloat; };
  if (!is_float(op.weight) || !is_float(op.bias) || !is_float(op.mean) || !is_float(op.var)) std::abort();
  switch (op.kind) {
    case io::OnnxOpKind::conv:
      if (op.weight.dim() != 4 || (op.bias.defined() && op.bias.numel() != op.weight.size(0))) std::abort();
      if (op.strides.size() != 2 || op.dilations.size() != 2 || op.pads.size() != 4) std::abort();
      break;
    case io::OnnxOpKind::linear:
      if (op.weight.dim() != 2 || (op.bias.defined() && op.bias.numel() != op.weight.size(0))) std::abort();
      break;
    case io::OnnxOpKind::batch_norm: {
      const int64_t c = op.weight.numel();
      if (op.bias.numel() != c || op.mean.numel() != c || op.var.numel() != c) std::abort();
      break;
    }
    case io::OnnxOpKind::prelu:
      if (!op.weight.defined() || op.weight.dim() != 1) std::abort();
      break;
    case io::OnnxOpKind::add:
      if (op.inputs.size() != 2) std::abort();
      break;
    case io::OnnxOpKind::layer_norm:
      if (op.weight.dim() != 1 || !op.bias.defined() || op.bias.numel() != op.weight.numel()) std::abort();
      break;
    case io::OnnxOpKind::add_constant:
      if (!op.weight.defined()) std::abort();
      break;
  }
}

void check_graph(const io::RecognizerGraph& g) {
  std::set<std::string> available = {g.input};
  for (const auto& op : g.ops) {
    if (op.inputs.empty()) std::abort();
    for (const auto& in : op.inputs) {
      if (!available.count(in)) std::abort();  // read before it is produced
    }
    check_weights(op);
    available.insert(op.output);
  }
  if (!available.count(g.output)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    check_graph(io::parse_recognizer_graph(bytes, "fuzz.onnx"));
  } catch (const arcforge::InputError&) {
  }
  return 0;
}
