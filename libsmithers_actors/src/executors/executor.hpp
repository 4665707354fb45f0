// Executors: how a task of each kind runs, behind one interface. A task
// actor (or, later, a remote worker) calls execute(), which picks the
// executor for the job's kind and checks what it returned (bounds, object,
// schema) the same way for every kind.
#pragma once

#include "executors/task_job.hpp"

#include <atomic>
#include <functional>
#include <memory>

namespace smithers::executors {

/// What an attempt can tell the outside while it runs, and how it is told
/// to stop.
struct attempt_io {
  std::shared_ptr<std::atomic<bool>> cancel; // set: stop soon
  /// Checkpoint data (has_data) or plain liveness.
  std::function<void(json data, bool has_data)> heartbeat = [](json, bool) {};
  /// A command's process group started (its pid).
  std::function<void(std::int64_t pid)> process_started = [](std::int64_t) {};
  /// A line a command or agent printed (without its end), as it arrives.
  std::function<void(const std::string& line, bool is_stderr)> output = [](const std::string&,
                                                                           bool) {};
  /// An agent is asked again (the AgentRetry event's fields).
  std::function<void(json fields)> agent_retry = [](json) {};
};

class executor {
public:
  virtual ~executor() = default;
  /// Runs the job to its end on the calling thread (it may block). Returns
  /// the raw output (checked by execute) or a failure; may throw.
  virtual task_outcome run(const task_job& job, const attempt_io& io) const = 0;
};

/// What execute() checks of any output: bounds (without recursion), an
/// object, the request's schema. INVALID_OUTPUT (with details.problems for
/// a schema's) or nullopt.
std::optional<error> check_output(const task_request& req, const json& out);

/// The executor of a task kind (value, compute, command, agent).
const executor& executor_for(task_kind kind);

/// Runs a job with its kind's executor, then validates the output: bounds
/// first (without recursion), an object, the job's schema. Never throws.
task_outcome execute(const task_job& job, const attempt_io& io);

/// A value task's outcome, computed where the run is driven (no thread, no
/// process): the same checks as any other output.
task_outcome resolve_value(task_request req);

} // namespace smithers::executors
