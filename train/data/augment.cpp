// Augmentation: options and presets, the per-sample draws (CPU, counter RNG) and the batched ops
// (any device). See augment.hpp for the order of the ops and the determinism contract.
#include "train/data/augment.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numbers>
#include <utility>

#include "arcforge/common/counter_rng.hpp"
#include "arcforge/common/error.hpp"
#include "train/data/augment_cpu.hpp"
#include "train/data/upload.hpp"

namespace arcforge::data {
namespace {

namespace F = torch::nn::functional;

// ---- options ------------------------------------------------------------------------------------

struct DoubleField {
  const char* name;
  double AugmentOptions::*member;
};

constexpr DoubleField kDoubleFields[] = {
    {"flip_p", &AugmentOptions::flip_p},
    {"rotate_p", &AugmentOptions::rotate_p},
    {"max_rotate_deg", &AugmentOptions::max_rotate_deg},
    {"scale_p", &AugmentOptions::scale_p},
    {"scale_min", &AugmentOptions::scale_min},
    {"scale_max", &AugmentOptions::scale_max},
    {"shift_p", &AugmentOptions::shift_p},
    {"max_shift", &AugmentOptions::max_shift},
    {"color_p", &AugmentOptions::color_p},
    {"brightness", &AugmentOptions::brightness},
    {"contrast", &AugmentOptions::contrast},
    {"saturation", &AugmentOptions::saturation},
    {"erase_p", &AugmentOptions::erase_p},
    {"erase_area_min", &AugmentOptions::erase_area_min},
    {"erase_area_max", &AugmentOptions::erase_area_max},
    {"erase_aspect_min", &AugmentOptions::erase_aspect_min},
    {"downup_p", &AugmentOptions::downup_p},
    {"downup_min", &AugmentOptions::downup_min},
    {"downup_max", &AugmentOptions::downup_max},
    {"blur_p", &AugmentOptions::blur_p},
    {"blur_sigma_min", &AugmentOptions::blur_sigma_min},
    {"blur_sigma_max", &AugmentOptions::blur_sigma_max},
    {"gray_p", &AugmentOptions::gray_p},
};

std::string number(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%g", v);
  return buffer;
}

// Written as !(lo <= v && v <= hi) so that NaN fails too.
void require_in(const char* name, double v, double lo, double hi) {
  if (!(lo <= v && v <= hi))
    throw ConfigError(std::string("augment: ") + name + " must be in [" + number(lo) + ", " + number(hi) +
                      "], got " + number(v));
}

void require_positive(const char* name, double v, double hi) {
  if (!(v > 0 && v <= hi))
    throw ConfigError(std::string("augment: ") + name + " must be in (0, " + number(hi) + "], got " +
                      number(v));
}

void require_ordered(const char* lo_name, double lo, const char* hi_name, double hi) {
  if (lo > hi)
    throw ConfigError(std::string("augment: ") + lo_name + " (" + number(lo) + ") must not exceed " + hi_name +
                      " (" + number(hi) + ")");
}

// ---- draws --------------------------------------------------------------------------------------

// One stream per purpose, so that turning an op on or off never changes another op's draws.
enum class Draw : uint64_t {
  flip = 1, rotate, rotate_angle, scale, scale_factor, shift, shift_x, shift_y,
  color, brightness, contrast, saturation,
  erase, erase_area, erase_aspect, erase_top, erase_left, erase_noise,
  downup, downup_size, blur, blur_sigma, gray,
};

// Separates augmentation streams from every other user of the same seed (synth, sampling).
constexpr uint64_t kAugmentDomain = 0x6175676d656e7421ull;  // "augment!"

class SampleDraws {
 public:
  SampleDraws(uint64_t seed, int64_t batch_index, int64_t sample_key)
      : key_(hash_keys({kAugmentDomain, seed, static_cast<uint64_t>(batch_index),
                        static_cast<uint64_t>(sample_key)})) {}

  uint64_t bits(Draw d) const { return mix64(key_ ^ mix64(static_cast<uint64_t>(d))); }
  double uniform(Draw d) const { return unit_double(bits(d)); }
  double uniform(Draw d, double lo, double hi) const { return lo + (hi - lo) * uniform(d); }
  // p = 0 never fires, p = 1 always does (uniform() < 1).
  bool fires(Draw d, double p) const { return uniform(d) < p; }

