#pragma once
// What the pattern-matching rewrites (optimize_layernorm.cpp, optimize_attention.cpp) ask of a
// graph (who reads a value, whether a node is a plain one they may absorb) and how they apply their
// matches (fuse_each).
#include <functional>
#include <optional>
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

// A rewrite's match: the nodes it absorbs and the node that replaces them; and other nodes it
// rewrites in place, each into one or more nodes (which must compute the same outputs).
struct Fusion {
  std::vector<std::size_t> nodes;
  Node fused;
  std::vector<std::pair<std::size_t, std::vector<Node>>> rewritten;
};

// Tries `match` at every node in order and puts each fused node at the position of the last node
// its match absorbs (everything that reads its outputs comes after it), dropping the others; a
// match that shares a node with an earlier one is skipped, and so is one that throws InputError (a
// mistyped attribute: the planner reports it, naming the file); so is one whose rewritten nodes an
// earlier one absorbed or rewrote. Returns the number of nodes removed.
int fuse_each(Graph& g, const std::function<std::optional<Fusion>(std::size_t)>& match);

}  // namespace arcforge::runtime::detail
