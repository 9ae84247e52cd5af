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

// The chain and its run-time arguments (binding them may add constants and a reorder to the plan).
PostOpPlan build_post_ops(PlanBuilder& b, const Node& n, const Dims& out_dims);
// The chain alone, with nothing added to the plan: to ask oneDNN whether it can fuse it.
dnnl::post_ops post_op_chain(PlanBuilder& b, const Node& n, const Dims& out_dims);
// Runs the post-ops one by one, in place on `dst` (used when oneDNN cannot fuse them).
void add_unfused_post_ops(PlanBuilder& b, const Node& n, const MemRef& dst, const Dims& out_dims);
bool is_reference_impl(const dnnl::primitive_desc_base& pd);
// One slope per channel from a PReLU's constant (fp32, one value or one per channel); empty when it
// is neither (or absent).
std::vector<float> prelu_slope_per_channel(const HostTensor* slope, int64_t channels);
// One oneDNN PReLU from `src` to `dst` (both in layout `md`) with a constant slope of dims
// `slope_dims` (broadcast to md's). The slope is packed once, under `key`, into the layout oneDNN
// asks for: with a blocked source (nChw8c on AVX2) and a plain slope oneDNN 2.6 has only its
// reference kernel (paddle MobileFaceNet ran about ten times slower on an AVX2 CPU).
void add_constant_prelu(PlanBuilder& b, const md_t& md, const MemRef& src, const MemRef& dst, const HostTensor& slope,
                        const Dims& slope_dims, const std::string& key);

// A primitive and how its node's post-ops run: fused into it (their arguments bound in `post`), or
// (`fused` false) after it, with add_unfused_post_ops.
template <class PrimitiveDesc>
struct PostOpChoice {
  PrimitiveDesc pd;
  PostOpPlan post;
  bool fused = true;
};

// A float primitive with the node's post-ops fused when oneDNN has an optimised kernel for the
// chain, or has none for the plain primitive either; else plain, the chain run after it.
// `make_pd(attr)` builds the primitive descriptor.
template <class PrimitiveDesc, class MakePd>
PostOpChoice<PrimitiveDesc> choose_fused_primitive(PlanBuilder& b, const Node& n, const Dims& out_dims, MakePd make_pd) {
  PostOpChoice<PrimitiveDesc> c;
  c.pd = make_pd(dnnl::primitive_attr());
  if (n.post_ops.empty()) return c;
  dnnl::primitive_attr attr;
  attr.set_post_ops(post_op_chain(b, n, out_dims));
  PrimitiveDesc fused_pd = make_pd(attr);
  if (is_reference_impl(fused_pd) && !is_reference_impl(c.pd)) {
    c.fused = false;
    return c;
  }
  c.pd = fused_pd;
  c.post = build_post_ops(b, n, out_dims);
  return c;
}

}  // namespace arcforge::runtime::detail
