#pragma once
// The normalised linear head and every margin of the ArcFace family, in one place.
//
//   cos_j   = <e/|e|, w_j/|w_j|>                     (fp32 always, clamped into [-1, 1])
//   logit_j = s * cos_j                               for j != y
//   logit_y = s * target(cos_y)                       where target() is the margin:
//     arcface   cos(theta + m2)                       (s=64, m2=0.5)
//     cosface   cos(theta) - m3                       (m3=0.4)
//     combined  cos(m1 * theta + m2) - m3             (SphereFace's m1 included)
//     dynamic   angular:  cos(theta + m_i)   additive: cos(theta) - m_i
//               m_i = m_min + (m_max - m_min) * (1 - |cos theta_y|)   (the seed article)
//     adaface   norm-adaptive angular + additive margin (Kim et al. 2022)
//     softmax   no margin (plain normalised softmax)
#include <torch/torch.h>

#include <string>
#include <vector>

namespace arcforge::nn {

enum class MarginType { softmax, arcface, cosface, combined, dynamic, adaface };
enum class DynamicMarginMode { angular, additive };

struct MarginOptions {
  MarginType type = MarginType::arcface;
  double scale = 64.0;  // s
  double m1 = 1.0;      // multiplicative angular (combined)
  double m2 = 0.5;      // additive angular (arcface, combined)
  double m3 = 0.0;      // additive cosine (cosface, combined)
  double m_min = 0.1;   // dynamic
  double m_max = 0.5;   // dynamic
  DynamicMarginMode dynamic_mode = DynamicMarginMode::angular;
  double adaface_m = 0.4;
  double adaface_h = 0.333;
  double adaface_t_alpha = 0.01;
};

// Presets by name: softmax, arcface, cosface, combined, dynamic (angular), dynamic_additive, adaface.
MarginOptions margin_preset(const std::string& name);
std::vector<std::string> margin_names();
std::string margin_name(const MarginOptions& options);

// Class centres W [num_classes, embedding_size]; forward(e [N,D]) -> cosines [N,C] in fp32.
class NormalizedLinearImpl : public torch::nn::Module {
 public:
  NormalizedLinearImpl(int64_t embedding_size, int64_t num_classes);
  torch::Tensor forward(const torch::Tensor& embeddings);
  torch::Tensor weight;
};
TORCH_MODULE(NormalizedLinear);

// The head's arithmetic on any rows of class centres (Partial FC passes a sampled subset):
// cosines [N, C] fp32 of embeddings [N, D] against weight [C, D], clamped into [-1, 1].
torch::Tensor normalized_cosines(const torch::Tensor& embeddings, const torch::Tensor& weight);

// Applies the margin to the target column and the scale to all: cosines [N,C] fp32, labels [N]
// int64 (label -1 = no target in this shard), feature_norms [N] (AdaFace only; may be undefined).
// Returns logits [N,C] fp32. Holds AdaFace's running batch statistics as buffers.
class MarginImpl : public torch::nn::Module {
 public:
  explicit MarginImpl(MarginOptions options = {});
  torch::Tensor forward(const torch::Tensor& cosines, const torch::Tensor& labels,
                        const torch::Tensor& feature_norms = {});
  const MarginOptions& options() const { return options_; }

 private:
  MarginOptions options_;
  torch::Tensor adaface_batch_mean_;
  torch::Tensor adaface_batch_std_;
};
TORCH_MODULE(Margin);

// Mean cross-entropy with optional label smoothing eps (target (1-eps) on y, eps/K spread over all
// K classes, as the seed article writes it). Computed in fp32.
torch::Tensor margin_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                   double label_smoothing = 0.0);

}  // namespace arcforge::nn
