// Waiting in a test for something another thread or process does.
#pragma once

#include <chrono>
#include <thread>

namespace test_support {

/// Polls `pred` every `poll` until it holds or `limit` passes; returns
/// pred(), so a condition that became true at the last moment still counts.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(30),
                std::chrono::milliseconds poll = std::chrono::milliseconds(50)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(poll);
  }
  return true;
}

} // namespace test_support
