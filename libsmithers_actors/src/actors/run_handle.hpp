// What a run_handle shares with the engine that drives its run: the result,
// set once when the run ends. No CAF.
#pragma once

#include <smithers/engine.hpp>

#include <condition_variable>
#include <mutex>
#include <string>

namespace smithers {

struct run_handle::state {
  std::string run_id;
  std::mutex mtx;
  std::condition_variable cv;
  bool done = false;
  run_result result;

  // Waits for the run's end; the lock is held for reading the result.
  std::unique_lock<std::mutex> ended() {
    std::unique_lock<std::mutex> lk(mtx);
    cv.wait(lk, [&] { return done; });
    return lk;
  }

  // Sets the result and wakes every waiter.
  void end(run_result r) {
    std::lock_guard<std::mutex> lk(mtx);
    result = std::move(r);
    done = true;
    cv.notify_all();
  }
};

namespace actors {

/// A handle for a run that ended before any supervisor was needed.
run_handle ended_handle(run_result r);

} // namespace actors

} // namespace smithers
