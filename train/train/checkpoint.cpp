#include "train/train/checkpoint.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/counter_rng.hpp"
#include "arcforge/common/error.hpp"

namespace arcforge::train {
namespace {

constexpr int64_t kFormatVersion = 1;

torch::Tensor int64_scalar(int64_t v) { return torch::tensor({v}, torch::kInt64); }
torch::Tensor double_scalar(double v) { return torch::tensor({v}, torch::kFloat64); }

// Strings travel as uint8 tensors: plain and identical across libtorch versions.
torch::Tensor string_tensor(const std::string& s) {
  auto t = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), s.data(), s.size());
  return t;
}
std::string tensor_string(const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kCPU);
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()));
}

torch::Tensor read_tensor(torch::serialize::InputArchive& archive, const std::string& key) {
  torch::Tensor t;
  archive.read(key, t);
  return t;
}

// The CUDA generator whose state a checkpoint keeps: that of the GPU the model trains on (each rank
// its own LOCAL_RANK device), none when it trains on the CPU.
std::optional<at::Generator> training_cuda_generator(TrainModules& modules) {
  const torch::Device device = modules.head->weight.device();
  if (!device.is_cuda()) return std::nullopt;
  return at::globalContext().defaultGenerator(device);
}

torch::serialize::InputArchive open_archive(const std::string& path) {
  std::string bytes = read_file(path);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(bytes.data(), bytes.size(), torch::Device(torch::kCPU));
  } catch (const c10::Error& e) {
    throw InputError(file_message(path, "not a readable arcforge checkpoint (" +
                                            std::string(e.what_without_backtrace()) + ")"));
  }
  try {
    int64_t version = read_tensor(archive, "format_version").item<int64_t>();
    if (version != kFormatVersion)
      throw InputError(file_message(path, "checkpoint format version " + std::to_string(version) +
                                              " is not supported (expected " +
                                              std::to_string(kFormatVersion) + ")"));
  } catch (const c10::Error&) {
    throw InputError(file_message(path, "not an arcforge checkpoint (no format_version)"));
  }
  return archive;
}

// Heads above this many values are not drawn whole just to cut a shard from them.
constexpr int64_t kWholeDrawLimit = int64_t{1} << 26;
constexpr int64_t kInitBlockRows = int64_t{1} << 16;

// Rows [start, start + count) of a large head's initialisation, N(0, 0.01): classes are drawn in
// blocks of kInitBlockRows, block b from its own generator keyed by (seed, b), so every cut of the
// classes into shards -- any world size, or one process -- gets the same rows.
torch::Tensor large_head_rows(uint64_t seed, int64_t start, int64_t count, int64_t dim) {
  auto rows = torch::empty({count, dim});
  for (int64_t block = start / kInitBlockRows; block * kInitBlockRows < start + count; ++block) {
    const int64_t block_start = block * kInitBlockRows;
    auto generator = at::make_generator<at::CPUGeneratorImpl>(
        hash_keys({seed, 0x4865616449ull /* "HeadI" */, static_cast<uint64_t>(block)}));
    const auto drawn = torch::empty({kInitBlockRows, dim}).normal_(0.0, 0.01, generator);
    const int64_t from = std::max(start, block_start), to = std::min(start + count, block_start + kInitBlockRows);
    rows.narrow(0, from - start, to - from).copy_(drawn.narrow(0, from - block_start, to - from));
  }
  return rows;
}

}  // namespace

