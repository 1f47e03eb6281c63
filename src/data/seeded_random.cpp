#include "cprfl/data/seeded_random.h"

namespace cprfl {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

std::int64_t uniform_int(std::mt19937_64& rng, std::int64_t n) {
  // Lemire's multiply-shift; the bias (n / 2^64) is far below anything measurable here.
  return static_cast<std::int64_t>((static_cast<unsigned __int128>(rng()) * static_cast<std::uint64_t>(n)) >> 64);
}

bool bernoulli(std::mt19937_64& rng, double p) { return uniform01(rng) < p; }

std::uint64_t augmentation_seed(std::uint64_t seed, std::int64_t epoch, std::uint64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ static_cast<std::uint64_t>(epoch)) ^ index);
}

}  // namespace cprfl
