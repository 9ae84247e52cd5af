// The REST API of a real `arcforge serve` (embedding-only: no models) over HTTP: collections,
// enrolment, search (checked against brute-force cosine in double precision), persons, verify,
// metrics, the OpenAPI document, and every kind of bad request, after which the server still
// answers.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "serve_test_support.hpp"

namespace arcforge::serve::test {
namespace {

constexpr int kDim = 32;

std::vector<float> random_unit(std::mt19937& rng, int dim = kDim) {
  std::normal_distribution<float> normal;
  std::vector<float> v(dim);
  for (auto& x : v) x = normal(rng);
  return v;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

class ServeApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    scratch_ = new ScratchDir();
    server_ = new ServerProcess();
    server_->start({"--db", scratch_->file("gallery.db"), "--dim", std::to_string(kDim), "--max-body-mb", "1",
                    "--threshold", "0.3"},
                   scratch_->file("port"), scratch_->file("server.log"));
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->terminate(), 0);  // SIGTERM: a clean exit
    delete server_;
    delete scratch_;
  }
  void TearDown() override {
    // Whatever a test sent, the server is still up.
    Api api(server_->port());
    EXPECT_EQ(api.get("/health").status, 200) << server_->log();
  }
  static Api api() { return Api(server_->port()); }
  static std::string persons(const std::string& collection) { return "/v1/collections/" + collection + "/persons"; }

  static ScratchDir* scratch_;
  static ServerProcess* server_;
};
ScratchDir* ServeApi::scratch_ = nullptr;
ServerProcess* ServeApi::server_ = nullptr;

TEST_F(ServeApi, HealthCollectionsAndCreate) {
  Api a = api();
  Reply health = a.get("/health");
  ASSERT_EQ(health.status, 200);
  EXPECT_EQ(health.body["status"], "ok");
  EXPECT_EQ(health.body["version"], "0.1.0");
  EXPECT_EQ(health.body["models"], false);

  Reply created = a.post("/v1/collections", {{"name", "staff"}, {"dim", 8}, {"index", "hnsw"}});
  ASSERT_EQ(created.status, 201) << created.text;
  EXPECT_EQ(created.body["name"], "staff");
  EXPECT_EQ(created.body["dim"], 8);
  EXPECT_EQ(created.body["index"], "hnsw");
  EXPECT_EQ(created.body["persons"], 0);
  Reply again = a.post("/v1/collections", {{"name", "staff"}});
  EXPECT_EQ(again.status, 409);
  EXPECT_NE(again.error().find("already exists"), std::string::npos);
  EXPECT_EQ(a.post("/v1/collections", {{"name", "x"}, {"index", "btree"}}).status, 400);
  EXPECT_EQ(a.post("/v1/collections", {{"name", "x"}, {"dim", 0}}).status, 400);

  Reply list = a.get("/v1/collections");
  ASSERT_EQ(list.status, 200);
  std::map<std::string, json> by_name;
  for (const auto& c : list.body["collections"]) by_name[c["name"]] = c;
  ASSERT_TRUE(by_name.count("default"));  // created at start with --dim
  EXPECT_EQ(by_name["default"]["dim"], kDim);
  EXPECT_EQ(by_name["default"]["index"], "flat");
  ASSERT_TRUE(by_name.count("staff"));
  for (const char* field : {"name", "dim", "index", "effective_index", "effective_sample_index", "persons", "samples"}) {
    EXPECT_TRUE(by_name["staff"].contains(field)) << field;
  }
  EXPECT_EQ(a.get("/health").body["collections"], by_name.size());
}

