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
#pragma once

#include "executors/task_job.hpp"
#include "util/thread_pool.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <memory>

namespace smithers::actors {

caf::actor spawn_task_actor(caf::local_actor& parent, std::shared_ptr<executors::task_job> job,
                            util::thread_pool* pool, caf::actor supervisor, caf::actor watchdog);

} // namespace smithers::actors
