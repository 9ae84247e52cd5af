#include "arcforge/common/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace arcforge::log {
namespace {
std::atomic<Level> g_level{Level::info};
std::mutex g_mutex;
const char* prefix(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warning";
    case Level::error: return "error";
  }
  return "";
}
}  // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

void write(Level l, const std::string& message) {
  if (l < g_level.load()) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "[arcforge %s] %s\n", prefix(l), message.c_str());
  std::fflush(stderr);
}

}  // namespace arcforge::log
