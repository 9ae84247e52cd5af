#pragma once
// What the pattern-matching rewrites (optimize_layernorm.cpp, optimize_attention.cpp) ask of a
// graph: who reads a value, and whether a node is a plain one they may absorb.
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "graph.hpp"

namespace arcforge::runtime::detail {

struct Readers {
  std::unordered_map<std::string, std::vector<std::size_t>> of;  // value -> nodes that read it
  std::set<std::string> graph_outputs;

  explicit Readers(const Graph& g);
  // The nodes reading `value`; empty when it is a graph output (it must then stay computed).
  std::vector<std::size_t> internal(const std::string& value) const;
};

// An `op` node with one output, no post-ops and no quantization: one a rewrite may absorb.
bool plain_node(const Node& n, const std::string& op);

// The only reader of `value`, if it is a plain `op` node; else -1.
int only_reader(const Graph& g, const Readers& r, const std::string& value, const std::string& op);

// Replaces, for each group, the nodes it lists by `fused`, put at the position of the group's last
// node (everything that reads the fused node's outputs comes after it), and drops the others.
// Groups must not share nodes. Returns the number of nodes removed.
int replace_groups(Graph& g, std::vector<std::pair<std::vector<std::size_t>, Node>> groups);

}  // namespace arcforge::runtime::detail
