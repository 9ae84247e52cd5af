// Model (immutable, shared) and Session (plans and scratch, one thread at a time).
#include "arcforge/runtime/model.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "arcforge/common/error.hpp"
#include "arcforge/common/log.hpp"
#include "host_eval.hpp"
#include "micro_batch.hpp"
#include "plan.hpp"

namespace arcforge::runtime {

using detail::CompiledModel;
using detail::Plan;
using detail::Dims;

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

int effective_threads(const Options& o) { return o.threads > 0 ? o.threads : omp_get_num_procs(); }

// The batch all inputs share on axis 0, or -1 where they do not.
int64_t common_batch(const std::vector<std::vector<int64_t>>& shapes) {
  if (shapes.empty() || shapes[0].empty()) return -1;
  for (const auto& s : shapes) {
    if (s.empty() || s[0] != shapes[0][0]) return -1;
  }
  return shapes[0][0];
}

void check_shapes(const CompiledModel& m, const std::vector<std::vector<int64_t>>& shapes) {
  const auto& declared = m.graph.inputs;
  if (shapes.size() != declared.size()) {
    throw InputError(file_message(m.graph.path, "model takes " + std::to_string(declared.size()) + " inputs, got " +
                                                    std::to_string(shapes.size())));
  }
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    const auto& want = declared[k].shape;
    const auto& got = shapes[k];
    bool ok = want.empty() || want.size() == got.size();
    for (std::size_t j = 0; ok && j < want.size(); ++j) ok = want[j] < 0 || want[j] == got[j];
    for (int64_t d : got) ok = ok && d > 0;
    if (!ok) {
      throw InputError(file_message(m.graph.path, "input '" + declared[k].name + "' has shape " + detail::dims_str(got) +
                                                      ", the model expects " + detail::dims_str(want) + " (-1: any)"));
    }
  }
}

void check_inputs(const CompiledModel& m, const std::vector<Tensor>& inputs) {
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& t : inputs) shapes.push_back(t.shape);
  check_shapes(m, shapes);
  const auto& declared = m.graph.inputs;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const auto& got = inputs[k].shape;
    if (static_cast<int64_t>(inputs[k].data.size()) != inputs[k].numel()) {
      throw InputError("input '" + declared[k].name + "': " + std::to_string(inputs[k].data.size()) +
                       " values for shape " + detail::dims_str(got));
    }
  }
}

// Extra outputs become graph outputs, so fusions and dead-node removal keep them.
void add_extra_outputs(detail::Graph& g, const std::vector<std::string>& names) {
  std::set<std::string> known;
  for (const auto& in : g.inputs) known.insert(in.name);
  for (const auto& n : g.nodes) known.insert(n.outputs.begin(), n.outputs.end());
  for (const auto& name : names) {
    if (!known.count(name)) {
      throw InputError(file_message(g.path, "extra output '" + name + "' is not produced by any node or graph input"));
    }
    g.outputs.push_back({name, {}});
  }
}

}  // namespace

Model::Model(std::shared_ptr<CompiledModel> compiled) : compiled_(std::move(compiled)) {}

Model Model::load(const std::string& path, const Options& options) {
  auto compiled = std::make_shared<CompiledModel>();
  compiled->options = options;
  compiled->graph = detail::load_onnx(path, options.max_model_bytes);
  // Decided once the file has parsed, so that a missing or broken file shows its error alone.
  compiled->options.precision = effective_precision(options.precision);
  const bool chosen_here = options.precision == Precision::automatic || options.precision == Precision::int8_automatic;
  if (!chosen_here && compiled->options.precision != options.precision) {
    log::warn(log::cat("runtime: ", path, ": runs in ", to_string(compiled->options.precision), ", not ",
                       to_string(options.precision), ": oneDNN has no bf16 convolutions on this CPU (they need AVX-512)"));
  } else if (floats_in_bf16(options.precision) && !cpu_bf16_outpaces_fp32()) {
    log::warn(log::cat("runtime: ", path, ": bf16 is likely slower than fp32 on this CPU, which has neither AMX ",
                       "nor AMD's full-rate AVX512-BF16 (precision `auto` chooses by the CPU)"));
  }
  if (runs_int8(options.precision) && !cpu_has_int8_dot_product()) {
    log::warn(log::cat("runtime: ", path, ": this CPU has no VNNI, so oneDNN adds int8 products in pairs in 16 bits ",
                       "(saturating with u8 activations; with s8 ones its convolutions round the weights to 7 bits): ",
                       "expect more error than on a VNNI CPU"));
  }
  add_extra_outputs(compiled->graph, options.extra_outputs);
  const std::size_t before = compiled->graph.nodes.size();
  detail::optimize_graph(compiled->graph, compiled->options.precision, options.max_activation_bytes);
  for (const auto& n : compiled->graph.nodes) {
    if (!detail::find_planner(n.op) && !detail::is_host_op(n.op)) {
      throw InputError(compiled->graph.error(n, "unsupported operator '" + n.op + "'"));
    }
  }
  log::debug(log::cat("runtime: ", path, ": ", before, " nodes, ", compiled->graph.nodes.size(), " after optimisation"));
  compiled->may_split_batch = detail::may_split_batch(compiled->graph);
  compiled->weight_bytes = detail::weight_bytes(compiled->graph, compiled->options.precision);
  return Model(std::move(compiled));
}

