// VectorIndex: FAISS indexes (or our int8 codes) addressed by insertion slot, our slot <-> id maps,
// removal by dead slots, compaction, and the switch of ivfpq from exact fp32 search to the trained
// index. Exact searches of few queries run on our own SIMD scan (exact_scan.hpp), and HNSW's
// distances on our SIMD dot product (simd_flat_storage.hpp): Debian's FAISS is built without SIMD,
// and only its BLAS path for batches is fast.
#include "arcforge/gallery/vector_index.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/invlists/InvertedLists.h>
#include <omp.h>

#include "arcforge/common/error.hpp"
#include "exact_scan.hpp"
#include "index_spec_check.hpp"
#include "simd_flat_storage.hpp"
#include "training_observer.hpp"

namespace arcforge::gallery {
namespace {

using Slot = faiss::Index::idx_t;

constexpr int kTrainSeed = 1234;          // k-means of the IVF lists and of the PQ codebooks
constexpr size_t kIvfPqTrainMin = 10000;
constexpr size_t kPqCentroids = 256;      // 8-bit sub-quantisers
constexpr size_t kPointsPerList = 39;     // below this FAISS's k-means warns that it lacks data
// From this many queries a flat search goes to FAISS, whose batches run as one BLAS sgemm; fewer
// take our scan (FAISS's per-query loop is the unvectorised reference one).
constexpr size_t kFaissBatchMin = 20;

// Selects live (or dead) slots. FAISS 1.7.3 honours SearchParameters::sel in IndexFlat,
// IndexHNSW (given SearchParametersHNSW) and IndexIVF (given
// SearchParametersIVF), so a search over a partly dead index still returns k live hits;
// test_vector_index.cpp checks that for every kind.
class SlotSelector final : public faiss::IDSelector {
 public:
  SlotSelector(const std::vector<uint8_t>& live, bool want_live) : live_(live), want_live_(want_live) {}
  bool is_member(Slot slot) const override { return (live_[static_cast<size_t>(slot)] != 0) == want_live_; }

 private:
  const std::vector<uint8_t>& live_;
  bool want_live_;
};

// FAISS 1.7.3 opens a full OpenMP team for IndexHNSW searches even for a
// single query: the spare threads find no query to work on (HNSW's each still clear a visited table
// of ntotal bytes). Capping nthreads-var at the number of queries for the call avoids that. The ICV
// belongs to the calling thread's task, so concurrent searches on other threads are unaffected, and
// it is restored on the way out.
class TeamLimit {
 public:
  explicit TeamLimit(size_t queries) : saved_(omp_get_max_threads()) {
    if (queries < static_cast<size_t>(saved_)) {
      omp_set_num_threads(static_cast<int>(std::max<size_t>(queries, 1)));
    } else {
      saved_ = 0;
    }
  }
  ~TeamLimit() {
    if (saved_ > 0) omp_set_num_threads(saved_);
  }
  TeamLimit(const TeamLimit&) = delete;
  TeamLimit& operator=(const TeamLimit&) = delete;

