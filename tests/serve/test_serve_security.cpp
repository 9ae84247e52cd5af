// Security of a real `arcforge serve`: bearer tokens (file and environment), refusing to listen on
// the network without one, names that look like paths or hold control characters, and a server
// that writes nothing outside its database's folder.
#include <gtest/gtest.h>

#include <set>

#include "serve_test_support.hpp"

namespace arcforge::serve::test {
namespace {

namespace fs = std::filesystem;

// Every file under `root`, relative, sorted.
std::set<std::string> tree(const fs::path& root) {
  std::set<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    files.insert(fs::relative(entry.path(), root).string());
  return files;
}

json embedding(float first) {
  std::vector<float> e(16, 0.1f);
  e[0] = first;
  return e;
}

TEST(ServeSecurity, TokenFromFileGuardsEveryApiRoute) {
  ScratchDir scratch;
  write_text(scratch.file("token"), "  s3cret-token-123\nignored second line\n");
  ServerProcess server;
  server.start({"--db", scratch.file("g.db"), "--dim", "16", "--token-file", scratch.file("token")},
               scratch.file("port"), scratch.file("log"));
  {
    Api anonymous(server.port()), wrong(server.port(), "s3cret-token-12"), right(server.port(), "s3cret-token-123");
    const std::string faces = "/v1/collections/default/persons/p/faces";
    // Open routes: the page, health and the API description.
    for (const char* path : {"/", "/health", "/openapi.json"}) EXPECT_EQ(anonymous.get(path).status, 200) << path;
    // Everything else needs the token, and a wrong one is as good as none.
    for (Api* client : {&anonymous, &wrong}) {
      std::vector<Reply> replies = {client->get("/metrics"),
                                    client->get("/v1/collections"),
                                    client->post("/v1/collections", {{"name", "x"}}),
                                    client->post(faces, {{"embedding", embedding(1)}}),
                                    client->post("/v1/collections/default/search", {{"embedding", embedding(1)}}),
                                    client->get("/v1/collections/default/persons"),
                                    client->get("/v1/collections/default/persons/p"),
                                    client->del("/v1/collections/default/persons/p"),
                                    client->post("/v1/verify", json::object()),
                                    client->post("/v1/detect", json::object())};
      for (const Reply& r : replies) {
        EXPECT_EQ(r.status, 401) << r.text;
        EXPECT_NE(r.error().find("token"), std::string::npos) << r.text;
        ASSERT_NE(r.headers.find("WWW-Authenticate"), r.headers.end());
        EXPECT_EQ(r.headers.find("WWW-Authenticate")->second, "Bearer");
      }
    }
    EXPECT_EQ(right.get("/v1/collections/default/persons").body["total"], 0);  // nothing got through
    ASSERT_EQ(right.post(faces, {{"embedding", embedding(1)}}).status, 201);
    EXPECT_EQ(right.get("/metrics").status, 200);
    EXPECT_EQ(right.post("/v1/collections/default/search", {{"embedding", embedding(1)}}).body["matches"][0]["person"],
              "p");
  }  // clients closed: no idle keep-alive connection for the shutdown to wait out
  EXPECT_EQ(server.terminate(), 0);
}

TEST(ServeSecurity, TokenFromEnvironmentAndNetworkHostRules) {
  ScratchDir scratch;
  {
    ServerProcess server;
    server.start({"--db", scratch.file("g.db"), "--dim", "16"}, scratch.file("port"), scratch.file("log"),
                 {"ARCFORGE_TOKEN=from-env"});
    EXPECT_EQ(Api(server.port()).get("/v1/collections").status, 401);
    EXPECT_EQ(Api(server.port(), "wrong").get("/v1/collections").status, 401);
    EXPECT_EQ(Api(server.port(), "from-env").get("/v1/collections").status, 200);
    EXPECT_EQ(server.terminate(), 0);
  }
  // A network address without a token: refused before anything is created.
  int status = 0;
  std::string out = pipeline::test::run_command("env -u ARCFORGE_TOKEN " + std::string(ARCFORGE_CLI) +
                                                    " serve --host 0.0.0.0 --port 0 --db " + scratch.file("net.db"),
                                                &status);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("token"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(scratch.file("net.db")));
  // An empty token file is refused as well.
  write_text(scratch.file("empty"), "\n");
  out = pipeline::test::run_command(std::string(ARCFORGE_CLI) + " serve --port 0 --token-file " +
                                        scratch.file("empty") + " --db " + scratch.file("net.db"),
                                    &status);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("no token"), std::string::npos) << out;
  // With a token, a network address is allowed.
  ServerProcess networked;
  networked.start({"--db", scratch.file("net.db"), "--dim", "16", "--host", "0.0.0.0"}, scratch.file("port2"),
                  scratch.file("log2"), {"ARCFORGE_TOKEN=t"});
  EXPECT_EQ(Api(networked.port(), "t").get("/v1/collections").status, 200);
  EXPECT_EQ(networked.terminate(), 0);
}

TEST(ServeSecurity, NamesAreKeysNeverPathsAndTheServerWritesOnlyItsDatabase) {
  ScratchDir scratch;
  // db/ holds the database; run/ what the test writes; cwd/ is the server's working directory.
  for (const char* dir : {"db", "run", "cwd"}) fs::create_directories(scratch.path() / dir);
  ServerProcess server;
  server.start({"--db", (scratch.path() / "db" / "g.db").string(), "--dim", "16"},
               (scratch.path() / "run" / "port").string(), (scratch.path() / "run" / "log").string(), {},
               (scratch.path() / "cwd").string());
  Api a(server.port());
  const std::string persons = "/v1/collections/default/persons/";
  const std::vector<std::string> names = {"../../etc/passwd",
                                          "a/b",
                                          "%2e%2e",
                                          "..",
                                          "/",
                                          "\\..\\x",
                                          "name with spaces",
                                          "ünïcödé 名前",
                                          std::string(128, 'n'),
                                          "<script>alert(1)</script>"};
  float first = 1;
  for (const std::string& name : names) {
    Reply r = a.post(persons + url_encode(name) + "/faces", {{"embedding", embedding(first += 1)}});
    ASSERT_EQ(r.status, 201) << name << ": " << r.text;
    EXPECT_EQ(r.body["person"], name);
    Reply got = a.get(persons + url_encode(name));
    ASSERT_EQ(got.status, 200) << name << ": " << got.text;
    EXPECT_EQ(got.body["name"], name);
  }
  // Sent unencoded, a ".." segment is still just the name "..".
  Reply raw = a.get(persons + "..");
  ASSERT_EQ(raw.status, 200) << raw.text;
  EXPECT_EQ(raw.body["name"], "..");
  // A "%2e%2e" segment decodes to ".." too; "%252e%252e" is the literal "%2e%2e".
  EXPECT_EQ(a.get(persons + "%2e%2e").body["name"], "..");
  EXPECT_EQ(a.get(persons + "%252e%252e").body["name"], "%2e%2e");
  Reply list = a.get("/v1/collections/default/persons?limit=100");
  std::set<std::string> listed;
  for (const auto& p : list.body["persons"]) listed.insert(p["name"]);
  EXPECT_EQ(listed, std::set<std::string>(names.begin(), names.end()));

  // Control characters and over-long names are refused (and not stored).
  for (const std::string& bad : {std::string("a\nb"), std::string("nul\0x", 5), std::string("esc\x1b"),
                                 std::string("tab\there"), std::string(129, 'n'), std::string()}) {
    Reply r = a.post(persons + url_encode(bad) + "/faces", {{"embedding", embedding(0.5)}});
    EXPECT_EQ(r.status, 400) << url_encode(bad) << ": " << r.text;
    EXPECT_NE(r.error().find("name"), std::string::npos) << r.text;
  }
  EXPECT_EQ(a.post("/v1/collections", {{"name", "bad\x01name"}}).status, 400);
  EXPECT_EQ(a.post("/v1/collections/%0A/search", {{"embedding", embedding(1)}}).status, 400);
  EXPECT_EQ(a.get("/v1/collections/default/persons").body["total"], names.size());
  EXPECT_EQ(a.get("/health").status, 200);
  a.close();
  EXPECT_EQ(server.terminate(), 0);

  // Nothing but the database (and SQLite's -wal/-shm) was written, anywhere.
  for (const auto& file : tree(scratch.path() / "db")) {
    EXPECT_TRUE(file == "g.db" || file == "g.db-wal" || file == "g.db-shm") << file;
  }
  EXPECT_TRUE(tree(scratch.path() / "cwd").empty());
  EXPECT_EQ(tree(scratch.path() / "run"), (std::set<std::string>{"log", "port"}));
  std::set<std::string> everything = tree(scratch.path());
  everything.erase("db/g.db-wal");
  everything.erase("db/g.db-shm");
  EXPECT_EQ(everything, (std::set<std::string>{"db", "run", "cwd", "db/g.db", "run/log", "run/port"}));
}

}  // namespace
}  // namespace arcforge::serve::test
