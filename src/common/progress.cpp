#include "arcforge/common/progress.hpp"

#include <unistd.h>

#include <cstdio>
#include <sstream>

namespace arcforge {

bool Progress::stderr_is_tty() { return ::isatty(STDERR_FILENO) == 1; }

Progress::Progress(std::string label, int64_t total, int64_t plain_every, bool force_plain)
    : label_(std::move(label)),
      total_(total),
      plain_every_(plain_every > 0 ? plain_every : 1),
      tty_(!force_plain && stderr_is_tty()),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() { finish(); }

static std::string format_duration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "?";
  int s = static_cast<int>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

void Progress::update(int64_t step, const std::vector<std::pair<std::string, std::string>>& fields) {
  if (first_step_ < 0) {
    first_step_ = step;
    start_ = std::chrono::steady_clock::now();
  }
  bool last = total_ > 0 && step >= total_;
  if (!tty_ && step % plain_every_ != 0 && !last) return;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? static_cast<double>(step - first_step_) / elapsed : 0;
  std::ostringstream line;
  line << label_ << " " << step;
  if (total_ > 0) line << "/" << total_;
  for (const auto& [name, value] : fields) line << " " << name << " " << value;
  if (total_ > 0 && rate > 0) line << " eta " << format_duration((total_ - step) / rate);
  if (tty_) {
    const int width = 24;
    int filled = total_ > 0 ? static_cast<int>(width * static_cast<double>(step) / total_) : 0;
    std::string bar(static_cast<size_t>(std::min(filled, width)), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r[%s] %s\033[K", bar.c_str(), line.str().c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.str().c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (tty_ && first_step_ >= 0) std::fprintf(stderr, "\n");
}

}  // namespace arcforge
