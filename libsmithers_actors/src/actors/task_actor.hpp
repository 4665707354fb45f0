// The task actor: one per attempt. Runs its job (blocking work on the pool),
// sends (result_atom, node_id, attempt, task_outcome_ptr) to its supervisor
// and quits. Ending it with any reason sets the job's cancellation flag.
#pragma once

#include "actors/task_job.hpp"
#include "util/thread_pool.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <memory>

namespace smithers::actors {

caf::actor spawn_task_actor(caf::local_actor& parent, std::shared_ptr<task_job> job,
                            util::thread_pool* pool, caf::actor supervisor);

} // namespace smithers::actors