 private:
  uint64_t key_;
};

// ---- tensor helpers -----------------------------------------------------------------------------

void check_images(const torch::Tensor& images, const char* who) {
  if (!images.defined() || images.dim() != 4 || images.size(1) != 3 || !images.is_floating_point())
    throw InputError(std::string(who) + ": images must be a [B,3,H,W] floating-point tensor, got " +
                     (images.defined() ? images.toString() + " " + std::to_string(images.dim()) + "-D"
                                       : std::string("an undefined tensor")));
}

// [n] values as an [n,1,1,1] tensor of `like`'s dtype and device.
torch::Tensor per_sample(const std::vector<double>& values, const torch::Tensor& like) {
  return upload(torch::tensor(values, torch::kFloat64).to(like.scalar_type()), like.device()).view({-1, 1, 1, 1});
}

// Runs `op` on the samples `rows` of `batch` (one sub-batch) and writes the result back in place.
template <class Op>
void update_rows(torch::Tensor& batch, const std::vector<int64_t>& rows, Op&& op) {
  if (rows.empty()) return;
  const auto index = upload(torch::tensor(rows, torch::kInt64), batch.device());
  batch.index_copy_(0, index, op(batch.index_select(0, index), rows));
}

// Mean over H and W as [N,C,1,1], reduced W first then H: every reduction has several outputs, so
// on the CPU each output is summed in one fixed order whatever the batch size or thread count.
torch::Tensor spatial_mean(const torch::Tensor& x) {
  const double count = static_cast<double>(x.size(2) * x.size(3));
  return (x.sum(3).sum(2) / count).view({x.size(0), x.size(1), 1, 1});
}

// ITU-R 601 luma, [N,3,H,W] -> [N,1,H,W] (torchvision's rgb_to_grayscale weights).
torch::Tensor luma(const torch::Tensor& x) {
  return (x.select(1, 0) * 0.299 + x.select(1, 1) * 0.587 + x.select(1, 2) * 0.114).unsqueeze(1);
}

// ---- the ops, each on a sub-batch `x` whose sample j is params[rows[j]] -------------------------

torch::Tensor warp(const torch::Tensor& x, const std::vector<int64_t>& rows,
                   const std::vector<SampleAugment>& params) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  // affine_grid works in normalised coordinates (align_corners = false: x_n = x_c * 2 / W for the
  // centred pixel coordinate x_c), so theta = D M D^-1 with D = diag(2/W, 2/H).
  std::vector<double> theta;
  theta.reserve(static_cast<size_t>(n) * 6);
  const double aspect = static_cast<double>(h) / static_cast<double>(w);
  for (int64_t r : rows) {
    const std::vector<double> m = inverse_warp_matrix(params[static_cast<size_t>(r)], h, w);
    theta.insert(theta.end(), {m[0], m[1] * aspect, m[2] * 2.0 / static_cast<double>(w),
                               m[3] / aspect, m[4], m[5] * 2.0 / static_cast<double>(h)});
  }
  const auto t = upload(torch::tensor(theta, torch::kFloat64).to(x.scalar_type()), x.device()).view({n, 2, 3});
  const auto grid = F::affine_grid(t, {n, 3, h, w}, /*align_corners=*/false);
  return F::grid_sample(x, grid,
                        F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false))
      .clamp_(0, 1);
}

torch::Tensor down_up(const torch::Tensor& x, int64_t size) {
  const auto small = F::interpolate(
      x, F::InterpolateFuncOptions().size(std::vector<int64_t>{size, size}).mode(torch::kArea));
  return F::interpolate(small, F::InterpolateFuncOptions()
                                   .size(std::vector<int64_t>{x.size(2), x.size(3)})
                                   .mode(torch::kBilinear)
                                   .align_corners(false))
      .clamp_(0, 1);
}

int64_t blur_radius(double sigma, int64_t height, int64_t width) {
  const auto r = static_cast<int64_t>(std::ceil(3.0 * sigma));
  return std::clamp<int64_t>(r, 1, std::min(height, width) - 1);  // reflect padding needs r < side
}

