// Tests for train-time augmentation (train/data/augment.hpp): options and presets, determinism and
// batch independence, each op against a reference computed another way (torch::flip/rot90,
// slicing, double-precision formulas, Gaussian moments), the firing probabilities, range/shape
// contracts, CPU/CUDA agreement and the augment-preview command.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <numbers>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "arcforge/common/npy.hpp"
#include "arcforge/image/codec.hpp"
#include "train/data/augment.hpp"
#include "train/data/synth.hpp"
#include "child_process.hpp"

namespace {

using arcforge::ConfigError;
using arcforge::InputError;
using arcforge::data::augment_batch;
using arcforge::data::augment_option_keys;
using arcforge::data::augment_preset;
using arcforge::data::augment_preset_names;
using arcforge::data::Augmenter;
using arcforge::data::AugmentOptions;
using arcforge::data::erase_box;
using arcforge::data::EraseFill;
using arcforge::data::SampleAugment;
using arcforge::data::set_augment_option;

torch::Tensor random_images(int64_t n, int64_t h, int64_t w, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  return torch::rand({n, 3, h, w}, generator, torch::kFloat32);
}

// Smooth random content (upsampled noise): closer to photos than white noise, so blur and
// down-up change it by visible but moderate amounts.
torch::Tensor smooth_images(int64_t n, int64_t side, uint64_t seed) {
  namespace F = torch::nn::functional;
  return F::interpolate(random_images(n, side / 8, side / 8, seed),
                        F::InterpolateFuncOptions()
                            .size(std::vector<int64_t>{side, side})
                            .mode(torch::kBilinear)
                            .align_corners(false));
}

// Every op on with a probability that leaves some samples untouched.
AugmentOptions everything(double p) {
  AugmentOptions o;
  o.flip_p = o.rotate_p = o.scale_p = o.shift_p = o.color_p = o.erase_p = o.downup_p = o.blur_p = o.gray_p = p;
  return o;
}

torch::Tensor apply_one(const torch::Tensor& image, const SampleAugment& s) {
  return augment_batch(image.unsqueeze(0), {s})[0];
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// ---- options ------------------------------------------------------------------------------------

TEST(Augment, PresetsAreValidAndDescribeWhatTheyPromise) {
  for (const std::string& name : augment_preset_names()) {
    EXPECT_NO_THROW(Augmenter(augment_preset(name), 0)) << name;
  }
  EXPECT_FALSE(augment_preset("none").any());
  const AugmentOptions flip = augment_preset("flip");
  EXPECT_EQ(flip.flip_p, 0.5);
  EXPECT_EQ(flip.rotate_p + flip.scale_p + flip.shift_p + flip.color_p + flip.erase_p + flip.downup_p +
                flip.blur_p + flip.gray_p,
            0.0);
  const AugmentOptions article = augment_preset("article");
  EXPECT_EQ(article.max_rotate_deg, 15);
  EXPECT_EQ(article.scale_min, 0.9);
  EXPECT_EQ(article.scale_max, 1.1);
  EXPECT_GT(article.rotate_p * article.scale_p * article.color_p * article.erase_p, 0);
  // CoarseDropout(max_holes=1, 32x32): the drawn hole is exactly 32x32 on a 112x112 face.
  const Augmenter article_aug(article, 3);
  for (int64_t k = 0; k < 50; ++k) {
    const SampleAugment s = article_aug.draw(0, k);
    if (!s.erase) continue;
    const auto box = erase_box(s, 112, 112);
    EXPECT_EQ(box.height, 32);
    EXPECT_EQ(box.width, 32);
  }
  const AugmentOptions dali = augment_preset("dali");
  EXPECT_GT(dali.downup_p * dali.blur_p * dali.gray_p, 0);
  EXPECT_EQ(dali.downup_min, 56);
  EXPECT_EQ(dali.downup_max, 89);
  EXPECT_THROW(augment_preset("strong"), ConfigError);
}

TEST(Augment, OutOfRangeOptionsAreConfigErrors) {
  const auto rejects = [](auto change) {
    AugmentOptions o;
    change(o);
    EXPECT_THROW(Augmenter(o, 0), ConfigError);
  };
  rejects([](AugmentOptions& o) { o.flip_p = -0.1; });
  rejects([](AugmentOptions& o) { o.gray_p = 1.01; });
  rejects([](AugmentOptions& o) { o.blur_p = std::numeric_limits<double>::quiet_NaN(); });
  rejects([](AugmentOptions& o) { o.rotate_p = 2; });
  rejects([](AugmentOptions& o) { o.max_rotate_deg = -1; });
  rejects([](AugmentOptions& o) { o.scale_min = 1.2; });  // > scale_max 1.1
  rejects([](AugmentOptions& o) { o.scale_min = 0; });
  rejects([](AugmentOptions& o) { o.max_shift = 1.5; });
  rejects([](AugmentOptions& o) { o.brightness = -0.2; });
  rejects([](AugmentOptions& o) { o.erase_area_min = 0.5; });  // > erase_area_max 0.2
  rejects([](AugmentOptions& o) { o.erase_area_max = 1.5; });
  rejects([](AugmentOptions& o) { o.erase_aspect_min = 0; });
  rejects([](AugmentOptions& o) { o.erase_aspect_min = 2; });
  rejects([](AugmentOptions& o) { o.erase_fill = "blue"; });
  rejects([](AugmentOptions& o) { o.downup_min = 100; });  // > downup_max 89
  rejects([](AugmentOptions& o) { o.downup_min = 0; });
  rejects([](AugmentOptions& o) { o.blur_sigma_min = 3; });  // > blur_sigma_max 2
  rejects([](AugmentOptions& o) { o.blur_sigma_min = 0; });
  EXPECT_NO_THROW(Augmenter(everything(1.0), 0));
  EXPECT_NO_THROW(Augmenter(everything(0.0), 0));
}

TEST(Augment, OptionsSetFromTextByKey) {
  AugmentOptions o;
  set_augment_option(o, "rotate_p", "0.25");
  set_augment_option(o, "blur_sigma_max", "3");
  set_augment_option(o, "erase_fill", "mean");
  EXPECT_EQ(o.rotate_p, 0.25);
  EXPECT_EQ(o.blur_sigma_max, 3.0);
  EXPECT_EQ(o.erase_fill, "mean");
  EXPECT_THROW(set_augment_option(o, "rotate", "0.5"), ConfigError);
  EXPECT_THROW(set_augment_option(o, "rotate_p", "half"), ConfigError);
  EXPECT_THROW(set_augment_option(o, "rotate_p", "0.5x"), ConfigError);
  EXPECT_THROW(set_augment_option(o, "rotate_p", ""), ConfigError);
  // Every key round-trips (no typo between the key table and the struct).
  for (const std::string& key : augment_option_keys()) {
    AugmentOptions fresh;
    EXPECT_NO_THROW(set_augment_option(fresh, key, key == "erase_fill" ? "zero" : "0.5")) << key;
  }
  EXPECT_EQ(augment_option_keys().size(), 24u);
}

// ---- determinism --------------------------------------------------------------------------------

TEST(Augment, SameSeedAndStepGiveBitIdenticalOutputOtherStepsDiffer) {
  const auto images = smooth_images(12, 112, 1);
  const Augmenter a(everything(0.6), 42), b(everything(0.6), 42), other_seed(everything(0.6), 43);
  const auto out = a.apply(images, 7);
  EXPECT_TRUE(torch::equal(out, b.apply(images, 7)));
  EXPECT_TRUE(torch::equal(out, a.apply(images, 7)));
  EXPECT_FALSE(torch::equal(out, a.apply(images, 8)));
  EXPECT_FALSE(torch::equal(out, other_seed.apply(images, 7)));
  // Within a batch, samples are keyed apart: the same image in every row is augmented differently.
  const auto same = a.apply(images[0].unsqueeze(0).expand({6, 3, 112, 112}).contiguous(), 7);
  std::set<std::string> distinct;
  for (int64_t i = 0; i < 6; ++i) distinct.insert(std::to_string(same[i].sum().item<double>()));
  EXPECT_GE(distinct.size(), 5u);
  // The input is not modified.
  EXPECT_TRUE(torch::equal(images, smooth_images(12, 112, 1)));
}

TEST(Augment, SampleResultDoesNotDependOnBatchSizeOrNeighbours) {
  // p = 0.6 over 16 samples: every op is on for some samples and off for others.
  const auto images = smooth_images(16, 112, 2);
  const Augmenter aug(everything(0.6), 5);
  const auto whole = aug.apply(images, 3);
  for (int64_t i = 0; i < 16; ++i) {
    const auto alone = aug.apply(images.narrow(0, i, 1), 3, /*first_key=*/i);
    EXPECT_TRUE(torch::equal(alone[0], whole[i])) << "sample " << i << " max diff "
                                                   << max_abs_diff(alone[0], whole[i]);
  }
  // A micro-batch holding samples 5..10 (first_key = 5), and a batch with strangers in front.
  EXPECT_TRUE(torch::equal(aug.apply(images.narrow(0, 5, 6), 3, 5), whole.narrow(0, 5, 6)));
  const auto strangers = torch::cat({smooth_images(4, 112, 9), images.narrow(0, 0, 8)});
  EXPECT_TRUE(torch::equal(aug.apply(strangers, 3, -4).narrow(0, 4, 8), whole.narrow(0, 0, 8)));

  // Everything on for every sample (grouped blur/down-up sizes differ between the batches).
  const Augmenter all(everything(1.0), 6);
  const auto whole_all = all.apply(images, 11);
  for (int64_t i : {0, 7, 15})
    EXPECT_TRUE(torch::equal(all.apply(images.narrow(0, i, 1), 11, i)[0], whole_all[i])) << "sample " << i;
}

TEST(Augment, SameResultWhateverTheThreadCount) {
  const auto images = smooth_images(16, 112, 16);
  const Augmenter aug(everything(0.7), 9);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto one = aug.apply(images, 2);
  at::set_num_threads(std::max(2, threads));
  const auto many = aug.apply(images, 2);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, many)) << max_abs_diff(one, many);
}

