#pragma once
// bench_perf's cases for the number formats and for data-parallel runs (bench/perf_cases.cpp).
#include <memory>

#include <nlohmann/json.hpp>

#include "cprfl/dist/communicator.h"
#include "perf_setup.h"

namespace cprfl::bench {

using json = nlohmann::json;

// The limits in this run: mm 2048³ and a 16×256×56×56 3×3 channels-last convolution, float32 and bf16.
json case_limits(int reps);
// One inference forward per top-level operator, float32 against bf16, with its dtype conversions.
json case_profile(const Setup& setup);
// This process as one rank of a data-parallel case (bench_perf --nproc N), or none.
std::unique_ptr<Communicator> join_if_launched();
// The all-reduce of the configuration's gradients alone between the launched processes.
json case_allreduce(const Setup& setup, int runs);

}  // namespace cprfl::bench
