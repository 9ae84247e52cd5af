// Turns identity + nuisance parameters into the layered, separable description of one image.
// Layers are appended back to front (painter's order) and reversed at the end.
#include "train/data/synth_scene.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>

namespace arcforge::data::synth {
namespace {

using Curve = std::function<double(double)>;

constexpr double kFar = 1e4;            // "infinitely" outside a shape, still finite as float
constexpr double kMinSlopeScale = 0.3;  // caps how far a steep edge's anti-aliasing smears

float capped(double v) { return static_cast<float>(std::clamp(v, -kFar, kFar)); }

// Builds factors on the canvas grid: pixel centres at (2i + 1) / S - 1. Coverage ramps from 0 to
// 1 across a boundary over 1 + blur pixels: one pixel is anti-aliasing, the rest is defocus, which
// for flat-coloured layers is all a blur would change (noise is added after).
class Canvas {
 public:
  Canvas(int64_t size, double blur_pixels)
      : size_(size), pixel_(2.0 / size), sharpness_(1.0 / (pixel_ * (1.0 + blur_pixels))), coord_(size) {
    for (int64_t i = 0; i < size; ++i) coord_[i] = (2.0 * i + 1.0) / size - 1.0;
  }
  int64_t size() const { return size_; }
  double coord(int64_t i) const { return coord_[i]; }

  // A blob symmetric about x = cx whose half-width at height y in (top, bottom) is half_width(y),
  // tapering to zero width at top and bottom. The horizontal distance to the edge is scaled by
  // the edge's slope to approximate the true distance, so steep edges stay one pixel wide.
  Factor shape(double cx, double top, double bottom, const Curve& half_width) const {
    Factor f = make(Factor::Kind::shape);
    const double k = sharpness_, h = 0.5 * pixel_;
    for (int64_t i = 0; i < size_; ++i) {
      f.row[i] = capped(std::abs(coord_[i] - cx));
      const double y = coord_[i];
      double a, b;
      if (y > top && y < bottom) {
        const double y0 = std::max(top, y - h), y1 = std::min(bottom, y + h);
        const double slope = (half_width(y1) - half_width(y0)) / (y1 - y0);
        const double s = std::max(kMinSlopeScale, 1.0 / std::sqrt(1.0 + slope * slope));
        a = 0.5 + k * s * half_width(y);
        b = k * s;
      } else {  // beyond the tips: distance to the nearer tip
        a = 0.5 - k * (y <= top ? top - y : y - bottom);
        b = k;
      }
      f.col_a[i] = capped(a);
      f.col_b[i] = capped(b);
    }
    return finish(std::move(f));
  }

  Factor ellipse(double cx, double cy, double rx, double ry) const {
    return shape(cx, cy - ry, cy + ry, [=](double y) {
      const double t = (y - cy) / ry;
      return rx * std::sqrt(std::max(0.0, 1.0 - t * t));
    });
  }

  // Coverage 1 below the curve y = f(x) (larger y), 0 above; `above` is the opposite side.
  Factor below(const Curve& f) const { return side(f, +1.0); }
  Factor above(const Curve& f) const { return side(f, -1.0); }

  // Vertical strip x0 < x < x1 and horizontal strip y0 < y < y1 (a rectangle is their product).
  Factor columns(double x0, double x1) const {
    Factor f = make(Factor::Kind::band);
    for (int64_t i = 0; i < size_; ++i) {
      f.row[i] = capped(0.5 + sharpness_ * std::min(coord_[i] - x0, x1 - coord_[i]));
      f.col_a[i] = 0.0f;
    }
    return finish(std::move(f));
  }
  Factor rows(double y0, double y1) const {
    Factor f = make(Factor::Kind::band);
    for (int64_t i = 0; i < size_; ++i) {
      f.row[i] = 0.0f;
      f.col_a[i] = capped(0.5 + sharpness_ * std::min(coord_[i] - y0, y1 - coord_[i]));
    }
    return finish(std::move(f));
  }

  // A soft pattern clamp(fx(x) + fy(y)) for backgrounds.
  Factor pattern(const Curve& fx, const Curve& fy) const {
    Factor f = make(Factor::Kind::band);
    for (int64_t i = 0; i < size_; ++i) {
      f.row[i] = capped(fx(coord_[i]));
      f.col_a[i] = capped(fy(coord_[i]));
    }
    return finish(std::move(f));
  }

