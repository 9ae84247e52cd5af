#pragma once
// CUDA graphs: work issued once by the host under capture, then replayed by the GPU as one launch.
// Besides torch_compat.hpp, the only CUDA-only code; without CUDA, constructing one throws.
#include <functional>
#include <memory>

namespace arcforge::compat {

class CudaGraph {
 public:
  CudaGraph();  // throws std::runtime_error where libtorch has no CUDA
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Runs `work` eagerly on the stream capture() will use, after everything queued so far and
  // before anything queued later: the warm-up steps before a capture.
  void run_on_capture_stream(const std::function<void()>& work);
  // Records `work` without running it (autocast's weight cache off, as capture requires). If
  // `work` throws, or the capture fails, the capture is ended and the error rethrown.
  void capture(const std::function<void()>& work);
  // Runs what capture() recorded, on the current stream.
  void replay();
  bool captured() const { return captured_; }

 private:
  struct State;
  std::unique_ptr<State> state_;
  bool captured_ = false;
};

}  // namespace arcforge::compat
