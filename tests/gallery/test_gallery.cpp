// Gallery: enrol/search/verify/remove against a brute-force reference in double precision,
// persistence across reopen, schema migrations, bad files, export/import, concurrency (verifies and
// searches that wait for no write nor ivfpq training) and crash safety (a child process SIGKILLed
// while enrolling), and the sample a photo's face gives.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "arcforge/gallery/face_sample.hpp"
#include "arcforge/gallery/gallery.hpp"
#include "busy_observer.hpp"
#include "pipeline/shared_data.hpp"
#include "schema.hpp"
#include "sqlite_db.hpp"
#include "training_observer.hpp"

namespace arcforge::gallery {
namespace {

using pipeline::test::ScratchDir;

constexpr int kDim = 64;

std::vector<float> random_unit(std::mt19937& rng, int dim = kDim) {
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> v(dim);
  double s = 0;
  for (float& x : v) {
    x = n(rng);
    s += double(x) * x;
  }
  for (float& x : v) x = float(x / std::sqrt(s));
  return v;
}

std::vector<float> noisy(const std::vector<float>& centre, std::mt19937& rng, float sigma) {
  std::normal_distribution<float> n(0.f, sigma);
  std::vector<float> v = centre;
  for (float& x : v) x += n(rng);
  return v;
}

std::vector<double> normalised(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[i] / std::sqrt(s);
  return out;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

SampleInput sample(std::vector<float> e, const std::string& sha = "") {
  SampleInput s;
  s.embedding = std::move(e);
  s.image_sha256 = sha;
  return s;
}

// The reference: persons with raw sample embeddings; templates and scores in double precision.
struct Reference {
  std::map<std::string, std::vector<std::vector<float>>> persons;

  std::vector<double> template_of(const std::string& name) const {
    std::vector<double> sum(kDim, 0.0);
    for (const auto& s : persons.at(name)) {
      const auto n = normalised(s);
      for (int i = 0; i < kDim; ++i) sum[i] += n[i];
    }
    double norm = 0;
    for (double x : sum) norm += x * x;
    for (double& x : sum) x /= std::sqrt(norm);
    return sum;
  }
  std::vector<std::pair<double, std::string>> ranking(const std::vector<float>& query) const {
    const auto q = normalised(query);
    std::vector<std::pair<double, std::string>> out;
    for (const auto& [name, samples] : persons) out.emplace_back(dot(template_of(name), q), name);
    std::sort(out.rbegin(), out.rend());
    return out;
  }
};

void expect_matches_reference(const Gallery& g, const Reference& ref, const std::vector<float>& query, int k) {
  const auto got = g.search("c", query, SearchOptions{k, -1.0f, SearchOver::Persons});
  const auto want = ref.ranking(query);
  ASSERT_EQ(got.size(), std::min<size_t>(k, want.size()));
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].person, want[i].second) << "rank " << i;
    EXPECT_NEAR(got[i].score, want[i].first, 2e-5) << "rank " << i;
  }
}

