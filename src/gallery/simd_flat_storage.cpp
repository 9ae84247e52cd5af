// SimdFlatIP's distance computer: FAISS's FlatIPDis with our SIMD dot product.
#include "simd_flat_storage.hpp"

#include <cstdint>

#include "exact_scan.hpp"

namespace arcforge::gallery {
namespace {

// One per thread and per add/search call (FAISS's HNSW makes them so); the kernel is resolved once
// here rather than on each of the millions of calls. The rows pointer is taken at creation, as
// FlatIPDis does: IndexHNSW creates computers only after the storage has grown.
class SimdIpDistance final : public faiss::FlatCodesDistanceComputer {
 public:
  explicit SimdIpDistance(const faiss::IndexFlat& storage)
      : faiss::FlatCodesDistanceComputer(storage.codes.data(), storage.code_size),
        rows_(storage.get_xb()),
        dim_(static_cast<size_t>(storage.d)),
        dot_(exact::dot_fp32_kernel()) {}

  void set_query(const float* x) override { query_ = x; }

  float distance_to_code(const uint8_t* code) override {
    return dot_(query_, reinterpret_cast<const float*>(code), dim_);
  }

  float symmetric_dis(idx_t i, idx_t j) override {
    return dot_(rows_ + static_cast<size_t>(i) * dim_, rows_ + static_cast<size_t>(j) * dim_, dim_);
  }

 private:
  const float* rows_;
  size_t dim_;
  exact::DotFp32 dot_;
  const float* query_ = nullptr;
};

}  // namespace

faiss::FlatCodesDistanceComputer* SimdFlatIP::get_FlatCodesDistanceComputer() const {
  return new SimdIpDistance(*this);
}

std::unique_ptr<faiss::IndexHNSW> new_simd_hnsw(int dim, int m, int ef_construction, int ef_search) {
  auto storage = std::make_unique<SimdFlatIP>(dim);
  auto index = std::make_unique<faiss::IndexHNSW>(storage.get(), m);
  storage.release();
  index->own_fields = true;  // as IndexHNSWFlat: the HNSW deletes its storage
  index->is_trained = true;
  index->hnsw.efConstruction = ef_construction;
  index->hnsw.efSearch = ef_search;
  return index;
}

}  // namespace arcforge::gallery
