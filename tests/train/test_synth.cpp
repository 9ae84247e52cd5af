// Tests for the `synth` dataset: the public contract (shape, range, determinism, held-out ids,
// pairs, input convention), that identity outweighs nuisance, and the renderer's compositing,
// shading, resampling and noise against a double-precision re-computation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>
#include <vector>

#include "arcforge/common/error.hpp"
#include "train/data/synth.hpp"
#include "train/data/synth_random.hpp"
#include "train/data/synth_render.hpp"
#include "train/data/synth_scene.hpp"

namespace {

using arcforge::data::make_heldout_pairs;
using arcforge::data::SynthFaces;
using arcforge::data::SynthOptions;
using arcforge::data::SynthPair;
using arcforge::data::to_network_input;

torch::Tensor longs(const std::vector<int64_t>& v) {
  return torch::tensor(v, torch::TensorOptions().dtype(torch::kInt64));
}

// Cosine similarity of image pairs (a[i], b[i]) after subtracting each image's own mean, in double.
std::vector<double> centred_cosines(const torch::Tensor& a, const torch::Tensor& b) {
  auto x = a.to(torch::kFloat64).flatten(1);
  auto y = b.to(torch::kFloat64).flatten(1);
  x = x - x.mean(1, true);
  y = y - y.mean(1, true);
  const auto c = ((x * y).sum(1) / (x.norm(2, 1) * y.norm(2, 1))).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

TEST(Synth, RendersFloatRgbInUnitRangeOfTheRequestedSize) {
  SynthFaces synth(SynthOptions{50, 3, 112});
  const auto images = synth.render(longs({0, 1, 2, 49, SynthFaces::heldout_identity(5)}), longs({0, 1, 2, 3, 4}));
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{5, 3, 112, 112}));
  EXPECT_EQ(images.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(images.device().is_cpu());
  EXPECT_GE(images.min().item<float>(), 0.0f);
  EXPECT_LE(images.max().item<float>(), 1.0f);
  // Not a blank canvas: a face has real contrast.
  EXPECT_GT(images.std().item<float>(), 0.05f);

  SynthFaces small(SynthOptions{10, 0, 48});
  EXPECT_EQ(small.render(longs({1, 2}), longs({0, 0})).sizes(), (std::vector<int64_t>{2, 3, 48, 48}));
  EXPECT_EQ(small.render(longs({}), longs({})).sizes(), (std::vector<int64_t>{0, 3, 48, 48}));
}

TEST(Synth, ImageDependsOnlyOnSeedIdentityAndSampleNotOnTheBatch) {
  SynthFaces synth(SynthOptions{100, 7, 112});
  // A batch big enough to contain occluders, glasses, beards, long hair and blur somewhere.
  std::vector<int64_t> ids, samples;
  for (int64_t i = 0; i < 24; ++i) {
    ids.push_back(i % 3 == 0 ? SynthFaces::heldout_identity(i) : (i * 37) % 100);
    samples.push_back(i * 1009 + 5);
  }
  const auto batch = synth.render(longs(ids), longs(samples));

  // The same requests shuffled into a differently sized batch, with strangers mixed in.
  std::vector<int64_t> order = {17, 3, 22, 0, 9, 14, 5, 20, 11};
  std::vector<int64_t> ids2 = {42}, samples2 = {999};
  for (int64_t k : order) {
    ids2.push_back(ids[k]);
    samples2.push_back(samples[k]);
  }
  ids2.push_back(SynthFaces::heldout_identity(777));
  samples2.push_back(1);
  const auto shuffled = synth.render(longs(ids2), longs(samples2));
  for (size_t j = 0; j < order.size(); ++j)
    EXPECT_TRUE(torch::equal(shuffled[j + 1], batch[order[j]])) << "request " << order[j];

  // Alone.
  for (int64_t k : {0, 7, 22}) {
    const auto alone = synth.render(longs({ids[k]}), longs({samples[k]}));
    EXPECT_TRUE(torch::equal(alone[0], batch[k])) << "request " << k;
  }
}

TEST(Synth, SeedsChangeIdentitiesAndSamplesChangeNuisance) {
  SynthFaces seed0(SynthOptions{10, 0, 64});
  SynthFaces seed1(SynthOptions{10, 1, 64});
  const auto a = seed0.render(longs({3, 3}), longs({0, 1}));
  const auto b = seed1.render(longs({3}), longs({0}));
  EXPECT_GT((a[0] - b[0]).abs().mean().item<float>(), 0.05f);  // another dataset
  EXPECT_GT((a[0] - a[1]).abs().mean().item<float>(), 0.02f);  // another photo
}

TEST(Synth, HeldOutIdentitiesAreDisjointFromTrainingIds) {
  const int64_t max_training = int64_t{1} << 40;  // the largest num_identities accepted, exclusive
  std::set<int64_t> seen;
  for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{999}, int64_t{123456789}}) {
    const int64_t id = SynthFaces::heldout_identity(k);
    EXPECT_GE(id, max_training);
    EXPECT_TRUE(seen.insert(id).second);
  }
  EXPECT_THROW(SynthFaces::heldout_identity(-1), arcforge::InputError);
  EXPECT_THROW(SynthFaces(SynthOptions{max_training, 0, 112}), arcforge::ConfigError);

  SynthFaces synth(SynthOptions{10, 0, 32});
  EXPECT_THROW(synth.render(longs({10}), longs({0})), arcforge::InputError);  // not a training id
  EXPECT_THROW(synth.render(longs({-1}), longs({0})), arcforge::InputError);
  EXPECT_THROW(synth.render(longs({1, 2}), longs({0})), arcforge::InputError);
  EXPECT_THROW(synth.render(torch::zeros({2}), longs({0, 1})), arcforge::InputError);
  EXPECT_THROW(SynthFaces(SynthOptions{10, 0, 8}), arcforge::ConfigError);
}

