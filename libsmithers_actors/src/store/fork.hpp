// Time travel: a new run from a frame's snapshot of another.
#pragma once

#include "store/database.hpp"

#include <string>
#include <vector>

namespace smithers::store {

struct fork_request {
  std::string run_id; // the parent
  std::int64_t frame_no = 0;
  std::vector<std::string> reset_nodes; // run again, with every task that needs them
  std::string new_run_id;               // empty: "<parent>-fork-<hex>"
  std::int64_t now_ms = 0;
};

struct fork_result {
  std::string run_id;
  std::vector<std::string> reset; // every node set back to pending by the reset
};

/// Creates the child run in one transaction: the parent's input, workflow
/// and config; node states and outputs as of the frame (finished nodes keep
/// their outputs and never run again; what was in flight runs again); the
/// reset nodes and everything that needs them, transitively, pending; no
/// owner, so `resume` takes it at once. Throws RUN_NOT_FOUND,
/// INVALID_ARGUMENT (no such frame, unknown reset node), INVALID_RUN_ID.
fork_result fork_run(database& db, const fork_request& req);

} // namespace smithers::store
