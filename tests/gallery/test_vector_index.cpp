// VectorIndex against independent references: a brute-force top-k in double precision over the live
// vectors, and, for the quantised kinds, the index's own full ranking taken before a removal (a
// removal must only drop entries from it, a compaction must change nothing). IndexSpec's JSON form
// and its checks. The exact scan's kernels (exact_scan.hpp) against scalar double/int64 sums, on
// every SIMD level the CPU has, and its threaded scan against the serial one. HNSW over our SIMD
// storage (simd_flat_storage.hpp) against FAISS's own IndexHNSWFlat.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <faiss/IndexHNSW.h>
#include <omp.h>

#include "arcforge/common/error.hpp"
#include "arcforge/gallery/vector_index.hpp"
#include "exact_scan.hpp"
#include "simd_flat_storage.hpp"

namespace arcforge::gallery {
namespace {

using Rows = std::vector<float>;  // n x dim, row-major

void normalise(float* v, int dim) {
  double norm = 0;
  for (int i = 0; i < dim; ++i) norm += double(v[i]) * v[i];
  const auto scale = static_cast<float>(1.0 / std::sqrt(norm));
  for (int i = 0; i < dim; ++i) v[i] *= scale;
}

Rows random_unit(size_t n, int dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  Rows out(n * dim);
  for (auto& x : out) x = normal(rng);
  for (size_t i = 0; i < n; ++i) normalise(&out[i * dim], dim);
  return out;
}

// n copies of `row` + gaussian noise of expected norm `noise`, renormalised: cosine to `row` about
// 1/sqrt(1+noise^2).
Rows noisy(const float* row, size_t n, int dim, float noise, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, noise / std::sqrt(float(dim)));
  Rows out(n * dim);
  for (size_t i = 0; i < n; ++i) {
    for (int d = 0; d < dim; ++d) out[i * dim + d] = row[d] + normal(rng);
    normalise(&out[i * dim], dim);
  }
  return out;
}

// Face-like embeddings: `per_identity` noisy samples around each of `identities` random centres.
Rows clustered(size_t identities, size_t per_identity, int dim, float noise, uint64_t seed) {
  const Rows centres = random_unit(identities, dim, seed);
  Rows out;
  out.reserve(identities * per_identity * dim);
  for (size_t c = 0; c < identities; ++c) {
    const Rows samples = noisy(&centres[c * dim], per_identity, dim, noise, seed * 7919 + c);
    out.insert(out.end(), samples.begin(), samples.end());
  }
  return out;
}

std::vector<int64_t> scattered_ids(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::set<int64_t> seen;
  std::vector<int64_t> ids;
  while (ids.size() < n) {
    const auto id = static_cast<int64_t>(rng()) >> 20;  // negative ones too
    if (seen.insert(id).second) ids.push_back(id);
  }
  return ids;
}

struct RefHit {
  int64_t id;
  double score;
};

// The live set, searched exhaustively in double precision.
class BruteForce {
 public:
  explicit BruteForce(int dim) : dim_(dim) {}
  void add(const std::vector<int64_t>& ids, const Rows& rows) {
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto [it, inserted] = row_of_.try_emplace(ids[i], ids_.size());
      if (inserted) {
        ids_.push_back(ids[i]);
        rows_.insert(rows_.end(), &rows[i * dim_], &rows[(i + 1) * dim_]);
      } else {
        std::copy(&rows[i * dim_], &rows[(i + 1) * dim_], &rows_[it->second * dim_]);
      }
    }
  }
  void remove(const std::vector<int64_t>& ids) {
    for (int64_t id : ids) {
      const auto it = row_of_.find(id);
      if (it == row_of_.end()) continue;
      const size_t row = it->second, last = ids_.size() - 1;
      row_of_.erase(it);
      if (row != last) {  // move the last row into the hole
        ids_[row] = ids_[last];
        std::copy(&rows_[last * dim_], &rows_[(last + 1) * dim_], &rows_[row * dim_]);
        row_of_[ids_[row]] = row;
      }
      ids_.pop_back();
      rows_.resize(ids_.size() * dim_);
    }
  }
  std::vector<RefHit> top(const float* query, size_t k) const {
    std::vector<RefHit> all(ids_.size());
    for (size_t r = 0; r < ids_.size(); ++r) {
      const float* v = &rows_[r * dim_];
      double partial[4] = {0, 0, 0, 0};  // four chains: the same sums, just not one long dependency
      int d = 0;
      for (; d + 4 <= dim_; d += 4) {
        for (int j = 0; j < 4; ++j) partial[j] += double(query[d + j]) * double(v[d + j]);
      }
      for (; d < dim_; ++d) partial[0] += double(query[d]) * double(v[d]);
      all[r] = {ids_[r], (partial[0] + partial[1]) + (partial[2] + partial[3])};
    }
    k = std::min(k, all.size());
    std::partial_sort(all.begin(), all.begin() + k, all.end(), [](const RefHit& a, const RefHit& b) {
      return a.score != b.score ? a.score > b.score : a.id < b.id;
    });
    all.resize(k);
    return all;
  }
  size_t size() const { return ids_.size(); }

 private:
  int dim_;
  std::vector<int64_t> ids_;
  Rows rows_;
  std::unordered_map<int64_t, size_t> row_of_;
};

void expect_equals_brute_force(const std::vector<Hit>& got, const std::vector<RefHit>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t j = 0; j < want.size(); ++j) {
    EXPECT_EQ(got[j].id, want[j].id) << what << " rank " << j;
    EXPECT_NEAR(got[j].score, want[j].score, 1e-5) << what << " rank " << j;
  }
}

// `ranking` without the ids in `gone`, cut to k.
std::vector<Hit> without(const std::vector<Hit>& ranking, const std::set<int64_t>& gone, size_t k) {
  std::vector<Hit> out;
  for (const Hit& h : ranking) {
    if (out.size() == k) break;
    if (!gone.count(h.id)) out.push_back(h);
  }
  return out;
}

void expect_same_hits(const std::vector<Hit>& got, const std::vector<Hit>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t j = 0; j < want.size(); ++j) {
    EXPECT_EQ(got[j].id, want[j].id) << what << " rank " << j;
    EXPECT_NEAR(got[j].score, want[j].score, 1e-5) << what << " rank " << j;
  }
}

double recall_at(const VectorIndex& index, const BruteForce& exact, const Rows& queries, int dim, size_t k) {
  const size_t nq = queries.size() / dim;
  const auto hits = index.search(queries.data(), nq, static_cast<int>(k));
  size_t found = 0;
  for (size_t q = 0; q < nq; ++q) {
    std::set<int64_t> got;
    for (const Hit& h : hits[q]) got.insert(h.id);
    for (const RefHit& r : exact.top(&queries[q * dim], k)) found += got.count(r.id);
  }
  return double(found) / double(nq * k);
}

