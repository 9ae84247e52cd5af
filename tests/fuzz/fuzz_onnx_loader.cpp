// libFuzzer target for the runtime's ONNX loader (src/runtime/onnx_loader.cpp): arbitrary bytes as
// a model file. Models come from outside, so only arcforge::InputError may escape; a crash,
// std::bad_alloc or sanitizer report is a bug. A graph that loads must be one the planner can
// walk without further checks:
//   - at least one input and one output, every output produced (by a node, a constant or an input);
//   - nodes in topological order: each non-empty node input is a constant, a graph input or the
//     output of an earlier node;
//   - every value defined once: no node output repeats another node's, a constant's or an input's;
//   - every constant holds exactly as many values as its dimensions say.
//
// run_fuzzers.sh links only the core sources, so the loader and the IR helpers are compiled in
// here, against Debian's libonnx_proto and libprotobuf (not instrumented: the loader's own code is).
// fuzz-cxxflags: -DONNX_ML=1 -DONNX_NAMESPACE=onnx
// fuzz-libs: -lonnx_proto -lprotobuf
// fuzz-needs-header: onnx/onnx_pb.h
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "arcforge/common/error.hpp"
#include "runtime/graph.cpp"
#include "runtime/onnx_loader.cpp"

namespace {

namespace rt = arcforge::runtime::detail;

void check_graph(const rt::Graph& g) {
  if (g.inputs.empty() || g.outputs.empty()) std::abort();
  std::set<std::string> defined;
  for (const auto& [name, value] : g.constants) {
    const int64_t count = value.numel();
    const std::size_t held = value.dtype == rt::DType::f32 ? value.f.size() : value.i.size();
    if (count < 0 || held != static_cast<std::size_t>(count)) std::abort();
    defined.insert(name);
  }
  for (const auto& in : g.inputs) {
    if (!defined.insert(in.name).second) std::abort();  // an input that is also a constant
  }
  for (const auto& node : g.nodes) {
    for (const auto& in : node.inputs) {
      if (!in.empty() && !defined.count(in)) std::abort();  // used before it is defined
    }
    for (const auto& out : node.outputs) {
      if (!out.empty() && !defined.insert(out).second) std::abort();  // defined twice
    }
  }
  for (const auto& out : g.outputs) {
    if (!defined.count(out.name)) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    check_graph(rt::parse_onnx(bytes, "fuzz.onnx"));
  } catch (const arcforge::InputError&) {
  }
  return 0;
}
