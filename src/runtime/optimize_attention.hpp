#pragma once
// The load-time fusion of a Vision Transformer's multi-head attention (optimize_attention.cpp),
// used by optimize_graph.
#include "graph.hpp"

namespace arcforge::runtime::detail {

// The runtime's own operator the fusion writes (never read from a file: the loader accepts ONNX
// operators only). Inputs: packed layout {qkv [B,T,E,heads,hd], scale, factors...}, separate
// layout {q, k, v [B,T,heads,hd], scale, factors...}: the scores are multiplied by the scale ("":
// 1) and by every factor (scalars q and k^T were multiplied by). Output [B,T,heads,hd].
// Attributes: layout ("packed" or "separate"), divide (1: the scores are divided by the scale),
// indices (packed: the positions of q, k and v along E, as the file's Gathers or Split had them),
// split_outputs (packed: 3 when a Split cut qkv, whose pieces are of one only where E is 3).
inline constexpr const char* fused_attention_op = "FusedAttention";

// Rewrites each softmax(q k^T * scale) v with its heads split and merged by Transposes (and, in
// PyTorch's packed layout, Gathers from one qkv tensor) into one FusedAttention node. Returns the
// number of nodes removed.
int fuse_attention(Graph& g);

}  // namespace arcforge::runtime::detail
