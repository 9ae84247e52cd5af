// PlanBuilder: walks the optimised graph once for a set of input shapes, evaluating shape
// arithmetic on the host and asking each operator's planner for primitives. Activation buffers are
// reference-counted logical buffers mapped onto arena slots that are reused once a value's last
// reader has been planned, so a plan's memory is close to the peak live set, not the sum.
#include "plan.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "arcforge/common/error.hpp"
#include "host_eval.hpp"

namespace arcforge::runtime::detail {

md_t plain_md(const Dims& dims) {
  Dims d = dims.empty() ? Dims{1} : dims;
  return md_t(d, dnnl::memory::data_type::f32, strides_of(d));
}

md_t with_type(const md_t& md, dnnl::memory::data_type type) {
  md_t out = md;
  out.data.data_type = static_cast<dnnl_data_type_t>(type);
  return out;
}

Dims pad_rank(const Dims& dims, std::size_t rank) {
  Dims out(rank > dims.size() ? rank - dims.size() : 0, 1);
  out.insert(out.end(), dims.begin(), dims.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
// CompiledModel

dnnl::memory CompiledModel::packed(const std::string& key, const HostTensor& t, const md_t& plain, const md_t& wanted) {
  std::lock_guard<std::mutex> lock(packed_mutex_);
  const dnnl::memory* found = find_packed(key, wanted);
  return found ? *found : pack(key, t, plain, wanted);
}

dnnl::memory CompiledModel::packed(const std::string& key, const std::function<HostTensor()>& make,
                                   const md_t& plain, const md_t& wanted) {
  std::lock_guard<std::mutex> lock(packed_mutex_);
  const dnnl::memory* found = find_packed(key, wanted);
  return found ? *found : pack(key, make(), plain, wanted);
}

const dnnl::memory* CompiledModel::find_packed(const std::string& key, const md_t& wanted) const {
  const auto entries = packed_.find(key);
  if (entries == packed_.end()) return nullptr;
  for (const auto& [md, mem] : entries->second) {
    if (md == wanted) return &mem;
  }
  return nullptr;
}

dnnl::memory CompiledModel::pack(const std::string& key, const HostTensor& t, const md_t& plain, const md_t& wanted) {
  dnnl::memory src(plain, engine, const_cast<float*>(t.f.data()));
  dnnl::memory dst(wanted, engine);
  dnnl::stream stream(engine);
  dnnl::reorder(src, dst).execute(stream, src, dst);
  stream.wait();
  packed_[key].emplace_back(wanted, dst);
  return dst;
}

// ---------------------------------------------------------------------------------------------
// Plan

std::size_t Plan::arena_bytes() const {
  std::size_t total = 0;
  for (std::size_t b : slot_bytes) total += b;
  return total;
}

char* Plan::pointer(const MemRef& ref) const {
  if (ref.buffer < 0) return static_cast<char*>(ref.fixed.get_data_handle());
  const Buffer& b = buffers[ref.buffer];
  switch (b.kind) {
    case Buffer::Kind::arena: return slots[b.index].get();
    case Buffer::Kind::input: return input_ptrs[b.index];
    case Buffer::Kind::output: return output_ptrs[b.index];
  }
  return nullptr;
}

void Plan::finalize(const dnnl::engine& engine) {
  for (std::size_t bytes : slot_bytes) {
    const std::size_t rounded = (std::max<std::size_t>(bytes, 64) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw Error("runtime: out of memory allocating a " + std::to_string(rounded) + "-byte activation buffer");
    slots.emplace_back(static_cast<char*>(p), &std::free);
  }
  for (auto& step : steps) {
    for (auto& [arg, ref] : step.args) {
      if (ref.buffer < 0) {
        step.memories[arg] = ref.fixed.get_desc() == ref.md
                                 ? ref.fixed
                                 : dnnl::memory(ref.md, engine, ref.fixed.get_data_handle());
        continue;
      }
      const Buffer& b = buffers[ref.buffer];
      if (b.kind == Buffer::Kind::arena) {
        step.memories[arg] = dnnl::memory(ref.md, engine, slots[b.index].get());
      } else {
        dnnl::memory m(ref.md, engine, DNNL_MEMORY_NONE);
        (b.kind == Buffer::Kind::input ? input_memories : output_memories)[b.index].push_back(m);
        step.memories[arg] = m;
      }
    }
  }
}

const Dims* Plan::dims_of(const std::string& value) const {
  if (auto v = value_dims.find(value); v != value_dims.end()) return &v->second;
  if (auto h = host_values.find(value); h != host_values.end()) return &h->second.dims;
  return nullptr;
}

std::vector<Tensor> Plan::run(const dnnl::engine& engine, const std::vector<Tensor>& inputs, int threads,
                              std::vector<StepTiming>* profile) {
  std::vector<const float*> in;
  for (const auto& t : inputs) in.push_back(t.data.data());
  std::vector<Tensor> outputs(output_dims.size());
  std::vector<float*> out;
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    outputs[k].shape = output_dims[k];
    outputs[k].data.resize(static_cast<std::size_t>(numel(output_dims[k])));
    out.push_back(outputs[k].data.data());
  }
  if (profile) profile->clear();
  run_on(engine, in, out, threads, profile, std::chrono::steady_clock::now());
  return outputs;
}

void Plan::run_on(const dnnl::engine& engine, const std::vector<const float*>& inputs,
                  const std::vector<float*>& outputs, int threads, std::vector<StepTiming>* profile,
                  std::chrono::steady_clock::time_point origin) {
  omp_set_num_threads(threads);
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    input_ptrs[k] = reinterpret_cast<char*>(const_cast<float*>(inputs[k]));
    for (auto& m : input_memories[k]) m.set_data_handle(input_ptrs[k]);
  }
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    if (host_outputs[k]) {
      for (int64_t j = 0; j < host_outputs[k]->numel(); ++j) outputs[k][j] = static_cast<float>(host_outputs[k]->at(j));
    }
    output_ptrs[k] = reinterpret_cast<char*>(outputs[k]);
    for (auto& m : output_memories[k]) m.set_data_handle(output_ptrs[k]);
  }
  dnnl::stream stream(engine);
  std::vector<char*> ptrs;
  // ARCFORGE_RUNTIME_PROFILE=1: the same per-step times on stderr, without changing the caller.
  static const bool print_profile = std::getenv("ARCFORGE_RUNTIME_PROFILE") != nullptr;
  std::vector<StepTiming> printed;
  if (print_profile && !profile) profile = &printed;
  const std::size_t first_timed = profile ? profile->size() : 0;
  using Clock = std::chrono::steady_clock;
  for (auto& step : steps) {
    const auto t0 = profile ? Clock::now() : Clock::time_point{};
    if (step.custom) {
      stream.wait();
      ptrs.clear();
      for (const auto& ref : step.custom_refs) ptrs.push_back(pointer(ref));
      step.custom(ptrs);
    } else {
      step.primitive.execute(stream, step.memories);
    }
    if (profile) {
      stream.wait();
      const auto t1 = Clock::now();
      profile->push_back({step.node, step.impl, std::chrono::duration<double, std::milli>(t0 - origin).count(),
                          std::chrono::duration<double, std::milli>(t1 - t0).count()});
    }
  }
  stream.wait();
  if (print_profile) {
    for (std::size_t k = first_timed; k < profile->size(); ++k) {
      const auto& t = (*profile)[k];
      std::fprintf(stderr, "[profile] %8.3f ms  %-10s %s\n", t.ms, t.kernel.c_str(), t.node.c_str());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// PlanBuilder

PlanBuilder::PlanBuilder(CompiledModel& model, Plan& plan, const std::vector<Dims>& input_dims)
    : model_(model), plan_(plan), input_dims_(input_dims) {}

HostLookup PlanBuilder::host_lookup() const {
  return [this](const std::string& v) { return host(v); };
}

const HostTensor* PlanBuilder::host(const std::string& value) const {
  auto c = model_.graph.constants.find(value);
  if (c != model_.graph.constants.end()) return &c->second;
  auto h = plan_.host_values.find(value);
  return h == plan_.host_values.end() ? nullptr : &h->second;
}

const HostTensor& PlanBuilder::need_constant(const Node& node, std::size_t input) const {
  const HostTensor* t = node.input(input).empty() ? nullptr : host(node.input(input));
  if (!t || t->dtype != DType::f32) {
    node_error(node, "input " + std::to_string(input) + " ('" + node.input(input) + "') must be a float constant");
  }
  return *t;
}

const Dims& PlanBuilder::dims(const std::string& value) const {
  if (const HostTensor* t = host(value)) return t->dims;
  auto it = values_.find(value);
  if (it == values_.end()) node_error(*node_, "value '" + value + "' is not available");
  return it->second.dims;
}

PlanBuilder::Value& PlanBuilder::device_value(const std::string& name) {
  auto it = values_.find(name);
  if (it == values_.end()) node_error(*node_, "value '" + name + "' is not available");
  return it->second;
}

md_t PlanBuilder::desc(const std::string& value) const {
  if (const HostTensor* t = host(value)) return plain_md(t->dims);
  auto it = values_.find(value);
  if (it == values_.end()) node_error(*node_, "value '" + value + "' is not available");
  return it->second.md;
}

int PlanBuilder::new_buffer(std::size_t bytes) {
  // Best fit among free slots; otherwise grow the largest free slot; otherwise a new slot.
  int best = -1;
  for (std::size_t k = 0; k < free_slots_.size(); ++k) {
    const std::size_t cap = plan_.slot_bytes[free_slots_[k]];
    if (cap >= bytes && (best < 0 || cap < plan_.slot_bytes[free_slots_[best]])) best = static_cast<int>(k);
  }
  if (best < 0 && !free_slots_.empty()) {
    best = static_cast<int>(std::max_element(free_slots_.begin(), free_slots_.end(),
                                             [&](std::size_t a, std::size_t b) {
                                               return plan_.slot_bytes[a] < plan_.slot_bytes[b];
                                             }) -
                            free_slots_.begin());
  }
  std::size_t slot;
  if (best >= 0) {
    slot = free_slots_[best];
    free_slots_.erase(free_slots_.begin() + best);
    plan_.slot_bytes[slot] = std::max(plan_.slot_bytes[slot], bytes);
  } else {
    slot = plan_.slot_bytes.size();
    plan_.slot_bytes.push_back(bytes);
  }
  plan_.buffers.push_back({Plan::Buffer::Kind::arena, static_cast<int>(slot), bytes});
  refs_.push_back(1);
  return static_cast<int>(plan_.buffers.size() - 1);
}

void PlanBuilder::retain(int buffer) { ++refs_[buffer]; }

void PlanBuilder::release(int buffer) {
  if (--refs_[buffer] == 0 && plan_.buffers[buffer].kind == Plan::Buffer::Kind::arena) {
    free_slots_.push_back(static_cast<std::size_t>(plan_.buffers[buffer].index));
  }
}

void PlanBuilder::consume(const std::string& value) {
  auto it = values_.find(value);
  if (it == values_.end()) return;  // host value
  if (--uses_left_[value] > 0) return;
  release(it->second.buffer);
  for (auto& [md, buf] : it->second.variants) release(buf);
  plan_.value_dims[value] = it->second.dims;
  values_.erase(it);
}

MemRef PlanBuilder::input(const std::string& value, const md_t& md) {
  if (const HostTensor* t = host(value)) {
    if (t->dtype != DType::f32) node_error(*node_, "input '" + value + "' is an integer tensor; only float tensors run on the device");
    MemRef plain = fixed(*t, plain_md(md.dims()));
    if (plain.md == md) return plain;
    dnnl::memory converted(md, model_.engine);
    dnnl::stream stream(model_.engine);
    dnnl::reorder(plain.fixed, converted).execute(stream, plain.fixed, converted);
    stream.wait();
    plan_.owned.push_back(converted);
    return MemRef{-1, converted, md};
  }
  Value& v = device_value(value);
  if (v.md == md) return MemRef{v.buffer, {}, md};
  for (auto& [vmd, buf] : v.variants) {
    if (vmd == md) return MemRef{buf, {}, md};
  }
  const int buf = new_buffer(md.get_size());
  add_reorder(MemRef{v.buffer, {}, v.md}, MemRef{buf, {}, md});
  device_value(value).variants.emplace_back(md, buf);
  return MemRef{buf, {}, md};
}

MemRef PlanBuilder::input_as_is(const std::string& value) { return input(value, desc(value)); }

MemRef PlanBuilder::input_plain(const std::string& value) { return input(value, plain_md(dims(value))); }

void PlanBuilder::check_size(const Dims& dims, std::size_t elem_bytes) const {
  if (node_) check_tensor_size(*node_, dims, elem_bytes, max_bytes());
}

MemRef PlanBuilder::output(const std::string& value, const md_t& md) {
  check_size(md.dims(), md.get_size() / std::max<std::size_t>(numel(md.dims()), 1));
  Value v;
  v.dims = md.dims();
  v.md = md;
  v.buffer = new_buffer(md.get_size());
  values_[value] = v;
  return MemRef{v.buffer, {}, md};
}

MemRef PlanBuilder::output(const std::string& value, const md_t& md, const Dims& dims) {
  if (numel(dims) != numel(md.dims())) node_error(*node_, "output dims do not match its memory");
  MemRef ref = output(value, md);
  values_[value].dims = dims;
  return ref;
}

MemRef PlanBuilder::output_view(const std::string& value, const std::string& source, const Dims& dims) {
  if (numel(dims) != numel(this->dims(source))) node_error(*node_, "view changes the element count");
  MemRef src = input_plain(source);
  if (src.buffer < 0) {  // a view of a constant: just a constant with other dims
    HostTensor t = *host(source);
    t.dims = dims;
    set_host(value, std::move(t));
    return MemRef{-1, src.fixed, plain_md(dims)};
  }
  retain(src.buffer);
  Value v;
  v.dims = dims;
  v.md = plain_md(dims);
  v.buffer = src.buffer;
  values_[value] = v;
  return MemRef{v.buffer, {}, v.md};
}

MemRef PlanBuilder::output_accumulating(const std::string& value, const std::string& addend, const md_t& md) {
  auto it = values_.find(addend);
  if (it != values_.end() && it->second.md == md && uses_left_[addend] == 1 && refs_[it->second.buffer] == 1 &&
      plan_.buffers[it->second.buffer].kind == Plan::Buffer::Kind::arena) {
    retain(it->second.buffer);  // the addend's buffer becomes the output's
    Value v;
    v.dims = md.dims();
    v.md = md;
    v.buffer = it->second.buffer;
    values_[value] = v;
    return MemRef{v.buffer, {}, md};
  }
  MemRef src = input(addend, md);
  MemRef dst = output(value, md);
  add_reorder(src, dst);
  return dst;
}

MemRef PlanBuilder::temporary(const md_t& md) {
  check_size(md.dims(), md.get_size() / std::max<std::size_t>(numel(md.dims()), 1));
  const int buf = new_buffer(md.get_size());
  temporaries_.push_back(buf);
  return MemRef{buf, {}, md};
}

void PlanBuilder::set_host(const std::string& value, HostTensor t) {
  check_size(t.dims, t.dtype == DType::f32 ? 4 : 8);
  plan_.host_values[value] = std::move(t);
}

MemRef PlanBuilder::weights(const std::string& key, const HostTensor& t, const md_t& plain, const md_t& wanted) {
  return MemRef{-1, model_.packed(key, t, plain, wanted), wanted};
}

MemRef PlanBuilder::weights(const std::string& key, const std::function<HostTensor()>& make, const md_t& plain,
                            const md_t& wanted) {
  return MemRef{-1, model_.packed(key, make, plain, wanted), wanted};
}

MemRef PlanBuilder::fixed(const HostTensor& t, const md_t& md) {
  if (t.dtype != DType::f32) node_error(*node_, "integer tensor used as float data");
  if (static_cast<int64_t>(md.get_size()) != t.numel() * 4) node_error(*node_, "constant has the wrong size for its use");
  dnnl::memory m(md, model_.engine);
  std::memcpy(m.get_data_handle(), t.f.data(), t.f.size() * sizeof(float));
  plan_.owned.push_back(m);
  return MemRef{-1, m, md};
}

void PlanBuilder::add(dnnl::primitive p, std::unordered_map<int, MemRef> args) {
  Plan::Step step;
  const char* impl = nullptr;
  dnnl_primitive_desc_query(const_cast<dnnl_primitive_desc_t>(p.get_primitive_desc()), dnnl_query_impl_info_str, 0,
                            &impl);
  step.impl = impl ? impl : "?";
  step.primitive = std::move(p);
  step.args = std::move(args);
  step.node = node_ ? node_->name : "output";
  plan_.steps.push_back(std::move(step));
}

void PlanBuilder::add_custom(std::vector<MemRef> refs, std::function<void(const std::vector<char*>&)> fn,
                             std::string impl) {
  Plan::Step step;
  step.impl = std::move(impl);
  step.custom_refs = std::move(refs);
  step.custom = std::move(fn);
  step.node = node_ ? node_->name : "output";
  plan_.steps.push_back(std::move(step));
}

void PlanBuilder::add_reorder(const MemRef& src, const MemRef& dst) {
  dnnl::reorder::primitive_desc pd(model_.engine, src.md, model_.engine, dst.md);
  add(dnnl::reorder(pd), {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}});
}

void PlanBuilder::plan_node(const Node& node) {
  HostLookup lookup = host_lookup();
  if (runs_on_host(node, lookup)) {
    auto outs = eval_host(node, lookup, [this](const std::string& v) { return dims(v); }, max_bytes());
    for (std::size_t k = 0; k < outs.size() && k < node.outputs.size(); ++k) set_host(node.outputs[k], std::move(outs[k]));
    return;
  }
  OpPlanner planner = find_planner(node.op);
  if (!planner) node_error(node, "cannot run with run-time (non-constant) inputs");
  planner(*this, node);
}

void PlanBuilder::finish_node(const Node& n) {
  for (int buf : temporaries_) release(buf);
  temporaries_.clear();
  for (const auto& value : n.values_read()) consume(value);
  for (const auto& out : n.outputs) {
    if (!out.empty() && uses_left_[out] == 0 && values_.count(out)) {
      ++uses_left_[out];
      consume(out);
    }
  }
}

void PlanBuilder::plan_unfused(const std::vector<Node>& nodes) {
  const Node* fused = node_;
  // Every inner read takes a use that finish_node gives back: the node's own inputs stay counted
  // until build() finishes the node, and the values made inside are released after their last read.
  for (const auto& inner : nodes) {
    for (const auto& value : inner.values_read()) ++uses_left_[value];
  }
  for (const auto& inner : nodes) {
    node_ = &inner;
    plan_node(inner);
    finish_node(inner);
  }
  node_ = fused;
}

void PlanBuilder::build() {
  const Graph& g = model_.graph;
  for (const auto& n : g.nodes) {
    for (const auto& value : n.values_read()) ++uses_left_[value];
  }
  for (const auto& o : g.outputs) ++uses_left_[o.name];

  plan_.input_memories.resize(g.inputs.size());
  plan_.input_ptrs.resize(g.inputs.size());
  for (std::size_t k = 0; k < g.inputs.size(); ++k) {
    plan_.buffers.push_back({Plan::Buffer::Kind::input, static_cast<int>(k), 0});
    refs_.push_back(1);
    Value v;
    v.dims = input_dims_[k];
    v.md = plain_md(v.dims);
    v.buffer = static_cast<int>(plan_.buffers.size() - 1);
    values_[g.inputs[k].name] = v;
    if (uses_left_[g.inputs[k].name] == 0) consume(g.inputs[k].name);
  }

  for (const auto& n : g.nodes) {
    node_ = &n;
    try {
      plan_node(n);
    } catch (const dnnl::error& e) {
      throw InputError(file_message(g.path, n.describe() + ": oneDNN rejected it: " + e.what()));
    } catch (const InputError& e) {
      throw InputError(file_message(g.path, e.what()));
    }
    finish_node(n);
  }
  node_ = nullptr;

  plan_.output_memories.resize(g.outputs.size());
  plan_.output_ptrs.resize(g.outputs.size());
  for (std::size_t k = 0; k < g.outputs.size(); ++k) {
    const std::string& name = g.outputs[k].name;
    if (const HostTensor* t = host(name)) {
      plan_.host_outputs.push_back(t);
      plan_.output_dims.push_back(t->dims);
      continue;
    }
    plan_.host_outputs.push_back(nullptr);
    auto it = values_.find(name);
    if (it == values_.end()) throw InputError(file_message(g.path, "graph output '" + name + "' was never computed"));
    plan_.output_dims.push_back(it->second.dims);
    plan_.buffers.push_back({Plan::Buffer::Kind::output, static_cast<int>(k), 0});
    refs_.push_back(1);
    add_reorder(MemRef{it->second.buffer, {}, it->second.md},
                MemRef{static_cast<int>(plan_.buffers.size() - 1), {}, plain_md(it->second.dims)});
    consume(name);
  }
  if (plan_.arena_bytes() > max_bytes()) {
    throw InputError(file_message(g.path, "the activations need " + std::to_string(plan_.arena_bytes()) +
                                              " bytes, more than the " + std::to_string(max_bytes()) +
                                              "-byte limit (Options::max_activation_bytes)"));
  }
  for (const auto& [name, value] : values_) plan_.value_dims[name] = value.dims;
  plan_.finalize(model_.engine);
}

}  // namespace arcforge::runtime::detail
