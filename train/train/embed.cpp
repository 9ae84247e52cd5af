#include "train/train/embed.hpp"

#include <algorithm>
#include <map>

#include "arcforge/eval/pairs.hpp"
#include "train/compat/torch_compat.hpp"

namespace arcforge::train {

torch::Tensor embed_images(nn::Backbone& backbone, const torch::Tensor& images, bool flip_add,
                           torch::Device device, const std::string& precision, int64_t batch_size) {
  const bool was_training = backbone.is_training();
  backbone.eval();
  torch::NoGradGuard no_grad;
  const bool low = precision == "bf16" || precision == "fp16";
  const auto dtype = precision == "fp16" ? at::kHalf : at::kBFloat16;
  std::vector<torch::Tensor> out;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    auto x = images.slice(0, start, std::min(images.size(0), start + batch_size)).to(device);
    torch::Tensor e;
    {
      compat::AutocastGuard autocast(device.type(), low, dtype);
      e = backbone.forward(x).to(torch::kFloat);
      if (flip_add) e = e + backbone.forward(x.flip({3})).to(torch::kFloat);
    }
    out.push_back(torch::nn::functional::normalize(
                      e, torch::nn::functional::NormalizeFuncOptions().dim(1))
                      .to(torch::kCPU));
  }
  backbone.train(was_training);
  return torch::cat(out);
}

eval::VerificationReport evaluate_synth(nn::Backbone& backbone, const data::SynthFaces& faces,
                                        const EvalConfig& config, torch::Device device,
                                        const std::string& precision) {
  auto pairs = data::make_heldout_pairs(config.pairs, config.identities, config.seed);
  // Render each distinct (identity, sample) once; pairs then index into the embeddings.
  std::map<std::pair<int64_t, int64_t>, int64_t> index;
  std::vector<int64_t> ids, samples;
  auto slot = [&](int64_t identity, int64_t sample) {
    auto [it, inserted] = index.emplace(std::make_pair(identity, sample), ids.size());
    if (inserted) {
      ids.push_back(identity);
      samples.push_back(sample);
    }
    return it->second;
  };
  std::vector<std::pair<int64_t, int64_t>> pair_index;
  std::vector<bool> same;
  for (const auto& p : pairs) {
    pair_index.emplace_back(slot(p.identity_a, p.sample_a), slot(p.identity_b, p.sample_b));
    same.push_back(p.same);
  }
  auto id_tensor = torch::tensor(ids, torch::kInt64);
  auto sample_tensor = torch::tensor(samples, torch::kInt64);
  std::vector<torch::Tensor> chunks;
  for (int64_t start = 0; start < id_tensor.size(0); start += config.batch_size) {
    int64_t end = std::min(id_tensor.size(0), start + config.batch_size);
    auto images = data::to_network_input(
        faces.render(id_tensor.slice(0, start, end), sample_tensor.slice(0, start, end), device));
    chunks.push_back(embed_images(backbone, images, true, device, precision, config.batch_size));
  }
  auto embeddings = torch::cat(chunks).contiguous();
  auto scores = eval::pair_scores(embeddings.data_ptr<float>(), embeddings.size(0),
                                  embeddings.size(1), pair_index);
  return eval::evaluate_verification(scores, same);
}

}  // namespace arcforge::train
