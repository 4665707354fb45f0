#include "progress.hpp"

#include <iostream>

namespace smithers::cli {

void progress::on_event(const event& e) {
  std::lock_guard<std::mutex> lk(mtx_);
  const auto& t = e.type;
  if (t == event_type::node_pending) {
    ++pending_;
  } else if (t == event_type::node_started) {
    --pending_;
    ++running_;
  } else if (t == event_type::node_finished) {
    --running_;
    ++finished_;
  } else if (t == event_type::node_failed) {
    --running_;
    ++failed_;
  } else if (t == event_type::node_retrying) {
    --running_;
    ++pending_;
  } else if (t == event_type::node_skipped) {
    --pending_;
    ++skipped_;
  }
  auto now = std::chrono::steady_clock::now();
  if (enabled_ && now - last_draw_ > std::chrono::milliseconds(100)) {
    last_draw_ = now;
    draw();
  }
}

void progress::done() {
  std::lock_guard<std::mutex> lk(mtx_);
  if (enabled_) {
    draw();
    std::cerr << "\n";
  }
}

void progress::draw() {
  std::cerr << "\r\033[K" << finished_ << " finished, " << running_ << " running, " << pending_
            << " pending, " << failed_ << " failed";
  if (skipped_) std::cerr << ", " << skipped_ << " skipped";
  std::cerr << std::flush;
}

} // namespace smithers::cli
