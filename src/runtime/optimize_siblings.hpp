#pragma once
// The load-time merge of sibling convolutions (optimize_siblings.cpp), used by optimize_graph.
#include "graph.hpp"

namespace arcforge::runtime::detail {

// Merges float convolutions that read the same input with the same geometry and each have only a few
// output channels (a detector's score, box and landmark heads) into one convolution followed by a
// Split along the channels. Returns the number of nodes removed.
int merge_sibling_convs(Graph& g);

}  // namespace arcforge::runtime::detail
