// Forward-order layer lists of IResNet and MobileFaceNet, read from their module trees by name.
// The wiring below restates each backbone's forward(); the export tests compare the ONNX built from
// it with libtorch's own forward, so a drift between the two fails there.
#include "train/export/backbone_layers.hpp"

#include <set>

#include "arcforge/common/error.hpp"
#include "train/nn/iresnet.hpp"
#include "train/nn/mobilefacenet.hpp"

namespace arcforge::onnx_io {
namespace {

class Describer {
 public:
  explicit Describer(nn::Backbone& backbone) : modules_(backbone.named_modules()) {}

  bool has(const std::string& name) const { return modules_.contains(name); }
  std::shared_ptr<torch::nn::Module> module(const std::string& name) const {
    if (!has(name)) throw Error("backbone has no module named '" + name + "'");
    return modules_[name];
  }

  int conv(const std::string& name, int input) {
    Layer l = layer(LayerKind::conv, name, {input});
    l.conv = torch::nn::Conv2d(typed<torch::nn::Conv2dImpl>(name, "Conv2d"));
    return push(std::move(l));
  }
  int bn2d(const std::string& name, int input) {
    Layer l = layer(LayerKind::batch_norm, name, {input});
    l.bn2d = torch::nn::BatchNorm2d(typed<torch::nn::BatchNorm2dImpl>(name, "BatchNorm2d"));
    return push(std::move(l));
  }
  int bn1d(const std::string& name, int input) {
    Layer l = layer(LayerKind::batch_norm, name, {input});
    l.bn1d = torch::nn::BatchNorm1d(typed<torch::nn::BatchNorm1dImpl>(name, "BatchNorm1d"));
    return push(std::move(l));
  }
  int prelu(const std::string& name, int input) {
    Layer l = layer(LayerKind::prelu, name, {input});
    l.prelu = torch::nn::PReLU(typed<torch::nn::PReLUImpl>(name, "PReLU"));
    return push(std::move(l));
  }
  int linear(const std::string& name, int input) {
    Layer l = layer(LayerKind::linear, name, {input});
    l.linear = torch::nn::Linear(typed<torch::nn::LinearImpl>(name, "Linear"));
    return push(std::move(l));
  }
  int add(const std::string& label, int a, int b) { return push(layer(LayerKind::add, label, {a, b})); }
  int flatten(const std::string& label, int input) {
    return push(layer(LayerKind::flatten, label, {input}));
  }

  LayerGraph graph;

 private:
  static Layer layer(LayerKind kind, const std::string& name, std::vector<int> inputs) {
    Layer l;
    l.kind = kind;
    l.name = name;
    l.inputs = std::move(inputs);
    return l;
  }
  int push(Layer l) {
    graph.layers.push_back(std::move(l));
    return static_cast<int>(graph.layers.size()) - 1;
  }
  template <typename Impl>
  std::shared_ptr<Impl> typed(const std::string& name, const char* what) const {
    auto m = std::dynamic_pointer_cast<Impl>(module(name));
    if (!m) throw Error("backbone module '" + name + "' is not a " + what);
    return m;
  }

