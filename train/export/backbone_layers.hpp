#pragma once
// A backbone as a list of layers in forward order: the one description that both the ONNX exporter
// (which writes one node per layer) and the importer (which matches an ONNX file's nodes against
// these layers) walk. Built from the module tree by name (the names mirror arcface_torch), so it
// needs no access to the backbones' private members; describe() checks that every parameter and
// buffer of the backbone belongs to a listed layer, so a module added to a backbone but not here
// is an error rather than a silently wrong export.
#include <torch/torch.h>

#include <array>
#include <string>
#include <vector>

#include "train/nn/backbone.hpp"

namespace arcforge::onnx_io {

enum class LayerKind {
  conv,        // torch::nn::Conv2d
  batch_norm,  // torch::nn::BatchNorm2d on [N,C,H,W] or BatchNorm1d on [N,C]
  prelu,       // torch::nn::PReLU on [N,C,H,W]
  linear,      // torch::nn::Linear on [N,K]
  add,         // residual sum of two earlier layers' outputs
  flatten,     // [N,C,H,W] -> [N,C*H*W]
};

std::string to_string(LayerKind kind);

constexpr int kGraphInput = -1;  // an input index meaning "the image batch"

struct Layer {
  LayerKind kind;
  std::string name;         // module path ("layer1.0.conv1"); for add/flatten a unique label
  std::vector<int> inputs;  // indices of earlier layers (or kGraphInput) whose outputs it reads
  // Exactly one is set for a parameterised layer; none for add/flatten.
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn2d{nullptr};
  torch::nn::BatchNorm1d bn1d{nullptr};
  torch::nn::PReLU prelu{nullptr};
  torch::nn::Linear linear{nullptr};
};

// The parameters of a batch norm layer (2d or 1d) as tensor handles sharing the module's storage.
struct BatchNormTensors {
  torch::Tensor weight, bias, running_mean, running_var;  // weight/bias undefined when not affine
  double eps = 1e-5;
  int64_t channels = 0;
};
BatchNormTensors batch_norm_tensors(const Layer& layer);

// A conv layer's geometry. Throws ConfigError for what ONNX Conv cannot express (a padding mode
// other than zeros, "same"/"valid" string padding).
struct ConvGeometry {
  std::array<int64_t, 2> kernel, stride, padding, dilation;
  int64_t groups = 1;
};
ConvGeometry conv_geometry(const Layer& layer);

struct LayerGraph {
  std::string arch;
  std::vector<Layer> layers;  // forward order; the last layer's output is the embedding
  int64_t embedding_size = 0;

  // Indices of the layers that read layer i's output.
  std::vector<int> consumers(int i) const;
};

// Throws ConfigError for a backbone family it does not know, Error when the module tree does not
// have the expected shape.
LayerGraph describe_backbone(nn::Backbone& backbone);

}  // namespace arcforge::onnx_io
