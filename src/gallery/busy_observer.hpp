#pragma once
// A seam for tests: a function called each time SQLite finds the gallery's database locked by
// another connection (the busy handler in sqlite_db.cpp), before it waits, on the thread whose
// statement is blocked (in Gallery, one that holds db_mutex). A test uses it to act while a write
// is blocked on SQLite's lock (a verify from another thread must answer), instead of racing a
// clock. Unset in production; set it only while no gallery statement can run.
#include <functional>

namespace arcforge::gallery::testing {

void set_busy_observer(std::function<void()> observer);

}  // namespace arcforge::gallery::testing
