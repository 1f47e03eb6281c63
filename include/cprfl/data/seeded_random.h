#pragma once
// Random draws with fixed, library-independent definitions, so augmentation is the same on
// every platform and standard library: a sample's draws depend only on (seed, epoch, index).
#include <cstdint>
#include <random>

namespace cprfl {

double uniform01(std::mt19937_64& rng);                          // [0, 1)
std::int64_t uniform_int(std::mt19937_64& rng, std::int64_t n);  // [0, n), n > 0
bool bernoulli(std::mt19937_64& rng, double p);

// A well-mixed seed for one sample's augmentation in one epoch.
std::uint64_t augmentation_seed(std::uint64_t seed, std::int64_t epoch, std::uint64_t index);

}  // namespace cprfl
