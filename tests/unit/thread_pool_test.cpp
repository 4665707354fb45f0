// The blocking pool: every job runs, a job that blocks never holds up the
// others for long, and a burst of short jobs does not make a thread each.
#include "util/thread_pool.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

using namespace smithers;
using namespace std::chrono_literals;

namespace {

// Counts arrivals; wait() returns once `n` have arrived or the deadline
// passed (false then), so a pool that serializes fails instead of hanging.
class rendezvous {
public:
  explicit rendezvous(int n) : n_(n) {}
  bool arrive_and_wait(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lk(mtx_);
    if (++arrived_ >= n_) cv_.notify_all();
    return cv_.wait_for(lk, limit, [this] { return arrived_ >= n_; });
  }

private:
  const int n_;
  int arrived_ = 0;
  std::mutex mtx_;
  std::condition_variable cv_;
};

} // namespace

TEST_CASE("thread pool: every job runs, and the destructor runs what is queued") {
  std::atomic<int> ran{0};
  {
    util::thread_pool pool(4);
    for (int i = 0; i < 500; ++i) {
      if (i % 2)
        pool.submit([&] { ++ran; });
      else
        pool.submit_short([&] { ++ran; });
    }
  }
  CHECK(ran == 500);
}

TEST_CASE("thread pool: blocking jobs each get a thread at once") {
  // Eight jobs that can only finish together: a pool that ran them one at a
  // time would leave each waiting for the others (until the limit).
  util::thread_pool pool(64, 10s); // the monitor must not be what saves them
  rendezvous all(8);
  std::atomic<int> met{0};
  for (int i = 0; i < 8; ++i)
    pool.submit([&] {
      if (all.arrive_and_wait(5s)) ++met;
    });
  for (int i = 0; i < 600 && met < 8; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(met == 8);
  CHECK(pool.threads() >= 8);
}

TEST_CASE("thread pool: short jobs that block get threads once they have waited the patience") {
  util::thread_pool pool(64, 5ms);
  rendezvous all(6);
  std::atomic<int> met{0};
  for (int i = 0; i < 6; ++i)
    pool.submit_short([&] {
      if (all.arrive_and_wait(5s)) ++met;
    });
  for (int i = 0; i < 600 && met < 6; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(met == 6);
}

TEST_CASE("thread pool: a burst of short jobs queues behind one thread") {
  // With a patience no test run reaches, only submit_short's own wake-ups
  // make threads: the first job wakes (makes) one, the rest queue while it
  // is on its way.
  util::thread_pool pool(64, 60s);
  std::mutex gate;
  std::unique_lock<std::mutex> hold(gate);
  std::atomic<int> ran{0};
  // The first job holds its thread until the burst is queued.
  pool.submit_short([&] {
    std::lock_guard<std::mutex> g(gate);
    ++ran;
  });
  for (int i = 0; i < 100; ++i)
    pool.submit_short([&] { ++ran; });
  // A thread is made only when none is on its way: a few at most, however
  // the threads were scheduled (a thread per queued job would be 64).
  CHECK(pool.threads() < 10);
  hold.unlock();
  for (int i = 0; i < 500 && ran < 101; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(ran == 101);
  CHECK(pool.threads() < 10);
}

TEST_CASE("thread pool: short jobs submitted together wake one thread") {
  // With a patience no test run reaches, the monitor makes no threads:
  // the batch is queued under one lock and wakes (makes) exactly one.
  util::thread_pool pool(64, 60s);
  std::atomic<int> ran{0};
  std::vector<std::function<void()>> jobs;
  for (int i = 0; i < 50; ++i)
    jobs.emplace_back([&] { ++ran; });
  pool.submit_short(std::move(jobs));
  for (int i = 0; i < 500 && ran < 50; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(ran == 50);
  CHECK(pool.threads() == 1);
}

TEST_CASE("thread pool: an empty batch of short jobs makes no thread") {
  util::thread_pool pool(64, 60s);
  pool.submit_short(std::vector<std::function<void()>>{});
  CHECK(pool.threads() == 0);
}

TEST_CASE("thread pool: one short job at a time needs no monitor; a queue behind a thread does") {
  // A chain's jobs: each has the thread woken for it, so nothing could wait
  // behind a blocked one and the monitor (a wake-up every patience) never
  // starts.
  util::thread_pool pool(64, 1ms);
  std::atomic<int> ran{0};
  for (int i = 0; i < 50; ++i) {
    pool.submit_short([&] { ++ran; });
    for (int w = 0; w < 500 && ran < i + 1; ++w)
      std::this_thread::sleep_for(1ms);
    REQUIRE(ran == i + 1);
  }
  CHECK_FALSE(pool.monitor_started());
  // Ten jobs at once wake one thread (unless a thread made above is still
  // on its way: fewer than ten are): the rest wait behind it, so it starts.
  std::vector<std::function<void()>> jobs;
  for (int i = 0; i < 10; ++i)
    jobs.emplace_back([&] { ++ran; });
  pool.submit_short(std::move(jobs));
  CHECK(pool.monitor_started());
  for (int w = 0; w < 500 && ran < 60; ++w)
    std::this_thread::sleep_for(1ms);
  CHECK(ran == 60);
}
