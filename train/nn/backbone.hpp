#pragma once
// Face-recognition backbones: [N,3,112,112] float images -> [N,embedding_size] embeddings
// (not normalised; the head normalises). Architectures follow InsightFace's arcface_torch.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace arcforge::nn {

struct BackboneOptions {
  std::string arch = "mbf";  // r18 r34 r50 r100 r200 (also iresnet18...), mbf, mbf_large, vit_t vit_s
                             // vit_b and the WebFace42M variants (backbone_names())
  int64_t embedding_size = 512;
  double dropout = 0.0;      // before the embedding FC, as arcface_torch (0 by default)
};

class Backbone : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor images) = 0;
  virtual std::string arch() const = 0;
  virtual int64_t embedding_size() const = 0;
};

// Builds a backbone; throws ConfigError naming the unknown arch and the known ones.
std::shared_ptr<Backbone> make_backbone(const BackboneOptions& options);

// All names make_backbone accepts (canonical names first).
std::vector<std::string> backbone_names();

}  // namespace arcforge::nn
