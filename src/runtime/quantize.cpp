// quantize_model: calibrate every quantized Conv's (and Gemm's) input on the fp32 model (two passes over the
// calibration batches: the range, then a |x| histogram over it), then write the QDQ model.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "arcforge/common/error.hpp"
#include "arcforge/common/log.hpp"
#include "arcforge/runtime/quantize.hpp"
#include "qdq_writer.hpp"

namespace arcforge::runtime {
namespace {

constexpr int kHistogramBins = 2048;

struct Stats {
  float min = INFINITY, max = -INFINITY;
  MagnitudeHistogram hist;
};

// Pass 3: per channel (axis 1) of every calibrated value, E[x] and E[Q(x)] with Q the
// quantize-dequantize round trip of its range (round half to even, saturate), in double.
void measure_channel_means(Session& session, const std::vector<Tensor>& calibration, std::size_t first_extra,
                           const std::vector<std::string>& values, std::map<std::string, ActivationRange>& ranges) {
  std::vector<int64_t> counts(values.size(), 0);
  for (const auto& batch : calibration) {
    const auto out = session.run({batch});
    for (std::size_t v = 0; v < values.size(); ++v) {
      const Tensor& t = out[first_extra + v];
      if (t.shape.size() < 2) continue;
      ActivationRange& r = ranges.at(values[v]);
      r.shape = t.shape;
      const int64_t n = t.shape[0], c = t.shape[1], inner = t.numel() / std::max<int64_t>(n * c, 1);
      r.channel_mean.resize(static_cast<std::size_t>(c), 0.0);
      r.channel_quantized_mean.resize(static_cast<std::size_t>(c), 0.0);
      const double lo = r.is_signed ? -128.0 : 0.0, hi = r.is_signed ? 127.0 : 255.0;
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t k = 0; k < c; ++k) {
          const float* x = t.data.data() + (i * c + k) * inner;
          double sum = 0, qsum = 0;
          for (int64_t j = 0; j < inner; ++j) {
            sum += x[j];
            qsum += std::clamp(static_cast<double>(std::nearbyint(x[j] / r.scale)), lo, hi) * r.scale;
          }
          r.channel_mean[k] += sum;
          r.channel_quantized_mean[k] += qsum;
        }
      }
      counts[v] += n * inner;
    }
  }
  for (std::size_t v = 0; v < values.size(); ++v) {
    ActivationRange& r = ranges.at(values[v]);
    for (std::size_t k = 0; k < r.channel_mean.size(); ++k) {
      r.channel_mean[k] /= static_cast<double>(std::max<int64_t>(counts[v], 1));
      r.channel_quantized_mean[k] /= static_cast<double>(std::max<int64_t>(counts[v], 1));
    }
  }
}

}  // namespace

QuantizeReport quantize_model(const std::string& model_path, const std::vector<Tensor>& calibration,
                              const std::string& out_path, const QuantizeOptions& options) {
  if (calibration.empty()) throw ConfigError("quantize: no calibration inputs");
  if (options.method == CalibrationMethod::percentile && !(options.percentile > 0 && options.percentile <= 100)) {
    throw ConfigError("quantize: --percentile must be in (0, 100]");
  }
  Options load;
  load.threads = options.threads;
  detail::QdqWriter writer(model_path, options.keep_fp32, options.op_types, load.max_model_bytes);
  const std::vector<std::string> values = writer.activations();
  load.extra_outputs = values;
  const Model model = Model::load(model_path, load);
  if (model.inputs().size() != 1) throw InputError(file_message(model_path, "quantize supports single-input models only"));
  const std::size_t first_extra = model.outputs().size() - values.size();

  std::vector<Stats> stats(values.size());
  Session session = model.new_session();
  QuantizeReport report;
  for (const auto& batch : calibration) {
    const auto out = session.run({batch});
    for (std::size_t v = 0; v < values.size(); ++v) {
      const auto& d = out[first_extra + v].data;
      const auto [lo, hi] = std::minmax_element(d.begin(), d.end());
      if (lo == d.end()) continue;
      stats[v].min = std::min(stats[v].min, *lo);
      stats[v].max = std::max(stats[v].max, *hi);
    }
    report.samples += batch.shape.empty() ? 0 : batch.shape[0];
  }
  for (auto& s : stats) {
    s.hist.range = std::max(std::abs(s.min), std::abs(s.max));
    if (!std::isfinite(s.hist.range)) throw InputError(file_message(model_path, "calibration produced a non-finite activation"));
    s.hist.counts.assign(kHistogramBins, 0.0);
  }
  if (options.method != CalibrationMethod::minmax) {
    for (const auto& batch : calibration) {
      const auto out = session.run({batch});
      for (std::size_t v = 0; v < values.size(); ++v) {
        Stats& s = stats[v];
        if (s.hist.range <= 0) continue;
        const float to_bin = kHistogramBins / s.hist.range;
        for (float x : out[first_extra + v].data) {
          const int bin = std::min(kHistogramBins - 1, static_cast<int>(std::abs(x) * to_bin));
          s.hist.counts[bin] += 1;
        }
      }
    }
  }
  std::map<std::string, ActivationRange> ranges;
  for (std::size_t v = 0; v < values.size(); ++v) {
    ActivationRange r;
    r.value = values[v];
    r.min = stats[v].min;
    r.max = stats[v].max;
    r.is_signed = stats[v].min < 0;
    const int levels = r.is_signed ? 127 : 255;
    r.threshold = calibration_threshold(stats[v].hist, options.method, options.percentile, levels);
    r.scale = r.threshold > 0 ? r.threshold / levels : 1.0f;
    ranges[r.value] = r;
    report.activations.push_back(r);
  }
  if (options.bias_correction) measure_channel_means(session, calibration, first_extra, values, ranges);
  writer.write(ranges, out_path, report);
  log::info(log::cat("quantize: ", model_path, " -> ", out_path, ": ", report.quantized_convs.size(),
                     " convolutions in int8, ", report.kept_fp32.size(), " kept in fp32, ", report.samples,
                     " calibration samples"));
  return report;
}

}  // namespace arcforge::runtime
