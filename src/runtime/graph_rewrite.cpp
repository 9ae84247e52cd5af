#include "graph_rewrite.hpp"

#include <algorithm>
#include <map>

#include "arcforge/common/error.hpp"

namespace arcforge::runtime::detail {

Readers::Readers(const Graph& g) {
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    for (const auto& value : g.nodes[k].values_read()) of[value].push_back(k);
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

int fuse_each(Graph& g, const std::function<std::optional<Fusion>(std::size_t)>& match) {
  std::vector<bool> taken(g.nodes.size(), false);
  std::vector<Fusion> fusions;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    if (taken[k]) continue;
    std::optional<Fusion> f;
    try {
      f = match(k);
    } catch (const InputError&) {
      continue;
    }
    if (!f || f->nodes.empty()) continue;
    bool overlaps = false;
    for (std::size_t j : f->nodes) overlaps = overlaps || taken[j];
    for (const auto& [j, nodes] : f->rewritten) overlaps = overlaps || taken[j];
    if (overlaps) continue;
    for (std::size_t j : f->nodes) taken[j] = true;
    for (const auto& [j, nodes] : f->rewritten) taken[j] = true;
    fusions.push_back(std::move(*f));
  }
  std::vector<bool> dead(g.nodes.size(), false);
  std::map<std::size_t, std::vector<Node>> rewritten;
  int removed = 0;
  for (auto& f : fusions) {
    for (std::size_t j : f.nodes) dead[j] = true;
    const std::size_t last = *std::max_element(f.nodes.begin(), f.nodes.end());
    dead[last] = false;
    g.nodes[last] = std::move(f.fused);
    removed += static_cast<int>(f.nodes.size()) - 1;
    for (auto& [j, nodes] : f.rewritten) {
      removed -= static_cast<int>(nodes.size()) - 1;
      rewritten[j] = std::move(nodes);
    }
  }
  std::vector<Node> kept;
  for (std::size_t k = 0; k < g.nodes.size(); ++k) {
    if (auto r = rewritten.find(k); r != rewritten.end()) {
      for (auto& n : r->second) kept.push_back(std::move(n));
    } else if (!dead[k]) {
      kept.push_back(std::move(g.nodes[k]));
    }
  }
  g.nodes = std::move(kept);
  return removed;
}

}  // namespace arcforge::runtime::detail
