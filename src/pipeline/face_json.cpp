#include "arcforge/pipeline/face_json.hpp"

#include <cmath>

namespace arcforge::pipeline {

nlohmann::json face_to_json(const Face& face, FaceJsonParts parts) {
  const auto& d = face.detection;
  nlohmann::json j{{"box", {d.box.x1, d.box.y1, d.box.x2, d.box.y2}}, {"score", d.score}};
  if (parts.landmarks && d.has_landmarks) {
    nlohmann::json points = nlohmann::json::array();
    for (const auto& p : d.landmarks) points.push_back({p.x, p.y});
    j["landmarks"] = points;
  }
  if (parts.quality) {
    const auto& q = face.quality;
    auto number = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
    j["quality"] = {{"detector_score", q.detector_score}, {"face_size", q.face_size},
                    {"yaw", number(q.pose.yaw)},          {"pitch", number(q.pose.pitch)},
                    {"roll", number(q.pose.roll)},        {"blur", q.blur}};
    j["passes_quality"] = face.rejection.empty();
    if (!face.rejection.empty()) j["rejection"] = face.rejection;
  }
  if (parts.embedding && !face.embedding.empty()) j["embedding"] = face.embedding;
  return j;
}

}  // namespace arcforge::pipeline
