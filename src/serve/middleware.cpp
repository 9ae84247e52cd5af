// Auth, the in-flight limiter and the metrics.
#include "arcforge/serve/middleware.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/gallery/gallery.hpp"
#include "arcforge/serve/http_error.hpp"

namespace arcforge::serve {
namespace {

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return "";
  const size_t last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

[[noreturn]] void unauthorized(const std::string& message) {
  HttpError error(401, message);
  error.headers.emplace_back("WWW-Authenticate", "Bearer");
  throw error;
}

}  // namespace

bool constant_time_equals(const std::string& a, const std::string& b) {
  const std::string ha = gallery::sha256_hex(a.data(), a.size()), hb = gallery::sha256_hex(b.data(), b.size());
  unsigned char diff = 0;
  for (size_t i = 0; i < ha.size(); ++i) diff |= static_cast<unsigned char>(ha[i] ^ hb[i]);
  return diff == 0;
}

bool is_loopback_host(const std::string& host_text) {
  std::string host = lower(host_text);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

std::string resolve_token(const std::string& token_file) {
  if (!token_file.empty()) {
    const std::string text = read_file(token_file);
    const std::string token = trim(text.substr(0, text.find('\n')));
    if (token.empty()) throw InputError(file_message(token_file, "the first line holds no token"));
    return token;
  }
  if (const char* env = std::getenv("ARCFORGE_TOKEN")) return trim(env);
  return "";
}

void check_bearer(const std::string& authorization, const std::string& expected) {
  if (expected.empty()) return;
  if (authorization.empty()) unauthorized("missing bearer token: send 'Authorization: Bearer <token>'");
  const size_t space = authorization.find(' ');
  if (space == std::string::npos || lower(authorization.substr(0, space)) != "bearer") {
    unauthorized("the Authorization header must be 'Bearer <token>'");
  }
  if (!constant_time_equals(trim(authorization.substr(space + 1)), expected)) unauthorized("wrong bearer token");
}

bool ConcurrencyLimiter::try_acquire() {
  int current = in_flight_.load();
  while (current < limit_) {
    if (in_flight_.compare_exchange_weak(current, current + 1)) return true;
  }
  return false;
}

void ConcurrencyLimiter::release() { in_flight_.fetch_sub(1); }

LatencyHistogram::LatencyHistogram() {
  // Buckets up to 10 minutes; slower requests land in the last one (and `max` keeps the truth).
  const size_t n = static_cast<size_t>(std::ceil(std::log(600'000.0 / kMinMs) / std::log(kGrowth))) + 1;
  buckets_.assign(n, 0);
}

void LatencyHistogram::record(double ms) {
  if (!(ms >= 0)) ms = 0;
  size_t index = 0;
  if (ms > kMinMs) {
    index = static_cast<size_t>(std::ceil(std::log(ms / kMinMs) / std::log(kGrowth)));
    // log() rounding may put a value sitting on an edge one bucket high or low; fix it up.
    while (index > 0 && kMinMs * std::pow(kGrowth, static_cast<double>(index) - 1) >= ms) --index;
    while (kMinMs * std::pow(kGrowth, static_cast<double>(index)) < ms) ++index;
  }
  ++buckets_[std::min(index, buckets_.size() - 1)];
  ++count_;
  max_ = std::max(max_, ms);
}

double LatencyHistogram::quantile(double q) const {
  if (count_ == 0) return 0;
  const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen < rank) continue;
    // The last bucket also holds everything beyond its edge: only the maximum bounds it.
    return i + 1 == buckets_.size() ? max_ : std::min(kMinMs * std::pow(kGrowth, static_cast<double>(i)), max_);
  }
  return max_;
}

Metrics::Metrics(const std::vector<std::string>& route_patterns) {
  for (const auto& pattern : route_patterns) routes_[pattern];
}

void Metrics::count_response(int status) {
  ++requests_total_;
  if (status >= 400) ++errors_total_;
}

void Metrics::record_route(const std::string& pattern, int status, double milliseconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  RouteStats& stats = routes_[pattern];
  ++stats.count;
  if (status >= 400) ++stats.errors;
  stats.latency.record(milliseconds);
}

nlohmann::json Metrics::to_json(int in_flight) const {
  const double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  nlohmann::json routes = nlohmann::json::object();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [pattern, stats] : routes_) {
      const LatencyHistogram& h = stats.latency;
      routes[pattern] = {
          {"count", stats.count},
          {"errors", stats.errors},
          {"latency_ms",
           {{"p50", h.quantile(0.5)}, {"p90", h.quantile(0.9)}, {"p99", h.quantile(0.99)}, {"max", h.max()}}}};
    }
  }
  return {{"uptime_s", uptime},     {"requests_total", requests_total_.load()}, {"errors_total", errors_total_.load()},
          {"in_flight", in_flight}, {"rejected_busy", rejected_busy_.load()},   {"routes", routes}};
}

}  // namespace arcforge::serve
