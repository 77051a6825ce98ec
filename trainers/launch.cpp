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
#include <optional>
#include <thread>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>

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

// The rendezvous store of the ranks: this function's caller serves it for as long as the ranks
// run; every rank connects to it, none serves it.
c10::intrusive_ptr<c10d::TCPStore> start_store() {
  c10d::TCPStoreOptions store_opts;
  store_opts.port = 0;  // the kernel picks a free port, and it stays bound
  store_opts.isServer = true;
  store_opts.waitWorkers = false;
  try {
    return c10::make_intrusive<c10d::TCPStore>("127.0.0.1", store_opts);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "cannot start the ranks' rendezvous store (a c10d TCPStore): ",
                std::string(e.what()).substr(0, 200));
  }
  return {};
}

// Rank `rank`'s environment: this process's, `extra_env`, the torchrun-style variables, and a
// share of the cores.
std::vector<std::string> rank_environment(int rank, int nproc, int port,
                                          const std::map<std::string, std::string>& extra_env) {
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
  return env_strings;
}

// Starts `args` with `env`; returns its pid, or -1 with errno set.
pid_t spawn(std::vector<std::string> args, std::vector<std::string> env) {
  std::vector<char*> envp, argv;
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  for (auto& s : args) argv.push_back(s.data());
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
  return pid;
}

// Waits for the ranks: forwards SIGINT/SIGTERM to them, records every failure, and once one
// rank fails gives the others `grace` seconds, then SIGTERM, then after another `grace` SIGKILL.
class RankWatcher {
 public:
  RankWatcher(std::vector<pid_t> pids, double grace)
      : pids_(std::move(pids)),
        done_(pids_.size(), false),
        remaining_(pids_.size()),
        grace_(grace) {}

  LaunchResult wait() {
    while (remaining_ > 0) {
      forward_signal();
      const bool progressed = reap();
      escalate();
      if (!progressed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return result_;
  }

 private:
  using Clock = std::chrono::steady_clock;

  void signal_running(int sig) {
    for (size_t r = 0; r < pids_.size(); ++r)
      if (!done_[r]) ::kill(pids_[r], sig);
  }

  void forward_signal() {
    if (g_forward_signal == 0) return;
    signal_running(g_forward_signal);
    g_forward_signal = 0;
  }

  // Collects the ranks that ended; true if any did.
  bool reap() {
    bool progressed = false;
    for (size_t r = 0; r < pids_.size(); ++r) {
      if (done_[r]) continue;
      int status = 0;
      if (::waitpid(pids_[r], &status, WNOHANG) != pids_[r]) continue;
      done_[r] = true;
      --remaining_;
      progressed = true;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (ok || terminated_) continue;
      // Every failure is reported (a rank that died and the ranks that then lost it).
      if (result_.exit_code == 0) {
        result_.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        failed_at_ = Clock::now();
      }
      result_.message += (result_.message.empty() ? "" : "; ") +
                         ("rank " + std::to_string(r) + " " + describe(status));
    }
    return progressed;
  }

  static double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }

  void escalate() {
    if (failed_at_ && !terminated_ && remaining_ > 0 && since(*failed_at_) > grace_) {
      signal_running(SIGTERM);
      terminated_ = true;
      terminated_at_ = Clock::now();
      result_.message += "; the other ranks were stopped";
    }
    // A rank that ignores SIGTERM (stuck in a collective) is killed after another grace period.
    if (terminated_ && !killed_ && remaining_ > 0 && since(*terminated_at_) > grace_) {
      signal_running(SIGKILL);
      killed_ = true;
    }
  }

  std::vector<pid_t> pids_;
  std::vector<bool> done_;
  size_t remaining_;
  double grace_;
  LaunchResult result_;
  std::optional<Clock::time_point> failed_at_, terminated_at_;
  bool terminated_ = false, killed_ = false;
};

}  // namespace

LaunchResult launch_local(int nproc, const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& extra_env,
                          double grace_seconds) {
  TORCH_CHECK(nproc >= 1, "--nproc must be >= 1, got ", nproc);
  TORCH_CHECK(!args.empty(), "launch_local: no program");
  // The store lives as long as this function.
  const c10::intrusive_ptr<c10d::TCPStore> store = start_store();
  const int port = store->getPort();
  struct sigaction sa {
  }, old_int{}, old_term{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  g_forward_signal = 0;
  std::vector<pid_t> pids;
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = spawn(args, rank_environment(rank, nproc, port, extra_env));
    if (pid < 0) {
      const int err = errno;
      for (pid_t p : pids) ::kill(p, SIGTERM);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      TORCH_CHECK(false, "cannot start rank ", rank, " (", args[0], "): ", std::strerror(err));
    }
    pids.push_back(pid);
  }
  LaunchResult result = RankWatcher(std::move(pids), grace_seconds).wait();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace qat::train
