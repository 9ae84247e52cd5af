// Server: httplib wiring (thread pool, body limit, error bodies, metrics) around the Router and the
// route handlers of routes_*.cpp.
#include "arcforge/serve/server.hpp"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "arcforge/common/error.hpp"
#include "arcforge/common/log.hpp"
#include "arcforge/serve/http_error.hpp"
#include "arcforge/serve/middleware.hpp"
#include "arcforge/serve/request_parsing.hpp"
#include "arcforge/serve/router.hpp"
#include "service.hpp"

namespace arcforge::serve {
namespace {

// Every path: we route ourselves on the raw target. "[\s\S]" because a decoded path may hold a
// newline (which '.' would not match, and the request would miss our handler).
constexpr const char* kAnyPath = "[\\s\\S]*";

void validate(const ServerOptions& o) {
  if (o.db.empty()) throw InputError("give the gallery database: --db FILE");
  if (!is_loopback_host(o.host) && o.token.empty()) {
    throw InputError("--host " + o.host +
                     " is reachable from the network: set a bearer token (--token-file FILE or ARCFORGE_TOKEN) "
                     "or listen on 127.0.0.1");
  }
  if (o.port < 0 || o.port > 65535) throw InputError("--port must be in [0, 65535]");
  if (!(o.threshold >= -1 && o.threshold <= 1)) throw InputError("--threshold must be in [-1, 1]");
  if (o.max_concurrent < 1) throw InputError("--max-concurrent must be at least 1");
  if (o.http_threads < 1) throw InputError("--http-threads must be at least 1");
  if (o.max_body_bytes < 1) throw InputError("--max-body-mb must be positive");
  if (o.max_faces < 1) throw InputError("--max-faces must be at least 1");
  if (o.dim < 1) throw InputError("--dim must be positive");
  gallery::check_name("--collection", o.collection);
  gallery::parse_index_kind(o.index);
}

void write_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(dump_json(body), "application/json");
}

std::string status_error_message(int status, size_t max_body_bytes) {
  switch (status) {
    case 400:
      return "malformed HTTP request";
    case 404:
      return "not found";
    case 413:
      return "request body too large: the limit is " + std::to_string(max_body_bytes) + " bytes (--max-body-mb)";
    case 414:
      return "request URI too long";
    case 416:
      return "bad Range header";
    default:
      return "HTTP error " + std::to_string(status);
  }
}

}  // namespace

