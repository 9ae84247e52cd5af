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
int64_t numel(const Dims& dims);
Dims strides_of(const Dims& dims);  // C-order element strides

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

// An integer list given as attribute `attr` (older opsets) or as input `index` (newer ones).
// `found` tells whether either was present.
std::vector<int64_t> ints_param(const Node& node, std::size_t index, const std::string& attr, const HostLookup& host,
                                bool* found = nullptr);

}  // namespace arcforge::runtime::detail
