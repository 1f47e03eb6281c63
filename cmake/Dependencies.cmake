# Finds every dependency and bundles them into one interface target, cprfl_deps.
find_package(Torch REQUIRED)          # Debian libtorch-dev, or any LibTorch >= 1.13 via CMAKE_PREFIX_PATH
find_package(Threads REQUIRED)
find_package(CLI11 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(ZLIB REQUIRED)
find_package(JPEG REQUIRED)          # decoded directly: strict about truncated/corrupt files
find_package(PkgConfig REQUIRED)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)  # Unicode categories and case mapping for the CLIP tokenizer

# Debian ships OpenCV's CMake config only with the heavy libopencv-dev meta package, so the
# three modules we use are found directly.
find_package(OpenCV QUIET COMPONENTS core imgproc imgcodecs)
if(OpenCV_FOUND)
  set(CPRFL_OPENCV_INCLUDE ${OpenCV_INCLUDE_DIRS})
  set(CPRFL_OPENCV_LIBS opencv_core opencv_imgproc opencv_imgcodecs)
else()
  find_path(CPRFL_OPENCV_INCLUDE opencv2/core.hpp PATH_SUFFIXES opencv4 REQUIRED)
  find_library(CPRFL_OPENCV_CORE opencv_core REQUIRED)
  find_library(CPRFL_OPENCV_IMGPROC opencv_imgproc REQUIRED)
  find_library(CPRFL_OPENCV_IMGCODECS opencv_imgcodecs REQUIRED)
  set(CPRFL_OPENCV_LIBS ${CPRFL_OPENCV_IMGCODECS} ${CPRFL_OPENCV_IMGPROC} ${CPRFL_OPENCV_CORE})
endif()

# (Also read by an installed cprfl's package config: the guard makes a second read harmless.)
if(NOT TARGET cprfl_deps)
  add_library(cprfl_deps INTERFACE)
  target_include_directories(cprfl_deps SYSTEM INTERFACE ${CPRFL_OPENCV_INCLUDE} ${TORCH_INCLUDE_DIRS})
  target_link_libraries(cprfl_deps INTERFACE
    ${TORCH_LIBRARIES} ${CPRFL_OPENCV_LIBS} CLI11::CLI11 yaml-cpp nlohmann_json::nlohmann_json
    ZLIB::ZLIB JPEG::JPEG PkgConfig::UTF8PROC Threads::Threads)
  if(TORCH_CXX_FLAGS)
    separate_arguments(_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
    target_compile_options(cprfl_deps INTERFACE ${_torch_flags})
  endif()
  # LibTorch from the PyPI wheel finds CUDA's libraries (NCCL, cuDNN, cuBLAS, ...) in the
  # sibling site-packages/nvidia/*/lib folders through its own RPATH at run time. The linker
  # must be pointed at the same folders, or it resolves libnccl.so.2 to the CUDA toolkit's
  # older copy and stops on symbols that copy lacks.
  file(GLOB _wheel_cuda_lib_dirs LIST_DIRECTORIES true "${TORCH_INSTALL_PREFIX}/../nvidia/*/lib")
  foreach(_dir IN LISTS _wheel_cuda_lib_dirs)
    target_link_options(cprfl_deps INTERFACE "LINKER:-rpath-link,${_dir}")
  endforeach()
endif()
