// Crash safety, the service's key promise: a 201 for an enrolment means it is on disk. Four
// clients enrol distinct persons while the server is SIGKILLed at random moments and restarted on
// the same database. Afterwards every acknowledged person is there and found first by its own
// embedding, and nothing is there that no client tried to enrol.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include "serve_test_support.hpp"

namespace arcforge::serve::test {
namespace {

constexpr int kDim = 64;
constexpr int kClients = 4;
constexpr int kKills = 3;
constexpr int kMinAcknowledgedPerInterval = 600;  // a few thousand enrolments in all

struct Ledger {
  std::mutex mutex;
  std::set<std::string> attempted;                         // sent, answer or not
  std::map<std::string, std::vector<float>> acknowledged;  // a 201 came back
  std::vector<std::string> unexpected;                     // any other HTTP answer
  std::atomic<size_t> failed{0};                           // no answer at all
};

void client_loop(int id, const std::atomic<int>& port, const std::atomic<bool>& stop, Ledger& ledger) {
  std::mt19937 rng(1000 + id);
  std::normal_distribution<float> normal;
  int current_port = 0;
  std::unique_ptr<Api> api;
  for (int n = 0; !stop; ++n) {
    if (port != current_port) {
      current_port = port;
      api = std::make_unique<Api>(current_port);
    }
    // Built piece by piece: GCC 12 warns (-Wrestrict, a false positive) on "c" + to_string(...).
    std::string name = "c";
    name += std::to_string(id);
    name += '-';
    name += std::to_string(n);
    std::vector<float> e(kDim);
    for (auto& x : e) x = normal(rng);
    {
      std::lock_guard<std::mutex> lock(ledger.mutex);
      ledger.attempted.insert(name);
    }
    const Reply r = api->post("/v1/collections/default/persons/" + name + "/faces", {{"embedding", e}});
    if (r.status == 201) {
      std::lock_guard<std::mutex> lock(ledger.mutex);
      ledger.acknowledged[name] = e;
    } else if (r.status == 0) {
      // No answer: the server died. The outcome is unknown, so the name is never reused. Wait for
      // the restart (a new port) rather than burn names against a dead port.
      ++ledger.failed;
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (port == current_port && !stop && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    } else {
      std::lock_guard<std::mutex> lock(ledger.mutex);
      ledger.unexpected.push_back(name + ": " + std::to_string(r.status) + " " + r.text);
    }
  }
}

size_t acknowledged_count(Ledger& ledger) {
  std::lock_guard<std::mutex> lock(ledger.mutex);
  return ledger.acknowledged.size();
}

TEST(ServeCrash, AcknowledgedEnrolmentsSurviveSigkill) {
  ScratchDir scratch;
  const std::vector<std::string> args = {"--db", scratch.file("crash.db"), "--dim", std::to_string(kDim)};
  ServerProcess server;
  server.start(args, scratch.file("port"), scratch.file("server.log"));
  std::atomic<int> port{server.port()};
  std::atomic<bool> stop{false};
  Ledger ledger;
  std::vector<std::thread> clients;
  for (int id = 0; id < kClients; ++id)
    clients.emplace_back(client_loop, id, std::cref(port), std::cref(stop), std::ref(ledger));

  std::mt19937 rng(42);
  std::uniform_int_distribution<int> interval_ms(300, 1500);
  int kills = 0;
  for (; kills < kKills; ++kills) {
    // A random moment, but late enough that a fair number of enrolments went through.
    const size_t target = acknowledged_count(ledger) + kMinAcknowledgedPerInterval;
    const auto earliest = std::chrono::steady_clock::now() + std::chrono::milliseconds(interval_ms(rng));
    const auto latest = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < latest &&
           (std::chrono::steady_clock::now() < earliest || acknowledged_count(ledger) < target)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    server.kill_now();  // SIGKILL: no clean-up of any kind
    server.start(args, scratch.file("port"), scratch.file("server.log"));
    port = server.port();
  }
  stop = true;
  for (auto& t : clients) t.join();

  ASSERT_TRUE(ledger.unexpected.empty()) << ledger.unexpected.size() << " unexpected answers, e.g. "
                                         << ledger.unexpected.front();
  const size_t attempted = ledger.attempted.size(), acknowledged = ledger.acknowledged.size();
  EXPECT_GE(acknowledged, static_cast<size_t>(kKills * kMinAcknowledgedPerInterval));
  RecordProperty("attempted", static_cast<int>(attempted));
  RecordProperty("acknowledged", static_cast<int>(acknowledged));
  std::printf("crash test: %zu attempted, %zu acknowledged, %zu without an answer, %d SIGKILLs\n", attempted,
              acknowledged, ledger.failed.load(), kills);

  // After the last restart: what is stored, page by page.
  Api api(server.port());
  std::set<std::string> present;
  for (int offset = 0;; offset += 1000) {
    const Reply page = api.get("/v1/collections/default/persons?limit=1000&offset=" + std::to_string(offset));
    ASSERT_EQ(page.status, 200) << page.text;
    for (const auto& p : page.body["persons"]) {
      present.insert(p["name"].get<std::string>());
      EXPECT_EQ(p["samples"], 1) << p.dump();  // a name is enrolled once, never retried
    }
    if (page.body["persons"].size() < 1000) break;
  }
  const Reply collections = api.get("/v1/collections");
  ASSERT_EQ(collections.status, 200);
  EXPECT_EQ(collections.body["collections"][0]["persons"], present.size());
  EXPECT_EQ(collections.body["collections"][0]["samples"], present.size());

  size_t lost = 0, invented = 0;
  for (const auto& [name, e] : ledger.acknowledged) lost += !present.count(name);
  for (const auto& name : present) invented += !ledger.attempted.count(name);
  EXPECT_EQ(lost, 0u) << "acknowledged enrolments missing after SIGKILL";
  EXPECT_EQ(invented, 0u) << "persons no client sent";
  // Stored but never acknowledged: only requests whose answer the kill cut off.
  EXPECT_GE(present.size(), acknowledged);
  EXPECT_LE(present.size() - acknowledged, ledger.failed.load());

  // Each acknowledged embedding finds its own person first (the index was rebuilt from disk).
  std::vector<std::pair<std::string, std::vector<float>>> checks(ledger.acknowledged.begin(),
                                                                 ledger.acknowledged.end());
  std::atomic<size_t> wrong{0};
  std::vector<std::thread> searchers;
  for (int t = 0; t < kClients; ++t) {
    searchers.emplace_back([&, t] {
      Api a(server.port());
      for (size_t i = t; i < checks.size(); i += kClients) {
        const Reply r = a.post("/v1/collections/default/search", {{"embedding", checks[i].second}, {"k", 1}});
        if (r.status != 200 || r.body["matches"].empty() || r.body["matches"][0]["person"] != checks[i].first ||
            r.body["matches"][0]["score"].get<double>() <= 0.99) {
          if (++wrong <= 3) ADD_FAILURE() << checks[i].first << ": " << r.text;
        }
      }
    });
  }
  for (auto& t : searchers) t.join();
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_EQ(server.terminate(), 0);
}

}  // namespace
}  // namespace arcforge::serve::test
