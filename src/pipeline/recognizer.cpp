// Recognizer: preprocessing of aligned crops, batched runs, flip-add.
#include "arcforge/pipeline/recognizer.hpp"

#include <algorithm>
#include <cmath>

#include "arcforge/common/error.hpp"
#include "arcforge/runtime/face_input.hpp"

namespace arcforge::pipeline {
namespace {

// Crops per model call: amortises per-call overhead; 32 x 150 KB of input.
constexpr size_t kMaxBatch = 32;

image::Image mirrored(const image::Image& in) {
  image::Image out(in.width, in.height, in.channels);
  for (int y = 0; y < in.height; ++y) {
    for (int x = 0; x < in.width; ++x) {
      for (int c = 0; c < in.channels; ++c) out.at(x, y, c) = in.at(in.width - 1 - x, y, c);
    }
  }
  return out;
}

}  // namespace

bool looks_like_recognizer(const runtime::Model& model) {
  if (model.inputs().size() != 1 || model.outputs().size() != 1) return false;
  const auto& in = model.inputs()[0].shape;
  const auto& out = model.outputs()[0].shape;
  // Face recognizers take aligned crops of 112 (or 128, or 112x96) pixels; other one-output models
  // of a pack (InsightFace's 2d106det at 192, genderage with 3 outputs) must not pass.
  const bool crop_input = in.size() == 4 && in[1] == 3 && (in[2] == 112 || in[2] == 128) &&
                          (in[3] == 96 || in[3] == 112 || in[3] == 128);
  return crop_input && out.size() == 2 && out[1] >= 64 && out[1] <= 4096;
}

Recognizer::Recognizer(runtime::Model model, std::string path, PreprocessSpec spec)
    : model_(std::move(model)), path_(std::move(path)), spec_(std::move(spec)) {
  embedding_size_ = static_cast<int>(model_.outputs()[0].shape[1]);
  batched_ = model_.inputs()[0].shape[0] != 1;
}

Recognizer Recognizer::load(const std::string& path, std::optional<PreprocessSpec> spec,
                            const runtime::Options& runtime_options) {
  runtime::Model model = runtime::Model::load(path, runtime_options);
  if (!looks_like_recognizer(model)) {
    throw InputError(path + ": not a face recognizer: expected one [N,3,H,W] input and one [N,E] output");
  }
  PreprocessSpec chosen = spec ? *spec : sidecar_spec(path).value_or(PreprocessSpec{});
  const auto& in = model.inputs()[0].shape;
  if (in[2] != chosen.height || in[3] != chosen.width) {
    if (spec || chosen.source != "default") {
      throw InputError(path + ": takes " + std::to_string(in[3]) + "x" + std::to_string(in[2]) +
                       " crops but the preprocessing spec says " + std::to_string(chosen.width) + "x" +
                       std::to_string(chosen.height));
    }
    chosen.height = static_cast<int>(in[2]);
    chosen.width = static_cast<int>(in[3]);
  }
  return Recognizer(std::move(model), path, std::move(chosen));
}

std::vector<std::vector<float>> Recognizer::run(const std::vector<const image::Image*>& crops, bool mirror) const {
  std::vector<std::vector<float>> out;
  const size_t chunk = batched_ ? kMaxBatch : 1;
  for (size_t start = 0; start < crops.size(); start += chunk) {
    const size_t end = std::min(crops.size(), start + chunk);
    std::vector<image::Image> batch;
    for (size_t i = start; i < end; ++i) batch.push_back(mirror ? mirrored(*crops[i]) : *crops[i]);
    const runtime::Tensor input = runtime::faces_to_tensor(batch, {spec_.mean, spec_.std, spec_.bgr});
    const runtime::Tensor result = model_.run({input}).front();
    for (size_t i = 0; i < end - start; ++i) {
      out.emplace_back(result.data.begin() + static_cast<int64_t>(i) * embedding_size_,
                       result.data.begin() + static_cast<int64_t>(i + 1) * embedding_size_);
    }
  }
  return out;
}

std::vector<std::vector<float>> Recognizer::embed(const std::vector<image::Image>& crops, bool flip) const {
  std::vector<const image::Image*> pointers;
  for (const auto& crop : crops) {
    if (crop.width != spec_.width || crop.height != spec_.height || crop.channels != 3) {
      throw InputError(path_ + ": expected " + std::to_string(spec_.width) + "x" + std::to_string(spec_.height) +
                       " RGB crops, got " + std::to_string(crop.width) + "x" + std::to_string(crop.height) + "x" +
                       std::to_string(crop.channels));
    }
    pointers.push_back(&crop);
  }
  std::vector<std::vector<float>> embeddings = run(pointers, false);
  if (flip) {
    const std::vector<std::vector<float>> mirrored = run(pointers, true);
    for (size_t i = 0; i < embeddings.size(); ++i) {
      for (size_t k = 0; k < embeddings[i].size(); ++k) embeddings[i][k] += mirrored[i][k];
    }
  }
  return embeddings;
}

void l2_normalize(std::vector<float>& v) {
  double sum = 0;
  for (float x : v) sum += static_cast<double>(x) * x;
  if (!(sum > 0) || !std::isfinite(sum)) throw InputError("embedding is all zeros or not finite");
  const double inv = 1.0 / std::sqrt(sum);
  for (float& x : v) x = static_cast<float>(x * inv);
}

float cosine_similarity(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) throw InputError("cosine_similarity: embeddings of different sizes");
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  if (!(aa > 0) || !(bb > 0)) throw InputError("cosine_similarity: an embedding is all zeros");
  return static_cast<float>(std::clamp(ab / std::sqrt(aa * bb), -1.0, 1.0));
}

}  // namespace arcforge::pipeline
