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
// (effective_kind() says "flat"), then it is trained on what it holds and switches. The training
// can run outside the caller's write lock (set_deferred_training; Gallery does).
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

// An ivfpq training taken out of VectorIndex::add (VectorIndex::start_training): a copy of the
// live vectors. run() trains on it and encodes it, touching nothing the index shares, so it needs
// no lock while the index is searched.
class IvfPqTraining {
 public:
  ~IvfPqTraining();
  IvfPqTraining(IvfPqTraining&&) noexcept;
  IvfPqTraining& operator=(IvfPqTraining&&) noexcept;
  void run();  // k-means of the lists and the codebooks, then the encoding: the expensive part

 private:
  friend class VectorIndex;
  struct Impl;
  explicit IvfPqTraining(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
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
  // Waits (does nothing) while a training is out: finish_training maps the slots it snapshotted.
  void compact();

  // ivfpq training outside the caller's write lock. Deferred, add() leaves an index that reached
  // train_min searching exactly on fp32 and training_due() turns true; then
  //   start_training()      (write lock) copies the live vectors
  //   IvfPqTraining::run()  (no lock)    trains on them while searches go on
  //   finish_training()     (write lock) switches, encoding what was added since and dropping
  //                                      what was removed since.
  // Not deferred (the default), add() does the three itself.
  void set_deferred_training(bool deferred);
  bool training_due() const;
  std::optional<IvfPqTraining> start_training();  // nullopt unless training_due()
  // A training that never ran (or threw) only ends the wait: the index stays exact and is due again.
  void finish_training(IvfPqTraining&& training);

  int dim() const { return dim_; }
  size_t size() const;           // live vectors
  size_t memory_bytes() const;   // bytes held by the vectors (codes, graph, lists) and our id maps
  const IndexSpec& spec() const { return spec_; }
  std::string effective_kind() const;  // what searches run on now (ivfpq is "flat" untrained)

 private:
  void train_now();  // start, run and finish in place (add() when not deferred)
  struct Impl;
  int dim_;
  IndexSpec spec_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arcforge::gallery
