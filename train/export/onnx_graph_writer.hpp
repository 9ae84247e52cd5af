#pragma once
// Appends initializers and nodes to an ONNX graph while counting what the export summary reports
// (operators, float parameters). Shared by the CNN layer-list writer and the ViT writer.
#include <onnx/onnx_pb.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "train/export/onnx_proto_util.hpp"
#include "train/export/onnx_writer.hpp"

namespace arcforge::onnx_io {

class GraphWriter {
 public:
  GraphWriter(onnx::GraphProto* graph, ExportSummary& summary) : graph_(graph), summary_(summary) {}

  // A float initializer; returns its name.
  std::string initializer(const std::string& name, const torch::Tensor& values, const std::vector<int64_t>& dims = {}) {
    *graph_->add_initializer() = float_tensor(name, values, dims);
    summary_.parameters += values.numel();
    return name;
  }

  // An int64 vector initializer (shapes, permutations); not counted as parameters.
  std::string int64_initializer(const std::string& name, const std::vector<int64_t>& values) {
    *graph_->add_initializer() = int64_tensor(name, values);
    return name;
  }

  // An int64 scalar (rank 0) initializer, e.g. a Gather index that drops the axis it selects on.
  std::string int64_scalar_initializer(const std::string& name, int64_t value) {
    onnx::TensorProto t = int64_tensor(name, {value});
    t.clear_dims();
    *graph_->add_initializer() = t;
    return name;
  }

  onnx::NodeProto& node(const std::string& op, const std::string& name, const std::vector<std::string>& inputs,
                        const std::string& output) {
    auto* n = graph_->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& in : inputs) n->add_input(in);
    n->add_output(output);
    ++summary_.op_counts[op];
    return *n;
  }

  // Renames the value `from` to `to` wherever a node produces or reads it (the graph's output gets
  // its public name once the last node is known).
  void rename_value(const std::string& from, const std::string& to) {
    for (auto& n : *graph_->mutable_node()) {
      for (auto& out : *n.mutable_output()) {
        if (out == from) out = to;
      }
      for (auto& input : *n.mutable_input()) {
        if (input == from) input = to;
      }
    }
  }

 private:
  onnx::GraphProto* graph_;
  ExportSummary& summary_;
};

}  // namespace arcforge::onnx_io
