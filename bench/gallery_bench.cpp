// gallery_bench: VectorIndex (each kind) next to the same FAISS index used directly, on synthetic
// face-like embeddings: `--per-identity` unit vectors around each of n/per-identity random centres
// (cosine between two samples of one identity about 0.6, as with ArcFace embeddings of one person),
// queries = new samples of enrolled identities.
//
// For each size and kind: build time (ids added in chunks of --chunk, as a growing gallery would;
// ivfpq trains when it reaches train_min, so FAISS-direct is trained on the same first vectors),
// memory per vector (VectorIndex::memory_bytes() / n and the process RSS growth / n), single-query
// latency p50/p99 (k=10, one query per call), batched throughput (queries/s in batches of --batch),
// recall@1 and recall@10 against exact fp32 search (FAISS IndexFlatIP), and overhead = our latency /
// FAISS's. Our calls and FAISS's alternate query by query (batch by batch), so both see the same load.
// FAISS-direct gets what VectorIndex would have used from FAISS: same index type, metric,
// M/efConstruction/efSearch, nlist/nprobe/pq_m, training vectors, and FAISS's own OpenMP behaviour.
// For flat (single queries) and int8, VectorIndex runs its own SIMD scan (src/gallery/exact_scan.cpp;
// int8 = per-vector symmetric codes) while FAISS-direct runs IndexFlatIP and IndexScalarQuantizer
// QT_8bit (trained on the first train_threshold() vectors): the ratio is then our speed-up, not an
// overhead. Debian's libfaiss is built without SIMD, which is most of that speed-up.
//
//   gallery_bench [--sizes 10k,100k,1m] [--kinds flat,int8,hnsw,ivfpq] [--dim 512] [--queries 1000]
//                 [--single 200] [--single-seconds 3] [--batch 64] [--batch-seconds 5] [--k 10]
//                 [--chunk 10000] [--per-identity 4] [--hnsw-ef-construction 80]
//                 [--hnsw-large-ef-construction 40] [--hnsw-large-from 1m] [--skip-faiss hnsw]
//                 [--json out.json] [--seed 1]
//
// VectorIndex's hnsw runs FAISS's graph code over our SIMD dot product (src/gallery/
// simd_flat_storage.hpp); FAISS-direct is IndexHNSWFlat on libfaiss's scalar one, whose build takes
// hours at 1M on 2 cores. --skip-faiss KINDS leaves FAISS-direct out for those kinds (the table shows
// "-" on its side and says why; the JSON has null there), so such a row measures ours only.
//
// HNSW is built with efConstruction --hnsw-ef-construction (VectorIndex's default, 80) below
// --hnsw-large-from vectors and --hnsw-large-ef-construction from there on, to keep large builds
// within a benchmark's time; the table's kind column and the JSON spec say which applied.
//
// Latency and throughput are measured until --single (queries) / all --queries are done or the
// time budget per side is spent, whichever comes first (at least 10 single queries, 1 batch); the
// table says how many were timed. Prints a markdown table; --json writes every figure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <nlohmann/json.hpp>
#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include "arcforge/common/error.hpp"
#include "arcforge/gallery/vector_index.hpp"

using namespace arcforge;
using namespace arcforge::gallery;
using Clock = std::chrono::steady_clock;
using Label = faiss::Index::idx_t;

namespace {

struct Args {
  std::vector<size_t> sizes{10000, 100000};
  std::vector<IndexKind> kinds{IndexKind::Flat, IndexKind::Int8, IndexKind::Hnsw, IndexKind::IvfPq};
  int dim = 512;
  size_t queries = 1000;
  size_t single = 200;
  double single_seconds = 3;
  size_t batch = 64;
  double batch_seconds = 5;
  int k = 10;
  size_t chunk = 10000;
  size_t per_identity = 4;
  int ef_construction = 80;
  int large_ef_construction = 40;
  size_t large_from = 1000000;
  std::vector<IndexKind> skip_faiss;  // kinds measured without FAISS-direct
  std::string json_path;
  uint64_t seed = 1;
};

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream s(text);
  std::string part;
  while (std::getline(s, part, sep)) {
    if (!part.empty()) out.push_back(part);
  }
  return out;
}

