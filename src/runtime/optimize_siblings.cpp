// Sibling convolutions merged into one. SCRFD's heads apply three 3x3 convolutions to each level's
// features: 2, 8 and 20 output channels (score, box, landmarks). oneDNN computes each in blocks of
// 8 or 16 output channels, so the 2-channel one costs as much as a 16-channel one and together they
// were a fifth of SCRFD-500m's time; one convolution with their filters stacked (zero filters pad
// the total to a multiple of 8, so that Winograd can take it) and a Split computes the same values.
#include "optimize_siblings.hpp"

#include <algorithm>
#include <map>
#include <string>
#include <tuple>

namespace arcforge::runtime::detail {
namespace {

// The most output channels a convolution may have to be merged: heads, not whole layers (merging
// those would only add a Split's copy).
constexpr int64_t kMaxHeadChannels = 32;

// What must agree for two convolutions to be one: the input, the geometry, and no other attribute.
using GeometryKey = std::tuple<std::string, std::vector<int64_t>, std::vector<int64_t>, std::vector<int64_t>,
                               std::vector<int64_t>, std::string>;

bool mergeable(const Graph& g, const Node& n) {
  if (n.op != "Conv" || n.outputs.size() != 1 || n.outputs[0].empty() || !n.post_ops.empty() || n.quant.active ||
      n.attr_i("group", 1) != 1) {
    return false;
  }
  for (const auto& [key, attr] : n.attrs) {
    if (key != "kernel_shape" && key != "strides" && key != "pads" && key != "dilations" && key != "group" &&
        key != "auto_pad") {
      return false;
    }
  }
  const auto w = g.constants.find(n.input(1));
  if (w == g.constants.end() || w->second.dtype != DType::f32 || w->second.dims.size() != 4 ||
      w->second.dims[0] > kMaxHeadChannels) {
    return false;
  }
  if (n.input(2).empty()) return true;
  const auto b = g.constants.find(n.input(2));
  return b != g.constants.end() && b->second.dtype == DType::f32 && b->second.numel() == w->second.dims[0];
}

GeometryKey geometry_of(const Graph& g, const Node& n) {
  const std::vector<int64_t>& w = g.constants.at(n.input(1)).dims;
  return {n.input(0), {w[1], w[2], w[3]}, n.attr_ints("strides"), n.attr_ints("pads"), n.attr_ints("dilations"),
          n.attr_s("auto_pad", "NOTSET")};
}

// The merged convolution and its Split, for the siblings `group` (indices into g.nodes).
std::vector<Node> merge(Graph& g, const std::vector<std::size_t>& group) {
  const Node& first = g.nodes[group[0]];
  const std::vector<int64_t>& w0 = g.constants.at(first.input(1)).dims;
  const int64_t per_filter = w0[1] * w0[2] * w0[3];
  int64_t total = 0;
  std::string name;
  std::vector<int64_t> sizes;
  for (std::size_t k : group) {
    sizes.push_back(g.constants.at(g.nodes[k].input(1)).dims[0]);
    total += sizes.back();
    name += (name.empty() ? "" : "+") + g.nodes[k].name;
  }
  const int64_t padded = (total + 7) / 8 * 8;
  std::vector<float> weights(static_cast<std::size_t>(padded * per_filter), 0.0f);
  std::vector<float> bias(static_cast<std::size_t>(padded), 0.0f);
  int64_t at = 0;
  for (std::size_t k : group) {
    const Node& n = g.nodes[k];
    const HostTensor& w = g.constants.at(n.input(1));
    std::copy(w.f.begin(), w.f.end(), weights.begin() + at * per_filter);
    if (!n.input(2).empty()) {
      const HostTensor& b = g.constants.at(n.input(2));
      std::copy(b.f.begin(), b.f.end(), bias.begin() + at);
    }
    at += w.dims[0];
  }
  Node conv = first;
  conv.name = name;
  conv.inputs = {first.input(0), name + "/weights", name + "/bias"};
  conv.outputs = {name + "/output"};
  g.constants[conv.inputs[1]] = HostTensor::from_f32({padded, w0[1], w0[2], w0[3]}, std::move(weights));
  g.constants[conv.inputs[2]] = HostTensor::from_f32({padded}, std::move(bias));

  Node split;
  split.name = name + "/split";
  split.op = "Split";
  split.inputs = {conv.outputs[0]};
  for (std::size_t k : group) split.outputs.push_back(g.nodes[k].outputs[0]);
  if (padded > total) {  // the zero filters' outputs, read by nothing
    sizes.push_back(padded - total);
    split.outputs.emplace_back();
  }
  Attribute axis;
  axis.kind = Attribute::Kind::i;
  axis.i = 1;
  split.attrs["axis"] = axis;
  Attribute split_sizes;
  split_sizes.kind = Attribute::Kind::ints;
  split_sizes.ints = sizes;
  split.attrs["split"] = split_sizes;
  return {conv, split};
}

}  // namespace

int merge_sibling_convs(Graph& g) {
  std::map<GeometryKey, std::vector<std::size_t>> siblings;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    if (mergeable(g, g.nodes[k])) siblings[geometry_of(g, g.nodes[k])].push_back(k);
  }
  // The merged pair takes the first sibling's place: the shared input is computed before it, and
  // every sibling's readers come after their own sibling, so after the first.
  std::map<std::size_t, std::vector<Node>> replacement;
  std::vector<bool> dropped(g.nodes.size(), false);
  int removed = 0;
  for (const auto& [key, group] : siblings) {
    if (group.size() < 2) continue;
    replacement[group[0]] = merge(g, group);
    for (std::size_t k : group) dropped[k] = true;
    removed += static_cast<int>(group.size()) - 2;
  }
  if (replacement.empty()) return 0;
  std::vector<Node> nodes;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    const auto it = replacement.find(k);
    if (it != replacement.end()) {
      for (Node& n : it->second) nodes.push_back(std::move(n));
    } else if (!dropped[k]) {
      nodes.push_back(std::move(g.nodes[k]));
    }
  }
  g.nodes = std::move(nodes);
  return removed;
}

}  // namespace arcforge::runtime::detail
