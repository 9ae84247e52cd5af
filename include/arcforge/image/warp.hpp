#pragma once
// Affine warp with cv2.warpAffine's sampling, so that an aligned face crop matches the one the
// recognizer was trained and evaluated on (InsightFace's norm_crop).
#include <array>
#include <cstdint>

#include "arcforge/image/image.hpp"

namespace arcforge::image {

// dst(x, y) = src(M^-1 (x, y)) with bilinear interpolation; source pixels outside the image read as
// `border` and blend with the inside ones at the edge. M = [a b tx; c d ty], row-major, maps
// source to destination exactly as cv2.warpAffine(src, M, (width, height), flags=INTER_LINEAR,
// borderMode=BORDER_CONSTANT, borderValue=border) takes it.
// Like OpenCV's 8-bit path, the source position is rounded to 1/32 pixel (its INTER_BITS = 5, with
// the same 10-bit intermediate rounding). The blend is in float, where OpenCV uses 15-bit integer
// weights; with 1/32-pixel fractions both are exact and round half up, so the output is
// bit-identical to cv2's (checked against OpenCV 4.6). 1- or 3-channel images.
// Throws std::invalid_argument on an empty source or a non-positive size, and arcforge::InputError
// when M is singular.
Image warp_affine(const Image& src, const std::array<double, 6>& source_to_destination, int width, int height,
                  uint8_t border = 0);

}  // namespace arcforge::image