size_t parse_size(const std::string& text) {
  size_t scale = 1;
  std::string digits = text;
  const char last = static_cast<char>(std::tolower(static_cast<unsigned char>(text.back())));
  if (last == 'k') scale = 1000;
  if (last == 'm') scale = 1000000;
  if (scale > 1) digits.pop_back();
  try {
    size_t used = 0;
    const auto value = std::stoull(digits, &used);
    if (used != digits.size() || value == 0) throw std::invalid_argument(text);
    return value * scale;
  } catch (const std::exception&) {
    throw InputError("--sizes: '" + text + "' is not a size such as 10000, 100k or 1m");
  }
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (i + 1 >= argc) throw InputError(key + ": missing value");
    const std::string value = argv[++i];
    if (key == "--sizes") {
      a.sizes.clear();
      for (const auto& s : split(value, ',')) a.sizes.push_back(parse_size(s));
    } else if (key == "--kinds") {
      a.kinds.clear();
      for (const auto& s : split(value, ',')) a.kinds.push_back(parse_index_kind(s));
    } else if (key == "--dim") a.dim = std::stoi(value);
    else if (key == "--queries") a.queries = std::stoul(value);
    else if (key == "--single") a.single = std::stoul(value);
    else if (key == "--single-seconds") a.single_seconds = std::stod(value);
    else if (key == "--batch") a.batch = std::stoul(value);
    else if (key == "--batch-seconds") a.batch_seconds = std::stod(value);
    else if (key == "--k") a.k = std::stoi(value);
    else if (key == "--chunk") a.chunk = std::stoul(value);
    else if (key == "--per-identity") a.per_identity = std::stoul(value);
    else if (key == "--hnsw-ef-construction") a.ef_construction = std::stoi(value);
    else if (key == "--hnsw-large-ef-construction") a.large_ef_construction = std::stoi(value);
    else if (key == "--hnsw-large-from") a.large_from = parse_size(value);
    else if (key == "--skip-faiss") {
      for (const auto& s : split(value, ',')) a.skip_faiss.push_back(parse_index_kind(s));
    } else if (key == "--json") a.json_path = value;
    else if (key == "--seed") a.seed = std::stoull(value);
    else throw InputError("unknown option " + key);
  }
  if (a.dim < 1 || a.k < 1 || a.batch < 1 || a.chunk < 1 || a.per_identity < 1 || a.queries < a.batch) {
    throw InputError("--dim, --k, --batch, --chunk, --per-identity must be positive and --queries >= --batch");
  }
  return a;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Resident set after handing freed heap back to the kernel, so that memory another index freed
// (or an index's own transient buffers) does not hide or inflate what is held.
size_t rss_bytes() {
  malloc_trim(0);
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

size_t growth_since(size_t rss0) {
  const size_t now = rss_bytes();
  return now > rss0 ? now - rss0 : 0;
}

void normalise(float* v, int dim) {
  double norm = 0;
  for (int i = 0; i < dim; ++i) norm += double(v[i]) * v[i];
  const auto scale = static_cast<float>(1.0 / std::sqrt(norm));
  for (int i = 0; i < dim; ++i) v[i] *= scale;
}

// centre + noise of expected norm 0.8 (sample-to-sample cosine about 1/(1+0.64) = 0.61).
void sample_around(const float* centre, int dim, std::mt19937_64& rng, float* out) {
  std::normal_distribution<float> noise(0.f, 0.8f / std::sqrt(float(dim)));
  for (int d = 0; d < dim; ++d) out[d] = centre[d] + noise(rng);
  normalise(out, dim);
}

void random_unit(int dim, std::mt19937_64& rng, float* out) {
  std::normal_distribution<float> normal;
  for (int d = 0; d < dim; ++d) out[d] = normal(rng);
  normalise(out, dim);
}

struct Dataset {
  std::vector<float> base;     // n x dim; row i belongs to identity i / per_identity
  std::vector<float> queries;  // nq x dim
  std::vector<size_t> query_identity;
  size_t per_identity = 1;
};

// Every identity draws from its own seeded generator, so the data does not depend on the thread count.
Dataset make_dataset(size_t n, size_t nq, int dim, size_t per_identity, uint64_t seed) {
  const size_t identities = (n + per_identity - 1) / per_identity;
  Dataset data;
  data.base.resize(n * dim);
  data.queries.resize(nq * dim);
  data.per_identity = per_identity;
  std::vector<float> centres(identities * dim);
  auto work = [&](size_t part, size_t parts) {
    for (size_t c = part; c < identities; c += parts) {
      std::mt19937_64 rng(seed * 1000003 + c);
      random_unit(dim, rng, &centres[c * dim]);
      for (size_t s = 0; s < per_identity && c * per_identity + s < n; ++s) {
        sample_around(&centres[c * dim], dim, rng, &data.base[(c * per_identity + s) * dim]);
      }
    }
  };
  const size_t threads = std::max(1, omp_get_max_threads());
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) pool.emplace_back(work, t, threads);
  for (auto& t : pool) t.join();
  std::mt19937_64 rng(seed * 7 + 3);
  for (size_t q = 0; q < nq; ++q) {
    const size_t identity = rng() % identities;
    data.query_identity.push_back(identity);
    sample_around(&centres[identity * dim], dim, rng, &data.queries[q * dim]);
  }
  return data;
}

