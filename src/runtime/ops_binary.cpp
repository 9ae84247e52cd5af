// Add, Sub, Mul, Div, Max, Min with NumPy broadcasting, on oneDNN binary. oneDNN broadcasts only
// the second operand, so a broadcast first operand is swapped (commutative ops) or expanded.
#include "plan.hpp"

namespace arcforge::runtime::detail {
namespace {

dnnl::algorithm binary_alg(const Node& n) {
  if (n.op == "Add") return dnnl::algorithm::binary_add;
  if (n.op == "Sub") return dnnl::algorithm::binary_sub;
  if (n.op == "Mul") return dnnl::algorithm::binary_mul;
  if (n.op == "Div") return dnnl::algorithm::binary_div;
  if (n.op == "Max") return dnnl::algorithm::binary_max;
  if (n.op == "Min") return dnnl::algorithm::binary_min;
  node_error(n, "not a binary operator");
}

// `value` broadcast to `out` dims, materialised in a plain buffer by a loop.
MemRef expand(PlanBuilder& b, const std::string& value, const Dims& out) {
  const Dims in = pad_rank(b.dims(value), out.size());
  MemRef src = b.input_plain(value);
  MemRef dst = b.temporary(plain_md(out));
  const Dims in_strides = strides_of(in);
  b.add_custom({src, dst}, [in, out, in_strides](const std::vector<char*>& p) {
    const float* s = reinterpret_cast<const float*>(p[0]);
    float* d = reinterpret_cast<float*>(p[1]);
    const int64_t total = numel(out);
    Dims idx(out.size(), 0);
    for (int64_t flat = 0; flat < total; ++flat) {
      int64_t off = 0;
      for (std::size_t k = 0; k < out.size(); ++k) off += (in[k] == 1 ? 0 : idx[k]) * in_strides[k];
      d[flat] = s[off];
      for (int64_t k = static_cast<int64_t>(out.size()) - 1; k >= 0; --k) {
        if (++idx[k] < out[k]) break;
        idx[k] = 0;
      }
    }
  });
  return dst;
}

}  // namespace

void plan_binary(PlanBuilder& b, const Node& n) {
  if (n.inputs.size() != 2) node_error(n, "needs exactly two inputs");
  std::string a = n.inputs[0], c = n.inputs[1];
  const Dims out = broadcast_dims(n, b.dims(a), b.dims(c));
  const bool commutative = n.op == "Add" || n.op == "Mul" || n.op == "Max" || n.op == "Min";
  // src0 must have the full output shape and should be the run-time tensor.
  const bool a_full = pad_rank(b.dims(a), out.size()) == out;
  const bool c_full = pad_rank(b.dims(c), out.size()) == out;
  if (commutative && ((!a_full && c_full) || (a_full && c_full && b.host(a) && !b.host(c)))) std::swap(a, c);
  MemRef src0;
  if (pad_rank(b.dims(a), out.size()) == out && !b.host(a)) {
    src0 = b.dims(a) == out ? b.input_as_is(a) : b.input_plain(a);
    if (b.dims(a) != out) src0.md = plain_md(out);
  } else {
    src0 = expand(b, a, out);
  }
  MemRef src1;
  if (b.dims(c) == out && !b.host(c)) {
    src1 = b.input(c, src0.md);
  } else {
    src1 = b.input_plain(c);
    src1.md = plain_md(pad_rank(b.dims(c), out.size()));
  }
  dnnl::binary::primitive_desc pd({binary_alg(n), src0.md, src1.md, src0.md}, b.engine());
  MemRef dst = b.output(n.outputs.at(0), src0.md);
  b.add(dnnl::binary(pd), {{DNNL_ARG_SRC_0, src0}, {DNNL_ARG_SRC_1, src1}, {DNNL_ARG_DST, dst}});
}

}  // namespace arcforge::runtime::detail