TEST(Augment, ApplyIsAugmentBatchOfTheDrawnParameters) {
  const auto images = smooth_images(6, 112, 3);
  const Augmenter aug(everything(0.5), 8);
  EXPECT_TRUE(torch::equal(aug.apply(images, 2, 10), augment_batch(images, aug.draw_batch(2, 10, 6))));
  // Turning one op on does not move another op's draws.
  AugmentOptions flips_only;
  flips_only.flip_p = 0.5;
  const Augmenter flips(flips_only, 8);
  for (int64_t k = 0; k < 100; ++k) EXPECT_EQ(flips.draw(4, k).flip, aug.draw(4, k).flip);
}

// ---- geometry -----------------------------------------------------------------------------------

TEST(Augment, FlipAloneIsExactlyTorchFlip) {
  const auto images = random_images(32, 20, 24, 4);
  AugmentOptions o = augment_preset("flip");
  o.flip_p = 1;
  EXPECT_TRUE(torch::equal(Augmenter(o, 0).apply(images, 0), torch::flip(images, {3})));
  // p = 0.5: every sample is either exactly the flip or exactly the original.
  const auto out = Augmenter(augment_preset("flip"), 1).apply(images, 0);
  int flipped = 0;
  for (int64_t i = 0; i < 32; ++i) {
    const bool is_flip = torch::equal(out[i], torch::flip(images[i], {2}));
    EXPECT_TRUE(is_flip || torch::equal(out[i], images[i])) << i;
    flipped += is_flip;
  }
  EXPECT_GT(flipped, 0);
  EXPECT_LT(flipped, 32);
}

