// The backbone factory: one table from architecture name to builder.
#include "train/nn/backbone.hpp"

#include <functional>

#include "arcforge/common/error.hpp"
#include "train/nn/iresnet.hpp"
#include "train/nn/mobilefacenet.hpp"
#include "train/nn/vit.hpp"

namespace arcforge::nn {
namespace {

using Builder = std::function<std::shared_ptr<Backbone>(const BackboneOptions&)>;

struct Architecture {
  std::string name;
  std::string alias;  // empty when there is none
  Builder build;
};

Builder iresnet(std::string name, std::vector<int64_t> blocks_per_layer) {
  return [name, blocks_per_layer](const BackboneOptions& o) -> std::shared_ptr<Backbone> {
    return std::make_shared<IResNet>(name, blocks_per_layer, o.embedding_size, o.dropout);
  };
}

Builder mobilefacenet(std::string name, std::array<int64_t, 4> blocks, int64_t scale) {
  return [name, blocks, scale](const BackboneOptions& o) -> std::shared_ptr<Backbone> {
    return std::make_shared<MobileFaceNet>(name, blocks, scale, o.embedding_size);
  };
}

// arcface_torch's VisionTransformer(img_size=112, patch_size=9, num_heads=8, norm_layer="ln", ...).
Builder vision_transformer(std::string name, int64_t dim, int64_t depth, double drop_path, double mask_ratio) {
  return [=](const BackboneOptions& o) -> std::shared_ptr<Backbone> {
    return std::make_shared<VisionTransformer>(name, VitOptions{dim, depth, 8, drop_path, mask_ratio, o.dropout},
                                               o.embedding_size);
  };
}

// Block counts and widths are arcface_torch's (get_model in backbones/__init__.py).
const std::vector<Architecture>& architectures() {
  static const std::vector<Architecture> table = {
      {"r18", "iresnet18", iresnet("r18", {2, 2, 2, 2})},
      {"r34", "iresnet34", iresnet("r34", {3, 4, 6, 3})},
      {"r50", "iresnet50", iresnet("r50", {3, 4, 14, 3})},
      {"r100", "iresnet100", iresnet("r100", {3, 13, 30, 3})},
      {"r200", "iresnet200", iresnet("r200", {6, 26, 60, 6})},
      {"mbf", "", mobilefacenet("mbf", {1, 4, 6, 2}, 2)},
      {"mbf_large", "", mobilefacenet("mbf_large", {2, 8, 12, 4}, 4)},
      {"vit_t", "", vision_transformer("vit_t", 256, 12, 0.1, 0.1)},
      {"vit_s", "", vision_transformer("vit_s", 512, 12, 0.1, 0.1)},
      {"vit_b", "", vision_transformer("vit_b", 512, 24, 0.1, 0.1)},
      // The WebFace42M variants.
      {"vit_t_dp005_mask0", "", vision_transformer("vit_t_dp005_mask0", 256, 12, 0.05, 0.0)},
      {"vit_s_dp005_mask_0", "", vision_transformer("vit_s_dp005_mask_0", 512, 12, 0.05, 0.0)},
      {"vit_b_dp005_mask_005", "", vision_transformer("vit_b_dp005_mask_005", 512, 24, 0.05, 0.05)},
      {"vit_l_dp005_mask_005", "", vision_transformer("vit_l_dp005_mask_005", 768, 24, 0.05, 0.05)},
  };
  return table;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : " ") + n;
  return out;
}

}  // namespace

std::vector<std::string> backbone_names() {
  std::vector<std::string> names;
  for (const Architecture& a : architectures()) names.push_back(a.name);
  for (const Architecture& a : architectures()) {
    if (!a.alias.empty()) names.push_back(a.alias);
  }
  return names;
}

std::shared_ptr<Backbone> make_backbone(const BackboneOptions& options) {
  if (options.embedding_size <= 0) {
    throw ConfigError("backbone: embedding_size must be positive, got " +
                      std::to_string(options.embedding_size));
  }
  if (!(options.dropout >= 0.0 && options.dropout < 1.0)) {
    throw ConfigError("backbone: dropout must be in [0, 1), got " + std::to_string(options.dropout));
  }
  for (const Architecture& a : architectures()) {
    if (options.arch == a.name || (!a.alias.empty() && options.arch == a.alias)) {
      return a.build(options);
    }
  }
  throw ConfigError("backbone: unknown arch '" + options.arch + "' (known: " +
                    joined(backbone_names()) + ")");
}

}  // namespace arcforge::nn