  Factor complement(Factor f) const {
    f.complement = true;  // 1 - coverage is non-zero almost everywhere
    f.y0 = f.x0 = 0;
    f.y1 = f.x1 = size_;
    return f;
  }

 private:
  Factor make(Factor::Kind kind) const {
    Factor f;
    f.kind = kind;
    f.row.resize(size_);
    f.col_a.resize(size_);
    if (kind == Factor::Kind::shape) f.col_b.resize(size_);
    return f;
  }
  // clamp(0.5 + k * sign * (y - f(x))) = clamp(row[x] + col[y]).
  Factor side(const Curve& f, double sign) const {
    Factor out = make(Factor::Kind::band);
    for (int64_t i = 0; i < size_; ++i) {
      out.row[i] = capped(0.5 - sharpness_ * sign * f(coord_[i]));
      out.col_a[i] = capped(sharpness_ * sign * coord_[i]);
    }
    return finish(std::move(out));
  }

  // Sets the factor's support window (see Factor); `margin` keeps float rounding on the safe side.
  Factor finish(Factor f) const {
    constexpr float kMargin = 1e-3f;
    const auto& row = f.row;
    const auto& a = f.col_a;
    std::pair<int64_t, int64_t> ys, xs;
    if (f.kind == Factor::Kind::band) {  // row[x] + a[y] > 0
      const float row_max = *std::max_element(row.begin(), row.end());
      const float a_max = *std::max_element(a.begin(), a.end());
      ys = span([&](int64_t y) { return a[y] + row_max > -kMargin; });
      xs = span([&](int64_t x) { return row[x] + a_max > -kMargin; });
    } else {  // a[y] - b[y] * row[x] > 0 with b > 0 and row >= 0
      const auto& b = f.col_b;
      const float row_min = *std::min_element(row.begin(), row.end());
      float reach = -1.0f;  // the largest |x - centre| any row covers
      for (int64_t y = 0; y < size_; ++y) reach = std::max(reach, a[y] / b[y]);
      ys = span([&](int64_t y) { return a[y] - b[y] * row_min > -kMargin; });
      xs = span([&](int64_t x) { return row[x] < reach * (1.0f + kMargin) + kMargin; });
    }
    f.y0 = ys.first;
    f.y1 = ys.second;
    f.x0 = xs.first;
    f.x1 = xs.second;
    return f;
  }

  // First and one-past-last index where keep(i) holds (an empty range if none).
  template <typename Keep>
  std::pair<int64_t, int64_t> span(Keep keep) const {
    int64_t first = 0, last = size_;
    while (first < size_ && !keep(first)) ++first;
    while (last > first && !keep(last - 1)) --last;
    return {first, last};
  }

  int64_t size_;
  double pixel_;      // pixel size in canvas units
  double sharpness_;  // coverage change per canvas unit across an edge
  std::vector<double> coord_;
};

Rgb scaled(const Rgb& c, double s) { return {c[0] * s, c[1] * s, c[2] * s}; }
Rgb mixed(const Rgb& a, const Rgb& b, double t) {
  return {a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t};
}

// Resolved geometry of the face in this sample (identity after yaw and expression).
struct Face {
  double cx, cy, half_width, top, chin, jaw_power, chin_taper;
  double width_at(double y) const {
    const double dy = y - cy;
    if (dy <= 0) {
      const double t = std::min(1.0, -dy / top);
      return half_width * std::sqrt(1.0 - t * t);
    }
    const double t = std::min(1.0, dy / chin);
    return half_width * std::pow(1.0 - std::pow(t, jaw_power), chin_taper);
  }
  Factor shape(const Canvas& canvas) const {
    return canvas.shape(cx, cy - top, cy + chin, [this](double y) { return width_at(y); });
  }
};

class SceneWriter {
 public:
  SceneWriter(const IdentityParams& id, const SampleParams& s, int64_t size)
      : id_(id), s_(s), canvas_(size, s.blur) {
    face_ = Face{s.yaw * 0.02, id.face_center_y, id.face_half_width * (1.0 - 0.08 * std::abs(s.yaw)),
                 id.face_top, id.face_chin, id.jaw_power, id.chin_taper};
  }