TEST_F(ServeApi, EnrolSearchListGetDeleteAgainstBruteForce) {
  Api a = api();
  ASSERT_EQ(a.post("/v1/collections", {{"name", "bf"}, {"dim", kDim}}).status, 201);
  std::mt19937 rng(11);
  std::map<std::string, std::vector<std::vector<float>>> samples;
  for (int p = 0; p < 12; ++p) {
    const std::string name = "person " + std::to_string(p);
    for (int s = 0; s < 1 + p % 3; ++s) {
      const std::vector<float> e = random_unit(rng);
      json body{{"embedding", e}};
      if (s == 0) body["metadata"] = {{"team", p % 2 ? "odd" : "even"}};
      Reply r = a.post(persons("bf") + "/" + url_encode(name) + "/faces", body);
      ASSERT_EQ(r.status, 201) << r.text;
      EXPECT_EQ(r.body["person"], name);
      EXPECT_EQ(r.body["created"], s == 0);
      EXPECT_EQ(r.body["samples"], s + 1);
      EXPECT_GT(r.body["sample_id"].get<int64_t>(), 0);
      samples[name].push_back(e);
    }
  }
  // Reference: a person's template is the normalised mean of its normalised samples.
  std::map<std::string, std::vector<float>> templates;
  for (const auto& [name, list] : samples) {
    std::vector<double> mean(kDim, 0);
    for (const auto& e : list) {
      double n = 0;
      for (float x : e) n += double(x) * x;
      for (int i = 0; i < kDim; ++i) mean[i] += e[i] / std::sqrt(n);
    }
    templates[name] = std::vector<float>(mean.begin(), mean.end());
  }
  for (int q = 0; q < 5; ++q) {
    const std::vector<float> query = random_unit(rng);
    std::vector<std::pair<double, std::string>> expected;
    for (const auto& [name, t] : templates) expected.push_back({cosine(query, t), name});
    std::sort(expected.rbegin(), expected.rend());
    Reply r = a.post("/v1/collections/bf/search", {{"embedding", query}, {"k", 4}, {"threshold", -1}});
    ASSERT_EQ(r.status, 200) << r.text;
    ASSERT_EQ(r.body["matches"].size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(r.body["matches"][i]["person"], expected[i].second);
      EXPECT_NEAR(r.body["matches"][i]["score"].get<double>(), expected[i].first, 1e-5);
    }
    // The default threshold (--threshold 0.3) drops weaker matches.
    Reply thresholded = a.post("/v1/collections/bf/search", {{"embedding", query}, {"k", 12}});
    size_t above = 0;
    for (const auto& [score, name] : expected) above += score >= 0.3;
    EXPECT_EQ(thresholded.body["matches"].size(), above);
  }
  // A batch answers each query as the single search does, in order; a bad member is named.
  {
    std::vector<std::vector<float>> batch;
    for (int q = 0; q < 3; ++q) batch.push_back(random_unit(rng));
    Reply all = a.post("/v1/collections/bf/search", {{"embeddings", batch}, {"k", 3}, {"threshold", -1}});
    ASSERT_EQ(all.status, 200) << all.text;
    ASSERT_EQ(all.body["results"].size(), 3u);
    for (size_t q = 0; q < batch.size(); ++q) {
      Reply one = a.post("/v1/collections/bf/search", {{"embedding", batch[q]}, {"k", 3}, {"threshold", -1}});
      EXPECT_EQ(all.body["results"][q]["matches"], one.body["matches"]) << q;
    }
    batch[1].pop_back();
    Reply bad = a.post("/v1/collections/bf/search", {{"embeddings", batch}});
    EXPECT_EQ(bad.status, 400);
    EXPECT_NE(bad.text.find("embeddings[1]"), std::string::npos) << bad.text;
  }
  // Over samples: the best sample of all, with its id.
  const std::vector<float>& probe = samples["person 5"][1];
  Reply over = a.post("/v1/collections/bf/search", {{"embedding", probe}, {"k", 1}, {"over", "samples"}});
  ASSERT_EQ(over.status, 200) << over.text;
  EXPECT_EQ(over.body["matches"][0]["person"], "person 5");
  EXPECT_NEAR(over.body["matches"][0]["score"].get<double>(), 1.0, 1e-5);
  EXPECT_GT(over.body["matches"][0]["sample_id"].get<int64_t>(), 0);

  // Verify against an enrolled person = cosine with its template.
  Reply v = a.post("/v1/verify", {{"collection", "bf"}, {"person", "person 4"}, {"embedding", probe}});
  ASSERT_EQ(v.status, 200) << v.text;
  const double expected_similarity = cosine(probe, templates["person 4"]);
  EXPECT_NEAR(v.body["similarity"].get<double>(), expected_similarity, 1e-5);
  EXPECT_EQ(v.body["same"], expected_similarity >= 0.3);
  EXPECT_EQ(v.body["person"], "person 4");
  Reply v_self =
      a.post("/v1/verify",
             {{"collection", "bf"}, {"person", "person 0"}, {"embedding", samples["person 0"][0]}, {"threshold", 0.9}});
  EXPECT_EQ(v_self.body["same"], true);
  EXPECT_NEAR(v_self.body["threshold"].get<double>(), 0.9, 1e-6);

  // Pages of persons, by name.
  Reply page1 = a.get(persons("bf") + "?offset=0&limit=5"), page3 = a.get(persons("bf") + "?offset=10&limit=5");
  ASSERT_EQ(page1.status, 200) << page1.text;
  EXPECT_EQ(page1.body["total"], 12);
  EXPECT_EQ(page1.body["persons"].size(), 5u);
  EXPECT_EQ(page3.body["persons"].size(), 2u);
  std::vector<std::string> names;
  for (int offset = 0; offset < 12; offset += 5) {
    const Reply page = a.get(persons("bf") + "?offset=" + std::to_string(offset) + "&limit=5");
    for (const auto& p : page.body["persons"]) {
      names.push_back(p["name"]);
      EXPECT_EQ(p["samples"], samples[p["name"]].size());
    }
  }
  std::vector<std::string> expected_names;
  for (const auto& [name, list] : samples) expected_names.push_back(name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, expected_names);
  EXPECT_EQ(a.get(persons("bf") + "?limit=0").status, 400);
  EXPECT_EQ(a.get(persons("bf") + "?offset=-1").status, 400);
  EXPECT_EQ(a.get(persons("bf") + "?limit=ten").status, 400);

  Reply person = a.get(persons("bf") + "/" + url_encode("person 2"));
  ASSERT_EQ(person.status, 200) << person.text;
  EXPECT_EQ(person.body["name"], "person 2");
  EXPECT_EQ(person.body["metadata"]["team"], "even");
  ASSERT_EQ(person.body["samples"].size(), 3u);
  EXPECT_EQ(person.body["samples"][0]["image_sha256"], "");  // enrolled by embedding

  Reply deleted = a.del(persons("bf") + "/" + url_encode("person 2"));
  ASSERT_EQ(deleted.status, 200) << deleted.text;
  EXPECT_EQ(deleted.body["deleted"], true);
  EXPECT_EQ(a.get(persons("bf") + "/" + url_encode("person 2")).status, 404);
  EXPECT_EQ(a.del(persons("bf") + "/" + url_encode("person 2")).status, 404);
  EXPECT_EQ(a.get(persons("bf")).body["total"], 11);
  Reply after =
      a.post("/v1/collections/bf/search", {{"embedding", samples["person 2"][0]}, {"k", 12}, {"threshold", -1}});
  for (const auto& m : after.body["matches"]) EXPECT_NE(m["person"], "person 2");
}

