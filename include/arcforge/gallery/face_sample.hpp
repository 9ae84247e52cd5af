#pragma once
// The gallery sample a photo's face gives, as `arcforge gallery enroll` and the server's enrol
// route both store it. Header-only so that arcforge_gallery stays free of the face pipeline: what
// includes it links both (the CLI, arcforge_serve).
#include <string_view>

#include "arcforge/gallery/gallery.hpp"
#include "arcforge/pipeline/face_analyzer.hpp"

namespace arcforge::gallery {

// The face's embedding, box and detector score (FaceAnalyzer copies that score into
// quality.detector_score too), with the SHA-256 of the photo's encoded bytes. Metadata stays "{}"
// for the caller to fill.
inline SampleInput sample_from_face(const pipeline::Face& face, std::string_view photo_bytes) {
  SampleInput s;
  s.embedding = face.embedding;
  s.image_sha256 = sha256_hex(photo_bytes.data(), photo_bytes.size());
  const pipeline::Box& box = face.detection.box;
  s.box = {box.x1, box.y1, box.x2, box.y2};
  s.quality = face.detection.score;
  return s;
}

}  // namespace arcforge::gallery
