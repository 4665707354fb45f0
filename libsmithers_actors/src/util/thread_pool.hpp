// A small elastic pool for blocking work (compute callables, subprocesses)
// so CAF's cooperative scheduler threads never block. Our own: no thread
// pool library is packaged here (Boost is not a dependency).
//
// Every queued job gets a thread without waiting behind a blocked one, yet
// a stream of short jobs is not spread over many threads: a submit wakes
// one parked thread (the one that parked last: its cache is warm) unless
// one is already on its way, and a thread that takes a job while others
// still queue wakes the next (a cascade), so as many threads run as the
// queue needs, and a sequence of jobs (one at a time) stays on one thread.
// A thread out of work parks at once: spinning first took the CPU from the
// engine's own threads on a 2-core machine and halved a sequence's speed
// (docs/benchmarks.md). Threads are created while none is idle, up to
// max_threads, and kept.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace smithers::util {

class thread_pool {
public:
  /// Threads are created on demand, up to max_threads; idle ones are reused.
  explicit thread_pool(std::size_t max_threads);
  /// Runs every queued job, then joins the threads.
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  void submit(std::function<void()> job);
  std::size_t threads() const;

private:
  struct worker {
    std::thread thread;
    std::condition_variable cv;
    bool signaled = false;
  };
  void work(worker* me);
  void wake_one(); // with mtx_ held

  const std::size_t max_threads_;
  mutable std::mutex mtx_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::vector<worker*> parked_; // a stack: the last parked is woken first
  std::size_t waking_ = 0;      // woken or created, not yet looking for work
  bool stopping_ = false;
};

} // namespace smithers::util