TEST(Augment, QuarterTurnsMatchRot90) {
  const auto image = random_images(1, 16, 16, 5)[0];
  SampleAugment s;
  s.angle_deg = 90;  // counter-clockwise as displayed, like rot90 from the row axis to the column axis
  EXPECT_LT(max_abs_diff(apply_one(image, s), torch::rot90(image, 1, {1, 2})), 1e-5);
  s.angle_deg = -90;
  EXPECT_LT(max_abs_diff(apply_one(image, s), torch::rot90(image, -1, {1, 2})), 1e-5);
  s.angle_deg = 180;
  EXPECT_LT(max_abs_diff(apply_one(image, s), torch::flip(image, {1, 2})), 1e-5);
  // Flip composed into the same matrix: mirror first, then rotate.
  s.angle_deg = 90;
  s.flip = true;
  EXPECT_LT(max_abs_diff(apply_one(image, s), torch::rot90(torch::flip(image, {2}), 1, {1, 2})), 1e-5);
}

TEST(Augment, IntegerShiftMatchesSlicingWithABlackBorder) {
  const int64_t h = 20, w = 24;
  const auto image = random_images(1, h, w, 6)[0];
  SampleAugment s;
  s.shift_x = 3.0 / static_cast<double>(w);   // 3 px right
  s.shift_y = -2.0 / static_cast<double>(h);  // 2 px up
  auto reference = torch::zeros_like(image);
  reference.narrow(1, 0, h - 2).narrow(2, 3, w - 3).copy_(image.narrow(1, 2, h - 2).narrow(2, 0, w - 3));
  EXPECT_LT(max_abs_diff(apply_one(image, s), reference), 1e-5);
}

// Bilinear sampling reproduces a linear ramp exactly, so rotation and scale can be checked against
// the analytic inverse map: out(x, y) = ramp(M^-1 (x, y)) in centred pixel coordinates.
TEST(Augment, RotationAndScaleFollowTheAnalyticMapOnARamp) {
  const int64_t side = 64;
  const double c = (side - 1) / 2.0;
  const auto coords = torch::arange(side, torch::kFloat64) - c;
  const auto xs = coords.view({1, side}).expand({side, side}), ys = coords.view({side, 1}).expand({side, side});
  // ramp(u, v) = 0.5 + 0.004 u + 0.002 v: inside [0,1] over the image.
  const auto ramp = [](const torch::Tensor& u, const torch::Tensor& v) { return 0.5 + 0.004 * u + 0.002 * v; };
  const auto image = ramp(xs, ys).to(torch::kFloat32).unsqueeze(0).expand({3, side, side}).contiguous();

  SampleAugment s;
  s.angle_deg = 30;
  s.scale = 1.25;
  const double a = 30 * std::numbers::pi / 180;
  // Forward: out = s R(a) in with R(a) = [[cos, sin], [-sin, cos]] (y down, counter-clockwise).
  const auto u = (xs * std::cos(a) - ys * std::sin(a)) / 1.25, v = (xs * std::sin(a) + ys * std::cos(a)) / 1.25;
  const auto expected = ramp(u, v);
  const auto got = apply_one(image, s)[1].to(torch::kFloat64);
  // Where the sampled point lies inside the image (away from the zero border).
  const auto inside = (u.abs() < c - 1) & (v.abs() < c - 1);
  EXPECT_GT(inside.sum().item<int64_t>(), side * side / 2);
  EXPECT_LT((got - expected).abs().masked_select(inside).max().item<double>(), 1e-5);
  // Outside the image the border is black.
  const auto outside = (u.abs() > c + 1) | (v.abs() > c + 1);
  EXPECT_GT(outside.sum().item<int64_t>(), 0);
  EXPECT_EQ(got.masked_select(outside).abs().max().item<double>(), 0.0);
}