// ---------------------------------------------------------------------------------------------
TEST(IndexKind, NamesRoundTripAndBadNamesListTheValidOnes) {
  for (IndexKind kind : {IndexKind::Flat, IndexKind::Int8, IndexKind::Hnsw, IndexKind::IvfPq}) {
    EXPECT_EQ(parse_index_kind(index_kind_name(kind)), kind);
  }
  EXPECT_EQ(index_kind_name(IndexKind::IvfPq), "ivfpq");
  try {
    parse_index_kind("IVF_PQ");
    FAIL() << "IVF_PQ accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("flat, int8, hnsw, ivfpq"), std::string::npos) << e.what();
  }
}

TEST(IndexSpec, JsonRoundTripKeepsEveryField) {
  IndexSpec spec;
  spec.kind = IndexKind::IvfPq;
  spec.hnsw_m = 12;
  spec.hnsw_ef_construction = 41;
  spec.hnsw_ef_search = 17;
  spec.ivf_nlist = 333;
  spec.ivf_nprobe = 9;
  spec.pq_m = 32;
  spec.train_min = 123456;
  const IndexSpec back = IndexSpec::from_json(spec.to_json());
  EXPECT_EQ(back.kind, spec.kind);
  EXPECT_EQ(back.hnsw_m, spec.hnsw_m);
  EXPECT_EQ(back.hnsw_ef_construction, spec.hnsw_ef_construction);
  EXPECT_EQ(back.hnsw_ef_search, spec.hnsw_ef_search);
  EXPECT_EQ(back.ivf_nlist, spec.ivf_nlist);
  EXPECT_EQ(back.ivf_nprobe, spec.ivf_nprobe);
  EXPECT_EQ(back.pq_m, spec.pq_m);
  EXPECT_EQ(back.train_min, spec.train_min);
  EXPECT_EQ(back.to_json(), spec.to_json());

  // Absent fields take the defaults.
  const IndexSpec defaults;
  const IndexSpec hnsw = IndexSpec::from_json(R"({"kind": "hnsw"})");
  EXPECT_EQ(hnsw.kind, IndexKind::Hnsw);
  EXPECT_EQ(hnsw.hnsw_m, defaults.hnsw_m);
  EXPECT_EQ(hnsw.hnsw_ef_search, defaults.hnsw_ef_search);
  EXPECT_EQ(hnsw.train_min, defaults.train_min);
  EXPECT_EQ(IndexSpec::from_json("{}").kind, IndexKind::Flat);
}

TEST(IndexSpec, BadJsonOrValuesAreInputErrors) {
  const std::vector<std::string> bad = {
      "",
      "not json",
      "{\"kind\": \"flat\"",
      "[]",
      "42",
      R"({"kind": "annoy"})",
      R"({"kind": 2})",
      R"({"hnsw_m": "32"})",
      R"({"hnsw_m": 32.5})",
      R"({"hnsw_m": 1})",
      R"({"hnsw_m": 4294967298})",  // 2 once wrapped to 32 bits
      R"({"hnsw_ef_search": 0})",
      R"({"ivf_nlist": -1})",
      R"({"ivf_nprobe": 0})",
      R"({"pq_m": 0})",
      R"({"train_min": -1})",
      R"({"train_min": 18446744073709551615})",
      R"({"colour": "blue"})",
  };
  for (const std::string& text : bad) {
    EXPECT_THROW(IndexSpec::from_json(text), InputError) << text;
  }
  try {
    IndexSpec::from_json(R"({"kind": "hnsw", "hnsw_m": 1000})");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("hnsw_m"), std::string::npos) << e.what();
  }
}

