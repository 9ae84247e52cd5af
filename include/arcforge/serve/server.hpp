#pragma once
// Server: the face-search HTTP service behind `arcforge serve` (GET /openapi.json describes its
// REST API). One gallery database, optional face models, httplib on a fixed thread pool.
//
//   ServerOptions options;
//   options.db = "faces.db";
//   options.port = 0;                        // any free port
//   Server server(options, analyzer);         // analyzer may be null: embedding-only
//   server.start();                           // listening when it returns
//   int port = server.port();
//   ...
//   server.stop();                            // stops accepting, finishes in-flight requests
//
// Every write is committed (fsync) before its 2xx goes out, so an acknowledged enrolment survives
// a crash. A bad request never stops the server: it gets {"error": ...} with a 4xx status.
#include <cstddef>
#include <memory>
#include <string>

#include "arcforge/pipeline/face_analyzer.hpp"

namespace arcforge::serve {

inline constexpr const char* kServiceVersion = "0.1.0";

struct ServerOptions {
  std::string db;  // the gallery database (created when absent)
  std::string host = "127.0.0.1";
  int port = 8080;                     // 0: any free port
  std::string token;                   // bearer token; empty: none (allowed on loopback only)
  float threshold = 0.29f;             // default match / verify threshold (cosine)
  std::string collection = "default";  // created at start when absent
  std::string index = "flat";          // its index kind
  int dim = 512;                       // its dim when there is no recognizer
  size_t max_body_bytes = 16u << 20;   // larger bodies get 413
  int max_faces = 20;                  // faces per image reported by search
  int max_concurrent = 8;              // in-flight API requests; more get 503
  int http_threads = 8;                // httplib worker threads (connections served at once)
};

// SIGPIPE -> ignored, process-wide, unless the process installed its own handler: a peer closing a
// socket must fail one write, not kill the process. Clients of httplib need it too.
void ignore_sigpipe();

class Server {
 public:
  // Opens the gallery and creates the default collection. InputError when the options are invalid
  // (a non-loopback host without a token, a collection whose dim differs from the recognizer's).
  Server(ServerOptions options, std::shared_ptr<const pipeline::FaceAnalyzer> analyzer);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and serves on a background thread. InputError when the address cannot be bound.
  // Sets SIGPIPE to ignored for the process (see ignore_sigpipe).
  void start();
  int port() const;
  // Stops accepting, lets in-flight requests finish, joins. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arcforge::serve