const std::vector<TensorInfo>& Model::inputs() const { return compiled_->graph.inputs; }
const std::vector<TensorInfo>& Model::outputs() const { return compiled_->graph.outputs; }
const Options& Model::options() const { return compiled_->options; }
const std::map<std::string, int>& Model::op_histogram() const { return compiled_->graph.op_histogram; }
std::size_t Model::optimized_node_count() const { return compiled_->graph.nodes.size(); }

Session Model::new_session() const { return Session(compiled_); }

std::vector<Tensor> Model::run(const std::vector<Tensor>& inputs) const {
  std::unique_ptr<Session> session;
  {
    std::lock_guard<std::mutex> lock(compiled_->pool_mutex);
    if (!compiled_->idle_sessions.empty()) {
      session = std::move(compiled_->idle_sessions.back());
      compiled_->idle_sessions.pop_back();
    }
  }
  // Pooled sessions live inside the CompiledModel, so they must not own it: a strong reference
  // would be a cycle (model -> pool -> session -> model) and no model that ever ran would be freed.
  // The aliasing shared_ptr is non-owning; this Model keeps the CompiledModel alive during the run.
  if (!session) session = std::make_unique<Session>(std::shared_ptr<CompiledModel>(std::shared_ptr<void>{}, compiled_.get()));
  auto outputs = session->run(inputs);  // on an exception the session is dropped, not reused
  std::lock_guard<std::mutex> lock(compiled_->pool_mutex);
  compiled_->idle_sessions.push_back(std::move(session));
  return outputs;
}

Session::Session(std::shared_ptr<CompiledModel> compiled) : compiled_(std::move(compiled)) {}
Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

Plan& Session::plan_for(const Shapes& input_shapes) {
  auto it = plans_.find(input_shapes);
  if (it != plans_.end()) return *it->second;
  // Primitives are created for the thread count they will run with.
  omp_set_num_threads(effective_threads(compiled_->options));
  auto plan = std::make_unique<Plan>();
  detail::PlanBuilder(*compiled_, *plan, input_shapes).build();
  return *plans_.emplace(input_shapes, std::move(plan)).first->second;
}

std::vector<Tensor> Session::run(const std::vector<Tensor>& inputs) { return run_plan(inputs, nullptr); }

std::vector<Tensor> Session::run(const std::vector<Tensor>& inputs, std::vector<StepTiming>& profile) {
  return run_plan(inputs, &profile);
}

std::vector<Tensor> Session::run_plan(const std::vector<Tensor>& inputs, std::vector<StepTiming>* profile) {
  check_inputs(*compiled_, inputs);
  Shapes shapes;
  for (const auto& t : inputs) shapes.push_back(t.shape);
  const int64_t n = common_batch(shapes);
  if (n > 1 && slice_size(shapes) < n) return run_in_slices(inputs, shapes, profile);
  return plan_for(shapes).run(compiled_->engine, inputs, effective_threads(compiled_->options), profile);
}

void Session::prepare(const std::vector<std::vector<int64_t>>& input_shapes) {
  check_shapes(*compiled_, input_shapes);
  passes(input_shapes);
}

std::size_t Session::arena_bytes(const std::vector<std::vector<int64_t>>& input_shapes) {
  check_shapes(*compiled_, input_shapes);
  std::set<const Plan*> plans;
  for (const auto& [plan, images] : passes(input_shapes)) plans.insert(plan);
  std::size_t total = 0;
  for (const Plan* plan : plans) total += plan->arena_bytes();
  return total;
}

int64_t Session::micro_batch(const std::vector<std::vector<int64_t>>& input_shapes) {
  check_shapes(*compiled_, input_shapes);
  const int64_t n = common_batch(input_shapes);
  if (n > 1) return slice_size(input_shapes);
  return input_shapes.empty() || input_shapes[0].empty() ? 1 : input_shapes[0][0];
}

// ---------------------------------------------------------------------------------------------
// Large batches in slices (micro_batch.hpp)