// Separable Gaussian with one radius for the whole sub-batch and one sigma per sample: the
// samples' channels become the groups of one depthwise conv2d per axis.
torch::Tensor blur(const torch::Tensor& x, const std::vector<int64_t>& rows,
                   const std::vector<SampleAugment>& params, int64_t radius) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3), k = 2 * radius + 1;
  std::vector<double> taps;
  taps.reserve(static_cast<size_t>(n * 3 * k));
  for (int64_t r : rows) {
    const double sigma = params[static_cast<size_t>(r)].blur_sigma;
    std::vector<double> g(static_cast<size_t>(k));
    double sum = 0;
    for (int64_t i = -radius; i <= radius; ++i)
      sum += g[static_cast<size_t>(i + radius)] = std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma));
    for (double& v : g) v /= sum;
    for (int c = 0; c < 3; ++c) taps.insert(taps.end(), g.begin(), g.end());
  }
  const auto kernel = upload(torch::tensor(taps, torch::kFloat64).to(x.scalar_type()), x.device());
  const int64_t groups = n * 3;
  auto y = x.reshape({1, groups, h, w});
  y = F::pad(y, F::PadFuncOptions({radius, radius, 0, 0}).mode(torch::kReflect));
  y = F::conv2d(y, kernel.view({groups, 1, 1, k}), F::Conv2dFuncOptions().groups(groups));
  y = F::pad(y, F::PadFuncOptions({0, 0, radius, radius}).mode(torch::kReflect));
  y = F::conv2d(y, kernel.view({groups, 1, k, 1}), F::Conv2dFuncOptions().groups(groups));
  return y.view({n, 3, h, w}).clamp_(0, 1);
}

// torchvision's adjust_brightness, adjust_contrast, adjust_saturation: each a blend
// ratio * image + (1 - ratio) * other, clamped to [0,1], with other = black, the mean of the
// grayscale image, and the grayscale image.
torch::Tensor color(const torch::Tensor& x, const std::vector<int64_t>& rows,
                    const std::vector<SampleAugment>& params) {
  std::vector<double> b, c, s;
  for (int64_t r : rows) {
    const SampleAugment& p = params[static_cast<size_t>(r)];
    b.push_back(p.brightness);
    c.push_back(p.contrast);
    s.push_back(p.saturation);
  }
  const auto fb = per_sample(b, x), fc = per_sample(c, x), fs = per_sample(s, x);
  auto y = (x * fb).clamp_(0, 1);
  y = (fc * y + (1 - fc) * spatial_mean(luma(y))).clamp_(0, 1);
  y = (fs * y + (1 - fs) * luma(y)).clamp_(0, 1);
  return y;
}

torch::Tensor gray(const torch::Tensor& x) { return luma(x).expand_as(x).contiguous().clamp_(0, 1); }

