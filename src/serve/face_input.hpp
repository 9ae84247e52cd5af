#pragma once
// Internal to arcforge_serve: photos from request bodies, and the faces found on them.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "service.hpp"

namespace arcforge::serve {

// The analyzer, or HttpError 422 saying the server has no models (`what` names the use).
const pipeline::FaceAnalyzer& require_models(const Service& service, const std::string& what);

// Decodes body[field] (base64 of a JPEG/PNG/WebP file), reduced where the analyzer may
// (pipeline/photo.hpp); `encoded` holds the file as sent. 400 on bad base64, 422 when the image is
// undecodable or over --max-pixels.
pipeline::Photo read_photo(const Service& service, const nlohmann::json& body, const std::string& field);

// The largest face, embedded: what enrolment and verify take from a photo (the gallery CLI's
// choice too). 422 "<field>: no face found" when there is none.
pipeline::Face largest_face(const Service& service, const pipeline::Photo& photo, const std::string& field);

// Every face, largest box first, at most `max_faces` (0: all), aligned and embedded when `embed`.
// 422 naming `field` when there is none.
std::vector<pipeline::Face> faces_largest_first(const Service& service, const pipeline::Photo& photo,
                                                const std::string& field, size_t max_faces, bool embed);

// {"box":[x1,y1,x2,y2],"score"} plus landmarks and quality when asked.
nlohmann::json face_summary(const pipeline::Face& face, bool with_landmarks, bool with_quality);

}  // namespace arcforge::serve
