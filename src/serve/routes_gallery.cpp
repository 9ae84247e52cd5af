// Gallery routes: collections, persons and their face samples, search.
#include <algorithm>
#include <limits>

#include "arcforge/common/error.hpp"
#include "arcforge/gallery/face_sample.hpp"
#include "arcforge/serve/http_error.hpp"
#include "arcforge/serve/request_parsing.hpp"
#include "face_input.hpp"
#include "service.hpp"

namespace arcforge::serve {
namespace {

constexpr int kMaxDim = 8192;
constexpr int64_t kMaxK = 1000;
constexpr size_t kMaxBatch = 1000;  // queries in one "embeddings" search
constexpr int64_t kMaxPageSize = 1000;

nlohmann::json collection_json(const gallery::CollectionInfo& c) {
  return {{"name", c.name},
          {"dim", c.dim},
          {"index", gallery::index_kind_name(c.index.kind)},
          {"effective_index", c.effective_index},
          {"effective_sample_index", c.effective_sample_index},
          {"persons", c.persons},
          {"samples", c.samples},
          {"created_ms", c.created_ms},
          {"index_bytes", c.index_bytes}};
}

nlohmann::json matches_json(const std::vector<gallery::Match>& matches, bool with_samples) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& m : matches) {
    nlohmann::json j{{"person", m.person}, {"score", m.score}};
    if (with_samples) j["sample_id"] = m.sample_id;
    list.push_back(std::move(j));
  }
  return list;
}

[[noreturn]] void person_not_found(const std::string& collection, const std::string& person) {
  throw HttpError(404, "person \"" + person + "\" not found in collection \"" + collection + "\"");
}

// Exactly one of "image" and "embedding".
bool wants_image(const nlohmann::json& body) {
  const bool image = body.contains("image") && !body["image"].is_null();
  const bool embedding = body.contains("embedding") && !body["embedding"].is_null();
  if (image == embedding) throw HttpError(400, "give exactly one of \"image\" or \"embedding\"");
  return image;
}

void check_embedding_size(const Service& service, const std::string& collection, int dim) {
  if (service.embedding_size() != dim) {
    throw HttpError(422, "collection \"" + collection + "\" holds " + std::to_string(dim) +
                             "-dim embeddings but this server's recognizer gives " +
                             std::to_string(service.embedding_size()) + ": send \"embedding\"");
  }
}

Reply list_collections(Service& s) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : s.gallery.collections()) list.push_back(collection_json(c));
  return {200, {{"collections", list}}, {}};
}

Reply create_collection(Service& s, const RequestView& r) {
  const nlohmann::json body = r.body();
  const std::string name = required_string(body, "name");
  gallery::check_name("collection", name);
  const int dim = static_cast<int>(
      optional_integer(body, "dim", 1, kMaxDim).value_or(s.embedding_size() > 0 ? s.embedding_size() : s.options.dim));
  gallery::IndexSpec spec;
  spec.kind = gallery::parse_index_kind(optional_string(body, "index").value_or("flat"));
  if (s.gallery.has_collection(name)) throw HttpError(409, "collection \"" + name + "\" already exists");
  try {
    s.gallery.create_collection(name, dim, spec);
  } catch (const InputError& e) {
    // Two clients creating one name at once: the loser learns it exists.
    if (s.gallery.has_collection(name)) throw HttpError(409, "collection \"" + name + "\" already exists");
    throw;
  }
  s.remember_dim(name, dim);
  return {201, collection_json(s.gallery.collection(name)), {}};
}

Reply enroll(Service& s, const RequestView& r) {
  const std::string collection = r.name("c", "collection"), person = r.name("p", "person");
  const int dim = s.collection_dim(collection);
  const nlohmann::json body = r.body();
  const std::string metadata = optional_object(body, "metadata");
  gallery::SampleInput sample;
  nlohmann::json face;
  if (wants_image(body)) {
    const pipeline::Photo photo = read_photo(s, body, "image");
    check_embedding_size(s, collection, dim);
    const pipeline::Face largest = largest_face(s, photo, "image");
    sample = gallery::sample_from_face(largest, *photo.encoded);
    face = face_summary(largest, false, false);
  } else {
    sample.embedding = embedding_field(body, "embedding", dim);
  }
  sample.metadata = metadata;
  // Gallery::enroll commits (fsync) before it returns: the 201 below is a durable acknowledgement.
  const gallery::EnrollResult result = s.gallery.enroll(collection, person, {sample}, sample.metadata);
  nlohmann::json reply{{"person", person},
                       {"person_id", result.person_id},
                       {"created", result.created},
                       {"sample_id", result.sample_ids.empty() ? 0 : result.sample_ids.front()},
                       {"samples", result.samples}};
  if (!face.is_null()) reply["face"] = face;
  return {201, reply, {}};
}

