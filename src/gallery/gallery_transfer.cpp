// Gallery export and import: one JSON document, embeddings as base64 little-endian float32, so a
// gallery moves between machines and arcforge versions without loss.
#include <bit>
#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/base64.hpp"
#include "arcforge/common/error.hpp"
#include "gallery_impl.hpp"

namespace arcforge::gallery {
namespace {

static_assert(std::endian::native == std::endian::little, "exports store little-endian float32");
constexpr const char* kFormat = "arcforge-gallery";
constexpr int kFormatVersion = 1;

using nlohmann::json;

std::string encode_embedding(const std::vector<float>& v) {
  return base64_encode(std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
}

// Field access that names the file and the place in the document on a problem.
const json& field(const json& object, const char* key, const std::string& where, const std::string& path) {
  if (!object.is_object() || !object.contains(key)) {
    throw InputError(file_message(path, where + ": missing \"" + key + "\""));
  }
  return object.at(key);
}

template <typename T>
T value_of(const json& object, const char* key, const std::string& where, const std::string& path) {
  const json& v = field(object, key, where, path);
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    throw InputError(file_message(path, where + ": \"" + key + "\" has the wrong type"));
  }
}

bool same_embedding(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::fabs(a[i] - b[i]) > 1e-6f) return false;
  }
  return true;
}

}  // namespace

void Gallery::export_json(const std::string& path, const std::vector<std::string>& names) const {
  json document = {{"format", kFormat}, {"version", kFormatVersion}, {"collections", json::array()}};
  std::vector<CollectionInfo> chosen;
  if (names.empty()) {
    chosen = collections();
  } else {
    for (const auto& name : names) chosen.push_back(collection(name));
  }
  for (const CollectionInfo& info : chosen) {
    json c = {{"name", info.name},
              {"dim", info.dim},
              {"index", json::parse(info.index.to_json())},
              {"created_ms", info.created_ms},
              {"persons", json::array()}};
    for (const Person& p : persons(info.name)) {
      json person = {{"name", p.name},
                     {"metadata", json::parse(p.metadata)},
                     {"created_ms", p.created_ms},
                     {"samples", json::array()}};
      for (const Sample& s : samples(info.name, p.name, /*with_embeddings=*/true)) {
        person["samples"].push_back({{"embedding", encode_embedding(s.embedding)},
                                     {"image_sha256", s.image_sha256},
                                     {"box", s.box},
                                     {"quality", s.quality},
                                     {"created_ms", s.created_ms},
                                     {"metadata", json::parse(s.metadata)}});
      }
      c["persons"].push_back(std::move(person));
    }
    document["collections"].push_back(std::move(c));
  }
  write_file_atomically(path, document.dump(1) + "\n");
}