// ---- photometric --------------------------------------------------------------------------------

// torchvision's formulas, in double precision, one pixel at a time.
std::vector<double> jitter_reference(const torch::Tensor& image, double b, double c, double s) {
  const auto in = image.to(torch::kFloat64).contiguous();
  const int64_t h = in.size(1), w = in.size(2), n = h * w;
  const double* p = in.data_ptr<double>();
  std::vector<double> x(p, p + 3 * n);
  const auto clamp01 = [](double v) { return v < 0 ? 0 : (v > 1 ? 1 : v); };
  const auto gray = [&](int64_t i) { return 0.299 * x[i] + 0.587 * x[n + i] + 0.114 * x[2 * n + i]; };
  for (double& v : x) v = clamp01(b * v);
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += gray(i);
  mean /= static_cast<double>(n);
  for (double& v : x) v = clamp01(c * v + (1 - c) * mean);
  for (int64_t i = 0; i < n; ++i) {
    const double g = gray(i);
    for (int ch = 0; ch < 3; ++ch) x[ch * n + i] = clamp01(s * x[ch * n + i] + (1 - s) * g);
  }
  return x;
}

TEST(Augment, ColorJitterMatchesTorchvisionFormulasInDouble) {
  const auto image = random_images(1, 9, 7, 7)[0];
  for (const auto& [b, c, s] : std::vector<std::tuple<double, double, double>>{
           {1.3, 1, 1}, {1, 0.7, 1}, {1, 1.4, 1}, {1, 1, 1.5}, {1, 1, 0.2}, {0.85, 1.2, 0.6}, {1.2, 0.8, 1.2}}) {
    SampleAugment p;
    p.brightness = b;
    p.contrast = c;
    p.saturation = s;
    const auto got = apply_one(image, p).to(torch::kFloat64).contiguous();
    const std::vector<double> ref = jitter_reference(image, b, c, s);
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(got.data_ptr<double>()[i] - ref[i]));
    EXPECT_LT(worst, 1e-5) << "b=" << b << " c=" << c << " s=" << s;
  }
}

TEST(Augment, GrayIsRec601LumaOnAllThreeChannels) {
  const auto image = random_images(1, 5, 6, 8)[0];
  SampleAugment s;
  s.gray = true;
  const auto got = apply_one(image, s).to(torch::kFloat64);
  const auto in = image.to(torch::kFloat64);
  for (int64_t y = 0; y < 5; ++y) {
    for (int64_t x = 0; x < 6; ++x) {
      const double luma = 0.299 * in[0][y][x].item<double>() + 0.587 * in[1][y][x].item<double>() +
                          0.114 * in[2][y][x].item<double>();
      for (int64_t ch = 0; ch < 3; ++ch) EXPECT_NEAR(got[ch][y][x].item<double>(), luma, 1e-6);
    }
  }
}

TEST(Augment, BlurKeepsAConstantAndTurnsADeltaIntoANormalisedGaussian) {
  SampleAugment s;
  s.blur_sigma = 1.7;
  const auto constant = torch::full({3, 30, 30}, 0.37f);
  EXPECT_LT(max_abs_diff(apply_one(constant, s), constant), 1e-6);

  const int64_t side = 41, mid = 20;
  auto delta = torch::zeros({3, side, side});
  delta.index_put_({torch::indexing::Slice(), mid, mid}, 1.0f);
  for (double sigma : {0.6, 1.5, 2.0}) {
    s.blur_sigma = sigma;
    const auto out = apply_one(delta, s).to(torch::kFloat64);
    for (int64_t ch = 0; ch < 3; ++ch) {
      const auto k = out[ch];
      EXPECT_NEAR(k.sum().item<double>(), 1.0, 1e-5) << sigma;
      EXPECT_LT(max_abs_diff(k, torch::flip(k, {0})), 1e-7);
      EXPECT_LT(max_abs_diff(k, torch::flip(k, {1})), 1e-7);
      EXPECT_LT(max_abs_diff(k, k.t()), 1e-7);
      // sigma from the second moment along x; truncation at 3 sigma takes ~1.5% off it.
      const auto offsets = torch::arange(side, torch::kFloat64) - mid;
      const double var_x = (k.sum(0) * offsets * offsets).sum().item<double>();
      EXPECT_NEAR(std::sqrt(var_x), sigma, 0.03 * sigma + 0.02) << sigma;
      // The kernel itself: exp(-d^2 / 2 sigma^2) over |d| <= ceil(3 sigma), normalised, as an
      // outer product.
      const int64_t radius = static_cast<int64_t>(std::ceil(3 * sigma));
      std::vector<double> g(side, 0.0);
      double total = 0;
      for (int64_t d = -radius; d <= radius; ++d) total += g[mid + d] = std::exp(-0.5 * d * d / (sigma * sigma));
      for (double& v : g) v /= total;
      const auto g1 = torch::tensor(g, torch::kFloat64);
      EXPECT_LT(max_abs_diff(k, torch::outer(g1, g1)), 1e-6) << sigma;
    }
  }
}

