#include "store/reader.hpp"

#include <smithers/node_key.hpp>

#include <algorithm>
#include <limits>

namespace smithers::store {

namespace {

constexpr const char* run_columns =
    "run_id, workflow_name, status, input_json, config_json, workflow_hash, workflow_path, "
    "vcs_revision, owner_id, owner_pid, heartbeat_ms, cancel_requested, parent_run_id, "
    "error_json, created_ms, updated_ms, finished_ms, cwd, handover_to";

run_row read_run(const statement& s) {
  run_row r;
  r.run_id = s.column_text(0);
  r.workflow_name = s.column_text(1);
  r.status = s.column_text(2);
  r.input = s.column_json(3);
  r.config = s.column_json(4);
  r.workflow_hash = s.column_text(5);
  r.workflow_path = s.column_text(6);
  r.vcs_revision = s.column_text(7);
  r.owner_id = s.column_text(8);
  r.owner_pid = s.column_int(9);
  r.heartbeat_ms = s.column_int(10);
  r.cancel_requested = s.column_int(11) != 0;
  r.parent_run_id = s.column_text(12);
  r.error = s.column_json(13);
  r.created_ms = s.column_int(14);
  r.updated_ms = s.column_int(15);
  r.finished_ms = s.column_opt_int(16);
  r.cwd = s.column_text(17);
  r.handover_to = s.column_text(18);
  return r;
}

// SQLite's LIMIT is signed; a size_t beyond it means "no limit".
std::int64_t sql_limit(std::size_t limit) {
  constexpr auto max = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  return static_cast<std::int64_t>(limit > max ? max : limit);
}

} // namespace

std::optional<std::int64_t> reader::key_base(const std::string& run_id) const {
  statement s(db_.handle(), "SELECT run_no << 32 FROM runs WHERE run_id = ?1");
  s.bind_text_ref(1, run_id);
  if (!s.step()) return std::nullopt;
  return s.column_int(0);
}

std::optional<run_row> reader::run(const std::string& run_id) const {
  statement s(db_.handle(), std::string("SELECT ") + run_columns + " FROM runs WHERE run_id = ?1");
  s.bind_text_ref(1, run_id);
  if (!s.step()) return std::nullopt;
  return read_run(s);
}

bool reader::run_exists(const std::string& run_id) const {
  statement s(db_.handle(), "SELECT 1 FROM runs WHERE run_id = ?1");
  s.bind_text_ref(1, run_id);
  return s.step();
}

std::int64_t reader::max_event_seq(const std::string& run_id) const {
  auto base = key_base(run_id);
  if (!base) return -1;
  statement s(db_.handle(), R"sql(
SELECT last_seq FROM event_chunks WHERE id >= ?1 AND id < ?1 + ?2 ORDER BY id DESC LIMIT 1)sql");
  s.bind_int(1, *base);
  s.bind_int(2, key_span);
  return s.step() ? s.column_int(0) : -1;
}

std::vector<owner_request> reader::owner_requests(const std::string& owner_id) const {
  statement s(db_.handle(), R"sql(
SELECT run_id, cancel_requested, handover_to FROM runs
WHERE owner_id = ?1 AND (cancel_requested = 1 OR handover_to != '')
  AND status NOT IN ('finished', 'failed', 'cancelled', 'continued'))sql");
  s.bind_text_ref(1, owner_id);
  std::vector<owner_request> out;
  while (s.step())
    out.push_back({s.column_text(0), s.column_int(1) != 0, s.column_text(2)});
  return out;
}

std::vector<run_row> reader::runs(const std::string& status, std::size_t limit) const {
  std::string sql = std::string("SELECT ") + run_columns + " FROM runs";
  if (!status.empty()) sql += " WHERE status = ?2";
  sql += " ORDER BY created_ms DESC, rowid DESC LIMIT ?1";
  statement s(db_.handle(), sql);
  s.bind_int(1, sql_limit(limit));
  if (!status.empty()) s.bind_text_ref(2, status);
  std::vector<run_row> rows;
  while (s.step())
    rows.push_back(read_run(s));
  return rows;
}

std::size_t reader::run_count(const std::string& status) const {
  statement s(db_.handle(), status.empty() ? "SELECT count(*) FROM runs"
                                           : "SELECT count(*) FROM runs WHERE status = ?1");
  if (!status.empty()) s.bind_text_ref(1, status);
  return s.step() ? static_cast<std::size_t>(s.column_int(0)) : 0;
}

std::optional<std::int64_t> reader::last_frame(const std::string& run_id) const {
  auto base = key_base(run_id);
  if (!base) return std::nullopt;
  statement s(db_.handle(), "SELECT max(frame_no) FROM frames WHERE id >= ?1 AND id < ?1 + ?2");
  s.bind_int(1, *base);
  s.bind_int(2, key_span);
  if (!s.step() || s.column_is_null(0)) return std::nullopt;
  return s.column_int(0);
}

std::int64_t reader::data_version() const {
  statement s(db_.handle(), "PRAGMA data_version");
  return s.step() ? s.column_int(0) : 0;
}

std::vector<run_row> reader::runs_page(const std::string& status, const std::string& workflow,
                                       std::size_t limit, std::size_t offset) const {
  std::string sql = std::string("SELECT ") + run_columns +
                    " FROM runs WHERE (?3 = '' OR status = ?3) AND (?4 = '' OR workflow_name = ?4)"
                    " ORDER BY created_ms DESC, rowid DESC LIMIT ?1 OFFSET ?2";
  statement s(db_.handle(), sql);
  s.bind_int(1, sql_limit(limit));
  s.bind_int(2, sql_limit(offset));
  s.bind_text_ref(3, status);
  s.bind_text_ref(4, workflow);
  std::vector<run_row> rows;
  while (s.step())
    rows.push_back(read_run(s));
  return rows;
}

std::size_t reader::run_count(const std::string& status, const std::string& workflow) const {
  statement s(db_.handle(), "SELECT count(*) FROM runs WHERE (?1 = '' OR status = ?1) AND "
                            "(?2 = '' OR workflow_name = ?2)");
  s.bind_text_ref(1, status);
  s.bind_text_ref(2, workflow);
  return s.step() ? static_cast<std::size_t>(s.column_int(0)) : 0;
}

std::vector<run_row> reader::runs_updated_since(std::int64_t since_ms, std::size_t limit) const {
  std::string sql = std::string("SELECT ") + run_columns +
                    " FROM runs WHERE updated_ms >= ?1 ORDER BY updated_ms, rowid LIMIT ?2";
  statement s(db_.handle(), sql);
  s.bind_int(1, since_ms);
  s.bind_int(2, sql_limit(limit));
  std::vector<run_row> rows;
  while (s.step())
    rows.push_back(read_run(s));
  return rows;
}

std::vector<node_row> reader::nodes(const std::string& run_id) const {
  // A run's rows are its key range, in first-appearance order.
  auto base = key_base(run_id);
  if (!base) return {};
  statement s(db_.handle(), R"sql(
SELECT run_id, node_id, iteration, state, attempts, label, kind, updated_ms
FROM nodes WHERE id >= ?1 AND id < ?1 + ?2 ORDER BY id)sql");
  s.bind_int(1, *base);
  s.bind_int(2, key_span);
  std::vector<node_row> rows;
  while (s.step()) {
    node_row n;
    n.run_id = s.column_text(0);
    n.node_id = s.column_text(1);
    n.iteration = s.column_int(2);
    n.state = s.column_text(3);
    n.attempts = s.column_int(4);
    n.label = s.column_text(5);
    n.kind = s.column_text(6);
    n.updated_ms = s.column_int(7);
    rows.push_back(std::move(n));
  }
  return rows;
}

std::vector<attempt_row> reader::attempts(const std::string& run_id) const {
  auto base = key_base(run_id);
  if (!base) return {};
  statement s(db_.handle(), R"sql(
SELECT run_id, node_id, iteration, attempt, state, started_ms, finished_ms, heartbeat_ms,
       heartbeat_json, error_json, meta_json, cached, output_json, worker
FROM attempts WHERE id >= ?1 AND id < ?1 + ?2 ORDER BY node_id, iteration, attempt)sql");
  s.bind_int(1, *base);
  s.bind_int(2, key_span);
  std::vector<attempt_row> rows;
  while (s.step()) {
    attempt_row a;
    a.run_id = s.column_text(0);
    a.node_id = s.column_text(1);
    a.iteration = s.column_int(2);
    a.attempt = s.column_int(3);
    a.state = s.column_text(4);
    a.started_ms = s.column_int(5);
    a.finished_ms = s.column_opt_int(6);
    a.heartbeat_ms = s.column_opt_int(7);
    a.heartbeat = s.column_json(8);
    a.error = s.column_json(9);
    a.meta = s.column_json(10);
    a.cached = s.column_int(11) != 0;
    if (!s.column_is_null(12)) a.output = s.column_json(12);
    if (!s.column_is_null(13)) a.worker = s.column_text(13);
    rows.push_back(std::move(a));
  }
  return rows;
}

std::unordered_map<std::string, json> reader::cache_entries(const std::string& workflow) const {
  statement s(db_.handle(), "SELECT key, output_json FROM cache WHERE workflow = ?1");
  s.bind_text_ref(1, workflow);
  std::unordered_map<std::string, json> out;
  while (s.step())
    out.emplace(s.column_text(0), s.column_json(1));
  return out;
}

std::int64_t reader::clear_cache(const std::string& workflow) const {
  statement s(db_.handle(),
              workflow.empty() ? "DELETE FROM cache" : "DELETE FROM cache WHERE workflow = ?1");
  if (!workflow.empty()) s.bind_text_ref(1, workflow);
  s.step();
  return s.changes();
}

std::vector<loop_row> reader::loops(const std::string& run_id) const {
  statement s(db_.handle(), R"sql(
SELECT loop_id, iteration, state, updated_ms FROM loops WHERE run_id = ?1 ORDER BY loop_id)sql");
  s.bind_text_ref(1, run_id);
  std::vector<loop_row> rows;
  while (s.step()) {
    loop_row l;
    l.run_id = run_id;
    l.loop_id = s.column_text(0);
    l.iteration = s.column_int(1);
    l.state = s.column_text(2);
    l.updated_ms = s.column_int(3);
    rows.push_back(std::move(l));
  }
  return rows;
}

std::vector<wait_row> reader::waits(const std::string& run_id) const {
  statement s(db_.handle(), R"sql(
SELECT node_id, iteration, kind, state, name, attempt, since_ms, deadline_ms, details_json,
       updated_ms
FROM waits WHERE run_id = ?1 ORDER BY since_ms, node_id, iteration)sql");
  s.bind_text_ref(1, run_id);
  std::vector<wait_row> rows;
  while (s.step()) {
    wait_row w;
    w.run_id = run_id;
    w.key = {s.column_text(0), s.column_int(1)};
    w.kind = s.column_text(2);
    w.state = s.column_text(3);
    w.name = s.column_text(4);
    w.attempt = s.column_int(5);
    w.since_ms = s.column_int(6);
    if (!s.column_is_null(7)) w.deadline_ms = s.column_int(7);
    w.details = s.column_json(8);
    w.updated_ms = s.column_int(9);
    rows.push_back(std::move(w));
  }
  return rows;
}

namespace {

constexpr const char* inbox_columns =
    "id, run_id, kind, node_id, iteration, name, payload_json, created_ms";

inbox_row read_inbox(statement& s) {
  inbox_row r;
  r.id = s.column_int(0);
  r.run_id = s.column_text(1);
  r.kind = s.column_text(2);
  r.key = {s.column_text(3), s.column_int(4)};
  r.name = s.column_text(5);
  r.payload = s.column_json(6);
  r.created_ms = s.column_int(7);
  return r;
}

// A waiting run can go on: a decision for a node it waits for, a signal a
// waiting node takes, or a deadline passed.
constexpr const char* ready_condition = R"sql(
  EXISTS (SELECT 1 FROM inbox i WHERE i.run_id = r.run_id AND i.consumed_ms IS NULL
            AND (i.kind = 'approval' OR EXISTS (
              SELECT 1 FROM waits w WHERE w.run_id = r.run_id AND w.state = 'waiting'
                AND w.kind = 'signal' AND w.name = i.name)))
  OR EXISTS (SELECT 1 FROM waits w WHERE w.run_id = r.run_id AND w.state = 'waiting'
               AND w.deadline_ms IS NOT NULL AND w.deadline_ms <= ?1))sql";

} // namespace

