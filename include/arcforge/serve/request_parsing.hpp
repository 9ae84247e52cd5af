#pragma once
// Reading what a client sent: the request path (percent-encoded names), JSON bodies and their
// fields, base64 images. Every function throws HttpError 400 with a message naming the field and
// the problem, so a handler never sees malformed input.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace arcforge::serve {

// Percent-decodes one path segment ("%2F" -> "/"); '+' stays '+'. 400 on a bad escape.
std::string percent_decode(std::string_view text);
// The path of a raw request target ("/v1/x%2Fy?k=1" -> {"v1", "x/y"}), each segment decoded
// separately so that an encoded '/' stays inside its name. "/" gives no segments.
std::vector<std::string> split_path(std::string_view target);

// An image field's file bytes: base64 (arcforge::base64_decode), with an optional
// "data:image/...;base64," prefix stripped. 400 naming `field` on bad base64 or an empty image.
std::string decode_image_field(const std::string& text, const std::string& field);

// The body as a JSON object. 400 when it is empty, not JSON or not an object.
nlohmann::json parse_json_object(const std::string& body);

// Field readers: std::nullopt when absent (or null); 400 when present with the wrong type/range.
std::optional<std::string> optional_string(const nlohmann::json& body, const std::string& field);
std::string required_string(const nlohmann::json& body, const std::string& field);
std::optional<int64_t> optional_integer(const nlohmann::json& body, const std::string& field, int64_t min, int64_t max);
std::optional<double> optional_number(const nlohmann::json& body, const std::string& field, double min, double max);
// A JSON object, returned serialised ("{}" when absent).
std::string optional_object(const nlohmann::json& body, const std::string& field);
// An array of exactly `dim` finite numbers.
std::vector<float> embedding_field(const nlohmann::json& body, const std::string& field, int dim);

// A query parameter's text as an integer in [min, max]. 400 naming the parameter otherwise.
int64_t query_integer(const std::string& text, const std::string& name, int64_t min, int64_t max);

}  // namespace arcforge::serve
