// The ViT writer. Modules are looked up by their arcface_torch names, as backbone_layers.cpp does
// for the CNNs; the export tests compare the graph with libtorch's own forward.
#include "train/export/vit_onnx_graph.hpp"

#include <cmath>
#include <set>

#include "arcforge/common/error.hpp"
#include "train/export/backbone_layers.hpp"
#include "train/export/batch_norm_folding.hpp"

namespace arcforge::onnx_io {
namespace {

class VitWriter {
 public:
  VitWriter(nn::VisionTransformer& vit, GraphWriter& w)
      : modules_(vit.named_modules()), params_(vit.named_parameters()), w_(w) {}

  template <typename Impl>
  Impl& module(const std::string& name) {
    const auto* found = modules_.find(name);
    auto* typed = found ? dynamic_cast<Impl*>(found->get()) : nullptr;
    if (!typed) throw Error("ViT export: the backbone has no module '" + name + "' of the expected type");
    covered_.insert(name + ".");
    return *typed;
  }

  const torch::Tensor& parameter(const std::string& name) {
    const auto* found = params_.find(name);
    if (!found) throw Error("ViT export: the backbone has no parameter '" + name + "'");
    covered_.insert(name);
    return *found;
  }

  // A fresh value name under `scope`.
  std::string value(const std::string& scope, const std::string& what) { return scope + "/" + what; }

  std::string reshape(const std::string& x, const std::string& name, const std::vector<int64_t>& shape) {
    const std::string out = value(name, "out");
    w_.node("Reshape", name, {x, w_.int64_initializer(name + ".shape", shape)}, out);
    return out;
  }

  std::string transpose(const std::string& x, const std::string& name, const std::vector<int64_t>& perm) {
    const std::string out = value(name, "out");
    set_attribute(w_.node("Transpose", name, {x}, out), "perm", perm);
    return out;
  }

  std::string layer_norm(const std::string& x, const std::string& name) {
    auto& ln = module<torch::nn::LayerNormImpl>(name);
    const std::string out = value(name, "out");
    auto& n = w_.node("LayerNormalization", name,
                      {x, w_.initializer(name + ".weight", ln.weight), w_.initializer(name + ".bias", ln.bias)}, out);
    set_attribute(n, "axis", int64_t{-1});
    set_attribute(n, "epsilon", static_cast<float>(ln.options.eps()));
    return out;
  }

  // Gemm x [M,K] * W^T (+ b): `weight_name` names the initializer; the bias is optional.
  std::string gemm(const std::string& x, const std::string& name, const torch::Tensor& weight, const std::string& weight_name,
                   const torch::Tensor& bias, const std::string& bias_name) {
    std::vector<std::string> inputs = {x, w_.initializer(weight_name, weight)};
    if (bias.defined()) inputs.push_back(w_.initializer(bias_name, bias));
    const std::string out = value(name, "out");
    set_attribute(w_.node("Gemm", name, inputs, out), "transB", int64_t{1});
    return out;
  }

  std::string linear(const std::string& x, const std::string& name) {
    auto& l = module<torch::nn::LinearImpl>(name);
    return gemm(x, name, l.weight, name + ".weight", l.options.bias() ? l.bias : torch::Tensor(), name + ".bias");
  }

  std::string add(const std::string& a, const std::string& b, const std::string& name) {
    const std::string out = value(name, "out");
    w_.node("Add", name, {a, b}, out);
    return out;
  }

