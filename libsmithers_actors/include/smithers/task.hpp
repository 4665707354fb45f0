// What a compute task sees: its input, the outputs it needs, heartbeats and
// cancellation. Implemented without CAF so host code stays light.
#pragma once

#include <smithers/errors.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace smithers {

class task_context;

/// A compute task: returns the task's output (a JSON object) or throws.
/// A thrown smithers_error keeps its code; any other exception is TASK_FAILED.
using compute_fn = std::function<json(task_context&)>;

class task_context {
public:
  struct init {
    std::string run_id;
    std::string node_id;
    std::int64_t iteration = 0;
    std::int64_t attempt = 1;
    json input = json::object();
    json needs = json::object(); // node id -> output
    json last_heartbeat;         // checkpoint of the previous attempt, or null
    std::shared_ptr<std::atomic<bool>> cancelled;
    std::function<void(json)> on_heartbeat;
  };

  explicit task_context(init in) : in_(std::move(in)) {
    if (!in_.cancelled) in_.cancelled = std::make_shared<std::atomic<bool>>(false);
  }

  const std::string& run_id() const { return in_.run_id; }
  const std::string& node_id() const { return in_.node_id; }
  std::int64_t iteration() const { return in_.iteration; }
  std::int64_t attempt() const { return in_.attempt; }
  const json& input() const { return in_.input; }
  /// Outputs of the nodes in `needs`, by node id.
  const json& needs() const { return in_.needs; }
  /// The output of one needed node; throws TEMPLATE_MISSING_VALUE if absent.
  const json& need(const std::string& node_id) const;
  /// The last heartbeat data of the previous attempt (null when none).
  const json& last_heartbeat() const { return in_.last_heartbeat; }
  /// True once the attempt is cancelled or timed out: return soon.
  bool cancelled() const { return in_.cancelled->load(std::memory_order_relaxed); }
  /// Record liveness, optionally with checkpoint data for the next attempt.
  /// Throws smithers_error (HEARTBEAT_PAYLOAD_*) for data that is too large or
  /// not plain JSON (non-finite numbers).
  void heartbeat(json data = nullptr);

private:
  init in_;
};

} // namespace smithers
