#pragma once
// arcforge's inference runtime: ONNX models executed with oneDNN primitives, no libtorch.
//
//   auto model = arcforge::runtime::Model::load("scrfd_500m_bnkps.onnx", {.threads = 2});
//   std::vector<Tensor> out = model.run({input});            // thread-safe
//
// Thread-safety: a Model is immutable after load() and may be shared by any number of threads.
// Model::run() borrows a Session from an internal pool, so concurrent calls never share scratch
// memory. A Session is NOT thread-safe: use one per thread (Model::new_session()) when you want to
// keep its plans and buffers warm yourself.
//
// Execution plans (primitives, memory layout, scratch buffers) are built once per distinct set of
// input shapes and cached in the Session; weights are packed once per layout and shared by all
// sessions of the model.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace arcforge::runtime {

// Compute precision.
//   fp32: everything in float32. A QDQ model (QuantizeLinear/DequantizeLinear) runs with ONNX's
//         float semantics: weights dequantized at load, activations rounded through their scale.
//   bf16: convolutions, inner products and the element-wise ops after them take bf16 activations
//         and weights (packed once), accumulating in fp32; graph inputs and outputs stay fp32.
//   int8: a QDQ model (written by `arcforge quantize`) runs its quantized convolutions and Gemms
//         as oneDNN int8 convolutions and inner products (u8/s8 activations, s8 per-channel
//         weights); the rest runs in fp32. A model without QDQ nodes is rejected.
//   int8_bf16 ("int8+bf16"): int8 as above, and what the model keeps in floating point (the
//         convolutions `arcforge quantize --keep-fp32` left unquantized, a float Gemm head) runs
//         as under bf16, depthwise convolutions excepted: mixed precision, like OpenVINO's bf16
//         inference precision on an int8 model.
//   automatic ("auto"): bf16 where it outpaces fp32 on this CPU (cpu_bf16_outpaces_fp32: AMX, or
//         AVX512-BF16 on AMD), fp32 elsewhere; resolved by Model::load, so Model::options() says
//         which. Like OpenVINO's default inference precision, bf16 on AMX.
//   int8_automatic ("int8+auto"): int8+bf16 where bf16 outpaces fp32, int8 elsewhere; resolved by
//         Model::load like `automatic`.
enum class Precision { fp32, bf16, int8, int8_bf16, automatic, int8_automatic };
// Whether a precision runs QDQ convolutions as int8 convolutions (int8, int8_bf16, int8_automatic).
inline bool runs_int8(Precision p) {
  return p == Precision::int8 || p == Precision::int8_bf16 || p == Precision::int8_automatic;
}
// Whether a precision computes floating-point convolutions and inner products in bf16.
inline bool floats_in_bf16(Precision p) { return p == Precision::bf16 || p == Precision::int8_bf16; }
std::string to_string(Precision p);
Precision parse_precision(const std::string& text);  // throws ConfigError

// Whether oneDNN runs bf16 convolutions on this CPU with a real kernel: AVX-512 and newer (fast
// with AVX512-BF16 or AMX, emulated on plain AVX-512). On an AVX2 CPU it has none at all.
bool cpu_runs_bf16();
// Whether those bf16 convolutions are also faster than fp32 ones: with AMX, or with AVX512-BF16 on
// an AMD CPU (Zen 4: 1.16-1.7x measured). Not on Intel without AMX, whose bf16 dot product issues
// at half the rate of an fp32 FMA (a Xeon with AMX hidden by its hypervisor: 0.57-0.87x), nor
// where oneDNN emulates bf16 on plain AVX-512. Model::load warns when bf16 is asked for anyway.
bool cpu_bf16_outpaces_fp32();
// The precision a model asked to run in `requested` runs in here: bf16 becomes fp32 and int8+bf16
// becomes int8 where the CPU does not run bf16 (Model::load then warns, naming the model); the
// convolutions already fall back to fp32 one by one where oneDNN has only a reference bf16 kernel.
// `automatic` becomes bf16 where cpu_bf16_outpaces_fp32(), fp32 elsewhere; `int8_automatic`
// int8_bf16 there, int8 elsewhere.
Precision effective_precision(Precision requested);
// Whether this CPU has an int8 dot-product instruction (AVX512-VNNI or AVX-VNNI; AMX too) as oneDNN
// sees it. Without one, oneDNN 2.6 adds pairs of u8 x s8 products in 16 bits with saturation
// (vpmaddubsw); for convolutions with s8 activations it halves the weights first (7 bits) to stay
// clear of it. int8 then loses accuracy (paddle MobileFaceNet, LFW crops: min cosine to fp32 0.979,
// against 0.992 with VNNI), and gains speed over fp32 on large models only (r50 1.9x, MobileFaceNet
// none); Model::load warns when an int8 precision runs on such a CPU.
bool cpu_has_int8_dot_product();
// The instruction set oneDNN runs here, in ONEDNN_MAX_CPU_ISA's spelling ("AVX512_CORE_BF16", ...;
// the variable honoured), for benchmark reports beside arcforge's own kernels' level.
std::string onednn_isa_name();

