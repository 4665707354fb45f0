// The heartbeat watchdog: one per run, linked to its supervisor.
//
// - Task threads send it every heartbeat: (heartbeat_atom, hb).
// - It throttles them: at most one write per attempt every 500 ms goes to
//   the supervisor as (heartbeat_atom, hb); the newest one waits
//   and is flushed later (the attempt's end carries its final heartbeat).
// - The supervisor tells it which attempts are in flight:
//   (track_atom, attempt_key, task actor, heartbeat_timeout_ms) and
//   (untrack_atom, attempt_key).
// - Every 100 ms it checks deadlines: an attempt silent for longer than its
//   heartbeat_timeout_ms is reported to the supervisor as
//   (hb_timeout_atom, attempt_key, last heartbeat ms) and its task actor
//   is ended.
// - Every second it writes the run's liveness heartbeat (touch_run).
#pragma once

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <string>

namespace smithers::actors {

caf::actor spawn_heartbeat_watchdog(caf::local_actor& supervisor, std::string run_id,
                                    std::string owner_id, caf::actor persistence);

} // namespace smithers::actors
