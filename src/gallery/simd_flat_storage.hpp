#pragma once
// HNSW over our SIMD inner product. Debian's libfaiss 1.7.3 is built without SIMD, so FAISS's own
// IndexHNSWFlat spends its build and search time in the scalar fvec_inner_product. SimdFlatIP is
// an IndexFlatIP (same rows, same codes) whose distance computer calls exact::dot_fp32's kernel
// instead; IndexHNSW given it as storage builds the same kind of graph, faster.
//
// The computer returns the plain inner product, as FAISS's FlatIPDis does: IndexHNSW 1.7.3 wraps
// the storage's computer in its NegativeDistanceComputer for METRIC_INNER_PRODUCT and negates the
// scores back after a search, so the sign convention must match FAISS's.
#include <memory>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>

namespace arcforge::gallery {

struct SimdFlatIP final : faiss::IndexFlatIP {
  explicit SimdFlatIP(idx_t dim) : faiss::IndexFlatIP(dim) {}
  // IndexFlatCodes::get_distance_computer() returns this one too.
  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer() const override;
};

// IndexHNSW (metric inner product, M links a node) owning a SimdFlatIP, with the given
// efConstruction and efSearch. Built like IndexHNSWFlat(dim, m, METRIC_INNER_PRODUCT).
std::unique_ptr<faiss::IndexHNSW> new_simd_hnsw(int dim, int m, int ef_construction, int ef_search);

}  // namespace arcforge::gallery
