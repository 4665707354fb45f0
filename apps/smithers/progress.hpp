// Live progress of a run on a terminal (smithers run, resume, fork --run).
#pragma once

#include <smithers/events.hpp>

#include <chrono>
#include <mutex>

namespace smithers::cli {

/// Live counts on a terminal (stderr), redrawn at most every 100 ms.
class progress {
public:
  explicit progress(bool enabled) : enabled_(enabled) {}

  void on_event(const event& e);
  /// Draws the final counts (and ends the line) when enabled.
  void done();

private:
  void draw();

  bool enabled_;
  std::mutex mtx_;
  long pending_ = 0, running_ = 0, finished_ = 0, failed_ = 0, skipped_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

} // namespace smithers::cli
