// Pairs an ONNX recognizer's weight-bearing nodes with a backbone's layers (see onnx_import.hpp).
#include "train/export/onnx_import.hpp"

#include <algorithm>
#include <sstream>

#include "arcforge/common/error.hpp"
#include "train/export/backbone_layers.hpp"
#include "train/export/imported_batch_norm.hpp"
#include "train/export/onnx_graph_reader.hpp"
#include "train/export/vit_onnx_import.hpp"

namespace arcforge::onnx_io {
namespace {

std::string describe_layer(const Layer& l) {
  switch (l.kind) {
    case LayerKind::conv: {
      const ConvGeometry g = conv_geometry(l);
      return "Conv2d, weight " + sizes_text(l.conv->weight.sizes()) + ", stride " + sizes_text(g.stride) + ", pad " +
             sizes_text(g.padding) + ", groups " + std::to_string(g.groups);
    }
    case LayerKind::batch_norm: return "BatchNorm, " + std::to_string(batch_norm_tensors(l).channels) + " channels";
    case LayerKind::prelu: return "PReLU, " + std::to_string(l.prelu->weight.numel()) + " slopes";
    case LayerKind::linear: return "Linear, weight " + sizes_text(l.linear->weight.sizes());
    case LayerKind::add: return "residual Add";
    case LayerKind::flatten: return "Flatten";
  }
  return "?";
}

class Matcher {
 public:
  Matcher(const RecognizerGraph& onnx, const LayerGraph& ours)
      : onnx_(onnx), ours_(ours), value_of_(ours.layers.size()) {}

  ImportSummary run() {
    summary_.producer = onnx_.producer;
    size_t i = 0;
    while (i < ours_.layers.size()) {
      const Layer& l = ours_.layers[i];
      switch (l.kind) {
        case LayerKind::flatten:
          value_of_[i] = input_value(l, 0);
          ++i;
          break;
        case LayerKind::add: i = match_add(i); break;
        case LayerKind::prelu: i = match_prelu(i); break;
        case LayerKind::conv: i = match_conv(i); break;
        case LayerKind::linear: i = match_linear(i); break;
        case LayerKind::batch_norm: i = match_standalone_batch_norm(i); break;
      }
    }
    if (next_ < onnx_.ops.size()) {
      const OnnxOp& extra = onnx_.ops[next_];
      fail("node " + extra.label + " [" + describe(extra) + "] is left over after every layer of " + ours_.arch +
           " was matched; the file holds a larger architecture");
    }
    if (value_of_.back() != onnx_.output) {
      fail("the graph output '" + onnx_.output + "' is not the output of the last layer of " + ours_.arch + " ('" +
           value_of_.back() + "')");
    }
    return summary_;
  }

  // Copies every matched weight into the backbone (only after the whole file matched).
  void commit() {
    torch::NoGradGuard no_grad;
    for (auto& w : writes_) w.target.copy_(w.value);
  }

 private:
  struct Write {
    torch::Tensor target;
    torch::Tensor value;
  };

  [[noreturn]] void fail(const std::string& what) const { throw InputError(file_message(onnx_.path, what)); }

  [[noreturn]] void mismatch(const OnnxOp& op, const Layer& l, const std::string& why) const {
    fail("node " + op.label + " [" + describe(op) + "] does not match " + ours_.arch + " layer '" + l.name + "' [" +
         describe_layer(l) + "]: " + why);
  }

  std::string input_value(const Layer& l, size_t k) const {
    const int from = l.inputs[k];
    return from == kGraphInput ? onnx_.input : value_of_[from];
  }

  std::string source_text(int from) const {
    if (from == kGraphInput) return "the input image ('" + onnx_.input + "')";
    return "the output of '" + ours_.layers[from].name + "' ('" + value_of_[from] + "')";
  }

  const OnnxOp& take(const Layer& l, OnnxOpKind kind) {
    if (next_ >= onnx_.ops.size()) {
      fail("the graph ends before " + ours_.arch + " layer '" + l.name + "' [" + describe_layer(l) +
           "]; the file holds a smaller architecture");
    }
    const OnnxOp& op = onnx_.ops[next_];
    if (op.kind != kind) mismatch(op, l, "expected " + to_string(kind) + " here");
    ++next_;
    return op;
  }

  void expect_input(const OnnxOp& op, const Layer& l) const {
    if (op.inputs[0] != input_value(l, 0)) {
      mismatch(op, l, "it reads '" + op.inputs[0] + "' but the layer reads " + source_text(l.inputs[0]));
    }
  }

  void write(const torch::Tensor& target, const torch::Tensor& value, const OnnxOp& op, const Layer& l) {
    if (target.numel() != value.numel()) {
      mismatch(op, l, std::to_string(value.numel()) + " values for a " + sizes_text(target.sizes()) + " parameter");
    }
    writes_.push_back({target, value.reshape(target.sizes()).to(target.dtype())});
  }

