// Signal handling for commands that drive runs (run, resume, supervise).
#pragma once

#include "util/subprocess.hpp"

#include <smithers/engine.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <pthread.h>
#include <string>
#include <thread>

namespace smithers::cli {

/// SIGINT, SIGTERM, SIGHUP (a closed terminal or ssh session), SIGQUIT
/// (Ctrl-\\), SIGUSR1, SIGUSR2 or SIGALRM — every signal that would otherwise
/// kill the process and leave its commands running — while a run is driven:
/// the first one interrupts the run (attempts stopped and
/// recorded, the run left resumable), a second one SIGKILLs every child
/// process group (commands that ignore SIGTERM included) and exits at once.
/// Signals are blocked in every thread and taken by sigwait on one thread,
/// so no handler runs in an arbitrary thread.
class signal_guard {
public:
  signal_guard() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    for (int sig : {SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM})
      sigaddset(&set_, sig);
    // A closed stdout must not kill the process that drives runs: a write
    // fails instead (and the command exits 1 saying so).
    std::signal(SIGPIPE, SIG_IGN);
    // Before the engine starts its threads, so they inherit the mask.
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }

  void watch(engine& eng) {
    std::thread([this, &eng] {
      int sig = 0;
      while (sigwait(&set_, &sig) == 0) {
        if (received_.exchange(sig) != 0) {
          util::kill_all_process_groups();
          std::_Exit(128 + sig);
        }
        std::lock_guard<std::mutex> lk(mtx_);
        if (alive_) eng.interrupt(std::string{"interrupted by "} + signal_name(sig));
        cv_.notify_all();
      }
    }).detach();
  }

  /// Sleeps up to `d`; returns early (true) once a signal has arrived.
  bool sleep_for(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lk(mtx_);
    return cv_.wait_for(lk, d, [this] { return received_.load() != 0; });
  }

  /// Called before the engine goes away.
  void release() {
    std::lock_guard<std::mutex> lk(mtx_);
    alive_ = false;
  }

  int received() const { return received_.load(); }

  static const char* signal_name(int sig) {
    switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
    case SIGQUIT:
      return "SIGQUIT";
    case SIGUSR1:
      return "SIGUSR1";
    case SIGUSR2:
      return "SIGUSR2";
    case SIGALRM:
      return "SIGALRM";
    default:
      return "SIGTERM";
    }
  }

private:
  sigset_t set_;
  std::atomic<int> received_{0};
  std::mutex mtx_;
  std::condition_variable cv_;
  bool alive_ = true;
};

} // namespace smithers::cli
