#pragma once
// Names arcforge's own autograd functions in PyTorch's profiler (`arcforge train --profile`): the
// forward pass shows as one event under this name, the backward as its autograd node. Costs one
// thread-local check while the profiler is off.
#include <ATen/record_function.h>

#include <vector>

#define ARCFORGE_TRACE_OP(name) RECORD_FUNCTION(name, std::vector<c10::IValue>())
