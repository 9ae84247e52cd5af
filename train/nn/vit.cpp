#include "train/nn/vit.hpp"

#include "train/nn/cpu_attention.hpp"
#include "train/nn/relu6.hpp"

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <cmath>

#include "arcforge/common/error.hpp"
#include "train/nn/complexity_recorder.hpp"

namespace arcforge::nn {
namespace vit {

using detail::MacRecorder;
using detail::metered;

namespace {

// arcface_torch's init for Linear weights: timm's trunc_normal_(std=.02), whose +-2 bounds are
// 100 standard deviations out, so a plain normal draw.
void init_linear(torch::nn::Linear& linear) {
  torch::NoGradGuard no_grad;
  linear->weight.normal_(0.0, 0.02);
  if (linear->bias.defined()) linear->bias.zero_();
}

// fp16/bf16 raised to fp32 (arcface_torch's attention and final norm run in fp32 under AMP);
// fp32 and double stay as they are, so a double-precision reference computes in double throughout.
torch::Tensor at_least_fp32(const torch::Tensor& t) {
  return t.scalar_type() == torch::kHalf || t.scalar_type() == torch::kBFloat16 ? t.to(torch::kFloat) : t;
}

torch::nn::Linear linear(int64_t in, int64_t out, bool bias) {
  torch::nn::Linear l(torch::nn::LinearOptions(in, out).bias(bias));
  init_linear(l);
  return l;
}

}  // namespace

AttentionImpl::AttentionImpl(int64_t dim, int64_t heads, double drop_rate) : heads_(heads) {
  qkv_ = register_module("qkv", linear(dim, 3 * dim, /*bias=*/false));
  proj_ = register_module("proj", linear(dim, dim, /*bias=*/true));
  proj_drop_ = register_module("proj_drop", torch::nn::Dropout(drop_rate));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  const int64_t t = x.size(1), head_dim = x.size(2) / heads_;
  const torch::Tensor qkv = metered(qkv_, x);  // [N, T, 3, heads, head_dim]
  torch::Tensor out;
  {
    // The scores and their softmax in fp32 whatever the autocast, as arcface_torch does.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    out = attention_from_qkv(qkv, heads_);
  }
  // q.k and attention.v: heads * T * T * head_dim each (arcface_torch's "extra_gflops").
  MacRecorder::add(2 * heads_ * t * t * head_dim);
  return proj_drop_->forward(metered(proj_, out));
}

MlpImpl::MlpImpl(int64_t dim, int64_t hidden, double drop_rate) {
  fc1_ = register_module("fc1", linear(dim, hidden, /*bias=*/true));
  fc2_ = register_module("fc2", linear(hidden, dim, /*bias=*/true));
  drop_ = register_module("drop", torch::nn::Dropout(drop_rate));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = metered(fc1_, x);
  if (MacRecorder::active()) MacRecorder::add(h.numel() / h.size(0));  // ReLU6, as ptflops counts it
  h = drop_->forward(nn::relu6(h));
  return drop_->forward(metered(fc2_, h));
}

BlockImpl::BlockImpl(int64_t dim, int64_t heads, double drop_path, double drop_rate) : drop_path_(drop_path) {
  norm1_ = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  attn_ = register_module("attn", Attention(dim, heads, drop_rate));
  norm2_ = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  mlp_ = register_module("mlp", Mlp(dim, 4 * dim, drop_rate));
}

torch::Tensor BlockImpl::drop_path(const torch::Tensor& branch) const {
  if (!is_training() || drop_path_ <= 0) return branch;
  const double keep = 1.0 - drop_path_;
  const torch::Tensor kept = torch::empty({branch.size(0), 1, 1}, branch.options()).bernoulli_(keep);
  return branch * kept.div_(keep);
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = x + drop_path(attn_->forward(metered(norm1_, x)));
  return y + drop_path(mlp_->forward(metered(norm2_, y)));
}

PatchEmbedImpl::PatchEmbedImpl(int64_t patch, int64_t dim) {
  proj_ = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, dim, patch).stride(patch)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& images) {
  return metered(proj_, images).flatten(2).transpose(1, 2);
}

}  // namespace vit

