// Router: segment-by-segment matching of decoded paths against "{name}" patterns.
#include "arcforge/serve/router.hpp"

#include <algorithm>

namespace arcforge::serve {
namespace {

std::vector<std::string> pattern_segments(const std::string& pattern) {
  std::vector<std::string> segments;
  size_t start = 1;
  while (start <= pattern.size() && pattern.size() > 1) {
    const size_t slash = pattern.find('/', start);
    segments.push_back(pattern.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return segments;
}

bool is_capture(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

size_t Router::add(const std::string& method, const std::string& pattern) {
  routes_.push_back(Route{method, pattern, pattern_segments(pattern)});
  return routes_.size() - 1;
}

Router::Match Router::match(const std::string& method_in, const std::vector<std::string>& segments) const {
  const std::string method = method_in == "HEAD" ? "GET" : method_in;
  Match result;
  for (size_t r = 0; r < routes_.size(); ++r) {
    const Route& route = routes_[r];
    if (route.segments.size() != segments.size()) continue;
    std::map<std::string, std::string> params;
    bool matches = true;
    for (size_t i = 0; i < segments.size() && matches; ++i) {
      if (is_capture(route.segments[i])) {
        params[route.segments[i].substr(1, route.segments[i].size() - 2)] = segments[i];
      } else {
        matches = route.segments[i] == segments[i];
      }
    }
    if (!matches) continue;
    if (route.method == method) {
      result.outcome = Outcome::Found;
      result.route = r;
      result.params = std::move(params);
      result.allowed.clear();
      return result;
    }
    result.outcome = Outcome::WrongMethod;
    if (std::find(result.allowed.begin(), result.allowed.end(), route.method) == result.allowed.end()) {
      result.allowed.push_back(route.method);
    }
  }
  return result;
}

}  // namespace arcforge::serve
