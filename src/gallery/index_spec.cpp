// IndexSpec: kind names, the JSON form kept in the gallery database, and the checks of its values.
#include <cstdint>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "arcforge/common/error.hpp"
#include "arcforge/gallery/vector_index.hpp"
#include "index_spec_check.hpp"

namespace arcforge::gallery {
namespace {

using nlohmann::json;

constexpr const char* kKindNames = "flat, int8, hnsw, ivfpq";

void check_range(const std::string& where, const char* field, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    throw InputError(where + ": " + field + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                     "], got " + std::to_string(value));
  }
}

int64_t integer_field(const json& value, const std::string& where, const std::string& key) {
  if (!value.is_number_integer()) throw InputError(where + ": " + key + " must be an integer, got " + value.dump());
  if (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
    throw InputError(where + ": " + key + " is too large");
  }
  return value.get<int64_t>();
}

// Checks the range before narrowing, so that a huge JSON number cannot wrap into a valid int.
int int_field(const json& value, const std::string& where, const std::string& key) {
  const int64_t v = integer_field(value, where, key);
  check_range(where, key.c_str(), v, std::numeric_limits<int>::min(), std::numeric_limits<int>::max());
  return static_cast<int>(v);
}

}  // namespace

std::string index_kind_name(IndexKind kind) {
  switch (kind) {
    case IndexKind::Flat: return "flat";
    case IndexKind::Int8: return "int8";
    case IndexKind::Hnsw: return "hnsw";
    case IndexKind::IvfPq: return "ivfpq";
  }
  throw InputError("index kind " + std::to_string(static_cast<int>(kind)) + " is not one of " + kKindNames);
}

IndexKind parse_index_kind(const std::string& name) {
  if (name == "flat") return IndexKind::Flat;
  if (name == "int8") return IndexKind::Int8;
  if (name == "hnsw") return IndexKind::Hnsw;
  if (name == "ivfpq") return IndexKind::IvfPq;
  throw InputError("index kind '" + name + "' is not one of " + kKindNames);
}

void check_index_spec(const IndexSpec& spec, int dim, const std::string& where) {
  index_kind_name(spec.kind);  // throws on a value outside the enum
  // Upper bounds keep a typo from asking FAISS for absurd allocations.
  check_range(where, "hnsw_m", spec.hnsw_m, 2, 256);
  check_range(where, "hnsw_ef_construction", spec.hnsw_ef_construction, 1, 1 << 16);
  check_range(where, "hnsw_ef_search", spec.hnsw_ef_search, 1, 1 << 16);
  check_range(where, "ivf_nlist", spec.ivf_nlist, 0, 1 << 20);
  check_range(where, "ivf_nprobe", spec.ivf_nprobe, 1, 1 << 20);
  check_range(where, "pq_m", spec.pq_m, 1, 1 << 12);
  if (spec.train_min > (size_t{1} << 40)) throw InputError(where + ": train_min is too large");
  if (dim < 0) throw InputError(where + ": dim must be positive, got " + std::to_string(dim));
  if (dim > 0 && spec.kind == IndexKind::IvfPq && dim % spec.pq_m != 0) {
    throw InputError(where + ": pq_m (" + std::to_string(spec.pq_m) + ") must divide the vector size (" +
                     std::to_string(dim) + ")");
  }
}

std::string IndexSpec::to_json() const {
  json j = {{"kind", index_kind_name(kind)},
            {"hnsw_m", hnsw_m},
            {"hnsw_ef_construction", hnsw_ef_construction},
            {"hnsw_ef_search", hnsw_ef_search},
            {"ivf_nlist", ivf_nlist},
            {"ivf_nprobe", ivf_nprobe},
            {"pq_m", pq_m},
            {"train_min", train_min}};
  return j.dump();
}

IndexSpec IndexSpec::from_json(const std::string& text) {
  const std::string where = "index spec " + (text.size() > 200 ? text.substr(0, 200) + "..." : text);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw InputError(where + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw InputError(where + ": must be a JSON object");
  // Absent fields keep their defaults; unknown ones are refused so that a typo is not silently ignored.
  IndexSpec spec;
  for (const auto& [key, value] : j.items()) {
    if (key == "kind") {
      if (!value.is_string()) throw InputError(where + ": kind must be a string");
      spec.kind = parse_index_kind(value.get<std::string>());
    } else if (key == "hnsw_m") {
      spec.hnsw_m = int_field(value, where, key);
    } else if (key == "hnsw_ef_construction") {
      spec.hnsw_ef_construction = int_field(value, where, key);
    } else if (key == "hnsw_ef_search") {
      spec.hnsw_ef_search = int_field(value, where, key);
    } else if (key == "ivf_nlist") {
      spec.ivf_nlist = int_field(value, where, key);
    } else if (key == "ivf_nprobe") {
      spec.ivf_nprobe = int_field(value, where, key);
    } else if (key == "pq_m") {
      spec.pq_m = int_field(value, where, key);
    } else if (key == "train_min") {
      const int64_t v = integer_field(value, where, key);
      if (v < 0) throw InputError(where + ": train_min must not be negative");
      spec.train_min = static_cast<size_t>(v);
    } else {
      throw InputError(where + ": unknown field '" + key +
                       "' (expected kind, hnsw_m, hnsw_ef_construction, hnsw_ef_search, ivf_nlist, ivf_nprobe, "
                       "pq_m, train_min)");
    }
  }
  check_index_spec(spec, 0, where);
  return spec;
}

}  // namespace arcforge::gallery
