// The owner's side of distribution (docs/architecture.md, "The worker
// protocol"): one worker_pool actor per engine connects to the configured
// workers (reconnecting with backoff), monitors them, places attempts on
// the least loaded worker with a free slot, and batches what crosses the
// wire. Each attempt it places is fronted by a small local remote_attempt
// actor, so the supervisor sees what it sees of a local task actor: one
// actor to monitor and to stop, whose result comes before its end.
#pragma once

#include "actors/dispatcher.hpp"
#include "util/thread_pool.hpp"

#include <smithers/remote.hpp>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace smithers::actors {

struct worker_pool_config {
  std::vector<endpoint> workers;
  bool tls = false;
  /// With no worker connected, attempts run in the owner instead of waiting.
  bool local_fallback = false;
  std::string owner_id;
  /// A connect, or a worker's answer to hello, that takes longer fails.
  std::chrono::milliseconds connect_timeout{3000};
};

caf::actor spawn_worker_pool(caf::actor_system& sys, worker_pool_config cfg);

/// Sends command tasks and named compute tasks through `pool`; runs inline
/// C++ computes (which cannot travel) on `local`.
std::shared_ptr<dispatcher> make_remote_dispatcher(caf::actor pool, util::thread_pool* local);

} // namespace smithers::actors
