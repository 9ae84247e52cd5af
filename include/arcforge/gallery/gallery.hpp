#pragma once
// Gallery: collections of persons, each with face samples, stored durably in SQLite and searched
// through FAISS.
//
//   Gallery g = Gallery::open("faces.db");            // creates the file and schema when absent
//   g.create_collection("staff", 512, IndexSpec{IndexKind::Flat});
//   g.enroll("staff", "alice", {SampleInput{embedding, sha256, box, quality}});
//   auto matches = g.search("staff", query, SearchOptions{.k = 5, .threshold = 0.3f});
//
// SQLite (WAL, synchronous=FULL, foreign keys) is the source of truth: every write commits before
// it returns, so a returned call survives a crash (SIGKILL, power loss). The FAISS indexes are built
// from the database at open() and updated inside the same lock as each write, so a search that
// starts after a write returned sees it. A person's template is the L2-normalised mean of its
// samples; search runs over templates (one hit per person) or over samples.
//
// Thread-safe: searches run concurrently; writes are serialised (one SQLite connection, one writer).
// Names of collections and persons are opaque keys (1-128 bytes of UTF-8, no control characters);
// they never become file paths.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arcforge/gallery/vector_index.hpp"

namespace arcforge::gallery {

// Throws InputError when `name` is empty, longer than 128 bytes, or holds a control character.
void check_name(const std::string& what, const std::string& name);

struct SampleInput {
  std::vector<float> embedding;      // any length = the collection's dim; normalised on write
  std::string image_sha256;          // hex digest of the source image bytes ("" when enrolled by embedding)
  std::array<float, 4> box{0, 0, 0, 0};  // x1, y1, x2, y2 in the source image
  float quality = 0;                 // detector score or a quality figure; 0 when unknown
  std::string metadata = "{}";       // free JSON object
};

struct Sample {
  int64_t id = 0;
  std::string person;
  std::string image_sha256;
  std::array<float, 4> box{0, 0, 0, 0};
  float quality = 0;
  int64_t created_ms = 0;            // Unix time, milliseconds
  std::string metadata = "{}";
  std::vector<float> embedding;      // filled only where asked for (export, person details)
};

struct Person {
  int64_t id = 0;
  std::string name;
  std::string metadata = "{}";
  int64_t created_ms = 0;
  int64_t samples = 0;
};

struct CollectionInfo {
  std::string name;
  int dim = 0;
  IndexSpec index;
  // What searches run on now: "flat" for an int8 or ivfpq index not yet trained. Persons and
  // samples have their own index and train apart (an ivfpq collection of few persons with many
  // samples trains its samples' index alone).
  std::string effective_index;         // the persons' (templates) index
  std::string effective_sample_index;  // the samples' index
  int64_t created_ms = 0;
  int64_t persons = 0;
  int64_t samples = 0;
  size_t index_bytes = 0;            // FAISS memory of both indexes (templates and samples)
};

struct EnrollResult {
  int64_t person_id = 0;
  bool created = false;              // the person was new
  std::vector<int64_t> sample_ids;
  int64_t samples = 0;               // the person's sample count after the write
};

enum class SearchOver { Persons, Samples };

struct SearchOptions {
  int k = 5;
  float threshold = -1.0f;           // matches scoring below it are dropped
  SearchOver over = SearchOver::Persons;
};

struct Match {
  std::string person;
  float score = 0;
  int64_t sample_id = 0;             // the matching sample when searching samples, else 0
};

class Gallery {
 public:
  // Opens (creating when absent) the database at `path`, migrates its schema to the current
  // version and builds the indexes. InputError naming the file when it is not an arcforge gallery,
  // is from a newer arcforge, or cannot be opened.
  static Gallery open(const std::string& path);
  ~Gallery();
  Gallery(Gallery&&) noexcept;
  Gallery& operator=(Gallery&&) noexcept;

  const std::string& path() const;
  static int schema_version();       // the version this build writes

  // Collections. create_collection throws InputError when the name exists.
  void create_collection(const std::string& name, int dim, const IndexSpec& index = {});
  bool has_collection(const std::string& name) const;
  std::vector<CollectionInfo> collections() const;
  CollectionInfo collection(const std::string& name) const;  // InputError when unknown
  void drop_collection(const std::string& name);

  // Adds samples to a person, creating the person when new (with `person_metadata`). All samples
  // commit together or not at all. InputError on a wrong embedding size or an unknown collection.
  EnrollResult enroll(const std::string& collection, const std::string& person, const std::vector<SampleInput>& samples,
                      const std::string& person_metadata = "{}");

  // One result list per query (queries: nq x dim, row-major), best first.
  std::vector<std::vector<Match>> search(const std::string& collection, const float* queries, size_t nq,
                                         const SearchOptions& options = {}) const;
  std::vector<Match> search(const std::string& collection, const std::vector<float>& query,
                            const SearchOptions& options = {}) const;

  // Cosine between `embedding` and the person's template. InputError when the person is unknown.
  // Answered from memory where templates are fp32 (flat, hnsw, untrained ivfpq); int8 and trained
  // ivfpq recompute the exact template from the database, after any write in progress.
  float verify(const std::string& collection, const std::string& person, const std::vector<float>& embedding) const;

  std::vector<Person> persons(const std::string& collection, int64_t offset = 0, int64_t limit = -1) const;
  std::optional<Person> person(const std::string& collection, const std::string& name) const;
  std::vector<Sample> samples(const std::string& collection, const std::string& person, bool with_embeddings = false) const;
  // Removes a person with all its samples; false when it did not exist.
  bool remove_person(const std::string& collection, const std::string& person);
  // Removes one sample (its person stays, with the template of the rest; a person left with no
  // samples is removed too). False when it did not exist.
  bool remove_sample(const std::string& collection, int64_t sample_id);

  // A portable copy of collections (all when `collections` is empty): one JSON document with the
  // embeddings as base64 little-endian float32, written atomically to `path`.
  void export_json(const std::string& path, const std::vector<std::string>& collections = {}) const;
  // Adds what an export holds: missing collections are created, persons merged, samples already
  // present (same person, image hash and embedding) skipped. Returns the samples added.
  int64_t import_json(const std::string& path);

 private:
  struct Impl;
  explicit Gallery(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Lower-case hex SHA-256 of bytes (the source-image hash stored with each sample).
std::string sha256_hex(const void* data, size_t size);

}  // namespace arcforge::gallery
