// Helpers shared by the int8 convolution and inner product (int8_primitive.hpp).
#include "int8_primitive.hpp"

namespace arcforge::runtime::detail {

std::vector<float> int8_output_scales(const QuantConv& q, int64_t channels) {
  std::vector<float> scales(static_cast<std::size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) scales[c] = q.src_scale * q.weight_scales[c];
  return scales;
}

HostTensor accumulator_bias(const HostTensor& bias, const std::vector<float>& scales) {
  const int64_t n = static_cast<int64_t>(scales.size());
  HostTensor out = HostTensor::from_f32({n}, std::vector<float>(scales.size()));
  for (int64_t c = 0; c < n; ++c) out.f[c] = bias.f[c] / scales[c];
  return out;
}

dnnl::primitive_attr scaled_attr(const std::vector<float>& scales, float extra) {
  dnnl::primitive_attr attr;
  std::vector<float> s = scales;
  for (float& v : s) v *= extra;
  attr.set_output_scales(1 << 1, s);
  return attr;
}

MemRef fused_int8_destination(PlanBuilder& b, const PostOpPlan& post, const std::string& out, const md_t& dst) {
  return post.sum_in_place ? b.output_accumulating(out, post.sum_addend, dst) : b.output(out, dst);
}

void add_quantizing_reorder(PlanBuilder& b, const MemRef& fp32, const std::string& out, dnnl::memory::data_type quant_t,
                            float dst_scale) {
  MemRef dst = b.output(out, with_type(fp32.md, quant_t));
  dnnl::primitive_attr attr;
  attr.set_output_scales(0, {1.0f / dst_scale});
  dnnl::reorder::primitive_desc rpd(b.engine(), fp32.md, b.engine(), dst.md, attr);
  b.add(dnnl::reorder(rpd), {{DNNL_ARG_FROM, fp32}, {DNNL_ARG_TO, dst}});
}

}  // namespace arcforge::runtime::detail
