// Operator name -> planner. Shape arithmetic (Shape, Gather, Cast, ...) is evaluated on the host
// while planning (host_eval.cpp); Gather and Cast also have planners for run-time data.
#include <unordered_map>

#include "optimize_attention.hpp"
#include "plan.hpp"

namespace arcforge::runtime::detail {

OpPlanner find_planner(const std::string& op) {
  static const std::unordered_map<std::string, OpPlanner> planners = {
      {"Conv", plan_conv},
      {"Gemm", plan_gemm},
      {"MatMul", plan_matmul},
      {"BatchNormalization", plan_batchnorm},
      {"MaxPool", plan_pool},
      {"AveragePool", plan_pool},
      {"GlobalAveragePool", plan_pool},
      {"GlobalMaxPool", plan_pool},
      {"Relu", plan_unary},
      {"LeakyRelu", plan_unary},
      {"Sigmoid", plan_unary},
      {"Tanh", plan_unary},
      {"Exp", plan_unary},
      {"Sqrt", plan_unary},
      {"Abs", plan_unary},
      {"Neg", plan_unary},
      {"HardSwish", plan_unary},
      {"Elu", plan_unary},
      {"Clip", plan_unary},
      {"PRelu", plan_prelu},
      {"Add", plan_binary},
      {"Sub", plan_binary},
      {"Mul", plan_binary},
      {"Div", plan_binary},
      {"Max", plan_binary},
      {"Min", plan_binary},
      {"Softmax", plan_softmax},
      {"LayerNormalization", plan_layernorm},
      {fused_attention_op, plan_fused_attention},  // the optimiser's, never a file's
      {"Concat", plan_concat},
      {"Transpose", plan_transpose},
      {"Slice", plan_slice},
      {"Split", plan_split},
      {"Pad", plan_pad},
      {"Reshape", plan_view},
      {"Flatten", plan_view},
      {"Squeeze", plan_view},
      {"Unsqueeze", plan_view},
      {"Identity", plan_view},
      {"Dropout", plan_view},
      {"Cast", plan_view},
      {"Gather", plan_gather},
      {"Pow", plan_pow},
      {"ReduceMean", plan_reduce_mean},
      {"Resize", plan_resize},
      {"Upsample", plan_resize},
      {"QuantizeLinear", plan_quantize},
      {"DequantizeLinear", plan_dequantize},
  };
  auto it = planners.find(op);
  return it == planners.end() ? nullptr : it->second;
}

}  // namespace arcforge::runtime::detail
