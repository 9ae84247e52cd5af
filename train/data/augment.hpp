#pragma once
// Train-time augmentation on image tensors: batched, seeded, on whatever device the batch lives on.
//
// A sample's augmentation is a pure function of (seed, batch_index, sample key): the random
// parameters are drawn on the CPU from the counter RNG (arcforge/common/counter_rng.hpp), so a
// sample gets the same parameters whatever the device, the thread count, the batch it sits in or
// the step a run was resumed from. On the CPU the output is then bit-identical too (every op is
// element-wise or per sample, reductions in a fixed order); CUDA agrees to float rounding. The
// parameters travel to the device as small tensors and each op runs batched on the samples it
// selects, in this order:
//
//   1. geometry  flip, rotation, scale and shift composed into one affine matrix per sample, then
//                one affine_grid + grid_sample (bilinear, black border like cv2.warpAffine with
//                borderValue 0); a flip with no other geometry is an exact torch::flip
//   2. down-up   resize to s x s (area) and back (bilinear): the low-resolution path of
//                InsightFace's DALI pipeline
//   3. blur      separable Gaussian, one grouped conv2d per kernel radius
//   4. colour    torchvision's ColorJitter: brightness, contrast, saturation (in that fixed order)
//   5. gray      ITU-R 601 luma copied to the three channels
//   6. erase     a random rectangle filled with noise, the image mean or black (RandomErasing)
//
// Two implementations: float32 batches on the CPU run hand-written per-sample loops
// (augment_cpu.hpp; about 4x faster than tensor ops there), everything else (CUDA, float64) runs
// the tensor ops. They agree to float rounding; tests hold each to the same independent formulas
// and to each other.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace arcforge::data {

// What an augmentation run does. Each `*_p` is the per-sample probability of the op (0 turns it
// off, 1 applies it to every sample); the other fields are the ranges its parameters are drawn
// from. Plain data, validated by validate(); a config section can map its keys onto these fields
// one to one by name (set_augment_option, augment_option_keys).
struct AugmentOptions {
  double flip_p = 0.5;                    // horizontal mirror

  double rotate_p = 0;                    // rotation about the centre by U(-max, max) degrees,
  double max_rotate_deg = 15;             //   counter-clockwise as displayed for positive angles
  double scale_p = 0;                     // zoom by U(scale_min, scale_max); > 1 zooms in
  double scale_min = 0.9, scale_max = 1.1;
  double shift_p = 0;                     // translation by U(-max, max) x image size, per axis
  double max_shift = 0.1;

  double color_p = 0;                     // ColorJitter: each factor ~ U(max(0, 1 - r), 1 + r)
  double brightness = 0.2, contrast = 0.2, saturation = 0.2;

  double erase_p = 0;                     // RandomErasing: area ~ U(min, max) of the image,
  double erase_area_min = 0.02, erase_area_max = 0.2;
  double erase_aspect_min = 0.3;          //   height/width log-uniform in [min, 1/min]
  std::string erase_fill = "noise";       //   noise (U(0,1) per value) | mean (per channel) | zero

  double downup_p = 0;                    // resize to s x s, s an integer ~ U{min..max} pixels,
  double downup_min = 56, downup_max = 89;  //   then back; skipped when s >= both image sides

  double blur_p = 0;                      // Gaussian blur, sigma ~ U(min, max) pixels; the kernel
  double blur_sigma_min = 0.1, blur_sigma_max = 2.0;  //   radius is ceil(3 sigma) (OpenCV's 8-bit rule)

  double gray_p = 0;                      // grayscale

  // True when some op can fire; a trainer can skip the augmenter entirely otherwise.
  bool any() const;
};

// Throws ConfigError naming the field when a value is out of range (a probability outside [0, 1],
// min > max, a non-positive scale or sigma, an unknown erase_fill, NaN, ...).
void validate(const AugmentOptions& options);

