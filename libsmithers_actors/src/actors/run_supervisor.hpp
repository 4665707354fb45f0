// The run supervisor: one actor per run, the actor plumbing around the run
// core (core/run_core.hpp). It feeds the core its messages — task results,
// heartbeats, timeouts, retry timers, commit acks, stops — and carries out
// what the core decides: write batches go to the persistence actor,
// attempts to the dispatcher (which starts a task actor each, monitored) or,
// for a compute job of this process, to the pool without an actor
// (actors/task_actor.hpp: the supervisor keeps its stop flag, timeout and
// grace), stop requests to task actors, retry timers to itself.
#pragma once

#include "core/run_core.hpp"
#include "util/thread_pool.hpp"

#include <smithers/engine.hpp>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <functional>
#include <memory>

namespace smithers::actors {

class dispatcher;

using core::compute_registry;
using core::resume_state;

/// A run's configuration (core::run_config) and what only the actors need.
struct run_context : core::run_config {
  caf::actor persistence;
  util::thread_pool* pool = nullptr;      // for the local dispatcher
  std::shared_ptr<dispatcher> dispatch;   // null: the local dispatcher on `pool`
  caf::actor workers;                     // the engine's worker pool, if it has workers
  std::function<void(run_result)> on_end; // once, when the run has ended
  /// Called with each task actor right after it is spawned. Tests use it to
  /// end task actors from outside, as a crash would.
  std::function<void(const node_key& key, std::int64_t attempt, const caf::actor&)> on_task_spawned;
};

caf::actor spawn_run_supervisor(caf::actor_system& sys, std::shared_ptr<run_context> ctx);

} // namespace smithers::actors
