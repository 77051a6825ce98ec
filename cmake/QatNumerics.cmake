# The numerics contract (docs/numerics.md): fake quant equals dequantize(quantize(x)) bit for bit,
# and the CPU reference (ops/cpu) equals the CUDA kernels (ops/cuda) bit for bit. Both hold only if
# every host float operation rounds on its own, so QAT_NUMERICS_FLAGS forbids contracting a*b+c
# into an FMA (one rounding instead of two); the CUDA side matches it with __fmul_rn/__fadd_rn and
# -fmad=false (ops/CMakeLists.txt). It is a correctness setting, not a warning or an optimization:
# every target of ours compiles with it, and the per-file -O3 -fno-trapping-math of ops/cpu
# (ops/CMakeLists.txt) comes on top of it without changing any value.
set(QAT_NUMERICS_FLAGS -ffp-contract=off)

# qat_set_numerics(target): compile target's C++ sources under the numerics contract.
function(qat_set_numerics target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${QAT_NUMERICS_FLAGS}>)
endfunction()
