// Turning a run's stored rows into the state its resume starts from. Pure.
#pragma once

#include "core/run_core.hpp"
#include "store/rows.hpp"

#include <vector>

namespace smithers::core {

struct recovered_run {
  resume_state state;
  /// Process groups of attempts the dead owner left in progress (their
  /// meta: host, pgid, pgid_start): to be ended before the nodes run again.
  std::vector<json> orphan_groups;
};

/// What a resumed run starts from: node states (what was in flight or
/// cancelled runs again), attempt counts, the latest output of every node,
/// checkpoints, attempts left in progress (orphaned), backoffs still
/// running (a failed last attempt with retry_at_ms, its node pending), and
/// loop states. Outputs are moved out of `outputs` (in attempt order, as
/// the reader gives them). `retry` (a failed or cancelled run driven
/// again): failed nodes run again too, each with a fresh retry budget
/// (resume_state::retry_base), and a loop that failed is running again.
recovered_run recover(const std::vector<store::node_row>& nodes,
                      const std::vector<store::attempt_row>& attempts,
                      std::vector<store::output_row>& outputs,
                      const std::vector<store::loop_row>& loops = {}, bool retry = false);

/// RUN_NOT_RESUMABLE when the run has finished or continued as new (a
/// failed or cancelled run may be driven again).
void refuse_ended(const store::run_row& run);

} // namespace smithers::core