 private:
  int saved_;
};

// IndexHNSW over SimdFlatIP rather than IndexHNSWFlat: FAISS's graph code, with distances from our
// SIMD dot product instead of libfaiss's scalar one (test_vector_index.cpp compares the two).
std::unique_ptr<faiss::IndexHNSW> new_hnsw(int dim, const IndexSpec& spec) {
  return new_simd_hnsw(dim, spec.hnsw_m, spec.hnsw_ef_construction, spec.hnsw_ef_search);
}

// About 4*sqrt(n) lists, but no more than give k-means kPointsPerList training points each.
size_t ivf_list_count(const IndexSpec& spec, size_t n) {
  if (spec.ivf_nlist > 0) return static_cast<size_t>(spec.ivf_nlist);
  const auto by_sqrt = static_cast<size_t>(std::lround(4.0 * std::sqrt(static_cast<double>(n))));
  return std::max<size_t>(1, std::min(by_sqrt, n / kPointsPerList));
}

// How many vectors an ivfpq index must hold before it is trained. It never trains on fewer points
// than a sub-quantiser has centroids, or than it has lists (FAISS refuses both).
size_t train_threshold(const IndexSpec& spec) {
  const auto nlist = static_cast<size_t>(spec.ivf_nlist);
  const size_t wanted = spec.train_min > 0 ? spec.train_min : std::max(kIvfPqTrainMin, kPointsPerList * nlist);
  return std::max({wanted, kPqCentroids, nlist});
}

// What libstdc++ allocates for an unordered_map<int64_t, Slot>: the bucket array, plus per entry a
// node (next pointer + key + value) rounded up to malloc's 16-byte chunks with its 8-byte header.
size_t id_map_bytes(const std::unordered_map<int64_t, Slot>& map) {
  const size_t node = (sizeof(void*) + sizeof(std::pair<const int64_t, Slot>) + 8 + 15) / 16 * 16;
  return map.bucket_count() * sizeof(void*) + map.size() * node;
}

// Counts what the arrays hold (size, not capacity): the slack of a vector that grew by doubling is
// address space that stays untouched, so it is not resident (bench/gallery_bench.cpp compares this
// figure with the process's RSS growth).
size_t faiss_bytes(const faiss::Index& index) {
  if (const auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(&index)) {
    const faiss::HNSW& graph = hnsw->hnsw;
    return faiss_bytes(*hnsw->storage) + graph.neighbors.size() * sizeof(faiss::HNSW::storage_idx_t) +
           graph.levels.size() * sizeof(int) + graph.offsets.size() * sizeof(size_t) +
           graph.assign_probas.size() * sizeof(double) + graph.cum_nneighbor_per_level.size() * sizeof(int);
  }
  if (const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(&index)) {
    size_t bytes = faiss_bytes(*ivf->quantizer);
    if (const auto* lists = dynamic_cast<const faiss::ArrayInvertedLists*>(ivf->invlists)) {
      for (size_t l = 0; l < lists->nlist; ++l) {
        bytes += lists->codes[l].size() + lists->ids[l].size() * sizeof(Slot) + sizeof(lists->codes[l]) +
                 sizeof(lists->ids[l]);
      }
    }
    if (const auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(ivf)) {
      bytes += pq->pq.centroids.size() * sizeof(float) + pq->precomputed_table.size() * sizeof(float);
    }
    return bytes;
  }
  if (const auto* codes = dynamic_cast<const faiss::IndexFlatCodes*>(&index)) return codes->codes.size();
  throw Error("VectorIndex: no memory estimate for this FAISS index");
}

}  // namespace

struct IvfPqTraining::Impl {
  const void* owner = nullptr;      // the VectorIndex::Impl it came from
  int dim = 0;
  IndexSpec spec;
  size_t snapshot_slots = 0;        // slots the index had: rows from here on came later
  std::vector<Slot> slots;          // the live slots copied, in slot order (their FAISS labels)
  std::vector<float> vectors;       // their rows
  std::unique_ptr<faiss::IndexIVFPQ> trained;  // set by run()
};

IvfPqTraining::IvfPqTraining(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IvfPqTraining::~IvfPqTraining() = default;
IvfPqTraining::IvfPqTraining(IvfPqTraining&&) noexcept = default;
IvfPqTraining& IvfPqTraining::operator=(IvfPqTraining&&) noexcept = default;

namespace {
std::function<void()> training_observer;  // testing::set_training_observer
}  // namespace

void testing::set_training_observer(std::function<void()> observer) { training_observer = std::move(observer); }

void IvfPqTraining::run() {
  if (training_observer) training_observer();
  Impl& t = *impl_;
  const size_t n = t.slots.size();
  const size_t nlist = ivf_list_count(t.spec, n);
  auto coarse = std::make_unique<faiss::IndexFlatIP>(t.dim);
  auto quantised = std::make_unique<faiss::IndexIVFPQ>(coarse.get(), t.dim, nlist, t.spec.pq_m, 8,
                                                       faiss::METRIC_INNER_PRODUCT);
  coarse.release();
  quantised->own_fields = true;
  quantised->cp.seed = kTrainSeed;
  quantised->pq.cp.seed = kTrainSeed;
  quantised->nprobe = std::min<size_t>(nlist, static_cast<size_t>(t.spec.ivf_nprobe));
  quantised->train(static_cast<Slot>(n), t.vectors.data());
  quantised->add_with_ids(static_cast<Slot>(n), t.vectors.data(), t.slots.data());
  t.vectors = {};
  t.trained = std::move(quantised);
}

struct VectorIndex::Impl {
  int dim;
  IndexSpec spec;
  std::unique_ptr<faiss::Index> index;  // FAISS labels are slot numbers 0..slots-1; null for int8
  bool trained = false;                 // ivfpq: `index` is the quantised one, not IndexFlatIP
  bool deferred_training = false;       // add() leaves training to the caller
  bool training_out = false;            // a start_training() copy awaits finish_training()
  std::vector<int8_t> int8_codes;       // int8: slot -> dim codes (exact_scan.hpp's quantisation)
  std::vector<float> int8_scales;       // int8: slot -> its scale
  std::vector<int64_t> slot_ids;        // slot -> id (stale for dead slots)
  std::vector<uint8_t> live;            // slot -> 1 while its vector is current
  std::unordered_map<int64_t, Slot> slot_of;  // id -> its live slot
  size_t dead = 0;

  Impl(int dim_, const IndexSpec& spec_) : dim(dim_), spec(spec_) {
    if (spec.kind == IndexKind::Hnsw) {
      index = new_hnsw(dim, spec);
    } else if (spec.kind != IndexKind::Int8) {
      index = std::make_unique<faiss::IndexFlatIP>(dim);
    }
  }

  bool awaits_training() const { return spec.kind == IndexKind::IvfPq && !trained; }

  void store(size_t n, const float* vectors) {
    if (index) {
      index->add(static_cast<Slot>(n), vectors);
      return;
    }
    const size_t first = int8_scales.size(), d = static_cast<size_t>(dim);
    int8_codes.resize((first + n) * d);
    int8_scales.resize(first + n);
    for (size_t i = 0; i < n; ++i) {
      int8_scales[first + i] = exact::quantise_int8(vectors + i * d, d, &int8_codes[(first + i) * d]);
    }
  }

  // The fp32 rows when searches are exact on them (flat, untrained ivfpq); null otherwise.
  const faiss::IndexFlat* exact_fp32() const { return dynamic_cast<const faiss::IndexFlat*>(index.get()); }

  std::vector<std::vector<exact::ScanHit>> exact_search(const float* queries, size_t nq, size_t k) const {
    const uint8_t* skip = dead > 0 ? live.data() : nullptr;
    if (!index) {
      return exact::top_k(queries, nq,
                          exact::Int8Rows{int8_codes.data(), int8_scales.data(), live.size(), size_t(dim), skip}, k);
    }
    return exact::top_k(queries, nq, exact::Fp32Rows{exact_fp32()->get_xb(), live.size(), size_t(dim), skip}, k);
  }
  bool too_many_dead() const { return dead * 4 > slot_ids.size(); }

  void record_added(std::span<const int64_t> ids) {
    for (const int64_t id : ids) {
      const auto slot = static_cast<Slot>(slot_ids.size());
      slot_ids.push_back(id);
      live.push_back(1);
      auto [it, inserted] = slot_of.try_emplace(id, slot);
      if (!inserted) {  // a replacement (also of an earlier row of the same batch)
        live[static_cast<size_t>(it->second)] = 0;
        ++dead;
        it->second = slot;
      }
    }
  }

  // Where the vectors are kept as fp32 rows (flat, hnsw's storage, untrained ivfpq); null otherwise.
  const faiss::IndexFlat* fp32_rows() const {
    const faiss::Index* rows = index.get();
    if (const auto* hnsw = dynamic_cast<const faiss::IndexHNSW*>(rows)) rows = hnsw->storage;
    return dynamic_cast<const faiss::IndexFlat*>(rows);
  }

  // The live vectors in slot order, exact: only for indexes that keep fp32 rows.
  std::vector<float> live_vectors() const {
    const faiss::IndexFlat* flat = fp32_rows();
    if (!flat) throw Error("VectorIndex: vectors can only be read back from fp32 storage");
    std::vector<float> out;
    out.reserve(slot_of.size() * static_cast<size_t>(dim));
    const float* data = flat->get_xb();
    for (size_t s = 0; s < live.size(); ++s) {
      if (live[s]) out.insert(out.end(), data + s * dim, data + (s + 1) * dim);
    }
    return out;
  }

  // After `index` has been rebuilt or stripped of its dead slots (live ones keeping their order),
  // brings the maps to the new numbering. Returns old slot -> new slot (-1 for dead ones).
  std::vector<Slot> renumber_maps() {
    std::vector<Slot> renumbered(slot_ids.size(), -1);
    Slot next = 0;
    for (size_t s = 0; s < slot_ids.size(); ++s) {
      if (!live[s]) continue;
      renumbered[s] = next;
      slot_ids[static_cast<size_t>(next)] = slot_ids[s];
      ++next;
    }
    slot_ids.resize(static_cast<size_t>(next));
    slot_ids.shrink_to_fit();
    live.assign(static_cast<size_t>(next), 1);
    live.shrink_to_fit();
    for (auto& entry : slot_of) entry.second = renumbered[static_cast<size_t>(entry.second)];
    dead = 0;
    return renumbered;
  }

  bool training_due() const {
    return awaits_training() && !training_out && slot_of.size() >= train_threshold(spec);
  }

  IvfPqTraining::Impl snapshot() const {
    IvfPqTraining::Impl t;
    t.owner = this;
    t.dim = dim;
    t.spec = spec;
    t.snapshot_slots = live.size();
    for (size_t s = 0; s < live.size(); ++s) {
      if (live[s]) t.slots.push_back(static_cast<Slot>(s));
    }
    t.vectors = live_vectors();
    return t;
  }

  // The trained index holds the snapshot's rows labelled by their slots. Rows added since are
  // encoded now under their slots too; rows removed since are dead slots, which compact() drops
  // while it renumbers everything as if the training had run in place.
  void switch_to(std::unique_ptr<faiss::IndexIVFPQ> quantised, size_t snapshot_slots) {
    std::vector<Slot> later;
    std::vector<float> rows;
    const float* data = exact_fp32()->get_xb();
    for (size_t s = snapshot_slots; s < live.size(); ++s) {
      if (!live[s]) continue;
      later.push_back(static_cast<Slot>(s));
      rows.insert(rows.end(), data + s * dim, data + (s + 1) * dim);
    }
    if (!later.empty()) quantised->add_with_ids(static_cast<Slot>(later.size()), rows.data(), later.data());
    index = std::move(quantised);
    trained = true;
    compact();
  }

  void compact() {
    if (dead == 0 || training_out) return;  // slots keep their numbers while a training is out
    SlotSelector dead_slots(live, /*want_live=*/false);
    if (!index) {
      // int8 codes: live rows slide down in slot order, as renumber_maps() numbers them.
      const size_t d = static_cast<size_t>(dim);
      size_t next = 0;
      for (size_t s = 0; s < live.size(); ++s) {
        if (!live[s]) continue;
        if (next != s) {
          std::memmove(&int8_codes[next * d], &int8_codes[s * d], d);
          int8_scales[next] = int8_scales[s];
        }
        ++next;
      }
      int8_codes.resize(next * d);
      int8_codes.shrink_to_fit();
      int8_scales.resize(next);
      int8_scales.shrink_to_fit();
      renumber_maps();
    } else if (dynamic_cast<faiss::IndexHNSW*>(index.get())) {
      // FAISS cannot unlink nodes from an HNSW graph: build a new one from the live rows.
      const std::vector<float> vectors = live_vectors();
      auto rebuilt = new_hnsw(dim, spec);
      rebuilt->add(static_cast<Slot>(slot_of.size()), vectors.data());
      index = std::move(rebuilt);
      renumber_maps();
    } else if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index.get())) {
      // Codes are kept as they are (no re-encoding); the lists' labels take the new slot numbers.
      ivf->remove_ids(dead_slots);
      const std::vector<Slot> renumbered = renumber_maps();
      auto* lists = dynamic_cast<faiss::ArrayInvertedLists*>(ivf->invlists);
      if (!lists) throw Error("VectorIndex: ivfpq lists are not in memory");
      for (size_t l = 0; l < lists->nlist; ++l) {
        for (Slot& label : lists->ids[l]) label = renumbered[static_cast<size_t>(label)];
        lists->ids[l].shrink_to_fit();
        lists->codes[l].shrink_to_fit();
      }
    } else if (auto* codes = dynamic_cast<faiss::IndexFlatCodes*>(index.get())) {
      codes->remove_ids(dead_slots);  // keeps the order of the remaining rows
      codes->codes.shrink_to_fit();
      renumber_maps();
    } else {
      throw Error("VectorIndex: cannot compact this FAISS index");
    }
  }
};

