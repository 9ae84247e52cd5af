#include "shape_util.hpp"

#include <algorithm>
#include <limits>

#include "arcforge/common/error.hpp"

namespace arcforge::runtime::detail {

void node_error(const Node& node, const std::string& what) { throw InputError(node.describe() + ": " + what); }

std::string dims_str(const Dims& dims) {
  std::string s = "[";
  for (std::size_t k = 0; k < dims.size(); ++k) {
    if (k) s += ',';
    s += std::to_string(dims[k]);
  }
  return s + "]";
}

namespace {
int64_t saturating_mul(int64_t a, int64_t b) {
  int64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? std::numeric_limits<int64_t>::max() : r;
}
}  // namespace

int64_t numel(const Dims& dims) {
  if (std::find(dims.begin(), dims.end(), 0) != dims.end()) return 0;
  int64_t n = 1;
  for (int64_t d : dims) n = saturating_mul(n, d);
  return n;
}

Dims strides_of(const Dims& dims) {
  Dims s(dims.size(), 1);
  for (int64_t k = static_cast<int64_t>(dims.size()) - 2; k >= 0; --k) s[k] = saturating_mul(s[k + 1], dims[k + 1]);
  return s;
}

int64_t to_int64(const Node& node, double v) {
  if (!(v >= -9.2e18 && v <= 9.2e18)) node_error(node, "value " + std::to_string(v) + " is not a usable integer");
  return static_cast<int64_t>(v);
}

int64_t int_at(const Node& node, const HostTensor& t, int64_t k) {
  return t.dtype == DType::i64 ? t.i[static_cast<std::size_t>(k)] : to_int64(node, t.f[static_cast<std::size_t>(k)]);
}

void check_tensor_size(const Node& node, const Dims& dims, std::size_t elem_bytes, std::size_t max_bytes) {
  for (int64_t d : dims) {
    if (d < 0) node_error(node, "shape " + dims_str(dims) + " has a negative dimension");
  }
  const int64_t n = numel(dims);
  const std::size_t limit = max_bytes / std::max<std::size_t>(elem_bytes, 1);
  if (n == std::numeric_limits<int64_t>::max() || static_cast<uint64_t>(n) > limit) {
    node_error(node, "a tensor of shape " + dims_str(dims) + " would take more than the " + std::to_string(max_bytes) +
                         "-byte limit (Options::max_activation_bytes)");
  }
}

int64_t normalize_axis(const Node& node, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1)) {
    node_error(node, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  }
  return axis < 0 ? axis + rank : axis;
}

Dims broadcast_dims(const Node& node, const Dims& a, const Dims& b) {
  const std::size_t rank = std::max(a.size(), b.size());
  Dims out(rank);
  for (std::size_t k = 0; k < rank; ++k) {
    const int64_t da = k + a.size() >= rank ? a[k + a.size() - rank] : 1;
    const int64_t db = k + b.size() >= rank ? b[k + b.size() - rank] : 1;
    if (da != db && da != 1 && db != 1) {
      node_error(node, "shapes " + dims_str(a) + " and " + dims_str(b) + " do not broadcast");
    }
    out[k] = da == 1 ? db : da;
  }
  return out;
}

Dims reshape_dims(const Node& node, const Dims& in, const std::vector<int64_t>& shape, bool allowzero) {
  Dims out(shape.size());
  int64_t known = 1;
  int infer = -1;
  for (std::size_t k = 0; k < shape.size(); ++k) {
    int64_t d = shape[k];
    if (d == 0 && !allowzero) {
      if (k >= in.size()) node_error(node, "shape " + dims_str(shape) + " copies a dimension the input lacks");
      d = in[k];
    }
    if (d == -1) {
      if (infer >= 0) node_error(node, "shape " + dims_str(shape) + " has more than one -1");
      infer = static_cast<int>(k);
      continue;
    }
    if (d < 0) node_error(node, "shape " + dims_str(shape) + " has a negative dimension");
    out[k] = d;
    known = saturating_mul(known, d);
  }
  const int64_t total = numel(in);
  if (infer >= 0) {
    if (known == 0 || known == std::numeric_limits<int64_t>::max() || total % known != 0) {
      node_error(node, "cannot reshape " + dims_str(in) + " to " + dims_str(shape));
    }
    out[infer] = total / known;
  } else if (known != total || known == std::numeric_limits<int64_t>::max()) {
    node_error(node, "cannot reshape " + dims_str(in) + " to " + dims_str(shape));
  }
  return out;
}