TEST(Gallery, EnrollSearchVerifyMatchBruteForce) {
  ScratchDir dir;
  Gallery g = Gallery::open(dir.file("g.db"));
  g.create_collection("c", kDim);
  std::mt19937 rng(1);
  Reference ref;
  for (int p = 0; p < 40; ++p) {
    const auto centre = random_unit(rng);
    const std::string name = "person" + std::to_string(p);
    std::vector<SampleInput> samples;
    for (int s = 0; s < 1 + p % 3; ++s) {
      auto e = noisy(centre, rng, 0.05f);
      ref.persons[name].push_back(e);
      samples.push_back(sample(e));
    }
    const EnrollResult r = g.enroll("c", name, samples);
    EXPECT_TRUE(r.created);
    EXPECT_EQ(r.samples, static_cast<int64_t>(samples.size()));
  }
  // A second enrolment adds to the person (one more sample, template moves).
  auto extra = random_unit(rng);
  ref.persons["person0"].push_back(extra);
  const EnrollResult again = g.enroll("c", "person0", {sample(extra)});
  EXPECT_FALSE(again.created);
  EXPECT_EQ(again.samples, 2);

  for (int q = 0; q < 20; ++q) expect_matches_reference(g, ref, random_unit(rng), 5);
  // Noisy copies of a sample find its person first.
  for (int p = 0; p < 40; p += 7) {
    const std::string name = "person" + std::to_string(p);
    const auto matches = g.search("c", noisy(ref.persons[name].front(), rng, 0.02f));
    ASSERT_FALSE(matches.empty());
    EXPECT_EQ(matches.front().person, name);
  }
  // verify = cosine with the template.
  const auto q = random_unit(rng);
  EXPECT_NEAR(g.verify("c", "person3", q), dot(ref.template_of("person3"), normalised(q)), 1e-5);
  EXPECT_THROW(g.verify("c", "nobody", q), InputError);

  // Sample search: every sample is its own entry; the top hit of a sample is itself.
  const auto& s0 = ref.persons["person5"][0];
  const auto by_sample = g.search("c", s0, SearchOptions{3, -1.0f, SearchOver::Samples});
  ASSERT_EQ(by_sample.size(), 3u);
  EXPECT_EQ(by_sample[0].person, "person5");
  EXPECT_NEAR(by_sample[0].score, 1.0, 1e-5);
  EXPECT_NE(by_sample[0].sample_id, 0);

  // Threshold drops weak matches; k bounds the list.
  const auto thresholded = g.search("c", s0, SearchOptions{10, 0.9f, SearchOver::Persons});
  ASSERT_EQ(thresholded.size(), 1u);
  EXPECT_EQ(thresholded[0].person, "person5");

  const CollectionInfo info = g.collection("c");
  EXPECT_EQ(info.persons, 40);
  int64_t total = 0;
  for (const auto& [name, s] : ref.persons) total += static_cast<int64_t>(s.size());
  EXPECT_EQ(info.samples, total);
}

TEST(Gallery, RemovalUpdatesSearchAndTemplates) {
  ScratchDir dir;
  Gallery g = Gallery::open(dir.file("g.db"));
  g.create_collection("c", kDim);
  std::mt19937 rng(2);
  Reference ref;
  for (int p = 0; p < 10; ++p) {
    const std::string name = "p" + std::to_string(p);
    for (int s = 0; s < 2; ++s) ref.persons[name].push_back(random_unit(rng));
    std::vector<SampleInput> samples;
    for (const auto& e : ref.persons[name]) samples.push_back(sample(e));
    g.enroll("c", name, samples);
  }
  EXPECT_TRUE(g.remove_person("c", "p3"));
  EXPECT_FALSE(g.remove_person("c", "p3"));
  ref.persons.erase("p3");
  const auto p4_samples = g.samples("c", "p4");
  ASSERT_EQ(p4_samples.size(), 2u);
  EXPECT_TRUE(g.remove_sample("c", p4_samples[0].id));
  ref.persons["p4"].erase(ref.persons["p4"].begin());
  for (int q = 0; q < 10; ++q) expect_matches_reference(g, ref, random_unit(rng), 10);
  const auto probe = random_unit(rng);
  EXPECT_THROW(g.verify("c", "p3", probe), InputError);
  EXPECT_NEAR(g.verify("c", "p4", probe), dot(ref.template_of("p4"), normalised(probe)), 1e-5);
  // The last sample removed takes the person with it.
  EXPECT_TRUE(g.remove_sample("c", p4_samples[1].id));
  EXPECT_FALSE(g.person("c", "p4").has_value());
  EXPECT_THROW(g.verify("c", "p4", probe), InputError);
  ref.persons.erase("p4");
  expect_matches_reference(g, ref, random_unit(rng), 10);
  EXPECT_EQ(g.persons("c").size(), 8u);
  // Reopening rebuilds the same state from the database.
  const std::string path = g.path();
  const auto query = random_unit(rng);
  const auto before = g.search("c", query, SearchOptions{8});
  g = Gallery::open(path);
  const auto after = g.search("c", query, SearchOptions{8});
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].person, after[i].person);
    EXPECT_NEAR(before[i].score, after[i].score, 1e-6);
  }
  expect_matches_reference(g, ref, query, 10);
}