// The point of the dataset: two photos of one person are more alike than photos of two people,
// yet not identical. Over 128 held-out pairs the mean cosine gap is about 0.15 (it varies by
// about 0.05 with the choice of pairs); raw pixels still verify only ~62% of pairs correctly.
TEST(Synth, SameIdentityPairsAreCloserThanDifferentOnesButNotEqual) {
  SynthFaces synth(SynthOptions{1000, 11, 112});
  const auto pairs = make_heldout_pairs(128, 64, 5);
  std::vector<int64_t> ia, sa, ib, sb;
  for (const SynthPair& p : pairs) {
    ia.push_back(p.identity_a);
    sa.push_back(p.sample_a);
    ib.push_back(p.identity_b);
    sb.push_back(p.sample_b);
  }
  const auto a = synth.render(longs(ia), longs(sa));
  const auto b = synth.render(longs(ib), longs(sb));
  const auto cosines = centred_cosines(a, b);
  const auto change = (a - b).abs().flatten(1).mean(1).contiguous();
  double same = 0, different = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    (pairs[i].same ? same : different) += cosines[i] / 64.0;
    if (pairs[i].same) {
      EXPECT_GT(change[i].item<float>(), 0.01f) << "pair " << i;
    }
  }
  EXPECT_GT(same - different, 0.05) << "same " << same << " different " << different;
}

