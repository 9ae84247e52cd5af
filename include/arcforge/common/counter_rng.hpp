#pragma once
// Counter-based randomness: a draw is a pure function of its keys (seed, step, index, ...), so
// results never depend on batch composition, thread scheduling or where a run was resumed.
#include <cstdint>
#include <initializer_list>

namespace arcforge {

// splitmix64's finaliser: a bijective 64-bit mix with good avalanche.
constexpr uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Hashes an ordered list of keys into one 64-bit value.
constexpr uint64_t hash_keys(std::initializer_list<uint64_t> keys) {
  uint64_t h = 0x6A09E667F3BCC909ull;
  for (uint64_t k : keys) h = mix64(h ^ mix64(k));
  return h;
}

// Uniform double in [0, 1) from a hash (53 random bits).
constexpr double unit_double(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

// Uniform integer in [0, n) (n > 0); the modulo bias is below 2^-40 for n < 2^24.
constexpr uint64_t uniform_index(uint64_t h, uint64_t n) { return h % n; }

}  // namespace arcforge
