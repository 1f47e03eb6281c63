#pragma once
// Testing hook: deterministic kill points, for tests that kill a process at an exact place
// (tests/kill_resume.sh). With CPRFL_FAULT_AT=<point>:<n> in the environment, the n-th time
// (n >= 1) the process reaches fault_point("<point>") it prints one line to stderr,
//   cprfl: CPRFL_FAULT_AT=<point>:<n>: killing this process at fault point <point>
// and sends itself SIGKILL — a real `kill -9` at exactly that place: nothing is flushed or
// unwound, no handler runs, the exit status seen by a shell is 137.
// CPRFL_FAULT_AT=<point>:<n>:INT (or :TERM) sends SIGINT (SIGTERM) instead and carries on: a
// Ctrl-C at exactly that place (common/stop_signal.h). In a data-parallel run,
// CPRFL_FAULT_RANK=<r> limits the fault to the process whose RANK is r.
//
// The points (the only names a caller may use):
//   step              training: after the forward and backward pass, before the optimizer step
//   eval              training: in an evaluation, after the test predictions are scored and
//                     before the EMA and validation predictions
//   checkpoint_write  training: half of the checkpoint is in its temporary file, before fsync
//                     and the rename over last.cprfl (write_file_atomic's fault point)
//
// Without the variable a call costs one check of an initialized static. The variable is
// read once, at the first call; a malformed value or an unknown point name ends the process
// at that first call with a message and exit status 2 (a typo must not pass as "never hit").
namespace cprfl {

void fault_point(const char* name);

}  // namespace cprfl
