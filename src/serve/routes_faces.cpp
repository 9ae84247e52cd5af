// Face routes that need no gallery write: detect, and verify (two photos, or a photo or embedding
// against an enrolled person).
#include "arcforge/common/error.hpp"
#include "arcforge/pipeline/quality.hpp"
#include "arcforge/serve/http_error.hpp"
#include "arcforge/serve/request_parsing.hpp"
#include "face_input.hpp"
#include "service.hpp"

namespace arcforge::serve {
namespace {

Reply detect(Service& s, const RequestView& r) {
  const pipeline::FaceAnalyzer& analyzer = require_models(s, "/v1/detect needs a detector");
  const nlohmann::json body = r.body();
  const pipeline::Photo photo = read_photo(s, body, "image");
  std::vector<pipeline::Face> faces;
  try {
    faces = analyzer.detect(photo);
    // Sharpness needs the aligned crop; detect() alone leaves it 0.
    for (auto& face : faces) {
      if (face.detection.has_landmarks) {
        face.quality.blur = pipeline::laplacian_variance(analyzer.align(photo, face.detection, analyzer.crop_width(), analyzer.crop_height()));
        face.rejection = pipeline::quality_rejection(face.quality, analyzer.options().quality_gate);
      }
    }
  } catch (const InputError& e) {
    throw HttpError(422, std::string("image: ") + e.what());
  }
  nlohmann::json list = nlohmann::json::array();
  for (const auto& face : faces) list.push_back(face_summary(face, true, true));
  return {200, {{"width", photo.full_width}, {"height", photo.full_height}, {"faces", list}}, {}};
}

Reply verify(Service& s, const RequestView& r) {
  const nlohmann::json body = r.body();
  const float threshold = static_cast<float>(optional_number(body, "threshold", -1, 1).value_or(s.options.threshold));
  if (body.contains("image_a") || body.contains("image_b")) {
    const pipeline::FaceAnalyzer& analyzer = require_models(s, "/v1/verify of two photos needs them");
    const pipeline::Photo a = read_photo(s, body, "image_a"), b = read_photo(s, body, "image_b");
    pipeline::VerifyResult result;
    try {
      result = analyzer.verify(a, b, threshold);
    } catch (const InputError& e) {  // a photo without a face
      throw HttpError(422, e.what());
    }
    return {200,
            {{"similarity", result.similarity},
             {"same", result.same},
             {"threshold", threshold},
             {"faces", {face_summary(result.first, false, false), face_summary(result.second, false, false)}}},
            {}};
  }
  if (!body.contains("collection") && !body.contains("person")) {
    throw HttpError(400,
                    "give \"image_a\" and \"image_b\", or \"collection\", \"person\" and \"image\" or \"embedding\"");
  }
  const std::string collection = required_string(body, "collection"), person = required_string(body, "person");
  gallery::check_name("collection", collection);
  gallery::check_name("person", person);
  const int dim = s.collection_dim(collection);
  const bool image = body.contains("image") && !body["image"].is_null();
  if (image == (body.contains("embedding") && !body["embedding"].is_null())) {
    throw HttpError(400, "give exactly one of \"image\" or \"embedding\"");
  }
  if (!s.gallery.person(collection, person)) {
    throw HttpError(404, "person \"" + person + "\" not found in collection \"" + collection + "\"");
  }
  std::vector<float> embedding;
  nlohmann::json face;
  if (image) {
    const pipeline::Photo photo = read_photo(s, body, "image");
    if (s.embedding_size() != dim) {
      throw HttpError(422, "collection \"" + collection + "\" holds " + std::to_string(dim) +
                               "-dim embeddings but this server's recognizer gives " +
                               std::to_string(s.embedding_size()));
    }
    const pipeline::Face largest = largest_face(s, photo, "image");
    embedding = largest.embedding;
    face = face_summary(largest, false, false);
  } else {
    embedding = embedding_field(body, "embedding", dim);
  }
  float similarity = 0;
  try {
    similarity = s.gallery.verify(collection, person, embedding);
  } catch (const InputError&) {  // deleted between the check and now
    throw HttpError(404, "person \"" + person + "\" not found in collection \"" + collection + "\"");
  }
  nlohmann::json reply{
      {"similarity", similarity}, {"same", similarity >= threshold}, {"threshold", threshold}, {"person", person}};
  if (!face.is_null()) reply["face"] = face;
  return {200, reply, {}};
}

}  // namespace

void add_face_routes(std::vector<RouteSpec>& routes, Service& s) {
  routes.push_back({"POST", "/v1/detect", true, true, [&s](const RequestView& r) { return detect(s, r); }});
  routes.push_back({"POST", "/v1/verify", true, true, [&s](const RequestView& r) { return verify(s, r); }});
}

}  // namespace arcforge::serve
