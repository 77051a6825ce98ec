// `--nproc N`: runs N local ranks of this program, like torchrun. The launcher itself serves the
// ranks' rendezvous store (a c10d TCPStore on a port the kernel picks and the launcher holds from
// then on, so two launches at once cannot race for a port; the ranks reach it at 127.0.0.1, but
// libtorch's server listens on every interface, as rank 0's did before). Each child
// re-executes the same command line with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1,
// MASTER_PORT and QAT_LAUNCHER_STORE=1 in its environment (so the code path is the one multi-node
// launches use, except that rank 0 does not serve the store). If a
// rank fails, the others get SIGTERM after a grace period (SIGKILL after another), and the
// launcher reports which rank failed and how. SIGINT/SIGTERM to the launcher are forwarded to the
// ranks, and ranks die with the launcher even when it is SIGKILLed (PR_SET_PDEATHSIG).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace qat::train {

struct LaunchResult {
  int exit_code = 0;    // 0 when every rank succeeded, else the first failure's code
  std::string message;  // which ranks failed and how, in the order seen; empty on success
};

// `args[0]` must be the program (use "/proc/self/exe" for this one). `extra_env` is added to every
// rank's environment.
LaunchResult launch_local(int nproc, const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& extra_env = {},
                          double grace_seconds = 10.0);

}  // namespace qat::train