TEST(Augment, DownUpKeepsAConstantAndARampInTheInterior) {
  SampleAugment s;
  s.downup_size = 16;
  const auto constant = torch::full({3, 32, 32}, 0.61f);
  EXPECT_LT(max_abs_diff(apply_one(constant, s), constant), 1e-6);
  // Halving with area averages 2x2 blocks, whose means lie on the same plane; bilinear
  // (half-pixel centres) brings the plane back exactly except on the clamped outermost pixels.
  const auto coords = torch::arange(32, torch::kFloat32);
  const auto ramp = (0.1 + 0.01 * coords.view({1, 32}) + 0.02 * coords.view({32, 1})).expand({3, 32, 32}).contiguous();
  const auto out = apply_one(ramp, s);
  const auto interior = [](const torch::Tensor& t) { return t.narrow(1, 1, 30).narrow(2, 1, 30); };
  EXPECT_LT(max_abs_diff(interior(out), interior(ramp)), 1e-5);
  // Detail is lost: noise does not survive.
  const auto noise = random_images(1, 32, 32, 10)[0];
  EXPECT_GT(max_abs_diff(apply_one(noise, s), noise), 0.1);
  // Sizes at or above the image leave it alone.
  s.downup_size = 32;
  EXPECT_TRUE(torch::equal(apply_one(noise, s), noise));
}

// The changed pixels of `after` against `before`: their bounding box, and whether they fill it.
struct ChangedRegion {
  int64_t top, left, height, width, changed;
};
ChangedRegion changed_region(const torch::Tensor& before, const torch::Tensor& after) {
  const auto changed = (before != after).any(0);
  const auto where = torch::nonzero(changed);
  if (where.size(0) == 0) return {0, 0, 0, 0, 0};
  const auto ys = where.select(1, 0), xs = where.select(1, 1);
  const int64_t top = ys.min().item<int64_t>(), left = xs.min().item<int64_t>();
  return {top, left, ys.max().item<int64_t>() - top + 1, xs.max().item<int64_t>() - left + 1, where.size(0)};
}

TEST(Augment, ErasingChangesOnlyOneRectangleOfTheDrawnArea) {
  // Values in [0.1, 1): a black or noise fill is visible everywhere.
  const auto images = random_images(400, 48, 40, 11) * 0.9 + 0.1;
  AugmentOptions o;
  o.flip_p = 0;
  o.erase_p = 1;
  o.erase_area_min = 0.05;
  o.erase_area_max = 0.25;
  o.erase_aspect_min = 0.4;
  for (const std::string fill : {"noise", "zero"}) {
    o.erase_fill = fill;
    const auto out = Augmenter(o, 12).apply(images, 0);
    double area_lo = 1, area_hi = 0;
    for (int64_t i = 0; i < images.size(0); ++i) {
      const ChangedRegion r = changed_region(images[i], out[i]);
      // A filled rectangle: every pixel of the bounding box changed (noise equal to the image
      // to the last bit is practically impossible).
      ASSERT_EQ(r.changed, r.height * r.width) << fill << " sample " << i;
      const double area = static_cast<double>(r.changed) / (48.0 * 40.0);
      area_lo = std::min(area_lo, area);
      area_hi = std::max(area_hi, area);
      if (fill == "zero") {
        EXPECT_EQ(out[i].narrow(1, r.top, r.height).narrow(2, r.left, r.width).abs().max().item<float>(), 0.0f);
      }
    }
    // Rounding the sides moves the area a little around the drawn range.
    EXPECT_GE(area_lo, 0.05 * 0.8) << fill;
    EXPECT_LE(area_hi, 0.25 * 1.2) << fill;
    EXPECT_LT(area_lo, 0.08) << fill;  // the range is actually covered
    EXPECT_GT(area_hi, 0.20) << fill;
  }
  // The mean fill is the per-channel mean of the original image.
  SampleAugment s;
  s.erase = true;
  s.erase_area = 0.1;
  s.erase_aspect = 2;
  s.erase_top = 0.5;
  s.erase_left = 0.25;
  s.erase_fill = EraseFill::mean;
  const auto image = images[0];
  const auto out = apply_one(image, s);
  const auto box = erase_box(s, 48, 40);
  EXPECT_EQ(box.height, std::llround(std::sqrt(0.1 * 48 * 40 * 2)));
  EXPECT_EQ(box.width, std::llround(std::sqrt(0.1 * 48 * 40 / 2)));
  const ChangedRegion r = changed_region(image, out);
  EXPECT_EQ(r.top, box.top);
  EXPECT_EQ(r.left, box.left);
  EXPECT_EQ(r.height, box.height);
  EXPECT_EQ(r.width, box.width);
  for (int64_t ch = 0; ch < 3; ++ch) {
    const double mean = image[ch].to(torch::kFloat64).mean().item<double>();
    EXPECT_NEAR(out[ch][box.top][box.left].item<double>(), mean, 1e-5);
    EXPECT_NEAR(out[ch][box.top + box.height - 1][box.left + box.width - 1].item<double>(), mean, 1e-5);
  }
}