// Named starting points:
//   none     nothing
//   flip     InsightFace arcface_torch's default: a horizontal flip with p = 0.5, nothing else
//   article  the seed article's list: flip, rotation +-15 deg, scale 0.9..1.1, colour jitter 0.2,
//            one black 32x32-sized hole (Albumentations CoarseDropout), each with p = 0.5
//   dali     arcface_torch's DALI path (dali_aug=True): flip 0.5, down-up to 56..89 px p = 0.1,
//            blur (sigma 0.8) p = 0.2, saturation jitter p = 0.2 (stands in for DALI's hsv), gray p = 0.1
// Throws ConfigError for an unknown name.
AugmentOptions augment_preset(const std::string& name);
const std::vector<std::string>& augment_preset_names();

// Sets one field from text, by the field's name ("rotate_p", "erase_fill", ...). Throws
// ConfigError for an unknown key or a value that does not parse. Does not validate ranges.
void set_augment_option(AugmentOptions& options, const std::string& key, const std::string& value);
const std::vector<std::string>& augment_option_keys();

// What fills an erased rectangle.
enum class EraseFill { noise, mean, zero };
EraseFill parse_erase_fill(const std::string& name);  // ConfigError for an unknown name

// How one sample is augmented: the drawn parameters, or values set by hand (tests, previews).
// Every field at its default means "leave the sample alone".
struct SampleAugment {
  bool flip = false;
  double angle_deg = 0;              // counter-clockwise as displayed, about the image centre
  double scale = 1;                  // > 1 zooms in
  double shift_x = 0, shift_y = 0;   // fractions of the width / height; +x right, +y down

  int64_t downup_size = 0;           // 0 = off
  double blur_sigma = 0;             // 0 = off
  double brightness = 1, contrast = 1, saturation = 1;  // 1 = unchanged
  bool gray = false;

  bool erase = false;
  double erase_area = 0;             // fraction of the image
  double erase_aspect = 1;           // height / width
  double erase_top = 0, erase_left = 0;  // placement, uniforms in [0, 1)
  EraseFill erase_fill = EraseFill::noise;
  uint64_t erase_noise_seed = 0;     // seeds the noise fill (generated on the CPU)

  // Rotation, scale or shift: the sample goes through grid_sample (a lone flip does not).
  bool needs_warp() const;
  bool needs_color() const;
};

// The erased rectangle of a sample in an H x W image, in pixels.
struct EraseBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};
EraseBox erase_box(const SampleAugment& sample, int64_t height, int64_t width);

// The 2x3 matrix that maps an output pixel to the input position it samples, in pixel coordinates
// centred on the image centre ((W-1)/2, (H-1)/2); row-major {a, b, c, d, e, f}:
// in_x = a out_x + b out_y + c, in_y = d out_x + e out_y + f. Includes the flip.
std::vector<double> inverse_warp_matrix(const SampleAugment& sample, int64_t height, int64_t width);

// Applies params[i] to images[i]. images: [B,3,H,W] floating point in [0,1], any device;
// params.size() == B. Returns a batch of the same shape, dtype and device with values in [0,1];
// samples no op touches come back bit-identical (the input itself is returned when none is
// touched; otherwise a new contiguous NCHW tensor, whatever the input's memory format). Each op runs on the sub-batch it selects, element-wise or per sample, so on the CPU a
// sample's result does not depend on the other samples in the batch.
torch::Tensor augment_batch(const torch::Tensor& images, const std::vector<SampleAugment>& params);

class Augmenter {
 public:
  // Validates the options (ConfigError).
  Augmenter(AugmentOptions options, uint64_t seed);

  // The parameters of the sample with key `sample_key` in batch `batch_index`.
  SampleAugment draw(int64_t batch_index, int64_t sample_key) const;
  std::vector<SampleAugment> draw_batch(int64_t batch_index, int64_t first_key, int64_t count) const;

  // images: [B,3,H,W] float in [0,1] on any device; batch_index: the global step/micro-batch
  // counter. Sample i is keyed first_key + i: a rank or micro-batch holding samples
  // [offset, offset + B) of a global batch passes first_key = offset and gets exactly what the
  // whole batch would have got. Returns the augmented batch (see augment_batch).
  torch::Tensor apply(const torch::Tensor& images, int64_t batch_index, int64_t first_key = 0) const;

  const AugmentOptions& options() const { return options_; }
  uint64_t seed() const { return seed_; }

 private:
  AugmentOptions options_;
  uint64_t seed_;
};

}  // namespace arcforge::data
