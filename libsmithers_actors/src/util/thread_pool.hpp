// A small elastic pool for blocking work (compute callables, subprocesses)
// so CAF's cooperative scheduler threads never block. Our own: no thread
// pool library is packaged here (Boost is not a dependency).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
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
  void work();

  const std::size_t max_threads_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  bool stopping_ = false;
};

} // namespace smithers::util
