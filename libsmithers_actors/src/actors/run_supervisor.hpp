// The run supervisor: one actor per run. Owns the run's in-memory state and
// the render -> plan -> schedule loop; spawns and monitors a task actor per
// attempt; writes through the persistence actor and lets dependents start
// only after the output's commit.
#pragma once

#include "util/thread_pool.hpp"
#include "workflow/render.hpp"

#include <smithers/engine.hpp>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

namespace smithers::actors {

using compute_registry = std::map<std::string, compute_fn>;

/// What a resumed run starts from, read from the store.
struct resume_state {
  std::unordered_map<std::string, node_state> states;     // by node id
  std::unordered_map<std::string, std::int64_t> attempts; // attempts started
  std::unordered_map<std::string, json> outputs;
  std::unordered_map<std::string, json> checkpoints;          // last heartbeat data
  std::unordered_map<std::string, std::int64_t> retry_at_ms;  // backoffs still running
  std::vector<std::pair<std::string, std::int64_t>> orphaned; // attempts left in progress
  std::int64_t next_frame = 0;
  std::string previous_owner;
  bool forced = false;
  bool handover = false; // the previous owner released the run to this resume
};

struct run_context {
  std::string run_id;
  std::string owner_id; // this engine's
  std::shared_ptr<const workflow> wf;
  std::shared_ptr<const json> input;
  std::int64_t max_concurrency = 0; // 0: unlimited
  std::string cwd;                  // where commands run (a task's relative cwd is under it)
  std::size_t max_output_bytes = limits::default_max_output_bytes; // a task output, serialized
  std::shared_ptr<const compute_registry> computes;
  rendered_tree first_render;         // validated before the run was created
  std::int64_t next_seq = 0;          // events already written
  std::optional<resume_state> resume; // set when resuming
  std::int64_t started_ms = 0;
  caf::actor persistence;
  util::thread_pool* pool = nullptr;
  std::function<void(const event&)> publish; // after commit
  std::function<void(run_result)> on_end;    // once, when the run has ended
  /// Called with each task actor right after it is spawned. Tests use it to
  /// end task actors from outside, as a crash would.
  std::function<void(const std::string& node_id, std::int64_t attempt, const caf::actor&)>
      on_task_spawned;
};

caf::actor spawn_run_supervisor(caf::actor_system& sys, std::shared_ptr<run_context> ctx);

} // namespace smithers::actors