  Scene build() {
    add_background();
    add_body();
    add_head();
    add_eyes();
    add_nose();
    add_mouth_and_beard();
    add_brows_and_hair_top();
    add_glasses();
    add_occluder();
    std::reverse(scene_.layers.begin(), scene_.layers.end());
    add_lighting();
    add_warp();
    scene_.noise_sigma = s_.noise_sigma;
    scene_.noise_offset = s_.noise_offset;
    return std::move(scene_);
  }

 private:
  // Horizontal shift of a feature at the given depth (towards the camera) under yaw.
  double yaw_shift(double depth) const { return s_.yaw * depth; }
  // Width factor of a feature on side (-1 left, +1 right): the side turning away narrows.
  double yaw_squash(double side) const {
    const double away = std::max(0.0, side * s_.yaw), towards = std::max(0.0, -side * s_.yaw);
    return 1.0 - 0.35 * away + 0.1 * towards;
  }

  void add(const char* name, const Rgb& color, double opacity, std::vector<Factor> factors) {
    // The global colour transform (brightness, cast, saturation) is linear, so it is applied to
    // the layer colours instead of the pixels.
    const double luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2];
    Rgb c;
    for (int ch = 0; ch < 3; ++ch)
      c[ch] = s_.brightness * s_.cast[ch] * (luma + s_.saturation * (color[ch] - luma));
    scene_.layers.push_back(Layer{name, c, opacity, std::move(factors)});
  }

  void add_background() {
    add("background", s_.background, 1.0, {});
    const SampleParams s = s_;
    add("background pattern", s.background_b, 1.0,
        {canvas_.pattern([s](double x) { return s.bg_a0 + s.bg_ax * x + s.bg_sx * std::sin(s.bg_fx * x + s.bg_px); },
                         [s](double y) { return s.bg_ay * y + s.bg_sy * std::sin(s.bg_fy * y + s.bg_py); })});
  }

  void add_body() {
    const double chin_y = face_.cy + face_.chin;
    add("neck", scaled(id_.skin, 0.8), 1.0,
        {canvas_.columns(face_.cx - id_.neck_half_width, face_.cx + id_.neck_half_width),
         canvas_.rows(face_.cy + 0.2, 3.0)});
    const double ry = 0.6;
    add("shoulders", s_.clothes, 1.0,
        {canvas_.ellipse(-yaw_shift(0.05), chin_y + 0.1 + ry, s_.shoulder_width, ry)});
  }

  // Back to front: ears, back hair (hides the ears when long), face, cheeks, moles.
  void add_head() {
    for (double side : {-1.0, 1.0}) {
      const double ry = id_.ear_half_height, rx = ry * id_.ear_aspect * yaw_squash(side);
      const double ey = id_.eye_y + id_.ear_drop;
      const double ex = face_.cx - yaw_shift(0.06) + side * (face_.width_at(ey) + rx * 0.2);
      add(side < 0 ? "left ear" : "right ear", scaled(id_.skin, 0.9), 1.0, {canvas_.ellipse(ex, ey, rx, ry)});
      add(side < 0 ? "left inner ear" : "right inner ear", scaled(id_.skin, 0.7), 0.5,
          {canvas_.ellipse(ex + side * rx * 0.15, ey, rx * 0.45, ry * 0.6)});
    }
    // Back hair: a skull-shaped cap that continues down behind the face, cut at hair_end.
    const double skull_cx = face_.cx + yaw_shift(0.03);
    const double skull_rx = face_.half_width * id_.hair_volume;
    const double skull_ry = face_.top + id_.hair_height;
    const double cy = face_.cy;
    const bool long_hair = !id_.bald && id_.hair_end > cy;
    const double back_rx = skull_rx * 1.03, back_ry = skull_ry * 1.02;
    add("back hair", id_.hair, long_hair ? 1.0 : 0.0,
        {canvas_.shape(skull_cx, cy - back_ry, 3.0,
                       [=](double y) {
                         if (y >= cy) return back_rx * (1.0 + 0.15 * (y - cy));
                         const double t = (y - cy) / back_ry;
                         return back_rx * std::sqrt(std::max(0.0, 1.0 - t * t));
                       }),
         canvas_.above([end = id_.hair_end](double) { return end; })});
    add("face", id_.skin, 1.0, {face_.shape(canvas_)});
    for (double side : {-1.0, 1.0}) {
      const double bx = face_.cx + yaw_shift(0.1) + side * (id_.eye_half_spacing + 0.03);
      const double by = id_.eye_y + id_.nose_length * 0.7;
      add(side < 0 ? "left cheek" : "right cheek", {0.9, 0.35, 0.35}, id_.blush,
          {canvas_.ellipse(bx, by, 0.09 * yaw_squash(side), 0.06)});
    }
    const Rgb mole_color = mixed(id_.skin, {0.22, 0.13, 0.08}, 0.75);
    static const char* mole_names[3] = {"mole 1", "mole 2", "mole 3"};
    for (int m = 0; m < 3; ++m) {
      const double my = id_.mole_y[m];
      const double mx = face_.cx + yaw_shift(0.08) + id_.mole_x[m] * 0.8 * face_.width_at(my);
      add(mole_names[m], mole_color, m < id_.moles ? 0.85 : 0.0,
          {canvas_.ellipse(mx, my, id_.mole_radius[m], id_.mole_radius[m])});
    }
  }

