# Warnings are errors-in-waiting: every target of ours builds clean with -Wall -Wextra. -Werror is
# not baked into the targets (a newer compiler's new warning must not break a user's build); a
# build that wants it passes it in CMAKE_CXX_FLAGS. The numerics flags are separate, in
# cmake/QatNumerics.cmake.
function(qat_set_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
endfunction()
