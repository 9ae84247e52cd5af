#include "train/nn/blocked_conv.hpp"

#include <stdexcept>

#include "train/nn/cpu_kernel_isa.hpp"
#include "train/nn/traced_op.hpp"

#ifdef ARCFORGE_TRAIN_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>
#endif

namespace arcforge::nn {

namespace {

constexpr int64_t kBlock = 8;  // nChw8c: AVX2's eight float lanes

int64_t output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad) {
  return (in + 2 * pad - kernel) / stride + 1;
}

bool fits(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec) {
  if (!x.device().is_cpu() || !weight.device().is_cpu() || x.dim() != 4 || weight.dim() != 4) return false;
  if (x.scalar_type() != torch::kFloat || weight.scalar_type() != torch::kFloat || x.numel() == 0) return false;
  if (spec.groups != 1 || weight.size(1) != x.size(1)) return false;
  if (spec.stride[0] < 1 || spec.stride[1] < 1 || spec.padding[0] < 0 || spec.padding[1] < 0) return false;
  // The kernel must fit the padded input (output_size's division would round a negative span up to 0).
  return x.size(2) + 2 * spec.padding[0] >= weight.size(2) && x.size(3) + 2 * spec.padding[1] >= weight.size(3);
}

}  // namespace

bool dense_conv_runs_blocked(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec) {
  if (!blocked_conv_available() || cpu_kernel_active_isa() != CpuKernelIsa::avx2) return false;
  if (!fits(x, weight, spec) || !x.is_contiguous(at::MemoryFormat::ChannelsLast)) return false;
  if (x.size(1) % kBlock != 0 || weight.size(0) % kBlock != 0) return false;
  return weight.size(2) > 1 || weight.size(3) > 1;
}

#ifdef ARCFORGE_TRAIN_ONEDNN

