#include "util/thread_pool.hpp"

namespace smithers::util {

thread_pool::thread_pool(std::size_t max_threads) : max_threads_(max_threads ? max_threads : 1) {}

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
  for (auto& w : workers_)
    w->thread.join();
}

void thread_pool::submit(std::function<void()> job) {
  std::lock_guard<std::mutex> lk(mtx_);
  jobs_.push_back(std::move(job));
  wake_one();
}

void thread_pool::wake_one() {
  // A thread on its way takes this job, and wakes the next if more queue.
  if (waking_ > 0) return;
  ++waking_;
  if (!parked_.empty()) {
    worker* w = parked_.back();
    parked_.pop_back();
    w->signaled = true;
    w->cv.notify_one();
  } else if (workers_.size() < max_threads_) {
    workers_.push_back(std::make_unique<worker>());
    worker* w = workers_.back().get();
    w->thread = std::thread([this, w] { work(w); });
  } else {
    --waking_; // every thread is busy: the first to finish takes it
  }
}

std::size_t thread_pool::threads() const {
  std::lock_guard<std::mutex> lk(mtx_);
  return workers_.size();
}

void thread_pool::work(worker* me) {
  std::unique_lock<std::mutex> lk(mtx_);
  --waking_; // created as one on its way
  for (;;) {
    if (!jobs_.empty()) {
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      if (!jobs_.empty()) wake_one(); // the cascade: more work than this thread
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

} // namespace smithers::util