struct Options {
  Precision precision = Precision::fp32;
  // Threads used by every run (oneDNN's OpenMP pool on the calling thread); 0 = all cores.
  int threads = 0;
  // Files larger than this are rejected before parsing.
  std::size_t max_model_bytes = std::size_t{1} << 30;
  // Any one tensor a model computes (an activation, shape arithmetic, a constant folded at load)
  // and the activation arena of one plan together are capped at this many bytes: a model whose
  // shapes would need more is rejected with an InputError naming the node, not left to exhaust
  // memory.
  std::size_t max_activation_bytes = std::size_t{1} << 34;
  // Intermediate values to return after the graph outputs (in this order), e.g. for calibration.
  // Each must be produced by a node or be a graph input; fusions stop at them.
  std::vector<std::string> extra_outputs{};
  // Images per pass for a batch larger than that: 0 lets the runtime choose, -1 always runs the
  // whole batch at once. Where the graph computes each image alone (every value carries the batch
  // on axis 0; checked once per input shape), a batch whose activations would not fit in the
  // last-level cache runs in slices of as many images as fit, the outputs written in place: a light
  // network on large images (SCRFD-500m at 640x640) then keeps each layer's output in cache for the
  // next. The choice leaves the batch whole where the weights outweigh the activations (r50).
  int micro_batch = 0;
};

// A dense float32 tensor in C order (NCHW for images).
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t numel() const;
};

// A graph input or output as declared by the file; dynamic dimensions are -1.
struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
};

namespace detail {
struct CompiledModel;
struct Plan;
}  // namespace detail

class Session;

// One executed step of a plan: a oneDNN primitive or one of the runtime's loop kernels, with the
// node it came from (after fusion a step may stand for several ONNX nodes: a Conv with its
// BatchNormalization, activation and residual Add) and its wall time, the calling thread waiting
// for the step to finish. `arcforge bench-model --profile` writes these as a Chrome trace.
struct StepTiming {
  std::string node;    // the ONNX node's name (op_type + index when the file gives none)
  std::string kernel;  // oneDNN's implementation name (e.g. "brg:avx512_core"), or "loop" and
                       // "loop:quantize" for arcforge's own
  double start_ms = 0; // from the start of the run
  double ms = 0;
};

class Model {
 public:
  // Throws InputError naming the file (and the node) for a malformed file, an unsupported
  // operator, a missing initializer or a cycle.
  static Model load(const std::string& path, const Options& options = {});

  const std::vector<TensorInfo>& inputs() const;
  const std::vector<TensorInfo>& outputs() const;
  const Options& options() const;
  // Operator counts of the file as loaded (before fusion), e.g. {"Conv": 50, "PRelu": 33}.
  const std::map<std::string, int>& op_histogram() const;
  // Number of nodes left after load-time optimisation (fusions, constant folding).
  std::size_t optimized_node_count() const;

  // One tensor per graph input, in inputs() order; returns one per graph output, in outputs()
  // order. Throws InputError when a shape does not fit the model.
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const;

  Session new_session() const;

 private:
  explicit Model(std::shared_ptr<detail::CompiledModel> compiled);
  std::shared_ptr<detail::CompiledModel> compiled_;
};

class Session {
 public:
  explicit Session(std::shared_ptr<detail::CompiledModel> compiled);
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  std::vector<Tensor> run(const std::vector<Tensor>& inputs);
  // The same, timing every step into `profile` (cleared first). Each step is waited for, so a
  // profiled run is slower than a plain one; use it to see where the time goes, not how much.
  std::vector<Tensor> run(const std::vector<Tensor>& inputs, std::vector<StepTiming>& profile);
  // Builds (or finds) the plan for these input shapes without running it.
  void prepare(const std::vector<std::vector<int64_t>>& input_shapes);
  // Bytes of activation memory the plans that run these shapes hold (after buffer reuse).
  std::size_t arena_bytes(const std::vector<std::vector<int64_t>>& input_shapes);
  // Images per pass run() takes for these shapes: the batch itself, or fewer where it runs the
  // batch in slices (Options::micro_batch).
  int64_t micro_batch(const std::vector<std::vector<int64_t>>& input_shapes);

 private:
  using Shapes = std::vector<std::vector<int64_t>>;
  detail::Plan& plan_for(const Shapes& input_shapes);
  // The input shapes with axis 0 set to `batch`.
  static Shapes with_batch(const Shapes& input_shapes, int64_t batch);
  // Images per pass for a batch of these shapes (the choice micro_batch() reports, made once).
  int64_t slice_size(const Shapes& input_shapes);
  // The plans that run a batch of these shapes, in order, with the images each takes.
  std::vector<std::pair<detail::Plan*, int64_t>> passes(const Shapes& input_shapes);
  std::vector<Tensor> run_plan(const std::vector<Tensor>& inputs, std::vector<StepTiming>* profile);
  std::vector<Tensor> run_in_slices(const std::vector<Tensor>& inputs, const Shapes& shapes,
                                    std::vector<StepTiming>* profile);
  std::shared_ptr<detail::CompiledModel> compiled_;
  std::map<Shapes, std::unique_ptr<detail::Plan>> plans_;
  std::map<Shapes, int64_t> micro_batches_;  // the choice per batch shape, made once
};

}  // namespace arcforge::runtime
