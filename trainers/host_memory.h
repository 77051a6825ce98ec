// How freed host (CPU) memory goes back to the system. glibc's malloc serves blocks above its
// mmap threshold (128 KiB to 32 MiB) with fresh mmap()s and returns them on free(); a training
// step allocates and frees the same activation and gradient buffers every step, so each one is
// faulted in and zeroed by the kernel again (12% of a SmolLM2-135M fp32 step on 2 cores, perf:
// clear_page_erms and the page-fault path). Keeping freed memory in malloc's heap for the next
// step's identical requests removes that work; the process's peak RSS stays bounded by what one
// step needs at once, plus fragmentation.
#pragma once

#include <string>

namespace qat::train {

enum class HostMemory {
  kKeep,    // freed blocks stay in malloc's heap for reuse (the default)
  kSystem,  // malloc as the C library set it up: large blocks are mmap()ed, returned on free
};

// Applies the policy to this process's malloc (glibc; elsewhere a no-op that returns false);
// kSystem changes nothing. Call when the step loop starts, after the model is built: loading
// frees large dense weights while small quantized pieces stay (a streamed QLoRA load), and with
// kKeep those holes cannot be given back, so an 8B load grew past 24 GB before it; blocks mmap()ed
// before the call are still returned on free. Returns whether the policy holds.
bool set_host_memory(HostMemory policy);

// The policy QAT_HOST_MEMORY names ("keep" or "system"; unset: keep). Throws c10::Error naming the
// two spellings on anything else.
HostMemory host_memory_from_env();

std::string to_string(HostMemory policy);

}  // namespace qat::train
