// `arcforge model-info NAME`: parameters, MACs and FLOPs of a backbone, measured by building it and
// running one image through it (InsightFace's "GFLOPs" are the MACs column).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "arcforge/common/parallel.hpp"
#include "arcforge/common/error.hpp"
#include "commands.hpp"
#include "train/nn/backbone.hpp"
#include "train/nn/complexity.hpp"

namespace arcforge::cli {
namespace {

constexpr int64_t kMaxInputSide = 4096;  // a sanity cap: one image of this size is already huge

struct ModelInfoArgs {
  std::string arch;
  int64_t embedding_size = 512;
  std::string input_size = "112x112";
  int threads = 0;
  bool json = false;
};

int64_t parse_side(const std::string& text, const std::string& whole) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || value <= 0 || value > kMaxInputSide) {
    throw InputError("--input-size: expected HxW with sides in 1.." + std::to_string(kMaxInputSide) +
                     ", got '" + whole + "'");
  }
  return value;
}

// "112x112" -> {112, 112}; a single number means a square input.
std::pair<int64_t, int64_t> parse_input_size(const std::string& text) {
  const size_t x = text.find_first_of("xX");
  if (x == std::string::npos) {
    const int64_t side = parse_side(text, text);
    return {side, side};
  }
  return {parse_side(text.substr(0, x), text), parse_side(text.substr(x + 1), text)};
}

// 43590336 -> "43.59 M"
std::string scaled(int64_t value) {
  char buffer[32];
  if (value >= 1'000'000'000) {
    std::snprintf(buffer, sizeof buffer, "%.3f G", static_cast<double>(value) / 1e9);
  } else {
    std::snprintf(buffer, sizeof buffer, "%.3f M", static_cast<double>(value) / 1e6);
  }
  return buffer;
}

void run(const ModelInfoArgs& a) {
  at::set_num_threads(worker_count(a.threads));
  const auto [height, width] = parse_input_size(a.input_size);
  nn::BackboneOptions options;
  options.arch = a.arch;
  options.embedding_size = a.embedding_size;
  std::shared_ptr<nn::Backbone> backbone = nn::make_backbone(options);
  const nn::Complexity c = nn::measure_complexity(*backbone, height, width);

  if (a.json) {
    const nlohmann::ordered_json out = {{"arch", backbone->arch()},
                                       {"params", c.params},
                                       {"macs", c.macs},
                                       {"flops", c.flops()},
                                       {"input", {height, width}},
                                       {"embedding_size", backbone->embedding_size()}};
    std::cout << out.dump() << std::endl;
    return;
  }
  std::printf("arch            %s\n", backbone->arch().c_str());
  std::printf("input           %lldx%lld\n", static_cast<long long>(height),
              static_cast<long long>(width));
  std::printf("embedding size  %lld\n", static_cast<long long>(backbone->embedding_size()));
  std::printf("params          %-14lld (%s)\n", static_cast<long long>(c.params),
              scaled(c.params).c_str());
  std::printf("MACs            %-14lld (%s, InsightFace's \"GFLOPs\")\n",
              static_cast<long long>(c.macs), scaled(c.macs).c_str());
  std::printf("FLOPs           %-14lld (%s, 2 x MACs)\n", static_cast<long long>(c.flops()),
              scaled(c.flops()).c_str());
}

}  // namespace

void add_model_info_command(CLI::App& app) {
  auto args = std::make_shared<ModelInfoArgs>();
  CLI::App* cmd = app.add_subcommand("model-info", "Parameters, MACs and FLOPs of a backbone");
  std::string names;
  for (const std::string& n : nn::backbone_names()) names += (names.empty() ? "" : " ") + n;
  cmd->add_option("name", args->arch, "Backbone: " + names)->required();
  cmd->add_option("--embedding-size", args->embedding_size, "Embedding size (default 512)");
  cmd->add_option(
      "--input-size", args->input_size,
      "Input HxW (default 112x112); the heads need a 7x7 final map, i.e. sides 97..112");
  cmd->add_option("--threads", args->threads, "CPU threads (default: all cores)");
  cmd->add_flag("--json", args->json, "Print one JSON object instead of a table");
  cmd->callback([args] { run(*args); });
}

}  // namespace arcforge::cli