  void add_eyes() {
    const double open = s_.eye_open;
    for (double side : {-1.0, 1.0}) {
      const char* names[5] = {"left eye outline", "left sclera", "left iris", "left pupil", "left glint"};
      if (side > 0) {
        names[0] = "right eye outline"; names[1] = "right sclera"; names[2] = "right iris";
        names[3] = "right pupil"; names[4] = "right glint";
      }
      const double squash = yaw_squash(side);
      const double cx = face_.cx + yaw_shift(0.14) + side * id_.eye_half_spacing * (1.0 - 0.15 * std::abs(s_.yaw));
      const double cy = id_.eye_y;
      const double rx = id_.eye_half_width * squash;
      const double ry = std::max(0.003, id_.eye_half_width * id_.eye_aspect * open);
      // A lash line: a dark ellipse a little larger than the eye, thicker on top.
      add(names[0], {0.10, 0.07, 0.06}, 0.9, {canvas_.ellipse(cx, cy - 0.004, rx * 1.08 + 0.006, ry + 0.011)});
      Factor sclera = canvas_.ellipse(cx, cy, rx, ry);
      add(names[1], {0.94, 0.92, 0.88}, 1.0, {sclera});
      const double iris_r = id_.eye_half_width * id_.iris_ratio;
      const double ix = cx + s_.gaze_x * rx * 0.5, iy = cy + s_.gaze_y * ry * 0.5;
      add(names[2], id_.iris, 1.0, {canvas_.ellipse(ix, iy, iris_r * squash, iris_r), sclera});
      add(names[3], {0.03, 0.03, 0.03}, 1.0, {canvas_.ellipse(ix, iy, iris_r * 0.45 * squash, iris_r * 0.45), sclera});
      add(names[4], {1.0, 1.0, 1.0}, 0.8,
          {canvas_.ellipse(ix - iris_r * 0.35, iy - iris_r * 0.35, iris_r * 0.22, iris_r * 0.22), sclera});
    }
  }

  void add_nose() {
    const double cx = face_.cx + yaw_shift(0.2);
    const double ny = id_.eye_y + id_.nose_length;
    const double hw = id_.nose_half_width;
    add("nose shadow", scaled(id_.skin, 0.7), 0.35, {canvas_.ellipse(cx, ny + 0.012, hw * 1.05, hw * 0.38)});
    add("nose tip", scaled(id_.skin, 1.08), 0.5, {canvas_.ellipse(cx, ny - 0.02, hw * 0.55, hw * 0.45)});
    add("nose line", scaled(id_.skin, 0.62), 0.35,
        {canvas_.ellipse(cx - hw * 0.6 + yaw_shift(0.05), ny - id_.nose_length * 0.38, 0.012, id_.nose_length * 0.38)});
    for (double side : {-1.0, 1.0})
      add(side < 0 ? "left nostril" : "right nostril", scaled(id_.skin, 0.4), 0.75,
          {canvas_.ellipse(cx + side * hw * 0.55 * yaw_squash(side), ny, hw * 0.3, hw * 0.18)});
  }

