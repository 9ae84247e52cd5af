#include "train/train/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>

#include "arcforge/common/error.hpp"
#include "train/data/augment.hpp"

namespace arcforge::train {
namespace {

// Reads known keys out of a parsed table and remembers which were read, so that leftovers
// (typos, keys from another version) are reported instead of silently ignored.
class Reader {
 public:
  Reader(const toml::table& root, std::string source) : root_(root), source_(std::move(source)) {}

  template <typename T>
  void get(const std::string& section, const std::string& key, T& out) {
    used_.insert(section + "." + key);
    const toml::node* node = root_.at_path(section + "." + key).node();
    if (!node) return;
    if constexpr (std::is_same_v<T, std::string>) {
      if (auto v = node->value<std::string>()) return void(out = *v);
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      // An array of strings; a single string is taken as a one-element list (handy with --set).
      if (auto v = node->value<std::string>()) return void(out = {*v});
      if (const toml::array* array = node->as_array()) {
        std::vector<std::string> items;
        for (const auto& element : *array) {
          auto item = element.value<std::string>();
          if (!item) bad(section, key, "must be a list of strings");
          items.push_back(*item);
        }
        return void(out = std::move(items));
      }
    } else if constexpr (std::is_same_v<T, bool>) {
      if (auto v = node->value<bool>()) return void(out = *v);
    } else if constexpr (std::is_floating_point_v<T>) {
      if (auto v = node->value<double>()) return void(out = static_cast<T>(*v));
    } else if constexpr (std::is_integral_v<T>) {
      if (auto v = node->value<int64_t>()) {
        if (*v < 0 && std::is_unsigned_v<T>) bad(section, key, "must not be negative");
        return void(out = static_cast<T>(*v));
      }
    }
    bad(section, key, "has the wrong type");
  }

  // A scalar (number, string or bool) kept as text under `key` in `out`, when present.
  void get_text(const std::string& section, const std::string& key, std::map<std::string, std::string>& out) {
    used_.insert(section + "." + key);
    const toml::node* node = root_.at_path(section + "." + key).node();
    if (!node) return;
    if (auto v = node->value<std::string>()) return void(out[key] = *v);
    if (auto v = node->value<int64_t>(); v && node->is_integer()) return void(out[key] = std::to_string(*v));
    if (auto v = node->value<double>()) {
      std::ostringstream text;
      text.precision(17);
      text << *v;
      return void(out[key] = text.str());
    }
    bad(section, key, "has the wrong type");
  }

  void check_no_unknown_keys() const {
    for (const auto& [section, node] : root_) {
      const toml::table* table = node.as_table();
      if (!table) throw ConfigError(source_ + ": top-level key '" + std::string(section.str()) +
                                    "' is not a section; expected [section] tables");
      for (const auto& [key, value] : *table) {
        std::string full = std::string(section.str()) + "." + std::string(key.str());
        if (!used_.count(full)) throw ConfigError(source_ + ": unknown key '" + full + "'");
      }
    }
  }

  [[noreturn]] void bad(const std::string& section, const std::string& key,
                        const std::string& what) const {
    throw ConfigError(source_ + ": " + section + "." + key + " " + what);
  }

 private:
  const toml::table& root_;
  std::string source_;
  std::set<std::string> used_;
};

// Puts "a.b=value" into the table. The value is parsed as TOML; if that fails it is a string.
void apply_override(toml::table& root, const std::string& assignment) {
  auto eq = assignment.find('=');
  auto dot = assignment.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq)
    throw ConfigError("override '" + assignment + "' is not of the form section.key=value");
  std::string section = assignment.substr(0, dot);
  std::string key = assignment.substr(dot + 1, eq - dot - 1);
  std::string text = assignment.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + text);
  } catch (const toml::parse_error&) {
    parsed = toml::table{{"v", text}};
  }
  if (!root.contains(section)) root.insert(section, toml::table{});
  toml::table* table = root[section].as_table();
  if (!table) throw ConfigError("override '" + assignment + "': '" + section + "' is not a section");
  table->insert_or_assign(key, *parsed.get("v"));
}