Reply search(Service& s, const RequestView& r) {
  const std::string collection = r.name("c", "collection");
  const int dim = s.collection_dim(collection);
  const nlohmann::json body = r.body();
  gallery::SearchOptions options;
  options.k = static_cast<int>(optional_integer(body, "k", 1, kMaxK).value_or(5));
  options.threshold = static_cast<float>(optional_number(body, "threshold", -1, 1).value_or(s.options.threshold));
  const std::string over = optional_string(body, "over").value_or("persons");
  if (over != "persons" && over != "samples") {
    throw HttpError(400, "\"over\": expected \"persons\" or \"samples\", got \"" + over + "\"");
  }
  options.over = over == "samples" ? gallery::SearchOver::Samples : gallery::SearchOver::Persons;
  const bool samples = options.over == gallery::SearchOver::Samples;
  if (body.contains("embeddings")) {  // a batch: one result list per query, in order
    const nlohmann::json& batch = body.at("embeddings");
    if (!batch.is_array() || batch.empty() || batch.size() > kMaxBatch) {
      throw HttpError(400, "\"embeddings\": expected an array of 1 to " + std::to_string(kMaxBatch) + " embeddings");
    }
    std::vector<float> queries;
    for (size_t i = 0; i < batch.size(); ++i) {
      const std::string field = "embeddings[" + std::to_string(i) + "]";
      const std::vector<float> q = embedding_field(nlohmann::json{{field, batch[i]}}, field, dim);
      queries.insert(queries.end(), q.begin(), q.end());
    }
    nlohmann::json results = nlohmann::json::array();
    for (const auto& matches : s.gallery.search(collection, queries.data(), batch.size(), options)) {
      results.push_back({{"matches", matches_json(matches, samples)}});
    }
    return {200, {{"results", results}}, {}};
  }
  if (!wants_image(body)) {
    const std::vector<float> query = embedding_field(body, "embedding", dim);
    return {200, {{"matches", matches_json(s.gallery.search(collection, query, options), samples)}}, {}};
  }
  const pipeline::Photo photo = read_photo(s, body, "image");
  check_embedding_size(s, collection, dim);
  const std::vector<pipeline::Face> faces =
      faces_largest_first(s, photo, "image", static_cast<size_t>(std::max(1, s.options.max_faces)), true);
  std::vector<float> queries;
  for (const auto& f : faces) queries.insert(queries.end(), f.embedding.begin(), f.embedding.end());
  const auto results = s.gallery.search(collection, queries.data(), faces.size(), options);
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < faces.size(); ++i) {
    nlohmann::json face = face_summary(faces[i], false, false);
    face["matches"] = matches_json(results[i], samples);
    list.push_back(std::move(face));
  }
  return {200, {{"matches", list.front()["matches"]}, {"faces", list}}, {}};
}

Reply list_persons(Service& s, const RequestView& r) {
  const std::string collection = r.name("c", "collection");
  s.collection_dim(collection);  // 404 when unknown
  const int64_t offset = query_integer(r.query("offset", "0"), "offset", 0, std::numeric_limits<int64_t>::max());
  const int64_t limit = query_integer(r.query("limit", "100"), "limit", 1, kMaxPageSize);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& p : s.gallery.persons(collection, offset, limit)) {
    list.push_back({{"name", p.name},
                    {"samples", p.samples},
                    {"created_ms", p.created_ms},
                    {"metadata", metadata_json(p.metadata)}});
  }
  return {200, {{"persons", list}, {"total", s.gallery.collection(collection).persons}}, {}};
}

Reply get_person(Service& s, const RequestView& r) {
  const std::string collection = r.name("c", "collection"), name = r.name("p", "person");
  s.collection_dim(collection);
  const std::optional<gallery::Person> person = s.gallery.person(collection, name);
  if (!person) person_not_found(collection, name);
  nlohmann::json samples = nlohmann::json::array();
  for (const auto& sample : s.gallery.samples(collection, name)) {
    samples.push_back({{"id", sample.id},
                       {"image_sha256", sample.image_sha256},
                       {"box", sample.box},
                       {"quality", sample.quality},
                       {"created_ms", sample.created_ms},
                       {"metadata", metadata_json(sample.metadata)}});
  }
  return {200,
          {{"name", person->name},
           {"metadata", metadata_json(person->metadata)},
           {"created_ms", person->created_ms},
           {"samples", samples}},
          {}};
}

Reply delete_person(Service& s, const RequestView& r) {
  const std::string collection = r.name("c", "collection"), name = r.name("p", "person");
  s.collection_dim(collection);
  if (!s.gallery.remove_person(collection, name)) person_not_found(collection, name);
  return {200, {{"deleted", true}}, {}};
}

}  // namespace

void add_gallery_routes(std::vector<RouteSpec>& routes, Service& s) {
  routes.push_back({"GET", "/v1/collections", true, true, [&s](const RequestView&) { return list_collections(s); }});
  routes.push_back(
      {"POST", "/v1/collections", true, true, [&s](const RequestView& r) { return create_collection(s, r); }});
  routes.push_back({"POST", "/v1/collections/{c}/persons/{p}/faces", true, true,
                    [&s](const RequestView& r) { return enroll(s, r); }});
  routes.push_back(
      {"POST", "/v1/collections/{c}/search", true, true, [&s](const RequestView& r) { return search(s, r); }});
  routes.push_back(
      {"GET", "/v1/collections/{c}/persons", true, true, [&s](const RequestView& r) { return list_persons(s, r); }});
  routes.push_back(
      {"GET", "/v1/collections/{c}/persons/{p}", true, true, [&s](const RequestView& r) { return get_person(s, r); }});
  routes.push_back({"DELETE", "/v1/collections/{c}/persons/{p}", true, true,
                    [&s](const RequestView& r) { return delete_person(s, r); }});
}

}  // namespace arcforge::serve
