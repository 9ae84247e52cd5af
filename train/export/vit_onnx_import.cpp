// Pairs a ViT file's ops with a VisionTransformer's parameters (see vit_onnx_import.hpp).
#include "train/export/vit_onnx_import.hpp"

#include <algorithm>

#include "arcforge/common/error.hpp"
#include "train/export/backbone_layers.hpp"
#include "train/export/imported_batch_norm.hpp"
#include "train/export/onnx_graph_reader.hpp"

namespace arcforge::onnx_io {
namespace {

class VitMatcher {
 public:
  VitMatcher(const RecognizerGraph& graph, nn::VisionTransformer& vit)
      : g_(graph), vit_(vit), modules_(vit.named_modules("", /*include_self=*/false)), params_(vit.named_parameters()) {}

  ImportSummary run() {
    summary_.producer = g_.producer;
    // Two LayerNorms per block and the final one: a depth mismatch named as such, rather than as
    // the first layer that then lands in the wrong place.
    const int64_t norms = std::count_if(g_.ops.begin(), g_.ops.end(), [](const OnnxOp& op) { return op.kind == OnnxOpKind::layer_norm; });
    if (norms != 2 * vit_.options().depth + 1) {
      fail("holds " + std::to_string(norms) + " LayerNorms (" + std::to_string((norms - 1) / 2) + " blocks), but " +
           vit_.arch() + " as built here has " + std::to_string(vit_.options().depth) + " blocks (" +
           std::to_string(2 * vit_.options().depth + 1) + " LayerNorms)");
    }
    std::string x = patch_embed();
    for (int64_t i = 0; i < vit_.options().depth; ++i) x = block("blocks." + std::to_string(i), x);
    x = layer_norm("norm", x);
    x = linear_then_batch_norm("feature.0", "feature.1", x);
    x = linear_then_batch_norm("feature.2", "feature.3", x);
    if (next_ < g_.ops.size()) {
      const OnnxOp& extra = g_.ops[next_];
      fail("node " + extra.label + " [" + describe(extra) + "] is left over after every layer of " + vit_.arch() +
           " was matched; the file holds a deeper ViT");
    }
    if (x != g_.output) {
      fail("the graph output '" + g_.output + "' is not the output of " + vit_.arch() + "'s last layer ('" + x + "')");
    }
    return summary_;
  }

  void commit() {
    torch::NoGradGuard no_grad;
    for (auto& w : writes_) w.first.copy_(w.second);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw InputError(file_message(g_.path, what)); }

  [[noreturn]] void mismatch(const OnnxOp& op, const std::string& layer, const std::string& why) const {
    fail("node " + op.label + " [" + describe(op) + "] does not match " + vit_.arch() + " layer '" + layer + "': " + why);
  }

  template <typename Impl>
  Impl& module(const std::string& name) const {
    const auto* found = modules_.find(name);
    auto* typed = found ? dynamic_cast<Impl*>(found->get()) : nullptr;
    if (!typed) throw Error("ViT import: the backbone has no module '" + name + "' of the expected type");
    return *typed;
  }

  const OnnxOp& take(OnnxOpKind kind, const std::string& layer) {
    if (next_ >= g_.ops.size()) {
      fail("the graph ends before " + vit_.arch() + " layer '" + layer + "'; the file holds a shallower ViT");
    }
    const OnnxOp& op = g_.ops[next_];
    if (op.kind != kind) mismatch(op, layer, "expected " + to_string(kind) + " here");
    ++next_;
    return op;
  }

  void expect_reads(const OnnxOp& op, const std::string& layer, const std::string& value) const {
    if (op.inputs.at(0) != value) mismatch(op, layer, "it reads '" + op.inputs[0] + "' but the layer reads '" + value + "'");
  }

  void stage(const torch::Tensor& target, const torch::Tensor& value, const OnnxOp& op, const std::string& layer) {
    if (target.numel() != value.numel()) {
      mismatch(op, layer, std::to_string(value.numel()) + " values for a " + sizes_text(target.sizes()) + " parameter");
    }
    writes_.emplace_back(target, value.reshape(target.sizes()).to(target.dtype()));
  }

