#pragma once
// An execution plan for one set of input shapes: the oneDNN primitives (and a few loops) in order,
// with every activation placed in a reusable arena. Built by PlanBuilder, one operator at a time
// (ops/*.cpp), then run any number of times by one thread.
#include <dnnl.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "graph.hpp"
#include "shape_util.hpp"

namespace arcforge::runtime::detail {

using md_t = dnnl::memory::desc;

// Immutable after load, shared by every Session; weights are packed lazily, once per layout.
struct CompiledModel {
  Options options;
  Graph graph;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  // For running large batches in slices (micro_batch.hpp): whether the graph may split at all, and
  // the bytes of its weights.
  bool may_split_batch = false;
  std::size_t weight_bytes = 0;

  // Returns `t` reordered into `wanted` (built from `plain`, which describes t's data), packing it
  // on first use. Thread-safe.
  dnnl::memory packed(const std::string& key, const HostTensor& t, const md_t& plain, const md_t& wanted);
  // The same for weights derived from the file's (e.g. transformed): `make` runs only when `key`
  // has not been packed into `wanted` yet.
  dnnl::memory packed(const std::string& key, const std::function<HostTensor()>& make, const md_t& plain,
                      const md_t& wanted);

  std::mutex pool_mutex;
  std::vector<std::unique_ptr<Session>> idle_sessions;

 private:
  // Both called with packed_mutex_ held.
  const dnnl::memory* find_packed(const std::string& key, const md_t& wanted) const;
  dnnl::memory pack(const std::string& key, const HostTensor& t, const md_t& plain, const md_t& wanted);

  std::mutex packed_mutex_;
  std::map<std::string, std::vector<std::pair<md_t, dnnl::memory>>> packed_;
};

// Where a tensor lives at run time: a logical buffer of the plan (arena, graph input or graph
// output) or a fixed memory (packed weights, materialised constants), seen through `md`.
struct MemRef {
  int buffer = -1;        // logical buffer id, or -1 for `fixed`
  dnnl::memory fixed;     // used when buffer < 0
  md_t md;
};

struct Plan {
  struct Buffer {
    enum class Kind { arena, input, output } kind = Kind::arena;
    int index = 0;       // arena slot, or graph input/output position
    std::size_t bytes = 0;
  };
  struct Step {
    dnnl::primitive primitive;
    std::unordered_map<int, MemRef> args;
    std::unordered_map<int, dnnl::memory> memories;  // built from args by finalize()
    std::vector<MemRef> custom_refs;
    std::function<void(const std::vector<char*>&)> custom;  // loop kernels; gets custom_refs' pointers
    std::string node;  // for profiling and messages
    std::string impl;  // oneDNN implementation name (or the loop kernel's), for profiling
  };

  std::vector<Buffer> buffers;
  std::vector<std::size_t> slot_bytes;
  std::vector<std::unique_ptr<char, void (*)(void*)>> slots;
  std::vector<Step> steps;
  std::vector<Dims> output_dims;
  std::vector<const HostTensor*> host_outputs;  // graph outputs known at plan time (else nullptr)
  std::vector<std::vector<dnnl::memory>> input_memories, output_memories;  // handles set per run
  std::vector<char*> input_ptrs, output_ptrs;
  std::map<std::string, HostTensor> host_values;  // shape arithmetic of this plan
  std::map<std::string, Dims> value_dims;         // every run-time value the plan computes
  std::vector<dnnl::memory> owned;                // materialised constants

  std::size_t arena_bytes() const;
  // The dims of a value of this plan (run-time or host), nullptr when it has none.
  const Dims* dims_of(const std::string& value) const;
  void finalize(const dnnl::engine& engine);
  // `profile`: when given, every step is waited for and timed into it.
  std::vector<Tensor> run(const dnnl::engine& engine, const std::vector<Tensor>& inputs, int threads,
                          std::vector<StepTiming>* profile = nullptr);
  // The same on caller-owned memory: one pointer per graph input (of the plan's input shapes) and
  // per graph output (room for output_dims). Timed steps are appended to `profile`, their start
  // measured from `origin`.
  void run_on(const dnnl::engine& engine, const std::vector<const float*>& inputs, const std::vector<float*>& outputs,
              int threads, std::vector<StepTiming>* profile, std::chrono::steady_clock::time_point origin);