std::vector<inbox_row> reader::open_inbox(const std::string& run_id) const {
  statement s(db_.handle(),
              std::string("SELECT ") + inbox_columns +
                  " FROM inbox WHERE run_id = ?1 AND consumed_ms IS NULL ORDER BY id");
  s.bind_text_ref(1, run_id);
  std::vector<inbox_row> rows;
  while (s.step())
    rows.push_back(read_inbox(s));
  return rows;
}

std::size_t reader::open_signal_count(const std::string& run_id) const {
  statement s(db_.handle(), R"sql(
SELECT count(*) FROM inbox WHERE run_id = ?1 AND consumed_ms IS NULL AND kind = 'signal')sql");
  s.bind_text_ref(1, run_id);
  return s.step() ? static_cast<std::size_t>(s.column_int(0)) : 0;
}

std::vector<inbox_row> reader::open_inbox_of_owner(const std::string& owner_id) const {
  statement s(db_.handle(), std::string("SELECT ") + inbox_columns + R"sql( FROM inbox
WHERE consumed_ms IS NULL AND run_id IN (
  SELECT run_id FROM runs WHERE owner_id = ?1
    AND status NOT IN ('finished', 'failed', 'cancelled', 'continued'))
ORDER BY id)sql");
  s.bind_text_ref(1, owner_id);
  std::vector<inbox_row> rows;
  while (s.step())
    rows.push_back(read_inbox(s));
  return rows;
}

