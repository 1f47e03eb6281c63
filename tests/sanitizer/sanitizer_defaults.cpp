// Default sanitizer settings, compiled into every program of a CPRFL_SANITIZE build (see
// cmake/Sanitizers.cmake), so that ctest, the CLI and the fuzz targets behave alike without
// environment variables. ASAN_OPTIONS / UBSAN_OPTIONS / LSAN_OPTIONS still override them.
//
// Suppressions cover only code that is not ours and not instrumented; nothing in libcprfl,
// the tool or the tests is suppressed.

extern "C" const char* __asan_default_options() {
  return "detect_leaks=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=0";
}

// halt_on_error: every UBSan report fails the program (and so the test or fuzz target).
extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1:halt_on_error=1"; }

// leak:libtorch_cpu.so — memory malloc'ed directly by LibTorch's own code. LibTorch 1.13's
// zip reader (PyTorchStreamReader) does not free its miniz state when it refuses a malformed
// archive (its constructor throws before the destructor can run); about 500 bytes a file.
// Tensor storage is allocated through libc10, so tensors leaked by our code still show.
extern "C" const char* __lsan_default_suppressions() { return "leak:libtorch_cpu.so\n"; }
