#pragma once
// A photo as the face pipeline reads it from a file: upright, and decoded no larger than the
// pipeline needs.
//
// A 12-megapixel JPEG is mostly wasted on a 640x640 detector and 112x112 face crops. FaceAnalyzer
// (load_photo, decode_photo) decodes such a JPEG at M/8 of its size (image::decode_reduced: 2-3x
// faster for baseline JPEGs, 1.5x for progressive ones, up to 64x less memory) when that still
// covers the detector's input, then, for each face, checks that the reduced pixels still hold at
// least one pixel per crop pixel; where they do not (a small face in a large photo), it decodes the
// file again at the scale that face needs. A JPEG's EXIF orientation is applied, as OpenCV's imread
// (and so InsightFace) does. Every coordinate the pipeline reports (boxes, landmarks, face sizes)
// is in the upright photo's full-size pixels, whatever the scale it decoded at.
#include <memory>
#include <string>

#include "arcforge/image/codec.hpp"
#include "arcforge/image/image.hpp"
#include "arcforge/pipeline/geometry.hpp"

namespace arcforge::pipeline {

// Where a photo's pixels sit on the file's full-size, upright pixel grid.
struct PhotoGeometry {
  int full_width = 0, full_height = 0;  // the file's size, upright (after its EXIF orientation)
  int eighths = 8;                      // the pixels are eighths / 8 of it; 8: full size
  // Reduced pixels of offset along an upright axis that runs backwards through the stored image:
  // the stored image's partial last block (ceil(n * eighths / 8) - n * eighths / 8) lands there.
  float offset_x = 0, offset_y = 0;

  bool reduced() const { return eighths < 8; }
  // Full-size coordinates to pixel coordinates and back, pixel centres aligned (an output pixel of
  // the scaled IDCT covers the 8 / eighths full-size pixels around its centre).
  Point2 to_pixels(Point2 full) const;
  Point2 to_full(Point2 pixel) const;
};

struct Photo : PhotoGeometry {
  image::Image pixels;                          // RGB (image::decode's output is always), upright
  int orientation = 1;                          // the EXIF orientation applied (1: as stored)
  std::shared_ptr<const std::string> encoded;   // the file's bytes when decoded from them (else null)
  std::string name;                             // for messages

  // A decoded RGB image at full size (no file behind it).
  static Photo from_image(image::Image rgb, std::string name = "photo");
  // The file decoded at eighths / 8 (JPEG; 8 for any format) and turned upright by `orientation`
  // (1 leaves it as stored). Throws InputError naming `name`.
  static Photo decode(std::shared_ptr<const std::string> encoded, std::string name, int eighths, int orientation,
                      const image::DecodeLimits& limits);
};

// The smallest eighths (1..8) at which a width x height photo, letterboxed into an input_width x
// input_height detector, is still reduced by the letterbox rather than enlarged: its width reaches
// input_width or its height reaches input_height. 8 when even the full size does not.
int detection_eighths(int width, int height, int input_width, int input_height);

// The smallest eighths at which `full_to_crop` (a map from full-size pixels to a face crop)
// samples the reduced pixels no more densely than one crop pixel per pixel.
int alignment_eighths(const Affine2x3& full_to_crop);

}  // namespace arcforge::pipeline
