// What one attempt needs to run, and what it produced. Plain data: built by
// the supervisor, executed by a task actor (on the blocking pool when the
// work blocks).
#pragma once

#include <smithers/limits.hpp>
#include <smithers/task.hpp>
#include <smithers/workflow.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace smithers::actors {

struct task_job {
  std::string run_id;
  std::string node_id;
  std::int64_t iteration = 0;
  std::int64_t attempt = 1;
  std::int32_t task_index = 0;
  std::shared_ptr<const task_spec> spec;
  compute_fn compute; // resolved (inline or registered)
  std::shared_ptr<const json> input;
  json needs = json::object();               // node id -> output
  json last_heartbeat;                       // previous attempt's checkpoint
  std::shared_ptr<const json> output_schema; // null: any object
  std::vector<std::string> argv;             // expanded command
  std::map<std::string, std::string> env;    // expanded env
  std::string cwd;                           // absolute, or '' to inherit the process's
  std::size_t max_output_bytes = limits::default_max_output_bytes;
};

/// The newest heartbeat an attempt produced, carried with its outcome so the
/// last one is always written before the attempt's end.
struct last_heartbeat {
  std::int64_t at_ms = 0; // 0: none
  json data;              // newest checkpoint data
  bool has_data = false;
};

struct task_outcome {
  std::optional<json> output; // success
  std::optional<error> err;   // failure
  last_heartbeat beat;
};

/// Runs a job to its end on the calling thread (which may block): executes,
/// then validates the output against the job's schema. `on_heartbeat` gets
/// checkpoint data (has_data) or plain liveness.
task_outcome execute(const task_job& job, const std::shared_ptr<std::atomic<bool>>& cancel,
                     const std::function<void(json data, bool has_data)>& on_heartbeat,
                     const std::function<void(std::int64_t pid)>& on_process = {});

/// Whether a failure with this code is retried: the code's traits
/// (smithers/errors.hpp, error_codes).
bool is_retryable(const error& e);

/// Delay before attempt `next_attempt` (2, 3, ...) under `p`; `unit` in
/// [0, 1) draws the jitter.
std::int64_t backoff_ms(const retry_policy& p, std::int64_t next_attempt, double unit);

} // namespace smithers::actors