  size_t match_add(size_t i) {
    const Layer& l = ours_.layers[i];
    const OnnxOp& op = take(l, OnnxOpKind::add);
    std::vector<std::string> theirs = op.inputs, mine = {input_value(l, 0), input_value(l, 1)};
    std::sort(theirs.begin(), theirs.end());
    std::sort(mine.begin(), mine.end());
    if (theirs != mine) {
      mismatch(op, l, "it adds '" + op.inputs[0] + "' and '" + op.inputs[1] + "' but the layer adds " +
                          source_text(l.inputs[0]) + " and " + source_text(l.inputs[1]));
    }
    value_of_[i] = op.output;
    return i + 1;
  }

  size_t match_prelu(size_t i) {
    const Layer& l = ours_.layers[i];
    const OnnxOp& op = take(l, OnnxOpKind::prelu);
    expect_input(op, l);
    if (op.weight.numel() != l.prelu->weight.numel()) mismatch(op, l, "different number of slopes");
    write(l.prelu->weight, op.weight, op, l);
    value_of_[i] = op.output;
    ++summary_.layers;
    return i + 1;
  }

  size_t match_conv(size_t i) {
    const Layer& l = ours_.layers[i];
    const OnnxOp& op = take(l, OnnxOpKind::conv);
    expect_input(op, l);
    const ConvGeometry g = conv_geometry(l);
    if (!op.weight.sizes().equals(l.conv->weight.sizes())) mismatch(op, l, "different weight shape");
    const std::vector<int64_t> pads = {g.padding[0], g.padding[1], g.padding[0], g.padding[1]};
    if (op.strides != std::vector<int64_t>(g.stride.begin(), g.stride.end()) || op.pads != pads ||
        op.dilations != std::vector<int64_t>(g.dilation.begin(), g.dilation.end()) || op.group != g.groups) {
      mismatch(op, l, "different stride, padding, dilation or groups");
    }
    write(l.conv->weight, op.weight, op, l);
    torch::Tensor pending_bias = op.bias;
    if (l.conv->options.bias()) {
      write(l.conv->bias, pending_bias.defined() ? pending_bias : torch::zeros_like(l.conv->bias), op, l);
      pending_bias = torch::Tensor();
    }
    value_of_[i] = op.output;
    ++summary_.layers;
    return match_batch_norm_after(i, op, pending_bias);
  }

  size_t match_linear(size_t i) {
    const Layer& l = ours_.layers[i];
    const OnnxOp& op = take(l, OnnxOpKind::linear);
    expect_input(op, l);
    if (!op.weight.sizes().equals(l.linear->weight.sizes())) mismatch(op, l, "different weight shape");
    write(l.linear->weight, op.weight, op, l);
    torch::Tensor pending_bias = op.bias;
    if (l.linear->options.bias()) {
      write(l.linear->bias, pending_bias.defined() ? pending_bias : torch::zeros_like(l.linear->bias), op, l);
      pending_bias = torch::Tensor();
    }
    value_of_[i] = op.output;
    ++summary_.layers;
    return match_batch_norm_after(i, op, pending_bias);
  }

  // Layer i (conv or linear) may be followed by its own batch norm, either present in the file
  // (a BatchNormalization reading op's output) or folded into op by the exporter.
  size_t match_batch_norm_after(size_t i, const OnnxOp& op, const torch::Tensor& pending_bias) {
    const int bn = static_cast<int>(i) + 1;
    const bool has_own_bn = bn < static_cast<int>(ours_.layers.size()) &&
                            ours_.layers[bn].kind == LayerKind::batch_norm &&
                            ours_.layers[bn].inputs == std::vector<int>{static_cast<int>(i)} &&
                            ours_.consumers(static_cast<int>(i)) == std::vector<int>{bn};
    if (!has_own_bn) {
      if (pending_bias.defined()) {
        mismatch(op, ours_.layers[i], "it has a bias, which the layer lacks, and no batch norm follows to take it");
      }
      return i + 1;
    }
    const Layer& l = ours_.layers[bn];
    if (next_ < onnx_.ops.size() && onnx_.ops[next_].kind == OnnxOpKind::batch_norm &&
        onnx_.ops[next_].inputs[0] == op.output) {
      const OnnxOp& bn_op = onnx_.ops[next_++];
      load_batch_norm(l, bn_op, pending_bias);
      value_of_[bn] = bn_op.output;
    } else {
      restore_identity_batch_norm(l, pending_bias, op);
      value_of_[bn] = op.output;
    }
    return i + 2;
  }

