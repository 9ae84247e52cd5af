#pragma once
// What the serve tests share: the real `arcforge serve` binary started as a child process (so a
// test can SIGKILL it), a small JSON client over httplib, and request helpers.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "arcforge/common/base64.hpp"
#include "pipeline/shared_data.hpp"

namespace arcforge::serve::test {

using nlohmann::json;
using pipeline::test::ScratchDir;
using pipeline::test::shared_face;
using pipeline::test::shared_model;

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// The face models every image test uses (a small detector and recognizer of ../shared/models).
// paddle_mobilefacenet128 takes BGR, (x - 127.5) / 128 (../shared/models/MANIFEST.md) and has no
// sidecar to say so.
inline std::vector<std::string> model_args() {
  return {"--detector",        shared_model("scrfd_500m_bnkps.onnx"),
          "--recognizer",      shared_model("paddle_mobilefacenet128.onnx"),
          "--recognizer-spec", "bgr,mean=127.5,std=128",
          "--threads",         "2"};
}

// Percent-encodes every byte outside RFC 3986's unreserved set, so any name survives the URL.
inline std::string url_encode(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// One `arcforge serve` child process. start() returns once it listens (its --port-file appeared).
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { kill_now(); }

  // `args` follow "serve"; --port 0 and --port-file are added. `env` entries ("K=V") are added to
  // the environment; `cwd` (optional) is the child's working directory.
  void start(std::vector<std::string> args, const std::string& port_file, const std::string& log_file,
             const std::vector<std::string>& env = {}, const std::string& cwd = "") {
    std::filesystem::remove(port_file);
    args.insert(args.begin(), {ARCFORGE_CLI, "serve", "--port", "0", "--port-file", port_file});
    log_file_ = log_file;
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::string(*e).rfind("ARCFORGE_TOKEN=", 0) != 0) env_strings.emplace_back(*e);
    }
    for (const auto& e : env) env_strings.push_back(e);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    // The test's own httplib client sends without MSG_NOSIGNAL: a request the server refuses
    // early (413) must fail the write, not kill the test. Set in the parent only, so that the
    // child shows the server's own SIGPIPE handling.
    if (pid_ > 0) signal(SIGPIPE, SIG_IGN);
    if (pid_ == 0) {
      const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(127);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("arcforge serve exited during start-up:\n" + read_text(log_file));
      }
      const std::string text = read_text(port_file);
      if (!text.empty() && text.back() == '\n') {
        port_ = std::stoi(text);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill_now();
    throw std::runtime_error("arcforge serve did not start within 120 s:\n" + read_text(log_file));
  }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const { return read_text(log_file_); }

  void kill_now() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // SIGTERM and wait; the exit code (-1 when it died of a signal).
  int terminate() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_file_;
};

struct Reply {
  int status = 0;  // 0: no HTTP answer (connection refused or cut)
  json body;       // parsed when the answer is JSON
  std::string text;
  httplib::Headers headers;
  std::string error() const {
    return body.is_object() && body.contains("error") ? body["error"].get<std::string>() : "";
  }
};

// A JSON client for one server.
class Api {
 public:
  explicit Api(int port, std::string token = "") : client_("127.0.0.1", port), token_(std::move(token)) {
    client_.set_url_encode(false);  // paths are encoded by the tests (url_encode), never twice
    client_.set_keep_alive(true);   // one connection: requests of a test reach the server in order
    client_.set_tcp_nodelay(true);
    client_.set_read_timeout(60, 0);
    client_.set_connection_timeout(5, 0);
  }

  Reply get(const std::string& path) { return finish(client_.Get(path.c_str(), headers())); }
  Reply del(const std::string& path) { return finish(client_.Delete(path.c_str(), headers())); }
  Reply post(const std::string& path, const json& body) { return post_raw(path, body.dump()); }
  Reply post_raw(const std::string& path, const std::string& body) {
    return finish(client_.Post(path.c_str(), headers(), body, "application/json"));
  }
  void set_token(const std::string& token) { token_ = token; }
  // Closes the keep-alive connection (a server's shutdown waits out idle ones).
  void close() { client_.stop(); }

 private:
  httplib::Headers headers() const {
    httplib::Headers h;
    if (!token_.empty()) h.emplace("Authorization", "Bearer " + token_);
    return h;
  }
  static Reply finish(const httplib::Result& result) {
    Reply r;
    if (!result) return r;
    r.status = result->status;
    r.text = result->body;
    r.headers = result->headers;
    r.body = json::parse(r.text, nullptr, false);
    return r;
  }

  httplib::Client client_;
  std::string token_;
};

inline std::string photo_base64(const std::string& path) { return base64_encode(read_text(path)); }

}  // namespace arcforge::serve::test
