#include "graph_readers.hpp"

#include <algorithm>

namespace arcforge::runtime::detail {

Readers::Readers(const Graph& g) {
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    for (const auto& in : g.nodes[k].inputs) {
      if (!in.empty()) of[in].push_back(k);
    }
    for (const auto& p : g.nodes[k].post_ops) {
      if (!p.operand.empty()) of[p.operand].push_back(k);
    }
  }
  for (const auto& o : g.outputs) graph_outputs.insert(o.name);
}

std::vector<std::size_t> Readers::internal(const std::string& value) const {
  auto it = of.find(value);
  if (graph_outputs.count(value) || it == of.end()) return {};
  return it->second;
}

bool plain_node(const Node& n, const std::string& op) {
  return n.op == op && n.outputs.size() == 1 && !n.outputs[0].empty() && n.post_ops.empty() && !n.quant.active;
}

int only_reader(const Graph& g, const Readers& r, const std::string& value, const std::string& op) {
  const auto readers = r.internal(value);
  if (readers.size() != 1 || !plain_node(g.nodes[readers[0]], op)) return -1;
  return static_cast<int>(readers[0]);
}

int replace_groups(Graph& g, std::vector<std::pair<std::vector<std::size_t>, Node>> groups) {
  std::vector<bool> dead(g.nodes.size(), false);
  int removed = 0;
  for (auto& [nodes, fused] : groups) {
    for (std::size_t j : nodes) dead[j] = true;
    const std::size_t last = *std::max_element(nodes.begin(), nodes.end());
    dead[last] = false;
    g.nodes[last] = std::move(fused);
    removed += static_cast<int>(nodes.size()) - 1;
  }
  std::vector<Node> kept;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    if (!dead[k]) kept.push_back(std::move(g.nodes[k]));
  }
  g.nodes = std::move(kept);
  return removed;
}

}  // namespace arcforge::runtime::detail
