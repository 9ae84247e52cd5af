#pragma once
// A zero Pad of the spatial axes in front of a convolution (TensorFlow's and MXNet's exports write
// asymmetric "same" padding so) becomes the convolution's own padding: one pass over the data less,
// and no padded copy held in memory.
#include "graph.hpp"

namespace arcforge::runtime::detail {

// Folds every such Pad into the convolutions that read it (all of its readers must be plain Convs
// reading it as their data); returns the number of nodes removed.
int fold_pad_into_conv(Graph& g);

}  // namespace arcforge::runtime::detail