 private:
  char* pointer(const MemRef& ref) const;
};

class PlanBuilder {
 public:
  PlanBuilder(CompiledModel& model, Plan& plan, const std::vector<Dims>& input_dims);
  void build();

  // --- what an operator planner uses ---
  const Graph& graph() const { return model_.graph; }
  const dnnl::engine& engine() const { return model_.engine; }
  Precision precision() const { return model_.options.precision; }
  // The element type floating-point convolutions and inner products compute in: bf16 under
  // Precision::bf16 and int8_bf16 (int8 convolutions have their own planner).
  dnnl::memory::data_type compute_type() const {
    return floats_in_bf16(precision()) ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
  }
  HostLookup host_lookup() const;
  const HostTensor* host(const std::string& value) const;  // nullptr when not known at plan time
  const HostTensor& need_constant(const Node& node, std::size_t input) const;
  const Dims& dims(const std::string& value) const;
  md_t desc(const std::string& value) const;  // current layout of a run-time value

  // The value in layout `md` (same logical dims), reordering once if needed; host values are
  // materialised.
  MemRef input(const std::string& value, const md_t& md);
  MemRef input_as_is(const std::string& value);
  MemRef input_plain(const std::string& value);
  // A new buffer for `value`.
  MemRef output(const std::string& value, const md_t& md);
  // The same for a value whose dims are not md's (same element count): a rank-0 result, which a
  // oneDNN memory cannot describe.
  MemRef output(const std::string& value, const md_t& md, const Dims& dims);
  // `value` shares the buffer of plain `source` (views: Reshape, Flatten, ...).
  MemRef output_view(const std::string& value, const std::string& source, const Dims& dims);
  // A buffer for `value` that already holds `addend` in layout `md` (the sum post-op): the
  // addend's own buffer when this is its last use, else a copy.
  MemRef output_accumulating(const std::string& value, const std::string& addend, const md_t& md);
  // Scratch memory that lives until the current node's steps are done.
  MemRef temporary(const md_t& md);
  void set_host(const std::string& value, HostTensor t);
  // Packed weights (shared across plans and sessions).
  MemRef weights(const std::string& key, const HostTensor& t, const md_t& plain, const md_t& wanted);
  MemRef weights(const std::string& key, const std::function<HostTensor()>& make, const md_t& plain,
                 const md_t& wanted);
  MemRef fixed(const HostTensor& t, const md_t& md);  // plan-owned copy of host data

  void add(dnnl::primitive p, std::unordered_map<int, MemRef> args);
  // A loop kernel of arcforge's own; `impl` names it in profiles.
  void add_custom(std::vector<MemRef> refs, std::function<void(const std::vector<char*>&)> fn,
                  std::string impl = "loop");
  // Reorder-based copy between two refs (layouts may differ).
  void add_reorder(const MemRef& src, const MemRef& dst);

  // Plans `nodes` (a fused node's `unfused`) one by one in place of the current node: they read the
  // node's inputs and end with its outputs; the values only they pass between them are theirs.
  void plan_unfused(const std::vector<Node>& nodes);

  const Node& node() const { return *node_; }
  std::size_t max_bytes() const { return model_.options.max_activation_bytes; }
  // Throws an InputError naming the current node when a tensor of these dims would exceed
  // Options::max_activation_bytes (or has a negative dimension); planners call it before they
  // allocate anything sized by an output shape.
  void check_size(const Dims& dims, std::size_t elem_bytes = 4) const;

