// System routes: the web page, health, metrics and the OpenAPI description.
#include "arcforge/serve/openapi.hpp"
#include "arcforge/serve/web_page.hpp"
#include "service.hpp"

namespace arcforge::serve {

void add_system_routes(std::vector<RouteSpec>& routes, Service& s) {
  // The page, health and the API description stay open and unlimited: a browser must load the page
  // before it can send a token, and probes must answer while the API is busy.
  routes.push_back({"GET", "/", false, false, [](const RequestView&) {
                      Reply reply;
                      reply.html = std::string(web_page_html());
                      return reply;
                    }});
  routes.push_back({"GET", "/health", false, false, [&s](const RequestView&) {
                      return Reply{200,
                                   {{"status", "ok"},
                                    {"version", kServiceVersion},
                                    {"collections", s.gallery.collections().size()},
                                    {"models", s.analyzer != nullptr}},
                                   {}};
                    }});
  routes.push_back({"GET", "/metrics", true, false, [&s](const RequestView&) {
                      return Reply{200, s.metrics->to_json(s.limiter.in_flight()), {}};
                    }});
  routes.push_back({"GET", "/openapi.json", false, false, [](const RequestView&) {
                      return Reply{200, openapi_document(), {}};
                    }});
}

}  // namespace arcforge::serve
