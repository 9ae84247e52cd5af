#pragma once
// Post-training int8 quantization of an ONNX model: calibration on real inputs, then a QDQ file
// (QuantizeLinear/DequantizeLinear around every quantized Conv or Gemm) that ONNX Runtime runs too
// and that arcforge's runtime runs as oneDNN int8 convolutions and inner products with
// Precision::int8.
//
//   auto report = quantize_model("mbf.onnx", calibration_batches, "mbf.int8.onnx", {});
//
// Weights: symmetric s8, one scale per output channel (max |w| / 127). Biases: int32 with scale
// s_x * s_w[c], as ONNX Runtime's quantizer writes them. Activations (every quantized Conv's input):
// one scale per tensor, zero point 0, u8 when the tensor was never negative during calibration,
// else s8; the clipping threshold T comes from a histogram of |x| (2048 bins up to the largest
// magnitude seen) by `method`, and the scale is T / 255 (u8) or T / 127 (s8).
#include <cstdint>
#include <string>
#include <vector>

#include "arcforge/runtime/model.hpp"

namespace arcforge::runtime {

// minmax: the largest |x| seen. percentile: that percentile of |x|. entropy: the threshold whose
// quantized distribution has the least KL divergence from the original (TensorRT's method). mse:
// the threshold with the least expected squared error (rounding inside, clipping outside).
enum class CalibrationMethod { minmax, percentile, entropy, mse };
std::string to_string(CalibrationMethod m);
CalibrationMethod parse_calibration_method(const std::string& text);  // throws ConfigError

struct QuantizeOptions {
  // mse is the default: on MobileFaceNet it gave the best cosine to fp32 (docs/runtime.md).
  CalibrationMethod method = CalibrationMethod::mse;
  double percentile = 99.99;  // of |x|, for CalibrationMethod::percentile
  // Convolutions left in fp32: "first" (those reading a graph input), "last" (those whose output
  // reaches a graph output without another Conv), "depthwise" (one or two input channels per group), or
  // node names. For MobileFaceNet, {"depthwise", "last"} is what keeps the cosine to fp32 >= 0.99.
  std::vector<std::string> keep_fp32;
  // Operator types to quantize: "Conv" (default) and/or "Gemm" (a constant 2-D B, transA 0,
  // alpha 1, beta 1: the linear layers of a ViT, IResNet's FC head). "first" and "last" above
  // refer to the nodes of these types.
  std::vector<std::string> op_types = {"Conv"};
  // Bias correction: each quantized node's bias absorbs the mean change of its output that
  // quantization causes, per output channel, sum over (w_q * E[Q(x)] - w * E[x]) with the
  // per-channel means of its input measured on the calibration data (a third pass).
  bool bias_correction = true;
  int threads = 0;
};

// The calibration result of one activation tensor.
struct ActivationRange {
  std::string value;
  float min = 0, max = 0;  // seen during calibration
  float threshold = 0;     // |x| clipped here
  float scale = 1;
  bool is_signed = false;  // s8 (else u8)
  // Per channel (axis 1) of the calibration data: E[x] and E[Q(x)], Q the quantize-dequantize
  // round trip at `scale`; filled when QuantizeOptions::bias_correction is on.
  std::vector<double> channel_mean, channel_quantized_mean;
  std::vector<int64_t> shape;  // of the calibration batches (a convolution's input H, W)
};

struct QuantizeReport {
  std::vector<std::string> quantized_convs;  // the quantized Conv (and Gemm) nodes
  std::vector<std::string> kept_fp32;  // convolutions left in fp32 (asked for, or not quantizable)
  std::vector<std::string> bias_corrected;  // quantized nodes whose bias was corrected
  std::vector<ActivationRange> activations;
  int64_t samples = 0;
  int64_t opset_from = 0, opset_to = 0;  // per-channel DequantizeLinear needs opset 13
};

// Runs `calibration` (batches of model inputs, single-input models only) through the fp32 model,
// writes the QDQ model to `out_path` after libonnx's checker accepted it. Throws InputError naming
// the file for a model it cannot quantize, ConfigError for bad options.
QuantizeReport quantize_model(const std::string& model_path, const std::vector<Tensor>& calibration,
                              const std::string& out_path, const QuantizeOptions& options = {});

// --- the calibration statistics, exposed for tests ---

// A histogram of |x| over [0, range) in `counts.size()` equal bins (the last bin takes range).
struct MagnitudeHistogram {
  std::vector<double> counts;
  float range = 0;
};
// The clipping threshold for a histogram. `levels`: quantized levels on the positive side
// (127 for s8, 255 for u8; the entropy method compares distributions at that resolution).
float calibration_threshold(const MagnitudeHistogram& h, CalibrationMethod method, double percentile, int levels);

}  // namespace arcforge::runtime
