#pragma once
// Loads a Vision Transformer recognizer read by onnx_graph_reader (our vit_* exports, and PyTorch
// exports of arcface_torch's ViT at opset 11 with LayerNorm spelled out, or 17) into a
// VisionTransformer. The file's weight-bearing ops are paired with the ViT's parameters in forward
// order:
//
//   Conv patch_embed.proj -> Add pos_embed -> per block: LayerNorm norm1 -> qkv (one [3D,D] linear,
//   or our exporter's q, k and v [D,D] each) -> attn.proj -> residual Add -> LayerNorm norm2 ->
//   mlp.fc1 -> mlp.fc2 -> residual Add; LayerNorm norm -> feature.0 -> feature.1 (BatchNorm, or
//   folded into feature.0) -> feature.2 -> feature.3
//
// checking shapes, biases, epsilons and which value each op reads. The attention between qkv and
// proj is looked through by the reader (head count and scale are not in the weights), so `arcforge
// import` checks the result against the file's outputs. mask_token is not in an inference file
// and keeps its initial value.
#include "train/export/onnx_import.hpp"
#include "train/nn/vit.hpp"

namespace arcforge::onnx_io {

// Throws InputError naming the file and the first op that does not fit (the ViT is then unchanged).
ImportSummary load_vit(const RecognizerGraph& graph, nn::VisionTransformer& vit);

}  // namespace arcforge::onnx_io
