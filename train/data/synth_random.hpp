#pragma once
// Counter-based randomness for `synth`. Every draw is a pure function of (key, counter), and a key
// is a pure function of (dataset seed, purpose, identity, sample): an identity's parameters and a
// sample's nuisance never depend on batch composition, order or device.
#include <cmath>
#include <cstdint>
#include <numbers>

#include "arcforge/common/counter_rng.hpp"

namespace arcforge::data::synth {

// What a stream of draws is for; part of the key so the streams never overlap.
enum class Purpose : uint64_t { identity = 1, nuisance = 2, pairs = 3, noise_bank = 4 };

// Key of one stream (hash_keys is order-sensitive: (a, b) and (b, a) are different streams).
inline uint64_t stream_key(uint64_t seed, Purpose purpose, uint64_t a = 0, uint64_t b = 0) {
  return hash_keys({seed, static_cast<uint64_t>(purpose), a, b});
}

// Draw n of a stream is mix64(key ^ mix64(n)); the object only remembers how many it has drawn.
class CounterRng {
 public:
  explicit CounterRng(uint64_t key) : key_(key) {}

  uint64_t next_u64() { return mix64(key_ ^ mix64(counter_++)); }
  // [0, 1) with 53 random bits.
  double uniform() { return unit_double(next_u64()); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool bernoulli(double p) { return uniform() < p; }
  // 0 .. n-1 (n > 0); the modulo bias is below 2^-40 for the small n used here.
  int64_t below(int64_t n) { return static_cast<int64_t>(next_u64() % static_cast<uint64_t>(n)); }
  // Standard normal by Box-Muller (one of the pair; simple and stateless).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  // Normal clipped to +-limit standard deviations, so rare draws cannot produce absurd faces.
  double clipped_normal(double limit) {
    const double z = normal();
    return z < -limit ? -limit : (z > limit ? limit : z);
  }

 private:
  uint64_t key_;
  uint64_t counter_ = 0;
};

}  // namespace arcforge::data::synth
