// What one attempt needs to run, and what it produced.
//
// A task_request is plain data — strings, numbers, JSON — with nothing that
// only exists in this process: it is what a remote worker will receive
// (its CAF inspect() is in actors/protocol.hpp). A task_job adds what does
// only exist here: an inline C++ callable. Executors (executor.hpp) run a
// job on the calling thread.
#pragma once

#include <smithers/limits.hpp>
#include <smithers/node_key.hpp>
#include <smithers/task.hpp>
#include <smithers/workflow.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace smithers::executors {

/// The agent an attempt asks (docs/agents.md): one entry of the task's chain.
struct agent_call {
  std::string id;
  std::vector<std::string> command; // argv, {{prompt}} and {{model}} not yet filled
  std::string model;
  std::map<std::string, std::string> env;
};

struct task_request {
  std::string run_id;
  node_key key;
  std::int64_t attempt = 1;
  task_kind kind = task_kind::value;
  json value;                             // value tasks: the output
  std::string compute_name;               // compute tasks: the registered function ("" inline)
  std::vector<std::string> argv;          // command tasks: expanded
  std::map<std::string, std::string> env; // command tasks: expanded
  std::string cwd;                        // absolute, or "" to inherit the process's
  std::shared_ptr<const json> input;      // the run's input (shared by all attempts)
  json needs = json::object();            // node id -> output
  json last_heartbeat;                    // previous attempt's checkpoint, or null
  std::shared_ptr<const json> output_schema; // null: any object
  std::optional<std::int64_t> timeout_ms;
  std::optional<std::int64_t> heartbeat_timeout_ms;
  std::uint64_t max_output_bytes = limits::default_max_output_bytes;
  std::string prompt; // agent tasks: expanded (the contract not yet appended)
  agent_call agent;   // agent tasks: the one this attempt asks
  // A git worktree to run in (command and agent tasks): created from the
  // repository at `cwd`; empty path: none.
  std::string worktree_path;   // expanded (relative: under the repository)
  std::string worktree_branch; // expanded
  std::string worktree_base;
};

/// A request and the parts that exist only in this process.
struct task_job {
  task_request request;
  compute_fn compute; // compute tasks: the resolved callable (inline or registered)
  bool direct = false;   // compute tasks: called by the run's supervisor (task_spec::direct)
  std::string cache_key; // a cached task's (docs/workflow-format.md, "Caching"); "" when not
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
  /// Merged into the attempt's meta: which agent answered and how, the
  /// worktree, output left out of events (docs/storage.md, attempts.meta).
  json meta;
};

} // namespace smithers::executors
