// Recovery: what a resumed run starts from, worked out from its stored rows,
// and which stored runs may be resumed at all. No CAF: this file builds into
// smithers_core, so the unit tests link it.
#pragma once

#include "store/rows.hpp"

#include <smithers/status.hpp>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace smithers::actors {

/// The scheduler-facing state of a run, recovered from its rows; the run
/// supervisor starts from it (actors::resume_state).
struct recovered_run {
  std::unordered_map<std::string, node_state> states;     // by node id
  std::unordered_map<std::string, std::int64_t> attempts; // attempts started
  std::unordered_map<std::string, json> outputs;
  std::unordered_map<std::string, json> checkpoints;          // last heartbeat data
  std::unordered_map<std::string, std::int64_t> retry_at_ms;  // backoffs still running
  std::vector<std::pair<std::string, std::int64_t>> orphaned; // attempts left in progress
  /// The `meta` of orphaned attempts that record a process group: commands
  /// the previous owner may have left running.
  std::vector<json> orphan_groups;
};

/// Nodes in progress or cancelled become pending again (they run again);
/// attempts left in progress are orphaned; a node's attempt count is its
/// highest attempt; its checkpoint is the heartbeat data of its last
/// attempt that had some; a pending node whose last attempt failed with a
/// `retry_at_ms` in its meta waits for that backoff. `outputs` are moved
/// in. Attempts come in the store's order (by attempt within a node).
recovered_run recover_run(const std::vector<store::node_row>& nodes,
                          const std::vector<store::attempt_row>& attempts,
                          std::vector<store::output_row> outputs);

/// RUN_NOT_RESUMABLE when the run has ended.
void refuse_ended(const store::run_row& run);

} // namespace smithers::actors
