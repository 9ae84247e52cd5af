// The normalised linear head, the margins and the cross-entropy (formulas in margin.hpp).
//
// Precision: everything here runs in fp32 whatever the input dtype (bf16/fp16 are promoted), and
// in double when given double (the tests use that for finite differences). Autocast is switched
// off inside, so a surrounding bf16 autocast region cannot push the head's matmul back to bf16.
//
// Numerical choices, all deterministic:
//  * theta = acos(cos) has derivative -1/sqrt(1 - cos^2), infinite at cos = +-1. SafeAcos keeps the
//    exact forward value and floors 1 - cos^2 at kAcosGradFloor in the backward, so theta = 0 and
//    theta = pi give finite gradients. The floor is below the smallest non-zero 1 - cos^2 an fp32
//    cosine can have (1.19e-7), so for fp32 inputs only exact +-1 are affected.
//  * An angular margin can push phi = m1*theta + m2 past pi, where cos(phi) would start rising again
//    (a worse-classified sample would get a larger target logit). We continue cos monotonically with
//    SphereFace's extension psi(phi) = (-1)^k cos(phi) - 2k for phi in [k*pi, (k+1)*pi]: continuous,
//    differentiable (psi' = 0 only at multiples of pi), strictly decreasing, and equal to cos(phi)
//    on [0, pi]. (insightface's older "cos - m*sin(m)" fallback jumps at theta = pi - m; clamping
//    phi to pi would leave the target without gradient there.)
//  * Dynamic margin m_i = m_min + (m_max - m_min)(1 - |cos theta_y|) is computed from the target
//    cosine WITHOUT detaching, as in the seed article's code: the gradient also flows through m_i.
//  * AdaFace follows its paper's code: norms clipped to [0.001, 100] and detached, the EMA batch
//    statistics are updated first (training mode only, batches of >= 2 rows) and then used, and
//    theta + g_angular is clamped to [eps, pi - eps] with eps = 1e-3.
#include "train/nn/margin.hpp"

#include "arcforge/common/error.hpp"

#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <cmath>
#include <string>

namespace arcforge::nn {
namespace {

constexpr double kAcosGradFloor = 1e-7;
constexpr double kAdaFaceEps = 1e-3;

// Turns autocast off for this scope. The dispatch-key guard is what autocast itself uses and is
// the same in libtorch 1.13 and 2.x (the at::autocast:: setters are not).
class NoAutocast {
 public:
  NoAutocast() : guard_(c10::autocast_dispatch_keyset) {}

 private:
  c10::impl::ExcludeDispatchKeyGuard guard_;
};

// fp32, or double when any input is double.
at::ScalarType compute_dtype(at::ScalarType a, at::ScalarType b = at::kFloat) {
  return at::promote_types(at::kFloat, at::promote_types(a, b));
}

// acos with the exact forward value and a derivative that stays finite at +-1 (see top).
struct SafeAcos : public torch::autograd::Function<SafeAcos> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& c) {
    ctx->save_for_backward({c});
    return torch::acos(c);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const torch::Tensor c = ctx->get_saved_variables()[0];
    // (1-c)(1+c) instead of 1-c^2: 1-c is exact near c = 1, so no cancellation.
    const torch::Tensor sin_theta = ((1 - c) * (1 + c)).clamp_min(kAcosGradFloor).sqrt();
    return {-grad_out[0] / sin_theta};
  }
};

torch::Tensor safe_acos(const torch::Tensor& c) { return SafeAcos::apply(c); }

// SphereFace's monotone continuation of cos beyond [0, pi] (see top).
torch::Tensor monotone_cos(const torch::Tensor& phi) {
  const torch::Tensor k = torch::floor(phi.detach() / M_PI);
  const torch::Tensor sign = 1 - 2 * torch::remainder(k, 2);  // (-1)^k, k may be negative
  return sign * torch::cos(phi) - 2 * k;
}

