#include "optimize_pad.hpp"

#include <optional>

#include "graph_rewrite.hpp"
#include "shape_util.hpp"

namespace arcforge::runtime::detail {
namespace {

// The Pad's amounts before and after each of `rank` axes, where it is a constant zero pad whose
// parameters are all constants; nothing otherwise.
std::optional<std::pair<Dims, Dims>> zero_pad_amounts(const Graph& g, const Node& pad, std::size_t rank) {
  if (pad.attr_s("mode", "constant") != "constant") return std::nullopt;
  for (std::size_t k = 1; k < pad.inputs.size(); ++k) {
    if (!pad.inputs[k].empty() && !g.is_constant(pad.inputs[k])) return std::nullopt;
  }
  const HostLookup constants = [&g](const std::string& v) -> const HostTensor* {
    auto it = g.constants.find(v);
    return it == g.constants.end() ? nullptr : &it->second;
  };
  if (pad.has("value") && pad.attr_f("value", 0.0f) != 0.0f) return std::nullopt;
  if (const HostTensor* value = pad.input(2).empty() ? nullptr : constants(pad.input(2))) {
    if (value->numel() != 1 || value->at(0) != 0.0) return std::nullopt;
  }
  const std::vector<int64_t> pads = ints_param(pad, 1, "pads", constants);
  std::vector<int64_t> axes = ints_param(pad, 3, "axes", constants);
  if (axes.empty()) {
    for (std::size_t k = 0; k < rank; ++k) axes.push_back(static_cast<int64_t>(k));
  }
  if (pads.size() != 2 * axes.size()) return std::nullopt;  // the planner reports it
  Dims begin(rank, 0), end(rank, 0);
  std::vector<bool> seen(rank, false);
  for (std::size_t k = 0; k < axes.size(); ++k) {
    const int64_t axis = axes[k] < 0 ? axes[k] + static_cast<int64_t>(rank) : axes[k];
    // Out of range or repeated: left for the planner, which names the problem.
    if (axis < 0 || axis >= static_cast<int64_t>(rank) || seen[axis]) return std::nullopt;
    seen[axis] = true;
    begin[axis] = pads[k];
    end[axis] = pads[k + axes.size()];
  }
  return std::make_pair(begin, end);
}

// `conv` reading `input` in place of the Pad's output, its padding grown by the Pad's; nothing
// where it cannot take it (auto_pad "SAME_*", or pads it does not have on the batch or channels).
std::optional<Node> conv_with_pads(const Node& conv, const std::string& input, const Dims& begin, const Dims& end) {
  const std::size_t spatial = begin.size() - 2;
  if (begin[0] != 0 || end[0] != 0 || begin[1] != 0 || end[1] != 0) return std::nullopt;
  const std::string auto_pad = conv.attr_s("auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && auto_pad != "VALID") return std::nullopt;
  std::vector<int64_t> pads = auto_pad == "VALID" ? std::vector<int64_t>{} : conv.attr_ints("pads");
  if (pads.empty()) pads.assign(2 * spatial, 0);
  if (pads.size() != 2 * spatial) return std::nullopt;
  for (std::size_t k = 0; k < spatial; ++k) {
    if (begin[2 + k] < 0 || end[2 + k] < 0) return std::nullopt;  // a crop, not a pad
    pads[k] += begin[2 + k];
    pads[spatial + k] += end[2 + k];
  }
  Node out = conv;
  out.attrs.erase("auto_pad");
  Attribute a;
  a.kind = Attribute::Kind::ints;
  a.ints = pads;
  out.attrs["pads"] = a;
  out.inputs[0] = input;
  return out;
}

}  // namespace

int fold_pad_into_conv(Graph& g) {
  const Readers readers(g);
  return fuse_each(g, [&](std::size_t k) -> std::optional<Fusion> {
    const Node& pad = g.nodes[k];
    if (pad.op != "Pad" || pad.outputs.size() != 1 || pad.inputs.empty()) return std::nullopt;
    const std::vector<std::size_t> convs = readers.internal(pad.outputs[0]);
    if (convs.empty()) return std::nullopt;
    Fusion f;
    f.nodes = {k};
    for (std::size_t j : convs) {
      const Node& conv = g.nodes[j];
      // The data input only: a pad of the weights, or of the same value read twice, stays.
      if (!plain_node(conv, "Conv") || conv.inputs.size() < 2 || conv.inputs[0] != pad.outputs[0]) return std::nullopt;
      for (std::size_t i = 1; i < conv.inputs.size(); ++i) {
        if (conv.inputs[i] == pad.outputs[0]) return std::nullopt;
      }
      const auto weights = g.constants.find(conv.inputs[1]);
      if (weights == g.constants.end() || weights->second.dims.size() < 3) return std::nullopt;
      const auto amounts = zero_pad_amounts(g, pad, weights->second.dims.size());
      if (!amounts) return std::nullopt;
      std::optional<Node> padded = conv_with_pads(conv, pad.inputs[0], amounts->first, amounts->second);
      if (!padded) return std::nullopt;
      if (f.nodes.size() == 1) {
        f.nodes.push_back(j);
        f.fused = std::move(*padded);
      } else {
        f.rewritten.emplace_back(j, std::vector<Node>{std::move(*padded)});
      }
    }
    return f;
  });
}

}  // namespace arcforge::runtime::detail
