#pragma once
// What every request passes through besides its handler: the bearer-token check, the in-flight
// limit, and the metrics (counters and latency histograms per route pattern).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace arcforge::serve {

// Compares without an early exit, so the time taken says nothing about where a guess went wrong
// (both sides are hashed first, so neither does it reveal the length).
bool constant_time_equals(const std::string& a, const std::string& b);

// True for "localhost", 127.0.0.0/8 and ::1 (bracketed or not).
bool is_loopback_host(const std::string& host);

// The token the server requires: the first line of `token_file` (trimmed) when given, else the
// environment variable ARCFORGE_TOKEN, else empty (no auth). InputError on an unreadable or empty
// token file.
std::string resolve_token(const std::string& token_file);

// "Authorization: Bearer <token>" check; throws HttpError 401 (with WWW-Authenticate) when the
// header is missing or the token is wrong. No-op when `expected` is empty.
void check_bearer(const std::string& authorization_header, const std::string& expected);

// Admits at most `limit` requests at once; the rest are turned away (503), not queued: a client
// that is told to retry does better than one whose request waits behind a long queue.
class ConcurrencyLimiter {
 public:
  explicit ConcurrencyLimiter(int limit) : limit_(limit) {}
  bool try_acquire();
  void release();
  int in_flight() const { return in_flight_.load(); }
  int limit() const { return limit_; }

  // RAII slot; `admitted()` false when the limit was reached.
  class Slot {
   public:
    explicit Slot(ConcurrencyLimiter& limiter) : limiter_(limiter), admitted_(limiter.try_acquire()) {}
    ~Slot() {
      if (admitted_) limiter_.release();
    }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    bool admitted() const { return admitted_; }

   private:
    ConcurrencyLimiter& limiter_;
    bool admitted_;
  };

 private:
  const int limit_;
  std::atomic<int> in_flight_{0};
};

// Latencies in log-spaced buckets (5% wide, 10 us to ~10 min): quantiles are exact to one bucket,
// memory and cost stay constant however many requests come.
class LatencyHistogram {
 public:
  LatencyHistogram();
  void record(double milliseconds);
  uint64_t count() const { return count_; }
  double max() const { return max_; }
  // The upper edge of the bucket holding the q-quantile (0 < q <= 1), capped at the maximum seen;
  // 0 when empty.
  double quantile(double q) const;

  static constexpr double kMinMs = 0.01;
  static constexpr double kGrowth = 1.05;

 private:
  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  double max_ = 0;
};

// Counters for GET /metrics. Thread-safe.
class Metrics {
 public:
  explicit Metrics(const std::vector<std::string>& route_patterns);
  // Every response (including those httplib answers itself: 413, malformed HTTP).
  void count_response(int status);
  // A response of a matched route, keyed by its pattern ("POST /v1/collections/{c}/search").
  void record_route(const std::string& pattern, int status, double milliseconds);
  void count_rejected_busy() { ++rejected_busy_; }
  nlohmann::json to_json(int in_flight) const;

 private:
  struct RouteStats {
    uint64_t count = 0, errors = 0;
    LatencyHistogram latency;
  };
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::atomic<uint64_t> requests_total_{0}, errors_total_{0}, rejected_busy_{0};
  mutable std::mutex mutex_;
  std::map<std::string, RouteStats> routes_;
};

}  // namespace arcforge::serve