TrainModules make_modules(const TrainConfig& config, const HeadShard& shard) {
  torch::manual_seed(config.train.seed);
  TrainModules m;
  m.backbone = nn::make_backbone(config.model);
  const int64_t classes = config.data.num_identities;
  const int64_t dim = config.model.embedding_size;
  const bool whole = shard.count == 0 || (shard.start == 0 && shard.count == classes);
  if (!whole && (shard.start < 0 || shard.count < 0 || shard.start + shard.count > classes))
    throw ConfigError("head shard [" + std::to_string(shard.start) + ", " + std::to_string(shard.start + shard.count) +
                      ") is outside the " + std::to_string(classes) + " classes");
  const bool large = classes * dim > kWholeDrawLimit;
  if (whole && !large) {
    m.head = nn::NormalizedLinear(dim, classes);
  } else {
    const int64_t start = whole ? 0 : shard.start, count = whole ? classes : shard.count;
    // Small: the same draw as NormalizedLinear(dim, classes), cut to this shard. Large: by blocks.
    const torch::Tensor rows = large ? large_head_rows(config.train.seed, start, count, dim)
                                     : torch::empty({classes, dim}).normal_(0.0, 0.01).narrow(0, start, count).clone();
    m.head = nn::NormalizedLinear(dim, count);
    torch::NoGradGuard no_grad;
    m.head->weight.copy_(rows);
  }
  m.margin = nn::Margin(config.margin);
  return m;
}

namespace {
// `path` without a trailing ".pt".
std::string without_pt(const std::string& path) {
  return path.size() > 3 && path.compare(path.size() - 3, 3, ".pt") == 0 ? path.substr(0, path.size() - 3) : path;
}
}  // namespace

std::string checkpoint_path_for_rank(const std::string& path, int rank) {
  if (rank == 0) return path;
  return without_pt(path) + ".rank" + std::to_string(rank) + ".pt";
}

// `X.pt` -> `X.prev.pt`, and a rank's file `X.rank<r>.pt` -> `X.prev.rank<r>.pt`, so that the
// previous file of rank r is the same name whichever of the two the caller applies first.
std::string previous_checkpoint_path(const std::string& path) {
  const std::string stem = without_pt(path);
  const auto dot = stem.rfind(".rank");
  const bool rank_file = dot != std::string::npos && dot + 5 < stem.size() &&
                         stem.find_first_not_of("0123456789", dot + 5) == std::string::npos;
  if (rank_file) return stem.substr(0, dot) + ".prev" + stem.substr(dot) + ".pt";
  return stem + ".prev.pt";
}

std::string existing_checkpoint(const std::string& path) {
  if (std::filesystem::exists(path)) return path;
  const std::string previous = previous_checkpoint_path(path);
  return std::filesystem::exists(previous) ? previous : path;
}

int64_t read_checkpoint_step(const std::string& path) {
  auto archive = open_archive(path);
  return read_tensor(archive, "counters/step").item<int64_t>();
}

void save_checkpoint_keeping_previous(const std::string& path, const TrainConfig& config, TrainModules& modules,
                                      torch::optim::Optimizer* optimizer, const TrainCounters& counters,
                                      const HeadShard& shard) {
  const std::string next = path + ".next";
  save_checkpoint(next, config, modules, optimizer, counters, shard);
  const std::string previous = previous_checkpoint_path(path);
  if (std::filesystem::exists(path)) std::filesystem::rename(path, previous);  // throws naming both on failure
  std::filesystem::rename(next, path);
}

