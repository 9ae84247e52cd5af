// EXIF orientation: a bounds-checked walk to tag 0x0112 of IFD0 (in a JPEG's APP1 segment, a PNG's
// eXIf chunk or a WebP's EXIF chunk), and the eight upright turns.
#include "arcforge/image/orientation.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace arcforge::image {
namespace {

struct Reader {
  std::string_view data;
  bool big_endian = true;

  bool has(size_t offset, size_t length) const { return offset <= data.size() && length <= data.size() - offset; }
  uint32_t u16(size_t at) const {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data()) + at;
    return big_endian ? (p[0] << 8) | p[1] : (p[1] << 8) | p[0];
  }
  uint32_t u32(size_t at) const {
    return big_endian ? (u16(at) << 16) | u16(at + 2) : (u16(at + 2) << 16) | u16(at);
  }
};

// The orientation in a TIFF structure (the payload of "Exif\0\0"), or 1. PNG and WebP chunks hold
// the TIFF alone, but some writers keep JPEG's "Exif\0\0" in front of it there.
int tiff_orientation(std::string_view tiff) {
  if (tiff.substr(0, 6) == std::string_view("Exif\0\0", 6)) tiff.remove_prefix(6);
  Reader r{tiff};
  if (!r.has(0, 8)) return 1;
  if (tiff.substr(0, 2) == "II") {
    r.big_endian = false;
  } else if (tiff.substr(0, 2) != "MM") {
    return 1;
  }
  if (r.u16(2) != 42) return 1;
  const size_t ifd = r.u32(4);
  if (!r.has(ifd, 2)) return 1;
  const size_t entries = r.u16(ifd);
  for (size_t i = 0; i < entries; ++i) {
    const size_t entry = ifd + 2 + 12 * i;
    if (!r.has(entry, 12)) return 1;
    if (r.u16(entry) != 0x0112) continue;
    const bool short_type = r.u16(entry + 2) == 3;
    const uint32_t value = r.u16(entry + 8);  // a single SHORT sits in the first half of the field
    return short_type && r.u32(entry + 4) >= 1 && value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
  }
  return 1;
}

}  // namespace

int jpeg_exif_orientation(std::string_view bytes) {
  Reader r{bytes};
  if (!r.has(0, 2) || static_cast<unsigned char>(bytes[0]) != 0xFF || static_cast<unsigned char>(bytes[1]) != 0xD8) {
    return 1;
  }
  size_t p = 2;
  while (r.has(p, 4)) {
    if (static_cast<unsigned char>(bytes[p]) != 0xFF) return 1;
    const int marker = static_cast<unsigned char>(bytes[p + 1]);
    if (marker == 0xFF) {  // fill byte
      ++p;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {  // no length field
      p += 2;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return 1;  // scan data or the end: no EXIF before it
    const size_t length = r.u16(p + 2);             // includes its own two bytes
    if (length < 2 || !r.has(p + 2, length)) return 1;
    const std::string_view payload = bytes.substr(p + 4, length - 2);
    if (marker == 0xE1 && payload.size() >= 6 && std::memcmp(payload.data(), "Exif\0\0", 6) == 0) {
      return tiff_orientation(payload.substr(6));
    }
    p += 2 + length;
  }
  return 1;
}

int png_exif_orientation(std::string_view bytes) {
  static constexpr std::string_view signature("\x89PNG\r\n\x1a\n", 8);
  if (bytes.substr(0, 8) != signature) return 1;
  Reader r{bytes};
  size_t p = 8;
  while (r.has(p, 8)) {  // length, type, data, CRC
    const size_t length = r.u32(p);
    const std::string_view type = bytes.substr(p + 4, 4);
    if (type == "IDAT" || type == "IEND" || !r.has(p + 8, length)) return 1;
    if (type == "eXIf") {
      return tiff_orientation(bytes.substr(p + 8, length));
    }
    p += 12 + length;
  }
  return 1;
}

int webp_exif_orientation(std::string_view bytes) {
  if (bytes.size() < 12 || bytes.substr(0, 4) != "RIFF" || bytes.substr(8, 4) != "WEBP") return 1;
  const Reader r{bytes, /*big_endian=*/false};
  // The chunks the RIFF header's size covers and the file holds (a truncated file is read as far as it goes).
  const size_t end = std::min<size_t>(bytes.size(), size_t{8} + r.u32(4));
  size_t p = 12;
  while (p + 8 <= end) {  // FourCC, little-endian size, data, a pad byte after odd sizes
    const size_t length = r.u32(p + 4);
    if (length > end - p - 8) return 1;
    if (bytes.substr(p, 4) == "EXIF") return tiff_orientation(bytes.substr(p + 8, length));
    p += 8 + length + (length & 1);
  }
  return 1;
}

int exif_orientation(std::string_view bytes) {
  for (int (*reader)(std::string_view) : {jpeg_exif_orientation, png_exif_orientation, webp_exif_orientation}) {
    const int orientation = reader(bytes);  // each is 1 for another format's bytes
    if (orientation != 1) return orientation;
  }
  return 1;
}

bool orientation_swaps_axes(int orientation) { return orientation >= 5 && orientation <= 8; }

bool orientation_reverses_x(int orientation) {
  return orientation == 2 || orientation == 3 || orientation == 6 || orientation == 7;
}

bool orientation_reverses_y(int orientation) {
  return orientation == 3 || orientation == 4 || orientation == 7 || orientation == 8;
}

Image apply_orientation(Image stored, int orientation) {
  if (orientation < 2 || orientation > 8 || stored.empty()) return stored;
  const int w = stored.width, h = stored.height, c = stored.channels;
  const bool swap = orientation_swaps_axes(orientation);
  Image out(swap ? h : w, swap ? w : h, c);
  const bool reverse_x = orientation_reverses_x(orientation), reverse_y = orientation_reverses_y(orientation);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      // Upright (x, y) along the stored axes it comes from, then reversed where the turn says.
      int sx = swap ? y : x, sy = swap ? x : y;
      if (swap ? reverse_y : reverse_x) sx = w - 1 - sx;
      if (swap ? reverse_x : reverse_y) sy = h - 1 - sy;
      std::memcpy(&out.pixels[(static_cast<size_t>(y) * out.width + x) * c],
                  &stored.pixels[(static_cast<size_t>(sy) * w + sx) * c], static_cast<size_t>(c));
    }
  }
  return out;
}

}  // namespace arcforge::image
