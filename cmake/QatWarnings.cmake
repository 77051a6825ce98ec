# Warnings are errors-in-waiting: every target of ours builds clean with -Wall -Wextra. -Werror is
# not set here, per target: whether a warning stops the build is the builder's choice, made once for
# every target (a newer compiler may warn inside libtorch's headers). The numerics flags are
# separate, in cmake/QatNumerics.cmake.
function(qat_set_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
endfunction()
