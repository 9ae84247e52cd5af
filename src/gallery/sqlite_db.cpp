#include "sqlite_db.hpp"

#include <algorithm>
#include <functional>
#include <iterator>

#include "arcforge/common/error.hpp"
#include "busy_observer.hpp"

namespace arcforge::gallery {

namespace {

std::function<void()> busy_observer;  // testing::set_busy_observer

// Our own busy handler instead of sqlite3_busy_timeout, for a seam: a test sees the moment a write
// is blocked on another connection's lock (the observer) instead of guessing it from a clock. The
// wait is the same as sqlite3_busy_timeout(10 s): SQLite's default handler's growing sleeps
// (sqliteDefaultBusyCallback), giving up, so the statement fails with SQLITE_BUSY, once the next
// sleep would pass 10 s in all. `count` is how many times SQLite already called us for this lock.
int wait_while_busy(void*, int count) {
  constexpr int kBudgetMs = 10'000;
  constexpr int kDelays[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};  // ms, then 100 each
  constexpr int kPrior[] = {0, 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, 228};   // ms slept before
  constexpr int kSteps = static_cast<int>(std::size(kDelays));
  if (busy_observer) busy_observer();
  const int delay = count < kSteps ? kDelays[count] : kDelays[kSteps - 1];
  const int prior = count < kSteps ? kPrior[count] : kPrior[kSteps - 1] + delay * (count - (kSteps - 1));
  const int sleep = std::min(delay, kBudgetMs - prior);
  if (sleep <= 0) return 0;
  sqlite3_sleep(sleep);
  return 1;
}

}  // namespace

void testing::set_busy_observer(std::function<void()> observer) { busy_observer = std::move(observer); }

SqliteDb::SqliteDb(const std::string& path) : path_(path) {
  const int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw InputError(file_message(path, "cannot open the gallery database: " + message));
  }
  sqlite3_extended_result_codes(db_, 1);
  // Another process (a second CLI next to a running server) may hold the write lock briefly: wait
  // up to 10 s for it.
  sqlite3_busy_handler(db_, wait_while_busy, nullptr);
}

SqliteDb::~SqliteDb() { sqlite3_close(db_); }

void SqliteDb::fail(const std::string& what) const {
  throw InputError(file_message(path_, what + ": " + sqlite3_errmsg(db_)));
}

void SqliteDb::exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string message = error != nullptr ? error : "unknown error";
    sqlite3_free(error);
    throw InputError(file_message(path_, message));
  }
}

Statement::Statement(SqliteDb& db, const char* sql) : db_(db) {
  if (sqlite3_prepare_v2(db.handle(), sql, -1, &statement_, nullptr) != SQLITE_OK) db_.fail("cannot prepare a query");
}

Statement::~Statement() { sqlite3_finalize(statement_); }

Statement& Statement::bind(int index, int64_t value) {
  if (sqlite3_bind_int64(statement_, index, value) != SQLITE_OK) db_.fail("bind");
  return *this;
}
Statement& Statement::bind(int index, double value) {
  if (sqlite3_bind_double(statement_, index, value) != SQLITE_OK) db_.fail("bind");
  return *this;
}
Statement& Statement::bind(int index, std::string_view text) {
  if (sqlite3_bind_text(statement_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT) != SQLITE_OK) {
    db_.fail("bind");
  }
  return *this;
}
Statement& Statement::bind_blob(int index, const void* data, size_t size) {
  if (sqlite3_bind_blob(statement_, index, data, static_cast<int>(size), SQLITE_TRANSIENT) != SQLITE_OK) db_.fail("bind");
  return *this;
}
Statement& Statement::bind_null(int index) {
  if (sqlite3_bind_null(statement_, index) != SQLITE_OK) db_.fail("bind");
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(statement_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  db_.fail("query failed");
}

void Statement::run() {
  while (step()) {
  }
}

void Statement::reset() {
  sqlite3_reset(statement_);
  sqlite3_clear_bindings(statement_);
}

int64_t Statement::column_int(int column) const { return sqlite3_column_int64(statement_, column); }
double Statement::column_double(int column) const { return sqlite3_column_double(statement_, column); }
std::string Statement::column_text(int column) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement_, column));
  return text != nullptr ? std::string(text, sqlite3_column_bytes(statement_, column)) : std::string();
}
const void* Statement::column_blob(int column) const { return sqlite3_column_blob(statement_, column); }
size_t Statement::column_bytes(int column) const { return static_cast<size_t>(sqlite3_column_bytes(statement_, column)); }
bool Statement::column_is_null(int column) const { return sqlite3_column_type(statement_, column) == SQLITE_NULL; }

Transaction::Transaction(SqliteDb& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }

Transaction::~Transaction() {
  if (!done_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

}  // namespace arcforge::gallery