VectorIndex::VectorIndex(int dim, IndexSpec spec) : dim_(dim), spec_(spec) {
  if (dim <= 0) throw InputError("vector index: dim must be positive, got " + std::to_string(dim));
  check_index_spec(spec_, dim_, "vector index");
  impl_ = std::make_unique<Impl>(dim_, spec_);
}

VectorIndex::~VectorIndex() = default;
VectorIndex::VectorIndex(VectorIndex&&) noexcept = default;
VectorIndex& VectorIndex::operator=(VectorIndex&&) noexcept = default;

void VectorIndex::add(std::span<const int64_t> ids, const float* vectors) {
  if (ids.empty()) return;
  if (vectors == nullptr) throw InputError("vector index: add of " + std::to_string(ids.size()) + " ids without vectors");
  Impl& m = *impl_;
  m.slot_ids.reserve(m.slot_ids.size() + ids.size());
  m.live.reserve(m.live.size() + ids.size());
  m.store(ids.size(), vectors);
  m.record_added(ids);
  if (!m.deferred_training && m.training_due()) {
    train_now();  // compacts as it goes
  } else if (m.too_many_dead()) {
    m.compact();
  }
}

void VectorIndex::train_now() {
  IvfPqTraining training = *start_training();
  try {
    training.run();
  } catch (...) {
    finish_training(std::move(training));  // stays exact; the next add tries again
    throw;
  }
  finish_training(std::move(training));
}