// ---- probabilities and ranges -------------------------------------------------------------------

TEST(Augment, EachOpFiresAtItsProbability) {
  // 4000 small images per op; an op fired where the sample changed.
  struct Case {
    const char* name;
    double p;
    void (*enable)(AugmentOptions&, double);
  };
  const Case cases[] = {
      {"flip", 0.5, [](AugmentOptions& o, double p) { o.flip_p = p; }},
      {"rotate", 0.3, [](AugmentOptions& o, double p) { o.rotate_p = p; }},
      {"scale", 0.2, [](AugmentOptions& o, double p) { o.scale_p = p; }},
      {"shift", 0.4, [](AugmentOptions& o, double p) { o.shift_p = p; }},
      {"color", 0.3, [](AugmentOptions& o, double p) { o.color_p = p; }},
      {"erase", 0.25, [](AugmentOptions& o, double p) { o.erase_p = p; }},
      {"downup", 0.1, [](AugmentOptions& o, double p) { o.downup_p = p; o.downup_min = 2; o.downup_max = 6; }},
      // sigma >= 0.5: far smaller sigmas leave float images bit-identical (taps below 1e-8).
      {"blur", 0.2, [](AugmentOptions& o, double p) { o.blur_p = p; o.blur_sigma_min = 0.5; }},
      {"gray", 0.1, [](AugmentOptions& o, double p) { o.gray_p = p; }},
  };
  const int64_t per_batch = 500, batches = 8, total = per_batch * batches;
  const auto images = random_images(per_batch, 8, 8, 13);
  for (const Case& c : cases) {
    AugmentOptions o;
    o.flip_p = 0;
    c.enable(o, c.p);
    const Augmenter aug(o, 99);
    int64_t fired = 0;
    for (int64_t b = 0; b < batches; ++b) {
      const auto out = aug.apply(images, b, b * per_batch);
      fired += (out != images).flatten(1).any(1).sum().item<int64_t>();
    }
    const double expected = c.p * total, sd = std::sqrt(total * c.p * (1 - c.p));
    EXPECT_NEAR(static_cast<double>(fired), expected, 3 * sd) << c.name;
  }
}

TEST(Augment, DrawnParametersCoverTheirRanges) {
  const AugmentOptions o = everything(1.0);
  const Augmenter aug(o, 21);
  std::set<int64_t> sizes;
  double angle_lo = 1e9, angle_hi = -1e9;
  for (int64_t k = 0; k < 4000; ++k) {
    const SampleAugment s = aug.draw(0, k);
    angle_lo = std::min(angle_lo, s.angle_deg);
    angle_hi = std::max(angle_hi, s.angle_deg);
    EXPECT_GE(s.scale, o.scale_min);
    EXPECT_LE(s.scale, o.scale_max);
    EXPECT_LE(std::abs(s.shift_x), o.max_shift);
    EXPECT_LE(std::abs(s.shift_y), o.max_shift);
    for (double f : {s.brightness, s.contrast, s.saturation}) {
      EXPECT_GE(f, 1 - 0.2);
      EXPECT_LE(f, 1 + 0.2);
    }
    EXPECT_GE(s.erase_area, o.erase_area_min);
    EXPECT_LE(s.erase_area, o.erase_area_max);
    EXPECT_GE(s.erase_aspect, o.erase_aspect_min - 1e-12);
    EXPECT_LE(s.erase_aspect, 1 / o.erase_aspect_min + 1e-12);
    EXPECT_GE(s.blur_sigma, o.blur_sigma_min);
    EXPECT_LE(s.blur_sigma, o.blur_sigma_max);
    sizes.insert(s.downup_size);
  }
  EXPECT_LT(angle_lo, -14);
  EXPECT_GT(angle_hi, 14);
  EXPECT_GE(angle_lo, -15);
  EXPECT_LE(angle_hi, 15);
  EXPECT_EQ(sizes.size(), 34u);  // 56..89 inclusive
  EXPECT_EQ(*sizes.begin(), 56);
  EXPECT_EQ(*sizes.rbegin(), 89);
}