torch::Tensor erase(const torch::Tensor& x, const std::vector<int64_t>& rows,
                    const std::vector<SampleAugment>& params) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  std::vector<int64_t> top, left, bottom, right, noise_rows, mean_rows;
  for (int64_t j = 0; j < n; ++j) {
    const SampleAugment& p = params[static_cast<size_t>(rows[static_cast<size_t>(j)])];
    const EraseBox box = erase_box(p, h, w);
    top.push_back(box.top);
    left.push_back(box.left);
    bottom.push_back(box.top + box.height);
    right.push_back(box.left + box.width);
    if (p.erase_fill == EraseFill::noise) noise_rows.push_back(j);
    if (p.erase_fill == EraseFill::mean) mean_rows.push_back(j);
  }
  auto fill = torch::zeros_like(x);
  if (!noise_rows.empty()) {
    // Noise comes from a CPU generator seeded per sample, so it is the same on every device.
    auto noise = torch::empty({static_cast<int64_t>(noise_rows.size()), 3, h, w}, torch::kFloat32);
    for (size_t i = 0; i < noise_rows.size(); ++i) {
      auto generator = at::detail::createCPUGenerator(
          params[static_cast<size_t>(rows[static_cast<size_t>(noise_rows[i])])].erase_noise_seed);
      noise[static_cast<int64_t>(i)].uniform_(0, 1, generator);
    }
    fill.index_copy_(0, upload(torch::tensor(noise_rows, torch::kInt64), x.device()),
                     upload(noise.to(x.scalar_type()), x.device()));
  }
  if (!mean_rows.empty()) {
    const auto index = upload(torch::tensor(mean_rows, torch::kInt64), x.device());
    fill.index_copy_(0, index, spatial_mean(x.index_select(0, index)).expand({index.size(0), 3, h, w}));
  }
  const auto as_column = [&](const std::vector<int64_t>& v) {
    return upload(torch::tensor(v, torch::kInt64), x.device()).view({-1, 1, 1, 1});
  };
  const auto ys = torch::arange(h, torch::TensorOptions().dtype(torch::kInt64).device(x.device())).view({1, 1, h, 1});
  const auto xs = torch::arange(w, torch::TensorOptions().dtype(torch::kInt64).device(x.device())).view({1, 1, 1, w});
  const auto inside = (ys >= as_column(top)) & (ys < as_column(bottom)) & (xs >= as_column(left)) &
                      (xs < as_column(right));
  return torch::where(inside, fill, x);
}

}  // namespace

// ---- options ------------------------------------------------------------------------------------

bool AugmentOptions::any() const {
  return flip_p > 0 || rotate_p > 0 || scale_p > 0 || shift_p > 0 || color_p > 0 || erase_p > 0 ||
         downup_p > 0 || blur_p > 0 || gray_p > 0;
}

EraseFill parse_erase_fill(const std::string& name) {
  if (name == "noise") return EraseFill::noise;
  if (name == "mean") return EraseFill::mean;
  if (name == "zero") return EraseFill::zero;
  throw ConfigError("augment: erase_fill must be noise, mean or zero, got '" + name + "'");
}

void validate(const AugmentOptions& o) {
  for (const auto& [name, p] : {std::pair{"flip_p", o.flip_p}, std::pair{"rotate_p", o.rotate_p},
                                std::pair{"scale_p", o.scale_p}, std::pair{"shift_p", o.shift_p},
                                std::pair{"color_p", o.color_p}, std::pair{"erase_p", o.erase_p},
                                std::pair{"downup_p", o.downup_p}, std::pair{"blur_p", o.blur_p},
                                std::pair{"gray_p", o.gray_p}})
    require_in(name, p, 0, 1);
  require_in("max_rotate_deg", o.max_rotate_deg, 0, 180);
  require_positive("scale_min", o.scale_min, 10);
  require_positive("scale_max", o.scale_max, 10);
  require_ordered("scale_min", o.scale_min, "scale_max", o.scale_max);
  require_in("max_shift", o.max_shift, 0, 1);
  require_in("brightness", o.brightness, 0, 10);
  require_in("contrast", o.contrast, 0, 10);
  require_in("saturation", o.saturation, 0, 10);
  require_positive("erase_area_min", o.erase_area_min, 1);
  require_positive("erase_area_max", o.erase_area_max, 1);
  require_ordered("erase_area_min", o.erase_area_min, "erase_area_max", o.erase_area_max);
  require_positive("erase_aspect_min", o.erase_aspect_min, 1);
  parse_erase_fill(o.erase_fill);
  require_in("downup_min", o.downup_min, 1, 8192);
  require_in("downup_max", o.downup_max, 1, 8192);
  require_ordered("downup_min", o.downup_min, "downup_max", o.downup_max);
  require_positive("blur_sigma_min", o.blur_sigma_min, 20);
  require_positive("blur_sigma_max", o.blur_sigma_max, 20);
  require_ordered("blur_sigma_min", o.blur_sigma_min, "blur_sigma_max", o.blur_sigma_max);
}