void VectorIndex::set_deferred_training(bool deferred) { impl_->deferred_training = deferred; }

bool VectorIndex::training_due() const { return impl_->training_due(); }

std::optional<IvfPqTraining> VectorIndex::start_training() {
  if (!impl_->training_due()) return std::nullopt;
  IvfPqTraining training(std::make_unique<IvfPqTraining::Impl>(impl_->snapshot()));
  impl_->training_out = true;
  return training;
}

void VectorIndex::finish_training(IvfPqTraining&& training) {
  Impl& m = *impl_;
  if (!training.impl_ || training.impl_->owner != &m || !m.training_out) {
    throw Error("VectorIndex: finish_training of a training it did not start");
  }
  IvfPqTraining::Impl& t = *training.impl_;
  m.training_out = false;
  if (t.trained) m.switch_to(std::move(t.trained), t.snapshot_slots);
}

size_t VectorIndex::remove(std::span<const int64_t> ids) {
  Impl& m = *impl_;
  size_t removed = 0;
  for (const int64_t id : ids) {
    const auto it = m.slot_of.find(id);
    if (it == m.slot_of.end()) continue;
    m.live[static_cast<size_t>(it->second)] = 0;
    m.slot_of.erase(it);
    ++m.dead;
    ++removed;
  }
  if (m.too_many_dead()) m.compact();
  return removed;
}

