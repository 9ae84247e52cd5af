#include "schema.hpp"

#include <string>

#include "arcforge/common/error.hpp"

namespace arcforge::gallery {
namespace {

// migrations[i] brings a database from version i to version i + 1. Append only: released
// databases have run the earlier ones.
constexpr const char* kMigrations[] = {
    // 0 -> 1: collections, persons, samples. Embeddings are little-endian float32 blobs, already
    // L2-normalised; templates are derived at load, not stored.
    R"sql(
    CREATE TABLE collections (
      id INTEGER PRIMARY KEY,
      name TEXT NOT NULL UNIQUE,
      dim INTEGER NOT NULL CHECK (dim > 0),
      index_spec TEXT NOT NULL,
      created_ms INTEGER NOT NULL);
    CREATE TABLE persons (
      id INTEGER PRIMARY KEY,
      collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
      name TEXT NOT NULL,
      metadata TEXT NOT NULL DEFAULT '{}',
      created_ms INTEGER NOT NULL,
      UNIQUE (collection_id, name));
    CREATE TABLE samples (
      id INTEGER PRIMARY KEY,
      person_id INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
      embedding BLOB NOT NULL,
      image_sha256 TEXT NOT NULL DEFAULT '',
      box_x1 REAL NOT NULL DEFAULT 0, box_y1 REAL NOT NULL DEFAULT 0,
      box_x2 REAL NOT NULL DEFAULT 0, box_y2 REAL NOT NULL DEFAULT 0,
      quality REAL NOT NULL DEFAULT 0,
      metadata TEXT NOT NULL DEFAULT '{}',
      created_ms INTEGER NOT NULL);
    CREATE INDEX samples_by_person ON samples(person_id);
    )sql",
    // 1 -> 2: find a person's samples of one source image quickly (import skips duplicates by it).
    R"sql(
    CREATE INDEX samples_by_person_image ON samples(person_id, image_sha256);
    )sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

int pragma_int(SqliteDb& db, const char* pragma) {
  Statement query(db, pragma);
  return query.step() ? static_cast<int>(query.column_int(0)) : 0;
}

}  // namespace

void open_schema(SqliteDb& db, int target) {
  // The first read tells a non-database file apart ("file is not a database").
  int application_id = 0;
  try {
    application_id = pragma_int(db, "PRAGMA application_id");
  } catch (const InputError&) {
    throw InputError(file_message(db.path(), "not an SQLite database, so not an arcforge gallery"));
  }
  const int version = pragma_int(db, "PRAGMA user_version");
  const int tables = pragma_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'");
  if (application_id != kApplicationId && (application_id != 0 || tables > 0)) {
    throw InputError(file_message(db.path(), "an SQLite database but not an arcforge gallery"));
  }
  if (version > kSchemaVersion) {
    throw InputError(file_message(db.path(), "gallery schema version " + std::to_string(version) +
                                                 " is newer than this arcforge understands (" +
                                                 std::to_string(kSchemaVersion) + "): upgrade arcforge"));
  }
  // WAL: readers never block the writer; synchronous=FULL: a commit is on disk (WAL fsynced) before
  // it returns, which is what lets a write be acknowledged.
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  db.exec("PRAGMA foreign_keys = ON");
  for (int v = version; v < target; ++v) {
    Transaction migration(db);
    db.exec(kMigrations[v]);
    db.exec(("PRAGMA user_version = " + std::to_string(v + 1)).c_str());
    db.exec(("PRAGMA application_id = " + std::to_string(kApplicationId)).c_str());
    migration.commit();
  }
}

}  // namespace arcforge::gallery