TEST(Synth, HeldOutPairsAreBalancedValidAndSeeded) {
  const auto pairs = make_heldout_pairs(200, 20, 9);
  ASSERT_EQ(pairs.size(), 200u);
  int same = 0;
  const int64_t lo = SynthFaces::heldout_identity(0), hi = SynthFaces::heldout_identity(20);
  for (const SynthPair& p : pairs) {
    same += p.same;
    for (int64_t id : {p.identity_a, p.identity_b}) {
      EXPECT_GE(id, lo);
      EXPECT_LT(id, hi);
    }
    if (p.same) {
      EXPECT_EQ(p.identity_a, p.identity_b);
      EXPECT_NE(p.sample_a, p.sample_b);
    } else {
      EXPECT_NE(p.identity_a, p.identity_b);
    }
  }
  EXPECT_EQ(same, 100);

  auto key = [](const std::vector<SynthPair>& v) {
    std::vector<int64_t> k;
    for (const SynthPair& p : v) k.insert(k.end(), {p.identity_a, p.sample_a, p.identity_b, p.sample_b, p.same});
    return k;
  };
  EXPECT_EQ(key(pairs), key(make_heldout_pairs(200, 20, 9)));
  EXPECT_NE(key(pairs), key(make_heldout_pairs(200, 20, 10)));
  EXPECT_TRUE(make_heldout_pairs(0, 2, 0).empty());
  EXPECT_THROW(make_heldout_pairs(10, 1, 0), arcforge::ConfigError);
  EXPECT_THROW(make_heldout_pairs(-1, 5, 0), arcforge::ConfigError);
}

TEST(Synth, NetworkInputIsTheInsightFaceConvention) {
  auto x = torch::rand({2, 3, 5, 5}, torch::kFloat32);
  x[0][0][0][0] = 0.0f;
  x[0][0][0][1] = 1.0f;
  x[0][0][0][2] = 0.5f;
  const auto y = to_network_input(x);
  auto xa = x.accessor<float, 4>();
  auto ya = y.accessor<float, 4>();
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t j = 0; j < 5; ++j)
          EXPECT_NEAR(ya[n][c][i][j], (255.0 * xa[n][c][i][j] - 127.5) / 127.5, 1e-6);
  EXPECT_FLOAT_EQ(ya[0][0][0][0], -1.0f);
  EXPECT_FLOAT_EQ(ya[0][0][0][1], 1.0f);
  EXPECT_NEAR(ya[0][0][0][2], 0.0f, 1e-6);
  EXPECT_GE(y.min().item<float>(), -1.0f);
  EXPECT_LE(y.max().item<float>(), 1.0f);
}

// The one-pass CPU conversions give exactly what the tensor-op formulas give (the loader's and
// synth's batches must stay bit-identical, see TrainerRealData.PackedSynthRec...), over every
// byte value and over arbitrary [0,1] floats (augmented pixels), in a batch big enough to be split
// across threads.
TEST(Synth, OnePassPixelConversionsEqualTheTensorOps) {
  using arcforge::data::to_network_input_;
  using arcforge::data::uint8_to_unit;
  auto bytes = torch::arange(0, 256, torch::kInt64).to(torch::kUInt8).repeat({300, 3, 1});  // [300,3,256]
  const auto unit = uint8_to_unit(bytes);
  ASSERT_EQ(unit.scalar_type(), torch::kFloat32);
  ASSERT_EQ(unit.sizes(), bytes.sizes());
  EXPECT_TRUE(torch::equal(unit, bytes.to(torch::kFloat).div_(255.0)));
  EXPECT_TRUE(torch::equal(unit, arcforge::data::to_uint8_levels(unit)));  // already on the levels

  torch::manual_seed(5);
  auto x = torch::rand({64, 3, 112, 112});
  x.view(-1).slice(0, 0, 3) = torch::tensor({0.0f, 1.0f, 0.5f});
  const auto expected = (x * 255.0 - 127.5) / 127.5;
  EXPECT_TRUE(torch::equal(to_network_input(x), expected));
  auto owned = x.clone();
  const void* storage = owned.data_ptr();
  EXPECT_TRUE(torch::equal(to_network_input_(owned), expected));
  EXPECT_EQ(owned.data_ptr(), storage);  // in place
  // Non-contiguous and float64 inputs take the tensor-op path and agree too.
  const auto strided = x.transpose(2, 3);
  EXPECT_TRUE(torch::equal(to_network_input(strided), (strided * 255.0 - 127.5) / 127.5));
  auto as_double = x.to(torch::kFloat64);
  EXPECT_TRUE(torch::equal(to_network_input(as_double), (as_double * 255.0 - 127.5) / 127.5));
  EXPECT_THROW(uint8_to_unit(x), c10::Error);
}

