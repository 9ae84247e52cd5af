#pragma once
// MobileFaceNet as InsightFace's arcface_torch backbones/mobilefacenet.py builds it (get_mbf:
// blocks (1,4,6,2), scale 2; get_mbf_large: blocks (2,8,12,4), scale 4). Submodule names mirror
// arcface_torch (layers.0.layers.0 = stem conv, conv_sep, features.layers.2 = embedding Linear).
//
//   [N,3,112,112] -ConvBlock 3x3 s2-> [N,64s,56,56] -> stage 1 -> DepthWise s2 -> [N,64s,28,28]
//   -> Residual -> DepthWise s2 -> [N,128s,14,14] -> Residual -> DepthWise s2 -> [N,128s,7,7]
//   -> Residual -> conv_sep (1x1 -> 512) -> GDC (depthwise 7x7, Linear, BatchNorm1d) -> [N,E]
#include <torch/torch.h>

#include <array>
#include <string>

#include "train/nn/backbone.hpp"

namespace arcforge::nn {

// Building blocks, in their own namespace: their names are generic.
namespace mbf {

struct ConvSpec {
  int64_t kernel = 1;
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t groups = 1;
};

// conv (no bias) + BN + PReLU; registered as the Sequential "layers" like arcface_torch.
class ConvBlockImpl : public torch::nn::Module {
 public:
  ConvBlockImpl(int64_t in, int64_t out, ConvSpec spec);
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
  torch::nn::PReLU prelu_{nullptr};
};
TORCH_MODULE(ConvBlock);

// conv (no bias) + BN, no activation.
class LinearBlockImpl : public torch::nn::Module {
 public:
  LinearBlockImpl(int64_t in, int64_t out, ConvSpec spec);
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
};
TORCH_MODULE(LinearBlock);

// Inverted bottleneck: 1x1 expand to `hidden` -> depthwise 3x3 (stride) -> 1x1 linear projection,
// plus the input when `residual`.
class DepthWiseImpl : public torch::nn::Module {
 public:
  DepthWiseImpl(int64_t in, int64_t out, bool residual, int64_t stride, int64_t hidden);
  torch::Tensor forward(torch::Tensor x);

 private:
  bool residual_;
  torch::nn::Sequential layers_{nullptr};
};
TORCH_MODULE(DepthWise);

// `blocks` residual DepthWise blocks at constant width `channels`.
class ResidualImpl : public torch::nn::Module {
 public:
  ResidualImpl(int64_t channels, int64_t blocks, int64_t hidden);
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::Sequential layers_{nullptr};
};
TORCH_MODULE(Residual);

// Global depthwise convolution head: depthwise 7x7 LinearBlock -> flatten -> Linear (no bias) ->
// BatchNorm1d.
class GDCImpl : public torch::nn::Module {
 public:
  explicit GDCImpl(int64_t embedding_size);
  torch::Tensor forward(torch::Tensor x);

 private:
  LinearBlock depthwise_{nullptr};
  torch::nn::Linear linear_{nullptr};
  torch::nn::BatchNorm1d bn_{nullptr};
};
TORCH_MODULE(GDC);

}  // namespace mbf

class MobileFaceNet : public Backbone {
 public:
  // blocks: residual blocks per stage, (1,4,6,2) for mbf; scale: width multiplier, 2 for mbf.
  MobileFaceNet(std::string arch, std::array<int64_t, 4> blocks, int64_t scale,
                int64_t embedding_size);

  torch::Tensor forward(torch::Tensor images) override;
  std::string arch() const override { return arch_; }
  int64_t embedding_size() const override { return embedding_size_; }

 private:
  void initialize_weights();

  std::string arch_;
  int64_t embedding_size_;
  torch::nn::Sequential layers_{nullptr};
  mbf::ConvBlock conv_sep_{nullptr};
  mbf::GDC features_{nullptr};
};

}  // namespace arcforge::nn
