#pragma once
// Progress for long loops: a redrawn bar on a TTY, a plain line every N steps otherwise (CI logs
// stay readable). The caller supplies the fields; this only formats and decides when to print.
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace arcforge {

class Progress {
 public:
  // total: number of steps (0 when unknown); plain_every: plain-line period when not on a TTY.
  Progress(std::string label, int64_t total, int64_t plain_every, bool force_plain = false);
  ~Progress();

  // fields: ordered name/value pairs such as {"loss", "12.3"}.
  void update(int64_t step, const std::vector<std::pair<std::string, std::string>>& fields);
  void finish();

  static bool stderr_is_tty();

 private:
  std::string label_;
  int64_t total_;
  int64_t plain_every_;
  bool tty_;
  bool finished_ = false;
  int64_t first_step_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace arcforge
