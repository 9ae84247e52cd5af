#pragma once
// Loads the weights of an ONNX face recognizer into one of our trainable backbones: InsightFace's
// released models (w600k_r50.onnx, w600k_mbf.onnx, glint360k_r100.onnx, PyTorch exports of
// arcface_torch) and our own exports.
//
// Matching is by structure, not by initializer names (exporters rename folded weights): the
// file's Conv, BatchNormalization, PRelu, Gemm/MatMul and Add nodes, in topological order, are
// paired with the backbone's layers in forward order (backbone_layers.hpp), and every pair's
// shapes, conv geometry and wiring (which earlier layer it reads) must agree. A batch norm that the
// exporter folded into the conv or linear layer next to it is restored as an identity batch norm
// (weight 1, running mean 0, running variance 1 - eps, bias = the folded bias), which keeps the
// eval-mode outputs equal. Nothing is written into the backbone unless the whole file matches.
// Vision Transformers (files with LayerNorm) go to vit_onnx_import.hpp; a ViT file into a CNN, or
// the reverse, is an InputError that says which is which.
#include <cstdint>
#include <memory>
#include <string>

#include "train/nn/backbone.hpp"

namespace arcforge::onnx_io {

struct RecognizerGraph;

struct ImportSummary {
  int layers = 0;                 // weight-bearing layers loaded
  int batch_norms_restored = 0;   // folded batch norms set to identity
  int batch_norms_eps_adjusted = 0;  // epsilon differed: running variance shifted to compensate
  std::string producer;           // the file's producer_name and version
};

class OnnxRecognizer {
 public:
  // Reads and parses the file; throws InputError naming it when it is not a usable recognizer.
  static OnnxRecognizer read(const std::string& path);

  const std::string& path() const;
  // Outputs of the last Gemm/MatMul (the embedding width).
  int64_t embedding_size() const;

  // Throws InputError naming the file and the first node that does not match (the backbone is
  // then left unchanged).
  ImportSummary load_into(nn::Backbone& backbone) const;

 private:
  explicit OnnxRecognizer(std::shared_ptr<const RecognizerGraph> graph);
  std::shared_ptr<const RecognizerGraph> graph_;
};

}  // namespace arcforge::onnx_io
