// The margin head against an independent double-precision reference written here with plain loops
// (std::acos / std::cos), never calling the implementation: logits, loss, label smoothing, label -1
// rows, AdaFace's statistics, gradients by central finite differences, and safety at theta = 0, pi.
#include "train/nn/margin.hpp"

#include "arcforge/common/error.hpp"
#include "train/compat/torch_compat.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

using arcforge::nn::DynamicMarginMode;
using arcforge::nn::Margin;
using arcforge::nn::MarginOptions;
using arcforge::nn::MarginType;
using arcforge::nn::NormalizedLinear;
using arcforge::nn::margin_cross_entropy;
using arcforge::nn::margin_preset;
using Vec = std::vector<double>;

constexpr int64_t N = 8, C = 13, D = 16;
const double kPi = std::acos(-1.0);

// ---------------------------------------------------------------------------------------------
// Double-precision reference.

// SphereFace's monotone continuation of cos past pi: (-1)^k cos(phi) - 2k on [k pi, (k+1) pi].
double ref_monotone_cos(double phi) {
  const double k = std::floor(phi / kPi);
  const double sign = (static_cast<int64_t>(k) % 2 == 0) ? 1.0 : -1.0;
  return sign * std::cos(phi) - 2.0 * k;
}

struct AdaStats {
  double mean = 20.0;
  double std = 100.0;
};

// The margin-adjusted target cosine for one row.
double ref_target(const MarginOptions& o, double c, double norm, const AdaStats& ada) {
  const double theta = std::acos(c);
  switch (o.type) {
    case MarginType::softmax: return c;
    case MarginType::arcface: return ref_monotone_cos(theta + o.m2);
    case MarginType::cosface: return c - o.m3;
    case MarginType::combined: return ref_monotone_cos(o.m1 * theta + o.m2) - o.m3;
    case MarginType::dynamic: {
      const double m = o.m_min + (o.m_max - o.m_min) * (1.0 - std::fabs(c));
      return o.dynamic_mode == DynamicMarginMode::angular ? ref_monotone_cos(theta + m) : c - m;
    }
    case MarginType::adaface: {
      const double eps = 1e-3;
      const double n = std::clamp(norm, 0.001, 100.0);
      const double scaler = std::clamp((n - ada.mean) / (ada.std + eps) * o.adaface_h, -1.0, 1.0);
      const double g_angular = -o.adaface_m * scaler;
      const double g_add = o.adaface_m + o.adaface_m * scaler;
      return std::cos(std::clamp(theta + g_angular, eps, kPi - eps)) - g_add;
    }
  }
  return NAN;
}

// logits [N*C] from cosines [N*C].
Vec ref_logits(const MarginOptions& o, const Vec& cos, const std::vector<int64_t>& labels,
               const Vec& norms, const AdaStats& ada) {
  const size_t rows = labels.size(), cols = cos.size() / rows;
  Vec out(cos.size());
  for (size_t i = 0; i < rows; ++i)
    for (size_t j = 0; j < cols; ++j) {
      const double c = std::clamp(cos[i * cols + j], -1.0, 1.0);
      const bool target = labels[i] == static_cast<int64_t>(j);
      out[i * cols + j] =
          o.scale * (target ? ref_target(o, c, norms.empty() ? 0.0 : norms[i], ada) : c);
    }
  return out;
}

// Mean over rows with label >= 0 of -sum_j q_j log p_j, q = (1-eps) one_hot(y) + eps/K.
double ref_cross_entropy(const Vec& logits, const std::vector<int64_t>& labels, double eps) {
  const size_t rows = labels.size(), cols = logits.size() / rows;
  double total = 0;
  int counted = 0;
  for (size_t i = 0; i < rows; ++i) {
    if (labels[i] < 0) continue;
    double mx = -INFINITY;
    for (size_t j = 0; j < cols; ++j) mx = std::max(mx, logits[i * cols + j]);
    double sum = 0;
    for (size_t j = 0; j < cols; ++j) sum += std::exp(logits[i * cols + j] - mx);
    const double lse = mx + std::log(sum);
    double row = 0;
    for (size_t j = 0; j < cols; ++j) {
      const double q = (labels[i] == static_cast<int64_t>(j) ? 1.0 - eps : 0.0) + eps / cols;
      row -= q * (logits[i * cols + j] - lse);
    }
    total += row;
    ++counted;
  }
  return counted ? total / counted : 0.0;
}

