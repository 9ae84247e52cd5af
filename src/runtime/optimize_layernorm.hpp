#pragma once
// The load-time fusion of PyTorch's decomposed LayerNorm (optimize_layernorm.cpp), used by
// optimize_graph.
#include "graph.hpp"

namespace arcforge::runtime::detail {

// Rewrites each exact ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div[/Mul][/Add] chain into one
// LayerNormalization node (axis -1). Returns the number of nodes removed.
int fuse_layernorm(Graph& g);

}  // namespace arcforge::runtime::detail
