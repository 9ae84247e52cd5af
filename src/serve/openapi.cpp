// The OpenAPI 3.0 document of the REST API, built from small helpers so each route reads as one
// block: its summary, parameters, body and answers.
#include "arcforge/serve/openapi.hpp"

#include <string>

#include "arcforge/serve/server.hpp"

namespace arcforge::serve {
namespace {

using nlohmann::json;

json ref(const std::string& name) { return {{"$ref", "#/components/schemas/" + name}}; }

json json_content(const json& schema) { return {{"application/json", {{"schema", schema}}}}; }

json error_response(const std::string& description) {
  return {{"description", description}, {"content", json_content(ref("Error"))}};
}

json ok(const std::string& description, const json& schema) {
  return {{"description", description}, {"content", json_content(schema)}};
}

// The answers every protected API route can give besides its own.
json api_responses(json responses) {
  responses["400"] = error_response("Malformed JSON, a missing or wrong-typed field, a bad name");
  responses["401"] = error_response("Missing or wrong bearer token");
  responses["413"] = error_response("Body over --max-body-mb");
  responses["503"] = error_response("Over --max-concurrent requests in flight (Retry-After: 1)");
  return responses;
}

json path_name(const std::string& name, const std::string& description) {
  return {{"name", name},
          {"in", "path"},
          {"required", true},
          {"description", description + " (percent-encoded; 1-128 bytes, no control characters; a key, never a path)"},
          {"schema", {{"type", "string"}, {"minLength", 1}, {"maxLength", 128}}}};
}

json body(const json& schema) { return {{"required", true}, {"content", json_content(schema)}}; }

json object(const json& properties, const json& required = json::array()) {
  json o{{"type", "object"}, {"properties", properties}};
  if (!required.empty()) o["required"] = required;
  return o;
}

const json kString = {{"type", "string"}};
const json kInteger = {{"type", "integer"}};
const json kNumber = {{"type", "number"}};
const json kBoolean = {{"type", "boolean"}};
json array_of(const json& items) { return {{"type", "array"}, {"items", items}}; }

json schemas() {
  json s;
  s["Error"] = object({{"error", kString}}, {"error"});
  s["Image"] = {{"type", "string"},
                {"description", "base64 of a JPEG, PNG or WebP file; a data:image/...;base64, prefix is accepted"}};
  s["Embedding"] = {{"type", "array"}, {"items", kNumber}, {"description", "exactly the collection's dim numbers"}};
  s["Box"] = {
      {"type", "array"}, {"items", kNumber}, {"minItems", 4}, {"maxItems", 4}, {"description", "x1, y1, x2, y2"}};
  s["Match"] = object({{"person", kString}, {"score", kNumber}, {"sample_id", kInteger}}, {"person", "score"});
  s["Collection"] = object({{"name", kString},
                            {"dim", kInteger},
                            {"index", {{"type", "string"}, {"enum", {"flat", "int8", "hnsw", "ivfpq"}}}},
                            {"effective_index", kString},
                            {"effective_sample_index", kString},
                            {"persons", kInteger},
                            {"samples", kInteger},
                            {"created_ms", kInteger},
                            {"index_bytes", kInteger}},
                           {"name", "dim", "index", "effective_index", "effective_sample_index", "persons", "samples"});
  s["Face"] = object({{"box", ref("Box")},
                      {"score", kNumber},
                      {"landmarks", array_of(array_of(kNumber))},
                      {"quality", {{"type", "object"}}}},
                     {"box", "score"});
  s["Person"] =
      object({{"name", kString}, {"samples", kInteger}, {"created_ms", kInteger}, {"metadata", {{"type", "object"}}}},
             {"name", "samples", "created_ms"});
  s["Sample"] = object({{"id", kInteger},
                        {"image_sha256", kString},
                        {"box", ref("Box")},
                        {"quality", kNumber},
                        {"created_ms", kInteger},
                        {"metadata", {{"type", "object"}}}},
                       {"id", "image_sha256", "box", "quality", "created_ms"});
  s["Verification"] = object({{"similarity", kNumber}, {"same", kBoolean}, {"threshold", kNumber}, {"person", kString}},
                             {"similarity", "same", "threshold"});
  return s;
}

json paths() {
  json p;
  p["/"]["get"] = {
      {"summary", "The web page"},
      {"security", json::array()},
      {"responses", {{"200", {{"description", "HTML"}, {"content", {{"text/html", {{"schema", kString}}}}}}}}}};
  p["/health"]["get"] = {
      {"summary", "Liveness and what the server holds"},
      {"security", json::array()},
      {"responses",
       {{"200",
         ok("Up", object({{"status", kString}, {"version", kString}, {"collections", kInteger}, {"models", kBoolean}},
                         {"status", "version", "collections", "models"}))}}}};
  p["/metrics"]["get"] = {{"summary", "Request counters and latency quantiles per route pattern"},
                          {"responses",
                           {{"200", ok("Counters", object({{"uptime_s", kNumber},
                                                           {"requests_total", kInteger},
                                                           {"errors_total", kInteger},
                                                           {"in_flight", kInteger},
                                                           {"rejected_busy", kInteger},
                                                           {"routes", {{"type", "object"}}}}))},
                            {"401", error_response("Missing or wrong bearer token")}}}};
  p["/openapi.json"]["get"] = {{"summary", "This document"},
                               {"security", json::array()},
                               {"responses", {{"200", ok("OpenAPI 3.0", {{"type", "object"}})}}}};
  p["/v1/collections"]["get"] = {
      {"summary", "List collections"},
      {"responses",
       api_responses({{"200", ok("Collections", object({{"collections", array_of(ref("Collection"))}}))}})}};
  p["/v1/collections"]["post"] = {
      {"summary", "Create a collection"},
      {"requestBody", body(object({{"name", kString},
                                   {"dim", kInteger},
                                   {"index", {{"type", "string"}, {"enum", {"flat", "int8", "hnsw", "ivfpq"}}}}},
                                  {"name"}))},
      {"responses",
       api_responses({{"201", ok("Created", ref("Collection"))}, {"409", error_response("The collection exists")}})}};
  p["/v1/detect"]["post"] = {
      {"summary", "Every face of a photo, with landmarks and quality"},
      {"requestBody", body(object({{"image", ref("Image")}}, {"image"}))},
      {"responses",
       api_responses(
           {{"200", ok("Faces", object({{"width", kInteger}, {"height", kInteger}, {"faces", array_of(ref("Face"))}}))},
            {"422", error_response("Undecodable image, over --max-pixels, or no face models")}})}};
  const json c = path_name("c", "Collection name"), person = path_name("p", "Person name");
  p["/v1/collections/{c}/persons/{p}/faces"]["post"] = {
      {"summary", "Enrol one face sample (the largest face of an image, or an embedding); creates the person"},
      {"parameters", {c, person}},
      {"requestBody",
       body(object({{"image", ref("Image")}, {"embedding", ref("Embedding")}, {"metadata", {{"type", "object"}}}}))},
      {"responses",
       api_responses({{"201", ok("Enrolled and committed to disk", object({{"person", kString},
                                                                           {"person_id", kInteger},
                                                                           {"created", kBoolean},
                                                                           {"sample_id", kInteger},
                                                                           {"samples", kInteger},
                                                                           {"face", ref("Face")}}))},
                      {"404", error_response("Unknown collection")},
                      {"422", error_response("Undecodable image, over --max-pixels, no face, or no face models")}})}};
  p["/v1/collections/{c}/search"]["post"] = {
      {"summary", "Nearest persons (or samples) of an embedding, of a batch of embeddings, or of every face of an image"},
      {"parameters", {c}},
      {"requestBody", body(object({{"image", ref("Image")},
                                   {"embedding", ref("Embedding")},
                                   {"embeddings", array_of(ref("Embedding"))},
                                   {"k", kInteger},
                                   {"threshold", kNumber},
                                   {"over", {{"type", "string"}, {"enum", {"persons", "samples"}}}}}))},
      {"responses",
       api_responses({{"200", ok("Matches, best first; for an image also every face, largest first; for "
                                 "\"embeddings\" one {matches} per query, in order",
                                 object({{"matches", array_of(ref("Match"))},
                                         {"results", array_of(object({{"matches", array_of(ref("Match"))}}))},
                                         {"faces", array_of(object({{"box", ref("Box")},
                                                                    {"score", kNumber},
                                                                    {"matches", array_of(ref("Match"))}}))}}))},
                      {"404", error_response("Unknown collection")},
                      {"422", error_response("Undecodable image, no face, or no face models")}})}};
  p["/v1/verify"]["post"] = {
      {"summary", "Same person? Two photos, or a photo or embedding against an enrolled person"},
      {"requestBody", body(object({{"image_a", ref("Image")},
                                   {"image_b", ref("Image")},
                                   {"collection", kString},
                                   {"person", kString},
                                   {"image", ref("Image")},
                                   {"embedding", ref("Embedding")},
                                   {"threshold", kNumber}}))},
      {"responses", api_responses({{"200", ok("Decision", ref("Verification"))},
                                   {"404", error_response("Unknown collection or person")},
                                   {"422", error_response("Undecodable image, no face, or no face models")}})}};
  p["/v1/collections/{c}/persons"]["get"] = {
      {"summary", "Persons of a collection, by name"},
      {"parameters",
       {c,
        {{"name", "offset"}, {"in", "query"}, {"schema", {{"type", "integer"}, {"minimum", 0}, {"default", 0}}}},
        {{"name", "limit"},
         {"in", "query"},
         {"schema", {{"type", "integer"}, {"minimum", 1}, {"maximum", 1000}, {"default", 100}}}}}},
      {"responses",
       api_responses({{"200", ok("A page", object({{"persons", array_of(ref("Person"))}, {"total", kInteger}}))},
                      {"404", error_response("Unknown collection")}})}};
  p["/v1/collections/{c}/persons/{p}"]["get"] = {
      {"summary", "A person and its samples"},
      {"parameters", {c, person}},
      {"responses", api_responses({{"200", ok("The person", object({{"name", kString},
                                                                    {"metadata", {{"type", "object"}}},
                                                                    {"created_ms", kInteger},
                                                                    {"samples", array_of(ref("Sample"))}}))},
                                   {"404", error_response("Unknown collection or person")}})}};
  p["/v1/collections/{c}/persons/{p}"]["delete"] = {
      {"summary", "Remove a person with all its samples"},
      {"parameters", {c, person}},
      {"responses", api_responses({{"200", ok("Removed", object({{"deleted", kBoolean}}))},
                                   {"404", error_response("Unknown collection or person")}})}};
  return p;
}

}  // namespace

json openapi_document() {
  json components{{"schemas", schemas()}, {"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}};
  return {{"openapi", "3.0.3"},
          {"info",
           {{"title", "arcforge face search"},
            {"version", kServiceVersion},
            {"description",
             "Face detection, enrolment, search and verification over a durable gallery. Bodies are JSON; images "
             "travel as base64. Errors are {\"error\": message}. When the server has a token, every route but "
             "/, /health and /openapi.json needs 'Authorization: Bearer <token>'."}}},
          {"security", {{{"bearer", json::array()}}}},
          {"paths", paths()},
          {"components", components}};
}

}  // namespace arcforge::serve
