#pragma once
// IResNet (improved residual network) as InsightFace's arcface_torch backbones/iresnet.py builds it.
// Submodule and parameter names mirror arcface_torch (conv1, bn1, prelu, layer1.0.conv1,
// layer1.0.downsample.0, ..., bn2, fc, features) so that its weights can be loaded by name.
//
//   [N,3,112,112] -conv3x3 64 + BN + PReLU-> [N,64,112,112]
//   layer1..4 (widths 64/128/256/512, each first block stride 2) -> [N,512,7,7]
//   bn2 -> flatten -> dropout -> fc (25088 -> E) -> features (BatchNorm1d, weight fixed at 1) -> [N,E]
#include <torch/torch.h>

#include <string>
#include <vector>

#include "train/nn/backbone.hpp"

namespace arcforge::nn {

// BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the identity or a downsample
// (conv1x1(stride) + BN) when the shape changes.
class IBasicBlockImpl : public torch::nn::Module {
 public:
  IBasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride);
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn2_{nullptr};
  torch::nn::PReLU prelu_{nullptr};
  torch::nn::Conv2d conv2_{nullptr};
  torch::nn::BatchNorm2d bn3_{nullptr};
  // Registered as the Sequential "downsample" (children "0" and "1"), as in arcface_torch.
  torch::nn::Conv2d downsample_conv_{nullptr};
  torch::nn::BatchNorm2d downsample_bn_{nullptr};
};
TORCH_MODULE(IBasicBlock);

class IResNet : public Backbone {
 public:
  // blocks_per_layer: IBasicBlocks in layer1..layer4, e.g. {3, 4, 14, 3} for r50.
  IResNet(std::string arch, std::vector<int64_t> blocks_per_layer, int64_t embedding_size,
          double dropout);

  torch::Tensor forward(torch::Tensor images) override;
  std::string arch() const override { return arch_; }
  int64_t embedding_size() const override { return embedding_size_; }

 private:
  torch::nn::Sequential make_layer(int64_t inplanes, int64_t planes, int64_t blocks);
  void initialize_weights();

  std::string arch_;
  int64_t embedding_size_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  torch::nn::PReLU prelu_{nullptr};
  std::vector<torch::nn::Sequential> layers_;  // layer1..layer4
  torch::nn::BatchNorm2d bn2_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear fc_{nullptr};
  torch::nn::BatchNorm1d features_{nullptr};
};

}  // namespace arcforge::nn
