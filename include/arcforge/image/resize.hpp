#pragma once
// Bilinear resize with OpenCV's geometry, so that a detector or recognizer fed by us sees what it saw
// in Python (cv2.resize(src, (width, height), interpolation=cv2.INTER_LINEAR)).
#include "arcforge/image/image.hpp"

namespace arcforge::image {

// cv2.resize INTER_LINEAR on a 1- or 3-channel image: destination pixel x samples the source at
// (x + 0.5) * src_width / width - 0.5 (pixel centres aligned), neighbours clamped to the border.
// Like cv2 it is a 2-tap filter whatever the scale, so a large reduction aliases (use it for
// moderate factors, as InsightFace does). The arithmetic is OpenCV's 8-bit fixed point (11-bit
// weights and the rounding of its vector kernel, see resize.cpp), so results are bit-identical to
// cv2's except, rarely, one grey level at the last few values of a row. Same size returns a copy.
// Throws std::invalid_argument on an empty source or a non-positive size.
Image resize_bilinear(const Image& src, int width, int height);

}  // namespace arcforge::image
