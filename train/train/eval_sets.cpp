#include "train/train/eval_sets.hpp"

#include <algorithm>
#include <filesystem>

#include "arcforge/common/error.hpp"
#include "arcforge/data/verification_set.hpp"
#include "arcforge/eval/pairs.hpp"
#include "arcforge/image/codec.hpp"
#include "train/data/loader.hpp"
#include "train/train/embed.hpp"

namespace arcforge::train {
namespace {

constexpr int64_t kFaceSize = 112;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// [3,112,112] float network input from decoded RGB, resized as the training loader resizes
// (verification sets hold aligned faces, just not always at 112).
torch::Tensor to_face_input(const image::Image& img) {
  auto chw = torch::empty({3, kFaceSize, kFaceSize}, torch::kUInt8);
  data::image_to_chw(img, kFaceSize, chw.data_ptr<uint8_t>());
  return (chw.to(torch::kFloat) - 127.5) / 127.5;
}

}  // namespace

EvalSet load_eval_set(const std::string& path, const std::string& image_root) {
  EvalSet set;
  set.name = std::filesystem::path(path).stem().string();
  if (ends_with(path, ".bin")) {
    data::VerificationSet bin = data::read_bin(path);
    set.images = std::move(bin.images);
    set.same = std::move(bin.issame);
    for (int64_t i = 0; i < static_cast<int64_t>(set.same.size()); ++i) set.pairs.emplace_back(2 * i, 2 * i + 1);
    return set;
  }
  data::PairList list = data::read_pair_list(path, image_root);
  auto missing = data::missing_files(list);
  if (!missing.empty()) {
    std::string names;
    for (size_t i = 0; i < std::min<size_t>(3, missing.size()); ++i) names += (i ? ", " : "") + missing[i];
    throw InputError(file_message(path, std::to_string(missing.size()) + " listed images do not exist (" +
                                            names + (missing.size() > 3 ? ", ..." : "") + ")"));
  }
  set.files = std::move(list.files);
  set.pairs = std::move(list.pairs);
  set.same = std::move(list.same);
  return set;
}

torch::Tensor eval_set_images(const EvalSet& set, int64_t begin, int64_t end) {
  std::vector<torch::Tensor> faces;
  faces.reserve(end - begin);
  for (int64_t i = begin; i < end; ++i) {
    image::Image img = set.images.empty()
                           ? image::decode_file(set.files[i])
                           : image::decode(set.images[i], set.name + " image " + std::to_string(i));
    faces.push_back(to_face_input(img));
  }
  return torch::stack(faces);
}

eval::VerificationReport evaluate_set(nn::Backbone& backbone, const EvalSet& set, torch::Device device,
                                      const std::string& precision, int64_t batch_size) {
  std::vector<torch::Tensor> chunks;
  for (int64_t start = 0; start < set.image_count(); start += batch_size) {
    const int64_t end = std::min(set.image_count(), start + batch_size);
    chunks.push_back(embed_images(backbone, eval_set_images(set, start, end), /*flip_add=*/true, device,
                                  precision, batch_size));
  }
  auto embeddings = torch::cat(chunks).contiguous();
  auto scores = eval::pair_scores(embeddings.data_ptr<float>(), embeddings.size(0), embeddings.size(1), set.pairs);
  return eval::evaluate_verification(scores, set.same);
}

}  // namespace arcforge::train
