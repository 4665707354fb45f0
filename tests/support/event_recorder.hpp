// Records the events a run publishes (run_options::on_event), from whatever
// thread publishes them, for a test to look at during or after the run.
#pragma once

#include <smithers/events.hpp>

#include <mutex>
#include <string>
#include <vector>

namespace test_support {

class event_recorder {
public:
  /// For run_options::on_event; the recorder must outlive the run.
  smithers::event_handler handler() {
    return [this](const smithers::event& e) {
      std::lock_guard<std::mutex> lk(mtx_);
      events_.push_back(e);
    };
  }
  /// Every event so far, in the order published.
  std::vector<smithers::event> all() const {
    std::lock_guard<std::mutex> lk(mtx_);
    return events_;
  }
  /// The events so far of one type.
  std::vector<smithers::event> of_type(const std::string& type) const {
    std::lock_guard<std::mutex> lk(mtx_);
    std::vector<smithers::event> out;
    for (const auto& e : events_)
      if (e.type == type) out.push_back(e);
    return out;
  }
  /// The types of the events so far, in order.
  std::vector<std::string> types() const {
    std::lock_guard<std::mutex> lk(mtx_);
    std::vector<std::string> out;
    for (const auto& e : events_)
      out.push_back(e.type);
    return out;
  }

private:
  mutable std::mutex mtx_;
  std::vector<smithers::event> events_;
};

} // namespace test_support
