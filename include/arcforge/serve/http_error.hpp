#pragma once
// HttpError: a request that cannot be served, with the HTTP status it answers with. Handlers throw
// it; the dispatcher turns it into {"error": message} with that status and the server carries on.
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace arcforge::serve {

class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }
  // Extra response headers (e.g. WWW-Authenticate on 401, Retry-After on 503).
  std::vector<std::pair<std::string, std::string>> headers;

 private:
  int status_;
};

}  // namespace arcforge::serve
