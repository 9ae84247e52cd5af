#pragma once
// Internal to arcforge_serve: the state every handler shares (Service) and how handlers are
// declared (RouteSpec). The route files add their routes through the add_*_routes functions.
#include <httplib.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "arcforge/gallery/gallery.hpp"
#include "arcforge/pipeline/face_analyzer.hpp"
#include "arcforge/serve/middleware.hpp"
#include "arcforge/serve/server.hpp"

namespace arcforge::serve {

// What a handler sees of a request: httplib's request and the decoded path captures.
struct RequestView {
  const httplib::Request& http;
  const std::map<std::string, std::string>& params;
  // A path capture ({c}, {p}), checked as a gallery name (400 when empty, too long or holding a
  // control character).
  std::string name(const std::string& capture, const std::string& what) const;
  nlohmann::json body() const;  // the body as a JSON object (400 otherwise)
  // A query parameter's text, or `fallback` when absent.
  std::string query(const std::string& key, const std::string& fallback) const;
};

struct Reply {
  int status = 200;
  nlohmann::json json;
  std::string html;  // when set, the reply is this text/html document instead of JSON
};

using Handler = std::function<Reply(const RequestView&)>;

struct RouteSpec {
  std::string method, pattern;
  bool needs_auth = true;  // bearer token required when the server has one
  bool limited = true;     // counts against --max-concurrent
  Handler handler;
};

class Service {
 public:
  Service(ServerOptions options, std::shared_ptr<const pipeline::FaceAnalyzer> analyzer);

  const ServerOptions options;
  gallery::Gallery gallery;
  const std::shared_ptr<const pipeline::FaceAnalyzer> analyzer;  // null: embedding-only
  ConcurrencyLimiter limiter;
  std::unique_ptr<Metrics> metrics;  // made once the routes are known

  // The collection's dim; HttpError 404 when it does not exist. Cached: dims never change.
  int collection_dim(const std::string& collection);
  void remember_dim(const std::string& collection, int dim);
  // The recognizer's embedding size, 0 without one.
  int embedding_size() const;

 private:
  std::mutex dims_mutex_;
  std::map<std::string, int> dims_;
};

// nlohmann::json::dump that never throws on invalid UTF-8 (names come from URLs).
std::string dump_json(const nlohmann::json& value);
// A stored metadata string as JSON (a string when it does not parse).
nlohmann::json metadata_json(const std::string& text);

void add_system_routes(std::vector<RouteSpec>& routes, Service& service);
void add_gallery_routes(std::vector<RouteSpec>& routes, Service& service);
void add_face_routes(std::vector<RouteSpec>& routes, Service& service);

}  // namespace arcforge::serve
