// SynthFaces: validates requests, builds one scene per (identity, sample) on the CPU and renders
// the batch on the requested device. See synth_params.cpp for the parameter ranges and the
// nuisance strengths, synth_scene.cpp for the drawing, synth_render.cpp for the tensor side.
#include "train/data/synth.hpp"

#include <ATen/Parallel.h>

#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "arcforge/common/error.hpp"
#include "train/data/synth_params.hpp"
#include "train/data/synth_random.hpp"
#include "train/data/synth_render.hpp"
#include "train/data/synth_scene.hpp"

namespace arcforge::data {
namespace {

// Held-out identities live far above any training id (num_identities is capped below this).
constexpr int64_t kHeldoutBase = int64_t{1} << 40;

// The noise bank for an image size on a device, generated once per process (it is the same on
// every device, so rendering does not depend on where it runs).
torch::Tensor noise_bank(int64_t image_size, torch::Device device) {
  static std::mutex mutex;
  static std::map<std::pair<std::string, int64_t>, torch::Tensor> banks;
  std::lock_guard<std::mutex> lock(mutex);
  auto& bank = banks[{device.str(), image_size}];
  if (!bank.defined()) {
    auto& cpu = banks[{torch::Device(torch::kCPU).str(), image_size}];
    if (!cpu.defined()) cpu = synth::make_noise_bank(image_size);
    bank = cpu.to(device);
  }
  return bank;
}

torch::Tensor ids_on_cpu(const torch::Tensor& t, const char* what) {
  if (!t.defined() || t.dim() != 1)
    throw InputError(std::string("synth render: ") + what + " must be a 1-D tensor");
  if (at::isFloatingType(t.scalar_type()) || t.scalar_type() == torch::kBool)
    throw InputError(std::string("synth render: ") + what + " must be an integer tensor");
  return t.to(torch::kCPU, torch::kInt64).contiguous();
}

}  // namespace

SynthFaces::SynthFaces(SynthOptions options) : options_(options) {
  if (options_.num_identities < 1 || options_.num_identities >= kHeldoutBase)
    throw ConfigError("synth: num_identities must be in [1, 2^40), got " +
                      std::to_string(options_.num_identities));
  if (options_.image_size < 16 || options_.image_size > 1024)
    throw ConfigError("synth: image_size must be in [16, 1024], got " +
                      std::to_string(options_.image_size));
}

torch::Tensor SynthFaces::render(const torch::Tensor& identities, const torch::Tensor& samples,
                                 torch::Device device) const {
  const auto ids = ids_on_cpu(identities, "identities");
  const auto sample_ids = ids_on_cpu(samples, "samples");
  if (ids.numel() != sample_ids.numel())
    throw InputError("synth render: " + std::to_string(ids.numel()) + " identities but " +
                     std::to_string(sample_ids.numel()) + " samples");
  const int64_t n = ids.numel();
  const int64_t* id = ids.data_ptr<int64_t>();
  const int64_t* sample = sample_ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    if (id[i] < 0 || (id[i] >= options_.num_identities && id[i] < kHeldoutBase))
      throw InputError("synth render: identity " + std::to_string(id[i]) +
                       " is neither a training id (< " + std::to_string(options_.num_identities) +
                       ") nor a held-out id");

  // "cuda" means the current GPU: resolve it, so the noise bank is cached per physical device.
  const torch::Device target = torch::empty({0}, torch::TensorOptions().device(device)).device();
  std::vector<synth::Scene> scenes(n);
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      scenes[i] = synth::build_scene(synth::sample_identity(options_.seed, id[i]),
                                     synth::sample_nuisance(options_.seed, id[i], sample[i]),
                                     options_.image_size);
  });
  return synth::render_scenes(scenes, options_.image_size, noise_bank(options_.image_size, target),
                              target);
}

int64_t SynthFaces::heldout_identity(int64_t index) {
  if (index < 0 || index >= kHeldoutBase)
    throw InputError("synth: held-out identity index must be in [0, 2^40), got " +
                     std::to_string(index));
  return kHeldoutBase + index;
}

std::vector<SynthPair> make_heldout_pairs(int64_t num_pairs, int64_t num_identities, uint64_t seed) {
  if (num_pairs < 0)
    throw ConfigError("synth pairs: num_pairs must be >= 0, got " + std::to_string(num_pairs));
  if (num_identities < 2)
    throw ConfigError("synth pairs: need at least 2 held-out identities, got " +
                      std::to_string(num_identities));
  synth::CounterRng rng(synth::stream_key(seed, synth::Purpose::pairs));
  auto sample_id = [&] { return static_cast<int64_t>(rng.next_u64() >> 33); };
  std::vector<SynthPair> pairs;
  pairs.reserve(num_pairs);
  for (int64_t p = 0; p < num_pairs; ++p) {
    SynthPair pair{};
    pair.same = p % 2 == 0;  // alternating: balanced, and any prefix stays balanced
    const int64_t a = rng.below(num_identities);
    int64_t b = a;
    if (!pair.same) {
      b = rng.below(num_identities - 1);
      if (b >= a) ++b;
    }
    pair.identity_a = SynthFaces::heldout_identity(a);
    pair.identity_b = SynthFaces::heldout_identity(b);
    pair.sample_a = sample_id();
    do pair.sample_b = sample_id();
    while (pair.same && pair.sample_b == pair.sample_a);
    pairs.push_back(pair);
  }
  return pairs;
}

}  // namespace arcforge::data