  size_t match_standalone_batch_norm(size_t i) {
    const Layer& l = ours_.layers[i];
    if (next_ < onnx_.ops.size() && onnx_.ops[next_].kind == OnnxOpKind::batch_norm) {
      const OnnxOp& op = onnx_.ops[next_++];
      expect_input(op, l);
      load_batch_norm(l, op, torch::Tensor());
      value_of_[i] = op.output;
      return i + 1;
    }
    // BN -> Flatten -> Linear: an exporter can fold it into the linear layer (ours does).
    const std::vector<int> readers = ours_.consumers(static_cast<int>(i));
    const bool foldable = readers.size() == 1 && ours_.layers[readers[0]].kind == LayerKind::flatten &&
                          ours_.consumers(readers[0]).size() == 1 &&
                          ours_.layers[ours_.consumers(readers[0])[0]].kind == LayerKind::linear;
    if (next_ >= onnx_.ops.size()) take(l, OnnxOpKind::batch_norm);  // reports the early end
    if (!foldable) mismatch(onnx_.ops[next_], l, "expected BatchNormalization here");
    restore_identity_batch_norm(l, torch::Tensor(), onnx_.ops[next_]);
    value_of_[i] = input_value(l, 0);
    return i + 1;
  }

  void load_batch_norm(const Layer& l, const OnnxOp& op, const torch::Tensor& pending_bias) {
    const BatchNormTensors t = batch_norm_tensors(l);
    if (op.weight.numel() != t.channels) mismatch(op, l, "different number of channels");
    if (!t.weight.defined() || !t.bias.defined()) mismatch(op, l, "the layer's batch norm has no affine parameters");
    const BatchNormValues v = batch_norm_from_file(op, pending_bias, t);
    if (v.eps_adjusted) ++summary_.batch_norms_eps_adjusted;
    write_batch_norm(t, v, op, l);
    ++summary_.layers;
  }

  void restore_identity_batch_norm(const Layer& l, const torch::Tensor& bias, const OnnxOp& near) {
    const BatchNormTensors t = batch_norm_tensors(l);
    if (!t.weight.defined() || !t.bias.defined()) mismatch(near, l, "cannot restore a folded batch norm without affine parameters");
    if (bias.defined() && bias.numel() != t.channels) mismatch(near, l, "bias width differs from the batch norm's");
    write_batch_norm(t, identity_batch_norm(bias, t), near, l);
    ++summary_.batch_norms_restored;
  }

  void write_batch_norm(const BatchNormTensors& t, const BatchNormValues& v, const OnnxOp& op, const Layer& l) {
    write(t.weight, v.weight, op, l);
    write(t.bias, v.bias, op, l);
    write(t.running_mean, v.running_mean, op, l);
    write(t.running_var, v.running_var, op, l);
  }

  const RecognizerGraph& onnx_;
  const LayerGraph& ours_;
  std::vector<std::string> value_of_;  // our layer -> the ONNX value holding its output
  size_t next_ = 0;                    // next unmatched ONNX op
  std::vector<Write> writes_;
  ImportSummary summary_;
};

}  // namespace

OnnxRecognizer::OnnxRecognizer(std::shared_ptr<const RecognizerGraph> graph) : graph_(std::move(graph)) {}

OnnxRecognizer OnnxRecognizer::read(const std::string& path) {
  return OnnxRecognizer(std::make_shared<const RecognizerGraph>(read_recognizer_graph(path)));
}

const std::string& OnnxRecognizer::path() const { return graph_->path; }

int64_t OnnxRecognizer::embedding_size() const {
  for (auto it = graph_->ops.rbegin(); it != graph_->ops.rend(); ++it) {
    if (it->kind == OnnxOpKind::linear) return it->weight.size(0);
  }
  throw InputError(file_message(graph_->path, "has no Gemm/MatMul layer, so it is not a face recognizer"));
}

ImportSummary OnnxRecognizer::load_into(nn::Backbone& backbone) const {
  const bool file_is_vit = !graph_->transformer_evidence.empty();
  if (auto* vit = dynamic_cast<nn::VisionTransformer*>(&backbone)) {
    if (!file_is_vit) {
      throw InputError(file_message(graph_->path, "holds a CNN (no LayerNorm), but " + vit->arch() +
                                                      " is a Vision Transformer; import it as r18..r200, mbf or mbf_large"));
    }
    return load_vit(*graph_, *vit);
  }
  if (file_is_vit) {
    throw InputError(file_message(graph_->path, "holds a Vision Transformer (LayerNorm at node " +
                                                    graph_->transformer_evidence + "), but " + backbone.arch() +
                                                    " is a CNN; import it as a vit_* architecture"));
  }
  const LayerGraph ours = describe_backbone(backbone);
  Matcher matcher(*graph_, ours);
  ImportSummary summary = matcher.run();
  matcher.commit();
  return summary;
}

}  // namespace arcforge::onnx_io
