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

}  // namespace arcforge::runtime::detail