TEST(Gallery, RejectsBadInputWithoutWriting) {
  ScratchDir dir;
  Gallery g = Gallery::open(dir.file("g.db"));
  g.create_collection("c", kDim);
  std::mt19937 rng(3);
  EXPECT_THROW(g.create_collection("c", kDim), InputError);
  EXPECT_THROW(g.create_collection("", kDim), InputError);
  EXPECT_THROW(g.create_collection("x", 0), InputError);
  EXPECT_THROW(g.enroll("missing", "a", {sample(random_unit(rng))}), InputError);
  EXPECT_THROW(g.enroll("c", "a", {sample(random_unit(rng, kDim + 1))}), InputError);
  EXPECT_THROW(g.enroll("c", "a", {sample(std::vector<float>(kDim, 0.f))}), InputError);
  std::vector<float> nan = random_unit(rng);
  nan[3] = std::nanf("");
  EXPECT_THROW(g.enroll("c", "a", {sample(nan)}), InputError);
  EXPECT_THROW(g.enroll("c", std::string("bad\nname"), {sample(random_unit(rng))}), InputError);
  EXPECT_THROW(g.enroll("c", std::string(129, 'x'), {sample(random_unit(rng))}), InputError);
  EXPECT_THROW(g.enroll("c", "a", {sample(random_unit(rng))}, "[1,2]"), InputError);
  // A batch with one bad sample writes none of it.
  EXPECT_THROW(g.enroll("c", "a", {sample(random_unit(rng)), sample(random_unit(rng, 3))}), InputError);
  EXPECT_TRUE(g.persons("c").empty());
  EXPECT_EQ(g.collection("c").samples, 0);
  // Path-like names are only keys.
  g.enroll("c", "../../etc/passwd", {sample(random_unit(rng))});
  EXPECT_TRUE(g.person("c", "../../etc/passwd").has_value());
  EXPECT_THROW(g.search("c", random_unit(rng), SearchOptions{0}), InputError);
}