 private:
  struct Value {
    Dims dims;
    int buffer = -1;
    md_t md;
    std::vector<std::pair<md_t, int>> variants;  // the same value reordered into other layouts
  };
  int new_buffer(std::size_t bytes);
  void retain(int buffer);
  void release(int buffer);
  void consume(const std::string& value);  // one use done
  void plan_node(const Node& node);
  // What follows planning a node: its temporaries freed, its inputs' uses counted down, outputs
  // nothing reads released.
  void finish_node(const Node& node);
  Value& device_value(const std::string& name);

  CompiledModel& model_;
  Plan& plan_;
  std::vector<Dims> input_dims_;
  const Node* node_ = nullptr;
  std::map<std::string, Value> values_;
  std::unordered_map<std::string, int> uses_left_;
  std::vector<int> refs_;           // per logical buffer
  std::vector<std::size_t> free_slots_;
  std::vector<int> temporaries_;  // buffers of the current node's temporary() calls
};

md_t plain_md(const Dims& dims);
// `md` with another element type (same dims and layout).
md_t with_type(const md_t& md, dnnl::memory::data_type type);
// dims padded with leading 1s to `rank` (ONNX broadcasting aligns trailing axes).
Dims pad_rank(const Dims& dims, std::size_t rank);

// Operator planners (ops_*.cpp). Each reads the node's inputs through the builder and adds steps.
using OpPlanner = void (*)(PlanBuilder&, const Node&);
OpPlanner find_planner(const std::string& op);
void plan_conv(PlanBuilder&, const Node&);
void plan_gemm(PlanBuilder&, const Node&);
void plan_matmul(PlanBuilder&, const Node&);
void plan_pool(PlanBuilder&, const Node&);
void plan_batchnorm(PlanBuilder&, const Node&);
void plan_unary(PlanBuilder&, const Node&);
void plan_prelu(PlanBuilder&, const Node&);
void plan_pow(PlanBuilder&, const Node&);
void plan_reduce_mean(PlanBuilder&, const Node&);
void plan_gather(PlanBuilder&, const Node&);
void plan_binary(PlanBuilder&, const Node&);
void plan_softmax(PlanBuilder&, const Node&);
void plan_layernorm(PlanBuilder&, const Node&);
void plan_fused_attention(PlanBuilder&, const Node&);
void plan_concat(PlanBuilder&, const Node&);
void plan_transpose(PlanBuilder&, const Node&);
void plan_view(PlanBuilder&, const Node&);
void plan_slice(PlanBuilder&, const Node&);
void plan_split(PlanBuilder&, const Node&);
void plan_pad(PlanBuilder&, const Node&);
void plan_resize(PlanBuilder&, const Node&);
void plan_conv_int8(PlanBuilder&, const Node&);
struct ConvGeometry;
// A float convolution as Winograd F(4x4, 3x3) (ops_conv_winograd.cpp); false, with nothing added to
// the plan, where that method does not apply or would not be faster.
bool plan_conv_winograd(PlanBuilder&, const Node&, const ConvGeometry&, const HostTensor& weights,
                        const HostTensor* bias);
// A float depthwise 3x3 convolution on arcforge's depthwise loop (ops_conv_depthwise.cpp), writing
// `act` (or the quantized type its QuantConv says); false, with nothing added, where it does not fit.
bool plan_conv_depthwise(PlanBuilder&, const Node&, const ConvGeometry&, const HostTensor& weights,
                         const HostTensor* bias, dnnl::memory::data_type act);
// A network's first convolution (3x3 over a 1- or 3-channel fp32 NCHW image) on arcforge's stem loop
// (ops_conv_stem.cpp), writing `act`; false, with nothing added, where it does not fit.
bool plan_conv_stem(PlanBuilder&, const Node&, const ConvGeometry&, const HostTensor& weights,
                    const HostTensor* bias, dnnl::memory::data_type act);
void plan_gemm_int8(PlanBuilder&, const Node&);
void plan_quantize(PlanBuilder&, const Node&);
void plan_dequantize(PlanBuilder&, const Node&);

}  // namespace arcforge::runtime::detail