TEST(SynthRandom, CounterStreamsAreUniformNormalAndIndependent) {
  using namespace arcforge::data::synth;
  CounterRng u(stream_key(1, Purpose::identity, 5));
  CounterRng g(stream_key(1, Purpose::identity, 6));
  double su = 0, su2 = 0, sg = 0, sg2 = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double a = u.uniform(), b = g.normal();
    ASSERT_GE(a, 0.0);
    ASSERT_LT(a, 1.0);
    su += a, su2 += a * a, sg += b, sg2 += b * b;
  }
  EXPECT_NEAR(su / n, 0.5, 0.01);
  EXPECT_NEAR(su2 / n - 0.25, 1.0 / 12.0, 0.005);
  EXPECT_NEAR(sg / n, 0.0, 0.03);
  EXPECT_NEAR(sg2 / n, 1.0, 0.04);
  // A stream restarts identically; neighbouring keys share nothing.
  CounterRng again(stream_key(1, Purpose::identity, 5));
  CounterRng other(stream_key(1, Purpose::nuisance, 5));
  EXPECT_EQ(again.next_u64(), CounterRng(stream_key(1, Purpose::identity, 5)).next_u64());
  EXPECT_NE(CounterRng(stream_key(1, Purpose::identity, 5)).next_u64(), other.next_u64());
  EXPECT_NE(stream_key(0, Purpose::nuisance, 1, 2), stream_key(0, Purpose::nuisance, 2, 1));
}

// --- The renderer against a straightforward double-precision re-computation ------------------

namespace synth = arcforge::data::synth;

std::vector<float> profile(int64_t s, double (*f)(double)) {
  std::vector<float> v(s);
  for (int64_t i = 0; i < s; ++i) v[i] = static_cast<float>(f((2.0 * i + 1.0) / s - 1.0));
  return v;
}

synth::Factor full_window(synth::Factor f, int64_t s) {
  f.y0 = f.x0 = 0;
  f.y1 = f.x1 = s;
  return f;
}

// Scene with a background, a soft band, a shape with a complemented band cut out of it, an
// absent layer, a layer only one image draws, lighting, a rotation/zoom and noise; each image
// gets its own variations.
synth::Scene test_scene(int64_t s, int variant) {
  synth::Scene scene;
  synth::Factor disc;
  disc.kind = synth::Factor::Kind::shape;
  const double cx = 0.1 * variant;
  for (int64_t i = 0; i < s; ++i) {
    const double c = (2.0 * i + 1.0) / s - 1.0;
    disc.row.push_back(static_cast<float>(std::abs(c - cx)));
    const double t = c / 0.6;
    const double w = 0.5 * std::sqrt(std::max(0.0, 1.0 - t * t));
    disc.col_a.push_back(static_cast<float>(0.5 + 10.0 * w - 3.0 * std::abs(t) * (std::abs(t) > 1)));
    disc.col_b.push_back(10.0f);
  }
  disc = full_window(disc, s);
  // The disc is exactly zero above row s/5 and below row 4s/5 (|t| > 1 there): give it that
  // window so the test also covers windowed evaluation.
  disc.y0 = s / 5;
  disc.y1 = s - s / 5;
  synth::Factor band;
  band.kind = synth::Factor::Kind::band;
  band.row = profile(s, [](double x) { return 0.5 + 3.0 * x; });
  band.col_a = profile(s, [](double y) { return 0.2 * y; });
  band = full_window(band, s);
  synth::Factor cut = band;
  cut.complement = true;
  cut.row = profile(s, [](double x) { return 8.0 * (x - 0.3); });

  scene.layers.push_back({"absent", {1.0, 0.0, 0.0}, 0.0, {band}});
  // Drawn by one image of three: rendered for that image alone, then scattered back.
  scene.layers.push_back({"rare", {0.0, 1.0, 0.5}, variant == 1 ? 0.8 : 0.0, {cut}});
  scene.layers.push_back({"disc", {0.9, 0.8 - 0.1 * variant, 0.1}, 1.0, {disc, cut}});
  scene.layers.push_back({"band", {0.1, 0.3, 0.9}, 0.7, {band}});
  scene.layers.push_back({"background", {0.4, 0.5 + 0.1 * variant, 0.2}, 1.0, {}});
  scene.light_row = profile(s, [](double x) { return 0.3 * x; });
  scene.light_col = profile(s, [](double y) { return -0.2 * y; });
  scene.depth_row = profile(s, [](double x) { return -0.5 * x * x; });
  scene.depth_col = profile(s, [](double y) { return 0.5 * (1.0 - y * y); });
  scene.depth_floor = 0.05;
  scene.ambient = 0.4;
  scene.diffuse = 0.8;
  const double angle = 0.2 + 0.1 * variant, zoom = 1.1;
  for (int64_t i = 0; i < s; ++i) {
    const double c = (2.0 * i + 1.0) / s - 1.0;
    scene.gx_row.push_back(static_cast<float>(std::cos(angle) * c / zoom));
    scene.gx_col.push_back(static_cast<float>(std::sin(angle) * c / zoom + 0.05));
    scene.gy_row.push_back(static_cast<float>(-std::sin(angle) * c / zoom));
    scene.gy_col.push_back(static_cast<float>(std::cos(angle) * c / zoom));
  }
  scene.noise_sigma = 0.05 * variant;
  scene.noise_offset = 12345 + 777 * variant;
  return scene;
}