AugmentOptions augment_preset(const std::string& name) {
  AugmentOptions o;
  if (name == "none") {
    o.flip_p = 0;
  } else if (name == "flip") {
    o.flip_p = 0.5;
  } else if (name == "article") {
    // The seed article (4.1): rotation +-15 deg, scale 0.9..1.1, brightness/contrast/saturation,
    // occlusion; its Albumentations example adds HorizontalFlip(0.5), ColorJitter(0.2, 0.2, 0.2)
    // and CoarseDropout(max_holes=1, 32x32), whose holes are exactly 32x32 black squares. Its
    // RandomRotate90 is left out: aligned faces are upright, and the text asks for +-15 deg.
    o.flip_p = 0.5;
    o.rotate_p = 0.5;
    o.max_rotate_deg = 15;
    o.scale_p = 0.5;
    o.scale_min = 0.9;
    o.scale_max = 1.1;
    o.color_p = 0.5;
    o.brightness = o.contrast = o.saturation = 0.2;
    o.erase_p = 0.5;
    o.erase_area_min = o.erase_area_max = 32.0 * 32.0 / (112.0 * 112.0);
    o.erase_aspect_min = 1;
    o.erase_fill = "zero";
  } else if (name == "dali") {
    // arcface_torch's dali_data_iter(dali_aug=True): resize to U(56, 89) and back with p = 0.1, a
    // 3-wide Gaussian window with p = 0.2 (DALI's sigma for it: 0.8; we do not cut the kernel to
    // 3 taps), hsv (hue 0..20, saturation 1..1.2) with p = 0.2 -- hue is not implemented,
    // saturation +-0.2 stands in -- gray with p = 0.1, flip 0.5.
    o.flip_p = 0.5;
    o.downup_p = 0.1;
    o.downup_min = 56;
    o.downup_max = 89;
    o.blur_p = 0.2;
    o.blur_sigma_min = o.blur_sigma_max = 0.8;
    o.color_p = 0.2;
    o.brightness = o.contrast = 0;
    o.saturation = 0.2;
    o.gray_p = 0.1;
  } else {
    std::string names;
    for (const std::string& n : augment_preset_names()) names += (names.empty() ? "" : ", ") + n;
    throw ConfigError("augment: unknown preset '" + name + "' (known: " + names + ")");
  }
  return o;
}

const std::vector<std::string>& augment_preset_names() {
  static const std::vector<std::string> names = {"none", "flip", "article", "dali"};
  return names;
}

void set_augment_option(AugmentOptions& options, const std::string& key, const std::string& value) {
  if (key == "erase_fill") {
    options.erase_fill = value;
    return;
  }
  for (const DoubleField& field : kDoubleFields) {
    if (key != field.name) continue;
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (value.empty() || used != value.size())
      throw ConfigError("augment: " + key + " expects a number, got '" + value + "'");
    options.*field.member = v;
    return;
  }
  throw ConfigError("augment: unknown option '" + key + "'");
}

const std::vector<std::string>& augment_option_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const DoubleField& field : kDoubleFields) k.emplace_back(field.name);
    k.emplace_back("erase_fill");
    return k;
  }();
  return keys;
}

// ---- per-sample parameters ----------------------------------------------------------------------

bool SampleAugment::needs_warp() const { return angle_deg != 0 || scale != 1 || shift_x != 0 || shift_y != 0; }

bool SampleAugment::needs_color() const { return brightness != 1 || contrast != 1 || saturation != 1; }

EraseBox erase_box(const SampleAugment& s, int64_t height, int64_t width) {
  // torchvision's RandomErasing sizes, clamped to the image instead of retried.
  const double area = s.erase_area * static_cast<double>(height * width);
  EraseBox box;
  box.height = std::clamp<int64_t>(std::llround(std::sqrt(area * s.erase_aspect)), 1, height);
  box.width = std::clamp<int64_t>(std::llround(std::sqrt(area / s.erase_aspect)), 1, width);
  box.top = std::min(static_cast<int64_t>(s.erase_top * static_cast<double>(height - box.height + 1)),
                     height - box.height);
  box.left = std::min(static_cast<int64_t>(s.erase_left * static_cast<double>(width - box.width + 1)),
                      width - box.width);
  return box;
}

