#pragma once
// Helpers shared by the backbone tests: build one by name, and its tensors by name.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "train/nn/backbone.hpp"

namespace arcforge::test {

inline std::shared_ptr<nn::Backbone> build_backbone(const std::string& arch, int64_t embedding = 512) {
  nn::BackboneOptions o;
  o.arch = arch;
  o.embedding_size = embedding;
  return nn::make_backbone(o);
}

// Parameters and buffers of any module, by their dotted names.
inline std::map<std::string, torch::Tensor> named_tensors(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : module.named_parameters()) out[item.key()] = item.value();
  for (const auto& item : module.named_buffers()) out[item.key()] = item.value();
  return out;
}

}  // namespace arcforge::test