double clamp01(double v) { return std::min(1.0, std::max(0.0, v)); }

// Canvas pixel (c, y, x) of a scene before resampling: composite, then shade.
std::vector<double> reference_canvas(const synth::Scene& scene, int64_t s) {
  std::vector<double> canvas(3 * s * s);
  for (int64_t y = 0; y < s; ++y)
    for (int64_t x = 0; x < s; ++x) {
      double remaining = 1.0, rgb[3] = {0, 0, 0};
      for (const synth::Layer& layer : scene.layers) {
        double coverage = 1.0;
        for (const synth::Factor& f : layer.factors) {
          double v = f.kind == synth::Factor::Kind::shape ? double(f.col_a[y]) - double(f.col_b[y]) * f.row[x]
                                                          : double(f.row[x]) + f.col_a[y];
          v = clamp01(v);
          coverage *= f.complement ? 1.0 - v : v;
        }
        const double weight = coverage * layer.opacity * remaining;
        remaining -= weight;
        for (int c = 0; c < 3; ++c) rgb[c] += weight * layer.color[c];
      }
      const double depth = std::sqrt(std::max(double(scene.depth_row[x]) + scene.depth_col[y], scene.depth_floor));
      const double shade = scene.ambient + scene.diffuse * clamp01(double(scene.light_row[x]) + scene.light_col[y] + depth);
      for (int c = 0; c < 3; ++c) canvas[(c * s + y) * s + x] = rgb[c] * shade;
    }
  return canvas;
}

// Bilinear sampling with border padding, grid_sample's align_corners=false convention.
double sample_bilinear(const std::vector<double>& canvas, int64_t s, int c, double gx, double gy) {
  auto pixel = [&](double g) { return std::min(double(s - 1), std::max(0.0, ((g + 1.0) * s - 1.0) / 2.0)); };
  const double px = pixel(gx), py = pixel(gy);
  const int64_t x0 = static_cast<int64_t>(std::floor(px)), y0 = static_cast<int64_t>(std::floor(py));
  const int64_t x1 = std::min(x0 + 1, s - 1), y1 = std::min(y0 + 1, s - 1);
  const double fx = px - x0, fy = py - y0;
  auto at = [&](int64_t y, int64_t x) { return canvas[(c * s + y) * s + x]; };
  return (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1));
}