void ignore_sigpipe() {
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

struct Server::Impl {
  Impl(ServerOptions options, std::shared_ptr<const pipeline::FaceAnalyzer> analyzer)
      : service(std::move(options), std::move(analyzer)) {
    add_system_routes(specs, service);
    add_gallery_routes(specs, service);
    add_face_routes(specs, service);
    std::vector<std::string> keys;
    for (const auto& spec : specs) keys.push_back(router.routes()[router.add(spec.method, spec.pattern)].key());
    service.metrics = std::make_unique<Metrics>(keys);
    configure_http();
  }

  void configure_http();
  void dispatch(const httplib::Request& req, httplib::Response& res);

  Service service;
  std::vector<RouteSpec> specs;  // specs[i] is router.routes()[i]
  Router router;
  httplib::Server http;
  std::thread listener;
  std::atomic<bool> listener_done{false};
  int port = -1;
  std::mutex lifecycle;
  bool stopped = false;
};

void Server::Impl::configure_http() {
  const int threads = service.options.http_threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http.set_payload_max_length(service.options.max_body_bytes);
  http.set_keep_alive_max_count(100);
  http.set_tcp_nodelay(true);  // headers and body go out as separate writes: no Nagle stall between them
  // Short idle windows: a thread waiting on a silent connection is a thread the API lacks, and
  // stop() waits for them.
  http.set_keep_alive_timeout(2);
  http.set_read_timeout(10, 0);
  http.set_write_timeout(10, 0);
  http.set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"}});

  // The body limit holds only when the size is known up front: httplib does not cap chunked bodies
  // nor bodies read until the connection closes, so those are refused before anything is read.
  http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    const bool body_method = req.method == "POST" || req.method == "PUT" || req.method == "PATCH";
    if (req.has_header("Transfer-Encoding") || (body_method && !req.has_header("Content-Length"))) {
      write_json(res, 411, {{"error", "send the body with a Content-Length header (chunked bodies are refused)"}});
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  const auto handler = [this](const httplib::Request& req, httplib::Response& res) { dispatch(req, res); };
  http.Get(kAnyPath, handler);
  http.Post(kAnyPath, handler);
  http.Put(kAnyPath, handler);
  http.Patch(kAnyPath, handler);
  http.Delete(kAnyPath, handler);
  http.Options(kAnyPath, handler);
  // Errors httplib answers by itself (413, malformed requests) get our JSON body too.
  const size_t max_body = service.options.max_body_bytes;
  http.set_error_handler(
      httplib::Server::HandlerWithResponse([max_body](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        write_json(res, res.status, {{"error", status_error_message(res.status, max_body)}});
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log::error("serve: unhandled exception: " + what);
    write_json(res, 500, {{"error", "internal error: " + what}});
  });
  http.set_logger(
      [this](const httplib::Request&, const httplib::Response& res) { service.metrics->count_response(res.status); });
}

void Server::Impl::dispatch(const httplib::Request& req, httplib::Response& res) {
  const auto started = std::chrono::steady_clock::now();
  std::string route_key;
  try {
    const Router::Match match = router.match(req.method, split_path(req.target));
    if (match.outcome == Router::Outcome::NotFound) {
      throw HttpError(404, "no route for " + req.method + " " + req.path + " (GET /openapi.json lists the routes)");
    }
    if (match.outcome == Router::Outcome::WrongMethod) {
      std::string allowed;
      for (const auto& m : match.allowed) allowed += (allowed.empty() ? "" : ", ") + m;
      HttpError error(405, req.method + " is not allowed on " + req.path + " (allowed: " + allowed + ")");
      error.headers.emplace_back("Allow", allowed);
      throw error;
    }
    const RouteSpec& spec = specs[match.route];
    route_key = router.routes()[match.route].key();
    if (spec.needs_auth) check_bearer(req.get_header_value("Authorization"), service.options.token);
    std::optional<ConcurrencyLimiter::Slot> slot;
    if (spec.limited) {
      slot.emplace(service.limiter);
      if (!slot->admitted()) {
        service.metrics->count_rejected_busy();
        HttpError error(503, "server busy: " + std::to_string(service.limiter.limit()) +
                                 " requests in flight (--max-concurrent); retry shortly");
        error.headers.emplace_back("Retry-After", "1");
        throw error;
      }
    }
    const Reply reply = spec.handler(RequestView{req, match.params});
    if (!reply.html.empty()) {
      res.status = reply.status;
      res.set_content(reply.html, "text/html; charset=utf-8");
    } else {
      write_json(res, reply.status, reply.json);
    }
  } catch (const HttpError& e) {
    write_json(res, e.status(), {{"error", e.what()}});
    for (const auto& [name, value] : e.headers) res.set_header(name.c_str(), value);
  } catch (const InputError& e) {
    write_json(res, 400, {{"error", e.what()}});
  } catch (const std::exception& e) {
    log::error("serve: " + req.method + " " + req.path + ": " + e.what());
    write_json(res, 500, {{"error", std::string("internal error: ") + e.what()}});
  }
  if (!route_key.empty()) {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    service.metrics->record_route(route_key, res.status, ms);
  }
}

Server::Server(ServerOptions options, std::shared_ptr<const pipeline::FaceAnalyzer> analyzer) {
  validate(options);  // before the database is opened: a refused start leaves no file behind
  impl_ = std::make_unique<Impl>(std::move(options), std::move(analyzer));
}

Server::~Server() { stop(); }

void Server::start() {
  std::lock_guard<std::mutex> lock(impl_->lifecycle);
  if (impl_->listener.joinable() || impl_->stopped) throw Error("serve: start() called twice");
  const ServerOptions& o = impl_->service.options;
  // Debian's httplib sends without MSG_NOSIGNAL: a client that hangs up mid-response would raise
  // SIGPIPE and kill the whole server. Ignored, the write fails with EPIPE and only that request ends.
  ignore_sigpipe();
  int port = o.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
  } else if (!impl_->http.bind_to_port(o.host, port)) {
    port = -1;
  }
  if (port < 0) {
    throw InputError("cannot listen on " + o.host + ":" + std::to_string(o.port) +
                     " (address in use, or not an address of this machine)");
  }
  impl_->port = port;
  impl_->listener = std::thread([this] {
    impl_->http.listen_after_bind();
    impl_->listener_done = true;
  });
  // httplib's stop() does nothing until its accept loop runs: wait for it, so that a stop() right
  // after start() cannot be lost.
  while (!impl_->http.is_running() && !impl_->listener_done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  log::info("serve: listening on http://" + o.host + ":" + std::to_string(port) + " (database " + o.db + ", " +
            (impl_->service.analyzer ? "face models loaded" : "embedding-only, no face models") + ")");
}

int Server::port() const { return impl_->port; }

void Server::stop() {
  if (!impl_) return;
  std::lock_guard<std::mutex> lock(impl_->lifecycle);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->http.stop();  // closes the listening socket; the pool finishes what it holds, then joins
  if (impl_->listener.joinable()) impl_->listener.join();
}

}  // namespace arcforge::serve