std::vector<std::string> reader::ready_waiting_runs(std::int64_t now_ms) const {
  statement s(db_.handle(), std::string(R"sql(
SELECT r.run_id FROM runs r
WHERE r.status IN ('waiting-approval', 'waiting-event', 'waiting-timer') AND ()sql") +
                                ready_condition + ") ORDER BY r.created_ms, r.rowid");
  s.bind_int(1, now_ms);
  std::vector<std::string> ids;
  while (s.step())
    ids.push_back(s.column_text(0));
  return ids;
}

bool reader::wait_ready(const std::string& run_id, std::int64_t now_ms) const {
  statement s(db_.handle(), std::string("SELECT 1 FROM runs r WHERE r.run_id = ?2 AND (") +
                                ready_condition + ")");
  s.bind_int(1, now_ms);
  s.bind_text_ref(2, run_id);
  return s.step();
}

std::vector<output_row> reader::outputs(const std::string& run_id) const {
  auto base = key_base(run_id);
  if (!base) return {};
  // Per node, the output of its newest finished attempt; in attempt order.
  statement s(db_.handle(), R"sql(
SELECT run_id, node_id, iteration, output_json FROM (
  SELECT id, run_id, node_id, iteration, output_json,
         row_number() OVER (PARTITION BY node_id, iteration ORDER BY attempt DESC) AS newest
  FROM attempts
  WHERE id >= ?1 AND id < ?1 + ?2 AND state = 'finished' AND output_json IS NOT NULL)
WHERE newest = 1 ORDER BY id)sql");
  s.bind_int(1, *base);
  s.bind_int(2, key_span);
  std::vector<output_row> rows;
  while (s.step()) {
    output_row o;
    o.run_id = s.column_text(0);
    o.node_id = s.column_text(1);
    o.iteration = s.column_int(2);
    o.value = s.column_json(3);
    rows.push_back(std::move(o));
  }
  return rows;
}

std::vector<event_row> reader::events(const std::string& run_id, std::int64_t after_seq,
                                      std::size_t limit) const {
  std::vector<event_row> rows;
  auto base = key_base(run_id);
  if (!base || limit == 0) return rows;
  after_seq = std::max<std::int64_t>(after_seq, -1);
  // From the chunk that holds seq after_seq + 1 (the last one starting at or
  // before it), in order.
  statement s(db_.handle(), R"sql(
SELECT id - ?1, events_json FROM event_chunks
WHERE id >= COALESCE((SELECT max(id) FROM event_chunks WHERE id >= ?1 AND id <= ?1 + ?2 + 1), ?1)
  AND id < ?1 + ?3
ORDER BY id)sql");
  s.bind_int(1, *base);
  s.bind_int(2, after_seq);
  s.bind_int(3, key_span);
  while (rows.size() < limit && s.step()) {
    std::int64_t first = s.column_int(0);
    json chunk = s.column_json(1);
    if (!chunk.is_array())
      throw smithers_error(errc::db_error, "event chunk " + std::to_string(first) + " of run " +
                                               run_id + " is not a JSON array");
    for (std::size_t k = 0; k < chunk.size() && rows.size() < limit; ++k) {
      std::int64_t seq = first + static_cast<std::int64_t>(k);
      if (seq <= after_seq) continue;
      json& entry = chunk[k];
      if (!entry.is_array() || entry.size() != 3 || !entry[0].is_string() ||
          !entry[1].is_number_integer())
        throw smithers_error(errc::db_error, "event " + std::to_string(seq) + " of run " + run_id +
                                                 " is malformed");
      event_row e;
      e.run_id = run_id;
      e.seq = seq;
      e.type = entry[0].get<std::string>();
      e.timestamp_ms = entry[1].get<std::int64_t>();
      e.payload = std::move(entry[2]);
      if (!e.payload.is_object()) e.payload = json::object();
      e.payload["type"] = e.type;
      e.payload["run_id"] = e.run_id;
      e.payload["seq"] = e.seq;
      e.payload["timestamp_ms"] = e.timestamp_ms;
      rows.push_back(std::move(e));
    }
  }
  return rows;
}

std::vector<frame_row> reader::frames(const std::string& run_id) const {
  statement s(db_.handle(), R"sql(
SELECT f.run_id, f.frame_no, f.tree_hash, COALESCE(f.tree_json, t.tree_json), f.created_ms,
       f.keyframe, f.snapshot_json
FROM frames f LEFT JOIN trees t ON t.hash = f.tree_hash
WHERE f.id >= ?1 AND f.id < ?1 + ?2 ORDER BY f.id)sql");
  std::vector<frame_row> rows;
  auto base = key_base(run_id);
  if (!base) return rows;
  s.bind_int(1, *base);
  s.bind_int(2, key_span);
  while (s.step()) {
    frame_row f;
    f.run_id = s.column_text(0);
    f.frame_no = s.column_int(1);
    f.tree_hash = s.column_text(2);
    f.tree = s.column_json(3);
    f.created_ms = s.column_int(4);
    f.keyframe = s.column_int(5) != 0;
    f.snapshot = s.column_json(6);
    rows.push_back(std::move(f));
  }
  return rows;
}

std::vector<frame_summary> reader::frame_summaries(const std::string& run_id) const {
  statement s(db_.handle(), R"sql(
SELECT frame_no, tree_hash, created_ms, keyframe,
       COALESCE((SELECT count(*) FROM json_each(snapshot_json, '$.states')), 0)
FROM frames WHERE id >= ?1 AND id < ?1 + ?2 ORDER BY id)sql");
  std::vector<frame_summary> rows;
  auto base = key_base(run_id);
  if (!base) return rows;
  s.bind_int(1, *base);
  s.bind_int(2, key_span);
  while (s.step()) {
    frame_summary f;
    f.frame_no = s.column_int(0);
    f.tree_hash = s.column_text(1);
    f.created_ms = s.column_int(2);
    f.keyframe = s.column_int(3) != 0;
    f.changes = s.column_int(4);
    rows.push_back(std::move(f));
  }
  return rows;
}

std::vector<std::pair<std::int64_t, json>> reader::frame_states(const std::string& run_id) const {
  std::vector<std::pair<std::int64_t, json>> rows;
  auto base = key_base(run_id);
  if (!base) return rows;
  statement s(db_.handle(), R"sql(
SELECT frame_no, json_extract(snapshot_json, '$.states')
FROM frames WHERE id >= ?1 AND id < ?1 + ?2 ORDER BY id)sql");
  s.bind_int(1, *base);
  s.bind_int(2, key_span);
  while (s.step()) {
    json states = s.column_json(1);
    rows.emplace_back(s.column_int(0), states.is_object() ? std::move(states) : json::object());
  }
  return rows;
}

json reader::tree(const std::string& hash) const {
  statement s(db_.handle(), R"sql(
SELECT tree_json FROM trees WHERE hash = ?1
UNION ALL SELECT tree_json FROM frames WHERE tree_hash = ?1 AND tree_json IS NOT NULL
LIMIT 1)sql");
  s.bind_text_ref(1, hash);
  return s.step() ? s.column_json(0) : json();
}

json reader::snapshot_at(const std::string& run_id, std::int64_t frame_no) const {
  auto base = key_base(run_id);
  if (!base || frame_no < 0 || frame_no >= key_span) return nullptr;
  // The nearest keyframe at or before the frame, then every delta up to it.
  statement s(db_.handle(), R"sql(
SELECT frame_no, tree_hash, keyframe, snapshot_json FROM frames
WHERE id <= ?1 + ?2 AND id >= ?1 + COALESCE(
  (SELECT max(frame_no) FROM frames WHERE id >= ?1 AND id <= ?1 + ?2 AND keyframe = 1), 0)
ORDER BY id)sql");
  s.bind_int(1, *base);
  s.bind_int(2, frame_no);
  json states = json::object();
  json loops = json::object();
  json input;
  std::string hash;
  std::int64_t last = -1;
  while (s.step()) {
    last = s.column_int(0);
    hash = s.column_text(1);
    json snap = s.column_json(3);
    if (s.column_int(2) != 0) {
      states = json::object();
      loops = json::object();
      if (snap.is_object() && snap.contains("input")) input = snap["input"];
    }
    if (snap.is_object() && snap.contains("states"))
      for (const auto& [id, st] : snap["states"].items())
        states[id] = st;
    if (snap.is_object() && snap.contains("loops") && snap["loops"].is_object())
      for (const auto& [id, st] : snap["loops"].items())
        loops[id] = st;
  }
  if (last != frame_no) return nullptr;
  json outputs = json::object();
  // Keyed like the snapshot's states: "id", or "id@N" for iteration N.
  for (const auto& o : this->outputs(run_id)) {
    std::string key = to_string(node_key{o.node_id, o.iteration});
    if (states.value(key, std::string{}) == "finished") outputs[key] = o.value;
  }
  return {{"frame_no", frame_no},
          {"tree_hash", hash},
          {"states", states},
          {"loops", loops},
          {"input", input},
          {"outputs", outputs}};
}

std::vector<run_row> reader::children(const std::string& run_id) const {
  std::string sql = std::string("SELECT ") + run_columns +
                    " FROM runs WHERE parent_run_id = ?1 ORDER BY created_ms, rowid";
  statement s(db_.handle(), sql);
  s.bind_text_ref(1, run_id);
  std::vector<run_row> rows;
  while (s.step())
    rows.push_back(read_run(s));
  return rows;
}

std::int64_t reader::frame_count(const std::string& run_id) const {
  auto base = key_base(run_id);
  if (!base) return 0;
  statement s(db_.handle(), "SELECT count(*) FROM frames WHERE id >= ?1 AND id < ?1 + ?2");
  s.bind_int(1, *base);
  s.bind_int(2, key_span);
  return s.step() ? s.column_int(0) : 0;
}

} // namespace smithers::store