  torch::OrderedDict<std::string, std::shared_ptr<torch::nn::Module>> modules_;
};

// ---- IResNet (iresnet.cpp) -----------------------------------------------------------------

// bn1 -> conv1 -> bn2 -> prelu -> conv2 -> bn3, plus x or downsample(x) (conv1x1 + BN).
int iresnet_block(Describer& d, const std::string& p, int x) {
  int y = d.bn2d(p + "bn1", x);
  y = d.conv(p + "conv1", y);
  y = d.bn2d(p + "bn2", y);
  y = d.prelu(p + "prelu", y);
  y = d.conv(p + "conv2", y);
  y = d.bn2d(p + "bn3", y);
  int shortcut = x;
  if (d.has(p + "downsample")) {
    shortcut = d.conv(p + "downsample.0", x);
    shortcut = d.bn2d(p + "downsample.1", shortcut);
  }
  return d.add(p + "add", y, shortcut);
}

void describe_iresnet(Describer& d) {
  int x = d.conv("conv1", kGraphInput);
  x = d.bn2d("bn1", x);
  x = d.prelu("prelu", x);
  for (int l = 1; l <= 4; ++l) {
    const std::string layer = "layer" + std::to_string(l);
    d.module(layer);  // throws when missing
    for (int b = 0; d.has(layer + "." + std::to_string(b)); ++b) {
      x = iresnet_block(d, layer + "." + std::to_string(b) + ".", x);
    }
  }
  x = d.bn2d("bn2", x);
  x = d.flatten("flatten", x);
  // Dropout sits here in training; it is the identity in eval mode and has no node.
  x = d.linear("fc", x);
  d.bn1d("features", x);
}

// ---- MobileFaceNet (mobilefacenet.cpp) -----------------------------------------------------

int mbf_conv_block(Describer& d, const std::string& p, int x) {
  x = d.conv(p + ".layers.0", x);
  x = d.bn2d(p + ".layers.1", x);
  return d.prelu(p + ".layers.2", x);
}

int mbf_linear_block(Describer& d, const std::string& p, int x) {
  x = d.conv(p + ".layers.0", x);
  return d.bn2d(p + ".layers.1", x);
}

// 1x1 expand (ConvBlock) -> depthwise 3x3 (ConvBlock) -> 1x1 project (LinearBlock) (+ x).
int mbf_depthwise(Describer& d, const std::string& p, int x, bool residual) {
  int y = mbf_conv_block(d, p + ".layers.0", x);
  y = mbf_conv_block(d, p + ".layers.1", y);
  y = mbf_linear_block(d, p + ".layers.2", y);
  return residual ? d.add(p + ".add", x, y) : y;
}

void describe_mobilefacenet(Describer& d) {
  int x = kGraphInput;
  // Stages are told apart by type, as MobileFaceNet's constructor builds them: a DepthWise directly
  // in `layers` downsamples (no residual), those inside a Residual keep the shape (residual).
  for (const auto& child : d.module("layers")->named_children()) {
    const std::string p = "layers." + child.key();
    torch::nn::Module* m = child.value().get();
    if (dynamic_cast<nn::mbf::ConvBlockImpl*>(m)) {
      x = mbf_conv_block(d, p, x);
    } else if (dynamic_cast<nn::mbf::DepthWiseImpl*>(m)) {
      x = mbf_depthwise(d, p, x, /*residual=*/false);
    } else if (dynamic_cast<nn::mbf::ResidualImpl*>(m)) {
      for (int b = 0; d.has(p + ".layers." + std::to_string(b)); ++b) {
        x = mbf_depthwise(d, p + ".layers." + std::to_string(b), x, /*residual=*/true);
      }
    } else {
      throw Error("MobileFaceNet stage '" + p + "' has a type the exporter does not know");
    }
  }
  x = mbf_conv_block(d, "conv_sep", x);
  x = mbf_linear_block(d, "features.layers.0", x);  // GDC: depthwise 7x7 + BN
  x = d.flatten("features.flatten", x);
  x = d.linear("features.layers.2", x);
  d.bn1d("features.layers.3", x);
}

// Every parameter and buffer must belong to a listed layer.
void check_coverage(nn::Backbone& backbone, const LayerGraph& graph) {
  std::set<std::string> owners;
  for (const Layer& l : graph.layers) owners.insert(l.name);
  auto check = [&](const std::string& key) {
    const size_t dot = key.rfind('.');
    const std::string owner = dot == std::string::npos ? "" : key.substr(0, dot);
    if (!owners.count(owner)) {
      throw Error(graph.arch + ": parameter '" + key +
                  "' belongs to no layer the ONNX exporter knows; update train/export/backbone_layers.cpp");
    }
  };
  for (const auto& p : backbone.named_parameters()) check(p.key());
  for (const auto& b : backbone.named_buffers()) check(b.key());
}

}  // namespace

std::string to_string(LayerKind kind) {
  switch (kind) {
    case LayerKind::conv: return "Conv2d";
    case LayerKind::batch_norm: return "BatchNorm";
    case LayerKind::prelu: return "PReLU";
    case LayerKind::linear: return "Linear";
    case LayerKind::add: return "Add";
    case LayerKind::flatten: return "Flatten";
  }
  return "?";
}

BatchNormTensors batch_norm_tensors(const Layer& layer) {
  BatchNormTensors t;
  if (layer.bn2d) {
    t = {layer.bn2d->weight, layer.bn2d->bias, layer.bn2d->running_mean, layer.bn2d->running_var,
         layer.bn2d->options.eps(), layer.bn2d->options.num_features()};
  } else if (layer.bn1d) {
    t = {layer.bn1d->weight, layer.bn1d->bias, layer.bn1d->running_mean, layer.bn1d->running_var,
         layer.bn1d->options.eps(), layer.bn1d->options.num_features()};
  } else {
    throw Error("layer '" + layer.name + "' is not a batch norm");
  }
  if (!t.running_mean.defined() || !t.running_var.defined()) {
    throw Error("batch norm '" + layer.name + "' tracks no running statistics; it cannot be exported");
  }
  return t;
}

ConvGeometry conv_geometry(const Layer& layer) {
  if (!layer.conv) throw Error("layer '" + layer.name + "' is not a convolution");
  const auto& o = layer.conv->options;
  // Unqualified get_if finds c10::get_if (libtorch 1.13) or std::get_if (2.x) by argument lookup.
  if (!get_if<torch::enumtype::kZeros>(&o.padding_mode())) {
    throw ConfigError("conv '" + layer.name + "' pads with something other than zeros; ONNX Conv cannot express it");
  }
  const auto* padding = get_if<torch::ExpandingArray<2>>(&o.padding());
  if (!padding) throw ConfigError("conv '" + layer.name + "' uses string padding; ONNX export needs explicit pads");
  ConvGeometry g;
  g.kernel = *o.kernel_size();
  g.stride = *o.stride();
  g.padding = **padding;
  g.dilation = *o.dilation();
  g.groups = o.groups();
  return g;
}

std::vector<int> LayerGraph::consumers(int i) const {
  std::vector<int> out;
  for (size_t k = 0; k < layers.size(); ++k) {
    for (int input : layers[k].inputs) {
      if (input == i) out.push_back(static_cast<int>(k));
    }
  }
  return out;
}

LayerGraph describe_backbone(nn::Backbone& backbone) {
  Describer d(backbone);
  d.graph.arch = backbone.arch();
  d.graph.embedding_size = backbone.embedding_size();
  if (dynamic_cast<nn::IResNet*>(&backbone)) {
    describe_iresnet(d);
  } else if (dynamic_cast<nn::MobileFaceNet*>(&backbone)) {
    describe_mobilefacenet(d);
  } else {
    throw ConfigError("ONNX import: backbone '" + backbone.arch() +
                      "' is not an IResNet or a MobileFaceNet (Vision Transformers export to ONNX but do "
                      "not import from it)");
  }
  check_coverage(backbone, d.graph);
  return std::move(d.graph);
}

}  // namespace arcforge::onnx_io
