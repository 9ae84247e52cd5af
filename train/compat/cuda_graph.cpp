#include "train/compat/cuda_graph.hpp"

#include <stdexcept>

#ifdef ARCFORGE_WITH_CUDA
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace arcforge::compat {

#ifdef ARCFORGE_WITH_CUDA

struct CudaGraph::State {
  at::cuda::CUDAGraph graph;
  // Capture needs a stream other than the default one; replay may run on any.
  c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool();
};

CudaGraph::CudaGraph() : state_(std::make_unique<State>()) {}

CudaGraph::~CudaGraph() = default;

void CudaGraph::run_on_capture_stream(const std::function<void()>& work) {
  // Whole-device synchronisations order the side stream after, and before, the default stream's
  // work; this runs only for the few steps before a capture.
  c10::cuda::device_synchronize();
  {
    c10::cuda::CUDAStreamGuard on_side(state_->stream);
    work();
  }
  c10::cuda::device_synchronize();
}

void CudaGraph::capture(const std::function<void()>& work) {
  c10::cuda::device_synchronize();
  // What the warm-up cached is released, so the graph's private pool does not sit beside it.
  c10::cuda::CUDACachingAllocator::emptyCache();
  c10::cuda::CUDAStreamGuard on_side(state_->stream);
  // Cached low-precision copies of the weights would be made once, at capture, and kept by the
  // graph; PyTorch requires autocast's cache off under capture.
  const bool cache = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);
  state_->graph.capture_begin();
  try {
    work();
  } catch (...) {
    at::autocast::set_autocast_cache_enabled(cache);
    try {
      state_->graph.capture_end();  // leaves the stream usable; fails itself when capture was invalidated
    } catch (...) {
    }
    throw;
  }
  at::autocast::set_autocast_cache_enabled(cache);
  state_->graph.capture_end();
  captured_ = true;
}

void CudaGraph::replay() {
  if (!captured_) throw std::logic_error("CudaGraph::replay before capture");
  state_->graph.replay();
}

#else

struct CudaGraph::State {};

CudaGraph::CudaGraph() {
  throw std::runtime_error("CUDA graphs need libtorch built with CUDA; this build has none");
}

CudaGraph::~CudaGraph() = default;

void CudaGraph::run_on_capture_stream(const std::function<void()>& work) { work(); }

void CudaGraph::capture(const std::function<void()>&) {}

void CudaGraph::replay() {}

#endif

}  // namespace arcforge::compat
