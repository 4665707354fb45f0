// A small elastic pool for blocking work (compute callables, subprocesses)
// so CAF's cooperative scheduler threads never block. Our own: no thread
// pool library is packaged here (Boost is not a dependency).
//
// Two kinds of job. One that blocks by nature (a subprocess's whole life)
// gets a thread at once: submit() wakes a parked thread, or makes one,
// for every queued job beyond the threads already on their way. One that is
// usually short (a compute callable) joins the queue (submit_short()): it
// wakes a parked thread only when none is on its way, and the threads
// take such jobs one after another, so a burst of short jobs runs on one or
// two threads instead of waking one each (a wake-up is a futex call and a
// context switch; 16 of them per batch were most of a compute fan-out's
// time on 2 cores). A short job may block after all: a monitor thread looks
// at the queue every `patience` while jobs are queued beyond the threads on
// their way to them, and when its oldest job has waited that long it wakes
// (or makes) a thread for every queued job. One job at a time (a chain)
// never needs it. Parked threads are woken last-parked first (a warm
// cache); threads are made up to max_threads and kept.
#pragma once

#include <chrono>
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
  explicit thread_pool(std::size_t max_threads,
                       std::chrono::microseconds patience = std::chrono::milliseconds{1});
  /// Runs every queued job, then joins the threads.
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// A job that blocks (a subprocess): a thread for it at once.
  void submit(std::function<void()> job);
  /// A job that is usually short (a callable): queued behind others of its
  /// kind; another thread takes it if it waits `patience`.
  void submit_short(std::function<void()> job);
  /// Several such jobs at once: one lock, at most one thread woken. A
  /// caller with a burst should use this: a thread woken per job preempts
  /// its caller on a small machine, drains the one job and parks again
  /// before the next is queued.
  void submit_short(std::vector<std::function<void()>> jobs);
  std::size_t threads() const;
  /// Whether the monitor thread was ever started (tests).
  bool monitor_started() const;

private:
  using clock_type = std::chrono::steady_clock;
  struct worker {
    std::thread thread;
    std::condition_variable cv;
    bool signaled = false;
  };
  struct queued {
    std::function<void()> job;
    clock_type::time_point at;
  };
  void push(std::function<void()> job); // with mtx_ held
  void rouse_monitor();                 // with mtx_ held, after a submit's wake-ups
  void work(worker* me);
  void watch();
  // With mtx_ held: readies a parked thread (`woken`, to notify once the
  // lock is let go) or makes one; false: all are busy and no more may be made.
  bool wake_one(worker*& woken);

  const std::size_t max_threads_;
  const std::chrono::microseconds patience_;
  mutable std::mutex mtx_;
  std::deque<queued> jobs_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::vector<worker*> parked_; // a stack: the last parked is woken first
  std::size_t waking_ = 0;      // woken or made, not yet looking for work
  std::thread monitor_;
  std::condition_variable monitor_cv_;
  bool monitor_idle_ = false; // waits for work without a timeout
  bool stopping_ = false;
};

} // namespace smithers::util