IndexSpec bench_spec(IndexKind kind, size_t n, const Args& a) {
  IndexSpec spec{kind};
  spec.hnsw_ef_construction = n >= a.large_from ? a.large_ef_construction : a.ef_construction;
  // Explicit, so that FAISS-direct gets the same list count: about 4*sqrt(n), at most n/39, at most 1024.
  const auto by_sqrt = static_cast<size_t>(std::lround(4.0 * std::sqrt(double(n))));
  spec.ivf_nlist = static_cast<int>(std::max<size_t>(1, std::min({by_sqrt, n / 39, size_t{1024}})));
  return spec;
}

// VectorIndex's rule (vector_index.cpp): how many vectors int8/ivfpq hold when they are trained.
size_t train_threshold(const IndexSpec& spec) {
  if (spec.kind == IndexKind::Int8) return spec.train_min > 0 ? spec.train_min : 1000;
  const auto nlist = static_cast<size_t>(spec.ivf_nlist);
  const size_t wanted = spec.train_min > 0 ? spec.train_min : std::max<size_t>(10000, 39 * nlist);
  return std::max({wanted, size_t{256}, nlist});
}

std::unique_ptr<faiss::Index> faiss_index(const IndexSpec& spec, int dim, bool trained_kind) {
  if (spec.kind == IndexKind::Hnsw) {
    auto index = std::make_unique<faiss::IndexHNSWFlat>(dim, spec.hnsw_m, faiss::METRIC_INNER_PRODUCT);
    index->hnsw.efConstruction = spec.hnsw_ef_construction;
    index->hnsw.efSearch = spec.hnsw_ef_search;
    return index;
  }
  if (!trained_kind || spec.kind == IndexKind::Flat) return std::make_unique<faiss::IndexFlatIP>(dim);
  if (spec.kind == IndexKind::Int8) {
    return std::make_unique<faiss::IndexScalarQuantizer>(dim, faiss::ScalarQuantizer::QT_8bit,
                                                         faiss::METRIC_INNER_PRODUCT);
  }
  auto ivf = std::make_unique<faiss::IndexIVFPQ>(new faiss::IndexFlatIP(dim), dim, spec.ivf_nlist, spec.pq_m, 8,
                                                 faiss::METRIC_INNER_PRODUCT);
  ivf->own_fields = true;
  ivf->cp.seed = 1234;
  ivf->pq.cp.seed = 1234;
  ivf->nprobe = std::min(spec.ivf_nlist, spec.ivf_nprobe);
  return ivf;
}

struct Side {
  double build_s = 0;
  size_t rss_growth = 0;
  size_t memory_bytes = 0;  // ours only
  std::vector<double> single_us;
  double batch_s = 0;
  size_t batched_queries = 0;
  std::vector<Label> top;  // k per batched query
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<size_t>(std::ceil(p * double(v.size())));
  return v[std::min(v.size() - 1, rank > 0 ? rank - 1 : 0)];
}

struct Recall {
  double at1 = 0, at10 = 0;
  double identity_at1 = 0;  // top-1 is a sample of the query's identity (what face search needs)
};

Recall recall(const std::vector<Label>& got, const std::vector<Label>& exact, size_t nq, int k, const Dataset& data) {
  Recall r;
  size_t hits1 = 0, hits_k = 0, identity1 = 0;
  for (size_t q = 0; q < nq; ++q) {
    const Label* g = &got[q * k];
    const Label* e = &exact[q * k];
    hits1 += g[0] == e[0];
    for (int j = 0; j < k; ++j) hits_k += std::find(g, g + k, e[j]) != g + k;
    identity1 += g[0] >= 0 && size_t(g[0]) / data.per_identity == data.query_identity[q];
  }
  if (nq == 0) return r;
  r.at1 = double(hits1) / double(nq);
  r.at10 = double(hits_k) / double(nq * k);
  r.identity_at1 = double(identity1) / double(nq);
  return r;
}