// cos[i][j] = <e_i/|e_i|, w_j/|w_j|>, E [N*D], W [C*D].
Vec ref_cosines(const Vec& e, const Vec& w, int64_t dim) {
  const int64_t rows = static_cast<int64_t>(e.size()) / dim;
  const int64_t cols = static_cast<int64_t>(w.size()) / dim;
  Vec out(rows * cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double dot = 0, ne = 0, nw = 0;
      for (int64_t k = 0; k < dim; ++k) {
        dot += e[i * dim + k] * w[j * dim + k];
        ne += e[i * dim + k] * e[i * dim + k];
        nw += w[j * dim + k] * w[j * dim + k];
      }
      out[i * cols + j] = dot / (std::sqrt(ne) * std::sqrt(nw));
    }
  return out;
}

double ref_loss(const MarginOptions& o, const Vec& e, const Vec& w,
                const std::vector<int64_t>& labels, const Vec& norms, const AdaStats& ada,
                double eps) {
  return ref_cross_entropy(ref_logits(o, ref_cosines(e, w, D), labels, norms, ada), labels, eps);
}

// ---------------------------------------------------------------------------------------------
// Helpers.

torch::Tensor tensor_of(const Vec& v, std::vector<int64_t> shape,
                        torch::Dtype dtype = torch::kFloat) {
  return torch::tensor(v, torch::kDouble).reshape(shape).to(dtype);
}

Vec vec_of(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kDouble).contiguous();
  return Vec(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

torch::Tensor labels_of(const std::vector<int64_t>& labels) {
  return torch::tensor(labels, torch::kLong);
}

// max |a - b| / max(|b|, 1): relative where values are large, absolute near zero.
double max_rel_err(const Vec& a, const Vec& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::fabs(a[i] - b[i]) / std::max(std::fabs(b[i]), 1.0));
  return worst;
}

// max |a - b| / max(max |b|, 1e-12): for gradients, whose entries vary in size.
double max_err_vs_largest(const Vec& a, const Vec& b) {
  double worst = 0, largest = 1e-12;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]));
    largest = std::max(largest, std::fabs(b[i]));
  }
  return worst / largest;
}

bool all_finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