toml::table augment_table(const AugmentConfig& a) {
  toml::table table{{"preset", a.preset}};
  for (const auto& [key, value] : a.options) table.insert_or_assign(key, value);
  return table;
}

toml::array string_array(const std::vector<std::string>& items) {
  toml::array array;
  for (const auto& item : items) array.push_back(item);
  return array;
}

nn::DynamicMarginMode parse_dynamic_mode(const std::string& s, const std::string& source) {
  if (s == "angular") return nn::DynamicMarginMode::angular;
  if (s == "additive") return nn::DynamicMarginMode::additive;
  throw ConfigError(source + ": head.dynamic_mode must be 'angular' or 'additive', not '" + s + "'");
}

void validate(const TrainConfig& c, const std::string& source) {
  auto require = [&](bool ok, const std::string& what) {
    if (!ok) throw ConfigError(source + ": " + what);
  };
  require(c.train.batch_size > 0, "train.batch_size must be positive");
  static const std::set<std::string> datasets = {"synth", "synthetic", "rec", "folder"};
  require(datasets.count(c.data.dataset) > 0,
          "data.dataset must be synth, synthetic, rec or folder, not '" + c.data.dataset + "'");
  require(c.data.dataset == "synth" || c.data.dataset == "synthetic" || !c.data.path.empty(),
          "data.path must name the dataset for data.dataset = '" + c.data.dataset + "'");
  require(c.data.samples_per_identity >= 0, "data.samples_per_identity must not be negative");
  require(c.data.loader_threads > 0, "data.loader_threads must be positive");
  require(c.data.prefetch_batches > 0, "data.prefetch_batches must be positive");
  try {
    data::validate(resolved_augment(c));
  } catch (const ConfigError& e) {
    throw ConfigError(source + ": " + e.what());
  }
  require(c.train.grad_accumulation > 0, "train.grad_accumulation must be positive");
  // Bounds far beyond any real run, so that products of these counts cannot overflow int64.
  require(c.train.batch_size <= (int64_t{1} << 24), "train.batch_size must be at most 2^24");
  require(c.train.grad_accumulation <= (int64_t{1} << 20), "train.grad_accumulation must be at most 2^20");
  require(std::isfinite(c.train.epochs) && c.train.epochs >= 0, "train.epochs must be a finite, non-negative number");
  require(c.total_steps() > 0, "train.steps (or train.epochs with data.num_images) must be positive");
  require(c.total_steps() <= int64_t{1'000'000'000'000}, "train.steps (or train.epochs x the epoch length) must be at most 10^12");
  require(c.optimizer.name == "sgd" || c.optimizer.name == "adamw",
          "optimizer.name must be 'sgd' or 'adamw', not '" + c.optimizer.name + "'");
  require(c.optimizer.lr > 0, "optimizer.lr must be positive");
  require(c.schedule.name == "poly" || c.schedule.name == "cosine" ||
              c.schedule.name == "cosine_restarts" || c.schedule.name == "constant",
          "schedule.name must be poly, cosine, cosine_restarts or constant, not '" +
              c.schedule.name + "'");
  require(c.schedule.warmup_steps >= 0, "schedule.warmup_steps must not be negative");
  require(c.train.precision == "fp32" || c.train.precision == "bf16" || c.train.precision == "fp16" ||
              c.train.precision == "auto",
          "train.precision must be fp32, bf16, fp16 or auto, not '" + c.train.precision + "'");
  require(c.train.device == "auto" || c.train.device == "cpu" || c.train.device == "cuda",
          "train.device must be auto, cpu or cuda, not '" + c.train.device + "'");
  require(c.train.label_smoothing >= 0 && c.train.label_smoothing < 1,
          "train.label_smoothing must be in [0, 1)");
  require(c.data.num_identities > 1, "data.num_identities must be at least 2");
  require(c.log.every > 0, "log.every must be positive");
  require(c.log.profile_steps > 0, "log.profile_steps must be positive");
  require(c.data.make_ahead == "auto" || c.data.make_ahead == "on" || c.data.make_ahead == "off",
          "data.make_ahead must be auto, on or off, not '" + c.data.make_ahead + "'");
  require(c.train.deferred_verdict == "auto" || c.train.deferred_verdict == "on" || c.train.deferred_verdict == "off",
          "train.deferred_verdict must be auto, on or off, not '" + c.train.deferred_verdict + "'");
  require(!(c.train.deferred_verdict == "on" && c.optimizer.name != "sgd"),
          "train.deferred_verdict = on needs optimizer.name = sgd (AdamW's step count lives on the host)");
  require(!(c.log.sync_check && c.log.phase_timing),
          "log.sync_check and log.phase_timing exclude each other (phase timing synchronises after every phase)");
  require(c.checkpoint.every >= 0, "checkpoint.every must not be negative");
  require(c.eval.pairs == 0 || (c.eval.pairs >= 20 && c.eval.pairs % 2 == 0),
          "eval.pairs must be 0 (no evaluation) or even and at least 20");
  require(c.eval.identities >= 2, "eval.identities must be at least 2");
  require(c.dist.sample_rate > 0 && c.dist.sample_rate <= 1, "dist.sample_rate must be in (0, 1]");
  require(c.dist.backend == "auto" || c.dist.backend == "gloo" || c.dist.backend == "nccl",
          "dist.backend must be auto, gloo or nccl, not '" + c.dist.backend + "'");
  require(c.dist.timeout_s > 0, "dist.timeout_s must be positive");
  require(c.dist.bucket_mb > 0, "dist.bucket_mb must be positive");
  require(c.train.max_nonfinite_steps > 0, "train.max_nonfinite_steps must be positive");
}

}  // namespace