TEST(Augment, OutputKeepsShapeDtypeDeviceAndUnitRange) {
  arcforge::data::SynthFaces synth(arcforge::data::SynthOptions{20, 0, 112});
  const auto faces = synth.render(torch::arange(8, torch::kInt64), torch::zeros({8}, torch::kInt64));
  AugmentOptions strong = everything(1.0);
  strong.brightness = strong.contrast = strong.saturation = 0.9;
  strong.max_rotate_deg = 45;
  for (const AugmentOptions& o : {augment_preset("article"), augment_preset("dali"), strong}) {
    const auto out = Augmenter(o, 4).apply(faces, 1);
    EXPECT_EQ(out.sizes(), faces.sizes());
    EXPECT_EQ(out.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(out.device().is_cpu());
    EXPECT_GE(out.min().item<float>(), 0.0f);
    EXPECT_LE(out.max().item<float>(), 1.0f);
  }
  const auto doubles = Augmenter(strong, 4).apply(faces.to(torch::kFloat64), 1);
  EXPECT_EQ(doubles.scalar_type(), torch::kFloat64);
  EXPECT_LT(max_abs_diff(doubles, Augmenter(strong, 4).apply(faces, 1)), 1e-4);
  const auto halves = Augmenter(strong, 4).apply(faces.to(torch::kHalf), 1);
  EXPECT_EQ(halves.scalar_type(), torch::kHalf);
  // Nothing to do: the batch comes back as it is.
  EXPECT_TRUE(torch::equal(Augmenter(augment_preset("none"), 0).apply(faces, 0), faces));
  // An empty batch is fine.
  EXPECT_EQ(Augmenter(strong, 0).apply(faces.narrow(0, 0, 0), 0).size(0), 0);
}

// The CPU kernels (float32) against the tensor-op path (float64 batches take it), one op at a time
// on every sample, then everything together.
TEST(Augment, CpuKernelsMatchTheTensorOpPath) {
  const auto images = smooth_images(16, 112, 23);
  const auto only = [](void (*enable)(AugmentOptions&)) {
    AugmentOptions o;
    o.flip_p = 0;
    enable(o);
    return o;
  };
  const std::vector<std::pair<const char*, AugmentOptions>> cases = {
      {"flip", only([](AugmentOptions& o) { o.flip_p = 1; })},
      {"rotate", only([](AugmentOptions& o) { o.rotate_p = 1, o.max_rotate_deg = 40; })},
      {"scale", only([](AugmentOptions& o) { o.scale_p = 1, o.scale_min = 0.6, o.scale_max = 1.5; })},
      {"shift", only([](AugmentOptions& o) { o.shift_p = 1, o.max_shift = 0.3; })},
      {"color", only([](AugmentOptions& o) { o.color_p = 1, o.brightness = o.contrast = o.saturation = 0.6; })},
      {"gray", only([](AugmentOptions& o) { o.gray_p = 1; })},
      {"erase noise", only([](AugmentOptions& o) { o.erase_p = 1; })},
      {"erase mean", only([](AugmentOptions& o) { o.erase_p = 1, o.erase_fill = "mean"; })},
      {"erase zero", only([](AugmentOptions& o) { o.erase_p = 1, o.erase_fill = "zero"; })},
      {"everything", everything(1.0)},
      {"article", augment_preset("article")},
      {"dali", augment_preset("dali")},
  };
  for (const auto& [name, options] : cases) {
    const Augmenter aug(options, 31);
    const auto kernels = aug.apply(images, 2);
    const auto tensor_ops = aug.apply(images.to(torch::kFloat64), 2);
    EXPECT_FALSE(torch::equal(kernels, images)) << name << ": nothing happened";
    EXPECT_LT(max_abs_diff(kernels.to(torch::kFloat64), tensor_ops), 2e-6) << name;
  }
}

TEST(Augment, RejectsBatchesThatAreNotFloatRgb) {
  const Augmenter aug(augment_preset("article"), 0);
  EXPECT_THROW(aug.apply(torch::rand({3, 8, 8}), 0), InputError);
  EXPECT_THROW(aug.apply(torch::rand({2, 1, 8, 8}), 0), InputError);
  EXPECT_THROW(aug.apply(torch::zeros({2, 3, 8, 8}, torch::kUInt8), 0), InputError);
  EXPECT_THROW(aug.apply(torch::Tensor(), 0), InputError);
  EXPECT_THROW(augment_batch(torch::rand({2, 3, 8, 8}), {SampleAugment{}}), InputError);
}

TEST(Augment, CudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto images = smooth_images(24, 112, 14);
  for (const AugmentOptions& o : {everything(0.7), augment_preset("article"), augment_preset("dali")}) {
    const Augmenter aug(o, 17);
    const auto cpu = aug.apply(images, 5);
    const auto cuda = aug.apply(images.to(torch::kCUDA), 5);
    EXPECT_TRUE(cuda.device().is_cuda());
    EXPECT_LT(max_abs_diff(cuda.cpu(), cpu), 1e-4);
  }
}

// Not a test of speed (tests never assert on time): prints figures for the notes. Run with
// --gtest_also_run_disabled_tests --gtest_filter='*Throughput*'.
TEST(Augment, DISABLED_ThroughputOnCpu) {
  const auto images = smooth_images(64, 112, 15);
  const auto measure = [&](const char* name, const AugmentOptions& o) {
    const Augmenter aug(o, 0);
    aug.apply(images, 0);  // warm-up
    const int reps = 10;
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) aug.apply(images, r + 1);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%-28s batch 64 of 112x112, %d threads: %8.0f images/s\n", name, at::get_num_threads(),
                64.0 * reps / seconds);
  };
  measure("article preset", augment_preset("article"));
  measure("dali preset", augment_preset("dali"));
  measure("every op, every sample", everything(1.0));
  const auto only = [](void (*enable)(AugmentOptions&)) {
    AugmentOptions o;
    o.flip_p = 0;
    enable(o);
    return o;
  };
  measure("flip only (p=1)", only([](AugmentOptions& o) { o.flip_p = 1; }));
  measure("rotate only (p=1)", only([](AugmentOptions& o) { o.rotate_p = 1; }));
  measure("color only (p=1)", only([](AugmentOptions& o) { o.color_p = 1; }));
  measure("erase only (p=1, noise)", only([](AugmentOptions& o) { o.erase_p = 1; }));
  measure("downup only (p=1)", only([](AugmentOptions& o) { o.downup_p = 1; }));
  measure("blur only (p=1)", only([](AugmentOptions& o) { o.blur_p = 1; }));
  measure("gray only (p=1)", only([](AugmentOptions& o) { o.gray_p = 1; }));
}

