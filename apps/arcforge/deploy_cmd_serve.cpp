// `arcforge serve --db FILE [--models DIR]`: the REST API and web page over a gallery. Runs until
// SIGINT/SIGTERM, then stops accepting, finishes the requests in flight and exits 0.
#include <pthread.h>
#include <signal.h>

#include <climits>
#include <memory>
#include <string>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/common/log.hpp"
#include "arcforge/serve/middleware.hpp"
#include "arcforge/serve/server.hpp"
#include "face_cli.hpp"
#include "serve_cli.hpp"

namespace arcforge::cli {
namespace {

struct ServeArgs {
  FaceModelArgs models;
  serve::ServerOptions server;
  std::string port_file, token_file;
  double max_body_mb = 16;
};

bool has_models(const FaceModelArgs& m) { return !m.pack.empty() || !m.detector.empty() || !m.recognizer.empty(); }

void run(ServeArgs a) {
  // SIGINT/SIGTERM are taken by sigwait below, never by the default action in some thread: block
  // them before any thread exists (the runtime's and the server's threads inherit the mask), or a
  // signal delivered to one of them would kill the process mid-request.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  a.server.token = serve::resolve_token(a.token_file);
  if (!(a.max_body_mb > 0 && a.max_body_mb <= 4096)) throw ConfigError("--max-body-mb must be in (0, 4096]");
  a.server.max_body_bytes = static_cast<size_t>(a.max_body_mb * 1024 * 1024);
  a.server.max_faces = a.models.max_faces > 0 ? a.models.max_faces : INT_MAX;
  std::shared_ptr<const pipeline::FaceAnalyzer> analyzer;
  if (has_models(a.models))
    analyzer = std::make_shared<const pipeline::FaceAnalyzer>(make_analyzer(a.models, true, true));

  serve::Server server(a.server, analyzer);
  server.start();
  if (!a.port_file.empty()) write_file_atomically(a.port_file, std::to_string(server.port()) + "\n");
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  log::info(std::string("serve: ") + (signal_number == SIGINT ? "SIGINT" : "SIGTERM") +
            ": finishing the requests in flight");
  server.stop();
  log::info("serve: stopped");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  args->models.max_faces = 20;
  args->server.threshold = kDefaultVerifyThreshold;
  CLI::App* cmd = app.add_subcommand("serve", "The face-search HTTP service (REST API + web page) over a gallery");
  cmd->add_option("--db", args->server.db, "Gallery database file (SQLite; created when absent)")->required();
  cmd->add_option("--models", args->models.pack,
                  "Model pack folder (same as --pack); without models the server "
                  "is embedding-only");
  add_face_model_options(cmd, args->models, true);
  cmd->add_option("--host", args->server.host, "Address to listen on (not loopback: a token is required)");
  cmd->add_option("--port", args->server.port, "TCP port (0: any free port, see --port-file)");
  cmd->add_option("--port-file", args->port_file, "Write the bound port here (atomically) once listening");
  cmd->add_option("--token-file", args->token_file,
                  "Bearer token: the file's first line (default: env ARCFORGE_TOKEN; none: no auth)");
  cmd->add_option("--threshold", args->server.threshold, "Default cosine threshold of search and verify");
  cmd->add_option("--collection", args->server.collection, "Default collection, created at start when absent");
  cmd->add_option("--index", args->server.index, "Index of the default collection: flat | int8 | hnsw | ivfpq");
  cmd->add_option("--dim", args->server.dim, "Dim of the default collection without a recognizer");
  cmd->add_option("--max-body-mb", args->max_body_mb, "Largest request body (MiB); larger get 413");
  cmd->add_option("--max-concurrent", args->server.max_concurrent, "API requests in flight at once; more get 503");
  cmd->add_option("--http-threads", args->server.http_threads, "HTTP worker threads");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
