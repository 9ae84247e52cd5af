#pragma once
// Evaluation of small tensors on the host: shape arithmetic (Shape -> Gather -> Unsqueeze -> Concat
// -> Reshape, as PyTorch exports it) and constant folding at load. Runs once per plan, never per
// inference.
#include <functional>
#include <string>
#include <vector>

#include "shape_util.hpp"

namespace arcforge::runtime::detail {

// Operators this evaluator implements.
bool is_host_op(const std::string& op);

// True when `node` should run on the host: a host op whose data inputs are all host values
// (Shape needs only its input's dimensions).
bool runs_on_host(const Node& node, const HostLookup& host);

// `dims` returns the shape of any value, host or not (only Shape uses it).
std::vector<HostTensor> eval_host(const Node& node, const HostLookup& host,
                                  const std::function<Dims(const std::string&)>& dims, std::size_t max_bytes);

}  // namespace arcforge::runtime::detail
