# CPRFL_SANITIZE: every target of this project (library, tool, tests, benches) is built with
# AddressSanitizer + UndefinedBehaviorSanitizer. CPRFL_FUZZ adds libFuzzer's coverage
# instrumentation to the same build, so one clang build serves both the sanitized test suite
# and the fuzz targets (tests/fuzz). LibTorch and the other system libraries are not
# instrumented; the few reports they cause are suppressed in tests/sanitizer/ (documented there).
if(CPRFL_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "CPRFL_FUZZ needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  set(CPRFL_SANITIZE ON CACHE BOOL "" FORCE)
endif()

if(CPRFL_SANITIZE)
  set(_sanitizers -fsanitize=address,undefined)
  add_compile_options(${_sanitizers} -fno-omit-frame-pointer -g)
  add_link_options(${_sanitizers})
  if(CPRFL_FUZZ)
    add_compile_options(-fsanitize=fuzzer-no-link)
  endif()
endif()

# Test support that builds a torch::jit::Module (tests/support/tiny_clip.cpp): UBSan's vptr
# check there needs the typeinfo of c10::DynamicType, which LibTorch does not export, so the
# link fails. Call from each directory that compiles the file (source properties are per directory).
function(cprfl_exempt_from_vptr_check source)
  if(CPRFL_SANITIZE)
    set_source_files_properties(${source} PROPERTIES COMPILE_OPTIONS -fno-sanitize=vptr SKIP_PRECOMPILE_HEADERS ON)
  endif()
endfunction()
