#include "host_eval.hpp"

#include <cmath>
#include <limits>
#include <set>

namespace arcforge::runtime::detail {
namespace {

// Visits every multi-index of `dims` in C order, calling fn(flat_out, index).
template <typename Fn>
void for_each_index(const Dims& dims, Fn fn) {
  const int64_t total = numel(dims);
  Dims idx(dims.size(), 0);
  for (int64_t flat = 0; flat < total; ++flat) {
    fn(flat, idx);
    for (int64_t k = static_cast<int64_t>(dims.size()) - 1; k >= 0; --k) {
      if (++idx[k] < dims[k]) break;
      idx[k] = 0;
    }
  }
}

// out[flat] = in[gathered flat index]; the caller maps output indices to input indices.
std::size_t elem_bytes(DType t) { return t == DType::f32 ? 4 : 8; }

HostTensor remap(const Node& node, std::size_t max_bytes, const HostTensor& in, const Dims& out_dims,
                 const std::function<int64_t(const Dims&)>& source) {
  check_tensor_size(node, out_dims, elem_bytes(in.dtype), max_bytes);
  HostTensor out;
  out.dtype = in.dtype;
  out.dims = out_dims;
  const int64_t n = numel(out_dims);
  if (in.dtype == DType::f32) out.f.resize(n); else out.i.resize(n);
  for_each_index(out_dims, [&](int64_t flat, const Dims& idx) {
    const int64_t src = source(idx);
    if (in.dtype == DType::f32) out.f[flat] = in.f[src]; else out.i[flat] = in.i[src];
  });
  return out;
}

const HostTensor& need(const Node& node, std::size_t k, const HostLookup& host) {
  const std::string& name = node.input(k);
  const HostTensor* t = name.empty() ? nullptr : host(name);
  if (!t) node_error(node, "input " + std::to_string(k) + " must be a constant or shape arithmetic");
  return *t;
}

int64_t int_op(const Node& node, const std::string& op, int64_t x, int64_t y) {
  int64_t r = 0;
  bool overflow = false;
  if (op == "Add") overflow = __builtin_add_overflow(x, y, &r);
  else if (op == "Sub") overflow = __builtin_sub_overflow(x, y, &r);
  else if (op == "Mul") overflow = __builtin_mul_overflow(x, y, &r);
  else if (y == 0) node_error(node, "integer division by zero");
  else if (x == std::numeric_limits<int64_t>::min() && y == -1) overflow = true;
  else r = x / y;
  if (overflow) node_error(node, "integer overflow in " + std::to_string(x) + " " + op + " " + std::to_string(y));
  return r;
}

// Add, Sub, Mul, Div and Pow with broadcasting. Pow's exponent may have another element type (the
// result has the base's: PyTorch's attention scale is Pow(Cast(head_dim), -0.5)).
HostTensor binary(const Node& node, std::size_t max_bytes, const HostTensor& a, const HostTensor& b) {
  const std::string& op = node.op;
  if (a.dtype != b.dtype && op != "Pow") node_error(node, "inputs have different element types");
  const Dims out_dims = broadcast_dims(node, a.dims, b.dims);
  check_tensor_size(node, out_dims, elem_bytes(a.dtype), max_bytes);
  const Dims sa = strides_of(a.dims), sb = strides_of(b.dims);
  const std::size_t rank = out_dims.size();
  auto offset = [&](const Dims& idx, const Dims& d, const Dims& s) {
    int64_t off = 0;
    for (std::size_t k = 0; k < d.size(); ++k) {
      const int64_t i = idx[k + rank - d.size()];
      off += (d[k] == 1 ? 0 : i) * s[k];
    }
    return off;
  };
  HostTensor out;
  out.dtype = a.dtype;
  out.dims = out_dims;
  const int64_t n = numel(out_dims);
  if (a.dtype == DType::f32) out.f.resize(n); else out.i.resize(n);
  for_each_index(out_dims, [&](int64_t flat, const Dims& idx) {
    const int64_t ia = offset(idx, a.dims, sa), ib = offset(idx, b.dims, sb);
    if (op == "Pow") {
      const double y = b.at(ib);
      if (a.dtype == DType::f32) out.f[flat] = std::pow(a.f[ia], static_cast<float>(y));
      else out.i[flat] = to_int64(node, std::pow(static_cast<double>(a.i[ia]), y));
    } else if (a.dtype == DType::f32) {
      const float x = a.f[ia], y = b.f[ib];
      out.f[flat] = op == "Add" ? x + y : op == "Sub" ? x - y : op == "Mul" ? x * y : x / y;
    } else {
      out.i[flat] = int_op(node, op, a.i[ia], b.i[ib]);
    }
  });
  return out;
}

HostTensor gather(const Node& node, std::size_t max_bytes, const HostTensor& data, const HostTensor& indices) {
  const int64_t rank = static_cast<int64_t>(data.dims.size());
  if (rank == 0) node_error(node, "cannot gather from a scalar");
  const int64_t axis = normalize_axis(node, node.attr_i("axis", 0), rank);
  if (indices.dtype != DType::i64) node_error(node, "indices must be integers");
  Dims out_dims(data.dims.begin(), data.dims.begin() + axis);
  out_dims.insert(out_dims.end(), indices.dims.begin(), indices.dims.end());
  out_dims.insert(out_dims.end(), data.dims.begin() + axis + 1, data.dims.end());
  const Dims ds = strides_of(data.dims);
  const Dims is = strides_of(indices.dims);
  const std::size_t irank = indices.dims.size();
  return remap(node, max_bytes, data, out_dims, [&](const Dims& idx) {
    int64_t iflat = 0;
    for (std::size_t k = 0; k < irank; ++k) iflat += idx[axis + k] * is[k];
    int64_t pos = indices.i[iflat];
    if (pos < 0) pos += data.dims[axis];
    if (pos < 0 || pos >= data.dims[axis]) node_error(node, "index " + std::to_string(indices.i[iflat]) + " out of range");
    int64_t off = pos * ds[axis];
    for (int64_t k = 0; k < axis; ++k) off += idx[k] * ds[k];
    for (int64_t k = axis + 1; k < rank; ++k) off += idx[k - 1 + irank] * ds[k];
    return off;
  });
}

HostTensor concat(const Node& node, std::size_t max_bytes, const HostLookup& host) {
  std::vector<const HostTensor*> parts;
  std::vector<Dims> dims;
  for (std::size_t k = 0; k < node.inputs.size(); ++k) {
    parts.push_back(&need(node, k, host));
    dims.push_back(parts.back()->dims);
    if (parts.back()->dtype != parts[0]->dtype) node_error(node, "inputs have different element types");
  }
  if (parts.empty()) node_error(node, "has no inputs");  // found by fuzz_model_load
  const int64_t rank = static_cast<int64_t>(dims[0].size());
  const int64_t axis = normalize_axis(node, node.attr_i("axis", 0), rank);
  HostTensor out;
  out.dtype = parts[0]->dtype;
  out.dims = concat_dims(node, dims, axis);
  check_tensor_size(node, out.dims, elem_bytes(out.dtype), max_bytes);
  int64_t outer = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= out.dims[k];
  for (int64_t o = 0; o < outer; ++o) {
    for (const HostTensor* p : parts) {
      const int64_t chunk = outer ? p->numel() / outer : 0;
      if (out.dtype == DType::f32) {
        out.f.insert(out.f.end(), p->f.begin() + o * chunk, p->f.begin() + (o + 1) * chunk);
      } else {
        out.i.insert(out.i.end(), p->i.begin() + o * chunk, p->i.begin() + (o + 1) * chunk);
      }
    }
  }
  return out;
}

HostTensor with_dims(HostTensor t, Dims dims) {
  t.dims = std::move(dims);
  return t;
}

HostTensor cast(const Node& node, std::size_t max_bytes, const HostTensor& in) {
  const int64_t to = node.attr_i("to", 0);
  const bool to_float = to == 1 || to == 10 || to == 11;  // FLOAT, FLOAT16, DOUBLE
  const bool to_int = to == 2 || to == 3 || to == 4 || to == 5 || to == 6 || to == 7 || to == 9 || to == 12 || to == 13;
  if (!to_float && !to_int) node_error(node, "unsupported cast target type " + std::to_string(to));
  HostTensor out;
  out.dims = in.dims;
  out.dtype = to_float ? DType::f32 : DType::i64;
  check_tensor_size(node, out.dims, elem_bytes(out.dtype), max_bytes);
  for (int64_t k = 0; k < in.numel(); ++k) {
    const double v = in.at(k);
    if (to_float) out.f.push_back(static_cast<float>(v));
    else if (to == 9) out.i.push_back(v != 0);
    else out.i.push_back(in.dtype == DType::i64 ? in.i[static_cast<std::size_t>(k)] : to_int64(node, std::trunc(v)));
  }
  return out;
}

}  // namespace

bool is_host_op(const std::string& op) {
  static const std::set<std::string> ops = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice",
                                            "Reshape", "Flatten", "Cast", "ConstantOfShape", "Identity",
                                            "Dropout", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Transpose"};
  return ops.count(op) != 0;
}

bool runs_on_host(const Node& node, const HostLookup& host) {
  if (!is_host_op(node.op)) return false;
  if (node.op == "Shape") return true;
  for (std::size_t k = 0; k < node.inputs.size(); ++k) {
    if (node.inputs[k].empty()) continue;
    if (!host(node.inputs[k])) return false;
  }
  return true;
}

std::vector<HostTensor> eval_host(const Node& node, const HostLookup& host,
                                  const std::function<Dims(const std::string&)>& dims, std::size_t max_bytes) {
  const std::string& op = node.op;
  if (op == "Shape") {
    const Dims d = dims(node.input(0));
    const int64_t rank = static_cast<int64_t>(d.size());
    int64_t start = node.attr_i("start", 0), end = node.attr_i("end", rank);
    if (start < 0) start += rank;
    if (end < 0) end += rank;
    start = std::clamp<int64_t>(start, 0, rank);
    end = std::clamp<int64_t>(end, start, rank);
    Dims v(d.begin() + start, d.begin() + end);
    return {HostTensor::from_i64({static_cast<int64_t>(v.size())}, v)};
  }
  if (op == "ConstantOfShape") {
    const HostTensor& shape = need(node, 0, host);
    Dims out_dims;
    for (int64_t k = 0; k < shape.numel(); ++k) {
      out_dims.push_back(int_at(node, shape, k));
      if (out_dims.back() < 0) node_error(node, "negative dimension");
    }
    check_tensor_size(node, out_dims, 8, max_bytes);
    HostTensor value = HostTensor::from_f32({1}, {0.0f});
    if (node.has("value")) value = node.attrs.at("value").t;
    if (value.numel() != 1) node_error(node, "value must hold one element");
    HostTensor out;
    out.dtype = value.dtype;
    out.dims = out_dims;
    if (out.dtype == DType::f32) out.f.assign(numel(out_dims), value.f[0]); else out.i.assign(numel(out_dims), value.i[0]);
    return {out};
  }
  if (op == "Identity" || op == "Dropout") return {need(node, 0, host)};
  if (op == "Concat") return {concat(node, max_bytes, host)};
  if (op == "Cast") return {cast(node, max_bytes, need(node, 0, host))};
  if (op == "Gather") return {gather(node, max_bytes, need(node, 0, host), need(node, 1, host))};
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow") {
    return {binary(node, max_bytes, need(node, 0, host), need(node, 1, host))};
  }
  const HostTensor& in = need(node, 0, host);
  if (op == "Sqrt") {
    if (in.dtype != DType::f32) node_error(node, "input must be a float tensor");
    HostTensor out = in;
    for (float& v : out.f) v = std::sqrt(v);
    return {out};
  }
  if (op == "Unsqueeze") return {with_dims(in, unsqueeze_dims(node, in.dims, ints_param(node, 1, "axes", host)))};
  if (op == "Squeeze") return {with_dims(in, squeeze_dims(node, in.dims, ints_param(node, 1, "axes", host)))};
  if (op == "Flatten") return {with_dims(in, flatten_dims(node, in.dims))};
  if (op == "Reshape") {
    const HostTensor& shape = need(node, 1, host);
    std::vector<int64_t> s;
    for (int64_t k = 0; k < shape.numel(); ++k) s.push_back(int_at(node, shape, k));
    return {with_dims(in, reshape_dims(node, in.dims, s, node.attr_i("allowzero", 0) != 0))};
  }
  if (op == "Slice") {
    const SliceSpec s = slice_spec(node, in.dims, host);
    const Dims is = strides_of(in.dims);
    return {remap(node, max_bytes, in, s.out, [&](const Dims& idx) {
      int64_t off = 0;
      for (std::size_t k = 0; k < idx.size(); ++k) off += (s.start[k] + idx[k] * s.step[k]) * is[k];
      return off;
    })};
  }
  if (op == "Transpose") {
    const auto perm = transpose_perm(node, static_cast<int64_t>(in.dims.size()));
    Dims out_dims;
    for (int64_t p : perm) out_dims.push_back(in.dims[p]);
    const Dims is = strides_of(in.dims);
    return {remap(node, max_bytes, in, out_dims, [&](const Dims& idx) {
      int64_t off = 0;
      for (std::size_t k = 0; k < idx.size(); ++k) off += idx[k] * is[perm[k]];
      return off;
    })};
  }
  node_error(node, "cannot be evaluated on the host");
}

}  // namespace arcforge::runtime::detail
