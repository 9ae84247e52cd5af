// MobileFaceNet, following arcface_torch backbones/mobilefacenet.py (see mobilefacenet.hpp).
#include "train/nn/mobilefacenet.hpp"


#include "arcforge/common/error.hpp"
#include "train/nn/complexity_recorder.hpp"

namespace arcforge::nn {
namespace {

using detail::metered;

constexpr int64_t kFinalMapSize = 7;  // the GDC's depthwise 7x7 reduces a 7x7 map to 1x1
constexpr int64_t kHeadChannels = 512;

torch::nn::Conv2d conv(int64_t in, int64_t out, const mbf::ConvSpec& spec) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, spec.kernel)
                               .stride(spec.stride)
                               .padding(spec.padding)
                               .groups(spec.groups)
                               .bias(false));
}

}  // namespace

namespace mbf {

ConvBlockImpl::ConvBlockImpl(int64_t in, int64_t out, ConvSpec spec)
    : conv_(conv(in, out, spec)),
      bn_(torch::nn::BatchNorm2dOptions(out)),
      prelu_(torch::nn::PReLUOptions().num_parameters(out)) {
  register_module("layers", torch::nn::Sequential(conv_, bn_, prelu_));
}

torch::Tensor ConvBlockImpl::forward(torch::Tensor x) {
  return metered(bn_, prelu_, metered(conv_, x));
}

LinearBlockImpl::LinearBlockImpl(int64_t in, int64_t out, ConvSpec spec)
    : conv_(conv(in, out, spec)), bn_(torch::nn::BatchNorm2dOptions(out)) {
  register_module("layers", torch::nn::Sequential(conv_, bn_));
}

torch::Tensor LinearBlockImpl::forward(torch::Tensor x) { return metered(bn_, metered(conv_, x)); }

DepthWiseImpl::DepthWiseImpl(int64_t in, int64_t out, bool residual, int64_t stride,
                             int64_t hidden)
    : residual_(residual) {
  layers_ = register_module(
      "layers", torch::nn::Sequential(ConvBlock(in, hidden, ConvSpec{}),
                                      ConvBlock(hidden, hidden, ConvSpec{3, stride, 1, hidden}),
                                      LinearBlock(hidden, out, ConvSpec{})));
}

torch::Tensor DepthWiseImpl::forward(torch::Tensor x) {
  torch::Tensor y = layers_->forward(x);
  return residual_ ? x + y : y;
}

ResidualImpl::ResidualImpl(int64_t channels, int64_t blocks, int64_t hidden) {
  torch::nn::Sequential layers;
  for (int64_t b = 0; b < blocks; ++b) {
    layers->push_back(DepthWise(channels, channels, /*residual=*/true, /*stride=*/1, hidden));
  }
  layers_ = register_module("layers", layers);
}

torch::Tensor ResidualImpl::forward(torch::Tensor x) { return layers_->forward(x); }

GDCImpl::GDCImpl(int64_t embedding_size)
    : depthwise_(kHeadChannels, kHeadChannels, ConvSpec{kFinalMapSize, 1, 0, kHeadChannels}),
      linear_(torch::nn::LinearOptions(kHeadChannels, embedding_size).bias(false)),
      bn_(torch::nn::BatchNorm1dOptions(embedding_size)) {
  // Index 1 is arcface_torch's Flatten; keeping it keeps the Linear at "layers.2".
  register_module("layers", torch::nn::Sequential(depthwise_, torch::nn::Flatten(), linear_, bn_));
}

torch::Tensor GDCImpl::forward(torch::Tensor x) {
  x = depthwise_->forward(x).flatten(1);
  return metered(bn_, metered(linear_, x));
}

}  // namespace mbf

MobileFaceNet::MobileFaceNet(std::string arch, std::array<int64_t, 4> blocks, int64_t scale,
                             int64_t embedding_size)
    : arch_(std::move(arch)), embedding_size_(embedding_size) {
  using mbf::ConvBlock;
  using mbf::ConvSpec;
  using mbf::DepthWise;
  using mbf::Residual;
  const int64_t narrow = 64 * scale;
  const int64_t wide = 128 * scale;
  // The expansion widths (128, 256, 512, 256) do not scale with `scale`, as in arcface_torch.
  torch::nn::Sequential layers;
  layers->push_back(ConvBlock(3, narrow, ConvSpec{3, 2, 1, 1}));
  if (blocks[0] == 1) {
    layers->push_back(ConvBlock(narrow, narrow, ConvSpec{3, 1, 1, 64}));
  } else {
    layers->push_back(Residual(narrow, blocks[0], 128));
  }
  layers->push_back(DepthWise(narrow, narrow, /*residual=*/false, /*stride=*/2, 128));
  layers->push_back(Residual(narrow, blocks[1], 128));
  layers->push_back(DepthWise(narrow, wide, /*residual=*/false, /*stride=*/2, 256));
  layers->push_back(Residual(wide, blocks[2], 256));
  layers->push_back(DepthWise(wide, wide, /*residual=*/false, /*stride=*/2, 512));
  layers->push_back(Residual(wide, blocks[3], 256));
  layers_ = register_module("layers", layers);
  conv_sep_ = register_module("conv_sep", ConvBlock(wide, kHeadChannels, ConvSpec{}));
  features_ = register_module("features", mbf::GDC(embedding_size));
  initialize_weights();
}

void MobileFaceNet::initialize_weights() {
  torch::NoGradGuard no_grad;
  // arcface_torch: kaiming-normal (fan_out, relu) for conv and linear weights, BatchNorm2d weight 1
  // and bias 0; BatchNorm1d and PReLU (0.25) keep their defaults.
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* c = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* l = module->as<torch::nn::Linear>()) {
      torch::nn::init::kaiming_normal_(l->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
      torch::nn::init::constant_(bn->weight, 1.0);
      torch::nn::init::constant_(bn->bias, 0.0);
    }
  }
}

torch::Tensor MobileFaceNet::forward(torch::Tensor images) {
  if (images.dim() != 4 || images.size(1) != 3) {
    throw InputError(arch_ + ": expected images [N,3,H,W], got " + c10::str(images.sizes()));
  }
  torch::Tensor x = layers_->forward(images);
  x = conv_sep_->forward(x);
  if (x.size(2) != kFinalMapSize || x.size(3) != kFinalMapSize) {
    throw InputError(arch_ + ": input " + c10::str(images.sizes()) + " gives a " +
                     std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                     " final feature map; the GDC head needs 7x7 (a 112x112 input)");
  }
  return features_->forward(x);
}

}  // namespace arcforge::nn
