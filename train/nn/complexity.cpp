// Parameters are counted from the module's trainable tensors; MACs by running one [1,3,H,W] image
// through the backbone with a MacRecorder active (see complexity_recorder.hpp for the rules).
#include "train/nn/complexity.hpp"

#include "arcforge/common/error.hpp"
#include "train/nn/complexity_recorder.hpp"
#include "train/nn/batch_norm_prelu.hpp"
#include "train/nn/cpu_conv.hpp"
#include "train/nn/prelu.hpp"

namespace arcforge::nn {
namespace detail {
namespace {

thread_local MacRecorder* active_recorder = nullptr;

// Elements of one image of a batch-first tensor.
int64_t per_image(const torch::Tensor& t) { return t.size(0) > 0 ? t.numel() / t.size(0) : 0; }

}  // namespace

MacRecorder::MacRecorder() : previous_(active_recorder) { active_recorder = this; }
MacRecorder::~MacRecorder() { active_recorder = previous_; }

void MacRecorder::add(int64_t macs) {
  if (active_recorder) active_recorder->macs_ += macs;
}
bool MacRecorder::active() { return active_recorder != nullptr; }

torch::Tensor metered(torch::nn::Conv2d& conv, const torch::Tensor& x) {
  torch::Tensor y = nn::conv2d_forward(conv, x);  // through arcforge's CPU kernels where they apply
  if (MacRecorder::active()) {
    // weight is [out, in/groups, kh, kw]: one output element costs in/groups * kh * kw MACs.
    const int64_t macs_per_output = conv->weight.numel() / conv->weight.size(0);
    const int64_t outputs = per_image(y);
    MacRecorder::add(outputs * macs_per_output + (conv->bias.defined() ? outputs : 0));
  }
  return y;
}

torch::Tensor metered(torch::nn::Linear& linear, const torch::Tensor& x) {
  torch::Tensor y = nn::linear_forward(linear, x);  // over tokens, a 1x1 convolution on the CPU
  if (MacRecorder::active()) {
    const int64_t outputs = per_image(y);
    MacRecorder::add(outputs * linear->weight.size(1) + (linear->bias.defined() ? outputs : 0));
  }
  return y;
}

torch::Tensor metered(torch::nn::LayerNorm& norm, const torch::Tensor& x) {
  if (MacRecorder::active()) MacRecorder::add(per_image(x) * (norm->options.elementwise_affine() ? 2 : 1));
  return norm->forward(x);
}

torch::Tensor metered(torch::nn::BatchNorm2d& bn, const torch::Tensor& x) {
  if (MacRecorder::active()) MacRecorder::add(per_image(x) * (bn->options.affine() ? 2 : 1));
  return nn::batch_norm2d(x, bn);  // through arcforge's CPU kernel where it applies
}

torch::Tensor metered(torch::nn::BatchNorm1d& bn, const torch::Tensor& x) {
  if (MacRecorder::active()) MacRecorder::add(per_image(x) * (bn->options.affine() ? 2 : 1));
  return bn->forward(x);
}

torch::Tensor metered(torch::nn::PReLU& prelu, const torch::Tensor& x) {
  if (MacRecorder::active()) MacRecorder::add(per_image(x));
  return nn::prelu(x, prelu->weight);  // the module's parameter, through arcforge's CPU kernel
}

torch::Tensor metered(torch::nn::BatchNorm2d& bn, torch::nn::PReLU& prelu, const torch::Tensor& x) {
  if (MacRecorder::active()) MacRecorder::add(per_image(x) * ((bn->options.affine() ? 2 : 1) + 1));
  return nn::batch_norm_prelu(x, bn, prelu->weight);
}

}  // namespace detail

namespace {

// Puts the module back in the mode it had, however the measurement ends.
class RestoreTrainingMode {
 public:
  explicit RestoreTrainingMode(torch::nn::Module& module)
      : module_(module), was_training_(module.is_training()) {}
  ~RestoreTrainingMode() { module_.train(was_training_); }
  RestoreTrainingMode(const RestoreTrainingMode&) = delete;
  RestoreTrainingMode& operator=(const RestoreTrainingMode&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

}  // namespace

Complexity measure_complexity(Backbone& backbone, int64_t height, int64_t width) {
  if (height <= 0 || width <= 0) {
    throw ConfigError("measure_complexity: input size must be positive, got " +
                      std::to_string(height) + "x" + std::to_string(width));
  }
  Complexity result;
  const std::vector<torch::Tensor> parameters = backbone.parameters();
  for (const torch::Tensor& p : parameters) {
    if (p.requires_grad()) result.params += p.numel();
  }

  // Eval mode: batch norm on a single image needs running statistics, and the measurement must
  // not update them. The image lives where the weights live, in their dtype.
  RestoreTrainingMode restore(backbone);
  backbone.eval();
  torch::NoGradGuard no_grad;
  const torch::TensorOptions options =
      parameters.empty() ? torch::TensorOptions().dtype(torch::kFloat32)
                         : torch::TensorOptions().dtype(parameters.front().dtype())
                               .device(parameters.front().device());
  detail::MacRecorder recorder;
  backbone.forward(torch::zeros({1, 3, height, width}, options));
  result.macs = recorder.macs();
  return result;
}

}  // namespace arcforge::nn
