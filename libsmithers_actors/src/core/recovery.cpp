#include "core/recovery.hpp"

#include <smithers/status.hpp>

#include <algorithm>
#include <unordered_set>

namespace smithers::core {

namespace {

// An attempt that ended WORKER_LOST and was run again for free (its meta
// says so; anything else there, from a damaged file, does not count).
bool is_redispatch(const store::attempt_row& a) {
  if (!a.meta.is_object()) return false;
  auto it = a.meta.find("redispatch");
  return it != a.meta.end() && it->is_boolean() && it->get<bool>();
}

// An attempt whose agent failed to authenticate, retried at once with the
// next agent of its chain (no retry used).
bool is_next_agent(const store::attempt_row& a) {
  if (!a.meta.is_object()) return false;
  auto it = a.meta.find("next_agent");
  return it != a.meta.end() && it->is_boolean() && it->get<bool>();
}

} // namespace

recovered_run recover(const std::vector<store::node_row>& nodes,
                      const std::vector<store::attempt_row>& attempts,
                      std::vector<store::output_row>& outputs,
                      const std::vector<store::loop_row>& loops, bool retry) {
  recovered_run out;
  resume_state& r = out.state;
  // The latest output of each node is what templates read: the greatest
  // (outer iterations..., iteration). Nodes with more than one iteration
  // (or inside nested loops) keep every one, for {{outputs.X@N}}.
  std::unordered_set<std::string> looped;
  for (const auto& o : outputs)
    if (o.iteration > 0 || o.node_id.find('@') != std::string::npos)
      looped.emplace(base_id(o.node_id));
  auto order = [](const store::output_row& o) {
    std::vector<std::int64_t> its;
    std::string_view rest = o.node_id;
    for (auto at = rest.find('@'); at != std::string_view::npos; at = rest.find('@')) {
      rest = rest.substr(at + 1);
      std::int64_t n = 0;
      for (char c : rest.substr(0, rest.find('@')))
        n = n * 10 + (c - '0');
      its.push_back(n);
    }
    its.push_back(o.iteration);
    return its;
  };
  std::unordered_map<std::string, std::vector<std::int64_t>> latest;
  for (auto& o : outputs) {
    std::string id{base_id(o.node_id)};
    if (!looped.count(id)) { // one row: its only output
      r.outputs[id] = std::move(o.value);
      continue;
    }
    r.history[node_key{o.node_id, o.iteration}] = o.value;
    auto its = order(o);
    auto [it, fresh] = latest.emplace(id, its);
    if (!fresh && its < it->second) continue;
    it->second = std::move(its);
    r.latest[id] = node_key{o.node_id, o.iteration};
    r.outputs[id] = std::move(o.value);
  }
  for (const auto& l : loops) {
    bool done = l.state == "finished" || (l.state == "failed" && !retry);
    r.loops[l.loop_id] = loop_state{l.iteration, done};
    if (l.state == "failed" && retry) r.failed_loops.push_back(l.loop_id);
  }
  for (const auto& n : nodes) {
    auto s = node_state_from(n.state).value_or(node_state::pending);
    // Whatever was in flight or cancelled runs again; on a retry, what
    // failed too.
    if (s == node_state::in_progress || s == node_state::cancelled ||
        (retry && s == node_state::failed)) {
      if (retry && s != node_state::in_progress) r.retried.push_back({n.node_id, n.iteration});
      s = node_state::pending;
    }
    r.states[node_key{n.node_id, n.iteration}] = s;
  }
  key_map<const store::attempt_row*> last;
  for (const auto& a : attempts) {
    node_key k{a.node_id, a.iteration};
    auto& count = r.attempts[k];
    count = std::max(count, a.attempt);
    if (a.state == attempt_state::in_progress) {
      r.orphaned.push_back({k, a.attempt});
      if (a.meta.is_object() && a.meta.contains("pgid")) out.orphan_groups.push_back(a.meta);
    }
    if (!a.heartbeat.is_null()) r.checkpoints[k] = a.heartbeat;
    auto& l = last[k];
    if (!l || l->attempt < a.attempt) l = &a;
  }
  // A retry gives every node that runs again a fresh retry budget. Without
  // one, attempts re-dispatched for free (a worker was lost) do not count.
  if (retry) {
    for (const auto& [k, n] : r.attempts)
      r.retry_base[k] = n;
  } else {
    for (const auto& a : attempts)
      if (is_redispatch(a) || is_next_agent(a)) ++r.retry_base[node_key{a.node_id, a.iteration}];
    // Agents stay disabled across a crash; a retry (the run failed or was
    // cancelled, and is driven again) asks them all again.
    // The agent an attempt asked is in its meta, written with its start.
    for (const auto& a : attempts) {
      if (!a.error.is_object() || !a.meta.is_object()) continue;
      auto code = a.error.find("code"); // a damaged row may hold anything
      if (code == a.error.end() || *code != errc::agent_auth_failed) continue;
      auto ag = a.meta.find("agent");
      if (ag == a.meta.end() || !ag->is_object()) continue;
      if (auto id = ag->find("id"); id != ag->end() && id->is_string())
        r.disabled_agents.insert(id->get<std::string>());
    }
  }
  // The free re-dispatches each node has used in a row, up to its last
  // attempt (the reader returns attempts in order of node and number).
  if (!retry) {
    key_map<std::int64_t> streaks;
    for (const auto& a : attempts) {
      auto& streak = streaks[node_key{a.node_id, a.iteration}];
      streak = is_redispatch(a) ? streak + 1 : 0;
    }
    for (auto& [k, n] : streaks)
      if (n > 0) r.lost_streak[k] = n;
  }
  // Only a node that runs again reads its checkpoint.
  for (auto it = r.checkpoints.begin(); it != r.checkpoints.end();) {
    auto st = r.states.find(it->first);
    bool ended = st != r.states.end() && (st->second == node_state::finished ||
                                          st->second == node_state::skipped);
    it = ended ? r.checkpoints.erase(it) : std::next(it);
  }
    for (const auto& [k, a] : last) {
    // A node with attempts but no row of its own counts as pending.
    auto st = r.states.emplace(k, node_state::pending).first;
    if (a->state == attempt_state::failed && st->second == node_state::pending &&
        a->meta.is_object() && a->meta.contains("retry_at_ms") &&
        a->meta["retry_at_ms"].is_number_integer())
      r.retry_at_ms[k] = a->meta["retry_at_ms"].get<std::int64_t>();
  }
  return out;
}

void refuse_ended(const store::run_row& run) {
  auto status = run_status_from(run.status);
  if (status == run_status::finished)
    throw smithers_error(errc::run_not_resumable,
                         "run \"" + run.run_id + "\" has finished: there is nothing to resume");
  if (status == run_status::continued)
    throw smithers_error(errc::run_not_resumable,
                         "run \"" + run.run_id +
                             "\" continued as a new run (see `smithers inspect " + run.run_id +
                             "`): resume that one");
}

} // namespace smithers::core
