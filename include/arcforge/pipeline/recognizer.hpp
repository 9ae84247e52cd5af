#pragma once
// A face recognizer on arcforge's runtime: aligned crops in, embeddings out.
//
// Recognizers disagree on their input: InsightFace's take RGB (x - 127.5) / 127.5, the paddle
// MobileFaceNet BGR (x - 127.5) / 128, others ImageNet mean/std. The preprocessing comes, in this
// order, from an explicit spec, the JSON sidecar next to the model (arcforge's exports write one),
// or InsightFace's default.
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "arcforge/image/image.hpp"
#include "arcforge/runtime/model.hpp"

namespace arcforge::pipeline {

struct PreprocessSpec {
  bool bgr = false;                             // channel order the model takes
  std::array<float, 3> mean{127.5f, 127.5f, 127.5f};  // per model input channel
  std::array<float, 3> std{127.5f, 127.5f, 127.5f};
  int width = 112, height = 112;                // aligned crop size
  std::string source = "default";               // "spec", "sidecar <path>", "default"
};

// "bgr,mean=127.5,std=128", "rgb,mean=123.675/116.28/103.53,std=58.395/57.12/57.375",
// "imagenet" (RGB with ImageNet mean/std), "insightface" (the default), optionally ",size=112x112".
// Throws ConfigError naming the bad part.
PreprocessSpec parse_preprocess_spec(const std::string& text);
std::string describe(const PreprocessSpec& spec);

// The sidecar's preprocessing when `model_path`'s sidecar (model.onnx -> model.json) exists.
std::optional<PreprocessSpec> sidecar_spec(const std::string& model_path);

class Recognizer {
 public:
  // spec empty: the sidecar, else InsightFace's default. Throws InputError naming the file when the
  // model is not [N,3,H,W] -> [N,E].
  static Recognizer load(const std::string& path, std::optional<PreprocessSpec> spec = std::nullopt,
                         const runtime::Options& runtime_options = {});

  int embedding_size() const { return embedding_size_; }
  const PreprocessSpec& spec() const { return spec_; }
  const std::string& path() const { return path_; }

  // Crops of spec().width x spec().height, RGB -> one embedding each (not normalised). With
  // `flip`, the embedding of the crop plus that of its mirror image (InsightFace's flip-add).
  // Batched through the model where its batch axis is dynamic.
  std::vector<std::vector<float>> embed(const std::vector<image::Image>& crops, bool flip = false) const;

 private:
  Recognizer(runtime::Model model, std::string path, PreprocessSpec spec);
  std::vector<std::vector<float>> run(const std::vector<const image::Image*>& crops, bool mirror) const;
  runtime::Model model_;
  std::string path_;
  PreprocessSpec spec_;
  int embedding_size_ = 0;
  bool batched_ = false;
};

bool looks_like_recognizer(const runtime::Model& model);

// Cosine similarity of two embeddings (normalised here, in double).
float cosine_similarity(const std::vector<float>& a, const std::vector<float>& b);
void l2_normalize(std::vector<float>& v);

}  // namespace arcforge::pipeline