TEST(Gallery, OpensOnlyArcforgeGalleries) {
  ScratchDir dir;
  const std::string junk = dir.file("junk.db");
  write_file_atomically(junk, std::string(4096, 'x'));
  try {
    Gallery::open(junk);
    FAIL() << "junk opened";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(junk), std::string::npos) << e.what();
  }
  // Another application's SQLite database.
  const std::string other = dir.file("other.db");
  {
    SqliteDb db(other);
    db.exec("CREATE TABLE t (x INTEGER)");
  }
  EXPECT_THROW(Gallery::open(other), InputError);
  // A gallery from a newer arcforge.
  const std::string newer = dir.file("newer.db");
  Gallery::open(newer);
  {
    SqliteDb db(newer);
    db.exec(("PRAGMA user_version = " + std::to_string(kSchemaVersion + 1)).c_str());
  }
  try {
    Gallery::open(newer);
    FAIL() << "newer schema opened";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST(Gallery, MigratesAnOlderSchemaKeepingItsData) {
  ScratchDir dir;
  const std::string path = dir.file("v1.db");
  std::mt19937 rng(4);
  const auto e = random_unit(rng);
  {
    SqliteDb db(path);
    open_schema(db, 1);  // a gallery as version 1 wrote it
    db.exec(R"(INSERT INTO collections (name, dim, index_spec, created_ms) VALUES ('c', 64, '{"kind":"flat"}', 1))");
    db.exec("INSERT INTO persons (collection_id, name, created_ms) VALUES (1, 'old', 1)");
    Statement insert(db, "INSERT INTO samples (person_id, embedding, created_ms) VALUES (1, ?, 1)");
    insert.bind_blob(1, e.data(), e.size() * sizeof(float)).run();
  }
  Gallery g = Gallery::open(path);
  const auto matches = g.search("c", e);
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_EQ(matches[0].person, "old");
  EXPECT_NEAR(matches[0].score, 1.0, 1e-6);
  SqliteDb db(path);
  Statement version(db, "PRAGMA user_version");
  ASSERT_TRUE(version.step());
  EXPECT_EQ(version.column_int(0), kSchemaVersion);
  Statement index(db, "SELECT count(*) FROM sqlite_master WHERE name = 'samples_by_person_image'");
  ASSERT_TRUE(index.step());
  EXPECT_EQ(index.column_int(0), 1);
  Statement mode(db, "PRAGMA journal_mode");
  ASSERT_TRUE(mode.step());
  EXPECT_EQ(mode.column_text(0), "wal");
}

TEST(Gallery, ExportImportRoundTripsExactly) {
  ScratchDir dir;
  Gallery a = Gallery::open(dir.file("a.db"));
  IndexSpec spec;
  spec.kind = IndexKind::Hnsw;
  a.create_collection("c", kDim, spec);
  a.create_collection("d", 8);
  std::mt19937 rng(5);
  for (int p = 0; p < 6; ++p) {
    SampleInput s = sample(random_unit(rng), "sha" + std::to_string(p));
    s.box = {1.5f, 2.f, 30.f, 40.25f};
    s.quality = 0.75f;
    s.metadata = R"({"file":"x.jpg"})";
    a.enroll("c", "p" + std::to_string(p), {s, sample(random_unit(rng), "other")}, R"({"team":"blue"})");
  }
  a.enroll("d", "small", {sample(random_unit(rng, 8))});
  const std::string file = dir.file("export.json");
  a.export_json(file);

  Gallery b = Gallery::open(dir.file("b.db"));
  EXPECT_EQ(b.import_json(file), 13);
  EXPECT_EQ(b.import_json(file), 0);  // everything already there
  ASSERT_EQ(b.collections().size(), 2u);
  EXPECT_EQ(b.collection("c").index.kind, IndexKind::Hnsw);
  for (int p = 0; p < 6; ++p) {
    const std::string name = "p" + std::to_string(p);
    const auto sa = a.samples("c", name, true), sb = b.samples("c", name, true);
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      EXPECT_EQ(sa[i].embedding, sb[i].embedding);  // bit-exact
      EXPECT_EQ(sa[i].image_sha256, sb[i].image_sha256);
      EXPECT_EQ(sa[i].box, sb[i].box);
      EXPECT_EQ(sa[i].quality, sb[i].quality);
      EXPECT_EQ(sa[i].metadata, sb[i].metadata);
      EXPECT_EQ(sa[i].created_ms, sb[i].created_ms);
    }
    EXPECT_EQ(b.person("c", name)->metadata, R"({"team":"blue"})");
  }
  // A damaged export changes nothing and names the file.
  std::string text = read_file(file);
  const auto at = text.find("\"embedding\": \"") + 14;
  text[at] = '*';
  const std::string bad = dir.file("bad.json");
  write_file_atomically(bad, text);
  Gallery c = Gallery::open(dir.file("c.db"));
  try {
    c.import_json(bad);
    FAIL() << "damaged export imported";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  EXPECT_TRUE(c.collections().empty());
}

TEST(Gallery, ConcurrentWritersAndReaders) {
  ScratchDir dir;
  Gallery g = Gallery::open(dir.file("g.db"));
  g.create_collection("c", kDim);
  std::atomic<bool> stop{false};
  std::atomic<int> searches{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 3; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 rng(100 + w);
      for (int i = 0; i < 30; ++i) g.enroll("c", std::string("w") + std::to_string(w) + "_" + std::to_string(i), {sample(random_unit(rng))});
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937 rng(200 + r);
      while (!stop) {
        const auto m = g.search("c", random_unit(rng), SearchOptions{5});
        ASSERT_LE(m.size(), 5u);
        ++searches;
      }
    });
  }
  for (int w = 0; w < 3; ++w) threads[w].join();
  stop = true;
  for (size_t t = 3; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(g.collection("c").persons, 90);
  EXPECT_EQ(g.persons("c").size(), 90u);
  EXPECT_GT(searches.load(), 0);
}