TEST_F(ServeApi, BadRequestsGetClearErrors) {
  Api a = api();
  const std::string faces = persons("default") + "/alice/faces";
  struct Case {
    std::string what;
    Reply reply;
    int status;
    std::string message;  // a piece the error must hold
  };
  const std::vector<float> e(kDim, 0.5f);
  std::vector<Case> cases = {
      {"malformed JSON", a.post_raw(faces, "{\"embedding\": [1, 2"), 400, "not valid JSON"},
      {"empty body", a.post_raw(faces, ""), 400, "empty"},
      {"not an object", a.post_raw(faces, "[1,2,3]"), 400, "expected a JSON object"},
      {"neither image nor embedding", a.post(faces, json::object()), 400, "\"image\" or \"embedding\""},
      {"both", a.post(faces, {{"embedding", e}, {"image", "AAAA"}}), 400, "exactly one"},
      {"wrong embedding length", a.post(faces, {{"embedding", std::vector<float>(kDim + 1, 0.5f)}}), 400,
       "expected " + std::to_string(kDim) + " numbers"},
      {"embedding of strings", a.post(faces, {{"embedding", std::vector<std::string>(kDim, "1")}}), 400,
       "expected a number"},
      {"embedding not an array", a.post(faces, {{"embedding", "1,2,3"}}), 400, "expected an array"},
      {"metadata not an object", a.post(faces, {{"embedding", e}, {"metadata", "x"}}), 400, "\"metadata\""},
      {"k out of range", a.post("/v1/collections/default/search", {{"embedding", e}, {"k", 0}}), 400, "\"k\""},
      {"k not an integer", a.post("/v1/collections/default/search", {{"embedding", e}, {"k", "5"}}), 400, "\"k\""},
      {"bad over", a.post("/v1/collections/default/search", {{"embedding", e}, {"over", "faces"}}), 400, "\"over\""},
      {"threshold out of range", a.post("/v1/collections/default/search", {{"embedding", e}, {"threshold", 2}}), 400,
       "\"threshold\""},
      {"missing collection name", a.post("/v1/collections", {{"dim", 4}}), 400, "missing field \"name\""},
      {"verify without anything", a.post("/v1/verify", json::object()), 400, "image_a"},
      {"image without models", a.post(faces, {{"image", base64_encode("not an image")}}), 422, "without face models"},
      {"detect without models", a.post("/v1/detect", {{"image", base64_encode("x")}}), 422, "without face models"},
      {"unknown route", a.get("/v2/nothing"), 404, "no route"},
      {"unknown collection", a.post("/v1/collections/nope/search", {{"embedding", e}}), 404, "collection \"nope\""},
      {"unknown collection list", a.get(persons("nope")), 404, "collection \"nope\""},
      {"unknown person", a.get(persons("default") + "/nobody"), 404, "person \"nobody\""},
      {"unknown person delete", a.del(persons("default") + "/nobody"), 404, "person \"nobody\""},
      {"verify unknown person",
       a.post("/v1/verify", {{"collection", "default"}, {"person", "nobody"}, {"embedding", e}}), 404,
       "person \"nobody\""},
      {"wrong method", a.del("/v1/collections"), 405, "allowed: GET, POST"},
      {"bad percent escape", a.get(persons("default") + "/%zz"), 400, "percent"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.reply.status, c.status) << c.what << ": " << c.reply.text;
    EXPECT_NE(c.reply.error().find(c.message), std::string::npos) << c.what << ": " << c.reply.text;
    EXPECT_NE(c.reply.headers.find("Content-Type"), c.reply.headers.end()) << c.what;
  }
  // A body over --max-body-mb is refused from its Content-Length: the server answers 413 and closes
  // without reading the body, so a client still writing it may see the connection reset instead of
  // the answer (a race under load, seen once in a parallel ctest run): retried on a fresh connection
  // until the answer is read, and no other status accepted.
  Reply too_large;
  for (int attempt = 0; attempt < 10 && too_large.status == 0; ++attempt)
    too_large = api().post_raw(faces, std::string(1536 * 1024, ' '));
  EXPECT_EQ(too_large.status, 413) << too_large.text;
  EXPECT_NE(too_large.error().find("too large"), std::string::npos) << too_large.text;
  // Nothing of the above was stored.
  EXPECT_EQ(a.get(persons("default") + "/alice").status, 404);

  // A body without a length (chunked) could grow past any limit: refused before it is read. The
  // server answers 411 and closes at once, so a client still writing its chunks may see the
  // connection reset instead of the answer (a race under load): retry until the 411 is read, and
  // never accept any other status.
  httplib::Client raw("127.0.0.1", server_->port());
  auto post_chunked = [&] {
    return raw.Post(
        faces.c_str(),
        [](size_t, httplib::DataSink& sink) {
          sink.write("{}", 2);
          sink.done();
          return true;
        },
        "application/json");
  };
  httplib::Result chunked = post_chunked();
  for (int attempt = 1; attempt < 10 && !chunked; ++attempt) chunked = post_chunked();
  ASSERT_TRUE(chunked);
  EXPECT_EQ(chunked->status, 411);
  EXPECT_NE(chunked->body.find("Content-Length"), std::string::npos) << chunked->body;
  // A very long path (a 6000-byte name) is a 400, not a crash of the path matcher.
  Reply long_name = a.get(persons("default") + "/" + std::string(6000, 'x'));
  EXPECT_EQ(long_name.status, 400) << long_name.text;
  EXPECT_NE(long_name.error().find("longer than 128 bytes"), std::string::npos) << long_name.text;
}

