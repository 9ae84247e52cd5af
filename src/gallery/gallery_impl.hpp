#pragma once
// Gallery's private state, shared by gallery.cpp (the API) and gallery_transfer.cpp (export, import).
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "arcforge/gallery/gallery.hpp"
#include "sqlite_db.hpp"

namespace arcforge::gallery {

// What searches need of one collection, in memory; rebuilt from the database at open.
struct CollectionState {
  int64_t id = 0;
  std::string name;
  int dim = 0;
  IndexSpec spec;
  int64_t created_ms = 0;
  VectorIndex templates;  // id = person id, vector = normalised mean of its samples
  VectorIndex samples;    // id = sample id
  std::unordered_map<int64_t, std::string> person_names;   // person id -> name
  std::unordered_map<std::string, int64_t> person_ids;     // name -> person id (verify's lookup)
  std::unordered_map<int64_t, int64_t> sample_person;      // sample id -> person id
  std::unordered_map<int64_t, int64_t> person_samples;     // person id -> sample count

  // ivfpq trains outside the exclusive state lock (Gallery::Impl::train_due).
  CollectionState(int dim_, const IndexSpec& spec_) : dim(dim_), spec(spec_), templates(dim_, spec_), samples(dim_, spec_) {
    templates.set_deferred_training(true);
    samples.set_deferred_training(true);
  }
  void name_person(int64_t person_id, const std::string& name);  // both name maps
  void forget_person(int64_t person_id);  // its template, names and sample count (not its samples)
};

struct Gallery::Impl {
  explicit Impl(const std::string& path_) : path(path_), db(path_) {}

  std::string path;
  // Lock order: db_mutex, then state_mutex. db_mutex serialises every use of the one SQLite
  // connection (writes and the reads that need the database); state_mutex guards the in-memory
  // indexes, held exclusively only while a committed write is applied, so searches, and verifies
  // against fp32 templates, wait for an fsync never, nor for an ivfpq training.
  mutable std::mutex db_mutex;
  mutable std::shared_mutex state_mutex;
  mutable SqliteDb db;
  std::map<std::string, std::unique_ptr<CollectionState>> collections;

  void load_all();  // (re)builds `collections` from the database; caller holds both locks
  // Trains the collection's ivfpq indexes that reached train_min (all collections' when empty).
  // The caller holds db_mutex, so no write touches them meanwhile, and not state_mutex: the k-means
  // runs unlocked while searches go on over the exact fp32 rows; only the switch is exclusive.
  void train_due(const std::string& collection = "");
  const CollectionState& state(const std::string& collection) const;  // InputError when unknown
  // A collection's database id and dim, read under the state lock (writers then hold db_mutex).
  struct Key {
    int64_t id;
    int dim;
  };
  Key key(const std::string& collection) const;
  CollectionState& state(const std::string& collection);
};

int64_t now_ms();
// Normalises `v` in place; InputError naming `what` when it is not finite or is all zeros.
void normalise_embedding(std::vector<float>& v, const std::string& what);
// Checks that `json` is a JSON object and returns it compact; InputError naming `what` otherwise.
std::string compact_json_object(const std::string& json, const std::string& what);

}  // namespace arcforge::gallery
