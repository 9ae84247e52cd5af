#pragma once
// A file's batch norm as the backbone's parameters, shared by the CNN importer (onnx_import.cpp)
// and the ViT importer (vit_onnx_import.cpp). Arithmetic in double; the caller writes the result.
#include <torch/torch.h>

#include "train/export/backbone_layers.hpp"
#include "train/export/onnx_graph_reader.hpp"

namespace arcforge::onnx_io {

struct BatchNormValues {
  torch::Tensor weight, bias, running_mean, running_var;
  bool eps_adjusted = false;  // the file's epsilon differed and the variance absorbed it
};

// y = scale (x - mean) / sqrt(var + eps) + bias from a BatchNormalization node, with the bias b of
// the conv/linear layer before it (undefined: none) moved into the mean (x + b - mean) and an
// epsilon other than `ours.eps` moved into the variance.
BatchNormValues batch_norm_from_file(const OnnxOp& op, const torch::Tensor& pending_bias, const BatchNormTensors& ours);

// A batch norm the exporter folded into the layer next to it, restored as an identity: weight 1,
// mean 0, variance 1 - eps, bias = the folded bias (undefined: zeros). (x - 0) / sqrt(1 - eps +
// eps) * 1 + bias = x + bias.
BatchNormValues identity_batch_norm(const torch::Tensor& bias, const BatchNormTensors& ours);

}  // namespace arcforge::onnx_io