  // Linear (no bias) then BatchNorm1d, the BN folded into the Gemm or written as its own node.
  std::string linear_then_batch_norm(const std::string& x, const std::string& linear_name, const std::string& bn_name,
                                     bool fold, int& folded) {
    auto& l = module<torch::nn::LinearImpl>(linear_name);
    auto& bn = module<torch::nn::BatchNorm1dImpl>(bn_name);
    Layer bn_layer;
    bn_layer.kind = LayerKind::batch_norm;
    bn_layer.name = bn_name;
    bn_layer.bn1d = torch::nn::BatchNorm1d(std::dynamic_pointer_cast<torch::nn::BatchNorm1dImpl>(bn.shared_from_this()));
    const BatchNormTensors t = batch_norm_tensors(bn_layer);
    if (fold) {
      torch::Tensor weight = l.weight, bias = l.options.bias() ? l.bias : torch::Tensor();
      fold_into_producer(weight, bias, batch_norm_affine(t));
      ++folded;
      return gemm(x, linear_name, weight, linear_name + ".folded.weight", bias, linear_name + ".folded.bias");
    }
    const std::string y = linear(x, linear_name);
    const torch::Tensor ones = torch::ones({t.channels}), zeros = torch::zeros({t.channels});
    const std::string out = value(bn_name, "out");
    auto& n = w_.node("BatchNormalization", bn_name,
                      {y, w_.initializer(bn_name + ".weight", t.weight.defined() ? t.weight : ones),
                       w_.initializer(bn_name + ".bias", t.bias.defined() ? t.bias : zeros),
                       w_.initializer(bn_name + ".running_mean", t.running_mean),
                       w_.initializer(bn_name + ".running_var", t.running_var)},
                      out);
    set_attribute(n, "epsilon", static_cast<float>(t.eps));
    return out;
  }

  // Every parameter and buffer of the module must have been written (the mask token only acts in
  // training).
  void check_coverage(nn::VisionTransformer& vit) const {
    auto covered = [&](const std::string& name) {
      if (name == "mask_token" || covered_.count(name)) return true;
      for (const auto& prefix : covered_) {
        if (prefix.back() == '.' && name.rfind(prefix, 0) == 0) return true;
      }
      return false;
    };
    for (const auto& p : vit.named_parameters()) {
      if (!covered(p.key())) throw Error("ViT export: parameter '" + p.key() + "' has no place in the ONNX graph");
    }
    for (const auto& b : vit.named_buffers()) {
      if (!covered(b.key())) throw Error("ViT export: buffer '" + b.key() + "' has no place in the ONNX graph");
    }
  }

  GraphWriter& w() { return w_; }

