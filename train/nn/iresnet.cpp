// IResNet, following arcface_torch backbones/iresnet.py (see iresnet.hpp for the layout).
#include "train/nn/iresnet.hpp"


#include "arcforge/common/error.hpp"
#include "train/nn/complexity_recorder.hpp"

namespace arcforge::nn {
namespace {

using detail::metered;

constexpr double kBatchNormEps = 1e-5;
constexpr int64_t kFinalMapSize = 7;  // arcface_torch's fc_scale = 7 * 7 (112x112 input)
constexpr int64_t kFinalChannels = 512;

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

torch::nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

torch::nn::BatchNorm2d batch_norm(int64_t channels) {
  return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(kBatchNormEps));
}

torch::nn::PReLU prelu(int64_t channels) {
  return torch::nn::PReLU(torch::nn::PReLUOptions().num_parameters(channels));
}

}  // namespace

IBasicBlockImpl::IBasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride) {
  bn1_ = register_module("bn1", batch_norm(inplanes));
  conv1_ = register_module("conv1", conv3x3(inplanes, planes, 1));
  bn2_ = register_module("bn2", batch_norm(planes));
  prelu_ = register_module("prelu", prelu(planes));
  conv2_ = register_module("conv2", conv3x3(planes, planes, stride));
  bn3_ = register_module("bn3", batch_norm(planes));
  if (stride != 1 || inplanes != planes) {
    downsample_conv_ = conv1x1(inplanes, planes, stride);
    downsample_bn_ = batch_norm(planes);
    register_module("downsample", torch::nn::Sequential(downsample_conv_, downsample_bn_));
  }
}

torch::Tensor IBasicBlockImpl::forward(torch::Tensor x) {
  torch::Tensor out = metered(bn1_, x);
  out = metered(conv1_, out);
  out = metered(bn2_, prelu_, out);
  out = metered(conv2_, out);
  out = metered(bn3_, out);
  torch::Tensor identity =
      downsample_conv_ ? metered(downsample_bn_, metered(downsample_conv_, x)) : x;
  return out + identity;
}

IResNet::IResNet(std::string arch, std::vector<int64_t> blocks_per_layer, int64_t embedding_size,
                 double dropout)
    : arch_(std::move(arch)), embedding_size_(embedding_size) {
  if (blocks_per_layer.size() != 4) {
    throw ConfigError(arch_ + ": an IResNet needs 4 layers, got " +
                      std::to_string(blocks_per_layer.size()));
  }
  conv1_ = register_module(
      "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 64, 3).stride(1).padding(1).bias(false)));
  bn1_ = register_module("bn1", batch_norm(64));
  prelu_ = register_module("prelu", prelu(64));
  const int64_t widths[4] = {64, 128, 256, 512};
  int64_t inplanes = 64;
  for (size_t i = 0; i < 4; ++i) {
    layers_.push_back(register_module("layer" + std::to_string(i + 1),
                                      make_layer(inplanes, widths[i], blocks_per_layer[i])));
    inplanes = widths[i];
  }
  bn2_ = register_module("bn2", batch_norm(kFinalChannels));
  dropout_ = register_module("dropout", torch::nn::Dropout(torch::nn::DropoutOptions(dropout)));
  fc_ = register_module(
      "fc", torch::nn::Linear(kFinalChannels * kFinalMapSize * kFinalMapSize, embedding_size));
  features_ = register_module(
      "features", torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(embedding_size).eps(kBatchNormEps)));
  initialize_weights();
}

torch::nn::Sequential IResNet::make_layer(int64_t inplanes, int64_t planes, int64_t blocks) {
  torch::nn::Sequential layer;
  // Every layer halves the resolution in its first block (arcface_torch uses stride 2 for all four).
  layer->push_back(IBasicBlock(inplanes, planes, 2));
  for (int64_t b = 1; b < blocks; ++b) layer->push_back(IBasicBlock(planes, planes, 1));
  return layer;
}

void IResNet::initialize_weights() {
  torch::NoGradGuard no_grad;
  // arcface_torch: conv weights ~ N(0, 0.1), BatchNorm2d weight 1 and bias 0; fc keeps the default
  // (kaiming-uniform) init; the embedding BatchNorm1d has its weight fixed at 1 and not trained.
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::normal_(conv->weight, 0.0, 0.1);
    } else if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
      torch::nn::init::constant_(bn->weight, 1.0);
      torch::nn::init::constant_(bn->bias, 0.0);
    }
  }
  torch::nn::init::constant_(features_->weight, 1.0);
  features_->weight.set_requires_grad(false);
}

torch::Tensor IResNet::forward(torch::Tensor images) {
  if (images.dim() != 4 || images.size(1) != 3) {
    throw InputError(arch_ + ": expected images [N,3,H,W], got " + c10::str(images.sizes()));
  }
  torch::Tensor x = metered(conv1_, images);
  x = metered(bn1_, prelu_, x);
  for (auto& layer : layers_) x = layer->forward(x);
  x = metered(bn2_, x);
  if (x.size(2) != kFinalMapSize || x.size(3) != kFinalMapSize) {
    throw InputError(arch_ + ": input " + c10::str(images.sizes()) + " gives a " +
                     std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                     " final feature map; the fc layer needs 7x7 (a 112x112 input)");
  }
  x = torch::flatten(x, 1);
  x = dropout_->forward(x);
  x = metered(fc_, x);
  return metered(features_, x);
}

}  // namespace arcforge::nn
