// Recovery from stored rows. No CAF.
#include "actors/recovery.hpp"

#include <smithers/errors.hpp>

#include <algorithm>

namespace smithers::actors {

recovered_run recover_run(const std::vector<store::node_row>& nodes,
                          const std::vector<store::attempt_row>& attempts,
                          std::vector<store::output_row> outputs) {
  recovered_run r;
  for (auto& o : outputs)
    r.outputs[o.node_id] = std::move(o.value);
  for (const auto& n : nodes) {
    auto s = node_state_from(n.state).value_or(node_state::pending);
    // Whatever was in flight or cancelled runs again.
    if (s == node_state::in_progress || s == node_state::cancelled) s = node_state::pending;
    r.states[n.node_id] = s;
  }
  std::unordered_map<std::string, const store::attempt_row*> last;
  for (const auto& a : attempts) {
    r.attempts[a.node_id] = std::max(r.attempts[a.node_id], a.attempt);
    if (a.state == attempt_state::in_progress) {
      r.orphaned.emplace_back(a.node_id, a.attempt);
      if (a.meta.is_object() && a.meta.contains("pgid")) r.orphan_groups.push_back(a.meta);
    }
    if (!a.heartbeat.is_null()) r.checkpoints[a.node_id] = a.heartbeat;
    last[a.node_id] = &a;
  }
  // A node with attempts but no row of its own counts as pending (the
  // default state), as it always has.
  for (const auto& [id, a] : last) {
    if (a->state == attempt_state::failed && r.states[id] == node_state::pending &&
        a->meta.is_object() && a->meta.contains("retry_at_ms"))
      r.retry_at_ms[id] = a->meta["retry_at_ms"].get<std::int64_t>();
  }
  return r;
}

void refuse_ended(const store::run_row& run) {
  auto status = run_status_from(run.status);
  if (status && is_terminal(*status))
    throw smithers_error(errc::run_not_resumable,
                         "run \"" + run.run_id + "\" has ended (" + run.status + ")");
}

} // namespace smithers::actors
