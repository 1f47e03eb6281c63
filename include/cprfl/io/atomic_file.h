#pragma once
// Atomic output: write to a temporary file in the destination's folder, flush it to disk,
// then rename it over the destination. A reader sees the old file or the new one, never a
// half-written one; a failed write (full disk, no permission) leaves the old file intact.
#include <string>
#include <string_view>

namespace cprfl {

// `fault_point_name`: a testing hook (common/fault_point.h), reached when half of `bytes` are
// in the temporary file, before fsync and rename; null (the default) for none.
void write_file_atomic(const std::string& path, std::string_view bytes, const char* fault_point_name = nullptr);

// Removes the temporary files that writes of `path` killed midway (SIGKILL, power loss) left
// in its folder. Only for a caller that is the sole writer of `path`, e.g. a training run.
void remove_stale_temporaries(const std::string& path);

// Checks, before long work, that `path` can be written later: its folder exists and is
// writable, and it is not itself a folder. Errors name the path and say what is wrong.
void check_output_path(const std::string& path);

// Creates a directory and its parents; an error names the path if that fails.
void make_directories(const std::string& path);

}  // namespace cprfl