TEST(SynthRender, MatchesADoublePrecisionReference) {
  const int64_t s = 40;
  std::vector<synth::Scene> scenes = {test_scene(s, 0), test_scene(s, 1), test_scene(s, 2)};
  const auto bank = synth::make_noise_bank(s);
  const auto images = synth::render_scenes(scenes, s, bank, torch::kCPU);
  ASSERT_EQ(images.sizes(), (std::vector<int64_t>{3, 3, s, s}));
  const int64_t windows = bank.numel() - 3 * s * s + 1;
  auto out = images.accessor<float, 4>();
  auto noise = bank.accessor<float, 1>();
  double worst = 0;
  for (int64_t n = 0; n < 3; ++n) {
    const synth::Scene& scene = scenes[n];
    const auto canvas = reference_canvas(scene, s);
    const int64_t offset = static_cast<int64_t>(scene.noise_offset % static_cast<uint64_t>(windows));
    for (int c = 0; c < 3; ++c)
      for (int64_t y = 0; y < s; ++y)
        for (int64_t x = 0; x < s; ++x) {
          const double gx = double(scene.gx_row[x]) + scene.gx_col[y];
          const double gy = double(scene.gy_row[x]) + scene.gy_col[y];
          const double expected = clamp01(sample_bilinear(canvas, s, c, gx, gy) +
                                          scene.noise_sigma * noise[offset + (c * s + y) * s + x]);
          worst = std::max(worst, std::abs(expected - out[n][c][y][x]));
        }
  }
  EXPECT_LT(worst, 2e-5);
}

TEST(SynthRender, RefusesScenesWithDifferentLayerLists) {
  const int64_t s = 16;
  std::vector<synth::Scene> scenes = {test_scene(s, 0), test_scene(s, 1)};
  scenes[1].layers.pop_back();
  EXPECT_THROW(synth::render_scenes(scenes, s, synth::make_noise_bank(s), torch::kCPU), std::logic_error);
}

TEST(Synth, CudaMatchesCpuWhenAvailable) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  SynthFaces synth(SynthOptions{100, 2, 112});
  const auto ids = longs({0, 5, 99, SynthFaces::heldout_identity(3)});
  const auto samples = longs({1, 2, 3, 4});
  const auto cpu = synth.render(ids, samples);
  const auto cuda = synth.render(ids, samples, torch::kCUDA);
  ASSERT_TRUE(cuda.device().is_cuda());
  EXPECT_LT((cuda.cpu() - cpu).abs().max().item<float>(), 1e-3f);
}

// Not a test of speed (tests never assert on time): prints where a batch's time goes, scene
// building (CPU, per image) against the tensor rendering, for the notes. Run with
// --gtest_also_run_disabled_tests --gtest_filter='*Throughput*'.
TEST(Synth, DISABLED_ThroughputOnCpu) {
  namespace synth = arcforge::data::synth;
  constexpr int64_t kBatch = 128, kSize = 112;
  const auto bank = synth::make_noise_bank(kSize);
  const auto build = [&](int64_t first) {
    std::vector<synth::Scene> scenes(kBatch);
    for (int64_t i = 0; i < kBatch; ++i)
      scenes[i] = synth::build_scene(synth::sample_identity(3, i % 100), synth::sample_nuisance(3, i % 100, first + i), kSize);
    return scenes;
  };
  synth::render_scenes(build(0), kSize, bank, torch::kCPU);  // warm-up
  const int reps = 5;
  double build_s = 0, render_s = 0;
  for (int r = 1; r <= reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto scenes = build(r * kBatch);
    const auto t1 = std::chrono::steady_clock::now();
    synth::render_scenes(scenes, kSize, bank, torch::kCPU);
    const auto t2 = std::chrono::steady_clock::now();
    build_s += std::chrono::duration<double>(t1 - t0).count();
    render_s += std::chrono::duration<double>(t2 - t1).count();
  }
  std::printf("synth batch %lld of %lldx%lld: scenes %.2f ms (1 thread), render %.2f ms (%d threads)\n",
              static_cast<long long>(kBatch), static_cast<long long>(kSize), static_cast<long long>(kSize),
              1e3 * build_s / reps, 1e3 * render_s / reps, at::get_num_threads());
}

}  // namespace