// Verifies racing enrolments into one person: every answer is the cosine to the template of some
// prefix of its samples (never a mix of two), a thread never sees an older prefix after a newer one,
// and the answer after the last write is the full template. fp32 kinds answer from memory, int8 from
// the database.
TEST(Gallery, VerifiesRacingEnrolmentsSeeWholeTemplates) {
  constexpr int kSamples = 40;
  for (const IndexKind kind : {IndexKind::Flat, IndexKind::Hnsw, IndexKind::Int8}) {
    SCOPED_TRACE(index_kind_name(kind));
    ScratchDir dir;
    Gallery g = Gallery::open(dir.file("g.db"));
    IndexSpec spec;
    spec.kind = kind;
    g.create_collection("c", kDim, spec);
    std::mt19937 rng(9);
    const auto query = random_unit(rng), centre = random_unit(rng);
    Reference ref;
    std::vector<double> want{0.0};  // want[n]: the cosine to the template of the first n samples
    std::vector<std::vector<float>> samples;
    for (int n = 1; n <= kSamples; ++n) {
      samples.push_back(noisy(centre, rng, 0.3f));
      ref.persons["p"].push_back(samples.back());
      want.push_back(dot(ref.template_of("p"), normalised(query)));
    }
    g.enroll("c", "p", {sample(samples[0])});
    std::atomic<bool> written{false};
    std::atomic<int> verifies{0};
    std::vector<std::thread> readers;
    for (int r = 0; r < 3; ++r) {
      readers.emplace_back([&] {
        size_t seen = 1;
        while (!written) {
          const float v = g.verify("c", "p", query);
          size_t n = seen;
          while (n < want.size() && std::abs(want[n] - v) > 2e-5) ++n;
          ASSERT_LT(n, want.size()) << "verify gave " << v << ", the template of no prefix at or after " << seen;
          seen = n;
          ++verifies;
          // A pause between verifies: glibc's shared_mutex prefers readers, and back-to-back ones
          // leave a writer no gap to apply its write.
          std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
      });
    }
    for (int n = 1; n < kSamples; ++n) g.enroll("c", "p", {sample(samples[n])});
    written = true;
    for (auto& t : readers) t.join();
    EXPECT_NEAR(g.verify("c", "p", query), want[kSamples], 2e-5);
    EXPECT_GT(verifies.load(), 0);
  }
}

// A write blocked inside SQLite (another connection holds the write lock) keeps db_mutex. A verify
// against fp32 templates must answer meanwhile. No clock: the busy observer says when the enrol is
// blocked (it fires inside SQLite's busy handler, on the enrol's thread, under db_mutex; the only
// statement running then is the enrol's). The other connection keeps its lock until verify has
// answered, so the enrol can end before that only by giving up (SQLite's 10 s budget): were verify
// to wait for db_mutex, it would answer only once the enrol failed, and the test fails in ~10 s.
TEST(Gallery, VerifyDoesNotWaitForABlockedWrite) {
  ScratchDir dir;
  const std::string path = dir.file("g.db");
  Gallery g = Gallery::open(path);
  g.create_collection("c", kDim);
  std::mt19937 rng(10);
  const auto ann = random_unit(rng), bob = random_unit(rng);
  g.enroll("c", "ann", {sample(ann)});

  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  // m guards the four below; cv signals each change.
  std::mutex m;
  std::condition_variable cv;
  int busy_calls = 0;                // busy handler calls so far, all the enrol's
  bool write_over = false;           // the enrol returned or threw
  bool verify_over = false;          // verify returned or threw
  bool write_over_at_verify = true;  // write_over when verify returned
  arcforge::gallery::testing::set_busy_observer([&] {
    std::lock_guard lock(m);
    ++busy_calls;
    cv.notify_all();
  });
  EnrollResult written;
  std::string write_error;
  std::thread writer([&] {
    try {
      written = g.enroll("c", "bob", {sample(bob)});
    } catch (const std::exception& e) {
      write_error = e.what();
    }
    std::lock_guard lock(m);
    write_over = true;
    cv.notify_all();
  });

  // The enrol either blocks on the lock (the observer fires) or, were the lock not in its way,
  // ends: no wait here is unbounded.
  bool blocked = false;
  {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return busy_calls > 0 || write_over; });
    blocked = busy_calls > 0 && !write_over;
  }
  float verified = 0.0f;
  std::string verify_error;
  std::thread verifier;
  if (blocked) {
    verifier = std::thread([&] {
      try {
        verified = g.verify("c", "ann", ann);
      } catch (const std::exception& e) {
        verify_error = e.what();
      }
      std::lock_guard lock(m);
      verify_over = true;
      write_over_at_verify = write_over;
      cv.notify_all();
    });
    // Ends when verify answers, or at the latest when the enrol gives up on the lock (~10 s).
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return verify_over || write_over; });
  }
  // Release the lock: the enrol goes on (or has already given up).
  EXPECT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  writer.join();
  if (verifier.joinable()) verifier.join();
  arcforge::gallery::testing::set_busy_observer(nullptr);

  ASSERT_TRUE(blocked) << "the enrol never blocked on the other connection's write lock";
  EXPECT_TRUE(verify_error.empty()) << verify_error;
  EXPECT_FALSE(write_over_at_verify) << "verify answered only once the enrol had given up on the lock ("
                                     << busy_calls << " busy calls): it waited for the write";
  EXPECT_NEAR(verified, 1.0f, 1e-5);
  ASSERT_TRUE(write_error.empty()) << "the enrol failed: " << write_error;
  EXPECT_TRUE(written.created);
  EXPECT_EQ(g.persons("c").size(), 2u);
  EXPECT_NEAR(g.verify("c", "bob", bob), 1.0f, 1e-5);
}

