// Which runs this process drives, and the request poller: what other
// processes asked of this engine's runs (cancellations, handovers).
#pragma once

#include <caf/fwd.hpp>

#include <functional>
#include <string>

namespace smithers::store {
struct owner_request;
struct inbox_row;
}

namespace smithers::actors {

// Runs driven by any engine of this process: a resume of one of them would
// make two drivers, whatever the owner id says.

/// True while an engine of this process drives the run (or is starting or
/// resuming it).
bool driven_here(const std::string& run_id);

/// Marks a run driven here before its row is written (so the request poller
/// never mistakes a run being started for one nobody drives); false if it
/// already was.
bool mark_driven(const std::string& run_id);

void set_driven(const std::string& run_id, bool on);

/// Spawns the detached actor that polls the store for what other processes
/// asked of runs owned by `owner_id` — cancellations and handovers — and
/// sent them — decisions and signals in their inboxes — on its own
/// read-only connection (the reads may block on the disk), every 250 ms.
/// It hands each request to `on_request` and each inbox entry to
/// `on_inbox` until that returns true (the run's supervisor was told).
caf::actor spawn_request_poller(caf::actor_system& sys, std::string db_path, std::string owner_id,
                                std::function<void(const store::owner_request&)> on_request,
                                std::function<bool(const store::inbox_row&)> on_inbox);

} // namespace smithers::actors
