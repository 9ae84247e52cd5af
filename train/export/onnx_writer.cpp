// One ONNX node per layer of the backbone's layer list (backbone_layers.hpp), with optional batch
// norm folding. Initializers keep the PyTorch parameter names ("layer1.0.bn1.running_mean"), and
// folded ones are named "<module>.folded.weight"/".bias" so nobody mistakes them for the originals.
#include "train/export/onnx_writer.hpp"

#include <limits>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "train/export/backbone_layers.hpp"
#include "train/export/batch_norm_folding.hpp"
#include "train/export/onnx_check_model.hpp"
#include "train/export/onnx_graph_writer.hpp"
#include "train/export/onnx_proto_util.hpp"
#include "train/export/vit_onnx_graph.hpp"
#include "train/nn/vit.hpp"

namespace arcforge::onnx_io {
namespace {

constexpr const char* kInputName = "input";
constexpr const char* kOutputName = "embedding";
constexpr const char* kBatchAxis = "batch";

// Which batch norms disappear into a neighbour when folding.
struct FoldPlan {
  std::vector<bool> into_producer;         // BN i folded into the conv/linear that feeds it
  std::vector<int> folded_before_linear;   // linear i absorbs BN k (through Flatten), or -1
  std::vector<bool> into_following_linear; // BN i folded into a later linear
  int count = 0;
};

FoldPlan plan_folds(const LayerGraph& g, bool fold) {
  const size_t n = g.layers.size();
  FoldPlan p{std::vector<bool>(n, false), std::vector<int>(n, -1), std::vector<bool>(n, false), 0};
  if (!fold) return p;
  for (size_t i = 0; i < n; ++i) {
    const Layer& l = g.layers[i];
    if (l.kind != LayerKind::batch_norm) continue;
    const int producer = l.inputs[0];
    if (producer != kGraphInput) {
      const LayerKind pk = g.layers[producer].kind;
      if ((pk == LayerKind::conv || pk == LayerKind::linear) &&
          g.consumers(producer) == std::vector<int>{static_cast<int>(i)}) {
        p.into_producer[i] = true;
        ++p.count;
        continue;
      }
    }
    // BN -> Flatten -> Linear, each the only reader of the one before.
    const std::vector<int> readers = g.consumers(static_cast<int>(i));
    if (readers.size() == 1 && g.layers[readers[0]].kind == LayerKind::flatten) {
      const std::vector<int> next = g.consumers(readers[0]);
      if (next.size() == 1 && g.layers[next[0]].kind == LayerKind::linear) {
        p.into_following_linear[i] = true;
        p.folded_before_linear[next[0]] = static_cast<int>(i);
        ++p.count;
      }
    }
  }
  return p;
}

// The batch norm that reads layer i's output and is folded into it, or -1.
int folded_reader(const LayerGraph& g, const FoldPlan& plan, int i) {
  for (int r : g.consumers(i)) {
    if (plan.into_producer[r]) return r;
  }
  return -1;
}

void write_conv(GraphWriter& w, const Layer& l, const std::string& input, const Layer* folded_bn) {
  const ConvGeometry geometry = conv_geometry(l);
  torch::Tensor weight = l.conv->weight;
  torch::Tensor bias = l.conv->options.bias() ? l.conv->bias : torch::Tensor();
  std::string prefix = l.name;
  if (folded_bn) {
    fold_into_producer(weight, bias, batch_norm_affine(batch_norm_tensors(*folded_bn)));
    prefix += ".folded";
  }
  std::vector<std::string> inputs = {input, w.initializer(prefix + ".weight", weight)};
  if (bias.defined()) inputs.push_back(w.initializer(prefix + ".bias", bias));
  auto& n = w.node("Conv", l.name, inputs, l.name);
  const auto& [k, s, p, d, groups] = geometry;
  set_attribute(n, "kernel_shape", std::vector<int64_t>{k[0], k[1]});
  set_attribute(n, "strides", std::vector<int64_t>{s[0], s[1]});
  set_attribute(n, "pads", std::vector<int64_t>{p[0], p[1], p[0], p[1]});
  set_attribute(n, "dilations", std::vector<int64_t>{d[0], d[1]});
  set_attribute(n, "group", groups);
}

void write_batch_norm(GraphWriter& w, const Layer& l, const std::string& input) {
  const BatchNormTensors t = batch_norm_tensors(l);
  const torch::Tensor ones = torch::ones({t.channels});
  const torch::Tensor zeros = torch::zeros({t.channels});
  auto& n = w.node("BatchNormalization", l.name,
                   {input, w.initializer(l.name + ".weight", t.weight.defined() ? t.weight : ones),
                    w.initializer(l.name + ".bias", t.bias.defined() ? t.bias : zeros),
                    w.initializer(l.name + ".running_mean", t.running_mean),
                    w.initializer(l.name + ".running_var", t.running_var)},
                   l.name);
  set_attribute(n, "epsilon", static_cast<float>(t.eps));
}

void write_prelu(GraphWriter& w, const Layer& l, const std::string& input) {
  const torch::Tensor slope = l.prelu->weight;
  // [C,1,1] broadcasts over [N,C,H,W]; a single shared slope stays a scalar-like [1].
  const std::vector<int64_t> dims =
      slope.numel() == 1 ? std::vector<int64_t>{1} : std::vector<int64_t>{slope.numel(), 1, 1};
  w.node("PRelu", l.name, {input, w.initializer(l.name + ".weight", slope, dims)}, l.name);
}

void write_linear(GraphWriter& w, const Layer& l, const std::string& input, const Layer* bn_before,
                  const Layer* bn_after) {
  torch::Tensor weight = l.linear->weight;  // [out, in], i.e. Gemm with transB = 1
  torch::Tensor bias = l.linear->options.bias() ? l.linear->bias : torch::Tensor();
  std::string prefix = l.name;
  if (bn_before) fold_into_following_linear(weight, bias, batch_norm_affine(batch_norm_tensors(*bn_before)));
  if (bn_after) fold_into_producer(weight, bias, batch_norm_affine(batch_norm_tensors(*bn_after)));
  if (bn_before || bn_after) prefix += ".folded";
  std::vector<std::string> inputs = {input, w.initializer(prefix + ".weight", weight)};
  if (bias.defined()) inputs.push_back(w.initializer(prefix + ".bias", bias));
  set_attribute(w.node("Gemm", l.name, inputs, l.name), "transB", int64_t{1});
}

void build_graph(const LayerGraph& g, const FoldPlan& plan, GraphWriter& w) {
  std::vector<std::string> value(g.layers.size());  // the ONNX value holding each layer's output
  auto in = [&](int i) { return i == kGraphInput ? std::string(kInputName) : value[i]; };
  for (size_t i = 0; i < g.layers.size(); ++i) {
    const Layer& l = g.layers[i];
    const int reader = folded_reader(g, plan, static_cast<int>(i));
    const Layer* fold_after = reader >= 0 ? &g.layers[reader] : nullptr;
    value[i] = l.name;
    switch (l.kind) {
      case LayerKind::conv:
        write_conv(w, l, in(l.inputs[0]), fold_after);
        break;
      case LayerKind::batch_norm:
        if (plan.into_producer[i] || plan.into_following_linear[i]) {
          value[i] = in(l.inputs[0]);  // no node: the neighbour applies it
        } else {
          write_batch_norm(w, l, in(l.inputs[0]));
        }
        break;
      case LayerKind::prelu:
        write_prelu(w, l, in(l.inputs[0]));
        break;
      case LayerKind::add:
        w.node("Add", l.name, {in(l.inputs[0]), in(l.inputs[1])}, l.name);
        break;
      case LayerKind::flatten:
        set_attribute(w.node("Flatten", l.name, {in(l.inputs[0])}, l.name), "axis", int64_t{1});
        break;
      case LayerKind::linear: {
        const int before = plan.folded_before_linear[i];
        write_linear(w, l, in(l.inputs[0]), before >= 0 ? &g.layers[before] : nullptr, fold_after);
        break;
      }
    }
  }
  // The node that produces the last layer's value publishes it as "embedding".
  w.rename_value(value.back(), kOutputName);
}

void add_metadata(onnx::ModelProto& model, const std::string& key, const std::string& value) {
  auto* p = model.add_metadata_props();
  p->set_key(key);
  p->set_value(value);
}

}  // namespace

int minimum_opset(const nn::Backbone& backbone) {
  return dynamic_cast<const nn::VisionTransformer*>(&backbone) ? kVitMinimumOpset : kDefaultOpset;
}

std::string export_onnx_bytes(nn::Backbone& backbone, const ExportOptions& options, ExportSummary* summary_out) {
  const int newest = newest_known_opset();
  const int needed = minimum_opset(backbone);
  const int opset = options.opset == 0 ? needed : options.opset;
  if (opset < 13 || opset > newest) {
    throw ConfigError("--opset " + std::to_string(opset) + ": supported are 13.." + std::to_string(newest));
  }
  if (opset < needed) {
    throw ConfigError("--opset " + std::to_string(opset) + ": " + backbone.arch() + " needs opset " +
                      std::to_string(needed) + " or later (LayerNormalization)");
  }
  if (options.batch < 0) throw ConfigError("--batch must be 'dynamic' or a positive number");
  backbone.eval();
  torch::NoGradGuard no_grad;
  auto* vit = dynamic_cast<nn::VisionTransformer*>(&backbone);

  ExportSummary summary;
  summary.opset = opset;
  onnx::ModelProto model;
  model.set_ir_version(ir_version_for_opset(opset));
  model.set_producer_name("arcforge");
  model.set_producer_version("0.1.0");
  model.set_doc_string("arcforge " + backbone.arch() + " face recognizer: RGB input normalised as (x-127.5)/127.5, NCHW");
  auto* opset_import = model.add_opset_import();
  opset_import->set_domain("");
  opset_import->set_version(opset);
  add_metadata(model, "arch", backbone.arch());
  add_metadata(model, "embedding_size", std::to_string(backbone.embedding_size()));
  add_metadata(model, "source", options.source);
  add_metadata(model, "batch_norm", options.fold_batch_norm ? "folded" : "kept");

  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name(backbone.arch());
  const int64_t batch = options.batch > 0 ? options.batch : -1;
  declare_tensor(graph->add_input(), kInputName, {batch, 3, kInputSize, kInputSize}, kBatchAxis);
  declare_tensor(graph->add_output(), kOutputName, {batch, backbone.embedding_size()}, kBatchAxis);
  GraphWriter writer(graph, summary);
  if (vit) {
    summary.folded_batch_norms = write_vit_graph(*vit, options.fold_batch_norm, options.vit_separate_qkv, kInputName, kOutputName, writer);
  } else {
    const LayerGraph g = describe_backbone(backbone);
    const FoldPlan plan = plan_folds(g, options.fold_batch_norm);
    summary.folded_batch_norms = plan.count;
    build_graph(g, plan, writer);
  }

  check_onnx_model(model, backbone.arch() + " export");
  if (model.ByteSizeLong() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw ConfigError(backbone.arch() + ": the model is larger than 2 GiB, which a single ONNX protobuf cannot hold");
  }
  std::string bytes;
  model.SerializeToString(&bytes);
  summary.bytes = static_cast<int64_t>(bytes.size());
  if (summary_out) *summary_out = summary;
  return bytes;
}

ExportSummary export_onnx(nn::Backbone& backbone, const std::string& onnx_path, const ExportOptions& options) {
  ExportSummary summary;
  const std::string bytes = export_onnx_bytes(backbone, options, &summary);
  write_file_atomically(onnx_path, bytes);
  return summary;
}

}  // namespace arcforge::onnx_io
