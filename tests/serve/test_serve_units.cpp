// The service's building blocks on their own: path decoding and routing, field readers, the token
// check, the in-flight limiter, the latency histogram (against exact quantiles of the same
// samples) and the OpenAPI document.
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <random>
#include <thread>

#include "arcforge/common/base64.hpp"
#include "arcforge/serve/http_error.hpp"
#include "arcforge/serve/middleware.hpp"
#include "arcforge/serve/openapi.hpp"
#include "arcforge/serve/request_parsing.hpp"
#include "arcforge/serve/router.hpp"

namespace arcforge::serve {
namespace {

using nlohmann::json;

int status_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return e.status();
  }
  return 0;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(ServePaths, SegmentsAreDecodedOneByOne) {
  EXPECT_EQ(split_path("/"), std::vector<std::string>{});
  EXPECT_EQ(split_path("/v1/collections"), (std::vector<std::string>{"v1", "collections"}));
  // An encoded '/' stays inside its segment; the query string is not part of the path.
  EXPECT_EQ(split_path("/p/a%2Fb/%2e%2e?x=%2F"), (std::vector<std::string>{"p", "a/b", ".."}));
  EXPECT_EQ(split_path("/p/%252e"), (std::vector<std::string>{"p", "%2e"}));
  EXPECT_EQ(split_path("/p/a+b%20c%00"), (std::vector<std::string>{"p", "a+b c" + std::string(1, '\0')}));
  EXPECT_EQ(split_path("/p/"), (std::vector<std::string>{"p", ""}));
  EXPECT_EQ(status_of([] { split_path("/p/%zz"); }), 400);
  EXPECT_EQ(status_of([] { split_path("/p/%2"); }), 400);
  EXPECT_EQ(status_of([] { split_path("p"); }), 400);
}

TEST(ServeRouter, MatchesPatternsMethodsAndCaptures) {
  Router router;
  const size_t list = router.add("GET", "/v1/collections/{c}/persons");
  const size_t get = router.add("GET", "/v1/collections/{c}/persons/{p}");
  const size_t del = router.add("DELETE", "/v1/collections/{c}/persons/{p}");
  const size_t root = router.add("GET", "/");

  Router::Match m = router.match("GET", split_path("/v1/collections/staff/persons/a%2Fb"));
  ASSERT_EQ(m.outcome, Router::Outcome::Found);
  EXPECT_EQ(m.route, get);
  EXPECT_EQ(m.params.at("c"), "staff");
  EXPECT_EQ(m.params.at("p"), "a/b");
  EXPECT_EQ(router.routes()[m.route].key(), "GET /v1/collections/{c}/persons/{p}");

  EXPECT_EQ(router.match("DELETE", split_path("/v1/collections/x/persons/y")).route, del);
  EXPECT_EQ(router.match("HEAD", split_path("/v1/collections/x/persons")).route, list);
  EXPECT_EQ(router.match("GET", split_path("/")).route, root);

  m = router.match("POST", split_path("/v1/collections/x/persons/y"));
  EXPECT_EQ(m.outcome, Router::Outcome::WrongMethod);
  EXPECT_EQ(m.allowed, (std::vector<std::string>{"GET", "DELETE"}));
  EXPECT_EQ(router.match("GET", split_path("/v1/collections/x")).outcome, Router::Outcome::NotFound);
  EXPECT_EQ(router.match("GET", split_path("/v1/collections/x/persons/y/z")).outcome, Router::Outcome::NotFound);
  // A raw ".." is a name like any other, never a step up.
  m = router.match("GET", split_path("/v1/collections/x/persons/.."));
  ASSERT_EQ(m.outcome, Router::Outcome::Found);
  EXPECT_EQ(m.params.at("p"), "..");
}

TEST(ServeParsing, JsonFieldsFailWithTheFieldName) {
  EXPECT_EQ(status_of([] { parse_json_object(""); }), 400);
  EXPECT_EQ(status_of([] { parse_json_object("{\"a\":"); }), 400);
  EXPECT_NE(message_of([] { parse_json_object("[1,2]"); }).find("expected a JSON object"), std::string::npos);
  const json body =
      json::parse(R"({"s":"x","n":3,"f":0.5,"bad":"7","o":{"k":1},"e":[1,2,3],"z":[0,0,0],"m":[1,"a",3]})");
  EXPECT_EQ(required_string(body, "s"), "x");
  EXPECT_EQ(optional_string(body, "missing"), std::nullopt);
  EXPECT_NE(message_of([&] { required_string(body, "missing"); }).find("missing field \"missing\""), std::string::npos);
  EXPECT_NE(message_of([&] { required_string(body, "n"); }).find("\"n\": expected a string"), std::string::npos);
  EXPECT_EQ(optional_integer(body, "n", 1, 5), 3);
  EXPECT_EQ(status_of([&] { optional_integer(body, "n", 4, 5); }), 400);
  EXPECT_EQ(status_of([&] { optional_integer(body, "bad", 0, 9); }), 400);
  EXPECT_EQ(status_of([&] { optional_integer(body, "f", 0, 9); }), 400);
  EXPECT_DOUBLE_EQ(*optional_number(body, "f", -1, 1), 0.5);
  EXPECT_EQ(optional_object(body, "o"), R"({"k":1})");
  EXPECT_EQ(optional_object(body, "missing"), "{}");
  EXPECT_EQ(status_of([&] { optional_object(body, "s"); }), 400);
  EXPECT_EQ(embedding_field(body, "e", 3), (std::vector<float>{1, 2, 3}));
  EXPECT_NE(message_of([&] { embedding_field(body, "e", 4); }).find("expected 4 numbers"), std::string::npos);
  EXPECT_NE(message_of([&] { embedding_field(body, "m", 3); }).find("\"m\"[1]"), std::string::npos);
  EXPECT_EQ(status_of([&] { embedding_field(body, "z", 3); }), 400);  // no direction
  EXPECT_EQ(query_integer("25", "limit", 1, 100), 25);
  EXPECT_EQ(status_of([] { query_integer("2x", "limit", 1, 100); }), 400);
  EXPECT_EQ(status_of([] { query_integer("0", "limit", 1, 100); }), 400);
}

TEST(ServeParsing, ImageFieldsAcceptPlainAndDataUrlBase64) {
  const std::string bytes("\x89PNG\r\n\x1a\n\x00\x01", 10);
  const std::string encoded = base64_encode(bytes);
  EXPECT_EQ(decode_image_field(encoded, "image"), bytes);
  EXPECT_EQ(decode_image_field("data:image/png;base64," + encoded, "image"), bytes);
  EXPECT_EQ(status_of([] { decode_image_field("data:image/png,abc", "image"); }), 400);
  EXPECT_EQ(status_of([] { decode_image_field("not base64!", "image"); }), 400);
  EXPECT_NE(message_of([] { decode_image_field("@@@@", "image_b"); }).find("image_b"), std::string::npos);
  EXPECT_EQ(status_of([] { decode_image_field("", "image"); }), 400);
}

TEST(ServeAuth, TokensCompareExactlyAndHostsAreClassified) {
  EXPECT_TRUE(constant_time_equals("s3cret", "s3cret"));
  EXPECT_FALSE(constant_time_equals("s3cret", "s3cres"));
  EXPECT_FALSE(constant_time_equals("s3cret", "s3cret "));
  EXPECT_FALSE(constant_time_equals("", "x"));
  EXPECT_NO_THROW(check_bearer("", ""));  // no token configured: open
  EXPECT_NO_THROW(check_bearer("Bearer s3cret", "s3cret"));
  EXPECT_NO_THROW(check_bearer("bearer s3cret", "s3cret"));
  for (const char* header : {"", "Bearer", "Bearer wrong", "Basic czNjcmV0", "s3cret"}) {
    try {
      check_bearer(header, "s3cret");
      ADD_FAILURE() << "accepted '" << header << "'";
    } catch (const HttpError& e) {
      EXPECT_EQ(e.status(), 401);
      ASSERT_EQ(e.headers.size(), 1u);
      EXPECT_EQ(e.headers[0].first, "WWW-Authenticate");
    }
  }
  for (const char* host : {"127.0.0.1", "127.8.9.10", "localhost", "LocalHost", "::1", "[::1]", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "::", "192.168.1.4", "10.0.0.1", "example.com", "128.0.0.1", "[::]"}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
}

TEST(ServeLimiter, AdmitsAtMostTheLimitAcrossThreads) {
  constexpr int kLimit = 3, kThreads = 8, kRounds = 200;
  ConcurrencyLimiter limiter(kLimit);
  std::atomic<int> inside{0}, most{0}, admitted{0}, refused{0};
  std::barrier sync(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int r = 0; r < kRounds; ++r) {
        sync.arrive_and_wait();  // everyone tries at once
        ConcurrencyLimiter::Slot slot(limiter);
        if (slot.admitted()) {
          const int now = ++inside;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          ++admitted;
          std::this_thread::yield();
          --inside;
        } else {
          ++refused;
        }
        sync.arrive_and_wait();  // slots released before the next round
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(most.load(), kLimit);
  EXPECT_GE(admitted.load(), kRounds);  // at least one per round
  EXPECT_EQ(admitted.load() + refused.load(), kThreads * kRounds);
  EXPECT_EQ(limiter.in_flight(), 0);
}

TEST(ServeMetrics, HistogramQuantilesAreWithinOneBucketOfExact) {
  std::mt19937 rng(7);
  std::lognormal_distribution<double> latency(1.0, 1.5);  // ms, a long tail
  LatencyHistogram h;
  std::vector<double> samples;
  for (int i = 0; i < 20000; ++i) {
    samples.push_back(latency(rng));
    h.record(samples.back());
  }
  std::sort(samples.begin(), samples.end());
  for (double q : {0.5, 0.9, 0.99, 1.0}) {
    const size_t rank = static_cast<size_t>(std::ceil(q * samples.size()));
    const double exact = samples[rank - 1];
    EXPECT_GE(h.quantile(q), exact) << q;  // the bucket's upper edge
    EXPECT_LE(h.quantile(q), exact * LatencyHistogram::kGrowth * (1 + 1e-9)) << q;
  }
  EXPECT_DOUBLE_EQ(h.max(), samples.back());
  EXPECT_EQ(h.count(), samples.size());
  LatencyHistogram empty;
  EXPECT_EQ(empty.quantile(0.5), 0);
  LatencyHistogram tiny;
  tiny.record(0.0);
  tiny.record(1e9);  // beyond the last bucket: max keeps it
  EXPECT_DOUBLE_EQ(tiny.quantile(1.0), 1e9);

  Metrics metrics({"GET /health", "POST /v1/collections/{c}/search"});
  metrics.record_route("POST /v1/collections/{c}/search", 200, 2.0);
  metrics.record_route("POST /v1/collections/{c}/search", 404, 4.0);
  metrics.count_response(200);
  metrics.count_response(404);
  metrics.count_response(413);
  metrics.count_rejected_busy();
  const json j = metrics.to_json(1);
  EXPECT_EQ(j["requests_total"], 3);
  EXPECT_EQ(j["errors_total"], 2);
  EXPECT_EQ(j["rejected_busy"], 1);
  EXPECT_EQ(j["in_flight"], 1);
  EXPECT_EQ(j["routes"]["GET /health"]["count"], 0);
  const json& search = j["routes"]["POST /v1/collections/{c}/search"];
  EXPECT_EQ(search["count"], 2);
  EXPECT_EQ(search["errors"], 1);
  EXPECT_DOUBLE_EQ(search["latency_ms"]["max"].get<double>(), 4.0);
}

TEST(ServeOpenApi, DocumentsEveryRoute) {
  const json doc = openapi_document();
  EXPECT_EQ(doc["openapi"], "3.0.3");
  // The contract's routes, typed from the API description rather than taken from the server.
  const std::vector<std::pair<std::string, std::string>> routes = {{"/", "get"},
                                                                   {"/health", "get"},
                                                                   {"/metrics", "get"},
                                                                   {"/openapi.json", "get"},
                                                                   {"/v1/collections", "get"},
                                                                   {"/v1/collections", "post"},
                                                                   {"/v1/detect", "post"},
                                                                   {"/v1/collections/{c}/persons/{p}/faces", "post"},
                                                                   {"/v1/collections/{c}/search", "post"},
                                                                   {"/v1/verify", "post"},
                                                                   {"/v1/collections/{c}/persons", "get"},
                                                                   {"/v1/collections/{c}/persons/{p}", "get"},
                                                                   {"/v1/collections/{c}/persons/{p}", "delete"}};
  size_t operations = 0;
  for (const auto& [path, ops] : doc["paths"].items()) operations += ops.size();
  EXPECT_EQ(operations, routes.size());
  for (const auto& [path, method] : routes) {
    ASSERT_TRUE(doc["paths"].contains(path)) << path;
    ASSERT_TRUE(doc["paths"][path].contains(method)) << method << " " << path;
    EXPECT_TRUE(doc["paths"][path][method].contains("responses")) << method << " " << path;
  }
  // Every $ref points at a schema that exists.
  std::function<void(const json&)> check_refs = [&](const json& node) {
    if (node.is_object()) {
      if (node.contains("$ref")) {
        const std::string ref = node["$ref"];
        const std::string prefix = "#/components/schemas/";
        ASSERT_EQ(ref.rfind(prefix, 0), 0u) << ref;
        EXPECT_TRUE(doc["components"]["schemas"].contains(ref.substr(prefix.size()))) << ref;
      }
      for (const auto& [k, v] : node.items()) check_refs(v);
    } else if (node.is_array()) {
      for (const auto& v : node) check_refs(v);
    }
  };
  check_refs(doc);
}

}  // namespace
}  // namespace arcforge::serve