int64_t Gallery::import_json(const std::string& path) {
  const json document = json::parse(read_file(path), nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) throw InputError(file_message(path, "not valid JSON"));
  if (!document.is_object() || document.value("format", "") != kFormat) {
    throw InputError(file_message(path, "not an arcforge gallery export (\"format\" is not \"arcforge-gallery\")"));
  }
  if (value_of<int>(document, "version", "document", path) > kFormatVersion) {
    throw InputError(file_message(path, "export format version is newer than this arcforge understands"));
  }
  const json& collections_json = field(document, "collections", "document", path);
  if (!collections_json.is_array()) throw InputError(file_message(path, "\"collections\" is not an array"));

  // Validate and decode everything first: a bad file changes nothing.
  struct ImportSample {
    SampleInput input;
    int64_t created_ms;
  };
  struct ImportPerson {
    std::string name, metadata;
    int64_t created_ms;
    std::vector<ImportSample> samples;
  };
  struct ImportCollection {
    std::string name;
    int dim;
    IndexSpec spec;
    int64_t created_ms;
    std::vector<ImportPerson> persons;
  };
  std::vector<ImportCollection> incoming;
  for (size_t ci = 0; ci < collections_json.size(); ++ci) {
    const json& cj = collections_json[ci];
    const std::string where = "collections[" + std::to_string(ci) + "]";
    ImportCollection c;
    c.name = value_of<std::string>(cj, "name", where, path);
    check_name("collection", c.name);
    c.dim = value_of<int>(cj, "dim", where, path);
    if (c.dim <= 0 || c.dim > 65536) throw InputError(file_message(path, where + ": dim out of range"));
    c.spec = IndexSpec::from_json(field(cj, "index", where, path).dump());
    c.created_ms = value_of<int64_t>(cj, "created_ms", where, path);
    const json& persons_json = field(cj, "persons", where, path);
    if (!persons_json.is_array()) throw InputError(file_message(path, where + ": \"persons\" is not an array"));
    for (size_t pi = 0; pi < persons_json.size(); ++pi) {
      const json& pj = persons_json[pi];
      const std::string pwhere = where + ".persons[" + std::to_string(pi) + "]";
      ImportPerson p;
      p.name = value_of<std::string>(pj, "name", pwhere, path);
      check_name("person", p.name);
      p.metadata = compact_json_object(field(pj, "metadata", pwhere, path).dump(), file_message(path, pwhere));
      p.created_ms = value_of<int64_t>(pj, "created_ms", pwhere, path);
      const json& samples_json = field(pj, "samples", pwhere, path);
      if (!samples_json.is_array()) throw InputError(file_message(path, pwhere + ": \"samples\" is not an array"));
      for (size_t si = 0; si < samples_json.size(); ++si) {
        const json& sj = samples_json[si];
        const std::string swhere = pwhere + ".samples[" + std::to_string(si) + "]";
        ImportSample s;
        const std::string bytes =
            base64_decode(value_of<std::string>(sj, "embedding", swhere, path), file_message(path, swhere + ".embedding"));
        if (bytes.size() != static_cast<size_t>(c.dim) * sizeof(float)) {
          throw InputError(file_message(path, swhere + ": embedding has " + std::to_string(bytes.size()) +
                                                  " bytes, dim " + std::to_string(c.dim) + " needs " +
                                                  std::to_string(c.dim * sizeof(float))));
        }
        s.input.embedding.resize(c.dim);
        std::memcpy(s.input.embedding.data(), bytes.data(), bytes.size());
        normalise_embedding(s.input.embedding, file_message(path, swhere));
        s.input.image_sha256 = value_of<std::string>(sj, "image_sha256", swhere, path);
        s.input.box = value_of<std::array<float, 4>>(sj, "box", swhere, path);
        s.input.quality = value_of<float>(sj, "quality", swhere, path);
        s.input.metadata = compact_json_object(field(sj, "metadata", swhere, path).dump(), file_message(path, swhere));
        s.created_ms = value_of<int64_t>(sj, "created_ms", swhere, path);
        p.samples.push_back(std::move(s));
      }
      c.persons.push_back(std::move(p));
    }
    incoming.push_back(std::move(c));
  }

  std::lock_guard db_lock(impl_->db_mutex);
  SqliteDb& db = impl_->db;
  int64_t added = 0;
  Transaction tx(db);
  for (const ImportCollection& c : incoming) {
    int64_t collection_id = 0;
    {
      Statement find(db, "SELECT id, dim FROM collections WHERE name = ?");
      find.bind(1, c.name);
      if (find.step()) {
        collection_id = find.column_int(0);
        if (find.column_int(1) != c.dim) {
          throw InputError(file_message(path, "collection \"" + c.name + "\" has dim " + std::to_string(c.dim) +
                                                  " in the export but " + std::to_string(find.column_int(1)) + " here"));
        }
      } else {
        VectorIndex check(c.dim, c.spec);  // the spec must suit the dimension
        Statement insert(db, "INSERT INTO collections (name, dim, index_spec, created_ms) VALUES (?, ?, ?, ?)");
        insert.bind(1, c.name).bind(2, int64_t{c.dim}).bind(3, c.spec.to_json()).bind(4, c.created_ms).run();
        collection_id = db.last_insert_id();
      }
    }
    for (const ImportPerson& p : c.persons) {
      int64_t person_id = 0;
      Statement find(db, "SELECT id FROM persons WHERE collection_id = ? AND name = ?");
      find.bind(1, collection_id).bind(2, p.name);
      if (find.step()) {
        person_id = find.column_int(0);
      } else {
        Statement insert(db, "INSERT INTO persons (collection_id, name, metadata, created_ms) VALUES (?, ?, ?, ?)");
        insert.bind(1, collection_id).bind(2, p.name).bind(3, p.metadata).bind(4, p.created_ms).run();
        person_id = db.last_insert_id();
      }
      for (const ImportSample& s : p.samples) {
        bool duplicate = false;
        Statement same_image(db, "SELECT embedding FROM samples WHERE person_id = ? AND image_sha256 = ?");
        same_image.bind(1, person_id).bind(2, s.input.image_sha256);
        while (!duplicate && same_image.step()) {
          std::vector<float> existing(c.dim);
          if (same_image.column_bytes(0) != existing.size() * sizeof(float)) continue;
          std::memcpy(existing.data(), same_image.column_blob(0), existing.size() * sizeof(float));
          duplicate = same_embedding(existing, s.input.embedding);
        }
        if (duplicate) continue;
        Statement insert(db,
                         "INSERT INTO samples (person_id, embedding, image_sha256, box_x1, box_y1, box_x2, box_y2, "
                         "quality, metadata, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        insert.bind(1, person_id)
            .bind_blob(2, s.input.embedding.data(), s.input.embedding.size() * sizeof(float))
            .bind(3, s.input.image_sha256);
        for (int b = 0; b < 4; ++b) insert.bind(4 + b, static_cast<double>(s.input.box[b]));
        insert.bind(8, static_cast<double>(s.input.quality)).bind(9, s.input.metadata).bind(10, s.created_ms).run();
        ++added;
      }
    }
  }
  tx.commit();
  {
    std::unique_lock state_lock(impl_->state_mutex);
    impl_->load_all();
  }
  impl_->train_due();
  return added;
}

}  // namespace arcforge::gallery