Vec uniform(std::mt19937& rng, size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

// Sets row `row` of E to |r| (cos(theta) w_hat + sin(theta) u) with u a random unit vector
// orthogonal to w_hat, so that its cosine with class centre `cls` is cos(theta).
void set_row_at_angle(Vec& e, int64_t row, const Vec& w, int64_t cls, double theta,
                      std::mt19937& rng) {
  Vec wh(D), u = uniform(rng, D, -1, 1);
  double nw = 0;
  for (int64_t k = 0; k < D; ++k) nw += w[cls * D + k] * w[cls * D + k];
  for (int64_t k = 0; k < D; ++k) wh[k] = w[cls * D + k] / std::sqrt(nw);
  double proj = 0, nu = 0;
  for (int64_t k = 0; k < D; ++k) proj += u[k] * wh[k];
  for (int64_t k = 0; k < D; ++k) u[k] -= proj * wh[k];
  for (int64_t k = 0; k < D; ++k) nu += u[k] * u[k];
  for (int64_t k = 0; k < D; ++k)
    e[row * D + k] = 2.5 * (std::cos(theta) * wh[k] + std::sin(theta) * u[k] / std::sqrt(nu));
}

const std::vector<std::string> kAllPresets = {"softmax",  "arcface", "cosface",         "combined",
                                              "dynamic", "dynamic_additive", "adaface"};

// The cosine table for the margin tests: random, with the target cosine of row
// 0: exactly 1, 1: exactly -1, 2: cos(1e-4) (1.0f in fp32), 3: cos(pi - 1e-4), 4: cos(1e-3),
// 5: cos(pi - 1e-3) (past pi for every angular margin), 6: about 0, 7: label -1.
struct CosineCase {
  Vec cos;  // fp32-representable values
  std::vector<int64_t> labels;
  Vec norms;
};

CosineCase boundary_cosines(uint32_t seed) {
  std::mt19937 rng(seed);
  CosineCase k;
  k.cos = uniform(rng, N * C, -1, 1);
  k.labels = {3, 0, 12, 5, 7, 1, 9, -1};
  const double targets[] = {1.0, -1.0, std::cos(1e-4), std::cos(kPi - 1e-4),
                            std::cos(1e-3), std::cos(kPi - 1e-3), 1e-6};
  for (int64_t i = 0; i < 7; ++i) k.cos[i * C + k.labels[i]] = targets[i];
  k.cos[0 * C + 4] = -1.0;  // non-target columns at the boundary too
  k.cos[1 * C + 2] = 1.0;
  k.cos[7 * C + 0] = 1.0;
  for (double& c : k.cos) c = static_cast<double>(static_cast<float>(c));  // the fp32 inputs
  k.norms = uniform(rng, N, 5.0, 40.0);
  k.norms[1] = 1e-5;  // below AdaFace's clip
  k.norms[2] = 250;   // above it
  return k;
}

// AdaFace statistics after one training-mode update from `norms` (unbiased std), as in the paper.
AdaStats updated_stats(const Vec& norms, const AdaStats& before, double alpha) {
  Vec n = norms;
  for (double& x : n) x = std::clamp(x, 0.001, 100.0);
  double mean = 0, var = 0;
  for (double x : n) mean += x;
  mean /= n.size();
  for (double x : n) var += (x - mean) * (x - mean);
  var /= (n.size() - 1);
  return {(1 - alpha) * before.mean + alpha * mean, (1 - alpha) * before.std + alpha * std::sqrt(var)};
}

void set_adaface_stats(Margin& margin, double mean, double std) {
  torch::NoGradGuard no_grad;
  margin->named_buffers()["adaface_batch_mean"].fill_(mean);
  margin->named_buffers()["adaface_batch_std"].fill_(std);
}

// ---------------------------------------------------------------------------------------------
// Logits and loss from given cosines, including the boundary rows.

TEST(Margins, LogitsAndLossMatchReferenceIncludingBoundaries) {
  double worst_logit = 0, worst_loss = 0;
  for (const std::string& name : kAllPresets) {
    const MarginOptions o = margin_preset(name);
    const CosineCase k = boundary_cosines(11);
    Margin margin(o);  // training mode: AdaFace updates its statistics first, then uses them
    const torch::Tensor logits =
        margin->forward(tensor_of(k.cos, {N, C}), labels_of(k.labels), tensor_of(k.norms, {N}));
    ASSERT_EQ(logits.scalar_type(), torch::kFloat) << name;
    const AdaStats ada = updated_stats(k.norms, {}, o.adaface_t_alpha);
    const Vec want = ref_logits(o, k.cos, k.labels, k.norms, ada);
    const double err = max_rel_err(vec_of(logits), want);
    EXPECT_LT(err, 1e-5) << name;
    worst_logit = std::max(worst_logit, err);
    for (double eps : {0.0, 0.1}) {
      const double loss = margin_cross_entropy(logits, labels_of(k.labels), eps).item<double>();
      const double ref = ref_cross_entropy(want, k.labels, eps);
      const double loss_err = std::fabs(loss - ref) / std::fabs(ref);
      EXPECT_LT(loss_err, 1e-5) << name << " eps " << eps;
      worst_loss = std::max(worst_loss, loss_err);
    }
  }
  std::printf("[margins] fp32 logits vs double reference, max rel err %.3g; loss %.3g\n",
              worst_logit, worst_loss);
}

TEST(Margins, ArcFaceAtThetaPiUsesMonotoneContinuation) {
  // theta + m past pi continues as -cos(phi) - 2: strictly decreasing, continuous at pi - m.
  Margin margin(margin_preset("arcface"));
  const int64_t steps = 2001;
  const torch::Tensor theta = torch::linspace(0, kPi, steps, torch::kDouble);
  const torch::Tensor cos = torch::cos(theta).to(torch::kFloat).unsqueeze(1);  // [steps, 1]
  const Vec t = vec_of(margin->forward(cos, torch::zeros({steps}, torch::kLong)) / 64.0);
  double largest_step = 0;
  for (int64_t i = 1; i < steps; ++i) {
    EXPECT_LE(t[i], t[i - 1] + 1e-6) << "not decreasing at step " << i;
    largest_step = std::max(largest_step, std::fabs(t[i] - t[i - 1]));
  }
  EXPECT_LT(largest_step, 2e-3);  // no jump anywhere (a jump at pi - m would be ~0.1)
  EXPECT_NEAR(t.back(), std::cos(0.5) - 2.0, 1e-6);  // -cos(pi + 0.5) - 2
  EXPECT_NEAR(t.front(), std::cos(0.5), 1e-6);
}

TEST(Margins, SphereFaceMultiplicativeAngleIsTrulyCombined) {
  MarginOptions o = margin_preset("combined");
  o.m1 = 1.35;
  o.m2 = 0.25;
  o.m3 = 0.1;
  Margin margin(o);
  const CosineCase k = boundary_cosines(5);
  const torch::Tensor logits = margin->forward(tensor_of(k.cos, {N, C}), labels_of(k.labels));
  EXPECT_LT(max_rel_err(vec_of(logits), ref_logits(o, k.cos, k.labels, {}, {})), 1e-5);
  // A multiplicative margin differs from the additive one with the same m2, m3.
  const double c = 0.5, theta = std::acos(c);
  const torch::Tensor one = margin->forward(torch::full({1, 1}, c), torch::zeros({1}, torch::kLong));
  EXPECT_NEAR(one.item<double>() / 64.0, std::cos(1.35 * theta + 0.25) - 0.1, 1e-6);
}

// ---------------------------------------------------------------------------------------------
// The whole head (normalise, margin, loss) from embeddings and weights.

struct HeadCase {
  Vec e, w;
  std::vector<int64_t> labels;
  Vec norms;
};

// Random embeddings and centres; row 5 sits at theta = 3.0 from its centre (past pi - m for every
// angular margin), row 6 at 0.2, row 7 has label -1.
HeadCase head_case(uint32_t seed) {
  std::mt19937 rng(seed);
  HeadCase h;
  h.w = uniform(rng, C * D, -1, 1);
  h.e = uniform(rng, N * D, -1, 1);
  h.labels = {0, 4, 7, 12, 2, 9, 5, -1};
  set_row_at_angle(h.e, 5, h.w, 9, 3.0, rng);
  set_row_at_angle(h.e, 6, h.w, 5, 0.2, rng);
  h.norms = uniform(rng, N, 2.0, 40.0);
  return h;
}

// Loss of the implementation in `dtype`; returns the loss, and the gradients in *ge, *gw.
double head_loss(const MarginOptions& o, const HeadCase& h, torch::Dtype dtype, double eps,
                 const AdaStats& ada, Vec* ge = nullptr, Vec* gw = nullptr,
                 Vec* logits_out = nullptr) {
  NormalizedLinear linear(D, C);
  linear->to(dtype);
  {
    torch::NoGradGuard no_grad;
    linear->weight.copy_(tensor_of(h.w, {C, D}, dtype));
  }
  Margin margin(o);
  margin->eval();
  set_adaface_stats(margin, ada.mean, ada.std);
  const torch::Tensor e = tensor_of(h.e, {N, D}, dtype).requires_grad_(true);
  const torch::Tensor logits =
      margin->forward(linear->forward(e), labels_of(h.labels), tensor_of(h.norms, {N}, dtype));
  EXPECT_EQ(logits.scalar_type(), dtype);
  const torch::Tensor loss = margin_cross_entropy(logits, labels_of(h.labels), eps);
  loss.backward();
  if (ge) *ge = vec_of(e.grad());
  if (gw) *gw = vec_of(linear->weight.grad());
  if (logits_out) *logits_out = vec_of(logits);
  return loss.item<double>();
}

TEST(Margins, HeadMatchesReferenceInDoubleAndFloat) {
  const HeadCase h = head_case(3);
  const AdaStats ada{15.0, 8.0};
  double worst_double = 0, worst_float = 0;
  for (const std::string& name : kAllPresets) {
    const MarginOptions o = margin_preset(name);
    const Vec want_logits = ref_logits(o, ref_cosines(h.e, h.w, D), h.labels, h.norms, ada);
    for (torch::Dtype dtype : {torch::kDouble, torch::kFloat}) {
      Vec logits;
      const double loss = head_loss(o, h, dtype, 0.1, ada, nullptr, nullptr, &logits);
      const double want = ref_loss(o, h.e, h.w, h.labels, h.norms, ada, 0.1);
      const double err =
          std::max(max_rel_err(logits, want_logits), std::fabs(loss - want) / std::fabs(want));
      EXPECT_LT(err, dtype == torch::kDouble ? 1e-12 : 1e-5) << name;
      (dtype == torch::kDouble ? worst_double : worst_float) =
          std::max(dtype == torch::kDouble ? worst_double : worst_float, err);
    }
  }
  std::printf("[margins] head logits+loss vs reference, max rel err: double %.3g, float %.3g\n",
              worst_double, worst_float);
}

// ---------------------------------------------------------------------------------------------
// Gradients by central finite differences of the double reference.

TEST(Margins, GradientsMatchFiniteDifferencesOfReference) {
  const HeadCase h = head_case(7);
  const AdaStats ada{15.0, 8.0};
  const double step = 1e-6;
  double worst_double = 0, worst_float = 0;
  for (const char* name :
       {"arcface", "dynamic", "dynamic_additive", "cosface", "combined", "adaface", "softmax"}) {
    const MarginOptions o = margin_preset(name);
    // Reference gradient: AdaFace's norms are an input held fixed (the implementation detaches).
    auto fd = [&](bool wrt_e) {
      HeadCase p = h;
      Vec& x = wrt_e ? p.e : p.w;
      Vec g(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        const double keep = x[i];
        x[i] = keep + step;
        const double up = ref_loss(o, p.e, p.w, p.labels, p.norms, ada, 0.1);
        x[i] = keep - step;
        const double down = ref_loss(o, p.e, p.w, p.labels, p.norms, ada, 0.1);
        x[i] = keep;
        g[i] = (up - down) / (2 * step);
      }
      return g;
    };
    const Vec fd_e = fd(true), fd_w = fd(false);
    for (torch::Dtype dtype : {torch::kDouble, torch::kFloat}) {
      Vec ge, gw;
      head_loss(o, h, dtype, 0.1, ada, &ge, &gw);
      const double err = std::max(max_err_vs_largest(ge, fd_e), max_err_vs_largest(gw, fd_w));
      EXPECT_LT(err, dtype == torch::kDouble ? 1e-7 : 1e-4) << name;
      (dtype == torch::kDouble ? worst_double : worst_float) =
          std::max(dtype == torch::kDouble ? worst_double : worst_float, err);
    }
  }
  std::printf("[margins] gradients vs central FD of reference, max err/max|g|: double %.3g, "
              "float %.3g\n", worst_double, worst_float);
}

// ---------------------------------------------------------------------------------------------
// No NaN or inf at theta = 0 and theta = pi.

TEST(Margins, FiniteGradientsAtThetaZeroAndPi) {
  for (const std::string& name : kAllPresets) {
    for (torch::Dtype dtype : {torch::kFloat, torch::kDouble}) {
      // Directly on cosines that are exactly +-1.
      const CosineCase k = boundary_cosines(2);
      const torch::Tensor cos = tensor_of(k.cos, {N, C}, dtype).requires_grad_(true);
      Margin margin(margin_preset(name));
      const torch::Tensor logits =
          margin->forward(cos, labels_of(k.labels), tensor_of(k.norms, {N}, dtype));
      const torch::Tensor loss = margin_cross_entropy(logits, labels_of(k.labels), 0.1);
      loss.backward();
      EXPECT_TRUE(all_finite(logits)) << name;
      EXPECT_TRUE(all_finite(cos.grad())) << name;

      // Through the head: embeddings parallel and anti-parallel to their class centre.
      NormalizedLinear linear(D, C);
      linear->to(dtype);
      torch::Tensor e = torch::randn({N, D}, dtype);
      {
        torch::NoGradGuard no_grad;
        e[0].copy_(linear->weight[3] * 7.0);    // theta = 0
        e[1].copy_(linear->weight[0] * -3.0);   // theta = pi
        e[2].copy_(linear->weight[12] * 0.5);
      }
      e.requires_grad_(true);
      const torch::Tensor head_logits = margin->forward(
          linear->forward(e), labels_of({3, 0, 12, 1, 2, 3, 4, -1}), e.detach().norm(2, 1));
      margin_cross_entropy(head_logits, labels_of({3, 0, 12, 1, 2, 3, 4, -1}), 0.0).backward();
      EXPECT_TRUE(all_finite(head_logits)) << name;
      EXPECT_TRUE(all_finite(e.grad())) << name;
      EXPECT_TRUE(all_finite(linear->weight.grad())) << name;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy: smoothing and label -1 rows.

TEST(Margins, NoSmoothingIsPlainCrossEntropy) {
  const torch::Tensor logits = torch::randn({N, C}) * 20;
  const torch::Tensor labels = torch::randint(0, C, {N}, torch::kLong);
  const double ours = margin_cross_entropy(logits, labels, 0.0).item<double>();
  const double torch_ce = torch::nn::functional::cross_entropy(logits, labels).item<double>();
  std::vector<int64_t> l(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + N);
  EXPECT_NEAR(ours, torch_ce, 1e-5 * std::fabs(torch_ce));
  EXPECT_NEAR(ours, ref_cross_entropy(vec_of(logits), l, 0.0), 1e-5 * std::fabs(torch_ce));
}

TEST(Margins, LabelSmoothingPutsOneMinusEpsPlusEpsOverKOnTarget) {
  // With a single row, two classes, logits (0, 0): loss = log 2 whatever eps. With logits (a, 0):
  // loss = -(1 - eps + eps/2) log p0 - eps/2 log p1.
  const double a = 3.0, eps = 0.1;
  const torch::Tensor logits = torch::tensor({a, 0.0}, torch::kFloat).reshape({1, 2});
  const double lse = std::log(std::exp(a) + 1.0);
  const double want = -(1 - eps + eps / 2) * (a - lse) - eps / 2 * (0 - lse);
  EXPECT_NEAR(margin_cross_entropy(logits, labels_of({0}), eps).item<double>(), want, 1e-6);
  EXPECT_THROW(margin_cross_entropy(logits, labels_of({0}), 1.0), arcforge::ConfigError);
  EXPECT_THROW(margin_cross_entropy(logits, labels_of({2}), 0.0), arcforge::InputError);
  EXPECT_THROW(margin_cross_entropy(logits, labels_of({-2}), 0.0), arcforge::InputError);
}

TEST(Margins, LabelMinusOneRowsGetNoMarginAndNoLoss) {
  const CosineCase k = boundary_cosines(4);  // row 7 has label -1
  Margin margin(margin_preset("arcface"));
  const torch::Tensor cos = tensor_of(k.cos, {N, C});
  const torch::Tensor logits = margin->forward(cos, labels_of(k.labels));
  EXPECT_TRUE(torch::equal(logits[7], cos[7] * 64.0));  // untouched row
  EXPECT_FALSE(torch::equal(logits[6], cos[6] * 64.0));  // a labelled row did get the margin

  // The loss ignores row 7: equal to the loss on rows 0..6 alone, and row 7 gets no gradient.
  const torch::Tensor leaf = logits.detach().requires_grad_(true);
  const torch::Tensor loss = margin_cross_entropy(leaf, labels_of(k.labels), 0.1);
  const torch::Tensor first7 = margin_cross_entropy(
      logits.detach().slice(0, 0, 7),
      labels_of(std::vector<int64_t>(k.labels.begin(), k.labels.begin() + 7)), 0.1);
  EXPECT_NEAR(loss.item<double>(), first7.item<double>(), 1e-6);
  loss.backward();
  EXPECT_EQ(leaf.grad()[7].abs().max().item<double>(), 0.0);
  // All rows -1: a zero loss, not NaN.
  EXPECT_EQ(margin_cross_entropy(leaf, torch::full({N}, -1, torch::kLong)).item<double>(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// AdaFace.

TEST(Margins, AdaFaceStatisticsMoveOnlyInTraining) {
  const MarginOptions o = margin_preset("adaface");
  Margin margin(o);
  const CosineCase k = boundary_cosines(9);
  auto mean = [&] { return margin->named_buffers()["adaface_batch_mean"].item<double>(); };
  auto std = [&] { return margin->named_buffers()["adaface_batch_std"].item<double>(); };
  EXPECT_EQ(mean(), 20.0);
  EXPECT_EQ(std(), 100.0);

  AdaStats want;
  for (int step = 0; step < 3; ++step) {
    margin->forward(tensor_of(k.cos, {N, C}), labels_of(k.labels), tensor_of(k.norms, {N}));
    want = updated_stats(k.norms, want, 0.01);
    EXPECT_NEAR(mean(), want.mean, 1e-4);
    EXPECT_NEAR(std(), want.std, 1e-4);
  }
  // Each update moves the buffers toward this batch's statistics.
  const AdaStats batch = updated_stats(k.norms, {}, 1.0);
  EXPECT_LT(std::fabs(mean() - batch.mean), std::fabs(20.0 - batch.mean));
  EXPECT_LT(std::fabs(std() - batch.std), std::fabs(100.0 - batch.std));

  margin->eval();
  const double frozen_mean = mean(), frozen_std = std();
  margin->forward(tensor_of(k.cos, {N, C}), labels_of(k.labels), tensor_of(k.norms, {N}));
  EXPECT_EQ(mean(), frozen_mean);
  EXPECT_EQ(std(), frozen_std);
  EXPECT_THROW(margin->forward(tensor_of(k.cos, {N, C}), labels_of(k.labels)),
               arcforge::InputError);
}

TEST(Margins, AdaFaceMarginFollowsFeatureNorm) {
  const MarginOptions o = margin_preset("adaface");
  Margin margin(o);
  margin->eval();
  set_adaface_stats(margin, 20.0, 5.0);
  // Same cosine 0.5, different norms; scaler = (norm - 20) / 5 * 0.333, clipped to [-1, 1].
  const Vec norms = {1e-6, 5.0, 10.0, 20.0, 30.0, 35.0, 50.0, 1e4};
  const Vec cos(N, 0.5);
  const std::vector<int64_t> labels(N, 0);
  const torch::Tensor n = tensor_of(norms, {N}).requires_grad_(true);
  const torch::Tensor cos_t = tensor_of(cos, {N, 1}).requires_grad_(true);
  const torch::Tensor logits = margin->forward(cos_t, labels_of(labels), n);
  const Vec got = vec_of(logits);
  const Vec want = ref_logits(o, cos, labels, norms, {20.0, 5.0});
  EXPECT_LT(max_rel_err(got, want), 1e-5);
  // Hand values: norm 20 -> scaler 0 -> cos(theta) - m; norm >= 35 -> scaler 1 -> cos(theta - m) - 2m.
  const double theta = std::acos(0.5);
  EXPECT_NEAR(got[3] / 64, 0.5 - 0.4, 1e-6);
  EXPECT_NEAR(got[6] / 64, std::cos(theta - 0.4) - 0.8, 1e-6);
  EXPECT_NEAR(got[7] / 64, std::cos(theta - 0.4) - 0.8, 1e-6);
  EXPECT_NEAR(got[0] / 64, std::cos(theta + 0.4) - 0.0, 1e-6);
  // The norms are detached: no gradient reaches them.
  logits.sum().backward();
  EXPECT_FALSE(n.grad().defined() && n.grad().abs().max().item<double>() != 0.0);
}

// ---------------------------------------------------------------------------------------------
// Precision: low-precision inputs give fp32 results; autocast does not reach inside the head.

TEST(Margins, Bf16InputsGiveFp32Logits) {
  const CosineCase k = boundary_cosines(6);
  const torch::Tensor cos_bf16 = tensor_of(k.cos, {N, C}).to(torch::kBFloat16);
  for (const std::string& name : kAllPresets) {
    Margin margin(margin_preset(name));
    margin->eval();
    const torch::Tensor norms_bf16 = tensor_of(k.norms, {N}, torch::kBFloat16);
    const torch::Tensor logits = margin->forward(cos_bf16, labels_of(k.labels), norms_bf16);
    EXPECT_EQ(logits.scalar_type(), torch::kFloat) << name;
    const torch::Tensor from_float = margin->forward(
        cos_bf16.to(torch::kFloat), labels_of(k.labels), norms_bf16.to(torch::kFloat));
    EXPECT_TRUE(torch::allclose(logits, from_float, 0, 1e-5)) << name;
    EXPECT_EQ(margin_cross_entropy(logits.to(torch::kBFloat16), labels_of(k.labels))
                  .scalar_type(), torch::kFloat);
  }
  NormalizedLinear linear(D, C);
  EXPECT_EQ(linear->forward(torch::randn({N, D}).to(torch::kBFloat16)).scalar_type(),
            torch::kFloat);
}

TEST(Margins, NormalizedLinearStaysFp32UnderAutocast) {
  NormalizedLinear linear(512, 1000);
  const torch::Tensor e = torch::randn({32, 512});
  const torch::Tensor plain = linear->forward(e);
  torch::Tensor cast;
  // Not compat::AutocastGuard: on libtorch 1.13 its destructor sets the CPU autocast dtype to
  // float, which 1.13 rejects (and the throw from a destructor terminates). Disabling with the
  // bf16 dtype works on every version.
  arcforge::compat::set_autocast(torch::kCPU, true, torch::kBFloat16);
  const bool autocast_on = torch::mm(e, e.t()).scalar_type() == torch::kBFloat16;
  cast = linear->forward(e);
  arcforge::compat::set_autocast(torch::kCPU, false, torch::kBFloat16);
  ASSERT_TRUE(autocast_on);  // the region really was autocast
  EXPECT_EQ(cast.scalar_type(), torch::kFloat);
  EXPECT_LT((cast - plain).abs().max().item<double>(), 1e-6);  // a bf16 matmul would be ~1e-3 off
  // Against the reference, and clamped into [-1, 1].
  const Vec want = ref_cosines(vec_of(e.slice(0, 0, 4)), vec_of(linear->weight), 512);
  EXPECT_LT(max_rel_err(vec_of(plain.slice(0, 0, 4)), want), 1e-6);
  EXPECT_LE(plain.abs().max().item<double>(), 1.0);
}

TEST(Margins, NormalizedLinearInitIsNormalZeroPointZeroOne) {
  NormalizedLinear linear(256, 1000);
  EXPECT_EQ(linear->weight.sizes(), (std::vector<int64_t>{1000, 256}));
  EXPECT_NEAR(linear->weight.std().item<double>(), 0.01, 2e-4);
  EXPECT_NEAR(linear->weight.mean().item<double>(), 0.0, 2e-4);
  EXPECT_THROW(linear->forward(torch::randn({2, 128})), arcforge::InputError);
}

// ---------------------------------------------------------------------------------------------
// Presets.

TEST(Margins, PresetsByName) {
  EXPECT_EQ(arcforge::nn::margin_names(), kAllPresets);
  for (const std::string& name : kAllPresets)
    EXPECT_EQ(arcforge::nn::margin_name(margin_preset(name)), name);
  EXPECT_EQ(margin_preset("arcface").m2, 0.5);
  EXPECT_EQ(margin_preset("cosface").m3, 0.4);
  const MarginOptions combined = margin_preset("combined");
  EXPECT_EQ(combined.m1, 1.0);
  EXPECT_EQ(combined.m2, 0.3);
  EXPECT_EQ(combined.m3, 0.2);
  EXPECT_EQ(margin_preset("dynamic").dynamic_mode, DynamicMarginMode::angular);
  EXPECT_EQ(margin_preset("dynamic_additive").dynamic_mode, DynamicMarginMode::additive);
  EXPECT_EQ(margin_preset("adaface").adaface_h, 0.333);
  for (const std::string& name : kAllPresets) EXPECT_EQ(margin_preset(name).scale, 64.0);
  try {
    margin_preset("sphereface");
    FAIL() << "no exception";
  } catch (const arcforge::ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("sphereface"), std::string::npos);
    for (const std::string& name : kAllPresets) EXPECT_NE(what.find(name), std::string::npos);
  }
  MarginOptions bad;
  bad.scale = 0;
  EXPECT_THROW(Margin{bad}, arcforge::ConfigError);
}

}  // namespace