 private:
  torch::OrderedDict<std::string, std::shared_ptr<torch::nn::Module>> modules_;
  torch::OrderedDict<std::string, torch::Tensor> params_;
  GraphWriter& w_;
  std::set<std::string> covered_;  // parameter names, and module names with a trailing '.'
};

}  // namespace

int write_vit_graph(nn::VisionTransformer& vit, bool fold_batch_norm, bool separate_qkv, const std::string& input,
                    const std::string& output, GraphWriter& w) {
  const nn::VitOptions& o = vit.options();
  const int64_t d = o.embed_dim, heads = o.num_heads, head_dim = d / heads;
  const int64_t t = nn::VisionTransformer::kTokens, patch = nn::VisionTransformer::kPatchSize;
  VitWriter v(vit, w);

  // Patch embedding and position embedding: [N,3,112,112] -> [N*T, D].
  auto& proj = v.module<torch::nn::Conv2dImpl>("patch_embed.proj");
  const std::string patches = v.value("patch_embed.proj", "out");
  auto& conv = w.node("Conv", "patch_embed.proj",
                      {input, w.initializer("patch_embed.proj.weight", proj.weight),
                       w.initializer("patch_embed.proj.bias", proj.bias)},
                      patches);
  set_attribute(conv, "kernel_shape", std::vector<int64_t>{patch, patch});
  set_attribute(conv, "strides", std::vector<int64_t>{patch, patch});
  std::string x = v.reshape(patches, "patch_embed.flatten", {0, d, t});
  x = v.transpose(x, "patch_embed.transpose", {0, 2, 1});
  x = v.add(x, w.initializer("pos_embed", v.parameter("pos_embed")), "pos_embed.add");
  x = v.reshape(x, "tokens", {-1, d});

  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const std::string scale_name = w.initializer("attn.scale", torch::full({1}, scale));
  const std::string relu6_min = w.initializer("mlp.relu6.min", torch::zeros({}));
  const std::string relu6_max = w.initializer("mlp.relu6.max", torch::full({}, 6.0f));
  for (int64_t i = 0; i < o.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i);
    // Attention: one qkv Gemm split into heads as arcface_torch's forward does (what torch.onnx
    // writes), or, in the old layout, three Gemms on the row blocks q, k, v of qkv.weight.
    const std::string h = v.layer_norm(x, b + ".norm1");
    const std::string scope = b + ".attn.qkv";
    const torch::Tensor qkv = v.module<torch::nn::LinearImpl>(scope).weight;
    std::string qkv_heads[3];  // q and v: [N,H,T,d]; k: [N,H,d,T], ready for q.k^T
    const char* names[3] = {"q", "k", "v"};
    if (!separate_qkv) {
      const std::string y = v.gemm(h, scope, qkv, scope + ".weight", torch::Tensor(), "");
      const std::string split = v.reshape(y, scope + ".heads", {-1, t, 3, heads, head_dim});
      const std::string parts = v.transpose(split, scope + ".transpose", {2, 0, 3, 1, 4});  // [3,N,H,T,d]
      for (int part = 0; part < 3; ++part) {
        const std::string name = b + ".attn." + names[part];
        const std::string picked = v.value(name, "out");
        set_attribute(w.node("Gather", name, {parts, w.int64_scalar_initializer(name + ".index", part)}, picked),
                      "axis", int64_t{0});
        qkv_heads[part] = part == 1 ? v.transpose(picked, name + ".transpose", {0, 1, 3, 2}) : picked;
      }
    } else {
      for (int part = 0; part < 3; ++part) {
        const std::string name = b + ".attn." + names[part];
        const std::string y = v.gemm(h, name, qkv.narrow(0, part * d, d), scope + ".weight." + names[part],
                                     torch::Tensor(), "");
        const std::string split = v.reshape(y, name + ".heads", {-1, t, heads, head_dim});
        qkv_heads[part] = v.transpose(split, name + ".transpose", part == 1 ? std::vector<int64_t>{0, 2, 3, 1}
                                                                             : std::vector<int64_t>{0, 2, 1, 3});
      }
    }
    const std::string scores = v.value(b + ".attn.scores", "out");
    w.node("MatMul", b + ".attn.scores", {qkv_heads[0], qkv_heads[1]}, scores);
    const std::string scaled = v.value(b + ".attn.scale", "out");
    w.node("Mul", b + ".attn.scale", {scores, scale_name}, scaled);
    const std::string weights = v.value(b + ".attn.softmax", "out");
    set_attribute(w.node("Softmax", b + ".attn.softmax", {scaled}, weights), "axis", int64_t{-1});
    const std::string mixed = v.value(b + ".attn.mix", "out");
    w.node("MatMul", b + ".attn.mix", {weights, qkv_heads[2]}, mixed);
    std::string merged = v.transpose(mixed, b + ".attn.merge", {0, 2, 1, 3});
    merged = v.reshape(merged, b + ".attn.tokens", {-1, d});
    x = v.add(x, v.linear(merged, b + ".attn.proj"), b + ".attn.residual");

    // MLP with ReLU6.
    std::string m = v.linear(v.layer_norm(x, b + ".norm2"), b + ".mlp.fc1");
    const std::string clipped = v.value(b + ".mlp.relu6", "out");
    w.node("Clip", b + ".mlp.relu6", {m, relu6_min, relu6_max}, clipped);
    x = v.add(x, v.linear(clipped, b + ".mlp.fc2"), b + ".mlp.residual");
  }

  // Final norm and the feature head over all tokens.
  x = v.layer_norm(x, "norm");
  x = v.reshape(x, "feature.flatten", {-1, t * d});
  int folded = 0;
  x = v.linear_then_batch_norm(x, "feature.0", "feature.1", fold_batch_norm, folded);
  x = v.linear_then_batch_norm(x, "feature.2", "feature.3", fold_batch_norm, folded);
  w.rename_value(x, output);
  v.check_coverage(vit);
  return folded;
}

}  // namespace arcforge::onnx_io