int64_t TrainConfig::total_steps(int world_size) const {
  if (train.steps > 0) return train.steps;
  // arcface_torch: total_step = num_image // total_batch_size * num_epoch, with total_batch_size =
  // batch_size * world_size (the loader drops each epoch's last partial batch, so an epoch is
  // floor(N / global batch) steps).
  if (train.epochs > 0 && data.num_images > 0) {
    // Saturating: validate() then rejects absurd counts by name instead of an overflowing cast.
    int64_t images_per_step = 0;
    if (__builtin_mul_overflow(train.batch_size, train.grad_accumulation, &images_per_step) ||
        __builtin_mul_overflow(images_per_step, int64_t{std::max(world_size, 1)}, &images_per_step) ||
        images_per_step <= 0)
      return 0;
    const double steps = static_cast<double>(data.num_images / images_per_step) * train.epochs;
    return steps >= 9.0e18 ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(steps);
  }
  return 0;
}

TrainConfig parse_config(const std::string& toml_text, const std::vector<std::string>& overrides,
                         const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << source << ":" << e.source().begin.line << ": " << e.description();
    throw ConfigError(msg.str());
  }
  for (const auto& o : overrides) apply_override(root, o);

  TrainConfig c;
  Reader r(root, source);
  r.get("model", "arch", c.model.arch);
  r.get("model", "embedding_size", c.model.embedding_size);
  r.get("model", "dropout", c.model.dropout);

  // The margin: a preset by name, then any field given explicitly wins over the preset.
  r.get("head", "margin", c.margin_preset);
  c.margin = nn::margin_preset(c.margin_preset);
  r.get("head", "scale", c.margin.scale);
  r.get("head", "m1", c.margin.m1);
  r.get("head", "m2", c.margin.m2);
  r.get("head", "m3", c.margin.m3);
  r.get("head", "m_min", c.margin.m_min);
  r.get("head", "m_max", c.margin.m_max);
  std::string mode = c.margin.dynamic_mode == nn::DynamicMarginMode::angular ? "angular" : "additive";
  r.get("head", "dynamic_mode", mode);
  c.margin.dynamic_mode = parse_dynamic_mode(mode, source);
  r.get("head", "adaface_m", c.margin.adaface_m);
  r.get("head", "adaface_h", c.margin.adaface_h);
  r.get("head", "adaface_t_alpha", c.margin.adaface_t_alpha);

  r.get("data", "dataset", c.data.dataset);
  r.get("data", "path", c.data.path);
  r.get("data", "num_identities", c.data.num_identities);
  r.get("data", "samples_per_identity", c.data.samples_per_identity);
  r.get("data", "synth_uint8", c.data.synth_uint8);
  r.get("data", "num_images", c.data.num_images);
  r.get("data", "seed", c.data.seed);
  r.get("data", "loader_threads", c.data.loader_threads);
  r.get("data", "prefetch_batches", c.data.prefetch_batches);
  r.get("data", "skip_bad", c.data.skip_bad);
  r.get("data", "make_ahead", c.data.make_ahead);
  r.get("augment", "preset", c.augment.preset);
  for (const auto& key : data::augment_option_keys()) r.get_text("augment", key, c.augment.options);

  r.get("optimizer", "name", c.optimizer.name);
  r.get("optimizer", "lr", c.optimizer.lr);
  r.get("optimizer", "momentum", c.optimizer.momentum);
  r.get("optimizer", "weight_decay", c.optimizer.weight_decay);
  r.get("optimizer", "beta1", c.optimizer.beta1);
  r.get("optimizer", "beta2", c.optimizer.beta2);
  r.get("optimizer", "eps", c.optimizer.eps);

  r.get("schedule", "name", c.schedule.name);
  r.get("schedule", "warmup_steps", c.schedule.warmup_steps);
  r.get("schedule", "power", c.schedule.power);
  r.get("schedule", "min_lr", c.schedule.min_lr);
  r.get("schedule", "restart_period", c.schedule.restart_period);
  r.get("schedule", "restart_mult", c.schedule.restart_mult);

  r.get("train", "batch_size", c.train.batch_size);
  r.get("train", "steps", c.train.steps);
  r.get("train", "epochs", c.train.epochs);
  r.get("train", "grad_accumulation", c.train.grad_accumulation);
  r.get("train", "clip_grad_norm", c.train.clip_grad_norm);
  r.get("train", "precision", c.train.precision);
  r.get("train", "device", c.train.device);
  r.get("train", "threads", c.train.threads);
  r.get("train", "seed", c.train.seed);
  r.get("train", "max_nonfinite_steps", c.train.max_nonfinite_steps);
  r.get("train", "label_smoothing", c.train.label_smoothing);
  r.get("train", "channels_last", c.train.channels_last);
  r.get("train", "cuda_graph", c.train.cuda_graph);
  r.get("train", "deferred_verdict", c.train.deferred_verdict);

  r.get("dist", "sample_rate", c.dist.sample_rate);
  r.get("dist", "backend", c.dist.backend);
  r.get("dist", "timeout_s", c.dist.timeout_s);
  r.get("dist", "bucket_mb", c.dist.bucket_mb);
  r.get("dist", "fp16_compress", c.dist.fp16_compress);

  r.get("checkpoint", "dir", c.checkpoint.dir);
  r.get("checkpoint", "every", c.checkpoint.every);

  r.get("eval", "every", c.eval.every);
  r.get("eval", "pairs", c.eval.pairs);
  r.get("eval", "identities", c.eval.identities);
  r.get("eval", "seed", c.eval.seed);
  r.get("eval", "batch_size", c.eval.batch_size);
  r.get("eval", "sets", c.eval.sets);
  r.get("eval", "set_root", c.eval.set_root);

  r.get("log", "every", c.log.every);
  r.get("log", "metrics", c.log.metrics);
  r.get("log", "phase_timing", c.log.phase_timing);
  r.get("log", "sync_check", c.log.sync_check);
  r.get("log", "profile", c.log.profile);
  r.get("log", "profile_steps", c.log.profile_steps);

  r.check_no_unknown_keys();
  validate(c, source);
  return c;
}

TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return parse_config("", overrides, "<defaults>");
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open config file");
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), overrides, path);
}

std::string to_toml(const TrainConfig& c) {
  // Doubles are written with full precision so that a checkpoint's config reads back exactly.
  toml::table t{
      {"model", toml::table{{"arch", c.model.arch},
                            {"embedding_size", c.model.embedding_size},
                            {"dropout", c.model.dropout}}},
      {"head", toml::table{{"margin", c.margin_preset},
                           {"scale", c.margin.scale},
                           {"m1", c.margin.m1},
                           {"m2", c.margin.m2},
                           {"m3", c.margin.m3},
                           {"m_min", c.margin.m_min},
                           {"m_max", c.margin.m_max},
                           {"dynamic_mode", c.margin.dynamic_mode == nn::DynamicMarginMode::angular
                                                ? "angular"
                                                : "additive"},
                           {"adaface_m", c.margin.adaface_m},
                           {"adaface_h", c.margin.adaface_h},
                           {"adaface_t_alpha", c.margin.adaface_t_alpha}}},
      {"data", toml::table{{"dataset", c.data.dataset},
                           {"path", c.data.path},
                           {"num_identities", c.data.num_identities},
                           {"samples_per_identity", c.data.samples_per_identity},
                           {"synth_uint8", c.data.synth_uint8},
                           {"num_images", c.data.num_images},
                           {"seed", static_cast<int64_t>(c.data.seed)},
                           {"loader_threads", c.data.loader_threads},
                           {"prefetch_batches", c.data.prefetch_batches},
                           {"skip_bad", c.data.skip_bad},
                           {"make_ahead", c.data.make_ahead}}},
      {"augment", augment_table(c.augment)},
      {"optimizer", toml::table{{"name", c.optimizer.name},
                                {"lr", c.optimizer.lr},
                                {"momentum", c.optimizer.momentum},
                                {"weight_decay", c.optimizer.weight_decay},
                                {"beta1", c.optimizer.beta1},
                                {"beta2", c.optimizer.beta2},
                                {"eps", c.optimizer.eps}}},
      {"schedule", toml::table{{"name", c.schedule.name},
                               {"warmup_steps", c.schedule.warmup_steps},
                               {"power", c.schedule.power},
                               {"min_lr", c.schedule.min_lr},
                               {"restart_period", c.schedule.restart_period},
                               {"restart_mult", c.schedule.restart_mult}}},
      {"train", toml::table{{"batch_size", c.train.batch_size},
                            {"steps", c.train.steps},
                            {"epochs", c.train.epochs},
                            {"grad_accumulation", c.train.grad_accumulation},
                            {"clip_grad_norm", c.train.clip_grad_norm},
                            {"precision", c.train.precision},
                            {"device", c.train.device},
                            {"threads", c.train.threads},
                            {"seed", static_cast<int64_t>(c.train.seed)},
                            {"max_nonfinite_steps", c.train.max_nonfinite_steps},
                            {"label_smoothing", c.train.label_smoothing},
                            {"channels_last", c.train.channels_last},
                            {"cuda_graph", c.train.cuda_graph},
                            {"deferred_verdict", c.train.deferred_verdict}}},
      {"dist", toml::table{{"sample_rate", c.dist.sample_rate},
                           {"backend", c.dist.backend},
                           {"timeout_s", c.dist.timeout_s},
                           {"bucket_mb", c.dist.bucket_mb},
                           {"fp16_compress", c.dist.fp16_compress}}},
      {"checkpoint", toml::table{{"dir", c.checkpoint.dir}, {"every", c.checkpoint.every}}},
      {"eval", toml::table{{"every", c.eval.every},
                           {"pairs", c.eval.pairs},
                           {"identities", c.eval.identities},
                           {"seed", static_cast<int64_t>(c.eval.seed)},
                           {"batch_size", c.eval.batch_size},
                           {"sets", string_array(c.eval.sets)},
                           {"set_root", c.eval.set_root}}},
      {"log", toml::table{{"every", c.log.every}, {"metrics", c.log.metrics}, {"phase_timing", c.log.phase_timing}, {"sync_check", c.log.sync_check},
                          {"profile", c.log.profile}, {"profile_steps", c.log.profile_steps}}},
  };
  std::ostringstream out;
  out << toml::toml_formatter(t, toml::format_flags::none);
  return out.str();
}

data::AugmentOptions resolved_augment(const TrainConfig& c) {
  std::string preset = c.augment.preset;
  if (preset == "auto") preset = c.data.dataset == "rec" || c.data.dataset == "folder" ? "flip" : "none";
  data::AugmentOptions options = data::augment_preset(preset);
  for (const auto& [key, value] : c.augment.options) data::set_augment_option(options, key, value);
  return options;
}

}  // namespace arcforge::train
