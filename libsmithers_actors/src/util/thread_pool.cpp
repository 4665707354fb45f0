#include "util/thread_pool.hpp"

namespace smithers::util {

thread_pool::thread_pool(std::size_t max_threads) : max_threads_(max_threads ? max_threads : 1) {}

thread_pool::~thread_pool() {
  {
    std::lock_guard<std::mutex> lk(mtx_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    t.join();
}

void thread_pool::submit(std::function<void()> job) {
  std::lock_guard<std::mutex> lk(mtx_);
  jobs_.push_back(std::move(job));
  // Each queued job needs a thread of its own while threads are allowed to grow:
  // blocking jobs (subprocesses) must not wait behind each other.
  if (idle_ < jobs_.size() && threads_.size() < max_threads_)
    threads_.emplace_back([this] { work(); });
  else
    cv_.notify_one();
}

std::size_t thread_pool::threads() const {
  std::lock_guard<std::mutex> lk(mtx_);
  return threads_.size();
}

void thread_pool::work() {
  std::unique_lock<std::mutex> lk(mtx_);
  for (;;) {
    ++idle_;
    cv_.wait(lk, [this] { return stopping_ || !jobs_.empty(); });
    --idle_;
    if (jobs_.empty()) return; // stopping and drained
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lk.unlock();
    job();
    lk.lock();
  }
}

} // namespace smithers::util