TEST(VectorIndex, ConstructionChecksDimAndSpec) {
  EXPECT_THROW(VectorIndex(0, IndexSpec{}), InputError);
  IndexSpec ivfpq{IndexKind::IvfPq};
  ivfpq.pq_m = 64;
  try {
    VectorIndex index(100, ivfpq);
    FAIL() << "pq_m 64 accepted for dim 100";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("pq_m"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(VectorIndex(128, ivfpq));
  EXPECT_NO_THROW(VectorIndex(100, IndexSpec{IndexKind::Flat}));  // pq_m concerns ivfpq only
  IndexSpec hnsw{IndexKind::Hnsw};
  hnsw.hnsw_m = 1;
  EXPECT_THROW(VectorIndex(64, hnsw), InputError);
  VectorIndex index(8, IndexSpec{});
  EXPECT_THROW(index.search(nullptr, 0, 0), InputError);
}

TEST(VectorIndex, FlatEqualsBruteForceInDoublePrecision) {
  const int dim = 96;
  const size_t n = 3000;
  const Rows rows = random_unit(n, dim, 11);
  const auto ids = scattered_ids(n, 12);
  VectorIndex index(dim, IndexSpec{IndexKind::Flat});
  index.add(ids, rows.data());
  BruteForce exact(dim);
  exact.add(ids, rows);
  EXPECT_EQ(index.size(), n);
  EXPECT_EQ(index.effective_kind(), "flat");

  // 40 queries: one batch (FAISS takes its BLAS path) and one at a time (our SIMD scan).
  const Rows queries = random_unit(40, dim, 13);
  const auto batched = index.search(queries.data(), 40, 10);
  for (size_t q = 0; q < 40; ++q) {
    const auto want = exact.top(&queries[q * dim], 10);
    expect_equals_brute_force(batched[q], want, "batched query " + std::to_string(q));
    expect_equals_brute_force(index.search(&queries[q * dim], 1, 10)[0], want, "single query " + std::to_string(q));
  }

  // Fewer live vectors than k: all of them, best first.
  VectorIndex small(dim, IndexSpec{});
  small.add(std::span(ids).first(7), rows.data());
  BruteForce small_exact(dim);
  small_exact.add(std::vector<int64_t>(ids.begin(), ids.begin() + 7), Rows(rows.begin(), rows.begin() + 7 * dim));
  expect_equals_brute_force(small.search(queries.data(), 1, 50)[0], small_exact.top(queries.data(), 50), "k > n");
  // An empty index answers with empty lists, one per query.
  const auto none = VectorIndex(dim, IndexSpec{}).search(queries.data(), 3, 5);
  ASSERT_EQ(none.size(), 3u);
  EXPECT_TRUE(none[0].empty());
}

TEST(VectorIndex, SingleQuerySearchLeavesTheOpenMpSettingAsItWas) {
  const int dim = 32;
  const Rows rows = random_unit(500, dim, 21);
  VectorIndex index(dim, IndexSpec{IndexKind::Hnsw});
  index.add(scattered_ids(500, 22), rows.data());
  const int before = omp_get_max_threads();
  index.search(rows.data(), 1, 5);
  EXPECT_EQ(omp_get_max_threads(), before);
}

TEST(VectorIndex, AddReplacesAnIdAlsoWithinOneBatch) {
  const int dim = 16;
  const Rows rows = random_unit(3, dim, 31);
  VectorIndex index(dim, IndexSpec{});
  const std::vector<int64_t> ids = {7, 7, 9};
  index.add(ids, rows.data());
  EXPECT_EQ(index.size(), 2u);
  // id 7 holds the second row: the first row's own score is no longer there.
  const auto by_second = index.search(&rows[1 * dim], 1, 2)[0];
  ASSERT_EQ(by_second.size(), 2u);
  EXPECT_EQ(by_second[0].id, 7);
  EXPECT_NEAR(by_second[0].score, 1.0f, 1e-5);
  const auto by_first = index.search(&rows[0], 1, 2)[0];
  for (const Hit& h : by_first) EXPECT_LT(h.score, 0.99f) << h.id;
}

// Gallery::verify reads templates back from fp32 rows: bit for bit the replacing row, never for
// quantised kinds.
TEST(VectorIndex, ExactVectorIsTheLatestRowWhereRowsAreFp32) {
  const int dim = 16;
  const Rows rows = random_unit(3, dim, 32);
  const std::vector<int64_t> ids = {5, 6, 5};
  for (const IndexKind kind : {IndexKind::Flat, IndexKind::Hnsw, IndexKind::IvfPq, IndexKind::Int8}) {
    SCOPED_TRACE(index_kind_name(kind));
    IndexSpec spec{kind};
    spec.pq_m = 8;
    VectorIndex index(dim, spec);
    index.add(ids, rows.data());
    EXPECT_FALSE(index.exact_vector(99).has_value());
    if (kind == IndexKind::Int8) {
      EXPECT_FALSE(index.exact_vector(5).has_value());
      continue;
    }
    EXPECT_EQ(index.exact_vector(5), Rows(rows.begin() + 2 * dim, rows.end()));
    EXPECT_EQ(index.exact_vector(6), Rows(rows.begin() + dim, rows.begin() + 2 * dim));
  }
}

TEST(VectorIndex, Int8KeepsRecallOnFaceLikeNoisyQueries) {
  const int dim = 512;
  // 1000 identities x 5 samples; queries are new samples of enrolled identities, so the exact
  // top-1 is one of five close candidates and quantisation error can swap them.
  const Rows rows = clustered(1000, 5, dim, 0.8f, 41);
  const size_t n = rows.size() / dim;
  const auto ids = scattered_ids(n, 42);
  VectorIndex index(dim, IndexSpec{IndexKind::Int8});
  index.add(std::span(ids).first(1), rows.data());
  EXPECT_EQ(index.effective_kind(), "int8");  // no training: int8 from the first vector
  index.add(std::span(ids).subspan(1), &rows[1 * dim]);
  EXPECT_EQ(index.effective_kind(), "int8");
  BruteForce exact(dim);
  exact.add(ids, rows);

  Rows queries;
  std::mt19937_64 rng(43);
  for (int q = 0; q < 200; ++q) {
    // A new sample of an identity: noise around the mean of its five enrolled samples.
    const size_t first = (rng() % 1000) * 5;
    std::vector<float> centre(dim, 0.f);
    for (size_t s = 0; s < 5; ++s) {
      for (int d = 0; d < dim; ++d) centre[d] += rows[(first + s) * dim + d];
    }
    normalise(centre.data(), dim);
    const Rows one = noisy(centre.data(), 1, dim, 0.8f, 44 + q);
    queries.insert(queries.end(), one.begin(), one.end());
  }
  const double recall1 = recall_at(index, exact, queries, dim, 1);
  EXPECT_GE(recall1, 0.95);
  RecordProperty("int8_recall_at_1", std::to_string(recall1));

  VectorIndex flat(dim, IndexSpec{});
  flat.add(ids, rows.data());
  // int8 codes are dim bytes + a 4-byte scale against flat's 4*dim; the id maps are the same.
  EXPECT_LT(index.memory_bytes(), flat.memory_bytes() / 2);
  EXPECT_GT(index.memory_bytes(), n * (dim + 4));
  EXPECT_EQ(flat.memory_bytes() - index.memory_bytes(), n * (4 * dim - (dim + 4)));
}

TEST(VectorIndex, Int8ScoresAreWithinOneHundredthOfExactCosine) {
  const int dim = 512;
  const size_t n = 2000;
  const Rows rows = random_unit(n, dim, 45);
  const auto ids = scattered_ids(n, 46);
  VectorIndex index(dim, IndexSpec{IndexKind::Int8});
  index.add(ids, rows.data());
  std::unordered_map<int64_t, size_t> row_of;
  for (size_t i = 0; i < n; ++i) row_of[ids[i]] = i;
  const Rows queries = random_unit(8, dim, 47);
  const auto ranked = index.search(queries.data(), 8, static_cast<int>(n));  // every vector
  double worst = 0;
  for (size_t q = 0; q < 8; ++q) {
    ASSERT_EQ(ranked[q].size(), n);
    for (const Hit& h : ranked[q]) {
      const float* v = &rows[row_of.at(h.id) * dim];
      double cosine = 0;
      for (int d = 0; d < dim; ++d) cosine += double(queries[q * dim + d]) * v[d];
      worst = std::max(worst, std::abs(h.score - cosine));
    }
  }
  EXPECT_LT(worst, 0.01);
  RecordProperty("int8_worst_score_error", std::to_string(worst));
}

TEST(VectorIndex, HnswRecallAtTen) {
  const int dim = 64;
  const Rows rows = clustered(1000, 4, dim, 0.8f, 51);
  const size_t n = rows.size() / dim;
  const auto ids = scattered_ids(n, 52);
  VectorIndex index(dim, IndexSpec{IndexKind::Hnsw});
  index.add(ids, rows.data());
  EXPECT_EQ(index.effective_kind(), "hnsw");
  BruteForce exact(dim);
  exact.add(ids, rows);
  Rows spread;
  for (size_t q = 0; q < 200; ++q) {
    const Rows one = noisy(&rows[(q * 29 % n) * dim], 1, dim, 0.5f, 54 + q);
    spread.insert(spread.end(), one.begin(), one.end());
  }
  const double recall10 = recall_at(index, exact, spread, dim, 10);
  EXPECT_GE(recall10, 0.95);
  RecordProperty("hnsw_recall_at_10", std::to_string(recall10));
  // HNSW keeps fp32 rows plus at least 2*M links of 4 bytes per vector on level 0.
  EXPECT_GT(index.memory_bytes(), n * (dim * 4 + 2 * 32 * 4));
}

TEST(VectorIndex, HnswTopOneEqualsExactSearch) {
  const int dim = 64;
  const size_t n = 2000, nq = 200;
  const Rows rows = random_unit(n, dim, 55);
  const Rows queries = random_unit(nq, dim, 56);  // unrelated to the rows: small top-1 margins
  const auto ids = scattered_ids(n, 57);
  VectorIndex hnsw(dim, IndexSpec{IndexKind::Hnsw});
  hnsw.add(ids, rows.data());
  VectorIndex flat(dim, IndexSpec{IndexKind::Flat});
  flat.add(ids, rows.data());
  const auto got = hnsw.search(queries.data(), nq, 1);
  const auto want = flat.search(queries.data(), nq, 1);
  size_t same = 0;
  for (size_t q = 0; q < nq; ++q) same += !got[q].empty() && got[q][0].id == want[q][0].id;
  EXPECT_GE(same, 198u) << "of " << nq << " queries with the exact top-1";
  RecordProperty("hnsw_top1_equal_exact", std::to_string(same));
}

// ---------------------------------------------------------------------------------------------
// HNSW over SimdFlatIP (our SIMD dot product) against FAISS's own IndexHNSWFlat, both built on one
// thread (FAISS's multi-threaded insertion order depends on scheduling) with the same parameters.

struct HnswPair {
  std::unique_ptr<faiss::IndexHNSW> ours;
  faiss::IndexHNSWFlat theirs;
  HnswPair(int dim, const Rows& rows)
      : ours(new_simd_hnsw(dim, 32, 40, 64)), theirs(dim, 32, faiss::METRIC_INNER_PRODUCT) {
    theirs.hnsw.efConstruction = 40;
    theirs.hnsw.efSearch = 64;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const auto n = static_cast<faiss::Index::idx_t>(rows.size() / static_cast<size_t>(dim));
    ours->add(n / 2, rows.data());  // two adds, as a growing gallery does
    ours->add(n - n / 2, &rows[static_cast<size_t>(n / 2) * dim]);
    theirs.add(n / 2, rows.data());
    theirs.add(n - n / 2, &rows[static_cast<size_t>(n / 2) * dim]);
    omp_set_num_threads(threads);
  }
};

struct Found {
  std::vector<float> scores;
  std::vector<faiss::Index::idx_t> slots;
};

Found search(const faiss::Index& index, const Rows& queries, int dim, int k) {
  const auto nq = static_cast<faiss::Index::idx_t>(queries.size() / static_cast<size_t>(dim));
  Found f{std::vector<float>(static_cast<size_t>(nq * k)), std::vector<faiss::Index::idx_t>(static_cast<size_t>(nq * k))};
  index.search(nq, queries.data(), k, f.scores.data(), f.slots.data());
  return f;
}

// The storage's computer is ours (FAISS's scalar loop would round differently on most of these),
// for the query and between stored rows, and it is what IndexHNSW reaches through its storage.
TEST(SimdHnsw, StorageComputesOurDotProducts) {
  const int dim = 100;  // not a multiple of 16: the kernels' tails too
  const Rows rows = random_unit(50, dim, 95), query = random_unit(1, dim, 96);
  const auto index = new_simd_hnsw(dim, 16, 40, 16);
  index->add(50, rows.data());
  ASSERT_NE(dynamic_cast<const SimdFlatIP*>(index->storage), nullptr);
  const std::unique_ptr<faiss::DistanceComputer> dis(index->storage->get_distance_computer());
  dis->set_query(query.data());
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_EQ((*dis)(static_cast<faiss::Index::idx_t>(i)), exact::dot_fp32(query.data(), &rows[i * dim], dim));
    EXPECT_EQ(dis->symmetric_dis(static_cast<faiss::Index::idx_t>(i), 7),
              exact::dot_fp32(&rows[i * dim], &rows[7 * dim], dim));
  }
}

// Small integers: every dot product is an exact float whatever the order of the sums (scalar,
// AVX2 or AVX-512, with or without FMA), so both indexes see bit-identical distances and must
// build the same graph and answer the same, scores included.
TEST(SimdHnsw, EqualsFaissHnswFlatWhenDotProductsAreExact) {
  const int dim = 64, k = 10;
  auto integers = [&](size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> value(-4, 4);
    Rows out(n * dim);
    for (auto& x : out) x = static_cast<float>(value(rng));
    return out;
  };
  const Rows rows = integers(1500, 91), queries = integers(100, 92);
  const HnswPair pair(dim, rows);
  EXPECT_EQ(pair.ours->hnsw.neighbors, pair.theirs.hnsw.neighbors);
  const Found ours = search(*pair.ours, queries, dim, k), theirs = search(pair.theirs, queries, dim, k);
  EXPECT_EQ(ours.slots, theirs.slots);
  EXPECT_EQ(ours.scores, theirs.scores);
  // Plain inner products, best first (IndexHNSW negates them internally for inner product).
  for (size_t q = 0; q < 100; ++q) {
    double dot = 0;
    for (int d = 0; d < dim; ++d) dot += queries[q * dim + d] * rows[static_cast<size_t>(ours.slots[q * k]) * dim + d];
    EXPECT_EQ(ours.scores[q * k], static_cast<float>(dot)) << "query " << q;
    EXPECT_GE(ours.scores[q * k], ours.scores[q * k + k - 1]) << "query " << q;
  }
}

// Real-valued unit vectors: the sums round differently (FAISS's scalar loop vs our lanes), so near
// ties may resolve otherwise and the graphs differ in places. Both must still answer alike.
TEST(SimdHnsw, AgreesWithFaissHnswFlatOnUnitVectors) {
  const int dim = 64, k = 10;
  const size_t nq = 200;
  const Rows rows = random_unit(2000, dim, 93), queries = random_unit(nq, dim, 94);
  const HnswPair pair(dim, rows);
  const Found ours = search(*pair.ours, queries, dim, k), theirs = search(pair.theirs, queries, dim, k);
  size_t same_lists = 0, shared = 0;
  for (size_t q = 0; q < nq; ++q) {
    const auto first = static_cast<std::ptrdiff_t>(q * k);
    same_lists += std::equal(ours.slots.begin() + first, ours.slots.begin() + first + k, theirs.slots.begin() + first);
    const std::set<faiss::Index::idx_t> mine(ours.slots.begin() + first, ours.slots.begin() + first + k);
    for (int j = 0; j < k; ++j) shared += mine.count(theirs.slots[q * k + j]);
  }
  EXPECT_GE(shared, nq * k * 99 / 100) << "top-10 ids shared with FAISS's";
  RecordProperty("simd_hnsw_identical_top10_lists", std::to_string(same_lists));
  RecordProperty("simd_hnsw_shared_top10_ids", std::to_string(shared));
  std::cout << "[          ] identical top-10 lists " << same_lists << "/" << nq << ", shared ids " << shared << "/"
            << nq * k << ", ours " << (pair.ours->hnsw.neighbors == pair.theirs.hnsw.neighbors ? "same" : "other")
            << " graph\n";
}

TEST(VectorIndex, IvfPqTrainsAtTrainMinAndFindsNoisyCopies) {
  const int dim = 64;
  IndexSpec spec{IndexKind::IvfPq};
  spec.pq_m = 8;  // default train_min: 10000
  const size_t n = 10000;
  const Rows rows = random_unit(n, dim, 61);
  const auto ids = scattered_ids(n, 62);
  VectorIndex index(dim, spec);
  index.add(std::span(ids).first(n - 1), rows.data());
  EXPECT_EQ(index.effective_kind(), "flat");
  // Untrained, the search is exact.
  BruteForce exact(dim);
  exact.add(std::vector<int64_t>(ids.begin(), ids.end() - 1), Rows(rows.begin(), rows.end() - dim));
  const Rows probe = random_unit(5, dim, 63);
  const auto before = index.search(probe.data(), 5, 5);
  for (size_t q = 0; q < 5; ++q) expect_equals_brute_force(before[q], exact.top(&probe[q * dim], 5), "untrained");
  const size_t flat_bytes = index.memory_bytes();

  index.add(std::span(ids).last(1), &rows[(n - 1) * dim]);
  EXPECT_EQ(index.effective_kind(), "ivfpq");
  EXPECT_EQ(index.size(), n);
  EXPECT_FALSE(index.exact_vector(ids[0]).has_value());  // quantised now
  EXPECT_LT(index.memory_bytes(), flat_bytes / 2);

  // Queries: noisy copies (cosine about 0.9) of 300 stored vectors; top-1 must be the original.
  size_t found = 0;
  for (size_t q = 0; q < 300; ++q) {
    const size_t row = q * 33 % n;
    const Rows query = noisy(&rows[row * dim], 1, dim, 0.45f, 64 + q);
    const auto hits = index.search(query.data(), 1, 1)[0];
    found += !hits.empty() && hits[0].id == ids[row];
  }
  EXPECT_GE(found, 285u) << "of 300 noisy copies found at rank 1";
}

// ---------------------------------------------------------------------------------------------
// Removal, replacement and compaction, for every kind. For each kind the index's own full ranking
// (k = all vectors) is an oracle: every kind is set to search exhaustively here (HNSW with
// efSearch above n, IVF with nprobe = nlist), so removing ids may only drop them from that ranking
// and compaction may change nothing. Flat and HNSW (fp32 rows) are also held to brute force.
struct KindCase {
  IndexKind kind;
  size_t n;
  int dim;
};

void PrintTo(const KindCase& c, std::ostream* os) {
  *os << index_kind_name(c.kind) << ", n=" << c.n << ", dim=" << c.dim;
}

IndexSpec exhaustive_spec(IndexKind kind) {
  IndexSpec spec{kind};
  spec.hnsw_m = 16;
  spec.hnsw_ef_search = 4096;
  spec.ivf_nlist = 64;
  spec.ivf_nprobe = 64;
  spec.pq_m = 8;
  return spec;
}

class RemovalTest : public ::testing::TestWithParam<KindCase> {};

TEST_P(RemovalTest, RemoveReplaceCompactMatchTheOracles) {
  const KindCase c = GetParam();
  const int dim = c.dim;
  const size_t n = c.n;
  const bool exact_scores = c.kind == IndexKind::Flat || c.kind == IndexKind::Hnsw;
  const Rows rows = random_unit(n, dim, 71);
  const auto ids = scattered_ids(n, 72);
  VectorIndex index(dim, exhaustive_spec(c.kind));
  index.add(std::span(ids).first(n / 2), rows.data());
  index.add(std::span(ids).subspan(n / 2), &rows[(n / 2) * dim]);
  ASSERT_EQ(index.effective_kind(), index_kind_name(c.kind));
  ASSERT_EQ(index.size(), n);
  BruteForce exact(dim);
  exact.add(ids, rows);

  // Queries: 30 random directions and 10 stored vectors (whose own rows get removed below).
  Rows queries = random_unit(30, dim, 73);
  for (size_t i = 0; i < 10; ++i) queries.insert(queries.end(), &rows[i * 5 * dim], &rows[(i * 5 + 1) * dim]);
  const size_t nq = queries.size() / dim;
  const int all = static_cast<int>(n);
  const auto full = index.search(queries.data(), nq, all);
  for (size_t q = 0; q < nq; ++q) {
    ASSERT_EQ(full[q].size(), n) << "query " << q << ": the search is not exhaustive";
    if (exact_scores) {
      const auto top = std::vector<Hit>(full[q].begin(), full[q].begin() + 10);
      expect_equals_brute_force(top, exact.top(&queries[q * dim], 10), "full ranking, query " + std::to_string(q));
    }
  }

  // Remove every 5th id (20%: below the compaction threshold), plus absent ids and a repeat.
  std::vector<int64_t> gone_ids;
  for (size_t i = 0; i < n; i += 5) gone_ids.push_back(ids[i]);
  std::vector<int64_t> to_remove = gone_ids;
  to_remove.push_back(gone_ids[0]);
  to_remove.push_back(ids[1] ^ (int64_t{1} << 50));
  to_remove.push_back(ids[2] ^ (int64_t{1} << 51));
  const size_t memory_before = index.memory_bytes();
  EXPECT_EQ(index.remove(to_remove), gone_ids.size());
  EXPECT_EQ(index.remove(std::vector<int64_t>{gone_ids[1]}), 0u);
  EXPECT_EQ(index.size(), n - gone_ids.size());
  EXPECT_FALSE(index.contains(gone_ids[3]));
  EXPECT_TRUE(index.contains(ids[1]));
  const std::set<int64_t> gone(gone_ids.begin(), gone_ids.end());
  exact.remove(gone_ids);

  auto check_against_oracles = [&](const std::vector<std::vector<Hit>>& ranking, const std::set<int64_t>& removed,
                                   const std::string& stage) {
    const auto hits = index.search(queries.data(), nq, 10);
    for (size_t q = 0; q < nq; ++q) {
      const std::string what = stage + ", query " + std::to_string(q);
      expect_same_hits(hits[q], without(ranking[q], removed, 10), what);
      if (exact_scores) expect_equals_brute_force(hits[q], exact.top(&queries[q * dim], 10), what);
      expect_same_hits(index.search(&queries[q * dim], 1, 10)[0], hits[q], what + " alone");
    }
  };
  check_against_oracles(full, gone, "after remove");

  index.compact();
  check_against_oracles(full, gone, "after compact");
  EXPECT_LT(index.memory_bytes(), memory_before);

  // Replace 20 live ids with new vectors: they move, every other entry stays where it was.
  std::vector<int64_t> replaced;
  for (size_t i = 1; replaced.size() < 20; i += 7) {
    if (!gone.count(ids[i])) replaced.push_back(ids[i]);
  }
  const Rows fresh = random_unit(replaced.size(), dim, 74);
  const size_t live = index.size();
  const auto pre = index.search(queries.data(), nq, all);
  index.add(replaced, fresh.data());
  exact.add(replaced, fresh);
  EXPECT_EQ(index.size(), live);
  const auto post = index.search(queries.data(), nq, all);
  const std::set<int64_t> moved(replaced.begin(), replaced.end());
  for (size_t q = 0; q < nq; ++q) {
    ASSERT_EQ(post[q].size(), live);
    expect_same_hits(without(post[q], moved, live), without(pre[q], moved, live), "after replace");
    size_t seen = 0;
    for (const Hit& h : post[q]) seen += moved.count(h.id);
    EXPECT_EQ(seen, moved.size()) << "each replaced id exactly once";
  }
  const auto by_fresh = index.search(fresh.data(), replaced.size(), 1);
  for (size_t i = 0; i < replaced.size(); ++i) {
    ASSERT_EQ(by_fresh[i].size(), 1u);
    EXPECT_EQ(by_fresh[i][0].id, replaced[i]);
    // int8 rounds each of the 32 coordinates by up to half a step of its vector's scale; PQ codes
    // of 4-d pieces lose much more.
    const double tolerance = exact_scores ? 1e-5 : c.kind == IndexKind::Int8 ? 0.02 : 0.25;
    EXPECT_NEAR(by_fresh[i][0].score, 1.0f, tolerance);
  }

  // Removing 30% more crosses the threshold: add/remove compact by themselves (memory shrinks).
  std::vector<int64_t> more;
  for (size_t i = 2; i < n && more.size() < live * 3 / 10; i += 5) more.push_back(ids[i]);
  const size_t memory_full = index.memory_bytes();
  EXPECT_EQ(index.remove(more), more.size());
  exact.remove(more);
  EXPECT_LT(index.memory_bytes(), memory_full * 85 / 100);
  check_against_oracles(post, std::set<int64_t>(more.begin(), more.end()), "after automatic compaction");

  // Everything removed, then filled again.
  std::vector<int64_t> rest;
  for (int64_t id : ids) {
    if (index.contains(id)) rest.push_back(id);
  }
  EXPECT_EQ(index.remove(rest), rest.size());
  EXPECT_EQ(index.size(), 0u);
  EXPECT_TRUE(index.search(queries.data(), 1, 5)[0].empty());
  index.add(std::span(ids).first(3), rows.data());
  const auto again = index.search(rows.data(), 1, 1)[0];
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, ids[0]);
}

