#include <smithers/admin.hpp>
#include <smithers/node_key.hpp>

#include "admin/run_store_impl.hpp"
#include "store/cancel.hpp"
#include "store/database.hpp"
#include "store/fork.hpp"
#include "store/inbox.hpp"
#include "store/reader.hpp"
#include "util/clock.hpp"
#include "util/owner.hpp"

#include <smithers/status.hpp>

#include <map>
#include <unistd.h>

namespace smithers {

namespace {

run_info from_row(const store::run_row& r) {
  run_info i;
  i.run_id = r.run_id;
  i.workflow_name = r.workflow_name;
  i.status = r.status;
  i.input = r.input;
  i.config = r.config;
  i.workflow_hash = r.workflow_hash;
  i.workflow_path = r.workflow_path;
  i.vcs_revision = r.vcs_revision;
  i.cwd = r.cwd;
  i.owner_id = r.owner_id;
  i.owner_pid = r.owner_pid;
  i.heartbeat_ms = r.heartbeat_ms;
  i.cancel_requested = r.cancel_requested;
  i.parent_run_id = r.parent_run_id;
  i.error = r.error;
  i.created_ms = r.created_ms;
  i.updated_ms = r.updated_ms;
  i.finished_ms = r.finished_ms;
  return i;
}

store::run_row to_row(const run_info& i) {
  store::run_row r;
  r.run_id = i.run_id;
  r.status = i.status;
  r.owner_id = i.owner_id;
  r.owner_pid = i.owner_pid;
  r.heartbeat_ms = i.heartbeat_ms;
  return r;
}

run_driver from_store(store::run_driver d) {
  switch (d) {
  case store::run_driver::alive:
    return run_driver::alive;
  case store::run_driver::gone:
    return run_driver::gone;
  case store::run_driver::nobody:
    break;
  }
  return run_driver::nobody;
}

// What each frame changed: a delta holds exactly that; a keyframe holds
// every node, compared here with the states before it.
std::vector<json> frame_changes(const store::reader& rd, const std::string& run_id) {
  std::vector<json> changed;
  std::map<std::string, std::string> now;
  for (auto& [no, states] : rd.frame_states(run_id)) {
    json diff = json::object();
    for (const auto& [id, st] : states.items()) {
      if (!st.is_string()) continue;
      auto& cur = now[id];
      if (cur != st.get<std::string>()) diff[id] = st;
      cur = st.get<std::string>();
    }
    changed.push_back(std::move(diff));
  }
  return changed;
}

std::string dumped(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

json run_info::to_json() const {
  return {{"run_id", run_id},
          {"workflow", workflow_name},
          {"status", status},
          {"input", input},
          {"config", config},
          {"workflow_path", workflow_path},
          {"workflow_hash", workflow_hash},
          {"cwd", cwd},
          {"owner_pid", owner_pid},
          {"error", error},
          {"created_ms", created_ms},
          {"updated_ms", updated_ms},
          {"finished_ms", finished_ms ? json(*finished_ms) : json()}};
}

run_driver driver_of(const run_info& run, std::chrono::milliseconds stale_after) {
  return from_store(store::driver_of(to_row(run), util::now_ms(), stale_after.count()));
}

bool owned_on_this_host(const run_info& run) {
  auto owner = util::parse_owner_id(run.owner_id);
  return owner && owner->host == util::host_name();
}

run_store::run_store(std::unique_ptr<impl> im) : impl_(std::move(im)) {}
run_store::run_store(run_store&&) noexcept = default;
run_store& run_store::operator=(run_store&&) noexcept = default;
run_store::~run_store() = default;

std::optional<run_store> run_store::open_existing(const std::string& path) {
  auto db = store::database::open_existing(path);
  if (!db) return std::nullopt;
  return run_store{std::make_unique<impl>(impl{path, std::move(*db)})};
}

run_store run_store::open_for(const std::string& path, const std::string& run_id) {
  auto s = open_existing(path);
  if (!s)
    throw smithers_error(errc::run_not_found,
                         "no run with id \"" + run_id + "\" (no database at " + path + ")");
  return std::move(*s);
}

std::vector<run_info> run_store::runs(const std::string& status, std::size_t limit) const {
  std::vector<run_info> out;
  for (const auto& r : store::reader{impl_->db}.runs(status, limit))
    out.push_back(from_row(r));
  return out;
}

std::size_t run_store::run_count(const std::string& status) const {
  return store::reader{impl_->db}.run_count(status);
}

std::vector<run_info> run_store::runs(const run_query& q) const {
  std::vector<run_info> out;
  for (const auto& r : store::reader{impl_->db}.runs_page(q.status, q.workflow, q.limit, q.offset))
    out.push_back(from_row(r));
  return out;
}

std::size_t run_store::run_count(const run_query& q) const {
  return store::reader{impl_->db}.run_count(q.status, q.workflow);
}

std::vector<run_info> run_store::runs_updated_since(std::int64_t since_ms,
                                                    std::size_t limit) const {
  std::vector<run_info> out;
  for (const auto& r : store::reader{impl_->db}.runs_updated_since(since_ms, limit))
    out.push_back(from_row(r));
  return out;
}

std::int64_t run_store::data_version() const {
  return store::reader{impl_->db}.data_version();
}

std::optional<run_info> run_store::find(const std::string& run_id) const {
  auto r = store::reader{impl_->db}.run(run_id);
  if (!r) return std::nullopt;
  return from_row(*r);
}

run_info run_store::get(const std::string& run_id) const {
  auto r = find(run_id);
  if (!r) throw smithers_error(errc::run_not_found, "no run with id \"" + run_id + "\"");
  return std::move(*r);
}

json run_store::inspect(const std::string& run_id) const {
  auto run = get(run_id);
  store::reader rd{impl_->db};
  json nodes = json::array();
  for (const auto& n : rd.nodes(run_id))
    nodes.push_back({{"node_id", n.node_id},
                     {"iteration", n.iteration},
                     {"state", n.state},
                     {"kind", n.kind},
                     {"label", n.label},
                     {"attempts", n.attempts}});
  json attempts = json::array();
  // What an attempt's meta says of its work (docs/storage.md): the agent
  // that answered, its worktree, output left out of events.
  auto meta_part = [](const store::attempt_row& a, const char* key) {
    if (!a.meta.is_object()) return json();
    auto it = a.meta.find(key);
    return it == a.meta.end() ? json() : *it;
  };
  for (const auto& a : rd.attempts(run_id))
    attempts.push_back(
        {{"node_id", a.node_id},
         {"iteration", a.iteration},
         {"attempt", a.attempt},
         {"state", a.state},
         {"started_ms", a.started_ms},
         {"finished_ms", a.finished_ms ? json(*a.finished_ms) : json()},
         {"duration_ms", a.finished_ms ? json(*a.finished_ms - a.started_ms) : json()},
         {"error", a.error},
         {"heartbeat_ms", a.heartbeat_ms ? json(*a.heartbeat_ms) : json()},
         {"heartbeat_bytes", a.heartbeat.is_null() ? 0 : dumped(a.heartbeat).size()},
         {"cached", a.cached},
         {"worker", a.worker.empty() ? json() : json(a.worker)},
         {"agent", meta_part(a, "agent")},
         {"worktree", meta_part(a, "worktree")},
         {"output_dropped_bytes", meta_part(a, "output_dropped_bytes")}});
  // Keyed like frames' snapshots: "id", or "id@N" for iteration N.
  json outputs = json::object();
  for (const auto& o : rd.outputs(run_id))
    outputs[to_string(node_key{o.node_id, o.iteration})] = o.value;
  json loops = json::array();
  for (const auto& l : rd.loops(run_id))
    loops.push_back({{"loop_id", l.loop_id},
                     {"iteration", l.iteration},
                     {"state", l.state},
                     {"updated_ms", l.updated_ms}});
  // Lineage of continue-as-new: the run this one continued, and the one
  // that continues it.
  json lineage = json::object();
  if (run.config.is_object() && run.config.contains("continued_from"))
    lineage["continued_from"] = run.config["continued_from"];
  for (const auto& c : rd.children(run_id))
    if (c.config.is_object() && c.config.contains("continued_from"))
      lineage["continued_as"] = c.run_id;
  json waiting = json::array();
  for (const auto& w : rd.waits(run_id)) {
    if (w.state != "waiting") continue;
    json d = w.details.is_object() ? w.details : json::object();
    waiting.push_back({{"node_id", w.key.id},
                       {"iteration", w.key.iteration},
                       {"kind", w.kind == "gate" ? "approval" : w.kind},
                       {"gate", w.kind == "gate"},
                       {"name", w.name},
                       {"title", d.value("title", std::string{})},
                       {"summary", d.value("summary", std::string{})},
                       {"since_ms", w.since_ms},
                       {"deadline_ms", w.deadline_ms ? json(*w.deadline_ms) : json()}});
  }
  json inbox = json::array();
  for (const auto& e : rd.open_inbox(run_id)) {
    json entry = {{"id", e.id}, {"kind", e.kind}, {"created_ms", e.created_ms}};
    if (e.kind == "approval") {
      entry["node_id"] = e.key.id;
      entry["iteration"] = e.key.iteration;
      entry["decision"] = e.payload;
    } else {
      entry["name"] = e.name;
      entry["data"] = e.payload;
    }
    inbox.push_back(std::move(entry));
  }
  return {{"run", run.to_json()}, {"lineage", lineage}, {"nodes", nodes},
          {"attempts", attempts}, {"outputs", outputs}, {"loops", loops},
          {"waiting", waiting},   {"inbox", inbox},     {"frames", rd.frame_count(run_id)}};
}

std::vector<json> run_store::events(const std::string& run_id, std::int64_t after_seq,
                                    std::size_t limit) const {
  std::vector<json> out;
  for (auto& e : store::reader{impl_->db}.events(run_id, after_seq, limit))
    out.push_back(std::move(e.payload));
  return out;
}

json run_store::latest_tree(const std::string& run_id) const {
  get(run_id);
  store::reader rd{impl_->db};
  json out = {
      {"frame_no", nullptr}, {"tree_hash", nullptr}, {"tree", nullptr}, {"states", nullptr}};
  auto last = rd.last_frame(run_id);
  if (!last) return out;
  json snap = rd.snapshot_at(run_id, *last);
  if (snap.is_null()) return out;
  out["frame_no"] = snap["frame_no"];
  out["tree_hash"] = snap["tree_hash"];
  out["states"] = snap["states"];
  if (snap["tree_hash"].is_string()) out["tree"] = rd.tree(snap["tree_hash"].get<std::string>());
  return out;
}

json run_store::timeline(const std::string& run_id) const {
  auto run = get(run_id);
  store::reader rd{impl_->db};
  auto changed = frame_changes(rd, run_id);
  json frames = json::array();
  auto summaries = rd.frame_summaries(run_id);
  for (std::size_t i = 0; i < summaries.size(); ++i) {
    const auto& f = summaries[i];
    frames.push_back({{"frame_no", f.frame_no},
                      {"created_ms", f.created_ms},
                      {"tree_hash", f.tree_hash},
                      {"keyframe", f.keyframe},
                      {"changes", f.changes},
                      {"changed", i < changed.size() ? changed[i] : json::object()}});
  }
  // Children are forks, or the run that continues this one (continue-as-new).
  json forks = json::array();
  json continued_as;
  for (const auto& c : rd.children(run_id)) {
    if (c.config.is_object() && c.config.contains("continued_from")) {
      continued_as = c.run_id;
      continue;
    }
    const json fork = c.config.is_object() && c.config.contains("fork") ? c.config["fork"]
                                                                       : json::object();
    forks.push_back({{"run_id", c.run_id},
                     {"status", c.status},
                     {"frame_no", fork.value("frame_no", json())},
                     {"reset_nodes", fork.value("reset_nodes", json::array())}});
  }
  json continued_from;
  if (run.config.is_object() && run.config.contains("continued_from"))
    continued_from = run.config["continued_from"];
  return {{"run_id", run_id},
          {"parent_run_id", run.parent_run_id.empty() ? json() : json(run.parent_run_id)},
          {"continued_from", continued_from},
          {"continued_as", continued_as},
          {"frames", frames},
          {"forks", forks}};
}

namespace {

// An owner on another host that has not heartbeated for this long is gone
// (engine.hpp's default_stale_after; admin does not see the engine's header).
constexpr std::chrono::milliseconds owner_stale_after{30000};

// Stored on a connection of its own (a second writer next to the owner's:
// BEGIN IMMEDIATE and busy_timeout make them take turns).
template <class F> inbox_report store_inbox(const std::string& path, F&& record) {
  auto db = store::database::open(path, store::open_mode::read_write);
  store::inbox_row row = record(db);
  inbox_report rep;
  rep.id = row.id;
  rep.node_id = row.key.id;
  rep.iteration = row.key.iteration;
  if (auto run = store::reader{db}.run(row.run_id)) {
    rep.run = from_row(*run);
    // Taken within a poll by a live owner; otherwise it waits for a resume.
    rep.needs_resume = driver_of(rep.run, owner_stale_after) != run_driver::alive;
  }
  return rep;
}

} // namespace

inbox_report run_store::decide(const std::string& run_id, const std::string& node_id,
                               std::optional<std::int64_t> iteration, bool approved,
                               const std::string& by, const std::string& note) {
  store::decision_request req{run_id, node_id, iteration, approved, by, note, util::now_ms()};
  return store_inbox(impl_->path,
                     [&](store::database& db) { return store::record_decision(db, req); });
}

inbox_report run_store::signal(const std::string& run_id, const std::string& name,
                               const json& payload) {
  store::signal_request req{run_id, name, payload, util::now_ms()};
  return store_inbox(impl_->path,
                     [&](store::database& db) { return store::record_signal(db, req); });
}

bool run_store::wait_ready(const std::string& run_id) const {
  return store::reader{impl_->db}.wait_ready(run_id, util::now_ms());
}

std::int64_t run_store::clear_cache(const std::string& workflow) {
  auto db = store::database::open(impl_->path, store::open_mode::read_write);
  return store::reader{db}.clear_cache(workflow);
}

std::vector<std::string> run_store::ready_waiting_runs() const {
  return store::reader{impl_->db}.ready_waiting_runs(util::now_ms());
}

cancel_report run_store::cancel(const std::string& run_id, const std::string& reason,
                                std::chrono::milliseconds stale_after) {
  // A second writer next to the owner's: BEGIN IMMEDIATE and busy_timeout
  // make them take turns.
  auto db = store::database::open(impl_->path, store::open_mode::read_write);
  store::unowned_cancel req{run_id, util::make_owner_id(), static_cast<std::int64_t>(::getpid()),
                            util::now_ms(), error{errc::run_cancelled, reason}};
  store::cancel_outcome out;
  for (int tries = 0;; ++tries) {
    try {
      out = store::cancel_stored_run(db, req, stale_after.count());
      break;
    } catch (const smithers_error& e) {
      // A resumer claimed the run between our read and our write: look again.
      if (e.code() != errc::run_resume_claim_failed || tries == 3) throw;
    }
  }
  cancel_report rep;
  rep.requested = out.requested;
  rep.run = from_row(out.run);
  if (out.requested) return rep;
  for (const auto& m : out.ended.process_groups)
    util::end_orphaned_group(m.value("host", std::string{}), m.value("pgid", std::int64_t{0}),
                             m.value("pgid_start", std::int64_t{0}));
  rep.attempts = out.ended.attempts;
  rep.nodes = out.ended.nodes;
  return rep;
}

fork_report run_store::fork(const std::string& run_id, std::int64_t frame_no,
                            const std::vector<std::string>& reset_nodes,
                            const std::string& new_run_id) {
  auto db = store::database::open(impl_->path, store::open_mode::read_write);
  auto forked = store::fork_run(db, {run_id, frame_no, reset_nodes, new_run_id, util::now_ms()});
  fork_report rep;
  rep.run_id = forked.run_id;
  rep.reset = forked.reset;
  rep.workflow_path = store::reader{db}.run(run_id)->workflow_path;
  return rep;
}

} // namespace smithers