namespace {

using dnnl::memory;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::dims dims_of(c10::IntArrayRef values) { return memory::dims(values.begin(), values.end()); }

// A float tensor's own layout, as its strides say.
memory::desc desc_of(const torch::Tensor& t) {
  return memory::desc(dims_of(t.sizes()), memory::data_type::f32, dims_of(t.strides()));
}

// The three primitives of one convolution problem, every operand's layout left to oneDNN.
struct ConvPrimitives {
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_backward_data::primitive_desc backward_data_pd;
  dnnl::convolution_backward_weights::primitive_desc backward_weights_pd;
  dnnl::convolution_forward forward;
  dnnl::convolution_backward_data backward_data;
  dnnl::convolution_backward_weights backward_weights;
};

using ProblemKey = std::array<int64_t, 11>;  // N, C, H, W, O, kh, kw, stride h/w, padding h/w

std::shared_ptr<const ConvPrimitives> build_primitives(const ProblemKey& k) {
  const auto [n, c, h, w, o, kh, kw, sh, sw, ph, pw] = k;
  const int64_t oh = output_size(h, kh, sh, ph), ow = output_size(w, kw, sw, pw);
  const memory::dims src{n, c, h, w}, weights{o, c, kh, kw}, dst{n, o, oh, ow}, strides{sh, sw};
  // PyTorch pads both sides by `padding`; oneDNN wants the right-hand padding the output really uses.
  const memory::dims pad_left{ph, pw}, pad_right{(oh - 1) * sh + kh - h - ph, (ow - 1) * sw + kw - w - pw};
  const auto any = [](const memory::dims& d) { return memory::desc(d, memory::data_type::f32, memory::format_tag::any); };
  const auto direct = dnnl::algorithm::convolution_direct;
  dnnl::engine& engine = cpu_engine();
  dnnl::convolution_forward::primitive_desc forward_pd(
      {dnnl::prop_kind::forward_training, direct, any(src), any(weights), any(dst), strides, pad_left, pad_right},
      engine);
  dnnl::convolution_backward_data::primitive_desc backward_data_pd(
      {direct, any(src), any(weights), any(dst), strides, pad_left, pad_right}, engine, forward_pd);
  dnnl::convolution_backward_weights::primitive_desc backward_weights_pd(
      {direct, any(src), any(weights), any(dst), strides, pad_left, pad_right}, engine, forward_pd);
  return std::make_shared<const ConvPrimitives>(ConvPrimitives{
      forward_pd, backward_data_pd, backward_weights_pd, dnnl::convolution_forward(forward_pd),
      dnnl::convolution_backward_data(backward_data_pd), dnnl::convolution_backward_weights(backward_weights_pd)});
}

// One entry per convolution shape a model meets (a few dozen); cleared if ever it grows past that.
std::shared_ptr<const ConvPrimitives> primitives_for(const torch::Tensor& x, const torch::Tensor& weight,
                                                     const GroupedConvSpec& spec) {
  constexpr size_t kMaxEntries = 256;
  const ProblemKey key{x.size(0),      x.size(1),      x.size(2),      x.size(3),       weight.size(0),  weight.size(2),
                       weight.size(3), spec.stride[0], spec.stride[1], spec.padding[0], spec.padding[1]};
  static std::mutex mutex;
  static std::map<ProblemKey, std::shared_ptr<const ConvPrimitives>> cache;
  const std::lock_guard<std::mutex> lock(mutex);
  auto found = cache.find(key);
  if (found != cache.end()) return found->second;
  if (cache.size() >= kMaxEntries) cache.clear();
  return cache.emplace(key, build_primitives(key)).first->second;
}

// A buffer in `layout`, its bytes held by `storage` (from libtorch's allocator, as the tensors are).
memory scratch(const memory::desc& layout, torch::Tensor& storage) {
  storage = torch::empty({static_cast<int64_t>(layout.get_size())}, torch::kUInt8);
  return memory(layout, cpu_engine(), storage.data_ptr());
}

// `t`'s values in layout `want`: t's own memory when that is its layout already, else a reordered
// copy kept alive by `storage`.
memory operand(const torch::Tensor& t, const memory::desc& want, torch::Tensor& storage, dnnl::stream& stream) {
  memory own(desc_of(t), cpu_engine(), t.data_ptr());
  if (own.get_desc() == want) return own;
  memory copy = scratch(want, storage);
  dnnl::reorder(own, copy).execute(stream, own, copy);
  return copy;
}

// Where a primitive writes a result in layout `layout` that belongs in tensor `out`: out's own memory
// when the layouts agree, else a scratch buffer that finish() reorders into out.
class Result {
 public:
  Result(const torch::Tensor& out, const memory::desc& layout)
      : own_(desc_of(out), cpu_engine(), out.data_ptr()),
        computed_(own_.get_desc() == layout ? own_ : scratch(layout, storage_)) {}
  const memory& computed() const { return computed_; }
  void finish(dnnl::stream& stream) {
    if (computed_.get_data_handle() != own_.get_data_handle())
      dnnl::reorder(computed_, own_).execute(stream, computed_, own_);
  }

 private:
  torch::Tensor storage_;  // declared first: computed_'s initialiser fills it
  memory own_, computed_;
};

std::vector<int64_t> output_shape(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec) {
  return {x.size(0), weight.size(0), output_size(x.size(2), weight.size(2), spec.stride[0], spec.padding[0]),
          output_size(x.size(3), weight.size(3), spec.stride[1], spec.padding[1])};
}

torch::Tensor run_forward(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec) {
  const auto p = primitives_for(x, weight, spec);
  dnnl::stream stream(cpu_engine());
  torch::Tensor src_storage, weights_storage;
  const memory src = operand(x, p->forward_pd.src_desc(), src_storage, stream);
  const memory weights = operand(weight, p->forward_pd.weights_desc(), weights_storage, stream);
  torch::Tensor y = torch::empty(output_shape(x, weight, spec), x.options(), x.suggest_memory_format());
  Result dst(y, p->forward_pd.dst_desc());
  p->forward.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst.computed()}});
  dst.finish(stream);
  stream.wait();
  return y;
}