TEST_F(ServeApi, MetricsCountRequestsPerRoutePattern) {
  Api a = api();
  ASSERT_EQ(a.post(persons("default") + "/m1/faces", {{"embedding", std::vector<float>(kDim, 1.0f)}}).status, 201);
  const json before = a.get("/metrics").body;
  const std::string search = "POST /v1/collections/{c}/search";
  ASSERT_TRUE(before["routes"].contains(search)) << before.dump();
  for (int i = 0; i < 7; ++i) {
    ASSERT_EQ(a.post("/v1/collections/default/search", {{"embedding", std::vector<float>(kDim, 1.0f)}}).status, 200);
  }
  EXPECT_EQ(a.post("/v1/collections/default/search", {{"embedding", std::vector<float>(3, 1.0f)}}).status, 400);
  EXPECT_EQ(a.get("/v2/unknown").status, 404);
  const json after = a.get("/metrics").body;
  EXPECT_EQ(after["routes"][search]["count"].get<int>() - before["routes"][search]["count"].get<int>(), 8);
  EXPECT_EQ(after["routes"][search]["errors"].get<int>() - before["routes"][search]["errors"].get<int>(), 1);
  // 8 searches, the 404 and the first /metrics itself.
  EXPECT_EQ(after["requests_total"].get<int>() - before["requests_total"].get<int>(), 10);
  EXPECT_EQ(after["errors_total"].get<int>() - before["errors_total"].get<int>(), 2);
  const json& latency = after["routes"][search]["latency_ms"];
  EXPECT_GT(latency["max"].get<double>(), 0);
  EXPECT_LE(latency["p50"].get<double>(), latency["p90"].get<double>());
  EXPECT_LE(latency["p90"].get<double>(), latency["p99"].get<double>());
  EXPECT_LE(latency["p99"].get<double>(), latency["max"].get<double>());
  EXPECT_GE(after["uptime_s"].get<double>(), before["uptime_s"].get<double>());
  EXPECT_EQ(after["in_flight"], 0);
  // Routes are keyed by pattern, never by the concrete names.
  for (const auto& [key, value] : after["routes"].items()) EXPECT_EQ(key.find("default"), std::string::npos) << key;
}

TEST_F(ServeApi, OpenApiAndWebPageAreServed) {
  Api a = api();
  Reply doc = a.get("/openapi.json");
  ASSERT_EQ(doc.status, 200);
  ASSERT_TRUE(doc.body.is_object()) << "not JSON: " << doc.text.substr(0, 200);
  EXPECT_EQ(doc.body["openapi"], "3.0.3");
  for (const auto& [path, method] :
       std::vector<std::pair<std::string, std::string>>{{"/v1/collections/{c}/persons/{p}/faces", "post"},
                                                        {"/v1/collections/{c}/search", "post"},
                                                        {"/v1/collections/{c}/persons/{p}", "delete"},
                                                        {"/v1/verify", "post"},
                                                        {"/v1/detect", "post"},
                                                        {"/metrics", "get"}}) {
    EXPECT_TRUE(doc.body["paths"][path].contains(method)) << method << " " << path;
  }
  Reply page = a.get("/");
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.headers.find("Content-Type")->second.find("text/html"), std::string::npos);
  EXPECT_NE(page.text.find("<html"), std::string::npos);
}

}  // namespace
}  // namespace arcforge::serve::test
