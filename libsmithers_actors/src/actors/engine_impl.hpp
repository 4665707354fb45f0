// The engine's state, shared by the files that implement it: engine.cpp
// (construction, start, cancel, fork, subscribers), resume.cpp (recovery)
// and ownership.cpp (requests from other processes, runs nobody drives).
#pragma once

#include "actors/dispatcher.hpp"
#include "actors/protocol.hpp"
#include "actors/run_handle.hpp"
#include "actors/run_supervisor.hpp"
#include "store/cancel.hpp"
#include "store/database.hpp"
#include "store/reader.hpp"
#include "util/thread_pool.hpp"

#include <smithers/engine.hpp>

#include <caf/all.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace smithers {

struct engine::impl {
  engine_config cfg;
  caf::actor_system_config sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<store::database> db;
  caf::actor persistence;
  caf::actor poller;
  std::unique_ptr<util::thread_pool> pool;
  std::string owner_id;
  // With workers (engine_config::workers): the pool actor and the
  // dispatcher that sends attempts through it.
  caf::actor workers;
  std::shared_ptr<actors::dispatcher> remote;

  mutable std::mutex mtx;
  actors::compute_registry computes;
  std::map<std::uint64_t, event_handler> subscribers;
  std::uint64_t next_subscriber = 1;
  std::vector<std::shared_ptr<run_handle::state>> runs; // not ended yet
  // Handles keep supervisors alive while their runs go on (CAF collects
  // actors nobody refers to).
  std::map<std::string, caf::actor> supervisors;

  // Sends `msg` to the supervisor of a run of this engine; false if none.
  template <class... Ts> bool tell_supervisor(const std::string& run_id, Ts&&... xs) {
    caf::actor sup;
    {
      std::lock_guard<std::mutex> lk(mtx);
      auto it = supervisors.find(run_id);
      if (it == supervisors.end()) return false;
      sup = it->second;
    }
    caf::anon_send(sup, std::forward<Ts>(xs)...);
    return true;
  }

  // -- engine.cpp --

  void publish(const event& e);

  // A copy of the registered computes, for a run's context.
  std::shared_ptr<const actors::compute_registry> computes_snapshot() const;

  // Everything stored about a run, read through the persistence actor.
  std::shared_ptr<actors::run_snapshot> load(const std::string& run_id);

  // Spawns the supervisor of a run whose row exists, and hands out its handle.
  run_handle launch(std::shared_ptr<actors::run_context> ctx, event_handler on_event);

  // Runs `fn` on the persistence actor's connection (in its thread, between
  // batches) and waits for it; rethrows its smithers_error.
  void store_sync(std::function<void(store::database&)> fn);

  // The run's row, read through the persistence actor; RUN_NOT_FOUND.
  store::run_row read_run(const std::string& run_id);

  // Writes a batch through the persistence actor and waits for its commit.
  void write_sync(std::vector<store::command> cmds);

  // Records an approval or denial and tells the run's supervisor, if here.
  void decide(const std::string& run_id, const std::string& node_id, bool approved, decision d);

  // -- ownership.cpp --

  // Ends, as cancelled, a run that nobody drives (this engine's own runs
  // that it no longer drives included), and the commands it left behind.
  store::unowned_cancel_result cancel_unowned(const std::string& run_id, const error& why);

  // Ends the process groups of commands whose attempts nobody drives.
  static void end_groups(const std::vector<json>& groups);

  // What another process asked of a run of this engine.
  void on_owner_request(const store::owner_request& req);
};

} // namespace smithers
