#pragma once
// Writes a backbone as an ONNX face recognizer, node by node from its layer list (no tracing):
//
//   input [batch,3,112,112] float32 (RGB, (x-127.5)/127.5) -> embedding [batch,E] float32
//
// Eval-mode semantics: batch norm uses its running statistics, dropout is absent. Operators:
// Conv, BatchNormalization (on [N,C,H,W] and on [N,E]), PRelu (slope [C,1,1], which every runtime
// accepts), Add, Flatten, Gemm. With fold_batch_norm, every batch norm that follows a conv or the
// embedding Gemm, or that precedes the Gemm through Flatten, is folded into that layer (in double);
// the pre-activation batch norms of IResNet blocks stay, because a zero-padded conv after them
// cannot absorb their shift exactly. Vision Transformers are written by vit_onnx_graph.hpp (opset 17:
// LayerNormalization, MatMul, Softmax, ...). The model passes the ONNX checker before it is written.
#include <cstdint>
#include <map>
#include <string>

#include "train/nn/backbone.hpp"

namespace arcforge::onnx_io {

constexpr int64_t kInputSize = 112;  // the backbones' heads need a 7x7 final map
constexpr int kDefaultOpset = 13;     // IResNet and MobileFaceNet
constexpr int kVitMinimumOpset = 17;  // LayerNormalization

struct ExportOptions {
  bool fold_batch_norm = false;
  int opset = 0;                 // 13 .. newest_known_opset(); 0 = the lowest the backbone needs
  int64_t batch = 0;             // 0 = dynamic axis named "batch"; else a fixed batch size
  std::string source;            // stored in the model's metadata (checkpoint path or "random-init")
  // ViTs: q, k and v as three Gemms, the layout arcforge wrote until 2026-12. The default is one qkv
  // Gemm, as torch.onnx writes arcface_torch's ViT; the old layout stays so that tests keep the
  // importer's and the runtime's reading of such files covered.
  bool vit_separate_qkv = false;
};

struct ExportSummary {
  int opset = 0;  // the opset written
  std::map<std::string, int> op_counts;  // e.g. {"Conv": 53, "PRelu": 25, ...}
  int folded_batch_norms = 0;
  int64_t parameters = 0;  // float values in the initializers
  int64_t bytes = 0;       // size of the written file
};

// The lowest opset `backbone` exports at: kVitMinimumOpset for Vision Transformers, else kDefaultOpset.
int minimum_opset(const nn::Backbone& backbone);

// Serialises (checker included) without writing; throws ConfigError for a bad option.
std::string export_onnx_bytes(nn::Backbone& backbone, const ExportOptions& options,
                              ExportSummary* summary = nullptr);

// Writes onnx_path atomically. The backbone is switched to eval mode.
ExportSummary export_onnx(nn::Backbone& backbone, const std::string& onnx_path, const ExportOptions& options);

}  // namespace arcforge::onnx_io
