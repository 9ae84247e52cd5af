#pragma once
// The parameters behind one `synth` image: what stays fixed for an identity (shape and appearance)
// and what changes from photo to photo (pose, expression, lighting, camera, occlusion).
// Coordinates are the canonical face frame: x right, y down, the canvas spans [-1, 1] both ways,
// the face is centred near the origin with the eyes a little above it.
#include <array>
#include <cstdint>

namespace arcforge::data::synth {

using Rgb = std::array<double, 3>;  // linear RGB in [0, 1]

struct IdentityParams {
  // Face outline: an ellipse above the centre line, a jaw below it whose half-width falls off as
  // (1 - t^jaw_power)^chin_taper with t the relative distance to the chin.
  double face_half_width, face_top, face_chin, face_center_y, jaw_power, chin_taper;
  // Eyes (half-spacing between eye centres, vertical position, size) and irises.
  double eye_half_spacing, eye_y, eye_half_width, eye_aspect, iris_ratio;
  Rgb iris;
  // Brows: gap above the eye centre, length relative to the eye, thickness, outer-end lift, arch.
  double brow_gap, brow_length, brow_thickness, brow_slope, brow_arch, brow_inset;
  // Nose: eye line to nostril line, half-width.
  double nose_length, nose_half_width;
  // Mouth: nostril line to mouth line, half-width, lip thickness, lip colour.
  double mouth_gap, mouth_half_width, upper_lip, lower_lip;
  Rgb lip;
  // Ears and neck.
  double ear_half_height, ear_aspect, ear_drop, neck_half_width;
  // Colours.
  Rgb skin, hair, brow;
  double blush;
  // Hair: top hair inside a skull ellipse above a hairline y = hairline_y + curve x^2 + part x;
  // back hair (behind the face) reaches down to hair_end (none when hair_end <= face centre).
  double hair_volume, hair_height, hairline_y, hairline_curve, hairline_part, hair_end;
  bool bald;
  // Facial hair: opacities (0 = none) and where the beard starts.
  double beard, beard_top, beard_curve, moustache;
  // Moles in face-relative coordinates (x in face half-widths, y in canvas units), radius, count.
  int moles;
  std::array<double, 3> mole_x, mole_y, mole_radius;
  // Glasses (frame colour, rim thickness, lens size relative to the eye, lens tint opacity).
  bool glasses;
  Rgb frame;
  double frame_thickness, lens_width, lens_aspect, lens_tint;
};

struct SampleParams {
  // Pose: in-plane rotation (radians), yaw in [-1, 1] (features shift, the far side narrows),
  // zoom and shift of the whole image (canvas units).
  double roll, yaw, scale, shift_x, shift_y;
  // Expression.
  double smile, mouth_open, eye_open, brow_raise, gaze_x, gaze_y;
  // Lighting: direction (lx, ly, lz unit vector, z towards the camera), ambient and diffuse
  // strength, and a global colour transform: brightness, per-channel cast, saturation.
  double light_x, light_y, light_z, ambient, diffuse, brightness, saturation;
  Rgb cast;
  // Background: two colours mixed by a pattern a0 + ax x + sx sin(fx x + px) + ay y + sy sin(fy y + py).
  Rgb background, background_b;
  double bg_a0, bg_ax, bg_sx, bg_fx, bg_px, bg_ay, bg_sy, bg_fy, bg_py;
  Rgb clothes;
  double shoulder_width;
  // Occluder: a rectangle or ellipse of one colour, drawn over everything (opacity 0 = none).
  double occluder_opacity, occluder_x, occluder_y, occluder_half_width, occluder_half_height;
  bool occluder_round;
  Rgb occluder_color;
  // Camera: defocus as extra edge width in pixels (every edge of the flat-coloured layers ramps
  // over 1 + blur pixels), Gaussian noise sigma, and where in the noise bank its noise starts.
  double blur, noise_sigma;
  uint64_t noise_offset;
};

IdentityParams sample_identity(uint64_t seed, int64_t identity);
SampleParams sample_nuisance(uint64_t seed, int64_t identity, int64_t sample);

}  // namespace arcforge::data::synth
