#pragma once
// Shared by the detector families: construction and the output-shape bookkeeping.
#include <memory>
#include <string>
#include <vector>

#include "arcforge/pipeline/detector.hpp"

namespace arcforge::pipeline::detail {

std::unique_ptr<Detector> make_scrfd(runtime::Model model, const std::string& path, const DetectorOptions& options);
std::unique_ptr<Detector> make_yunet(runtime::Model model, const std::string& path, const DetectorOptions& options);
std::unique_ptr<Detector> make_rfb(runtime::Model model, const std::string& path, const DetectorOptions& options);

// The output shapes as declared, or from one probe run when a declared channel count is unknown.
std::vector<std::vector<int64_t>> output_shapes(const runtime::Model& model);

// One output tensor seen as rows x channels for image `index` of the batch: [N,K,C] or [K,C]
// (then batch 1).
struct OutputView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t channels = 0;
};
OutputView output_view(const runtime::Tensor& t, int64_t index, const std::string& path);

// The model's fixed input size, or the requested one where the model's H/W are dynamic.
// Dynamic sizes must be multiples of `multiple`.
void input_size(const runtime::Model& model, const DetectorOptions& options, int multiple, const std::string& path,
                int& width, int& height);

}  // namespace arcforge::pipeline::detail
