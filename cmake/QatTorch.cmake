# Finds libtorch from the pip wheel (scripts/bootstrap installs it) and decides about CUDA.
#
# The CUDA wheel's TorchConfig insists on a CUDA toolkit at configure time. With QAT_CUDA=OFF, or
# AUTO without nvcc, we import the CPU libraries of the wheel by hand instead (LIBTORCH_NOTES.md),
# so a machine without any toolkit still builds.

# The venv python of scripts/bootstrap (QAT_VENV, default ~/.cache/qat/venv): it locates libtorch
# and runs the Python reference packages in the interop tests.
find_program(QAT_PYTHON NAMES python PATHS $ENV{QAT_VENV}/bin $ENV{HOME}/.cache/qat/venv/bin NO_DEFAULT_PATH)
if(NOT QAT_PYTHON)
  find_program(QAT_PYTHON NAMES python3 python)
endif()
if(NOT DEFINED QAT_TORCH_PREFIX)
  execute_process(COMMAND ${QAT_PYTHON} -c "import torch; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "Cannot import torch with ${QAT_PYTHON}. Run scripts/bootstrap first, "
                        "or pass -DQAT_TORCH_PREFIX=<torch>/share/cmake.")
  endif()
  set(QAT_TORCH_PREFIX ${_prefix} CACHE PATH "torch.utils.cmake_prefix_path")
endif()
get_filename_component(QAT_TORCH_ROOT "${QAT_TORCH_PREFIX}/../.." ABSOLUTE)

set(QAT_WITH_CUDA OFF)
if(NOT QAT_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(QAT_WITH_CUDA ON)
  elseif(QAT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "QAT_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER).")
  endif()
endif()

add_library(qat_torch INTERFACE)
add_library(qat::torch ALIAS qat_torch)

if(QAT_WITH_CUDA)
  # Hopper and Ampere by default. Torch ignores CMAKE_CUDA_ARCHITECTURES; without a GPU its
  # fallback list has archs nvcc 13 rejects, so we always set the list ourselves.
  if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
    set(ENV{TORCH_CUDA_ARCH_LIST} "8.0;9.0a")
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_ARCHITECTURES OFF)  # torch ignores it and warns when it is set
  list(APPEND CMAKE_PREFIX_PATH ${QAT_TORCH_PREFIX})
  find_package(Torch REQUIRED)
  target_link_libraries(qat_torch INTERFACE ${TORCH_LIBRARIES})
  target_compile_definitions(qat_torch INTERFACE QAT_WITH_CUDA=1)
  # Compile-only checks (scripts/test on a machine without a GPU) stop at PTX: ptxas's machine code
  # is a third of each .cu file's compile time (quantize_cuda.cu: 47 s with SASS, 31 s PTX only)
  # and nothing would run it. The front end and NVVM still check every kernel.
  if(QAT_CUDA_PTX_ONLY)
    string(REGEX REPLACE "code=sm_([0-9]+a?)" "code=compute_\\1" CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS}")
  endif()
  message(STATUS "qat: CUDA kernels ON (TORCH_CUDA_ARCH_LIST=$ENV{TORCH_CUDA_ARCH_LIST})")
else()
  set(_lib ${QAT_TORCH_ROOT}/lib)
  target_include_directories(qat_torch SYSTEM INTERFACE
    ${QAT_TORCH_ROOT}/include ${QAT_TORCH_ROOT}/include/torch/csrc/api/include)
  target_link_libraries(qat_torch INTERFACE ${_lib}/libtorch.so ${_lib}/libtorch_cpu.so ${_lib}/libc10.so)
  set(CMAKE_BUILD_RPATH ${_lib} PARENT_SCOPE)
  message(STATUS "qat: CUDA kernels OFF (CPU-only libtorch import)")
endif()
set(CMAKE_BUILD_RPATH ${CMAKE_BUILD_RPATH} ${QAT_TORCH_ROOT}/lib)