  std::string patch_embed() {
    auto& proj = module<torch::nn::Conv2dImpl>("patch_embed.proj");
    const OnnxOp& conv = take(OnnxOpKind::conv, "patch_embed.proj");
    expect_reads(conv, "patch_embed.proj", g_.input);
    const int64_t p = nn::VisionTransformer::kPatchSize;
    if (!conv.weight.sizes().equals(proj.weight.sizes())) mismatch(conv, "patch_embed.proj", "different weight shape " + sizes_text(proj.weight.sizes()));
    if (conv.strides != std::vector<int64_t>{p, p} || conv.pads != std::vector<int64_t>{0, 0, 0, 0} ||
        conv.dilations != std::vector<int64_t>{1, 1} || conv.group != 1) {
      mismatch(conv, "patch_embed.proj", "not a " + std::to_string(p) + "x" + std::to_string(p) + " patch convolution");
    }
    stage(proj.weight, conv.weight, conv, "patch_embed.proj");
    stage(proj.bias, conv.bias.defined() ? conv.bias : torch::zeros_like(proj.bias), conv, "patch_embed.proj");
    ++summary_.layers;

    const OnnxOp& pos = take(OnnxOpKind::add_constant, "pos_embed");
    expect_reads(pos, "pos_embed", conv.output);
    stage(*params_.find("pos_embed"), pos.weight, pos, "pos_embed");
    ++summary_.layers;
    return pos.output;
  }

  std::string block(const std::string& b, const std::string& x) {
    const std::string normed = layer_norm(b + ".norm1", x);
    const std::string attended = qkv(b + ".attn.qkv", normed);
    const std::string projected = linear(b + ".attn.proj", attended);
    const std::string y = residual(b + ".attn", x, projected);
    const std::string hidden = linear(b + ".mlp.fc1", layer_norm(b + ".norm2", y));
    return residual(b + ".mlp", y, linear(b + ".mlp.fc2", hidden));  // ReLU6 looked through
  }

  std::string residual(const std::string& layer, const std::string& a, const std::string& b) {
    const OnnxOp& op = take(OnnxOpKind::add, layer + " residual");
    std::vector<std::string> theirs = op.inputs, mine = {a, b};
    std::sort(theirs.begin(), theirs.end());
    std::sort(mine.begin(), mine.end());
    if (theirs != mine) {
      mismatch(op, layer + " residual", "it adds '" + op.inputs[0] + "' and '" + op.inputs[1] + "' but the layer adds '" +
                                           a + "' and '" + b + "'");
    }
    return op.output;
  }

  std::string layer_norm(const std::string& name, const std::string& x) {
    auto& ln = module<torch::nn::LayerNormImpl>(name);
    const OnnxOp& op = take(OnnxOpKind::layer_norm, name);
    expect_reads(op, name, x);
    if (op.weight.numel() != ln.weight.numel()) mismatch(op, name, "the layer has " + std::to_string(ln.weight.numel()) + " channels");
    // LayerNorm's epsilon acts on each row's own variance, so no parameter can absorb a different one.
    if (static_cast<float>(op.eps) != static_cast<float>(ln.options.eps())) {
      mismatch(op, name, "epsilon " + std::to_string(op.eps) + ", the layer's is " + std::to_string(ln.options.eps()));
    }
    stage(ln.weight, op.weight, op, name);
    stage(ln.bias, op.bias, op, name);
    ++summary_.layers;
    return op.output;
  }

