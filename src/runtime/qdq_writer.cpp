// fp32 ONNX -> QDQ ONNX. For every quantized Conv:
//   x -> QuantizeLinear(s_x, 0) -> DequantizeLinear(s_x, 0) -> Conv
//   w_s8 (per output channel, axis 0) -> DequantizeLinear -> Conv
//   b_s32 (scale s_x * s_w[c])         -> DequantizeLinear -> Conv
// which is the layout ONNX Runtime's own quantizer writes, so both runtimes accept the file.
#include "qdq_writer.hpp"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <tuple>
#include <unordered_map>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"
#include "conv_geometry.hpp"

namespace arcforge::runtime::detail {
namespace {

// Operators whose meaning in a model of opset `opset` is what it is at 13, so raising the opset
// import of a model made of them changes nothing: most are unchanged since long before; Clip and
// Pad took their bounds and pads as inputs at 11 and only gained types after. (Clip before 11,
// Squeeze, Unsqueeze, Softmax, Split, Reduce*, Upsample, Dropout, ... changed on the way.)
bool same_up_to_opset13(const std::string& op, int64_t opset) {
  static const std::set<std::string> ops = {
      "Conv", "PRelu", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Add", "Sub", "Mul", "Div", "Reshape", "Flatten",
      "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
      "Concat", "Transpose", "Identity", "Constant", "Shape", "Gather", "Exp", "Sqrt", "Abs", "Neg", "Max", "Min",
      "QuantizeLinear", "DequantizeLinear"};
  if (op == "Clip" || op == "Pad") return opset >= 11;
  return ops.count(op) != 0;
}

std::vector<float> float_values(const onnx::TensorProto& t, const std::string& where) {
  int64_t count = 1;
  for (int64_t d : t.dims()) count *= d;
  if (t.data_type() != onnx::TensorProto::FLOAT) throw InputError(where + ": not a float tensor");
  std::vector<float> v(static_cast<std::size_t>(count));
  if (t.has_raw_data()) {
    if (t.raw_data().size() != v.size() * sizeof(float)) throw InputError(where + ": raw_data size does not match its shape");
    std::memcpy(v.data(), t.raw_data().data(), t.raw_data().size());
  } else {
    if (t.float_data_size() != count) throw InputError(where + ": float_data size does not match its shape");
    std::copy(t.float_data().begin(), t.float_data().end(), v.begin());
  }
  return v;
}

template <typename T>
void add_initializer(onnx::GraphProto& g, const std::string& name, int type, const std::vector<int64_t>& dims,
                     const std::vector<T>& values) {
  auto* t = g.add_initializer();
  t->set_name(name);
  t->set_data_type(type);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
}

onnx::NodeProto make_node(const std::string& op, const std::string& name, const std::vector<std::string>& in,
                          const std::string& out, int64_t axis = -1) {
  onnx::NodeProto n;
  n.set_op_type(op);
  n.set_name(name);
  for (const auto& i : in) n.add_input(i);
  n.add_output(out);
  if (axis >= 0) {
    auto* a = n.add_attribute();
    a->set_name("axis");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(axis);
  }
  return n;
}

// Bias correction: the quantized node computes sum(w_q * Q(x)) where the float one computes
// sum(w * x); per output channel, the mean of the difference over the calibration data is
// sum over (input channel, tap) of w_q * E[Q(x)] - w * E[x], each tap weighted by the fraction of
// output positions where it reads inside the input (a conv's zero padding reads 0 in both), and
// the bias absorbs it. `layout.at(c, i, t)`: the weight index of output channel c, input channel i
// (within its group), tap t. False (bias unchanged) when the measured channels do not match.
struct WeightLayout {
  int64_t out_channels = 0, in_per_group = 0, taps = 1, group = 1;
  bool gemm_kn = false;  // Gemm with transB = 0: weights [K, N]
  // A conv's taps: the fraction of output positions at which each reads inside the input (zero
  // padding elsewhere, where the float and the quantized conv both read 0). Empty: all 1.
  std::vector<double> tap_inside;
  int64_t at(int64_t c, int64_t i, int64_t t) const {
    if (gemm_kn) return i * out_channels + c;
    return (c * in_per_group + i) * taps + t;
  }
  int64_t channel_of(int64_t j) const { return gemm_kn ? j % out_channels : j / (in_per_group * taps); }
};

bool correct_bias(std::vector<float>& bias, const std::vector<float>& w, const std::vector<int8_t>& wq,
                  const std::vector<float>& w_scale, const WeightLayout& layout, const ActivationRange& r) {
  const int64_t oc = layout.out_channels;
  if (layout.group < 1 || oc % layout.group != 0 ||
      static_cast<int64_t>(r.channel_mean.size()) != layout.in_per_group * layout.group) {
    return false;
  }
  const int64_t out_per_group = oc / layout.group;
  for (int64_t c = 0; c < oc; ++c) {
    const int64_t first_in = (c / out_per_group) * layout.in_per_group;
    double shift = 0;
    for (int64_t i = 0; i < layout.in_per_group; ++i) {
      const double m = r.channel_mean[first_in + i], mq = r.channel_quantized_mean[first_in + i];
      for (int64_t t = 0; t < layout.taps; ++t) {
        const int64_t j = layout.at(c, i, t);
        const double inside = layout.tap_inside.empty() ? 1.0 : layout.tap_inside[t];
        shift += inside * (static_cast<double>(wq[j]) * w_scale[c] * mq - static_cast<double>(w[j]) * m);
      }
    }
    bias[c] = static_cast<float>(bias[c] - shift);
  }
  return true;
}

const onnx::AttributeProto* find_attribute(const onnx::NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

int64_t int_attribute(const onnx::NodeProto& n, const std::string& name, int64_t fallback) {
  const auto* a = find_attribute(n, name);
  return a ? a->i() : fallback;
}

float float_attribute(const onnx::NodeProto& n, const std::string& name, float fallback) {
  const auto* a = find_attribute(n, name);
  return a ? a->f() : fallback;
}

std::vector<int64_t> ints_attribute(const onnx::NodeProto& n, const std::string& name, std::vector<int64_t> fallback) {
  const auto* a = find_attribute(n, name);
  return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : fallback;
}

// For a 2-D conv over an input of `in` (H or W) with kernel k, stride, dilation and the padding
// before it: per kernel offset, the fraction of the output positions that read inside the input.
std::vector<double> inside_fraction(int64_t in, int64_t k, int64_t stride, int64_t dilation, int64_t pad_begin,
                                    int64_t pad_end) {
  const int64_t out = (in + pad_begin + pad_end - dilation * (k - 1) - 1) / stride + 1;
  std::vector<double> f(static_cast<std::size_t>(k), 1.0);
  if (out < 1) return f;
  for (int64_t t = 0; t < k; ++t) {
    int64_t inside = 0;
    for (int64_t o = 0; o < out; ++o) {
      const int64_t i = o * stride - pad_begin + t * dilation;
      inside += i >= 0 && i < in;
    }
    f[t] = static_cast<double>(inside) / static_cast<double>(out);
  }
  return f;
}

// tap_inside for a 2-D Conv reading an [N, C, H, W] input (pads from `pads` or auto_pad's SAME
// rule); empty when the shape is unknown.
std::vector<double> conv_tap_inside(const onnx::NodeProto& node, const std::vector<int64_t>& in_shape, int64_t kh,
                                    int64_t kw) {
  if (in_shape.size() != 4) return {};
  const auto strides = ints_attribute(node, "strides", {1, 1}), dilations = ints_attribute(node, "dilations", {1, 1});
  auto pads = ints_attribute(node, "pads", {0, 0, 0, 0});
  if (strides.size() != 2 || dilations.size() != 2 || pads.size() != 4) return {};
  const auto* auto_pad_attribute = find_attribute(node, "auto_pad");
  const std::string auto_pad = auto_pad_attribute ? auto_pad_attribute->s() : "NOTSET";
  const int64_t kernel[2] = {kh, kw};
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (int d = 0; d < 2; ++d) {
      std::tie(pads[d], pads[d + 2]) =
          same_padding(auto_pad, in_shape[2 + d], strides[d], (kernel[d] - 1) * dilations[d] + 1);
    }
  } else if (auto_pad == "VALID") {
    pads = {0, 0, 0, 0};
  }
  const auto rows = inside_fraction(in_shape[2], kh, strides[0], dilations[0], pads[0], pads[2]);
  const auto cols = inside_fraction(in_shape[3], kw, strides[1], dilations[1], pads[1], pads[3]);
  std::vector<double> out;
  for (double r : rows) {
    for (double c : cols) out.push_back(r * c);
  }
  return out;
}


}  // namespace

struct QdqWriter::State {
  onnx::ModelProto model;
  std::unordered_map<std::string, int> initializer_index;
};

QdqWriter::QdqWriter(const std::string& path, const std::vector<std::string>& keep_fp32,
                     const std::vector<std::string>& op_types, std::size_t max_bytes)
    : state_(std::make_unique<State>()), path_(path) {
  for (const auto& op : op_types) {
    if (op != "Conv" && op != "Gemm") throw ConfigError("quantize: cannot quantize '" + op + "' (Conv, Gemm)");
  }
  auto is_target_op = [&](const std::string& op) {
    return std::find(op_types.begin(), op_types.end(), op) != op_types.end();
  };
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw InputError(file_message(path, "cannot read model file: " + ec.message()));
  if (size > max_bytes) throw InputError(file_message(path, "model file is over the size limit"));
  std::ifstream in(path, std::ios::binary);
  std::string bytes(size, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  auto& model = state_->model;
  if (!in || bytes.empty() || !model.ParseFromString(bytes) || !model.has_graph()) {
    throw InputError(file_message(path, "not a valid ONNX model"));
  }
  const auto& g = model.graph();
  for (int k = 0; k < g.initializer_size(); ++k) state_->initializer_index[g.initializer(k).name()] = k;
  std::set<std::string> graph_inputs;
  for (const auto& i : g.input()) {
    if (!state_->initializer_index.count(i.name())) graph_inputs.insert(i.name());
  }
  auto node_name = [&](int k) { return g.node(k).name().empty() ? g.node(k).op_type() + "_" + std::to_string(k) : g.node(k).name(); };

  // "last": the nodes of the quantized types whose output reaches a graph output through nodes of
  // other types only.
  std::unordered_map<std::string, int> producer;
  for (int k = 0; k < g.node_size(); ++k) {
    for (const auto& o : g.node(k).output()) producer[o] = k;
  }
  std::set<int> last;
  std::vector<std::string> stack;
  std::set<std::string> seen;
  for (const auto& o : g.output()) stack.push_back(o.name());
  while (!stack.empty()) {
    const std::string v = stack.back();
    stack.pop_back();
    if (!seen.insert(v).second) continue;
    auto p = producer.find(v);
    if (p == producer.end()) continue;
    if (is_target_op(g.node(p->second).op_type())) {
      last.insert(p->second);
      continue;
    }
    for (const auto& i : g.node(p->second).input()) stack.push_back(i);
  }

  std::set<std::string> names_asked;
  bool keep_first = false, keep_last = false, keep_depthwise = false;
  for (const auto& k : keep_fp32) {
    if (k == "first") keep_first = true;
    else if (k == "last") keep_last = true;
    else if (k == "depthwise") keep_depthwise = true;
    else names_asked.insert(k);
  }
  std::set<std::string> names_found;
  for (int k = 0; k < g.node_size(); ++k) {
    const auto& n = g.node(k);
    const std::string name = node_name(k);
    if (names_asked.count(name)) names_found.insert(name);
    if (!is_target_op(n.op_type())) continue;
    const bool gemm = n.op_type() == "Gemm";
    const bool first = n.input_size() > 0 && graph_inputs.count(n.input(0));
    auto w = n.input_size() > 1 ? state_->initializer_index.find(n.input(1)) : state_->initializer_index.end();
    const bool has_c = n.input_size() > 2 && !n.input(2).empty();
    // A Gemm: constant 2-D B, transA 0, alpha 1, and beta 1 when there is a C (the forms the
    // runtime runs as an int8 inner product).
    const bool gemm_form = !gemm || (int_attribute(n, "transA", 0) == 0 && float_attribute(n, "alpha", 1.0f) == 1.0f &&
                                     (!has_c || float_attribute(n, "beta", 1.0f) == 1.0f));
    const bool quantizable = gemm_form && w != state_->initializer_index.end() &&
                             g.initializer(w->second).data_type() == onnx::TensorProto::FLOAT &&
                             g.initializer(w->second).dims_size() == (gemm ? 2 : 4) &&
                             (!has_c || state_->initializer_index.count(n.input(2)));
    // Depthwise: one input channel per group (weights [OC, 1, kh, kw]) and more than one group.
    bool depthwise = false;
    // One or two input channels per group: the depthwise loop runs both in float (and writes the
    // quantized output itself); oneDNN's int8 kernel for two per group is its plain gemm (4 ms of a
    // 6.8 ms int8 mbf run on one thread).
    if (quantizable) depthwise = int_attribute(n, "group", 1) > 1 && g.initializer(w->second).dims(1) <= 2;
    if (!quantizable || names_asked.count(name) || (keep_first && first) || (keep_last && last.count(k)) ||
        (keep_depthwise && depthwise)) {
      kept_.push_back(name);
      continue;
    }
    targets_.push_back({name, n.input(0)});
  }
  for (const auto& name : names_asked) {
    if (!names_found.count(name)) throw InputError(file_message(path, "--keep-fp32: no node named '" + name + "'"));
  }
  if (targets_.empty()) throw InputError(file_message(path, "no convolution or Gemm left to quantize"));
}

QdqWriter::~QdqWriter() = default;

std::vector<std::string> QdqWriter::activations() const {
  std::vector<std::string> out;
  for (const auto& t : targets_) {
    if (std::find(out.begin(), out.end(), t.activation) == out.end()) out.push_back(t.activation);
  }
  return out;
}

void QdqWriter::write(const std::map<std::string, ActivationRange>& ranges, const std::string& out_path,
                      QuantizeReport& report) {
  onnx::ModelProto model = state_->model;
  onnx::GraphProto& g = *model.mutable_graph();

  // Opset: per-channel DequantizeLinear (axis) needs 13.
  int64_t opset = 0;
  onnx::OperatorSetIdProto* default_set = nullptr;
  for (auto& op : *model.mutable_opset_import()) {
    if (op.domain().empty() || op.domain() == "ai.onnx") {
      opset = op.version();
      default_set = &op;
    }
  }
  if (!default_set) throw InputError(file_message(path_, "no opset import for the default ONNX domain"));
  report.opset_from = opset;
  if (opset < 13) {
    for (const auto& n : g.node()) {
      if (!same_up_to_opset13(n.op_type(), opset)) {
        throw InputError(file_message(path_, "opset " + std::to_string(opset) + " model uses " + n.op_type() +
                                                 ", whose meaning changed before opset 13 (needed for per-channel "
                                                 "weights): re-export the model with opset 13 or later"));
      }
    }
    default_set->set_version(13);
  }
  report.opset_to = std::max<int64_t>(opset, 13);
  if (model.ir_version() < 7) model.set_ir_version(7);

  std::unordered_map<std::string, std::string> conv_activation;
  for (const auto& t : targets_) conv_activation[t.conv] = t.activation;
  std::set<std::string> activation_done;
  google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
  auto initializer = [&](const std::string& name) -> const onnx::TensorProto& {
    return state_->model.graph().initializer(state_->initializer_index.at(name));
  };

  for (int k = 0; k < g.node_size(); ++k) {
    onnx::NodeProto node = g.node(k);
    const std::string name = node.name().empty() ? node.op_type() + "_" + std::to_string(k) : node.name();
    auto target = conv_activation.find(name);
    if (target == conv_activation.end()) {
      *nodes.Add() = node;
      continue;
    }
    node.set_name(name);
    const std::string& x = target->second;
    const ActivationRange& r = ranges.at(x);
    const std::string xq = x + "_quantized", xdq = x + "_dequantized";
    if (activation_done.insert(x).second) {
      add_initializer<float>(g, x + "_scale", onnx::TensorProto::FLOAT, {}, {r.scale});
      if (r.is_signed) add_initializer<int8_t>(g, x + "_zero_point", onnx::TensorProto::INT8, {}, {0});
      else add_initializer<uint8_t>(g, x + "_zero_point", onnx::TensorProto::UINT8, {}, {0});
      *nodes.Add() = make_node("QuantizeLinear", x + "_QuantizeLinear", {x, x + "_scale", x + "_zero_point"}, xq);
      *nodes.Add() = make_node("DequantizeLinear", x + "_DequantizeLinear", {xq, x + "_scale", x + "_zero_point"}, xdq);
    }
    // Weights: symmetric s8 per output channel (Conv [OC, IC/g, kh, kw]: axis 0; Gemm: B's N axis,
    // 0 with transB = 1 ([N, K]), 1 with transB = 0 ([K, N])).
    const onnx::TensorProto& wt = initializer(node.input(1));
    const std::vector<float> w = float_values(wt, path_ + ": initializer '" + wt.name() + "'");
    WeightLayout layout;
    if (node.op_type() == "Gemm") {
      layout.gemm_kn = int_attribute(node, "transB", 0) == 0;
      layout.out_channels = wt.dims(layout.gemm_kn ? 1 : 0);
      layout.in_per_group = wt.dims(layout.gemm_kn ? 0 : 1);
    } else {
      layout.out_channels = wt.dims(0);
      layout.in_per_group = wt.dims(1);
      layout.taps = static_cast<int64_t>(w.size()) / std::max<int64_t>(layout.out_channels * layout.in_per_group, 1);
      layout.group = int_attribute(node, "group", 1);
      layout.tap_inside = conv_tap_inside(node, r.shape, wt.dims(2), wt.dims(3));
    }
    const int64_t oc = layout.out_channels;
    std::vector<float> w_max(oc, 0.0f), w_scale(oc);
    for (std::size_t j = 0; j < w.size(); ++j) {
      float& m = w_max[layout.channel_of(static_cast<int64_t>(j))];
      m = std::max(m, std::abs(w[j]));
    }
    for (int64_t c = 0; c < oc; ++c) w_scale[c] = w_max[c] > 0 ? w_max[c] / 127.0f : 1.0f;
    std::vector<int8_t> wq(w.size());
    for (std::size_t j = 0; j < w.size(); ++j) {
      const float s_c = w_scale[layout.channel_of(static_cast<int64_t>(j))];
      wq[j] = static_cast<int8_t>(std::clamp(std::nearbyint(w[j] / s_c), -127.0f, 127.0f));
    }
    const std::string wn = name + ".weight";
    std::vector<int64_t> wdims(wt.dims().begin(), wt.dims().end());
    add_initializer<int8_t>(g, wn + "_quantized", onnx::TensorProto::INT8, wdims, wq);
    add_initializer<float>(g, wn + "_scale", onnx::TensorProto::FLOAT, {oc}, w_scale);
    add_initializer<int8_t>(g, wn + "_zero_point", onnx::TensorProto::INT8, {oc}, std::vector<int8_t>(oc, 0));
    *nodes.Add() = make_node("DequantizeLinear", wn + "_DequantizeLinear",
                             {wn + "_quantized", wn + "_scale", wn + "_zero_point"}, wn + "_dequantized",
                             layout.gemm_kn ? 1 : 0);
    node.set_input(0, xdq);
    node.set_input(1, wn + "_dequantized");
    // Bias: int32 with scale s_x * s_w[c], corrected for the mean shift quantization causes.
    const bool has_bias = node.input_size() > 2 && !node.input(2).empty();
    const bool correct = !r.channel_mean.empty();
    if (has_bias || correct) {
      std::vector<float> bias(static_cast<std::size_t>(oc), 0.0f);
      if (has_bias) {
        const onnx::TensorProto& bt = initializer(node.input(2));
        const std::vector<float> given = float_values(bt, path_ + ": initializer '" + bt.name() + "'");
        // A Gemm's C may be one value broadcast to every column.
        if (static_cast<int64_t>(given.size()) == oc) bias = given;
        else if (given.size() == 1 && node.op_type() == "Gemm") bias.assign(static_cast<std::size_t>(oc), given[0]);
        else throw InputError(file_message(path_, "node '" + name + "': bias size does not match the weights"));
      }
      if (correct && correct_bias(bias, w, wq, w_scale, layout, r)) report.bias_corrected.push_back(name);
      std::vector<float> b_scale(oc);
      std::vector<int32_t> bq(oc);
      for (int64_t c = 0; c < oc; ++c) {
        b_scale[c] = r.scale * w_scale[c];
        const double v = std::nearbyint(static_cast<double>(bias[c]) / b_scale[c]);
        bq[c] = static_cast<int32_t>(std::clamp(v, -2147483647.0, 2147483647.0));
      }
      const std::string bn = name + ".bias";
      add_initializer<int32_t>(g, bn + "_quantized", onnx::TensorProto::INT32, {oc}, bq);
      add_initializer<float>(g, bn + "_scale", onnx::TensorProto::FLOAT, {oc}, b_scale);
      add_initializer<int32_t>(g, bn + "_zero_point", onnx::TensorProto::INT32, {oc}, std::vector<int32_t>(oc, 0));
      *nodes.Add() = make_node("DequantizeLinear", bn + "_DequantizeLinear",
                               {bn + "_quantized", bn + "_scale", bn + "_zero_point"}, bn + "_dequantized", 0);
      while (node.input_size() < 3) node.add_input("");
      node.set_input(2, bn + "_dequantized");
    }
    *nodes.Add() = node;
    report.quantized_convs.push_back(name);
  }
  g.mutable_node()->Swap(&nodes);

  // Drop the float weights nothing reads any more (also from the inputs of IR < 4 files).
  std::set<std::string> used;
  for (const auto& n : g.node()) used.insert(n.input().begin(), n.input().end());
  for (const auto& o : g.output()) used.insert(o.name());
  google::protobuf::RepeatedPtrField<onnx::TensorProto> inits;
  std::set<std::string> dropped;
  for (auto& t : *g.mutable_initializer()) {
    if (used.count(t.name())) *inits.Add() = t;
    else dropped.insert(t.name());
  }
  g.mutable_initializer()->Swap(&inits);
  google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> inputs;
  for (const auto& i : g.input()) {
    if (!dropped.count(i.name())) *inputs.Add() = i;
  }
  g.mutable_input()->Swap(&inputs);
  auto* meta = model.add_metadata_props();
  meta->set_key("arcforge_quantized");
  meta->set_value("int8 QDQ, " + std::to_string(report.quantized_convs.size()) + " convolutions");

  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    throw InputError(file_message(out_path, std::string("libonnx's checker rejected the quantized model: ") + e.what()));
  }
  write_file_atomically(out_path, model.SerializeAsString());
  report.kept_fp32 = kept_;
}

}  // namespace arcforge::runtime::detail