std::vector<double> inverse_warp_matrix(const SampleAugment& s, int64_t height, int64_t width) {
  // Forward, in centred pixel coordinates (y down): out = t + scale * R(angle) * Flip * in, with
  // R(a) = [[cos a, sin a], [-sin a, cos a]] (counter-clockwise on screen, as cv2's
  // getRotationMatrix2D). Inverse: in = Flip * R(-a) * (out - t) / scale.
  const double a = s.angle_deg * std::numbers::pi / 180.0;
  const double c = std::cos(a) / s.scale, sn = std::sin(a) / s.scale;
  const double fx = s.flip ? -1.0 : 1.0;
  const double m00 = fx * c, m01 = -fx * sn, m10 = sn, m11 = c;
  const double tx = s.shift_x * static_cast<double>(width), ty = s.shift_y * static_cast<double>(height);
  return {m00, m01, -(m00 * tx + m01 * ty), m10, m11, -(m10 * tx + m11 * ty)};
}

// ---- the batch ----------------------------------------------------------------------------------

torch::Tensor augment_batch(const torch::Tensor& images, const std::vector<SampleAugment>& params) {
  check_images(images, "augment");
  if (static_cast<int64_t>(params.size()) != images.size(0))
    throw InputError("augment: " + std::to_string(params.size()) + " parameter sets for a batch of " +
                     std::to_string(images.size(0)));
  const int64_t h = images.size(2), w = images.size(3);

  std::vector<int64_t> flip_rows, warp_rows, color_rows, gray_rows, erase_rows;
  std::map<int64_t, std::vector<int64_t>> downup_rows, blur_rows;  // by size / by kernel radius
  for (int64_t i = 0; i < images.size(0); ++i) {
    const SampleAugment& p = params[static_cast<size_t>(i)];
    if (p.needs_warp()) {
      warp_rows.push_back(i);
    } else if (p.flip) {
      flip_rows.push_back(i);
    }
    if (p.downup_size > 0 && (p.downup_size < h || p.downup_size < w)) downup_rows[p.downup_size].push_back(i);
    if (p.blur_sigma > 0 && std::min(h, w) > 1) blur_rows[blur_radius(p.blur_sigma, h, w)].push_back(i);
    if (p.needs_color()) color_rows.push_back(i);
    if (p.gray) gray_rows.push_back(i);
    if (p.erase) erase_rows.push_back(i);
  }
  if (flip_rows.empty() && warp_rows.empty() && downup_rows.empty() && blur_rows.empty() && color_rows.empty() &&
      gray_rows.empty() && erase_rows.empty())
    return images;

  torch::NoGradGuard no_grad;
  // grid_sample and friends want float or double; half precision batches round-trip through float.
  const auto dtype = images.scalar_type();
  const auto work = (dtype == torch::kFloat32 || dtype == torch::kFloat64) ? dtype : torch::kFloat32;
  // Down-up and blur run as tensor ops on either path, on the samples each selects.
  const auto down_up_and_blur = [&](torch::Tensor& batch) {
    for (const auto& [size, rows] : downup_rows)
      update_rows(batch, rows, [size = size](const torch::Tensor& x, const auto&) { return down_up(x, size); });
    for (const auto& [radius, rows] : blur_rows)
      update_rows(batch, rows,
                  [&, radius = radius](const torch::Tensor& x, const auto& r) { return blur(x, r, params, radius); });
  };
  if (images.is_cpu() && dtype == torch::kFloat32) {
    // The CPU kernels (augment_cpu.hpp): one loop per sample and op group, samples in parallel.
    const auto source = images.contiguous();
    auto batch = torch::empty_like(source, at::MemoryFormat::Contiguous);
    const int64_t stride = 3 * h * w;
    const float* in = source.data_ptr<float>();
    float* out = batch.data_ptr<float>();
    const auto each_sample = [&](auto&& kernel) {
      at::parallel_for(0, images.size(0), 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) kernel(i, params[static_cast<size_t>(i)]);
      });
    };
    each_sample([&](int64_t i, const SampleAugment& p) { cpu::geometry(in + i * stride, out + i * stride, h, w, p); });
    down_up_and_blur(batch);
    each_sample([&](int64_t i, const SampleAugment& p) { cpu::pixel_ops(out + i * stride, h, w, p); });
    return batch;
  }
  auto batch = images.to(work).clone(at::MemoryFormat::Contiguous);

  update_rows(batch, flip_rows, [](const torch::Tensor& x, const auto&) { return torch::flip(x, {3}); });
  update_rows(batch, warp_rows, [&](const torch::Tensor& x, const auto& rows) { return warp(x, rows, params); });
  down_up_and_blur(batch);
  update_rows(batch, color_rows, [&](const torch::Tensor& x, const auto& rows) { return color(x, rows, params); });
  update_rows(batch, gray_rows, [](const torch::Tensor& x, const auto&) { return gray(x); });
  update_rows(batch, erase_rows, [&](const torch::Tensor& x, const auto& rows) { return erase(x, rows, params); });
  return batch.to(dtype);
}