void check_labels(const torch::Tensor& labels, int64_t rows, int64_t classes, const char* where) {
  if (!labels.defined() || labels.dim() != 1 || labels.size(0) != rows)
    throw InputError(std::string(where) + ": labels must have shape [" + std::to_string(rows) +
                     "], got " + (labels.defined() ? c10::str(labels.sizes()) : "undefined"));
  if (!at::isIntegralType(labels.scalar_type(), /*includeBool=*/false))
    throw InputError(std::string(where) + ": labels must be integers, got " +
                     std::string(c10::toString(labels.scalar_type())));
  if (rows == 0) return;
  if (!labels.is_cpu()) {
    // Reading the range back would stall the step on the device every iteration; the batch
    // sources check labels on the host before the copy, so here a device-side assertion is
    // the backstop (it fails the run at the next synchronisation).
    at::_assert_async(labels.ge(-1).logical_and(labels.lt(classes)).all());
    return;
  }
  const int64_t lo = labels.min().item<int64_t>();
  const int64_t hi = labels.max().item<int64_t>();
  if (lo < -1 || hi >= classes)
    throw InputError(std::string(where) + ": label " + std::to_string(lo < -1 ? lo : hi) +
                     " outside [-1, " + std::to_string(classes - 1) + "]");
}

void check_options(const MarginOptions& o) {
  auto fail = [](const std::string& what) { throw ConfigError("margin: " + what); };
  if (!(o.scale > 0)) fail("scale must be > 0, got " + std::to_string(o.scale));
  if (!(o.m1 > 0)) fail("m1 must be > 0, got " + std::to_string(o.m1));
  if (!(o.m_min <= o.m_max))
    fail("m_min " + std::to_string(o.m_min) + " > m_max " + std::to_string(o.m_max));
  if (!(o.adaface_h > 0)) fail("adaface_h must be > 0, got " + std::to_string(o.adaface_h));
  if (!(o.adaface_t_alpha > 0 && o.adaface_t_alpha <= 1))
    fail("adaface_t_alpha must be in (0, 1], got " + std::to_string(o.adaface_t_alpha));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
NormalizedLinearImpl::NormalizedLinearImpl(int64_t embedding_size, int64_t num_classes) {
  if (embedding_size <= 0 || num_classes <= 0)
    throw ConfigError("NormalizedLinear: embedding_size " + std::to_string(embedding_size) +
                      " and num_classes " + std::to_string(num_classes) + " must be > 0");
  // arcface_torch initialises the class centres with normal(0, 0.01).
  weight = register_parameter("weight", torch::empty({num_classes, embedding_size}));
  {
    torch::NoGradGuard no_grad;
    weight.normal_(0.0, 0.01);
  }
}

torch::Tensor NormalizedLinearImpl::forward(const torch::Tensor& embeddings) {
  return normalized_cosines(embeddings, weight);
}

torch::Tensor normalized_cosines(const torch::Tensor& embeddings, const torch::Tensor& weight) {
  if (embeddings.dim() != 2 || embeddings.size(1) != weight.size(1))
    throw InputError("NormalizedLinear: embeddings must have shape [N, " +
                     std::to_string(weight.size(1)) + "], got " + c10::str(embeddings.sizes()));
  NoAutocast no_autocast;
  const auto dtype = compute_dtype(embeddings.scalar_type(), weight.scalar_type());
  namespace F = torch::nn::functional;
  const auto unit = F::NormalizeFuncOptions().p(2).dim(1);
  const torch::Tensor e = F::normalize(embeddings.to(dtype), unit);  // [N, D]
  const torch::Tensor w = F::normalize(weight.to(dtype), unit);      // [C, D]
  return torch::mm(e, w.t()).clamp(-1.0, 1.0);                       // [N, C]
}

// ---------------------------------------------------------------------------------------------
MarginImpl::MarginImpl(MarginOptions options) : options_(options) {
  check_options(options_);
  // AdaFace's running norm statistics, initial values as in the paper's code.
  adaface_batch_mean_ = register_buffer("adaface_batch_mean", torch::full({1}, 20.0));
  adaface_batch_std_ = register_buffer("adaface_batch_std", torch::full({1}, 100.0));
}

torch::Tensor MarginImpl::forward(const torch::Tensor& cosines, const torch::Tensor& labels,
                                  const torch::Tensor& feature_norms) {
  if (!cosines.defined() || cosines.dim() != 2)
    throw InputError("Margin: cosines must have shape [N, C], got " +
                     (cosines.defined() ? c10::str(cosines.sizes()) : std::string("undefined")));
  const int64_t rows = cosines.size(0);
  check_labels(labels, rows, cosines.size(1), "Margin");
  NoAutocast no_autocast;
  const MarginOptions& o = options_;

  const torch::Tensor cos = cosines.to(compute_dtype(cosines.scalar_type())).clamp(-1.0, 1.0);
  if (o.type == MarginType::softmax) return cos * o.scale;

  const torch::Tensor label = labels.to(torch::kLong);
  const torch::Tensor has_target = label.ge(0);                   // [N]
  const torch::Tensor column = label.clamp_min(0).unsqueeze(1);   // [N, 1]; -1 rows read column 0
  const torch::Tensor cos_y = cos.gather(1, column).squeeze(1);   // [N]

  torch::Tensor target;  // [N], the margin-adjusted target cosine
  switch (o.type) {
    case MarginType::arcface:
      target = o.m2 == 0 ? cos_y : monotone_cos(safe_acos(cos_y) + o.m2);
      break;
    case MarginType::cosface:
      target = cos_y - o.m3;
      break;
    case MarginType::combined:
      target = (o.m1 == 1 && o.m2 == 0) ? cos_y - o.m3
                                        : monotone_cos(o.m1 * safe_acos(cos_y) + o.m2) - o.m3;
      break;
    case MarginType::dynamic: {
      // Not detached (see top): d m_i / d cos_y = -(m_max - m_min) * sign(cos_y).
      const torch::Tensor m_i = o.m_min + (o.m_max - o.m_min) * (1 - cos_y.abs());
      target = o.dynamic_mode == DynamicMarginMode::angular
                   ? monotone_cos(safe_acos(cos_y) + m_i)
                   : cos_y - m_i;
      break;
    }
    case MarginType::adaface: {
      if (!feature_norms.defined() || feature_norms.numel() != rows)
        throw InputError("Margin: AdaFace needs feature_norms with " + std::to_string(rows) +
                         " values");
      const torch::Tensor norms =
          feature_norms.detach().reshape({rows}).to(cos.scalar_type()).clamp(0.001, 100.0);
      if (is_training() && rows >= 2) {  // std of a single row is undefined: skip the update
        torch::NoGradGuard no_grad;
        const double a = o.adaface_t_alpha;
        const torch::Tensor mean = norms.mean().to(adaface_batch_mean_.scalar_type());
        const torch::Tensor std = norms.std().to(adaface_batch_std_.scalar_type());  // unbiased
        adaface_batch_mean_.mul_(1 - a).add_(mean * a);
        adaface_batch_std_.mul_(1 - a).add_(std * a);
      }
      const torch::Tensor mean = adaface_batch_mean_.to(cos.scalar_type());
      const torch::Tensor std = adaface_batch_std_.to(cos.scalar_type());
      const torch::Tensor scaler =
          ((norms - mean) / (std + kAdaFaceEps) * o.adaface_h).clamp(-1.0, 1.0);
      const torch::Tensor g_angular = -o.adaface_m * scaler;
      const torch::Tensor g_add = o.adaface_m + o.adaface_m * scaler;
      target = torch::cos((safe_acos(cos_y) + g_angular).clamp(kAdaFaceEps, M_PI - kAdaFaceEps)) -
               g_add;
      break;
    }
    case MarginType::softmax:
      break;
  }

  // Only rows whose target lives in this shard get the margin.
  const torch::Tensor target_col = torch::where(has_target, target, cos_y).unsqueeze(1);
  return cos.scatter(1, column, target_col) * o.scale;
}

// ---------------------------------------------------------------------------------------------
torch::Tensor margin_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                   double label_smoothing) {
  if (!logits.defined() || logits.dim() != 2)
    throw InputError("margin_cross_entropy: logits must have shape [N, C], got " +
                     (logits.defined() ? c10::str(logits.sizes()) : std::string("undefined")));
  if (!(label_smoothing >= 0 && label_smoothing < 1))
    throw ConfigError("margin_cross_entropy: label_smoothing must be in [0, 1), got " +
                      std::to_string(label_smoothing));
  check_labels(labels, logits.size(0), logits.size(1), "margin_cross_entropy");
  NoAutocast no_autocast;

  const torch::Tensor log_p =
      torch::log_softmax(logits.to(compute_dtype(logits.scalar_type())), 1);  // [N, C]
  const torch::Tensor label = labels.to(torch::kLong);
  const torch::Tensor valid = label.ge(0);                                    // [N]
  const torch::Tensor nll = -log_p.gather(1, label.clamp_min(0).unsqueeze(1)).squeeze(1);
  // Target (1-eps) on y plus eps/K on every class: -sum_j eps/K log p_j = -eps * mean_j log p_j.
  const torch::Tensor per_row = (1 - label_smoothing) * nll - label_smoothing * log_p.mean(1);
  const torch::Tensor kept = torch::where(valid, per_row, torch::zeros_like(per_row));
  return kept.sum() / valid.sum().clamp_min(1).to(kept.scalar_type());
}

}  // namespace arcforge::nn
