#pragma once
// A Vision Transformer (train/nn/vit.hpp) as ONNX nodes, in eval mode (no token masking, no
// stochastic depth, no dropout). Tokens travel as a [N*T, D] matrix so that every linear layer is
// one Gemm with its PyTorch weight as is (transB = 1), and only attention reshapes to 4-D:
//
//   Conv 9x9/9 -> Reshape [N,D,T] -> Transpose [N,T,D] -> Add pos_embed -> Reshape [N*T,D]
//   per block:  LayerNormalization -> Gemm qkv -> Reshape [N,T,3,H,d] -> Transpose [3,N,H,T,d] ->
//               Gather q, k, v (k then Transposed to [N,H,d,T]) -> MatMul -> Mul 1/sqrt(d) ->
//               Softmax -> MatMul -> Transpose/Reshape [N*T,D] -> Gemm proj -> Add;
//               LayerNormalization -> Gemm fc1 -> Clip(0, 6) -> Gemm fc2 -> Add
//   LayerNormalization -> Reshape [N, T*D] -> Gemm feature.0 -> BatchNormalization feature.1 ->
//   Gemm feature.2 -> BatchNormalization feature.3
//
// With fold_batch_norm the two batch norms are folded into the Gemm before each (in double).
// Initializers keep the PyTorch names. separate_qkv writes the layout of arcforge before 2026-12:
// three Gemms q, k, v ("blocks.i.attn.qkv.weight.q" etc.), each Reshaped and Transposed to heads.
#include <string>

#include "train/export/onnx_graph_writer.hpp"
#include "train/nn/vit.hpp"

namespace arcforge::onnx_io {

// Writes the graph from `input` ([N,3,112,112]) to `output` ([N,E]); returns the number of folded
// batch norms. Throws Error when a parameter of the module is not covered by the graph, so that a
// module added to the ViT without an export rule is caught.
int write_vit_graph(nn::VisionTransformer& vit, bool fold_batch_norm, bool separate_qkv, const std::string& input,
                    const std::string& output, GraphWriter& w);

}  // namespace arcforge::onnx_io