VisionTransformer::VisionTransformer(std::string arch, VitOptions options, int64_t embedding_size)
    : arch_(std::move(arch)), options_(options), embedding_size_(embedding_size) {
  const int64_t d = options_.embed_dim;
  if (d <= 0 || options_.num_heads <= 0 || d % options_.num_heads != 0)
    throw ConfigError(arch_ + ": embed_dim " + std::to_string(d) + " must be a positive multiple of the " +
                      std::to_string(options_.num_heads) + " heads");
  if (!(options_.mask_ratio >= 0 && options_.mask_ratio < 1) || !(options_.drop_path >= 0 && options_.drop_path < 1))
    throw ConfigError(arch_ + ": mask_ratio and drop_path must be in [0, 1)");
  torch::NoGradGuard no_grad;
  patch_embed_ = register_module("patch_embed", vit::PatchEmbed(kPatchSize, d));
  pos_embed_ = register_parameter("pos_embed", torch::empty({1, kTokens, d}).normal_(0.0, 0.02));
  pos_drop_ = register_module("pos_drop", torch::nn::Dropout(options_.drop_rate));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options_.depth; ++i) {
    // Stochastic depth rises linearly from 0 at the first block to drop_path at the last.
    const double rate = options_.depth > 1 ? options_.drop_path * static_cast<double>(i) / static_cast<double>(options_.depth - 1) : 0.0;
    blocks_->push_back(vit::Block(d, options_.num_heads, rate, options_.drop_rate));
  }
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  feature_fc1_ = vit::linear(kTokens * d, d, /*bias=*/false);
  feature_bn1_ = torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(d).eps(2e-5));
  feature_fc2_ = vit::linear(d, embedding_size_, /*bias=*/false);
  feature_bn2_ = torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(embedding_size_).eps(2e-5));
  register_module("feature", torch::nn::Sequential(feature_fc1_, feature_bn1_, feature_fc2_, feature_bn2_));
  mask_token_ = register_parameter("mask_token", torch::empty({1, 1, d}).normal_(0.0, 0.02));
}

torch::Tensor VisionTransformer::forward(torch::Tensor images) {
  const torch::Tensor tokens = forward_tokens(images);  // checks the input's shape
  torch::Tensor x = tokens.reshape({tokens.size(0), kTokens * options_.embed_dim});
  x = detail::metered(feature_bn1_, detail::metered(feature_fc1_, x));
  return detail::metered(feature_bn2_, detail::metered(feature_fc2_, x));
}

torch::Tensor VisionTransformer::forward_tokens(const torch::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != 3 || images.size(2) != kImageSize || images.size(3) != kImageSize)
    throw InputError(arch_ + ": expects [N,3,112,112] images, got " + c10::str(images.sizes()));
  const int64_t n = images.size(0), d = options_.embed_dim;
  torch::Tensor x = pos_drop_->forward(patch_embed_->forward(images) + pos_embed_);  // [N,T,D]
  const bool masking = is_training() && options_.mask_ratio > 0;
  torch::Tensor restore;  // [N,T]: where each token went in the shuffled order
  if (masking) {
    // Per image, the tokens with the smallest of a uniform draw are kept.
    const int64_t keep = static_cast<int64_t>(static_cast<double>(kTokens) * (1.0 - options_.mask_ratio));
    const torch::Tensor shuffle = torch::rand({n, kTokens}, x.options().dtype(torch::kFloat)).argsort(/*dim=*/1, /*descending=*/false);
    restore = shuffle.argsort(/*dim=*/1, /*descending=*/false);
    x = x.gather(1, shuffle.narrow(1, 0, keep).unsqueeze(-1).expand({n, keep, d}));
  }
  for (const auto& block : *blocks_) x = block->as<vit::Block>()->forward(x);
  x = detail::metered(norm_, vit::at_least_fp32(x));
  if (masking) {
    x = torch::cat({x, mask_token_.to(x.scalar_type()).expand({n, kTokens - x.size(1), d})}, 1);
    x = x.gather(1, restore.unsqueeze(-1).expand({n, kTokens, d}));
  }
  return x;
}

}  // namespace arcforge::nn