// The input's and the weight's gradients (either undefined where not needed); the output's gradient
// is reordered once when both passes take it in the same layout, as they do on AVX2.
std::pair<torch::Tensor, torch::Tensor> run_backward(const torch::Tensor& x, const torch::Tensor& weight,
                                                     const GroupedConvSpec& spec, const torch::Tensor& grad_y,
                                                     bool input_grad, bool weight_grad) {
  const auto p = primitives_for(x, weight, spec);
  dnnl::stream stream(cpu_engine());
  const torch::Tensor gy = grad_y.contiguous(x.suggest_memory_format());
  torch::Tensor gy_storage;
  const memory diff_dst = operand(gy, p->backward_data_pd.diff_dst_desc(), gy_storage, stream);
  torch::Tensor gx, gw;
  if (input_grad) {
    torch::Tensor weights_storage;
    const memory weights = operand(weight, p->backward_data_pd.weights_desc(), weights_storage, stream);
    gx = torch::empty_like(x);
    Result diff_src(gx, p->backward_data_pd.diff_src_desc());
    p->backward_data.execute(
        stream, {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DIFF_SRC, diff_src.computed()}});
    diff_src.finish(stream);
  }
  if (weight_grad) {
    torch::Tensor src_storage, other_gy_storage;
    const memory src = operand(x, p->backward_weights_pd.src_desc(), src_storage, stream);
    const memory weights_diff_dst =
        diff_dst.get_desc() == p->backward_weights_pd.diff_dst_desc()
            ? diff_dst
            : operand(gy, p->backward_weights_pd.diff_dst_desc(), other_gy_storage, stream);
    gw = torch::empty_like(weight);
    Result diff_weights(gw, p->backward_weights_pd.diff_weights_desc());
    p->backward_weights.execute(stream, {{DNNL_ARG_SRC, src},
                                         {DNNL_ARG_DIFF_DST, weights_diff_dst},
                                         {DNNL_ARG_DIFF_WEIGHTS, diff_weights.computed()}});
    diff_weights.finish(stream);
  }
  stream.wait();
  return {gx, gw};
}

class BlockedConvFunction : public torch::autograd::Function<BlockedConvFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const GroupedConvSpec& spec) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride_h"] = spec.stride[0];
    ctx->saved_data["stride_w"] = spec.stride[1];
    ctx->saved_data["pad_h"] = spec.padding[0];
    ctx->saved_data["pad_w"] = spec.padding[1];
    return run_forward(x, weight, spec);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    GroupedConvSpec spec;
    spec.stride = {ctx->saved_data["stride_h"].toInt(), ctx->saved_data["stride_w"].toInt()};
    spec.padding = {ctx->saved_data["pad_h"].toInt(), ctx->saved_data["pad_w"].toInt()};
    auto [gx, gw] = run_backward(saved[0], saved[1], spec, grads[0], ctx->needs_input_grad(0), ctx->needs_input_grad(1));
    return {gx, gw, torch::Tensor()};
  }
};

}  // namespace

bool blocked_conv_available() { return true; }

torch::Tensor blocked_conv2d(const torch::Tensor& x, const torch::Tensor& weight, const GroupedConvSpec& spec) {
  if (!fits(x, weight, spec))
    throw std::invalid_argument("blocked_conv2d: needs float CPU tensors x [N,C,H,W] and weight [O,C,kh,kw], groups 1, "
                                "and a non-empty output; got x " + c10::str(x.sizes()) + ", weight " +
                                c10::str(weight.sizes()));
  ARCFORGE_TRACE_OP("arcforge::blocked_conv");
  return BlockedConvFunction::apply(x, weight, spec);
}

#else  // built without oneDNN

bool blocked_conv_available() { return false; }

torch::Tensor blocked_conv2d(const torch::Tensor&, const torch::Tensor&, const GroupedConvSpec&) {
  throw std::invalid_argument("blocked_conv2d: this build of arcforge has no oneDNN (ARCFORGE_DEPLOY=OFF)");
}

#endif

}  // namespace arcforge::nn
