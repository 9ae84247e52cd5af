// libFuzzer target for what the runtime does with an untrusted model after parsing it:
// arcforge::runtime::Model::load (constant folding, fusions, operator checks) and, when the model
// loads, one Model::run in fp32 on a small input of the declared shape (dynamic dimensions 1), which
// plans it (shape inference, host evaluation of shape arithmetic, oneDNN primitive creation, arena
// planning) and executes it. Only arcforge::InputError may escape; a crash, an uncaught exception,
// std::bad_alloc, a sanitizer report, a huge allocation (-rss_limit_mb) or a hang is a bug.
//
// ARCFORGE_RUNTIME_WINOGRAD=all (unless set otherwise): the fuzz build's CPU kernels are the
// baseline copy, below the level where 3x3 convolutions take the Winograd path by default.
//
// The runtime sources are compiled into an archive of their own (fuzz-sources), instrumented; oneDNN,
// libonnx_proto and libprotobuf are Debian's. Seeds: tests/fuzz/make_onnx_seeds.py.
// fuzz-sources: src/runtime
// fuzz-cxxflags: -DONNX_ML=1 -DONNX_NAMESPACE=onnx -fopenmp
// fuzz-libs: -ldnnl -lonnx_proto -lprotobuf -fopenmp
// fuzz-needs-header: dnnl.hpp omp.h
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/runtime/model.hpp"

namespace {

namespace rt = arcforge::runtime;

// Inputs larger than this are not run (the model declared a big input; that is not a bug).
constexpr int64_t kMaxInputValues = int64_t{1} << 16;

const std::string& model_path() {
  static const std::string path = [] {
    const char* tmp = std::getenv("TMPDIR");
    return std::string(tmp && *tmp ? tmp : "/tmp") + "/fuzz_model_load." + std::to_string(getpid()) + ".onnx";
  }();
  return path;
}

void write_file(const std::string& path, const uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ::setenv("ARCFORGE_RUNTIME_WINOGRAD", "all", /*overwrite=*/0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string& path = model_path();
  write_file(path, data, size);
  rt::Options options;
  options.precision = rt::Precision::fp32;
  options.threads = 1;
  // The library's default activation cap (16 GiB, a user's choice) is above libFuzzer's 2 GiB RSS
  // limit, and a model that asks for 4 GiB of activations (a Resize by 8192) is not a bug: the
  // harness caps it so that the planner's check, not the allocator, stops such a model.
  options.max_activation_bytes = std::size_t{1} << 30;
  try {
    const rt::Model model = rt::Model::load(path, options);
    std::vector<rt::Tensor> inputs;
    int64_t total = 0;
    for (const auto& info : model.inputs()) {
      rt::Tensor t;
      int64_t n = 1;
      for (int64_t d : info.shape) {
        const int64_t dim = d > 0 ? d : 1;
        t.shape.push_back(dim);
        if (dim > kMaxInputValues) return 0;
        n *= dim;
        if (n > kMaxInputValues) return 0;
      }
      total += n;
      if (total > kMaxInputValues) return 0;
      t.data.resize(static_cast<std::size_t>(n));
      for (std::size_t k = 0; k < t.data.size(); ++k) t.data[k] = static_cast<float>(k % 7) * 0.25f - 0.5f;
      inputs.push_back(std::move(t));
    }
    const auto outputs = model.run(inputs);
    if (outputs.size() != model.outputs().size()) std::abort();
    for (const auto& o : outputs) {
      if (static_cast<int64_t>(o.data.size()) != o.numel()) std::abort();
    }
  } catch (const arcforge::InputError&) {
  }
  return 0;
}
