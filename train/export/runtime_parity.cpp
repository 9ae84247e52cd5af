#include "train/export/runtime_parity.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstring>

#include "arcforge/common/error.hpp"
#include "arcforge/runtime/model.hpp"
#include "train/export/onnx_writer.hpp"

namespace arcforge::onnx_io {

ParityResult compare_with_runtime(nn::Backbone& backbone, const std::string& onnx_path, int64_t batch,
                                  uint64_t seed, int threads) {
  if (threads <= 0) threads = at::get_num_threads();
  runtime::Options options;
  options.threads = threads;
  const runtime::Model model = runtime::Model::load(onnx_path, options);
  if (model.inputs().size() != 1 || model.outputs().size() != 1) {
    throw InputError(file_message(onnx_path, "a face recognizer has one input and one output"));
  }
  const int64_t fixed = model.inputs()[0].shape.empty() ? -1 : model.inputs()[0].shape[0];
  if (batch <= 0) batch = fixed > 0 ? fixed : 2;

  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const torch::Tensor images =
      torch::rand({batch, 3, kInputSize, kInputSize}, generator, torch::kFloat) * 2.0 - 1.0;
  backbone.eval();
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = backbone.forward(images).contiguous();
  }
  runtime::Tensor input;
  input.shape = {batch, 3, kInputSize, kInputSize};
  input.data.assign(images.data_ptr<float>(), images.data_ptr<float>() + images.numel());
  const std::vector<runtime::Tensor> outputs = model.run({input});
  const runtime::Tensor& got = outputs.at(0);
  if (got.numel() != expected.numel()) {
    throw InputError(file_message(onnx_path, "the runtime gives " + std::to_string(got.numel()) +
                                                 " outputs where libtorch gives " + std::to_string(expected.numel())));
  }
  ParityResult r;
  r.batch = batch;
  const float* want = expected.data_ptr<float>();
  for (int64_t k = 0; k < expected.numel(); ++k) {
    r.max_abs_diff = std::max(r.max_abs_diff, std::abs(static_cast<double>(got.data[k]) - want[k]));
    r.output_scale = std::max(r.output_scale, std::abs(static_cast<double>(want[k])));
  }
  at::set_num_threads(threads);  // the runtime set the OpenMP team size; hand it back explicitly
  return r;
}

}  // namespace arcforge::onnx_io
