#pragma once
// A photo as the face pipeline reads it from a file: decoded no larger than the pipeline needs.
//
// A 12-megapixel JPEG is mostly wasted on a 640x640 detector and 112x112 face crops. FaceAnalyzer
// (load_photo, decode_photo) decodes such a JPEG at M/8 of its size (image::decode_reduced: 2-3x
// faster for baseline JPEGs, 1.5x for progressive ones, up to 64x less memory) when that still
// covers the detector's input, then, for each face, checks that the reduced pixels still hold at
// least one pixel per crop pixel; where they do not (a small face in a large photo), it decodes the
// file again at the scale that face needs. Every coordinate the pipeline reports (boxes,
// landmarks, face sizes) is in the file's full-size pixels, whatever the scale it decoded at.
#include <memory>
#include <string>

#include "arcforge/image/image.hpp"
#include "arcforge/pipeline/geometry.hpp"

namespace arcforge::pipeline {

struct Photo {
  image::Image pixels;                          // RGB, eighths / 8 of the full size
  int full_width = 0, full_height = 0;          // the file's size
  int eighths = 8;                              // 8: full size
  std::shared_ptr<const std::string> encoded;   // the file's bytes when decoded from them (else null)
  std::string name;                             // for messages

  // A decoded RGB image at full size (no file behind it).
  static Photo from_image(image::Image rgb, std::string name = "photo");

  bool reduced() const { return eighths < 8; }
  // Full-size pixel coordinates to `pixels` coordinates and back (reduced_point, full_point).
  Point2 to_pixels(Point2 full) const;
  Point2 to_full(Point2 pixel) const;
};

// A full-size point on the grid decoded at eighths / 8, and back: pixel centres aligned, since an
// output pixel of the scaled IDCT covers the 8 / eighths full-size pixels around its centre.
Point2 reduced_point(Point2 full, int eighths);
Point2 full_point(Point2 reduced, int eighths);

// 1-channel images become 3 equal channels; RGB passes through.
image::Image as_rgb(image::Image decoded);

// The smallest eighths (1..8) at which a width x height photo, letterboxed into an input_width x
// input_height detector, is still reduced by the letterbox rather than enlarged: its width reaches
// input_width or its height reaches input_height. 8 when even the full size does not.
int detection_eighths(int width, int height, int input_width, int input_height);

// The smallest eighths at which `full_to_crop` (a map from full-size pixels to a face crop)
// samples the reduced pixels no more densely than one crop pixel per pixel.
int alignment_eighths(const Affine2x3& full_to_crop);

}  // namespace arcforge::pipeline
