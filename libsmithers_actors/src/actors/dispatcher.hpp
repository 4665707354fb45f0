// The dispatch seam: where an attempt runs. The run supervisor hands every
// attempt whose start is durable to its dispatcher and monitors the actor it
// gets back; that actor reports (result, attempt_key, outcome) — or goes
// down, and the attempt counts as lost. Today's dispatcher starts a task
// actor in this process; a remote one (a worker on another CAF node) sends
// the job's task_request (plain data, actors/protocol.hpp) to a worker
// behind the same interface.
#pragma once

#include "executors/task_job.hpp"
#include "util/thread_pool.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <memory>

namespace smithers::actors {

class dispatcher {
public:
  virtual ~dispatcher() = default;
  /// Starts the attempt; returns the actor that will report its result to
  /// `supervisor` (the supervisor monitors it and may send it
  /// (cancel, code, message)). Heartbeats go to `watchdog`.
  virtual caf::actor dispatch(caf::local_actor& supervisor,
                              std::shared_ptr<executors::task_job> job,
                              const caf::actor& watchdog) = 0;
  /// Whether the job may wait before it starts (for a worker's slot): its
  /// heartbeat timeout then counts from (assigned, ...), not from dispatch.
  virtual bool starts_later(const executors::task_job&) const { return false; }
  /// The pool a compute job of this process runs on without a task actor
  /// (actors/task_actor.hpp), or null: the job goes to dispatch().
  virtual util::thread_pool* pool_for(const executors::task_job&) const { return nullptr; }
};

/// Runs attempts in this process: a task actor each, blocking work on `pool`.
std::shared_ptr<dispatcher> make_local_dispatcher(util::thread_pool* pool);

} // namespace smithers::actors
