// Batched rendering of `synth` scenes. All 1-D profiles and per-image scalars are packed into two
// CPU tensors and moved to the device once; everything after that is broadcast tensor ops.
// Pixels are only touched by exactly rounded elementwise ops (add, mul, clamp, sqrt, max; no fused
// multiply-add, whose rounding could depend on how a loop is split between threads) and by
// per-image gathers and resampling, so an image comes out bit for bit the same whatever batch it
// is rendered in (checked by the tests on CPU and on CUDA).
#include "train/data/synth_render.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "train/data/synth_random.hpp"
#include "train/data/upload.hpp"

namespace arcforge::data::synth {
namespace {

namespace F = torch::nn::functional;

// Profiles every scene has besides its layers' factors, at these slots of the profile pack.
enum GlobalProfile : int64_t {
  kLightRow, kLightCol, kDepthRow, kDepthCol, kGxRow, kGxCol, kGyRow, kGyCol, kGlobalProfiles
};
// Per-image scalars after the 4 per layer (opacity, r, g, b).
enum GlobalScalar : int64_t { kAmbient, kDiffuse, kDepthFloor, kNoiseSigma, kGlobalScalars };

// Pixel rectangle [y0, y1) x [x0, x1).
struct Window {
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  bool empty() const { return y0 >= y1 || x0 >= x1; }
  Window intersect(const Window& o) const {
    return {std::max(y0, o.y0), std::min(y1, o.y1), std::max(x0, o.x0), std::min(x1, o.x1)};
  }
  Window unite(const Window& o) const {
    if (empty()) return o;
    if (o.empty()) return *this;
    return {std::min(y0, o.y0), std::max(y1, o.y1), std::min(x0, o.x0), std::max(x1, o.x1)};
  }
};

// Union over images (that draw the layer) of the intersection over its factors.
Window layer_window(const std::vector<Scene>& scenes, size_t layer, int64_t size) {
  Window all;
  for (const Scene& scene : scenes) {
    const Layer& l = scene.layers[layer];
    if (l.opacity <= 0) continue;
    Window w{0, size, 0, size};
    for (const Factor& f : l.factors) w = w.intersect(Window{f.y0, f.y1, f.x0, f.x1});
    all = all.unite(w);
  }
  return all;
}

void check_same_structure(const std::vector<Scene>& scenes, int64_t size) {
  const Scene& first = scenes.front();
  for (const Scene& scene : scenes) {
    if (scene.layers.size() != first.layers.size())
      throw std::logic_error("synth: scenes differ in their number of layers");
    for (size_t l = 0; l < first.layers.size(); ++l) {
      const auto& fa = first.layers[l].factors;
      const auto& fb = scene.layers[l].factors;
      bool same = fa.size() == fb.size();
      for (size_t i = 0; same && i < fa.size(); ++i)
        same = fa[i].kind == fb[i].kind && fa[i].complement == fb[i].complement &&
               static_cast<int64_t>(fb[i].row.size()) == size;
      if (!same)
        throw std::logic_error(std::string("synth: layer '") + first.layers[l].name +
                               "' has different factors in different scenes");
    }
  }
}

int64_t profiles_of(const Factor& f) { return f.kind == Factor::Kind::shape ? 3 : 2; }

// Packs every 1-D profile into [N, P, S] (globals first, then each factor's row, col_a[, col_b])
// and every scalar into [N, 4L + kGlobalScalars], in pinned memory when they go to a GPU (so the
// upload needs no staging copy).
std::pair<torch::Tensor, torch::Tensor> pack(const std::vector<Scene>& scenes, int64_t size, bool pinned) {
  const auto n = static_cast<int64_t>(scenes.size());
  const auto& layers = scenes.front().layers;
  const auto num_layers = static_cast<int64_t>(layers.size());
  int64_t num_profiles = kGlobalProfiles;
  for (const Layer& l : layers)
    for (const Factor& f : l.factors) num_profiles += profiles_of(f);

  const auto host = torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(pinned);
  auto profiles = torch::empty({n, num_profiles, size}, host);
  auto scalars = torch::empty({n, 4 * num_layers + kGlobalScalars}, host);
  float* p = profiles.data_ptr<float>();
  float* s = scalars.data_ptr<float>();
  const size_t bytes = sizeof(float) * size;
  for (const Scene& scene : scenes) {
    for (const auto* v : {&scene.light_row, &scene.light_col, &scene.depth_row, &scene.depth_col,
                          &scene.gx_row, &scene.gx_col, &scene.gy_row, &scene.gy_col}) {
      std::memcpy(p, v->data(), bytes);
      p += size;
    }
    for (const Layer& l : scene.layers) {
      for (const Factor& f : l.factors) {
        std::memcpy(p, f.row.data(), bytes);
        std::memcpy(p + size, f.col_a.data(), bytes);
        p += 2 * size;
        if (f.kind == Factor::Kind::shape) {
          std::memcpy(p, f.col_b.data(), bytes);
          p += size;
        }
      }
      *s++ = static_cast<float>(l.opacity);
      for (double c : l.color) *s++ = static_cast<float>(c);
    }
    *s++ = static_cast<float>(scene.ambient);
    *s++ = static_cast<float>(scene.diffuse);
    *s++ = static_cast<float>(scene.depth_floor);
    *s++ = static_cast<float>(scene.noise_sigma);
  }
  return {profiles, scalars};
}

// Coverage x opacity of one layer over window w, [m,h,w], for the m images whose profiles (this
// layer's slots only, [m,slots,S]) and opacities ([m]) are given. A layer without factors covers
// everything: its coverage is just the opacity, [m,1,1].
torch::Tensor layer_coverage(const std::vector<Factor>& factors, const torch::Tensor& profiles,
                             const torch::Tensor& opacity, const Window& w) {
  const int64_t m = profiles.size(0);
  auto row = [&](int64_t slot) { return profiles.select(1, slot).slice(1, w.x0, w.x1).unsqueeze(1); };
  auto col = [&](int64_t slot) { return profiles.select(1, slot).slice(1, w.y0, w.y1).unsqueeze(2); };
  torch::Tensor coverage;
  int64_t s = 0;
  for (const Factor& f : factors) {
    torch::Tensor value;
    if (f.kind == Factor::Kind::shape) {  // a - b * |x - c|
      value = col(s + 2) * row(s);
      value.neg_().add_(col(s + 1));
    } else {  // row + a
      value = row(s) + col(s + 1);
    }
    value.clamp_(0.0, 1.0);
    if (f.complement) value.neg_().add_(1.0);
    coverage = coverage.defined() ? coverage.mul_(value) : value;
    s += profiles_of(f);
  }
  if (!coverage.defined()) return opacity.view({m, 1, 1});
  return coverage.mul_(opacity.view({m, 1, 1}));
}

}  // namespace

torch::Tensor make_noise_bank(int64_t image_size) {
  const int64_t window = 3 * image_size * image_size;
  const int64_t length = std::max<int64_t>(int64_t{1} << 20, 4 * window) + window;
  auto bank = torch::empty({length}, torch::kFloat32);
  float* out = bank.data_ptr<float>();
  CounterRng rng(stream_key(0, Purpose::noise_bank));
  for (int64_t i = 0; i < length; ++i) out[i] = static_cast<float>(rng.normal());
  return bank;
}

torch::Tensor render_scenes(const std::vector<Scene>& scenes, int64_t image_size,
                            const torch::Tensor& noise_bank, torch::Device device) {
  const int64_t S = image_size;
  const auto n = static_cast<int64_t>(scenes.size());
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  if (n == 0) return torch::empty({0, 3, S, S}, options);
  check_same_structure(scenes, S);
  const auto& layers = scenes.front().layers;
  const auto num_layers = static_cast<int64_t>(layers.size());

  auto [profiles_cpu, scalars_cpu] = pack(scenes, S, device.is_cuda());
  const auto profiles = upload(profiles_cpu, device);
  const auto scalars = upload(scalars_cpu, device);
  // Global profiles: [N,1,S] varies along x, [N,S,1] along y.
  auto row = [&](int64_t slot) { return profiles.select(1, slot).unsqueeze(1); };
  auto col = [&](int64_t slot) { return profiles.select(1, slot).unsqueeze(2); };
  auto per_image = [&](int64_t column) { return scalars.select(1, column).view({n, 1, 1}); };
  const int64_t globals = 4 * num_layers;

  // Front-to-back compositing: `remaining` is the transmittance left for the layers below.
  auto remaining = torch::ones({n, S, S}, options);
  auto image = torch::zeros({n, 3, S, S}, options);
  int64_t slot = kGlobalProfiles;
  for (int64_t l = 0; l < num_layers; ++l) {
    const auto& factors = layers[l].factors;
    const Window w = layer_window(scenes, l, S);
    const int64_t first_slot = slot;
    for (const Factor& f : factors) slot += profiles_of(f);
    if (w.empty()) continue;

    auto own_profiles = profiles.narrow(1, first_slot, slot - first_slot);
    auto own_scalars = scalars.narrow(1, 4 * l, 4);  // opacity, r, g, b
    auto under = remaining.slice(1, w.y0, w.y1).slice(2, w.x0, w.x1);
    auto canvas = image.slice(2, w.y0, w.y1).slice(3, w.x0, w.x1);
    std::vector<int64_t> drawn;
    for (int64_t i = 0; i < n; ++i)
      if (scenes[i].layers[l].opacity > 0) drawn.push_back(i);
    if (drawn.size() * 4 >= static_cast<size_t>(n) * 3) {  // most images draw it: all of them
      auto weight = layer_coverage(factors, own_profiles, own_scalars.select(1, 0), w);
      weight = factors.empty() ? under * weight : weight.mul_(under);
      under.sub_(weight);
      canvas.add_(weight.unsqueeze(1) * own_scalars.narrow(1, 1, 3).view({n, 3, 1, 1}));
    } else {  // only those that draw it (same ops on the same values, so the same result)
      const auto m = static_cast<int64_t>(drawn.size());
      auto index = upload(torch::tensor(drawn, torch::kInt64), device);
      auto sub_scalars = own_scalars.index_select(0, index);
      auto sub_under = under.index_select(0, index);
      auto weight = layer_coverage(factors, own_profiles.index_select(0, index), sub_scalars.select(1, 0), w);
      weight = factors.empty() ? sub_under * weight : weight.mul_(sub_under);
      under.index_copy_(0, index, sub_under.sub_(weight));
      canvas.index_add_(0, index, weight.unsqueeze(1) * sub_scalars.narrow(1, 1, 3).view({m, 3, 1, 1}));
    }
  }

  // Lighting: ambient + diffuse * clamp(n . l, 0, 1) on a sphere around the head.
  auto shade = col(kDepthCol) + row(kDepthRow);
  shade = torch::maximum(shade, per_image(globals + kDepthFloor)).sqrt_();
  shade.add_(row(kLightRow)).add_(col(kLightCol)).clamp_(0.0, 1.0);
  shade.mul_(per_image(globals + kDiffuse)).add_(per_image(globals + kAmbient));
  image.mul_(shade.unsqueeze(1));

  // Pose: resample the canvas (edges repeat, so zooming out shows more background).
  auto grid = torch::empty({n, S, S, 2}, options);
  auto grid_x = grid.select(3, 0), grid_y = grid.select(3, 1);
  at::add_out(grid_x, row(kGxRow), col(kGxCol));
  at::add_out(grid_y, row(kGyRow), col(kGyCol));
  image = F::grid_sample(image, grid,
                         F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kBorder).align_corners(false));

  // Sensor noise: each image reads its own window of the shared normal bank.
  const int64_t window = 3 * S * S;
  const int64_t windows = noise_bank.numel() - window + 1;
  if (windows < 1 || noise_bank.device() != device)
    throw std::logic_error("synth: noise bank too short or on the wrong device");
  auto offsets = torch::empty({n}, torch::kInt64);
  int64_t* offset = offsets.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    offset[i] = static_cast<int64_t>(scenes[i].noise_offset % static_cast<uint64_t>(windows));
  auto noise = noise_bank.unfold(0, window, 1).index_select(0, upload(offsets, device)).view({n, 3, S, S});
  image.add_(noise.mul_(scalars.select(1, globals + kNoiseSigma).view({n, 1, 1, 1})));
  return image.clamp_(0.0, 1.0);
}

}  // namespace arcforge::data::synth