Session::Shapes Session::with_batch(const Shapes& input_shapes, int64_t batch) {
  Shapes out = input_shapes;
  for (auto& s : out) s[0] = batch;
  return out;
}

int64_t Session::slice_size(const Shapes& shapes) {
  const int64_t n = common_batch(shapes);
  if (n <= 1) return n;
  if (auto it = micro_batches_.find(shapes); it != micro_batches_.end()) return it->second;
  const Options& o = compiled_->options;
  int64_t choice = n;
  if (o.micro_batch >= 0 && compiled_->may_split_batch) {
    // The plans for 1 and 2 images: the first measures an image's activations, both together show
    // whether the graph computes each image alone. Kept only where the slices use them.
    const Shapes one = with_batch(shapes, 1), two = with_batch(shapes, 2);
    const bool had_one = plans_.count(one) != 0, had_two = plans_.count(two) != 0;
    try {
      const Plan& single = plan_for(one);
      const int64_t wanted =
          o.micro_batch > 0 ? std::min<int64_t>(o.micro_batch, n)
                            : detail::micro_batch_size(n, single.arena_bytes(), compiled_->weight_bytes,
                                                       detail::last_level_cache_bytes());
      if (wanted < n) {
        const std::string why = detail::batch_split_obstacle(compiled_->graph, single, plan_for(two));
        if (why.empty()) {
          choice = wanted;
        } else {
          log::debug(log::cat("runtime: ", compiled_->graph.path, ": batch of ", n, " runs whole: ", why));
        }
      }
    } catch (const InputError& e) {
      log::debug(log::cat("runtime: batch of ", n, " runs whole: a smaller batch does not plan: ", e.what()));
    }
    const auto used = [&](int64_t images) { return choice < n && (images == choice || images == n % choice); };
    if (!had_one && !used(1)) plans_.erase(one);
    if (!had_two && !used(2)) plans_.erase(two);
  }
  micro_batches_[shapes] = choice;
  return choice;
}

std::vector<std::pair<Plan*, int64_t>> Session::passes(const Shapes& shapes) {
  const int64_t n = common_batch(shapes);
  const int64_t slice = n > 1 ? slice_size(shapes) : n;
  if (n <= 1 || slice >= n) return {{&plan_for(shapes), n}};
  std::vector<std::pair<Plan*, int64_t>> out;
  for (int64_t start = 0; start < n; start += slice) {
    const int64_t images = std::min(slice, n - start);
    out.emplace_back(&plan_for(with_batch(shapes, images)), images);
  }
  return out;
}

std::vector<Tensor> Session::run_in_slices(const std::vector<Tensor>& inputs, const Shapes& shapes,
                                           std::vector<StepTiming>* profile) {
  const int64_t n = common_batch(shapes);
  const auto plan_passes = passes(shapes);
  // The whole batch's outputs: the first slice's dims with n images on axis 0; every slice must agree.
  const Plan& first = *plan_passes.front().first;
  std::vector<Tensor> outputs(first.output_dims.size());
  std::vector<int64_t> output_per_image(outputs.size());
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    Dims dims = first.output_dims[k];
    output_per_image[k] = detail::numel(dims) / plan_passes.front().second;
    dims[0] = n;
    outputs[k].shape = dims;
    outputs[k].data.resize(static_cast<std::size_t>(detail::numel(dims)));
  }
  for (const auto& [plan, images] : plan_passes) {
    for (std::size_t k = 0; k < outputs.size(); ++k) {
      if (plan->output_dims[k].size() != outputs[k].shape.size() ||
          !std::equal(plan->output_dims[k].begin() + 1, plan->output_dims[k].end(), outputs[k].shape.begin() + 1)) {
        throw Error("runtime: " + compiled_->graph.path + ": a slice of " + std::to_string(images) +
                    " images gives output '" + compiled_->graph.outputs[k].name + "' dims " +
                    detail::dims_str(plan->output_dims[k]) + ", not those of the batch's " +
                    detail::dims_str(outputs[k].shape));
      }
    }
  }
  if (profile) profile->clear();
  const int threads = effective_threads(compiled_->options);
  const auto origin = std::chrono::steady_clock::now();
  int64_t done = 0;
  std::vector<const float*> in(inputs.size());
  std::vector<float*> out(outputs.size());
  for (const auto& [plan, images] : plan_passes) {
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      in[k] = inputs[k].data.data() + done * (inputs[k].numel() / n);
    }
    for (std::size_t k = 0; k < outputs.size(); ++k) out[k] = outputs[k].data.data() + done * output_per_image[k];
    plan->run_on(compiled_->engine, in, out, threads, profile, origin);
    done += images;
  }
  return outputs;
}

}  // namespace arcforge::runtime
