# Precompiled headers. libtorch's headers precompiled with debug info take ~600 MB per copy, and a
# copy per target filled a CI disk, so every library reuses one (qat_pch, below) and every test
# binary another (qat_test_pch, tests/CMakeLists.txt). The targets that own them define no macros
# of their own: GCC uses a PCH only where every -D it was built with is defined the same way.
add_library(qat_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/pch.cpp)
target_link_libraries(qat_pch PRIVATE qat::torch)
target_precompile_headers(qat_pch PRIVATE <torch/nn/module.h> <ATen/ATen.h>)
qat_set_warnings(qat_pch)
qat_set_numerics(qat_pch)

# qat_use_pch(target): compile target's C++ sources with the shared precompiled header.
function(qat_use_pch target)
  target_precompile_headers(${target} REUSE_FROM qat_pch)
endfunction()
