// The task actor: one per attempt. Runs its job (blocking work on the pool),
// sends (result_atom, attempt_key, task_outcome_ptr) to its supervisor and
// quits (actors/protocol.hpp). The local dispatcher (actors/dispatcher.hpp)
// spawns it.
//
// - Ending it with any exit reason sets the job's cancellation flag (a
//   command's process group is ended, a compute sees cancelled()).
// - (cancel_atom, reason) asks it to stop: it sets the flag and waits for the
//   job (at most a grace period) so the processes are gone when it reports.
// - A compute task with timeout_ms fails with TASK_TIMEOUT at the deadline;
//   a late result is discarded. (Commands time out in the subprocess, which
//   ends the process group first.)
// - Heartbeats go to the run's watchdog; plain liveness beats at most every
//   50 ms, checkpoints always.
//
// A compute attempt in this process needs none of that actor: its job
// cannot end apart from the process (an exception is a failed attempt), so
// monitoring it adds nothing, and the actor cost more than the callable —
// a spawn, a monitor, two more messages and a thread wake-up per attempt
// (docs/architecture.md, "Attempts"). add_pool_attempt runs it on the
// pool and sends its outcome to the supervisor straight from there; the
// supervisor keeps its timeout, stop and grace with the helpers below.
#pragma once

#include "actors/protocol.hpp"
#include "executors/task_job.hpp"
#include "util/thread_pool.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace smithers::actors {

/// How long a stopped job may take to end before its attempt is reported
/// anyway: the command executor's SIGTERM -> SIGKILL grace plus slack.
inline constexpr std::chrono::milliseconds stop_grace{3000};

/// Where pool attempts leave their outcomes for the supervisor: the first
/// outcome into an empty outbox sends it (results_atom); the ones that
/// come before it has taken them ride along. Callables that end close
/// together then cost the supervisor one message and one wake-up, not one
/// each.
class result_outbox {
public:
  using item = std::pair<attempt_key, task_outcome_ptr>;
  explicit result_outbox(caf::actor supervisor) : supervisor_(std::move(supervisor)) {}
  void put(attempt_key key, task_outcome_ptr oc);
  std::vector<item> take();
  /// The scheduler worker the supervisor runs on as it hands jobs to the
  /// pool (its `context()`): the wake-up of an outcome goes there. nullptr:
  /// CAF picks the worker.
  void pin(caf::execution_unit* where);

private:
  caf::actor supervisor_;
  std::atomic<caf::execution_unit*> pinned_{nullptr};
  std::mutex mtx_;
  std::vector<item> items_;
};

/// A compute job to run with no actor, appended to `jobs`: the caller hands
/// each batch's jobs to the pool at once (thread_pool::submit_short), or
/// calls a direct task's job itself (task_spec::direct). Its outcome goes to
/// `outbox`. Setting the returned flag asks the callable to stop.
std::shared_ptr<std::atomic<bool>> add_pool_attempt(std::shared_ptr<executors::task_job> job,
                                                    std::shared_ptr<result_outbox> outbox,
                                                    caf::actor supervisor, caf::actor watchdog,
                                                    std::vector<std::function<void()>>& jobs);

/// TASK_TIMEOUT for a compute attempt past its timeout_ms.
task_outcome_ptr timeout_outcome(const node_key& key, std::int64_t timeout_ms);
/// An attempt asked to stop fails with the stop's reason unless it produced
/// an output.
task_outcome_ptr stopped_outcome(task_outcome_ptr oc, const std::optional<error>& stop_reason);
/// An attempt that did not stop within stop_grace: the stop's reason, said so.
task_outcome_ptr unstopped_outcome(const error& stop_reason);

caf::actor spawn_task_actor(caf::local_actor& parent, std::shared_ptr<executors::task_job> job,
                            util::thread_pool* pool, caf::actor supervisor, caf::actor watchdog);

} // namespace smithers::actors
