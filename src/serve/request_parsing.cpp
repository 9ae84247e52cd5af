// Request parsing: paths, JSON fields and base64, each failure a 400 that names the field.
#include "arcforge/serve/request_parsing.hpp"

#include <cmath>
#include <limits>

#include "arcforge/common/base64.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/serve/http_error.hpp"

namespace arcforge::serve {
namespace {

[[noreturn]] void bad_request(const std::string& message) { throw HttpError(400, message); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string quoted(const std::string& field) { return "\"" + field + "\""; }

}  // namespace

std::string percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    const int hi = i + 2 < text.size() ? hex_value(text[i + 1]) : -1;
    const int lo = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
    if (hi < 0 || lo < 0) bad_request("request path: bad percent escape in '" + std::string(text) + "'");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::vector<std::string> split_path(std::string_view target) {
  const size_t query = target.find('?');
  std::string_view path = target.substr(0, query);
  if (path.empty() || path.front() != '/') bad_request("request path must start with '/'");
  path.remove_prefix(1);
  std::vector<std::string> segments;
  if (path.empty()) return segments;
  size_t start = 0;
  while (true) {
    const size_t slash = path.find('/', start);
    segments.push_back(percent_decode(path.substr(start, slash == std::string_view::npos ? slash : slash - start)));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return segments;
}

std::string decode_image_field(const std::string& text, const std::string& field) {
  std::string_view data = text;
  if (data.rfind("data:", 0) == 0) {
    const size_t marker = data.find(";base64,");
    if (marker == std::string_view::npos) {
      bad_request(quoted(field) + ": a data URL must be base64 ('data:image/...;base64,...')");
    }
    data.remove_prefix(marker + 8);
  }
  std::string bytes;
  try {
    bytes = base64_decode(data, "\"" + field + "\"");
  } catch (const InputError& e) {
    bad_request(e.what());
  }
  if (bytes.empty()) bad_request(quoted(field) + ": empty image");
  return bytes;
}

nlohmann::json parse_json_object(const std::string& body) {
  if (body.empty()) bad_request("request body is empty: expected a JSON object");
  nlohmann::json parsed = nlohmann::json::parse(body, nullptr, false);
  if (parsed.is_discarded()) bad_request("request body is not valid JSON");
  if (!parsed.is_object()) bad_request("request body: expected a JSON object, got " + std::string(parsed.type_name()));
  return parsed;
}

std::optional<std::string> optional_string(const nlohmann::json& body, const std::string& field) {
  const auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) bad_request(quoted(field) + ": expected a string, got " + it->type_name());
  return it->get<std::string>();
}

std::string required_string(const nlohmann::json& body, const std::string& field) {
  std::optional<std::string> value = optional_string(body, field);
  if (!value) bad_request("missing field " + quoted(field));
  return *value;
}

std::optional<int64_t> optional_integer(const nlohmann::json& body, const std::string& field, int64_t min,
                                        int64_t max) {
  const auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) bad_request(quoted(field) + ": expected an integer, got " + it->type_name());
  const int64_t value = it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())
                            ? std::numeric_limits<int64_t>::max()
                            : it->get<int64_t>();
  if (value < min || value > max) {
    bad_request(quoted(field) + ": " + std::to_string(value) + " is out of range [" + std::to_string(min) + ", " +
                std::to_string(max) + "]");
  }
  return value;
}

std::optional<double> optional_number(const nlohmann::json& body, const std::string& field, double min, double max) {
  const auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) bad_request(quoted(field) + ": expected a number, got " + it->type_name());
  const double value = it->get<double>();
  if (!(value >= min && value <= max)) {
    bad_request(quoted(field) + ": " + it->dump() + " is out of range [" + nlohmann::json(min).dump() + ", " +
                nlohmann::json(max).dump() + "]");
  }
  return value;
}

std::string optional_object(const nlohmann::json& body, const std::string& field) {
  const auto it = body.find(field);
  if (it == body.end() || it->is_null()) return "{}";
  if (!it->is_object()) bad_request(quoted(field) + ": expected a JSON object, got " + it->type_name());
  return it->dump();
}

std::vector<float> embedding_field(const nlohmann::json& body, const std::string& field, int dim) {
  const auto it = body.find(field);
  if (it == body.end() || it->is_null()) bad_request("missing field " + quoted(field));
  if (!it->is_array()) bad_request(quoted(field) + ": expected an array of numbers, got " + it->type_name());
  if (it->size() != static_cast<size_t>(dim)) {
    bad_request(quoted(field) + ": expected " + std::to_string(dim) + " numbers (the collection's dim), got " +
                std::to_string(it->size()));
  }
  std::vector<float> values;
  values.reserve(it->size());
  double norm2 = 0;
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& v = (*it)[i];
    if (!v.is_number()) {
      bad_request(quoted(field) + "[" + std::to_string(i) + "]: expected a number, got " + v.type_name());
    }
    const double x = v.get<double>();
    if (!std::isfinite(x) || std::abs(x) > std::numeric_limits<float>::max()) {
      bad_request(quoted(field) + "[" + std::to_string(i) + "]: not a finite float");
    }
    norm2 += x * x;
    values.push_back(static_cast<float>(x));
  }
  if (!(norm2 > 0) || !std::isfinite(norm2))
    bad_request(quoted(field) + ": a zero (or overflowing) vector has no direction");
  return values;
}

int64_t query_integer(const std::string& text, const std::string& name, int64_t min, int64_t max) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size())
    bad_request("query parameter " + name + ": expected an integer, got '" + text + "'");
  if (value < min || value > max) {
    bad_request("query parameter " + name + ": " + text + " is out of range [" + std::to_string(min) + ", " +
                std::to_string(max) + "]");
  }
  return value;
}

}  // namespace arcforge::serve
