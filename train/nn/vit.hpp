#pragma once
// The Vision Transformer of InsightFace's arcface_torch (backbones/vit.py), as its get_model builds
// vit_t / vit_s / vit_b (and the WebFace42M variants): 9x9 patches of the 112x112 face (12x12 = 144
// tokens, the last 4 pixel rows and columns unused), learned position embeddings, pre-norm blocks
// (LayerNorm -> 8-head attention without qkv bias, computed in fp32 -> residual; LayerNorm -> MLP
// with ReLU6, ratio 4 -> residual) with stochastic depth rising linearly to drop_path, a final
// LayerNorm, and the feature head over all tokens:
//   [N,3,112,112] -patch conv-> [N,144,D] -blocks-> [N,144,D] -flatten-> [N,144D]
//   -Linear(no bias)-> [N,D] -BatchNorm1d-> -Linear(no bias)-> [N,E] -BatchNorm1d-> [N,E]
// In training, mask_ratio of each image's tokens (a fresh random subset per image) skip the blocks
// and come back after the final norm as the learned mask token (arcface_torch's random masking).
// Submodule names mirror arcface_torch (patch_embed.proj, blocks.i.attn.qkv, feature.0, ...).
#include <torch/torch.h>

#include <string>

#include "train/nn/backbone.hpp"

namespace arcforge::nn {

struct VitOptions {
  int64_t embed_dim = 256;
  int64_t depth = 12;
  int64_t num_heads = 8;
  double drop_path = 0.1;   // stochastic depth of the last block (0 for the first)
  double mask_ratio = 0.1;  // share of tokens masked in training
  double drop_rate = 0.0;   // dropout after the position embedding, in the MLP and after attention
};

namespace vit {

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads, double drop_rate);
  torch::Tensor forward(const torch::Tensor& x);  // [N,T,D] -> [N,T,D]

 private:
  int64_t heads_;
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr};
  torch::nn::Dropout proj_drop_{nullptr};
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(int64_t dim, int64_t hidden, double drop_rate);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
  torch::nn::Dropout drop_{nullptr};
};
TORCH_MODULE(Mlp);

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(int64_t dim, int64_t heads, double drop_path, double drop_rate);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  // Per image, the residual branch is dropped with probability drop_path and kept ones are scaled
  // by 1 / (1 - drop_path) (timm's DropPath); identity in eval mode.
  torch::Tensor drop_path(const torch::Tensor& branch) const;
  double drop_path_;
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  Attention attn_{nullptr};
  Mlp mlp_{nullptr};
};
TORCH_MODULE(Block);

// patch_embed.proj: a kPatchSize-strided kPatchSize x kPatchSize convolution to embed_dim channels.
class PatchEmbedImpl : public torch::nn::Module {
 public:
  PatchEmbedImpl(int64_t patch, int64_t dim);
  torch::Tensor forward(const torch::Tensor& images);  // [N,3,H,W] -> [N,T,D]

 private:
  torch::nn::Conv2d proj_{nullptr};
};
TORCH_MODULE(PatchEmbed);

}  // namespace vit

class VisionTransformer : public Backbone {
 public:
  VisionTransformer(std::string arch, VitOptions options, int64_t embedding_size);
  torch::Tensor forward(torch::Tensor images) override;  // [N,3,112,112] -> [N,E]
  // The tokens the feature head reads: [N,kTokens,D] after the final norm, masked positions (in
  // training) holding the mask token (arcface_torch's forward_features, before its reshape).
  torch::Tensor forward_tokens(const torch::Tensor& images);
  const torch::Tensor& mask_token() const { return mask_token_; }
  const VitOptions& options() const { return options_; }
  std::string arch() const override { return arch_; }
  int64_t embedding_size() const override { return embedding_size_; }

  static constexpr int64_t kImageSize = 112, kPatchSize = 9, kTokens = (kImageSize / kPatchSize) * (kImageSize / kPatchSize);

 private:
  std::string arch_;
  VitOptions options_;
  int64_t embedding_size_;
  vit::PatchEmbed patch_embed_{nullptr};
  torch::Tensor pos_embed_, mask_token_;
  torch::nn::Dropout pos_drop_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear feature_fc1_{nullptr}, feature_fc2_{nullptr};
  torch::nn::BatchNorm1d feature_bn1_{nullptr}, feature_bn2_{nullptr};
};

}  // namespace arcforge::nn
