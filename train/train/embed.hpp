#pragma once
// Embedding images with a backbone the InsightFace way, and the synth verification check.
#include <torch/torch.h>

#include "arcforge/eval/verification.hpp"
#include "train/data/synth.hpp"
#include "train/nn/backbone.hpp"
#include "train/train/config.hpp"

namespace arcforge::train {

// images: [N,3,H,W] network input. Returns [N,E] float32 on CPU, L2-normalised; with flip_add the
// embeddings of the image and its horizontal mirror are added before normalising (InsightFace).
// Runs in eval mode and no-grad, restoring the module's training flag afterwards.
torch::Tensor embed_images(nn::Backbone& backbone, const torch::Tensor& images, bool flip_add,
                           torch::Device device, const std::string& precision = "fp32",
                           int64_t batch_size = 64);

// The verification protocol on held-out synth pairs (identities disjoint from training).
eval::VerificationReport evaluate_synth(nn::Backbone& backbone, const data::SynthFaces& faces,
                                        const EvalConfig& config, torch::Device device,
                                        const std::string& precision = "fp32");

}  // namespace arcforge::train