// ---- the preview command ------------------------------------------------------------------------

#ifdef ARCFORGE_CLI
using arcforge::test::run_cli;

std::string temp_png(const char* name) {
  return (std::filesystem::temp_directory_path() / (std::string("arcforge_augment_") + name + ".png")).string();
}

TEST(Augment, PreviewCommandWritesTheGrid) {
  if (!std::filesystem::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  const std::string out = temp_png("synth");
  const std::string npy = out + ".npy";
  std::string output;
  ASSERT_EQ(run_cli("augment-preview --preset article --set rotate_p=1 --set erase_fill=noise --count 5 "
                    "--variants 2 --synth-identities 3 --seed 4 --threads 2 --json --out " + out + " --npy " + npy,
                    &output),
            0)
      << output;
  const nlohmann::json j = nlohmann::json::parse(output);
  EXPECT_EQ(j.at("out"), out);
  EXPECT_EQ(j.at("images").get<int64_t>(), 5);
  const auto grid = arcforge::image::decode_file(out);
  // 4 px gaps around 112 px tiles: 5 columns, 1 + 2 rows.
  EXPECT_EQ(grid.width, 4 + 5 * (112 + 4));
  EXPECT_EQ(grid.height, 4 + 3 * (112 + 4));
  EXPECT_EQ(grid.channels, 3);
  // The top-left tile is the first synth render (rounded to bytes).
  arcforge::data::SynthFaces synth(arcforge::data::SynthOptions{3, 0, 112});
  const auto first = synth.render(torch::zeros({1}, torch::kInt64), torch::zeros({1}, torch::kInt64))[0];
  const auto ref = first.mul(255).round().to(torch::kUInt8);
  int worst = 0;
  for (int y = 0; y < 112; y += 7)
    for (int x = 0; x < 112; x += 5)
      for (int c = 0; c < 3; ++c)
        worst = std::max(worst, std::abs(int(grid.at(4 + x, 4 + y, c)) - int(ref[c][y][x].item<uint8_t>())));
  EXPECT_LE(worst, 1);
  std::filesystem::remove(out);

  // The raw rows are exactly what the augmenter gives in this process: row r is batch index r.
  const arcforge::NpyArray rows = arcforge::read_npy(npy);
  std::filesystem::remove(npy);
  ASSERT_EQ(rows.shape, (std::vector<int64_t>{2, 5, 3, 112, 112}));
  const auto sources = synth.render(torch::tensor({0, 1, 2, 0, 1}, torch::kInt64), torch::tensor({0, 0, 0, 1, 1}, torch::kInt64));
  AugmentOptions o = augment_preset("article");
  o.rotate_p = 1;
  o.erase_fill = "noise";
  const Augmenter aug(o, 4);
  const auto expected = torch::stack({aug.apply(sources, 0), aug.apply(sources, 1)});
  const auto got = torch::from_blob(const_cast<float*>(rows.data.data()), {2, 5, 3, 112, 112}, torch::kFloat32);
  EXPECT_TRUE(torch::equal(got, expected)) << max_abs_diff(got, expected);

  // Bad input: one clear error line, non-zero exit.
  EXPECT_NE(run_cli("augment-preview --set rotate=1 --out " + out), 0);
  EXPECT_NE(run_cli("augment-preview --set rotate_p=2 --out " + out), 0);
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(Augment, PreviewCommandReadsAFolderOfPhotos) {
  const char* env = std::getenv("ARCFORGE_SHARED_DIR");
  const std::string shared = env ? env : ARCFORGE_SOURCE_DIR "/../shared";
  const std::string lfw = shared + "/faces/lfw/images";
  if (!std::filesystem::exists(lfw)) GTEST_SKIP() << "shared LFW images not found at " << lfw;
  if (!std::filesystem::exists(ARCFORGE_CLI)) GTEST_SKIP() << "CLI not built: " << ARCFORGE_CLI;
  const std::string out = temp_png("lfw");
  std::string output;
  ASSERT_EQ(run_cli("augment-preview --preset dali --count 3 --variants 1 --threads 2 --json --images " + lfw +
                        " --out " + out,
                    &output),
            0)
      << output;
  EXPECT_EQ(nlohmann::json::parse(output).at("images").get<int64_t>(), 3);
  const auto grid = arcforge::image::decode_file(out);
  EXPECT_EQ(grid.width, 4 + 3 * (112 + 4));
  EXPECT_EQ(grid.height, 4 + 2 * (112 + 4));
  std::filesystem::remove(out);
}
#endif

}  // namespace