  // arcface_torch's qkv Linear [3D, D] without bias, or our exporter's three row blocks q, k, v.
  // Returns the value the attention output stands for (the reader looks attention through to it).
  std::string qkv(const std::string& name, const std::string& x) {
    auto& layer = module<torch::nn::LinearImpl>(name);
    const int64_t d = layer.weight.size(1);
    const OnnxOp& first = take(OnnxOpKind::linear, name);
    std::vector<const OnnxOp*> parts = {&first};
    if (first.weight.sizes().equals({d, d})) {
      parts.push_back(&take(OnnxOpKind::linear, name + " (k)"));
      parts.push_back(&take(OnnxOpKind::linear, name + " (v)"));
    }
    std::vector<torch::Tensor> rows;
    for (const OnnxOp* part : parts) {
      expect_reads(*part, name, x);
      if (part->bias.defined() && part->bias.abs().max().item<double>() != 0) mismatch(*part, name, "it has a bias; qkv has none");
      rows.push_back(part->weight);
    }
    const torch::Tensor weight = torch::cat(rows, 0);
    if (!weight.sizes().equals(layer.weight.sizes())) mismatch(first, name, "the layer's weight is " + sizes_text(layer.weight.sizes()));
    stage(layer.weight, weight, first, name);
    ++summary_.layers;
    return first.output;
  }

  // A linear layer's op, read from `x` with the layer's weight shape; its weight staged.
  const OnnxOp& take_linear(const std::string& name, const std::string& x, torch::nn::LinearImpl& layer) {
    const OnnxOp& op = take(OnnxOpKind::linear, name);
    expect_reads(op, name, x);
    if (!op.weight.sizes().equals(layer.weight.sizes())) {
      mismatch(op, name, "the layer's weight is " + sizes_text(layer.weight.sizes()));
    }
    stage(layer.weight, op.weight, op, name);
    ++summary_.layers;
    return op;
  }

  std::string linear(const std::string& name, const std::string& x) {
    auto& layer = module<torch::nn::LinearImpl>(name);
    const OnnxOp& op = take_linear(name, x, layer);
    stage(layer.bias, op.bias.defined() ? op.bias : torch::zeros_like(layer.bias), op, name);
    return op.output;
  }

  // The feature head's bias-free Linear and its BatchNorm1d, present in the file or folded into the
  // Linear (which then carries a bias).
  std::string linear_then_batch_norm(const std::string& linear_name, const std::string& bn_name, const std::string& x) {
    const OnnxOp& op = take_linear(linear_name, x, module<torch::nn::LinearImpl>(linear_name));
    auto& bn_module = module<torch::nn::BatchNorm1dImpl>(bn_name);
    const BatchNormTensors t{bn_module.weight, bn_module.bias, bn_module.running_mean, bn_module.running_var,
                             bn_module.options.eps(), bn_module.options.num_features()};
    BatchNormValues v;
    std::string out;
    if (next_ < g_.ops.size() && g_.ops[next_].kind == OnnxOpKind::batch_norm && g_.ops[next_].inputs[0] == op.output) {
      const OnnxOp& bn = g_.ops[next_++];
      if (bn.weight.numel() != t.channels) mismatch(bn, bn_name, "the layer has " + std::to_string(t.channels) + " channels");
      v = batch_norm_from_file(bn, op.bias, t);
      if (v.eps_adjusted) ++summary_.batch_norms_eps_adjusted;
      ++summary_.layers;
      out = bn.output;
    } else {
      if (op.bias.defined() && op.bias.numel() != t.channels) mismatch(op, bn_name, "bias width differs from the batch norm's");
      v = identity_batch_norm(op.bias, t);
      ++summary_.batch_norms_restored;
      out = op.output;
    }
    stage(t.weight, v.weight, op, bn_name);
    stage(t.bias, v.bias, op, bn_name);
    stage(t.running_mean, v.running_mean, op, bn_name);
    stage(t.running_var, v.running_var, op, bn_name);
    return out;
  }

  const RecognizerGraph& g_;
  nn::VisionTransformer& vit_;
  torch::OrderedDict<std::string, std::shared_ptr<torch::nn::Module>> modules_;
  torch::OrderedDict<std::string, torch::Tensor> params_;
  size_t next_ = 0;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> writes_;  // target, value
  ImportSummary summary_;
};

}  // namespace

ImportSummary load_vit(const RecognizerGraph& graph, nn::VisionTransformer& vit) {
  VitMatcher matcher(graph, vit);
  ImportSummary summary = matcher.run();
  matcher.commit();
  return summary;
}

}  // namespace arcforge::onnx_io
