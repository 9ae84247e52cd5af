#pragma once
// Rewrites an fp32 ONNX model into QDQ form (the only quantization code that sees protobuf types).
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "arcforge/runtime/quantize.hpp"

namespace arcforge::runtime::detail {

class QdqWriter {
 public:
  // Parses the model and picks the nodes to quantize: those of `op_types` ("Conv": a float
  // initializer as 4-D weights; "Gemm": a float 2-D B, transA 0, alpha 1, beta 1 with a C), minus
  // `keep_fp32` ("first", "last", "depthwise", node names; unknown names are an error).
  QdqWriter(const std::string& path, const std::vector<std::string>& keep_fp32,
            const std::vector<std::string>& op_types, std::size_t max_bytes);
  ~QdqWriter();

  struct Target {
    std::string conv;        // node name ("Conv_<index>" for unnamed nodes, as the loader names them)
    std::string activation;  // its input value, to be calibrated
  };
  const std::vector<Target>& targets() const { return targets_; }
  const std::vector<std::string>& kept() const { return kept_; }
  // The activation values to calibrate, each once, in graph order.
  std::vector<std::string> activations() const;

  // Writes the QDQ model (opset raised to 13 where the operators allow it), after libonnx's checker
  // accepted it. `ranges` has one entry per activations() value.
  void write(const std::map<std::string, ActivationRange>& ranges, const std::string& out_path,
             QuantizeReport& report);

 private:
  struct State;
  std::unique_ptr<State> state_;
  std::string path_;
  std::vector<Target> targets_;
  std::vector<std::string> kept_;
};

}  // namespace arcforge::runtime::detail
