// Cancelling a run that no live process drives: its owner died (kill -9, a
// crash, a closed terminal), or it was never started (a fork).
#pragma once

#include "store/database.hpp"
#include "store/rows.hpp"

#include <smithers/errors.hpp>

#include <string>
#include <vector>

namespace smithers::store {

struct unowned_cancel {
  std::string run_id;
  std::string canceller_id; // recorded as the run's last owner
  std::int64_t canceller_pid = 0;
  std::int64_t now_ms = 0;
  error why; // RUN_CANCELLED and what happened, on the run and its attempts
};

struct unowned_cancel_result {
  std::size_t attempts = 0;         // in flight when the owner went away
  std::size_t nodes = 0;            // not ended, now cancelled
  std::vector<json> process_groups; // meta of those attempts: {"host", "pgid", "pgid_start"}
};

/// Ends the run `cancelled` in one transaction, as its owner would have: a
/// compare-and-set claim on the owner and heartbeat it read (so a resumer or
/// another canceller racing it fails cleanly with RUN_RESUME_CLAIM_FAILED
/// and nothing is written), every attempt left in flight recorded cancelled,
/// every node that had not ended recorded cancelled, a frame with those
/// states, then NodeCancelled events, RunStatusChanged and RunCancelled. The
/// caller ends the process groups those attempts left behind. Throws
/// RUN_NOT_FOUND, INVALID_ARGUMENT (the run has ended).
unowned_cancel_result cancel_unowned_run(database& db, const unowned_cancel& req);

/// Who drives a stored run, as far as another process can tell.
enum class run_driver {
  nobody, // no owner recorded: a fork never started, a released run
  alive,  // its owner process runs (this host), or heartbeats (another host)
  gone,   // its owner died (this host), or its heartbeat is stale (another host)
};

/// `stale_after_ms`: a heartbeat this old marks an owner on another host gone.
run_driver driver_of(const run_row& run, std::int64_t now_ms, std::int64_t stale_after_ms);

struct cancel_outcome {
  bool requested = false;      // a live owner was asked (it stops the run itself)
  run_row run;                 // as read before anything was written
  unowned_cancel_result ended; // when not requested: what was cancelled here
};

/// A cancel from outside the owning process: a durable request when a live
/// process drives the run (it notices within a poll), otherwise the run is
/// ended cancelled here (cancel_unowned_run) — a pending request never waits
/// for an owner that is gone. Throws RUN_NOT_FOUND, INVALID_ARGUMENT (ended).
cancel_outcome cancel_stored_run(database& db, const unowned_cancel& req,
                                 std::int64_t stale_after_ms);

} // namespace smithers::store