// An ivfpq collection trains when an enrolment brings it to train_min. The k-means runs outside the
// exclusive state lock: a search started while it runs (from the training's observer) finishes
// before the training goes on; it used to wait for all of it. The index it switches to is the one
// a reopen builds.
TEST(Gallery, SearchesGoOnWhileIvfPqTrains) {
  using namespace std::chrono_literals;
  constexpr int kBatch = 1000, kBatches = 8;
  ScratchDir dir;
  const std::string path = dir.file("g.db");
  Gallery g = Gallery::open(path);
  IndexSpec spec{IndexKind::IvfPq};
  spec.pq_m = 8;
  spec.train_min = kBatch * kBatches;
  g.create_collection("c", kDim, spec);
  std::mt19937 rng(12);
  auto enrol_batch = [&](int b) {
    std::vector<SampleInput> samples;
    for (int i = 0; i < kBatch; ++i) samples.push_back(sample(random_unit(rng)));
    g.enroll("c", "p" + std::to_string(b), samples);
  };
  for (int b = 0; b + 1 < kBatches; ++b) enrol_batch(b);
  const size_t flat_bytes = g.collection("c").index_bytes;
  EXPECT_EQ(g.collection("c").effective_sample_index, "flat");

  const auto query = random_unit(rng);
  const SearchOptions over_samples{10, -1.0f, SearchOver::Samples};
  int trainings = 0;
  bool answered = false;
  std::thread searcher;
  std::future<size_t> found;
  // Were the state lock held over the training, the search would wait for this observer to
  // return: the generous limit only bounds how long a broken build takes to fail.
  arcforge::gallery::testing::set_training_observer([&] {
    ++trainings;
    std::packaged_task<size_t()> search([&] { return g.search("c", query, over_samples).size(); });
    found = search.get_future();
    searcher = std::thread(std::move(search));
    answered = found.wait_for(60s) == std::future_status::ready;
  });
  enrol_batch(kBatches - 1);
  arcforge::gallery::testing::set_training_observer(nullptr);
  if (searcher.joinable()) searcher.join();
  if (found.valid()) {
    EXPECT_EQ(found.get(), 10u);
  }
  EXPECT_EQ(trainings, 1) << "the samples' index alone reached train_min";
  EXPECT_TRUE(answered) << "a search waited for the training";
  const size_t trained_bytes = g.collection("c").index_bytes;
  EXPECT_LT(trained_bytes, flat_bytes / 2) << "the samples' index did not switch to ivfpq";
  // 8 persons never train the templates' index; the samples' index has trained.
  EXPECT_EQ(g.collection("c").effective_index, "flat");
  EXPECT_EQ(g.collection("c").effective_sample_index, "ivfpq");

  const auto before = g.search("c", query, over_samples);
  g = Gallery::open(path);
  EXPECT_EQ(g.collection("c").index_bytes, trained_bytes);
  const auto after = g.search("c", query, over_samples);
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].sample_id, after[i].sample_id) << "rank " << i;
    EXPECT_EQ(before[i].score, after[i].score) << "rank " << i;
  }
}

