#include "store/cancel.hpp"

#include "store/reader.hpp"
#include "store/writer.hpp"
#include "util/json_text.hpp"
#include "util/owner.hpp"

#include <smithers/node_key.hpp>
#include <smithers/events.hpp>
#include <smithers/status.hpp>

namespace smithers::store {

unowned_cancel_result cancel_unowned_run(database& db, const unowned_cancel& req) {
  reader rd{db};
  auto run = rd.run(req.run_id);
  if (!run) throw smithers_error(errc::run_not_found, "no run with id \"" + req.run_id + "\"");
  auto status = run_status_from(run->status);
  if (status && is_terminal(*status))
    throw smithers_error(errc::invalid_argument,
                         "run \"" + req.run_id + "\" has already ended (" + run->status + ")");

  unowned_cancel_result res;
  std::vector<command> batch;
  batch.push_back(claim_run{req.run_id, run->owner_id, run->heartbeat_ms, req.canceller_id,
                            req.canceller_pid, req.now_ms});
  const json why = req.why.to_json();
  std::int64_t seq = rd.max_event_seq(req.run_id) + 1;
  const std::int64_t first_seq = seq;
  std::string chunk = "[";
  auto event = [&](const char* type, const json& fields) {
    if (seq > first_seq) chunk += ',';
    append_chunk_entry(chunk, type, req.now_ms, fields);
    ++seq;
  };

  for (const auto& a : rd.attempts(req.run_id)) {
    if (a.state != attempt_state::in_progress) continue;
    finish_attempt fa;
    fa.run_id = a.run_id;
    fa.key = {{a.node_id, a.iteration}, a.attempt};
    fa.state = attempt_state::cancelled;
    fa.finished_ms = req.now_ms;
    fa.error = why;
    batch.push_back(std::move(fa));
    if (a.meta.is_object() && a.meta.contains("pgid")) res.process_groups.push_back(a.meta);
    event(event_type::node_cancelled, {{"node_id", a.node_id},
                                       {"iteration", a.iteration},
                                       {"attempt", a.attempt},
                                       {"reason", cancel_reason::cancelled},
                                       {"error", why}});
    ++res.attempts;
  }
  std::string states; // the frame's delta: {"id":"cancelled",...}
  for (auto n : rd.nodes(req.run_id)) {
    auto s = node_state_from(n.state);
    if (s == node_state::finished || s == node_state::failed || s == node_state::skipped ||
        s == node_state::cancelled)
      continue;
    bool was_running = s == node_state::in_progress;
    n.state = to_string(node_state::cancelled);
    n.updated_ms = req.now_ms;
    if (!states.empty()) states += ',';
    // Named as the run core names nodes in snapshots ("id", "id@N").
    util::append_json_string(states, to_string(node_key{n.node_id, n.iteration}));
    states += ":\"cancelled\"";
    // An attempt in flight already has its NodeCancelled above.
    if (!was_running)
      event(event_type::node_cancelled, {{"node_id", n.node_id},
                                         {"iteration", n.iteration},
                                         {"reason", cancel_reason::cancelled},
                                         {"error", why}});
    batch.push_back(upsert_node{std::move(n)});
    ++res.nodes;
  }
  // A frame, so time travel sees the states the run ended with.
  auto frames = rd.frame_summaries(req.run_id);
  if (!frames.empty() && !states.empty()) {
    frame_row f;
    f.run_id = req.run_id;
    f.frame_no = frames.back().frame_no + 1;
    f.tree_hash = frames.back().tree_hash;
    f.created_ms = req.now_ms;
    f.keyframe = false;
    batch.push_back(store_frame{std::move(f), nullptr, "{\"states\":{" + states + "}}"});
    event(event_type::frame_committed, {{"frame_no", frames.back().frame_no + 1},
                                        {"tree_hash", frames.back().tree_hash},
                                        {"changes", res.nodes},
                                        {"keyframe", false}});
    event(event_type::snapshot_captured,
          {{"frame_no", frames.back().frame_no + 1}, {"keyframe", false}, {"nodes", res.nodes}});
  }
  batch.push_back(cancel_waits{req.run_id, req.now_ms});
  event(event_type::run_status_changed, {{"status", to_string(run_status::cancelled)}});
  event(event_type::run_cancelled, {{"error", why}});
  chunk += ']';
  batch.push_back(append_events{req.run_id, first_seq, seq - first_seq, std::move(chunk)});
  batch.push_back(
      update_run_status{req.run_id, to_string(run_status::cancelled), why, req.now_ms, req.now_ms});
  writer{db}.apply(batch);
  return res;
}

run_driver driver_of(const run_row& run, std::int64_t now_ms, std::int64_t stale_after_ms) {
  if (run.owner_id.empty()) return run_driver::nobody;
  switch (util::check_owner(run.owner_id)) {
  case util::owner_state::alive:
    return run_driver::alive;
  case util::owner_state::dead:
    return run_driver::gone;
  case util::owner_state::unknown:
    break;
  }
  return now_ms - run.heartbeat_ms < stale_after_ms ? run_driver::alive : run_driver::gone;
}

cancel_outcome cancel_stored_run(database& db, const unowned_cancel& req,
                                 std::int64_t stale_after_ms) {
  cancel_outcome out;
  auto run = reader{db}.run(req.run_id);
  if (!run) throw smithers_error(errc::run_not_found, "no run with id \"" + req.run_id + "\"");
  auto status = run_status_from(run->status);
  if (status && is_terminal(*status))
    throw smithers_error(errc::invalid_argument,
                         "run \"" + req.run_id + "\" has already ended (" + run->status + ")");
  out.run = *run;
  if (driver_of(*run, req.now_ms, stale_after_ms) == run_driver::alive) {
    writer{db}.apply({request_cancel{req.run_id}});
    out.requested = true;
    return out;
  }
  out.ended = cancel_unowned_run(db, req);
  return out;
}

} // namespace smithers::store