struct Row {
  size_t n;
  IndexKind kind;
  std::string effective;
  IndexSpec spec;
  Side ours, faiss;
  Recall recall_ours, recall_faiss;
  bool with_faiss = true;  // false: --skip-faiss, `faiss` and `recall_faiss` stay empty
};

Row run_kind(IndexKind kind, const Dataset& data, size_t n, const std::vector<Label>& exact, const Args& a) {
  const int dim = a.dim;
  const int k = a.k;
  Row row{n, kind, "", bench_spec(kind, n, a), {}, {}, {}, {}};
  row.with_faiss = std::find(a.skip_faiss.begin(), a.skip_faiss.end(), kind) == a.skip_faiss.end();
  const IndexSpec& spec = row.spec;
  std::vector<int64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int64_t>(i);

  // Ours: grows chunk by chunk, training itself on the way where the kind needs it.
  size_t rss0 = rss_bytes();
  auto t0 = Clock::now();
  VectorIndex ours(dim, spec);
  for (size_t i = 0; i < n; i += a.chunk) {
    const size_t m = std::min(a.chunk, n - i);
    ours.add(std::span(ids).subspan(i, m), &data.base[i * dim]);
  }
  row.ours.build_s = seconds_since(t0);
  row.ours.rss_growth = growth_since(rss0);
  row.ours.memory_bytes = ours.memory_bytes();
  row.effective = ours.effective_kind();

  // FAISS directly: trained on the vectors ours held when it trained, then the same chunks.
  const bool trains = kind == IndexKind::Int8 || kind == IndexKind::IvfPq;
  const size_t threshold = trains ? train_threshold(spec) : 0;
  const bool trained = trains && n >= threshold;
  const size_t train_n = trained ? std::min(n, (threshold + a.chunk - 1) / a.chunk * a.chunk) : 0;
  std::unique_ptr<faiss::Index> direct;
  if (row.with_faiss) {
    rss0 = rss_bytes();
    t0 = Clock::now();
    direct = faiss_index(spec, dim, trained);
    size_t added = 0;
    if (trained) {  // straight to the trained index: FAISS-direct has no interim flat phase
      direct->train(static_cast<Label>(train_n), data.base.data());
      direct->add(static_cast<Label>(train_n), data.base.data());
      added = train_n;
    }
    for (size_t i = added; i < n; i += a.chunk) {
      direct->add(static_cast<Label>(std::min(a.chunk, n - i)), &data.base[i * dim]);
    }
    row.faiss.build_s = seconds_since(t0);
    row.faiss.rss_growth = growth_since(rss0);
  }

  // Single queries, alternating ours / FAISS.
  std::vector<float> distances(a.batch * k);
  std::vector<Label> labels(a.batch * k);
  const size_t nq = data.queries.size() / dim;
  for (size_t q = 0; q < 3; ++q) {  // warm-up: page in, first team start
    ours.search(&data.queries[q * dim], 1, k);
    if (direct) direct->search(1, &data.queries[q * dim], k, distances.data(), labels.data());
  }
  // Without FAISS-direct its budget counts as spent, so ours alone decides when to stop.
  double spent_ours = 0, spent_faiss = direct ? 0 : a.single_seconds;
  for (size_t q = 0; q < a.single; ++q) {
    if (q >= 10 && spent_ours >= a.single_seconds && spent_faiss >= a.single_seconds) break;
    const float* query = &data.queries[(q % nq) * dim];
    auto s = Clock::now();
    const auto hits = ours.search(query, 1, k);
    const double us_ours = seconds_since(s) * 1e6;
    row.ours.single_us.push_back(us_ours);
    spent_ours += us_ours * 1e-6;
    if (direct) {
      s = Clock::now();
      direct->search(1, query, k, distances.data(), labels.data());
      const double us_faiss = seconds_since(s) * 1e6;
      row.faiss.single_us.push_back(us_faiss);
      spent_faiss += us_faiss * 1e-6;
    }
    if (hits.empty() || hits[0].empty()) throw Error("no hit for a single query");
  }

  // Batches, alternating; their answers give recall.
  row.ours.top.assign(nq * k, -1);
  row.faiss.top.assign(nq * k, -1);
  size_t done = 0;
  while (done + a.batch <= nq) {
    const bool faiss_done = !direct || row.faiss.batch_s >= a.batch_seconds;
    if (done > 0 && row.ours.batch_s >= a.batch_seconds && faiss_done) break;
    const float* queries = &data.queries[done * dim];
    auto s = Clock::now();
    const auto hits = ours.search(queries, a.batch, k);
    row.ours.batch_s += seconds_since(s);
    if (direct) {
      s = Clock::now();
      direct->search(static_cast<Label>(a.batch), queries, k, distances.data(), labels.data());
      row.faiss.batch_s += seconds_since(s);
    }
    for (size_t q = 0; q < a.batch; ++q) {
      for (size_t j = 0; j < hits[q].size(); ++j) row.ours.top[(done + q) * k + j] = hits[q][j].id;
      if (direct) std::copy_n(&labels[q * k], k, &row.faiss.top[(done + q) * k]);
    }
    done += a.batch;
  }
  row.ours.batched_queries = done;
  row.recall_ours = recall(row.ours.top, exact, done, k, data);
  if (direct) {
    row.faiss.batched_queries = done;
    row.recall_faiss = recall(row.faiss.top, exact, done, k, data);
  }
  return row;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

nlohmann::json side_json(const Side& s) {
  return {{"build_s", s.build_s},
          {"rss_growth_bytes", s.rss_growth},
          {"single_queries", s.single_us.size()},
          {"p50_us", percentile(s.single_us, 0.5)},
          {"p99_us", percentile(s.single_us, 0.99)},
          {"batched_queries", s.batched_queries},
          {"batch_s", s.batch_s},
          {"qps", s.batch_s > 0 ? double(s.batched_queries) / s.batch_s : 0}};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse_args(argc, argv);
    const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
    std::cout << "gallery_bench: dim " << a.dim << ", k " << a.k << ", batch " << a.batch << ", OpenMP threads "
              << omp_get_max_threads() << ", OMP_WAIT_POLICY=" << (wait_policy ? wait_policy : "(unset)")
              << ", " << a.per_identity << " samples per identity\n"
              << std::endl;
    nlohmann::json out = {{"dim", a.dim},
                          {"k", a.k},
                          {"batch", a.batch},
                          {"threads", omp_get_max_threads()},
                          {"omp_wait_policy", wait_policy ? wait_policy : ""},
                          {"per_identity", a.per_identity},
                          {"results", nlohmann::json::array()}};
    std::vector<Row> rows;
    for (size_t n : a.sizes) {
      auto t0 = Clock::now();
      const size_t nq = std::max(a.queries, a.batch);
      const Dataset data = make_dataset(n, nq, a.dim, a.per_identity, a.seed);
      const double gen_s = seconds_since(t0);
      // Exact answers: FAISS IndexFlatIP (fp32), every query in one batch.
      t0 = Clock::now();
      std::vector<Label> exact(nq * a.k);
      {
        faiss::IndexFlatIP flat(a.dim);
        flat.add(static_cast<Label>(n), data.base.data());
        std::vector<float> d(nq * a.k);
        flat.search(static_cast<Label>(nq), data.queries.data(), a.k, d.data(), exact.data());
      }
      std::cerr << "n=" << n << ": data " << fixed(gen_s, 1) << " s, exact answers " << fixed(seconds_since(t0), 1)
                << " s" << std::endl;
      for (IndexKind kind : a.kinds) {
        t0 = Clock::now();
        rows.push_back(run_kind(kind, data, n, exact, a));
        const Row& r = rows.back();
        std::cerr << "  " << index_kind_name(kind) << ": " << fixed(seconds_since(t0), 1) << " s (build ours "
                  << fixed(r.ours.build_s, 1) << " s, faiss "
                  << (r.with_faiss ? fixed(r.faiss.build_s, 1) + " s)" : "not run)") << std::endl;
        // FAISS-direct's figures are null where --skip-faiss left it out.
        auto theirs = [&](auto value) { return r.with_faiss ? nlohmann::json(value) : nlohmann::json(nullptr); };
        out["results"].push_back({{"n", n},
                                  {"kind", index_kind_name(kind)},
                                  {"effective_kind", r.effective},
                                  {"spec", nlohmann::json::parse(r.spec.to_json())},
                                  {"memory_bytes", r.ours.memory_bytes},
                                  {"memory_bytes_per_vector", double(r.ours.memory_bytes) / double(n)},
                                  {"ours", side_json(r.ours)},
                                  {"faiss", theirs(side_json(r.faiss))},
                                  {"recall_at_1", {{"ours", r.recall_ours.at1}, {"faiss", theirs(r.recall_faiss.at1)}}},
                                  {"recall_at_10", {{"ours", r.recall_ours.at10}, {"faiss", theirs(r.recall_faiss.at10)}}},
                                  {"same_identity_at_1",
                                   {{"ours", r.recall_ours.identity_at1},
                                    {"faiss", theirs(r.recall_faiss.identity_at1)}}}});
      }
    }

    std::cout << "| n | kind | build s (ours / FAISS) | bytes/vector: memory_bytes, RSS (ours / FAISS) | "
                 "single query p50 us (ours / FAISS) | p99 us (ours / FAISS) | overhead p50 | timed | "
                 "queries/s at batch " << a.batch << " (ours / FAISS) | recall@1 (ours / FAISS) | recall@10 (ours / FAISS) | "
                 "same identity@1 (ours / FAISS) |\n"
              << "|---:|---|---|---|---|---|---:|---:|---|---|---|---|\n";
    bool skipped = false;
    for (const Row& r : rows) {
      const double p50o = percentile(r.ours.single_us, 0.5), p50f = percentile(r.faiss.single_us, 0.5);
      const double qo = double(r.ours.batched_queries) / r.ours.batch_s;
      const double qf = double(r.faiss.batched_queries) / r.faiss.batch_s;
      // FAISS's side of a cell, "-" where --skip-faiss left it out.
      auto theirs = [&](double value, int digits) { return r.with_faiss ? fixed(value, digits) : std::string("-"); };
      skipped = skipped || !r.with_faiss;
      std::string kind = index_kind_name(r.kind);
      if (r.effective != kind) kind += " (" + r.effective + ")";
      if (r.kind == IndexKind::Hnsw) kind += " efC " + std::to_string(r.spec.hnsw_ef_construction);
      std::cout << "| " << r.n << " | " << kind << " | " << fixed(r.ours.build_s, 2) << " / " << theirs(r.faiss.build_s, 2)
                << " | " << fixed(double(r.ours.memory_bytes) / double(r.n), 0) << ", "
                << fixed(double(r.ours.rss_growth) / double(r.n), 0) << " / "
                << theirs(double(r.faiss.rss_growth) / double(r.n), 0) << " | " << fixed(p50o, 0) << " / "
                << theirs(p50f, 0) << " | " << fixed(percentile(r.ours.single_us, 0.99), 0) << " / "
                << theirs(percentile(r.faiss.single_us, 0.99), 0) << " | " << theirs(p50o / p50f, 2) << " | "
                << r.ours.single_us.size() << " + " << r.ours.batched_queries << " | " << fixed(qo, 0) << " / "
                << theirs(qf, 0) << " | " << fixed(r.recall_ours.at1, 3) << " / " << theirs(r.recall_faiss.at1, 3)
                << " | " << fixed(r.recall_ours.at10, 3) << " / " << theirs(r.recall_faiss.at10, 3) << " | "
                << fixed(r.recall_ours.identity_at1, 3) << " / " << theirs(r.recall_faiss.identity_at1, 3) << " |\n";
    }
    std::cout << "\ntimed: single queries + batched queries (recall is over the batched ones, against exact fp32 "
                 "search). same identity@1: the top hit is a sample of the query's identity. RSS: resident-set "
                 "growth while building (after malloc_trim), divided by n. overhead: our p50 / FAISS's p50.\n";
    if (skipped) {
      std::cout << "-: FAISS-direct not run (--skip-faiss). Its hnsw is IndexHNSWFlat on libfaiss's scalar inner "
                   "product (Debian builds it without SIMD), whose build takes hours at 1M on 2 cores; ours runs "
                   "FAISS's graph code on our SIMD dot product, so its figures stand alone here.\n";
    }
    if (!a.json_path.empty()) {
      std::ofstream f(a.json_path);
      f << out.dump(2) << "\n";
      if (!f) throw InputError(a.json_path + ": cannot write");
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "gallery_bench: " << e.what() << std::endl;
    return 1;
  }
}
