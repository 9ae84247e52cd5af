// `arcforge infer MODEL.onnx --input x.npy --output y.npy`: one tensor through the runtime.
// --input is given once per graph input and --output once per graph output, in graph order.
#include <memory>
#include <string>
#include <vector>

#include "arcforge/common/error.hpp"
#include "arcforge/common/npy.hpp"
#include "arcforge/runtime/model.hpp"
#include "commands.hpp"

namespace arcforge::cli {
namespace {

struct InferArgs {
  std::string model;
  std::vector<std::string> inputs, outputs;
  int threads = 0;
  std::string precision = "fp32";
};

std::string names(const std::vector<runtime::TensorInfo>& infos) {
  std::string s;
  for (const auto& i : infos) s += (s.empty() ? "" : ", ") + i.name;
  return s;
}

void run(const InferArgs& a) {
  runtime::Options options;
  options.threads = a.threads;
  options.precision = runtime::parse_precision(a.precision);
  const auto model = runtime::Model::load(a.model, options);
  if (a.inputs.size() != model.inputs().size()) {
    throw InputError(a.model + ": the model has " + std::to_string(model.inputs().size()) + " input(s) (" +
                     names(model.inputs()) + "); pass --input once for each");
  }
  if (a.outputs.size() != model.outputs().size()) {
    throw InputError(a.model + ": the model has " + std::to_string(model.outputs().size()) + " output(s) (" +
                     names(model.outputs()) + "); pass --output once for each");
  }
  std::vector<runtime::Tensor> inputs;
  for (const auto& path : a.inputs) {
    NpyArray arr = read_npy(path);
    inputs.push_back({std::move(arr.shape), std::move(arr.data)});
  }
  const auto outputs = model.run(inputs);
  for (std::size_t k = 0; k < outputs.size(); ++k) write_npy(a.outputs[k], outputs[k].shape, outputs[k].data.data());
}

}  // namespace

void add_infer_command(CLI::App& app) {
  auto args = std::make_shared<InferArgs>();
  CLI::App* cmd = app.add_subcommand("infer", "Run .npy tensors through an ONNX model on the arcforge runtime");
  cmd->add_option("model", args->model, "ONNX model file")->required();
  cmd->add_option("--input", args->inputs, "float32 .npy file, once per model input")->required();
  cmd->add_option("--output", args->outputs, ".npy file to write, once per model output")->required();
  cmd->add_option("--threads", args->threads, "CPU threads (default: all cores)");
  cmd->add_option("--precision", args->precision,
                  "fp32 (default), bf16, auto (bf16 where this CPU runs it faster), int8, int8+bf16 or int8+auto "
                  "(int8+bf16 where faster here; a QDQ model)");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
