// QuantizeLinear and DequantizeLinear on run-time tensors, with ONNX's float semantics:
//   Q:  y = saturate(round_half_even(x / s) + zp)   into u8 or s8 (the zero point's type)
//   DQ: y = (x - zp) * s
// Quantized tensors live in u8/s8 memory. With a zero zero point (what `arcforge quantize` writes)
// Q is arcforge's quantizing loop (quantize_loop.hpp) and DQ a oneDNN reorder with a scale, in
// whatever layout the value has; otherwise a loop over the plain layout.
#include <omp.h>

#include <cmath>

#include "optimize_quant.hpp"
#include "plan.hpp"
#include "quantize_loop.hpp"

namespace arcforge::runtime::detail {
namespace {

using dt = dnnl::memory::data_type;

void add_scaling_reorder(PlanBuilder& b, const MemRef& src, const MemRef& dst, int mask, const std::vector<float>& s) {
  dnnl::primitive_attr attr;
  attr.set_output_scales(mask, s);
  dnnl::reorder::primitive_desc pd(b.engine(), src.md, b.engine(), dst.md, attr);
  b.add(dnnl::reorder(pd), {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}});
}

}  // namespace

void plan_quantize(PlanBuilder& b, const Node& n) {
  const QuantParams q = quant_params(b.graph(), n);
  if (!q.per_tensor()) node_error(n, "per-axis quantization of a run-time tensor is not supported");
  const dt out_t = q.kind == IntKind::s8 ? dt::s8 : dt::u8;
  const std::string& x = n.input(0);
  if (q.zero_point[0] == 0) {
    const md_t src = b.desc(x);
    MemRef in = b.input(x, src);
    MemRef out = b.output(n.outputs.at(0), with_type(src, out_t));
    if (add_quantize_loop(b, in, out, plain_quantization(1.0f / q.scale[0], out_t == dt::s8))) return;
    add_scaling_reorder(b, in, out, 0, {1.0f / q.scale[0]});
    return;
  }
  MemRef in = b.input_plain(x);
  MemRef out = b.output(n.outputs.at(0), with_type(plain_md(b.dims(x)), out_t));
  const int64_t count = numel(b.dims(x));
  const float scale = q.scale[0];
  const float zp = static_cast<float>(q.zero_point[0]);
  const bool is_signed = out_t == dt::s8;
  b.add_custom({in, out}, [count, scale, zp, is_signed](const std::vector<char*>& p) {
    const float* src = reinterpret_cast<const float*>(p[0]);
    const float lo = is_signed ? -128.0f : 0.0f, hi = is_signed ? 127.0f : 255.0f;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < count; ++k) {
      const float v = std::clamp(std::nearbyint(src[k] / scale) + zp, lo, hi);
      if (is_signed) reinterpret_cast<int8_t*>(p[1])[k] = static_cast<int8_t>(v);
      else reinterpret_cast<uint8_t*>(p[1])[k] = static_cast<uint8_t>(v);
    }
  });
}

void plan_dequantize(PlanBuilder& b, const Node& n) {
  const QuantParams q = quant_params(b.graph(), n);
  const std::string& x = n.input(0);
  const Dims& dims = b.dims(x);
  int mask = 0;
  if (!q.per_tensor()) {
    const int64_t axis = normalize_axis(n, q.axis, static_cast<int64_t>(dims.size()));
    if (dims[axis] != static_cast<int64_t>(q.scale.size())) node_error(n, "scale size does not match the axis");
    mask = 1 << axis;
  }
  if (q.symmetric()) {
    const md_t src = b.desc(x);
    MemRef in = b.input(x, src);
    MemRef out = b.output(n.outputs.at(0), with_type(src, dt::f32));
    add_scaling_reorder(b, in, out, mask, q.scale);
    return;
  }
  // Zero points: the integers as floats in a plain layout, then (v - zp) * s per element.
  MemRef in = b.input_plain(x);
  MemRef out = b.output(n.outputs.at(0), plain_md(dims));
  int64_t inner = 1;
  if (!q.per_tensor()) {
    const int64_t axis = normalize_axis(n, q.axis, static_cast<int64_t>(dims.size()));
    for (std::size_t d = axis + 1; d < dims.size(); ++d) inner *= dims[d];
  }
  const int64_t count = numel(dims);
  std::vector<float> scale = q.scale, zp(q.zero_point.begin(), q.zero_point.end());
  b.add_custom({in, out}, [count, inner, scale, zp](const std::vector<char*>& p) {
    const float* src = reinterpret_cast<const float*>(p[0]);
    float* dst = reinterpret_cast<float*>(p[1]);
    const int64_t extent = static_cast<int64_t>(scale.size());
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < count; ++k) {
      const std::size_t j = static_cast<std::size_t>((k / inner) % extent);
      dst[k] = (src[k] - zp[j]) * scale[j];
    }
  });
}

}  // namespace arcforge::runtime::detail