void save_checkpoint(const std::string& path, const TrainConfig& config, TrainModules& modules,
                     torch::optim::Optimizer* optimizer, const TrainCounters& counters,
                     const HeadShard& shard) {
  torch::serialize::OutputArchive archive;
  archive.write("format_version", int64_scalar(kFormatVersion));
  archive.write("dist/rank", int64_scalar(shard.rank));
  archive.write("dist/world_size", int64_scalar(shard.world_size));
  archive.write("dist/class_start", int64_scalar(shard.start));
  archive.write("dist/class_count", int64_scalar(modules.head->weight.size(0)));
  archive.write("config", string_tensor(to_toml(config)));
  archive.write("counters/step", int64_scalar(counters.step));
  archive.write("counters/nonfinite_total", int64_scalar(counters.nonfinite_total));
  archive.write("counters/nonfinite_consecutive", int64_scalar(counters.nonfinite_consecutive));
  archive.write("counters/loss_scale", double_scalar(counters.loss_scale));
  archive.write("counters/scale_growth_tracker", int64_scalar(counters.scale_growth_tracker));
  archive.write("rng/cpu", at::detail::getDefaultCPUGenerator().get_state());
  if (auto cuda = training_cuda_generator(modules)) archive.write("rng/cuda", cuda->get_state());

  torch::serialize::OutputArchive backbone, head, margin;
  modules.backbone->save(backbone);
  modules.head->save(head);
  modules.margin->save(margin);
  archive.write("backbone", backbone);
  archive.write("head", head);
  archive.write("margin", margin);
  if (optimizer) {
    torch::serialize::OutputArchive opt;
    optimizer->save(opt);
    archive.write("optimizer", opt);
  }

  std::string bytes;
  archive.save_to([&bytes](const void* data, size_t size) -> size_t {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  write_file_atomically(path, bytes);
}

TrainConfig read_checkpoint_config(const std::string& path) {
  auto archive = open_archive(path);
  try {
    return parse_config(tensor_string(read_tensor(archive, "config")), {}, path + " (stored config)");
  } catch (const c10::Error&) {
    throw InputError(file_message(path, "checkpoint has no stored config"));
  }
}

void load_checkpoint(const std::string& path, TrainModules& modules,
                     torch::optim::Optimizer* optimizer, TrainCounters* counters, bool restore_rng) {
  auto archive = open_archive(path);
  try {
    torch::serialize::InputArchive backbone, head, margin;
    archive.read("backbone", backbone);
    archive.read("head", head);
    archive.read("margin", margin);
    modules.backbone->load(backbone);
    modules.head->load(head);
    modules.margin->load(margin);
    if (optimizer) {
      torch::serialize::InputArchive opt;
      archive.read("optimizer", opt);
      optimizer->load(opt);
    }
    if (counters) {
      counters->step = read_tensor(archive, "counters/step").item<int64_t>();
      counters->nonfinite_total = read_tensor(archive, "counters/nonfinite_total").item<int64_t>();
      counters->nonfinite_consecutive =
          read_tensor(archive, "counters/nonfinite_consecutive").item<int64_t>();
      counters->loss_scale = read_tensor(archive, "counters/loss_scale").item<double>();
      counters->scale_growth_tracker =
          read_tensor(archive, "counters/scale_growth_tracker").item<int64_t>();
    }
    if (restore_rng) {
      at::Generator cpu = at::detail::getDefaultCPUGenerator();  // a handle to the global one
      cpu.set_state(read_tensor(archive, "rng/cpu"));
      torch::Tensor cuda_state;
      auto cuda = training_cuda_generator(modules);
      if (cuda && archive.try_read("rng/cuda", cuda_state)) cuda->set_state(cuda_state);
    }
  } catch (const c10::Error& e) {
    throw InputError(file_message(path, "checkpoint does not match the model it is loaded into (" +
                                            std::string(e.what_without_backtrace()) + ")"));
  }
}

HeadShard read_checkpoint_shard(const std::string& path) {
  auto archive = open_archive(path);
  HeadShard shard;
  torch::Tensor value;
  // Checkpoints from before multi-process training hold the whole matrix.
  if (!archive.try_read("dist/world_size", value)) return shard;
  shard.world_size = static_cast<int>(value.item<int64_t>());
  shard.rank = static_cast<int>(read_tensor(archive, "dist/rank").item<int64_t>());
  shard.start = read_tensor(archive, "dist/class_start").item<int64_t>();
  shard.count = read_tensor(archive, "dist/class_count").item<int64_t>();
  return shard;
}

TrainModules load_modules_from_checkpoint(const std::string& path, TrainConfig* config_out) {
  TrainConfig config = read_checkpoint_config(path);
  TrainModules modules = make_modules(config, read_checkpoint_shard(path));
  load_checkpoint(path, modules);
  if (config_out) *config_out = config;
  return modules;
}

}  // namespace arcforge::train