// ---- Augmenter ----------------------------------------------------------------------------------

Augmenter::Augmenter(AugmentOptions options, uint64_t seed) : options_(std::move(options)), seed_(seed) {
  validate(options_);
}

SampleAugment Augmenter::draw(int64_t batch_index, int64_t sample_key) const {
  const AugmentOptions& o = options_;
  const SampleDraws r(seed_, batch_index, sample_key);
  SampleAugment s;
  s.flip = r.fires(Draw::flip, o.flip_p);
  if (r.fires(Draw::rotate, o.rotate_p)) s.angle_deg = r.uniform(Draw::rotate_angle, -o.max_rotate_deg, o.max_rotate_deg);
  if (r.fires(Draw::scale, o.scale_p)) s.scale = r.uniform(Draw::scale_factor, o.scale_min, o.scale_max);
  if (r.fires(Draw::shift, o.shift_p)) {
    s.shift_x = r.uniform(Draw::shift_x, -o.max_shift, o.max_shift);
    s.shift_y = r.uniform(Draw::shift_y, -o.max_shift, o.max_shift);
  }
  if (r.fires(Draw::downup, o.downup_p)) {
    const int64_t lo = std::llround(o.downup_min), hi = std::llround(o.downup_max);
    s.downup_size = lo + static_cast<int64_t>(uniform_index(r.bits(Draw::downup_size), static_cast<uint64_t>(hi - lo + 1)));
  }
  if (r.fires(Draw::blur, o.blur_p)) s.blur_sigma = r.uniform(Draw::blur_sigma, o.blur_sigma_min, o.blur_sigma_max);
  if (r.fires(Draw::color, o.color_p)) {
    s.brightness = r.uniform(Draw::brightness, std::max(0.0, 1 - o.brightness), 1 + o.brightness);
    s.contrast = r.uniform(Draw::contrast, std::max(0.0, 1 - o.contrast), 1 + o.contrast);
    s.saturation = r.uniform(Draw::saturation, std::max(0.0, 1 - o.saturation), 1 + o.saturation);
  }
  s.gray = r.fires(Draw::gray, o.gray_p);
  if (r.fires(Draw::erase, o.erase_p)) {
    s.erase = true;
    s.erase_area = r.uniform(Draw::erase_area, o.erase_area_min, o.erase_area_max);
    const double log_aspect = std::log(o.erase_aspect_min);
    s.erase_aspect = std::exp(r.uniform(Draw::erase_aspect, log_aspect, -log_aspect));
    s.erase_top = r.uniform(Draw::erase_top);
    s.erase_left = r.uniform(Draw::erase_left);
    s.erase_fill = parse_erase_fill(o.erase_fill);
    s.erase_noise_seed = r.bits(Draw::erase_noise);
  }
  return s;
}

std::vector<SampleAugment> Augmenter::draw_batch(int64_t batch_index, int64_t first_key, int64_t count) const {
  std::vector<SampleAugment> params;
  params.reserve(static_cast<size_t>(std::max<int64_t>(count, 0)));
  for (int64_t i = 0; i < count; ++i) params.push_back(draw(batch_index, first_key + i));
  return params;
}

torch::Tensor Augmenter::apply(const torch::Tensor& images, int64_t batch_index, int64_t first_key) const {
  check_images(images, "augment");
  return augment_batch(images, draw_batch(batch_index, first_key, images.size(0)));
}

}  // namespace arcforge::data
