# Warnings are errors-in-waiting: every target of ours builds clean with -Wall -Wextra.
# -ffp-contract=off: the numerics contract forbids fusing a*b+c into an FMA on the host, so the CPU
# reference rounds each operation exactly as the CUDA kernels (which use __fmul_rn/__fadd_rn) do.
function(qat_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -ffp-contract=off>)
endfunction()
