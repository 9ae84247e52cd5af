#pragma once
// The gallery's SQLite schema and its migrations. `PRAGMA user_version` holds the schema version and
// `PRAGMA application_id` marks the file as an arcforge gallery.
#include "sqlite_db.hpp"

namespace arcforge::gallery {

constexpr int kSchemaVersion = 2;
constexpr int kApplicationId = 0x41524346;  // "ARCF"

// Sets the connection's pragmas (WAL, synchronous=FULL, foreign keys), then brings the schema up to
// `target` (default: current) in one transaction per migration. Throws InputError naming the file
// when it is not an arcforge gallery or was written by a newer arcforge.
void open_schema(SqliteDb& db, int target = kSchemaVersion);

}  // namespace arcforge::gallery
