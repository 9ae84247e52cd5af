#pragma once
// VectorIndex: one index over L2-normalised embeddings, searched by inner product (= cosine), with
// our own 64-bit ids and cheap removal. FAISS holds the flat, hnsw and ivfpq kinds; exact searches
// of a few queries and everything int8 run on our own SIMD scan (src/gallery/exact_scan.hpp).
//
//   VectorIndex index(512, IndexSpec{IndexKind::Hnsw});
//   index.add(ids, vectors);                       // n x 512 floats, row-major
//   auto hits = index.search(queries, nq, /*k=*/5); // best first
//
// Vectors are addressed by their insertion slot; we keep slot <-> id maps. Removal marks the slot
// dead (searches skip it) and compact() rebuilds once dead slots pile up, so removing or replacing a
// vector never costs a pass over the whole index.
//
// Kinds:
//   flat   exact inner product on fp32 (rows in IndexFlatIP), 4*dim bytes a vector; batches of 20+
//          queries go to FAISS (one BLAS sgemm), fewer to our scan
//   int8   exact search over int8 codes, each vector quantised on its own symmetric scale
//          (max|x|/127), queries too; dim + 4 bytes a vector; needs no training
//   hnsw   graph search (FAISS's IndexHNSW over rows scored by our SIMD dot product), approximate
//   ivfpq  inverted lists + product quantisation (IndexIVFPQ), approximate, smallest memory
// ivfpq must be trained: until a collection holds `train_min` vectors it searches exactly on fp32
// (effective_kind() says "flat"), then it is trained on what it holds and switches.
// Not thread-safe for writes: the caller (Gallery) serialises add/remove against searches.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace arcforge::gallery {

enum class IndexKind { Flat, Int8, Hnsw, IvfPq };

// "flat", "int8", "hnsw", "ivfpq"; parse throws InputError listing the valid names.
std::string index_kind_name(IndexKind kind);
IndexKind parse_index_kind(const std::string& name);

struct IndexSpec {
  IndexKind kind = IndexKind::Flat;
  int hnsw_m = 32;                // HNSW neighbours per node
  int hnsw_ef_construction = 80;
  int hnsw_ef_search = 64;
  int ivf_nlist = 0;              // 0: about 4*sqrt(n) at training time
  int ivf_nprobe = 16;
  int pq_m = 64;                  // sub-quantisers (must divide dim); 8 bits each
  size_t train_min = 0;           // ivfpq only; 0: max(10000, 39*nlist)

  // Serialised as a small JSON object in the gallery database.
  std::string to_json() const;
  static IndexSpec from_json(const std::string& json);  // InputError on bad JSON or values
};

struct Hit {
  int64_t id;
  float score;  // inner product; cosine for unit vectors
};

class VectorIndex {
 public:
  VectorIndex(int dim, IndexSpec spec);
  ~VectorIndex();
  VectorIndex(VectorIndex&&) noexcept;
  VectorIndex& operator=(VectorIndex&&) noexcept;

  // Adds n vectors (n = ids.size(), row-major n x dim). An id already present is replaced.
  void add(std::span<const int64_t> ids, const float* vectors);
  // Removes the ids that are present; others are ignored. Returns how many were removed.
  size_t remove(std::span<const int64_t> ids);
  bool contains(int64_t id) const;
  // The vector stored for `id`, exactly as added, where the index keeps fp32 rows (flat, hnsw,
  // ivfpq before training); nullopt when the id is absent or the rows are quantised.
  std::optional<std::vector<float>> exact_vector(int64_t id) const;

  // Top-k per query by inner product, best first; shorter than k when fewer vectors are live.
  std::vector<std::vector<Hit>> search(const float* queries, size_t nq, int k) const;

  // Rebuilds without dead slots. Called by add/remove when dead slots exceed a quarter of the index.
  void compact();

  int dim() const { return dim_; }
  size_t size() const;           // live vectors
  size_t memory_bytes() const;   // bytes held by the vectors (codes, graph, lists) and our id maps
  const IndexSpec& spec() const { return spec_; }
  std::string effective_kind() const;  // what searches run on now (ivfpq is "flat" untrained)

 private:
  struct Impl;
  int dim_;
  IndexSpec spec_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arcforge::gallery