bool VectorIndex::contains(int64_t id) const { return impl_->slot_of.count(id) > 0; }

std::optional<std::vector<float>> VectorIndex::exact_vector(int64_t id) const {
  const faiss::IndexFlat* flat = impl_->fp32_rows();
  const auto it = impl_->slot_of.find(id);
  if (!flat || it == impl_->slot_of.end()) return std::nullopt;
  const float* row = flat->get_xb() + static_cast<size_t>(it->second) * static_cast<size_t>(dim_);
  return std::vector<float>(row, row + dim_);
}

std::vector<std::vector<Hit>> VectorIndex::search(const float* queries, size_t nq, int k) const {
  if (k < 1) throw InputError("vector index: search needs k >= 1, got " + std::to_string(k));
  const Impl& m = *impl_;
  std::vector<std::vector<Hit>> out(nq);
  if (nq == 0 || m.slot_of.empty()) return out;
  if (queries == nullptr) throw InputError("vector index: search of " + std::to_string(nq) + " queries without vectors");

  const Slot kk = std::min<Slot>(k, static_cast<Slot>(m.slot_of.size()));
  if (!m.index || (m.exact_fp32() && nq < kFaissBatchMin)) {
    const auto found = m.exact_search(queries, nq, static_cast<size_t>(kk));
    for (size_t q = 0; q < nq; ++q) {
      out[q].reserve(found[q].size());
      for (const exact::ScanHit& hit : found[q]) {
        out[q].push_back(Hit{m.slot_ids[static_cast<size_t>(hit.slot)], hit.score});
      }
    }
    return out;
  }

  std::vector<float> scores(nq * static_cast<size_t>(kk));
  std::vector<Slot> slots(nq * static_cast<size_t>(kk));
  SlotSelector live_only(m.live, /*want_live=*/true);
  faiss::IDSelector* selector = m.dead > 0 ? &live_only : nullptr;

  TeamLimit team(nq);
  const auto n = static_cast<Slot>(nq);
  if (const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(m.index.get())) {
    faiss::SearchParametersIVF params;
    params.sel = selector;
    params.nprobe = std::min<size_t>(ivf->nlist, static_cast<size_t>(m.spec.ivf_nprobe));
    m.index->search(n, queries, kk, scores.data(), slots.data(), &params);
  } else if (dynamic_cast<const faiss::IndexHNSW*>(m.index.get())) {
    faiss::SearchParametersHNSW params;
    params.sel = selector;
    params.efSearch = std::max(m.spec.hnsw_ef_search, static_cast<int>(kk));
    m.index->search(n, queries, kk, scores.data(), slots.data(), &params);
  } else {
    faiss::SearchParameters params;
    params.sel = selector;
    m.index->search(n, queries, kk, scores.data(), slots.data(), &params);
  }

  for (size_t q = 0; q < nq; ++q) {
    out[q].reserve(static_cast<size_t>(kk));
    for (size_t j = 0; j < static_cast<size_t>(kk); ++j) {
      const Slot slot = slots[q * static_cast<size_t>(kk) + j];
      // Approximate kinds leave -1 where they found fewer than k.
      if (slot < 0 || !m.live[static_cast<size_t>(slot)]) continue;
      out[q].push_back(Hit{m.slot_ids[static_cast<size_t>(slot)], scores[q * static_cast<size_t>(kk) + j]});
    }
  }
  return out;
}

void VectorIndex::compact() { impl_->compact(); }

size_t VectorIndex::size() const { return impl_->slot_of.size(); }

size_t VectorIndex::memory_bytes() const {
  const Impl& m = *impl_;
  const size_t vectors = m.index ? faiss_bytes(*m.index) : m.int8_codes.size() + m.int8_scales.size() * sizeof(float);
  return vectors + m.slot_ids.size() * sizeof(int64_t) + m.live.size() + id_map_bytes(m.slot_of);
}

std::string VectorIndex::effective_kind() const {
  return impl_->awaits_training() ? "flat" : index_kind_name(spec_.kind);
}

}  // namespace arcforge::gallery
