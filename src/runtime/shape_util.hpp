#pragma once
// Shape rules of the ONNX operators, shared by the host evaluator (shape arithmetic) and the device
// planner (views, slices, broadcasting). Errors are InputErrors that name the node; the planner
// prefixes the file.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "graph.hpp"

namespace arcforge::runtime::detail {

using Dims = std::vector<int64_t>;
// Returns the host value of a tensor, or nullptr when it is only known at run time.
using HostLookup = std::function<const HostTensor*(const std::string&)>;

[[noreturn]] void node_error(const Node& node, const std::string& what);
std::string dims_str(const Dims& dims);
// Saturating: INT64_MAX when the product does not fit (0 when a dimension is 0).
int64_t numel(const Dims& dims);
Dims strides_of(const Dims& dims);  // C-order element strides, saturating like numel
// Throws an InputError naming the node when `dims` has a negative dimension or a tensor of these
// dims with `elem_bytes`-byte elements would take more than `max_bytes`.
void check_tensor_size(const Node& node, const Dims& dims, std::size_t elem_bytes, std::size_t max_bytes);
// `v` as an integer (a dimension, index or shape entry read from a tensor); throws for NaN, an
// infinity or a value outside int64.
int64_t to_int64(const Node& node, double v);
// Element k of a host tensor as an integer: integer tensors exactly (INT64_MAX, ONNX's "to the
// end" in Slice, stays itself), float ones through to_int64.
int64_t int_at(const Node& node, const HostTensor& t, int64_t k);

int64_t normalize_axis(const Node& node, int64_t axis, int64_t rank);
Dims broadcast_dims(const Node& node, const Dims& a, const Dims& b);
Dims reshape_dims(const Node& node, const Dims& in, const std::vector<int64_t>& shape, bool allowzero);
Dims unsqueeze_dims(const Node& node, const Dims& in, std::vector<int64_t> axes);
Dims squeeze_dims(const Node& node, const Dims& in, std::vector<int64_t> axes);
Dims flatten_dims(const Node& node, const Dims& in);
std::vector<int64_t> transpose_perm(const Node& node, int64_t rank);
Dims concat_dims(const Node& node, const std::vector<Dims>& inputs, int64_t axis);

// A normalised Slice: per axis of the input, the first index, the step and the output extent.
struct SliceSpec {
  Dims start, step, out;
};
SliceSpec slice_spec(const Node& node, const Dims& in, const HostLookup& host);

// A normalised Pad: per axis of the input, the elements added before and after it (negative:
// removed, as a Slice would), the mode, the constant of mode constant, and the output dims.
struct PadSpec {
  enum class Mode { constant, reflect, edge, wrap };
  Dims begin, end, out;
  Mode mode = Mode::constant;
  float value = 0;
};
// Reads opset 2's attributes (pads, value, mode) and opset 11+'s inputs (pads, constant_value and
// opset 18's axes), which must be known before running.
PadSpec pad_spec(const Node& node, const Dims& in, const HostLookup& host);

// An integer list given as attribute `attr` (older opsets) or as input `index` (newer ones).
// `found` tells whether either was present.
std::vector<int64_t> ints_param(const Node& node, std::size_t index, const std::string& attr, const HostLookup& host,
                                bool* found = nullptr);

}  // namespace arcforge::runtime::detail
