#include "util/thread_pool.hpp"

#include <utility>

namespace smithers::util {

namespace {

// The monitor stops looking once no job has waited without a thread on its
// way for this many patiences in a row; the next submit that leaves one so
// wakes it.
constexpr int idle_rounds = 100;

} // namespace

thread_pool::thread_pool(std::size_t max_threads, std::chrono::microseconds patience)
    : max_threads_(max_threads ? max_threads : 1), patience_(patience) {}

thread_pool::~thread_pool() {
  {
    std::lock_guard<std::mutex> lk(mtx_);
    stopping_ = true;
    for (auto* w : parked_) {
      w->signaled = true;
      w->cv.notify_one();
    }
    parked_.clear();
  }
  monitor_cv_.notify_one();
  if (monitor_.joinable()) monitor_.join();
  for (auto& w : workers_)
    w->thread.join();
}

void thread_pool::push(std::function<void()> job) {
  jobs_.push_back({std::move(job), clock_type::now()});
}

// Only jobs that no thread is on its way to can wait for a blocked one, so
// only they need the monitor: a chain's one job at a time, which the thread
// woken for it takes, never starts it or wakes it (its round every
// `patience` was a context switch each, ~1,000 a second).
void thread_pool::rouse_monitor() {
  if (jobs_.size() <= waking_) return;
  if (!monitor_.joinable()) {
    monitor_ = std::thread([this] { watch(); });
  } else if (monitor_idle_) {
    monitor_idle_ = false;
    monitor_cv_.notify_one();
  }
}

// The woken thread is told after the lock is let go: told while it is
// held, it runs at once (on this core), blocks on the lock and wakes this
// thread again — two more context switches per wake-up.
void thread_pool::submit(std::function<void()> job) {
  worker* woken = nullptr;
  {
    std::lock_guard<std::mutex> lk(mtx_);
    push(std::move(job));
    // A thread for each queued job beyond those on their way.
    if (waking_ < jobs_.size()) wake_one(woken);
    rouse_monitor();
  }
  if (woken) woken->cv.notify_one();
}

void thread_pool::submit_short(std::function<void()> job) {
  std::vector<std::function<void()>> one;
  one.push_back(std::move(job));
  submit_short(std::move(one));
}

void thread_pool::submit_short(std::vector<std::function<void()>> jobs) {
  if (jobs.empty()) return;
  worker* woken = nullptr;
  {
    std::lock_guard<std::mutex> lk(mtx_);
    for (auto& job : jobs)
      push(std::move(job));
    if (waking_ == 0) wake_one(woken);
    rouse_monitor();
  }
  if (woken) woken->cv.notify_one();
}

bool thread_pool::wake_one(worker*& woken) {
  if (!parked_.empty()) {
    worker* w = parked_.back();
    parked_.pop_back();
    w->signaled = true;
    ++waking_;
    woken = w;
    return true;
  }
  if (workers_.size() < max_threads_) {
    workers_.push_back(std::make_unique<worker>());
    worker* w = workers_.back().get();
    ++waking_;
    w->thread = std::thread([this, w] { work(w); });
    return true;
  }
  return false; // every thread is busy: the first to finish takes it
}

std::size_t thread_pool::threads() const {
  std::lock_guard<std::mutex> lk(mtx_);
  return workers_.size();
}

bool thread_pool::monitor_started() const {
  std::lock_guard<std::mutex> lk(mtx_);
  return monitor_.joinable();
}

void thread_pool::work(worker* me) {
  std::unique_lock<std::mutex> lk(mtx_);
  --waking_; // made as one on its way
  for (;;) {
    if (!jobs_.empty()) {
      auto job = std::move(jobs_.front().job);
      jobs_.pop_front();
      lk.unlock();
      job();
      job = nullptr; // what it holds goes before the lock is taken again
      lk.lock();
      continue;
    }
    if (stopping_) return; // stopping and drained
    me->signaled = false;
    parked_.push_back(me);
    me->cv.wait(lk, [me] { return me->signaled; });
    if (!stopping_) --waking_; // woken by wake_one
  }
}

// Jobs that waited `patience` get threads: a short job that blocked holds
// its thread, and what queued behind it must not wait for it.
void thread_pool::watch() {
  std::unique_lock<std::mutex> lk(mtx_);
  int empty_rounds = 0;
  while (!stopping_) {
    if (jobs_.size() <= waking_) { // each queued job has a thread on its way
      if (++empty_rounds >= idle_rounds) {
        monitor_idle_ = true;
        monitor_cv_.wait(lk, [this] { return stopping_ || !monitor_idle_; });
        empty_rounds = 0;
        continue;
      }
    } else {
      empty_rounds = 0;
      if (clock_type::now() - jobs_.front().at >= patience_) {
        worker* woken = nullptr;
        while (waking_ < jobs_.size() && wake_one(woken))
          if (woken) std::exchange(woken, nullptr)->cv.notify_one(); // rare: under the lock
      }
    }
    monitor_cv_.wait_for(lk, patience_);
  }
}

} // namespace smithers::util
