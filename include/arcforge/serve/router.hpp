#pragma once
// Router: matches a method and a decoded path against patterns such as
// "/v1/collections/{c}/persons/{p}". We route on the raw request target split into segments and
// decoded one by one (httplib decodes the whole path first, which would turn a name holding an
// encoded '/' into two segments).
#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace arcforge::serve {

class Router {
 public:
  struct Route {
    std::string method;   // GET, POST, DELETE
    std::string pattern;  // "/v1/collections/{c}/search"
    std::vector<std::string> segments;
    std::string key() const { return method + " " + pattern; }  // the metrics key
  };
  enum class Outcome { Found, WrongMethod, NotFound };
  struct Match {
    Outcome outcome = Outcome::NotFound;
    size_t route = 0;                           // index into routes() when Found
    std::map<std::string, std::string> params;  // {c} -> its decoded value
    std::vector<std::string> allowed;           // methods of the path when WrongMethod
  };

  // Returns the route's index. Patterns start with '/'; "{name}" segments capture.
  size_t add(const std::string& method, const std::string& pattern);
  // HEAD matches GET routes.
  Match match(const std::string& method, const std::vector<std::string>& segments) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace arcforge::serve
