#pragma once
// The post-ops the optimiser attached to a Conv, Gemm or MatMul (activations, PReLU, scalar
// multiplications, the residual sum), as a oneDNN post-op chain or as separate in-place primitives.
// Shared by the fp32/bf16 and int8 convolutions, the inner products and the matmuls.
#include "plan.hpp"

namespace arcforge::runtime::detail {

// How each post-op is fed at run time.
struct PostOpPlan {
  dnnl::post_ops ops;
  std::vector<std::pair<int, MemRef>> args;  // extra primitive arguments
  bool sum_in_place = false;                  // dst must already hold the addend
  std::string sum_addend;
};

PostOpPlan build_post_ops(PlanBuilder& b, const Node& n, const Dims& out_dims);
// Runs the post-ops one by one, in place on `dst` (used when oneDNN cannot fuse them).
void add_unfused_post_ops(PlanBuilder& b, const Node& n, const MemRef& dst, const Dims& out_dims);
bool is_reference_impl(const dnnl::primitive_desc_base& pd);
// One oneDNN PReLU from `src` to `dst` (both in layout `md`) with a constant slope of dims
// `slope_dims` (broadcast to md's). The slope is packed once, under `key`, into the layout oneDNN
// asks for: with a blocked source (nChw8c on AVX2) and a plain slope oneDNN 2.6 has only its
// reference kernel (paddle MobileFaceNet ran about ten times slower on an AVX2 CPU).
void add_constant_prelu(PlanBuilder& b, const md_t& md, const MemRef& src, const MemRef& dst, const HostTensor& slope,
                        const Dims& slope_dims, const std::string& key);

}  // namespace arcforge::runtime::detail
