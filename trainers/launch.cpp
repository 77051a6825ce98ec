#include "trainers/launch.h"

#include <c10/util/Exception.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

extern char** environ;

namespace qat::train {
namespace {

volatile sig_atomic_t g_forward_signal = 0;
void on_signal(int sig) {
  g_forward_signal = sig;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "ended with status " + std::to_string(status);
}

}  // namespace

LaunchResult launch_local(int nproc, const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& extra_env,
                          double grace_seconds) {
  TORCH_CHECK(nproc >= 1, "--nproc must be >= 1, got ", nproc);
  TORCH_CHECK(!args.empty(), "launch_local: no program");
  // The store lives as long as this function: every rank connects to it, none serves it.
  c10d::TCPStoreOptions store_opts;
  store_opts.port = 0;  // the kernel picks a free port, and it stays bound
  store_opts.isServer = true;
  store_opts.waitWorkers = false;
  c10::intrusive_ptr<c10d::TCPStore> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_opts);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "cannot start the ranks' rendezvous store (a c10d TCPStore): ",
                std::string(e.what()).substr(0, 200));
  }
  const int port = store->getPort();
  std::vector<pid_t> pids;
  struct sigaction sa {
  }, old_int{}, old_term{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  g_forward_signal = 0;

  for (int rank = 0; rank < nproc; ++rank) {
    std::map<std::string, std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string kv = *e;
      const auto eq = kv.find('=');
      if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (const auto& [k, v] : extra_env) env[k] = v;
    // N ranks on one CPU machine share its cores: without this each would start a full-size
    // OpenMP pool and they would oversubscribe the machine.
    if (env.count("OMP_NUM_THREADS") == 0) {
      const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
      env["OMP_NUM_THREADS"] = std::to_string(std::max(1L, cores / nproc));
    }
    env["RANK"] = std::to_string(rank);
    env["LOCAL_RANK"] = std::to_string(rank);
    env["WORLD_SIZE"] = std::to_string(nproc);
    env["LOCAL_WORLD_SIZE"] = std::to_string(nproc);
    env["MASTER_ADDR"] = "127.0.0.1";
    env["MASTER_PORT"] = std::to_string(port);
    env["QAT_LAUNCHER_STORE"] = "1";
    std::vector<std::string> env_strings;
    for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp, argv;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> args_copy = args;
    for (auto& s : args_copy) argv.push_back(s.data());
    argv.push_back(nullptr);
    // fork + exec rather than posix_spawn: the child asks the kernel to SIGTERM it when the
    // launcher dies (even by SIGKILL), so ranks never outlive their launcher. Between fork and
    // exec the child only makes async-signal-safe calls.
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);  // the launcher died before prctl took effect
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    if (pid < 0) {
      const int err = errno;
      for (pid_t p : pids) ::kill(p, SIGTERM);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      TORCH_CHECK(false, "cannot start rank ", rank, " (", args[0], "): ", std::strerror(err));
    }
    pids.push_back(pid);
  }

  LaunchResult result;
  std::vector<bool> done(pids.size(), false);
  size_t remaining = pids.size();
  std::optional<std::chrono::steady_clock::time_point> failed_at, terminated_at;
  bool terminated = false, killed = false;
  while (remaining > 0) {
    if (g_forward_signal != 0) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (!done[r]) ::kill(pids[r], g_forward_signal);
      g_forward_signal = 0;
    }
    bool progressed = false;
    for (size_t r = 0; r < pids.size(); ++r) {
      if (done[r]) continue;
      int status = 0;
      const pid_t got = ::waitpid(pids[r], &status, WNOHANG);
      if (got != pids[r]) continue;
      done[r] = true;
      --remaining;
      progressed = true;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && !terminated) {
        // Every failure is reported (a rank that died and the ranks that then lost it).
        if (result.exit_code == 0) {
          result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
          failed_at = std::chrono::steady_clock::now();
        }
        result.message += (result.message.empty() ? "" : "; ") +
                          ("rank " + std::to_string(r) + " " + describe(status));
      }
    }
    if (failed_at && !terminated && remaining > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - *failed_at).count() >
            grace_seconds) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (!done[r]) ::kill(pids[r], SIGTERM);
      terminated = true;
      terminated_at = std::chrono::steady_clock::now();
      result.message += "; the other ranks were stopped";
    }
    // A rank that ignores SIGTERM (stuck in a collective) is killed after another grace period.
    if (terminated && !killed && remaining > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - *terminated_at).count() >
            grace_seconds) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (!done[r]) ::kill(pids[r], SIGKILL);
      killed = true;
    }
    if (!progressed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace qat::train
