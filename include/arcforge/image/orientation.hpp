#pragma once
// EXIF orientation: cameras store a portrait photo sideways and say so in the file (tag 0x0112,
// values 1..8). OpenCV's imread turns such a JPEG (or PNG) upright by default, so InsightFace's pipeline
// sees it upright; a decoder that ignores the tag hands the detector a face lying on its side. A
// WebP's tag is applied too (see webp_exif_orientation).
#include <string_view>

#include "arcforge/image/image.hpp"

namespace arcforge::image {

// The orientation a JPEG's EXIF (APP1) segment declares, 1..8; 1 (as stored) when `bytes` is not a
// JPEG, has no EXIF orientation, or the EXIF data is malformed or out of range. Reads only the
// header segments, bounds-checked; never throws.
int jpeg_exif_orientation(std::string_view bytes);

// The same for a PNG's eXIf chunk (PNG 1.5 extensions), read from the chunks before the image data,
// as OpenCV's imread has since 4.5.2.
int png_exif_orientation(std::string_view bytes);

// The same for a WebP's EXIF chunk (the extended format's metadata chunk, which the specification
// places after the image data, so every chunk is walked). libwebp's decoder ignores it, but
// libvips' autorot turns the picture as it says, and converters (cwebp -metadata exif) carry a
// camera's tag into it.
int webp_exif_orientation(std::string_view bytes);

// Whichever of the three applies to `bytes`; 1 for other formats.
int exif_orientation(std::string_view bytes);

// True for orientations 5..8, whose upright image is the stored one with width and height swapped.
bool orientation_swaps_axes(int orientation);

// The stored image turned upright as `orientation` says: 2 mirrors left-right, 3 turns 180, 4
// mirrors top-bottom, 5 transposes, 6 turns 90 degrees clockwise, 7 transposes across the other
// diagonal, 8 turns 90 degrees counter-clockwise; 1 (or any other value) returns it unchanged.
Image apply_orientation(Image stored, int orientation);

// Whether the upright image's x (or y) axis runs backwards along the stored image's axis it comes
// from (e.g. 6: upright x runs up the stored y axis). Maps between grids of different scales need
// it: the stored image's partial last block sits at the upright image's start on such an axis.
bool orientation_reverses_x(int orientation);
bool orientation_reverses_y(int orientation);

}  // namespace arcforge::image
