#include "store/fork.hpp"

#include "store/reader.hpp"
#include "store/writer.hpp"
#include "util/ids.hpp"

#include <smithers/events.hpp>
#include <smithers/limits.hpp>
#include <smithers/node_key.hpp>
#include <smithers/status.hpp>

#include <algorithm>
#include <deque>
#include <set>
#include <unordered_map>

namespace smithers::store {

namespace {

// Task id -> ids of the tasks that need it, from a canonical tree.
void collect_dependents(const json& n,
                        std::unordered_map<std::string, std::vector<std::string>>& out) {
  if (n.is_object()) {
    if (auto t = n.find("task"); t != n.end() && t->is_string()) {
      if (auto needs = n.find("needs"); needs != n.end() && needs->is_array())
        for (const auto& d : *needs)
          if (d.is_string()) out[d.get<std::string>()].push_back(t->get<std::string>());
    }
    for (const auto& [k, v] : n.items())
      if (v.is_array() || v.is_object()) collect_dependents(v, out);
  } else if (n.is_array()) {
    for (const auto& v : n)
      collect_dependents(v, out);
  }
}

} // namespace

fork_result fork_run(database& db, const fork_request& req) {
  reader rd{db};
  auto parent = rd.run(req.run_id);
  if (!parent) throw smithers_error(errc::run_not_found, "no run with id \"" + req.run_id + "\"");
  json snap = rd.snapshot_at(req.run_id, req.frame_no);
  if (snap.is_null()) {
    auto n = rd.frame_count(req.run_id);
    throw smithers_error(errc::invalid_argument,
                         "run \"" + req.run_id + "\" has no frame " + std::to_string(req.frame_no) +
                             (n ? " (frames 0.." + std::to_string(n - 1) + ")" : " (no frames)"));
  }
  const json& states = snap["states"];
  std::unordered_map<std::string, std::vector<std::string>> dependents;
  collect_dependents(rd.tree(snap["tree_hash"].get<std::string>()), dependents);
  std::set<std::string> reset;
  std::deque<std::string> frontier;
  for (const auto& id : req.reset_nodes) {
    if (!states.contains(id))
      throw smithers_error(errc::invalid_argument, "run \"" + req.run_id + "\" has no node \"" +
                                                       id + "\" at frame " +
                                                       std::to_string(req.frame_no));
    frontier.push_back(id);
  }
  // Reset nodes are named as the snapshot names them ("a", "a@2" for an
  // iteration); what needs one is reset in the same iteration (or, outside
  // the loop, as it is).
  while (!frontier.empty()) {
    auto id = frontier.front();
    frontier.pop_front();
    if (!reset.insert(id).second) continue;
    auto key = node_key_from_string(id);
    if (!key) continue;
    for (const auto& d : dependents[key->id]) {
      std::string same = to_string(node_key{d, key->iteration});
      if (states.contains(same))
        frontier.push_back(same);
      else if (states.contains(d))
        frontier.push_back(d);
    }
  }

  fork_result res;
  // The default id is the parent's, cut so that "-fork-<hex>" still fits.
  const std::string suffix = "-fork-" + util::random_hex(4);
  // '~' is a chain's: a fork of "c~2" is "c.2-fork-<hex>".
  std::string base = req.run_id.substr(0, limits::max_run_id_length - suffix.size());
  std::replace(base.begin(), base.end(), '~', '.');
  res.run_id = req.new_run_id.empty() ? base + suffix : req.new_run_id;
  if (auto err = util::check_new_run_id(res.run_id)) throw smithers_error(*err);
  if (rd.run_exists(res.run_id))
    throw smithers_error(errc::invalid_run_id,
                         "a run with id \"" + res.run_id + "\" already exists");
  res.reset.assign(reset.begin(), reset.end());

  run_row child = *parent;
  child.run_id = res.run_id;
  // Inert until someone starts it (`fork --run`, `resume`): supervise
  // only picks up `running` runs.
  child.status = to_string(run_status::created);
  child.owner_id.clear(); // nobody drives it yet: resume takes it at once
  child.owner_pid = 0;
  child.heartbeat_ms = 0;
  child.cancel_requested = false;
  child.parent_run_id = req.run_id;
  child.error = nullptr;
  child.created_ms = child.updated_ms = req.now_ms;
  child.finished_ms.reset();
  if (!child.config.is_object()) child.config = json::object();
  child.config.erase("continued_from"); // a fork continues nothing
  child.config["fork"] = {
      {"parent_run_id", req.run_id}, {"frame_no", req.frame_no}, {"reset_nodes", res.reset}};

  std::vector<command> batch;
  batch.push_back(insert_run{child});
  const json& outputs = snap["outputs"];
  for (const auto& [id, st] : states.items()) {
    // Snapshot keys name nodes "id" or "id@N" (iteration N).
    auto key = node_key_from_string(id);
    if (!key)
      throw smithers_error(errc::db_error, "run \"" + req.run_id + "\" frame " +
                                               std::to_string(req.frame_no) +
                                               " names a node \"" + id + "\" that cannot be");
    std::string state = st.get<std::string>();
    if (reset.count(id) || state == "in-progress" || state == "cancelled") state = "pending";
    node_row n;
    n.run_id = res.run_id;
    n.node_id = key->id;
    n.iteration = key->iteration;
    n.state = state;
    n.updated_ms = req.now_ms;
    bool carried = state == "finished" && outputs.contains(id);
    if (carried) n.attempts = 1;
    batch.push_back(upsert_node{n});
    if (carried) {
      // An output lives on the attempt that produced it: a carried-over one
      // gets a finished attempt served from the parent (cached, and saying so).
      attempt_row a;
      a.run_id = res.run_id;
      a.node_id = key->id;
      a.iteration = key->iteration;
      a.state = attempt_state::finished;
      a.started_ms = req.now_ms;
      a.finished_ms = req.now_ms;
      a.cached = true;
      a.meta = {{"forked_from", {{"run_id", req.run_id}, {"frame_no", req.frame_no}}}};
      a.output = outputs[id];
      batch.push_back(insert_attempt{std::move(a)});
    }
  }
  // Loops stand where they stood at the frame.
  if (snap.contains("loops"))
    for (const auto& [id, st] : snap["loops"].items()) {
      if (!st.is_object() || !st.value("iteration", json()).is_number_integer()) continue;
      loop_row l;
      l.run_id = res.run_id;
      l.loop_id = id;
      l.iteration = st["iteration"].get<std::int64_t>();
      l.state = st.value("done", false) ? "finished" : "running";
      l.updated_ms = req.now_ms;
      batch.push_back(upsert_loop{std::move(l)});
    }
  json forked = {{"run_id", req.run_id}, {"frame_no", req.frame_no}, {"reset_nodes", res.reset}};
  event_row started{
      res.run_id,
      0,
      event_type::run_started,
      req.now_ms,
      {{"workflow", parent->workflow_name}, {"input", parent->input}, {"forked_from", forked}}};
  batch.push_back(append_event{started});
  writer{db}.apply(batch);
  return res;
}

} // namespace smithers::store