Dims unsqueeze_dims(const Node& node, const Dims& in, std::vector<int64_t> axes) {
  const int64_t rank = static_cast<int64_t>(in.size() + axes.size());
  for (auto& a : axes) a = normalize_axis(node, a, rank);
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) node_error(node, "repeated axis");
  Dims out;
  std::size_t src = 0, next = 0;
  for (int64_t k = 0; k < rank; ++k) {
    if (next < axes.size() && axes[next] == k) {
      out.push_back(1);
      ++next;
    } else {
      out.push_back(in[src++]);
    }
  }
  return out;
}

Dims squeeze_dims(const Node& node, const Dims& in, std::vector<int64_t> axes) {
  const int64_t rank = static_cast<int64_t>(in.size());
  for (auto& a : axes) {
    a = normalize_axis(node, a, rank);
    if (in[a] != 1) node_error(node, "cannot squeeze axis " + std::to_string(a) + " of " + dims_str(in));
  }
  Dims out;
  for (int64_t k = 0; k < rank; ++k) {
    const bool drop = axes.empty() ? in[k] == 1 : std::find(axes.begin(), axes.end(), k) != axes.end();
    if (!drop) out.push_back(in[k]);
  }
  return out;
}

Dims flatten_dims(const Node& node, const Dims& in) {
  const int64_t rank = static_cast<int64_t>(in.size());
  int64_t axis = node.attr_i("axis", 1);
  if (axis < -rank || axis > rank) node_error(node, "axis " + std::to_string(axis) + " out of range");
  if (axis < 0) axis += rank;
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < rank; ++k) (k < axis ? outer : inner) *= in[k];
  return {outer, inner};
}

std::vector<int64_t> transpose_perm(const Node& node, int64_t rank) {
  std::vector<int64_t> perm = node.attr_ints("perm");
  if (perm.empty()) {
    for (int64_t k = rank - 1; k >= 0; --k) perm.push_back(k);
  }
  if (static_cast<int64_t>(perm.size()) != rank) node_error(node, "perm has the wrong length for rank " + std::to_string(rank));
  std::vector<bool> seen(rank, false);
  for (int64_t p : perm) {
    if (p < 0 || p >= rank || seen[p]) node_error(node, "perm " + dims_str(perm) + " is not a permutation");
    seen[p] = true;
  }
  return perm;
}

Dims concat_dims(const Node& node, const std::vector<Dims>& inputs, int64_t axis) {
  Dims out = inputs.at(0);
  for (std::size_t k = 1; k < inputs.size(); ++k) {
    const Dims& d = inputs[k];
    if (d.size() != out.size()) node_error(node, "inputs have different ranks");
    for (std::size_t j = 0; j < d.size(); ++j) {
      if (static_cast<int64_t>(j) == axis) continue;
      if (d[j] != out[j]) node_error(node, "input shapes " + dims_str(inputs[0]) + " and " + dims_str(d) + " differ off the concat axis");
    }
    out[axis] += d[axis];
  }
  return out;
}

std::vector<int64_t> ints_param(const Node& node, std::size_t index, const std::string& attr, const HostLookup& host,
                                bool* found) {
  if (found) *found = false;
  if (node.has(attr)) {
    if (found) *found = true;
    return node.attr_ints(attr);
  }
  const std::string name = node.input(index);
  if (name.empty()) return {};
  const HostTensor* t = host(name);
  if (!t) node_error(node, "input '" + name + "' must be known before running (a constant or shape arithmetic)");
  if (found) *found = true;
  std::vector<int64_t> out;
  for (int64_t k = 0; k < t->numel(); ++k) out.push_back(int_at(node, *t, k));
  return out;
}