INSTANTIATE_TEST_SUITE_P(Kinds, RemovalTest,
                         ::testing::Values(KindCase{IndexKind::Flat, 800, 32}, KindCase{IndexKind::Int8, 800, 32},
                                           KindCase{IndexKind::Hnsw, 800, 32},
                                           KindCase{IndexKind::IvfPq, 10000, 32}),
                         [](const auto& info) { return index_kind_name(info.param.kind); });

// Deferred ivfpq training (Gallery runs it outside its exclusive lock). With no writes between
// start and finish it builds bit for bit the index add() builds in place; writes in between (adds,
// removals, replacements, enough dead slots to want a compaction) are searched exactly meanwhile
// and carried over by the switch.
TEST(VectorIndex, DeferredIvfPqTrainingEqualsInPlaceAndCarriesOverLaterWrites) {
  const int dim = 32;
  IndexSpec spec = exhaustive_spec(IndexKind::IvfPq);
  spec.ivf_nlist = 16;
  spec.ivf_nprobe = 16;
  spec.train_min = 1000;
  const size_t n = 1600;
  const Rows rows = random_unit(n, dim, 91);
  const auto ids = scattered_ids(n, 92);
  // 1000 live and 50 dead slots when training is due.
  auto fill = [&](VectorIndex& index) {
    index.add(std::span(ids).first(600), rows.data());
    index.remove(std::span(ids).first(50));
    index.add(std::span(ids).subspan(600, 450), &rows[600 * dim]);
  };
  VectorIndex in_place(dim, spec);
  fill(in_place);
  ASSERT_EQ(in_place.effective_kind(), "ivfpq");

  VectorIndex deferred(dim, spec);
  deferred.set_deferred_training(true);
  fill(deferred);
  EXPECT_EQ(deferred.effective_kind(), "flat");
  ASSERT_TRUE(deferred.training_due());
  {
    auto unrun = deferred.start_training();
    ASSERT_TRUE(unrun.has_value());
    EXPECT_FALSE(deferred.training_due());
    EXPECT_FALSE(deferred.start_training().has_value());
    EXPECT_THROW(in_place.finish_training(std::move(*unrun)), Error);
    deferred.finish_training(std::move(*unrun));  // never ran: still exact, due again
    EXPECT_EQ(deferred.effective_kind(), "flat");
    EXPECT_TRUE(deferred.training_due());
  }
  auto training = deferred.start_training();
  training->run();
  EXPECT_EQ(deferred.effective_kind(), "flat");
  deferred.finish_training(std::move(*training));
  EXPECT_EQ(deferred.effective_kind(), "ivfpq");
  const size_t nq = 20;
  const Rows queries = random_unit(nq, dim, 93);
  const auto want = in_place.search(queries.data(), nq, 10), got = deferred.search(queries.data(), nq, 10);
  for (size_t q = 0; q < nq; ++q) {
    ASSERT_EQ(got[q].size(), want[q].size());
    for (size_t j = 0; j < want[q].size(); ++j) {
      EXPECT_EQ(got[q][j].id, want[q][j].id) << "query " << q << " rank " << j;
      EXPECT_EQ(got[q][j].score, want[q][j].score) << "query " << q << " rank " << j;
    }
  }

  VectorIndex busy(dim, spec);
  busy.set_deferred_training(true);
  fill(busy);
  BruteForce exact(dim);
  exact.add(std::vector<int64_t>(ids.begin() + 50, ids.begin() + 1050), Rows(rows.begin() + 50 * dim, rows.begin() + 1050 * dim));
  auto out = busy.start_training();
  ASSERT_TRUE(out.has_value());
  // While it is out: 550 adds, 350 removals and 50 replacements of copied ids (27% dead slots).
  const std::vector<int64_t> later(ids.begin() + 1050, ids.end()), removed(ids.begin() + 50, ids.begin() + 400),
      replaced(ids.begin() + 400, ids.begin() + 450);
  const Rows later_rows(rows.begin() + 1050 * dim, rows.end()), fresh = random_unit(replaced.size(), dim, 94);
  busy.add(later, later_rows.data());
  EXPECT_EQ(busy.remove(removed), removed.size());
  busy.add(replaced, fresh.data());
  exact.add(later, later_rows);
  exact.remove(removed);
  exact.add(replaced, fresh);
  for (size_t q = 0; q < nq; ++q) {
    expect_equals_brute_force(busy.search(&queries[q * dim], 1, 10)[0], exact.top(&queries[q * dim], 10), "while out");
  }
  out->run();
  busy.finish_training(std::move(*out));
  EXPECT_EQ(busy.effective_kind(), "ivfpq");
  ASSERT_EQ(busy.size(), exact.size());
  // The exhaustive ranking holds every live id once and nothing else.
  std::set<int64_t> live, ranked;
  for (const RefHit& r : exact.top(queries.data(), exact.size())) live.insert(r.id);
  const auto full = busy.search(queries.data(), 1, static_cast<int>(busy.size()))[0];
  for (const Hit& h : full) ranked.insert(h.id);
  EXPECT_EQ(full.size(), live.size());
  EXPECT_EQ(ranked, live);
  // Vectors written while it was out are encoded: each finds its own id first.
  const auto by_fresh = busy.search(fresh.data(), replaced.size(), 1);
  const auto by_later = busy.search(later_rows.data(), 50, 1);
  for (size_t i = 0; i < 50; ++i) {
    ASSERT_EQ(by_fresh[i].size(), 1u);
    EXPECT_EQ(by_fresh[i][0].id, replaced[i]);
    ASSERT_EQ(by_later[i].size(), 1u);
    EXPECT_EQ(by_later[i][0].id, later[i]);
  }
}

