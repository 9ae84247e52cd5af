// Draws identity parameters from (seed, identity) and nuisance from (seed, identity, sample).
#include "train/data/synth_params.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "train/data/synth_random.hpp"

namespace arcforge::data::synth {

// Nuisance strengths: the knobs that set how hard recognition is. Raising them makes same-identity
// pairs less alike; identity parameters below are not affected.
namespace tuning {
constexpr double kRollStdDeg = 8.0;          // in-plane rotation, clipped at 2.5 sigma
constexpr double kYawMax = 0.7;              // yaw in [-kYawMax, kYawMax] (1 = strong profile-ish)
constexpr double kScaleStd = 0.07;           // log-zoom sigma
constexpr double kShiftStd = 0.05;           // shift sigma, canvas units (canvas is 2 wide)
constexpr double kExpression = 1.0;          // scales smile, mouth opening, gaze, brow raise
constexpr double kLightDirectionMax = 0.85;  // sideways component of the light direction
constexpr double kAmbientMin = 0.25, kAmbientMax = 0.6;
constexpr double kColorCastStd = 0.07;        // per-channel multiplicative cast
constexpr double kBrightnessMin = 0.7, kBrightnessMax = 1.2;
constexpr double kGrayscaleProb = 0.08;
constexpr double kOcclusionProb = 0.25;
constexpr double kBlurProb = 0.5;
constexpr double kBlurMaxPixels = 3.0;       // extra edge width of a blurred sample
constexpr double kNoiseSigmaMax = 0.06;      // in [0, 1] intensity units
}  // namespace tuning

namespace {

constexpr double kPi = std::numbers::pi;

Rgb lerp(const Rgb& a, const Rgb& b, double t) {
  return {a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t};
}

Rgb scaled(const Rgb& c, double s) { return {c[0] * s, c[1] * s, c[2] * s}; }

Rgb clamp01(const Rgb& c) {
  return {std::clamp(c[0], 0.0, 1.0), std::clamp(c[1], 0.0, 1.0), std::clamp(c[2], 0.0, 1.0)};
}

Rgb jitter(CounterRng& rng, const Rgb& c, double sigma) {
  return clamp01({c[0] + sigma * rng.clipped_normal(2.5), c[1] + sigma * rng.clipped_normal(2.5),
                  c[2] + sigma * rng.clipped_normal(2.5)});
}

// Picks one entry of a palette with the given weights (they need not sum to 1).
template <size_t N>
Rgb pick(CounterRng& rng, const std::array<Rgb, N>& colors, const std::array<double, N>& weights) {
  double total = 0;
  for (double w : weights) total += w;
  double u = rng.uniform() * total;
  for (size_t i = 0; i < N; ++i) {
    if (u < weights[i]) return colors[i];
    u -= weights[i];
  }
  return colors[N - 1];
}

Rgb random_color(CounterRng& rng) { return {rng.uniform(), rng.uniform(), rng.uniform()}; }

Rgb skin_tone(CounterRng& rng) {
  // Light to dark along measured-looking stops; the position is the main identity cue in colour.
  static const std::array<Rgb, 5> stops = {{{0.97, 0.84, 0.74},
                                            {0.92, 0.73, 0.60},
                                            {0.78, 0.56, 0.41},
                                            {0.56, 0.38, 0.26},
                                            {0.34, 0.22, 0.15}}};
  const double t = rng.uniform() * (stops.size() - 1);
  const size_t i = std::min(static_cast<size_t>(t), stops.size() - 2);
  Rgb c = lerp(stops[i], stops[i + 1], t - i);
  const double redness = 0.04 * rng.clipped_normal(2.0);
  c[0] += redness;
  c[2] -= redness * 0.5;
  return jitter(rng, c, 0.015);
}

}  // namespace

IdentityParams sample_identity(uint64_t seed, int64_t identity) {
  CounterRng rng(stream_key(seed, Purpose::identity, static_cast<uint64_t>(identity)));
  IdentityParams p{};
  p.face_half_width = rng.uniform(0.50, 0.64);
  p.face_top = rng.uniform(0.80, 0.95);
  p.face_chin = rng.uniform(0.76, 0.94);
  p.face_center_y = rng.uniform(-0.05, 0.05);
  p.jaw_power = rng.uniform(1.5, 4.0);
  p.chin_taper = rng.uniform(0.45, 0.9);

  p.eye_half_spacing = rng.uniform(0.22, 0.31);
  p.eye_y = p.face_center_y + rng.uniform(-0.20, -0.06);
  p.eye_half_width = rng.uniform(0.075, 0.11);
  p.eye_aspect = rng.uniform(0.40, 0.62);
  p.iris_ratio = rng.uniform(0.42, 0.60);
  static const std::array<Rgb, 6> iris_colors = {{{0.30, 0.17, 0.08},
                                                  {0.16, 0.09, 0.05},
                                                  {0.48, 0.38, 0.18},
                                                  {0.28, 0.48, 0.30},
                                                  {0.30, 0.50, 0.78},
                                                  {0.48, 0.54, 0.60}}};
  p.iris = jitter(rng, pick(rng, iris_colors, {{0.3, 0.25, 0.12, 0.1, 0.15, 0.08}}), 0.04);

  p.brow_gap = rng.uniform(0.08, 0.14);
  p.brow_length = rng.uniform(1.1, 1.6);
  p.brow_thickness = rng.uniform(0.018, 0.045);
  p.brow_slope = rng.uniform(-0.25, 0.35);
  p.brow_arch = rng.uniform(0.0, 0.04);
  p.brow_inset = rng.uniform(-0.02, 0.03);

  p.nose_length = rng.uniform(0.20, 0.32);
  p.nose_half_width = rng.uniform(0.055, 0.095);

  p.mouth_gap = rng.uniform(0.12, 0.21);
  p.mouth_half_width = rng.uniform(0.13, 0.22);
  p.upper_lip = rng.uniform(0.012, 0.032);
  p.lower_lip = rng.uniform(0.02, 0.05);

  p.ear_half_height = rng.uniform(0.09, 0.15);
  p.ear_aspect = rng.uniform(0.45, 0.65);
  p.ear_drop = rng.uniform(0.03, 0.12);
  p.neck_half_width = p.face_half_width * rng.uniform(0.45, 0.62);

  p.skin = skin_tone(rng);
  static const std::array<Rgb, 7> hair_colors = {{{0.07, 0.06, 0.05},
                                                  {0.22, 0.13, 0.08},
                                                  {0.43, 0.28, 0.16},
                                                  {0.85, 0.71, 0.44},
                                                  {0.62, 0.27, 0.11},
                                                  {0.58, 0.57, 0.55},
                                                  {0.90, 0.89, 0.86}}};
  p.hair = jitter(rng, pick(rng, hair_colors, {{0.25, 0.25, 0.15, 0.12, 0.06, 0.1, 0.07}}), 0.03);
  p.brow = scaled(p.hair, rng.uniform(0.5, 0.8));
  p.lip = scaled(lerp(p.skin, {0.72, 0.26, 0.30}, rng.uniform(0.3, 0.65)), rng.uniform(0.8, 1.0));
  p.blush = rng.uniform(0.0, 0.25);

  p.bald = rng.bernoulli(0.08);
  p.hair_volume = rng.uniform(1.03, 1.2);
  p.hair_height = rng.uniform(0.0, 0.15);
  p.hairline_y = std::min(rng.uniform(-0.70, -0.38), p.eye_y - p.brow_gap - 0.07);
  p.hairline_curve = rng.uniform(0.0, 0.9);
  p.hairline_part = rng.uniform(-0.25, 0.25);
  const double length = rng.uniform();
  p.hair_end = length < 0.45 ? -1.0 : (length < 0.75 ? rng.uniform(0.25, 0.6) : rng.uniform(0.8, 1.4));

  const double facial = rng.uniform();
  p.beard = facial < 0.15 ? rng.uniform(0.6, 0.95) : (facial < 0.27 ? rng.uniform(0.18, 0.35) : 0.0);
  p.beard_top = rng.uniform(-0.02, 0.06);
  p.beard_curve = rng.uniform(0.1, 0.4);
  p.moustache = rng.bernoulli(p.beard > 0.5 ? 0.7 : 0.1) ? rng.uniform(0.6, 0.95) : 0.0;

  const double mole_draw = rng.uniform();
  p.moles = mole_draw < 0.35 ? 0 : (mole_draw < 0.7 ? 1 : (mole_draw < 0.9 ? 2 : 3));
  for (int m = 0; m < 3; ++m) {
    p.mole_x[m] = rng.uniform(-0.8, 0.8);
    p.mole_y[m] = p.eye_y + rng.uniform(0.05, 0.75);
    p.mole_radius[m] = rng.uniform(0.010, 0.022);
  }

  p.glasses = rng.bernoulli(0.2);
  static const std::array<Rgb, 5> frames = {{{0.05, 0.05, 0.05},
                                             {0.30, 0.18, 0.10},
                                             {0.75, 0.62, 0.30},
                                             {0.70, 0.70, 0.72},
                                             {0.55, 0.10, 0.12}}};
  p.frame = pick(rng, frames, {{0.4, 0.2, 0.15, 0.15, 0.1}});
  p.frame_thickness = rng.uniform(0.010, 0.022);
  p.lens_width = rng.uniform(1.35, 1.7);
  p.lens_aspect = rng.uniform(0.65, 0.95);
  p.lens_tint = rng.bernoulli(0.12) ? rng.uniform(0.75, 0.9) : rng.uniform(0.0, 0.12);
  return p;
}

SampleParams sample_nuisance(uint64_t seed, int64_t identity, int64_t sample) {
  using namespace tuning;
  CounterRng rng(stream_key(seed, Purpose::nuisance, static_cast<uint64_t>(identity),
                            static_cast<uint64_t>(sample)));
  SampleParams s{};
  s.roll = kRollStdDeg * kPi / 180.0 * rng.clipped_normal(2.5);
  s.yaw = kYawMax * rng.uniform(-1.0, 1.0);
  s.scale = std::exp(kScaleStd * rng.clipped_normal(2.5));
  s.shift_x = kShiftStd * rng.clipped_normal(2.5);
  s.shift_y = kShiftStd * rng.clipped_normal(2.5);

  s.smile = kExpression * rng.uniform(-0.3, 1.0);
  s.mouth_open = rng.bernoulli(0.3 * kExpression) ? rng.uniform(0.2, 1.0) : 0.0;
  s.eye_open = rng.bernoulli(0.06 * kExpression) ? rng.uniform(0.05, 0.3) : rng.uniform(0.75, 1.1);
  s.brow_raise = 0.02 * kExpression * rng.clipped_normal(2.5);
  s.gaze_x = 0.35 * kExpression * rng.uniform(-1.0, 1.0);
  s.gaze_y = 0.2 * kExpression * rng.uniform(-1.0, 1.0);

  const double azimuth = rng.uniform(0.0, 2.0 * kPi);
  const double sideways = kLightDirectionMax * std::sqrt(rng.uniform());
  s.light_x = sideways * std::cos(azimuth);
  s.light_y = sideways * std::sin(azimuth);
  s.light_z = std::sqrt(1.0 - sideways * sideways);
  s.ambient = rng.uniform(kAmbientMin, kAmbientMax);
  s.diffuse = rng.uniform(0.45, 0.85);
  s.brightness = rng.uniform(kBrightnessMin, kBrightnessMax);
  s.saturation = rng.bernoulli(kGrayscaleProb) ? 0.0 : rng.uniform(0.7, 1.25);
  for (double& c : s.cast) c = 1.0 + kColorCastStd * rng.clipped_normal(2.5);

  s.background = random_color(rng);
  s.background_b = rng.bernoulli(0.5) ? random_color(rng) : scaled(s.background, rng.uniform(0.5, 1.3));
  s.bg_a0 = rng.uniform(-0.5, 0.5);
  s.bg_ax = rng.uniform(-1.0, 1.0);
  s.bg_sx = rng.bernoulli(0.4) ? rng.uniform(0.3, 1.5) : 0.0;
  s.bg_fx = rng.uniform(3.0, 30.0);
  s.bg_px = rng.uniform(0.0, 2.0 * kPi);
  s.bg_ay = rng.uniform(-1.0, 1.0);
  s.bg_sy = rng.bernoulli(0.4) ? rng.uniform(0.3, 1.5) : 0.0;
  s.bg_fy = rng.uniform(3.0, 30.0);
  s.bg_py = rng.uniform(0.0, 2.0 * kPi);
  s.clothes = random_color(rng);
  s.shoulder_width = rng.uniform(0.95, 1.3);

  s.occluder_opacity = rng.bernoulli(kOcclusionProb) ? 1.0 : 0.0;
  s.occluder_x = rng.uniform(-0.8, 0.8);
  s.occluder_y = rng.uniform(-0.6, 0.9);
  s.occluder_half_width = rng.uniform(0.1, 0.35);
  s.occluder_half_height = rng.uniform(0.1, 0.35);
  s.occluder_round = rng.bernoulli(0.4);
  s.occluder_color = random_color(rng);

  s.blur = rng.bernoulli(kBlurProb) ? rng.uniform(0.3, kBlurMaxPixels) : 0.0;
  s.noise_sigma = kNoiseSigmaMax * rng.uniform();
  s.noise_offset = rng.next_u64();
  return s;
}

}  // namespace arcforge::data::synth