// A child enrols persons one by one and reports each acknowledged (returned) enrolment on a pipe;
// the parent SIGKILLs it mid-stream. Every acknowledged person must be in the reopened gallery, and
// nothing that was never attempted.
TEST(Gallery, AcknowledgedEnrolmentsSurviveSigkill) {
  ScratchDir dir;
  const std::string path = dir.file("g.db");
  Gallery::open(path).create_collection("c", kDim);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    Gallery g = Gallery::open(path);
    std::mt19937 rng(7);
    for (int i = 0;; ++i) {
      g.enroll("c", std::string("p") + std::to_string(i), {sample(random_unit(rng))});
      const int32_t acknowledged = i;
      if (write(fds[1], &acknowledged, sizeof acknowledged) != sizeof acknowledged) _exit(1);
    }
  }
  close(fds[1]);
  std::vector<int32_t> acknowledged;
  int32_t value = 0;
  while (acknowledged.size() < 150 && read(fds[0], &value, sizeof value) == sizeof value) acknowledged.push_back(value);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  while (read(fds[0], &value, sizeof value) == sizeof value) acknowledged.push_back(value);
  close(fds[0]);
  ASSERT_GE(acknowledged.size(), 150u);

  Gallery g = Gallery::open(path);
  const auto persons = g.persons("c");
  std::set<std::string> present;
  for (const auto& p : persons) present.insert(p.name);
  // Replay the child's generator: the embeddings it enrolled, in order.
  std::mt19937 rng(7);
  const int attempted_max = acknowledged.back() + 1;  // at most one enrolment was in flight
  for (int i = 0; i <= attempted_max; ++i) {
    const auto e = random_unit(rng);
    const std::string name = "p" + std::to_string(i);
    if (i < static_cast<int>(acknowledged.size())) {
      ASSERT_TRUE(present.count(name)) << name << " was acknowledged but is missing";
      const auto m = g.search("c", e, SearchOptions{1});
      ASSERT_EQ(m.size(), 1u);
      EXPECT_EQ(m[0].person, name);
      EXPECT_GT(m[0].score, 0.9999f);
    }
  }
  for (const auto& name : present) {
    EXPECT_LE(std::stoi(name.substr(1)), attempted_max) << name << " was never attempted";
  }
}

TEST(Gallery, Sha256MatchesKnownDigests) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

// The sample the CLI and the server enrol from a photo: a face as FaceAnalyzer gives it (score in
// both detection and quality), stored and read back field by field.
TEST(Gallery, SampleFromFaceKeepsEmbeddingHashBoxAndScore) {
  std::mt19937 rng(11);
  pipeline::Face face;
  face.detection.box = {10.5f, 20.25f, 110.75f, 140.f};
  face.detection.score = 0.8125f;
  face.quality.detector_score = face.detection.score;
  face.embedding = random_unit(rng);
  const SampleInput s = sample_from_face(face, std::string_view("abc"));
  EXPECT_EQ(s.embedding, face.embedding);
  EXPECT_EQ(s.image_sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(s.box, (std::array<float, 4>{10.5f, 20.25f, 110.75f, 140.f}));
  EXPECT_EQ(s.quality, 0.8125f);
  EXPECT_EQ(s.metadata, "{}");

  ScratchDir dir;
  Gallery g = Gallery::open(dir.file("g.db"));
  g.create_collection("c", kDim);
  g.enroll("c", "ann", {s});
  const auto stored = g.samples("c", "ann", /*with_embeddings=*/true);
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].image_sha256, s.image_sha256);
  EXPECT_EQ(stored[0].box, s.box);
  EXPECT_EQ(stored[0].quality, s.quality);
  for (int i = 0; i < kDim; ++i) EXPECT_NEAR(stored[0].embedding[i], s.embedding[i], 1e-6) << i;
}

}  // namespace
}  // namespace arcforge::gallery
