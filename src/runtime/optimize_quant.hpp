#pragma once
// Load-time rewrites of QDQ models (QuantizeLinear/DequantizeLinear), used by optimize_graph.
#include "graph.hpp"

namespace arcforge::runtime::detail {

// DequantizeLinear(x_q) -> Conv <- DequantizeLinear(w_s8 per channel) [<- DequantizeLinear(b_s32)]
// becomes one Conv with `quant` set (zero points must be 0); the same for a Gemm (transA 0,
// alpha 1, beta 1), whose weights become [N, K] (transB 1). Returns the number of fused nodes.
int fuse_quantized_nodes(Graph& g);
// A QuantizeLinear that is the single consumer of a fused int8 Conv (after post-op fusion, without
// a residual sum), of a BatchNormalization, or of a float Conv whose last post-op is a PReLU
// becomes the node's int8 output.
int absorb_output_quantize(Graph& g);
// DequantizeLinear of a constant becomes a float constant.
int fold_dequantize(Graph& g);
// Drops nodes none of whose outputs is read (by a node, a post-op or the graph outputs).
int remove_dead_nodes(Graph& g);

// The quantization parameters of a Q/DQ node: per-tensor scale and zero point, or per-axis.
struct QuantParams {
  std::vector<float> scale;
  std::vector<int64_t> zero_point;  // same size as scale
  IntKind kind = IntKind::u8;       // of the quantized side (from the zero point; u8 when absent)
  int64_t axis = 1;
  bool per_tensor() const { return scale.size() == 1; }
  bool symmetric() const;  // all zero points are 0
};
// Throws InputError (naming the node) when the scale or zero point is not a constant.
QuantParams quant_params(const Graph& g, const Node& n);

}  // namespace arcforge::runtime::detail