  void add_mouth_and_beard() {
    const double cx = face_.cx + yaw_shift(0.13);
    const double my = id_.eye_y + id_.nose_length + id_.mouth_gap;
    const double hw = id_.mouth_half_width * (1.0 + 0.1 * s_.smile) * (1.0 - 0.15 * std::abs(s_.yaw));
    const double lift = 0.03 * s_.smile;       // corners up when smiling
    const double open = 0.055 * s_.mouth_open;  // gap between the lips
    // Lens envelope: 1 at the centre, 0 at the corners, undefined (far) beyond them.
    auto envelope = [=](double x) {
      const double u = (x - cx) / hw;
      return std::sqrt(std::max(0.0, 1.0 - u * u));
    };
    auto inside = [=](double x) { return std::abs(x - cx) < hw; };
    auto line = [=](double x) {
      const double u = (x - cx) / hw;
      return my - lift * u * u;
    };
    const IdentityParams id = id_;
    auto lip_top = [=](double x) { return inside(x) ? line(x) - open * 0.5 * envelope(x) - id.upper_lip * std::pow(envelope(x), 0.6) : kFar; };
    auto lip_bottom = [=](double x) { return inside(x) ? line(x) + open * 0.5 * envelope(x) + id.lower_lip * std::pow(envelope(x), 0.6) : -kFar; };

    // Facial hair sits under the mouth: the beard covers the face below a curve that rises
    // towards the sideburns; the moustache fills the band above the upper lip.
    const double beard_y = my - 0.03 + id_.beard_top;
    add("beard", id_.hair, id_.beard,
        {face_.shape(canvas_),
         canvas_.below([=, c = id_.beard_curve, fcx = face_.cx](double x) { return beard_y - c * (x - fcx) * (x - fcx) / 0.3; })});
    const double mhw = hw * 1.15;
    add("moustache", id_.hair, id_.moustache,
        {canvas_.below([=](double x) {
           const double u = (x - cx) / mhw;
           return std::abs(u) < 1 ? lip_top(cx) - 0.045 * std::sqrt(1 - u * u) + 0.02 * u * u : kFar;
         }),
         canvas_.above([=](double x) { return std::abs(x - cx) < mhw ? lip_top(cx) + 0.006 : -kFar; })});
    add("lips", id_.lip, 1.0, {canvas_.below(lip_top), canvas_.above(lip_bottom)});
    // The opening: at least a thin dark line where the lips meet.
    const double gap = std::max(open * 0.5, 0.006);
    add("mouth opening", {0.22, 0.06, 0.07}, 0.9,
        {canvas_.below([=](double x) { return inside(x) ? line(x) - gap * envelope(x) : kFar; }),
         canvas_.above([=](double x) { return inside(x) ? line(x) + gap * envelope(x) : -kFar; })});
  }

  void add_brows_and_hair_top() {
    for (double side : {-1.0, 1.0}) {
      const double squash = yaw_squash(side);
      const double cx = face_.cx + yaw_shift(0.13) +
                        side * (id_.eye_half_spacing - id_.brow_inset) * (1.0 - 0.15 * std::abs(s_.yaw));
      const double cy = id_.eye_y - id_.brow_gap - s_.brow_raise;
      const double half = id_.eye_half_width * id_.brow_length * squash;
      const IdentityParams id = id_;
      // u runs from the inner end (-1) to the outer end (+1).
      auto u_of = [=](double x) { return side * (x - cx) / half; };
      auto centre = [=](double u) { return cy - id.brow_arch * (1 - u * u) - id.brow_slope * u * half * 0.5; };
      auto thickness = [=](double u) {
        return id.brow_thickness * (1.0 - 0.55 * (u + 1) * (u + 1) / 4) * std::sqrt(std::max(0.0, 1 - std::pow(u, 6)));
      };
      add(side < 0 ? "left brow" : "right brow", id_.brow, 0.95,
          {canvas_.below([=](double x) {
             const double u = u_of(x);
             return std::abs(u) < 1 ? centre(u) - thickness(u) * 0.5 : kFar;
           }),
           canvas_.above([=](double x) {
             const double u = u_of(x);
             return std::abs(u) < 1 ? centre(u) + thickness(u) * 0.5 : -kFar;
           })});
    }
    const double hx = face_.cx + yaw_shift(0.03);
    const IdentityParams id = id_;
    add("hair", id_.hair, id_.bald ? 0.0 : 1.0,
        {canvas_.ellipse(hx, face_.cy, face_.half_width * id_.hair_volume, face_.top + id_.hair_height),
         canvas_.above([=](double x) {
           const double d = x - hx;
           return id.hairline_y + id.hairline_curve * d * d + id.hairline_part * d;
         })});
  }