TEST(VectorIndex, ConcurrentSearchesAgreeWithSerialOnes) {
  const int dim = 64;
  const Rows rows = random_unit(3000, dim, 81);
  VectorIndex index(dim, IndexSpec{IndexKind::Int8});
  const auto ids = scattered_ids(3000, 82);
  index.add(ids, rows.data());
  index.remove(std::span(ids).first(600));  // 20% dead: searches go through the slot selector
  const Rows queries = random_unit(64, dim, 83);
  const auto serial = index.search(queries.data(), 64, 5);
  std::vector<std::vector<std::vector<Hit>>> got(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < got.size(); ++t) {
    threads.emplace_back([&, t] {
      for (size_t q = 0; q < 64; ++q) got[t].push_back(index.search(&queries[q * dim], 1, 5)[0]);
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& one : got) {
    for (size_t q = 0; q < 64; ++q) expect_same_hits(one[q], serial[q], "thread query " + std::to_string(q));
  }
}

// ---------------------------------------------------------------------------------------------
// The exact scan (exact_scan.hpp) on its own.

std::vector<exact::SimdLevel> available_levels() {
  std::vector<exact::SimdLevel> out;
  for (auto level : {exact::SimdLevel::Baseline, exact::SimdLevel::Avx2, exact::SimdLevel::Avx512}) {
    if (static_cast<int>(level) <= static_cast<int>(exact::detected_simd_level())) out.push_back(level);
  }
  return out;
}

// Restores automatic SIMD dispatch however a test ends.
struct ForcedLevel {
  explicit ForcedLevel(exact::SimdLevel level) { exact::force_simd_level(level); }
  ~ForcedLevel() { exact::clear_forced_simd_level(); }
};

TEST(ExactScan, KernelsEqualScalarSumsOnEverySimdLevel) {
  std::mt19937_64 rng(91);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  std::uniform_int_distribution<int> byte(-128, 127);
  for (const auto level : available_levels()) {
    ForcedLevel forced(level);
    const std::string name = exact::simd_level_name(level);
    // Lengths around every unrolling boundary (8, 16, 32, 64) and a face embedding's.
    for (const size_t dim : {1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 511, 512, 515}) {
      std::vector<float> a(dim), b(dim);
      for (auto& x : a) x = uniform(rng);
      for (auto& x : b) x = uniform(rng);
      double want = 0, magnitude = 0;
      for (size_t i = 0; i < dim; ++i) {
        want += double(a[i]) * b[i];
        magnitude += std::abs(double(a[i]) * b[i]);
      }
      EXPECT_NEAR(exact::dot_fp32(a.data(), b.data(), dim), want, 1e-5 * magnitude) << name << " dim " << dim;

      std::vector<int8_t> p(dim), q(dim);
      for (auto& x : p) x = static_cast<int8_t>(byte(rng));
      for (auto& x : q) x = static_cast<int8_t>(byte(rng));
      int64_t exact_sum = 0;
      for (size_t i = 0; i < dim; ++i) exact_sum += int64_t{p[i]} * q[i];
      EXPECT_EQ(exact::dot_int8(p.data(), q.data(), dim), exact_sum) << name << " dim " << dim;
      // Extremes: any saturation (int16 pair sums, as in pmaddubsw) would show here.
      const std::vector<int8_t> lowest(dim, -128), highest(dim, 127);
      EXPECT_EQ(exact::dot_int8(lowest.data(), lowest.data(), dim), int64_t(dim) * 128 * 128) << name;
      EXPECT_EQ(exact::dot_int8(lowest.data(), highest.data(), dim), -int64_t(dim) * 128 * 127) << name;
    }
  }
}

TEST(ExactScan, QuantisationIsSymmetricPerVector) {
  const int dim = 512;
  const Rows rows = random_unit(20, dim, 92);
  std::vector<int8_t> codes(dim);
  for (size_t r = 0; r < 20; ++r) {
    const float* x = &rows[r * dim];
    const float scale = exact::quantise_int8(x, dim, codes.data());
    float max_abs = 0;
    for (int d = 0; d < dim; ++d) max_abs = std::max(max_abs, std::abs(x[d]));
    EXPECT_FLOAT_EQ(scale, max_abs / 127.f);
    int largest = 0;
    for (int d = 0; d < dim; ++d) {
      EXPECT_LE(std::abs(codes[d] - double(x[d]) / scale), 0.5 + 1e-4) << "row " << r << " dim " << d;
      largest = std::max(largest, std::abs(int{codes[d]}));
    }
    EXPECT_EQ(largest, 127);
  }
  const std::vector<float> zero(dim, 0.f);
  EXPECT_EQ(exact::quantise_int8(zero.data(), dim, codes.data()), 0.f);
  EXPECT_TRUE(std::all_of(codes.begin(), codes.end(), [](int8_t c) { return c == 0; }));
}

// The scan's top-k against a full sort of the kernel's own scores (score desc, slot asc), for the
// serial scan, a threaded one and every SIMD level; rows repeat so that ties occur.
TEST(ExactScan, ThreadedAndSerialScansEqualASortedFullScore) {
  const int dim = 100;
  const size_t distinct = 1700, n = 3 * distinct;  // each row three times: exact ties
  const Rows base = random_unit(distinct, dim, 93);
  Rows rows;
  for (int copy = 0; copy < 3; ++copy) rows.insert(rows.end(), base.begin(), base.end());
  std::vector<uint8_t> live(n, 1);
  for (size_t s = 0; s < n; s += 7) live[s] = 0;
  std::vector<int8_t> codes(n * dim);
  std::vector<float> scales(n);
  for (size_t s = 0; s < n; ++s) scales[s] = exact::quantise_int8(&rows[s * dim], dim, &codes[s * dim]);
  const Rows queries = random_unit(7, dim, 94);
  const size_t k = 40;

  const exact::Fp32Rows fp32{rows.data(), n, size_t(dim), live.data()};
  const exact::Int8Rows int8{codes.data(), scales.data(), n, size_t(dim), live.data()};
  const exact::ScanOptions serial{1, 20000};
  const exact::ScanOptions threaded{4, 2};  // 4 threads whatever n
  for (const auto level : available_levels()) {
    ForcedLevel forced(level);
    const std::string name = exact::simd_level_name(level);
    // The oracle: every live row scored one at a time by the same kernels, fully sorted.
    std::vector<int8_t> query_codes(dim);
    for (size_t q = 0; q < 7; ++q) {
      const float* query = &queries[q * dim];
      const float query_scale = exact::quantise_int8(query, dim, query_codes.data());
      std::vector<exact::ScanHit> all_fp32, all_int8;
      for (size_t s = 0; s < n; ++s) {
        if (!live[s]) continue;
        all_fp32.push_back({int64_t(s), exact::dot_fp32(query, &rows[s * dim], dim)});
        const int32_t dot = exact::dot_int8(query_codes.data(), &codes[s * dim], dim);
        all_int8.push_back({int64_t(s), static_cast<float>(dot) * (query_scale * scales[s])});
      }
      const auto order = [](const exact::ScanHit& a, const exact::ScanHit& b) {
        return a.score != b.score ? a.score > b.score : a.slot < b.slot;
      };
      std::sort(all_fp32.begin(), all_fp32.end(), order);
      std::sort(all_int8.begin(), all_int8.end(), order);
      all_fp32.resize(k);
      all_int8.resize(k);

      auto expect_equal = [&](const std::vector<exact::ScanHit>& got, const std::vector<exact::ScanHit>& want,
                              const std::string& what) {
        ASSERT_EQ(got.size(), want.size()) << what;
        for (size_t j = 0; j < want.size(); ++j) {
          EXPECT_EQ(got[j].slot, want[j].slot) << what << " rank " << j;
          EXPECT_EQ(got[j].score, want[j].score) << what << " rank " << j;  // bit for bit
        }
      };
      const std::string at = name + " query " + std::to_string(q);
      expect_equal(exact::top_k(query, 1, fp32, k, serial)[0], all_fp32, "fp32 serial, " + at);
      expect_equal(exact::top_k(query, 1, fp32, k, threaded)[0], all_fp32, "fp32 threaded, " + at);
      expect_equal(exact::top_k(query, 1, int8, k, serial)[0], all_int8, "int8 serial, " + at);
      expect_equal(exact::top_k(query, 1, int8, k, threaded)[0], all_int8, "int8 threaded, " + at);
      // The same query inside a batch (blocked over rows x queries).
      expect_equal(exact::top_k(queries.data(), 7, fp32, k, threaded)[q], all_fp32, "fp32 batch, " + at);
      expect_equal(exact::top_k(queries.data(), 7, int8, k, serial)[q], all_int8, "int8 batch, " + at);
    }
  }
  // More than the live rows: all of them; nothing asked: nothing.
  const size_t live_rows = static_cast<size_t>(std::count(live.begin(), live.end(), 1));
  EXPECT_EQ(exact::top_k(queries.data(), 1, int8, n + 5, threaded)[0].size(), live_rows);
  EXPECT_TRUE(exact::top_k(queries.data(), 1, fp32, 0, threaded)[0].empty());
}

TEST(ExactScan, EveryLevelFindsWhatTheDetectedOneFinds) {
  const int dim = 512;
  const Rows rows = random_unit(3000, dim, 95);
  const auto ids = scattered_ids(3000, 96);
  VectorIndex flat(dim, IndexSpec{IndexKind::Flat});
  VectorIndex int8(dim, IndexSpec{IndexKind::Int8});
  flat.add(ids, rows.data());
  int8.add(ids, rows.data());
  const Rows queries = random_unit(5, dim, 97);
  const auto flat_auto = flat.search(queries.data(), 5, 10);
  const auto int8_auto = int8.search(queries.data(), 5, 10);
  for (const auto level : available_levels()) {
    ForcedLevel forced(level);
    const std::string name = exact::simd_level_name(level);
    const auto flat_forced = flat.search(queries.data(), 5, 10);
    const auto int8_forced = int8.search(queries.data(), 5, 10);
    for (size_t q = 0; q < 5; ++q) {
      expect_same_hits(flat_forced[q], flat_auto[q], name + " flat query " + std::to_string(q));
      // int8 dot products are integers: every level gives the same scores bit for bit.
      ASSERT_EQ(int8_forced[q].size(), int8_auto[q].size());
      for (size_t j = 0; j < int8_auto[q].size(); ++j) {
        EXPECT_EQ(int8_forced[q][j].id, int8_auto[q][j].id) << name;
        EXPECT_EQ(int8_forced[q][j].score, int8_auto[q][j].score) << name;
      }
    }
  }
  RecordProperty("simd_level", exact::simd_level_name(exact::detected_simd_level()));
}

}  // namespace
}  // namespace arcforge::gallery
