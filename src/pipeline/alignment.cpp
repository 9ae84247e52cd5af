// ArcFace alignment: template, similarity estimate, crop.
//
// Why a closed form is Umeyama: write the similarity's linear part as [a -b; b a] (a = s cos t,
// b = s sin t). Every (a, b) is a rotation with a scale >= 0, so minimising
// sum |q_i - [a -b; b a] p_i - t|^2 over (a, b, t), a linear least-squares problem, finds the best
// proper similarity, which is what Umeyama's SVD (with its det sign correction) finds. With p, q
// centred on their means the normal equations decouple:
//   a = sum(p . q) / sum|p|^2,  b = sum(p x q) / sum|p|^2,  t = mean(q) - [a -b; b a] mean(p).
#include "arcforge/pipeline/alignment.hpp"

#include <cmath>
#include <cstddef>
#include <string>

#include "arcforge/common/error.hpp"
#include "arcforge/image/warp.hpp"

namespace arcforge::pipeline {

const Landmarks5& arcface_template_112() {
  static const Landmarks5 points = {{{38.2946f, 51.6963f},
                                     {73.5318f, 51.5014f},
                                     {56.0252f, 71.7366f},
                                     {41.5493f, 92.3655f},
                                     {70.7299f, 92.2041f}}};
  return points;
}

Landmarks5 arcface_template(int width, int height) {
  const std::string size = std::to_string(width) + "x" + std::to_string(height);
  if (width <= 0 || height <= 0) throw ConfigError("alignment size " + size + ": must be positive");
  double scale = 0, shift_x = 0;
  if (width == height) {
    if (width % 112 == 0) {
      scale = width / 112.0;
    } else {
      scale = width / 128.0;
      shift_x = 8.0 * scale;
    }
  } else if (height % 112 == 0 && width * 112 == height * 96) {
    scale = height / 112.0;
    shift_x = -8.0 * scale;
  } else {
    throw ConfigError("alignment size " + size +
                      ": the ArcFace template needs a square crop or the 96:112 (width:height) one");
  }
  Landmarks5 out{};
  const Landmarks5& base = arcface_template_112();
  for (size_t i = 0; i < out.size(); ++i) {
    // In double, as numpy does, then to float.
    out[i] = {static_cast<float>(static_cast<double>(base[i].x) * scale + shift_x),
              static_cast<float>(static_cast<double>(base[i].y) * scale)};
  }
  return out;
}

Affine2x3 estimate_similarity(std::span<const Point2> source, std::span<const Point2> destination) {
  if (source.size() != destination.size()) {
    throw InputError("estimate_similarity: " + std::to_string(source.size()) + " source points but " +
                     std::to_string(destination.size()) + " destination points");
  }
  if (source.size() < 2) {
    throw InputError("estimate_similarity: needs at least 2 point pairs, got " + std::to_string(source.size()));
  }
  const double n = static_cast<double>(source.size());
  double spx = 0, spy = 0, sqx = 0, sqy = 0;
  for (size_t i = 0; i < source.size(); ++i) {
    spx += source[i].x, spy += source[i].y;
    sqx += destination[i].x, sqy += destination[i].y;
  }
  const double px_mean = spx / n, py_mean = spy / n, qx_mean = sqx / n, qy_mean = sqy / n;
  double norm = 0, dot = 0, cross = 0, destination_norm = 0;
  for (size_t i = 0; i < source.size(); ++i) {
    const double px = source[i].x - px_mean, py = source[i].y - py_mean;
    const double qx = destination[i].x - qx_mean, qy = destination[i].y - qy_mean;
    norm += px * px + py * py;
    dot += px * qx + py * qy;
    cross += px * qy - py * qx;
    destination_norm += qx * qx + qy * qy;
  }
  if (!(norm > 0) || !std::isfinite(norm)) {
    throw InputError("estimate_similarity: the source points all coincide (or are not finite)");
  }
  if (!(destination_norm > 0) || !std::isfinite(destination_norm)) {
    throw InputError("estimate_similarity: the destination points all coincide (or are not finite)");
  }
  const double a = dot / norm, b = cross / norm;
  if (a == 0 && b == 0) {
    throw InputError("estimate_similarity: the best fit has zero scale (the point sets are uncorrelated)");
  }
  return Affine2x3{{a, -b, qx_mean - (a * px_mean - b * py_mean), b, a, qy_mean - (b * px_mean + a * py_mean)}};
}

Affine2x3 alignment_transform(const Landmarks5& landmarks, int width, int height) {
  const Landmarks5 target = arcface_template(width, height);
  return estimate_similarity(landmarks, target);
}

image::Image align_face(const image::Image& photo, const Landmarks5& landmarks, int width, int height) {
  return image::warp_affine(photo, alignment_transform(landmarks, width, height).m, width, height, 0);
}

}  // namespace arcforge::pipeline