  void add_glasses() {
    const double opacity = id_.glasses ? 1.0 : 0.0;
    const double t = id_.frame_thickness;
    const double cy = id_.eye_y + 0.01;
    double inner_edge = 0;
    for (double side : {-1.0, 1.0}) {
      const double squash = yaw_squash(side);
      const double cx = face_.cx + yaw_shift(0.17) + side * id_.eye_half_spacing * (1.0 - 0.15 * std::abs(s_.yaw));
      const double rx = id_.eye_half_width * id_.lens_width * squash, ry = id_.eye_half_width * id_.lens_width * id_.lens_aspect;
      add(side < 0 ? "left lens" : "right lens", {0.08, 0.08, 0.1}, opacity * id_.lens_tint,
          {canvas_.ellipse(cx, cy, rx, ry)});
      add(side < 0 ? "left rim" : "right rim", id_.frame, opacity,
          {canvas_.ellipse(cx, cy, rx + t, ry + t), canvas_.complement(canvas_.ellipse(cx, cy, rx, ry))});
      if (side < 0) inner_edge = cx + rx;
      else add("bridge", id_.frame, opacity, {canvas_.columns(inner_edge, cx - rx), canvas_.rows(cy - 0.6 * t, cy + 0.6 * t)});
    }
  }

  // One occluder per sample at most, a box or a disc; both layers exist in every scene so that
  // all samples share one layer list.
  void add_occluder() {
    const SampleParams& s = s_;
    const double x = s.occluder_x, y = s.occluder_y, hw = s.occluder_half_width, hh = s.occluder_half_height;
    add("occluder box", s.occluder_color, s.occluder_round ? 0.0 : s.occluder_opacity,
        {canvas_.columns(x - hw, x + hw), canvas_.rows(y - hh, y + hh)});
    add("occluder disc", s.occluder_color, s.occluder_round ? s.occluder_opacity : 0.0,
        {canvas_.ellipse(x, y, hw, hh)});
  }

  // Shading of a sphere around the head; outside it the normal keeps a minimum depth so the
  // background is lit softly instead of falling to ambient.
  void add_lighting() {
    const int64_t n = canvas_.size();
    const double hx = face_.cx, hy = face_.cy - 0.1;
    const double rx = face_.half_width * 1.15, ry = (face_.top + face_.chin) * 0.55;
    const double lz2 = s_.light_z * s_.light_z;
    scene_.light_row.resize(n);
    scene_.light_col.resize(n);
    scene_.depth_row.resize(n);
    scene_.depth_col.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const double X = std::clamp((canvas_.coord(i) - hx) / rx, -1.0, 1.0);
      const double Y = std::clamp((canvas_.coord(i) - hy) / ry, -1.0, 1.0);
      scene_.light_row[i] = static_cast<float>(s_.light_x * X);
      scene_.light_col[i] = static_cast<float>(s_.light_y * Y);
      scene_.depth_row[i] = static_cast<float>(-lz2 * X * X);
      scene_.depth_col[i] = static_cast<float>(lz2 * (1.0 - Y * Y));
    }
    scene_.depth_floor = lz2 * 0.35 * 0.35;
    scene_.ambient = s_.ambient;
    scene_.diffuse = s_.diffuse;
  }

  // Output pixel p shows canvas point q with p = scale * R(roll) * q + shift, so
  // q = R^T (p - shift) / scale; split into the part from x and the part from y.
  void add_warp() {
    const int64_t n = canvas_.size();
    const double c = std::cos(s_.roll) / s_.scale, s = std::sin(s_.roll) / s_.scale;
    scene_.gx_row.resize(n);
    scene_.gx_col.resize(n);
    scene_.gy_row.resize(n);
    scene_.gy_col.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const double px = canvas_.coord(i) - s_.shift_x, py = canvas_.coord(i) - s_.shift_y;
      scene_.gx_row[i] = static_cast<float>(c * px);
      scene_.gx_col[i] = static_cast<float>(s * py);
      scene_.gy_row[i] = static_cast<float>(-s * px);
      scene_.gy_col[i] = static_cast<float>(c * py);
    }
  }

  const IdentityParams& id_;
  const SampleParams& s_;
  Canvas canvas_;
  Face face_;
  Scene scene_;
};

}  // namespace

Scene build_scene(const IdentityParams& identity, const SampleParams& sample, int64_t image_size) {
  return SceneWriter(identity, sample, image_size).build();
}

}  // namespace arcforge::data::synth