SliceSpec slice_spec(const Node& node, const Dims& in, const HostLookup& host) {
  const int64_t rank = static_cast<int64_t>(in.size());
  if (rank == 0) node_error(node, "cannot slice a scalar");  // found by fuzz_model_load
  std::vector<int64_t> starts = ints_param(node, 1, "starts", host);
  std::vector<int64_t> ends = ints_param(node, 2, "ends", host);
  std::vector<int64_t> axes = ints_param(node, 3, "axes", host);
  std::vector<int64_t> steps = node.has("starts") ? std::vector<int64_t>{} : ints_param(node, 4, "steps", host);
  if (starts.size() != ends.size()) node_error(node, "starts and ends differ in length");
  if (axes.empty()) {
    for (std::size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<int64_t>(k));
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (axes.size() != starts.size() || steps.size() != starts.size()) node_error(node, "axes/steps differ in length from starts");
  SliceSpec s{Dims(rank, 0), Dims(rank, 1), in};
  std::vector<bool> seen(rank, false);
  for (std::size_t k = 0; k < starts.size(); ++k) {
    const int64_t axis = normalize_axis(node, axes[k], rank);
    if (seen[axis]) node_error(node, "repeated axis " + std::to_string(axis));
    seen[axis] = true;
    const int64_t dim = in[axis];
    const int64_t step = steps[k];
    if (step == 0) node_error(node, "step 0");
    int64_t start = starts[k] < 0 ? starts[k] + dim : starts[k];
    int64_t end = ends[k] < 0 ? ends[k] + dim : ends[k];
    if (step > 0) {
      start = std::clamp<int64_t>(start, 0, dim);
      end = std::clamp<int64_t>(end, 0, dim);
    } else {
      start = std::clamp<int64_t>(start, 0, dim - 1);
      end = std::clamp<int64_t>(end, -1, dim - 1);
    }
    const int64_t span = end - start;
    // Written so that no step (up to +-2^63) overflows: span is within [-dim, dim].
    const int64_t count = step > 0 ? (span <= 0 ? 0 : (span - 1) / step + 1) : (span >= 0 ? 0 : (span + 1) / step + 1);
    s.start[axis] = start;
    s.step[axis] = step;
    s.out[axis] = std::max<int64_t>(count, 0);
  }
  return s;
}

PadSpec pad_spec(const Node& node, const Dims& in, const HostLookup& host) {
  const int64_t rank = static_cast<int64_t>(in.size());
  PadSpec s{Dims(rank, 0), Dims(rank, 0), in};
  const std::string mode = node.attr_s("mode", "constant");
  if (mode == "constant") s.mode = PadSpec::Mode::constant;
  else if (mode == "reflect") s.mode = PadSpec::Mode::reflect;
  else if (mode == "edge") s.mode = PadSpec::Mode::edge;
  else if (mode == "wrap") s.mode = PadSpec::Mode::wrap;
  else node_error(node, "unknown mode '" + mode + "' (constant, reflect, edge or wrap)");
  bool found = false;
  const std::vector<int64_t> pads = ints_param(node, 1, "pads", host, &found);
  if (!found) node_error(node, "no pads");
  std::vector<int64_t> axes = ints_param(node, 3, "axes", host);
  if (axes.empty()) {
    for (int64_t k = 0; k < rank; ++k) axes.push_back(k);
  }
  if (pads.size() != 2 * axes.size()) {
    node_error(node, std::to_string(pads.size()) + " pads for " + std::to_string(axes.size()) +
                         " axes (one before and one after each)");
  }
  for (int64_t p : pads) {
    // Keeps the extent arithmetic below far from overflow; check_size refuses large outputs.
    constexpr int64_t far = int64_t{1} << 40;
    if (p < -far || p > far) node_error(node, "pad " + std::to_string(p) + " is out of range");
  }
  std::vector<bool> seen(rank, false);
  for (std::size_t k = 0; k < axes.size(); ++k) {
    const int64_t axis = normalize_axis(node, axes[k], rank);
    if (seen[axis]) node_error(node, "repeated axis " + std::to_string(axis));
    seen[axis] = true;
    s.begin[axis] = pads[k];
    s.end[axis] = pads[k + axes.size()];
  }
  for (int64_t k = 0; k < rank; ++k) {
    // The input's extent after the negative pads' cropping: what the positive ones pad around.
    const int64_t kept = in[k] - std::max<int64_t>(0, -s.begin[k]) - std::max<int64_t>(0, -s.end[k]);
    if (kept < 0) node_error(node, "pads remove more than axis " + std::to_string(k) + "'s " + std::to_string(in[k]));
    if (kept == 0 && s.mode != PadSpec::Mode::constant && (s.begin[k] > 0 || s.end[k] > 0)) {
      node_error(node, "mode " + mode + " pads an empty axis " + std::to_string(k));
    }
    s.out[k] = kept + std::max<int64_t>(0, s.begin[k]) + std::max<int64_t>(0, s.end[k]);
  }
  if (node.has("value")) {
    s.value = node.attr_f("value", 0.0f);
  } else if (!node.input(2).empty()) {
    const HostTensor* t = host(node.input(2));
    if (!t) node_error(node, "constant_value '" + node.input(2) + "' must be known before running");
    if (t->numel() != 1) node_error(node, "constant_value must be a scalar");
    s.value = static_cast<float>(t->at(0));
  }
  return s;
}

}  // namespace arcforge::runtime::detail
