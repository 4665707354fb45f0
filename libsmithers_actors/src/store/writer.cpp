#include "store/writer.hpp"

#include "util/fault.hpp"

#include "store/reader.hpp"
#include "util/json_text.hpp"

#include <smithers/events.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <unordered_map>

namespace smithers::store {

namespace {

// Resets (and clears the bindings of) a cached statement when a command is
// done with it, also on error, so it holds no locks and no stale pointers.
struct in_use {
  statement& s;
  ~in_use() { s.reset(); }
};

// The keys of a run's node and attempt rows (schema v5: rows are keyed by
// run_no << 32 | position, not by their text key), so a write finds its row
// by id. Loaded from the file the first time the writer touches the run (a
// run it continues) and kept while it writes the run: a run's rows are
// written by its owner alone. Every update by id still compares the text
// key on the row, so stale keys make a write fail, never touch another row.
struct run_rows {
  std::int64_t base = 0;                                  // run_no << 32
  std::unordered_map<std::string, std::int64_t> nodes;    // row_key -> id
  std::unordered_map<std::string, std::int64_t> attempts; // row_key -> id
  std::int64_t next_node = 0, next_attempt = 0;           // ids of the next appends
};

// A node's or attempt's key within its run. Node ids are [A-Za-z0-9_-], so
// '/' cannot be part of one; short ones stay in the string's own buffer.
std::string row_key(const std::string& node_id, std::int64_t iteration, std::int64_t attempt = 0) {
  std::string k = node_id;
  if (iteration != 0 || attempt != 0) {
    k += '/';
    k += std::to_string(iteration);
  }
  if (attempt != 0) {
    k += '/';
    k += std::to_string(attempt);
  }
  return k;
}

// Opens a chunk entry: `["type",timestamp_ms,` (the fields and `]` follow).
void begin_chunk_entry(std::string& out, const std::string& type, std::int64_t at_ms) {
  out += '[';
  // Event types are names like "NodeStarted": appended as they are (without
  // a JSON copy per event); anything else goes through the JSON writer.
  bool name = !type.empty() && std::all_of(type.begin(), type.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
  });
  if (name) {
    out += '"';
    out += type;
    out += '"';
  } else {
    util::append_json(out, type);
  }
  out += ',';
  out += std::to_string(at_ms);
  out += ',';
}

// For error messages only.
struct describe {
  std::string operator()(const insert_run& c) const { return "insert_run " + c.row.run_id; }
  std::string operator()(const update_run_status& c) const {
    return "update_run_status " + c.run_id + " -> " + c.status;
  }
  std::string operator()(const upsert_node& c) const {
    return "upsert_node " + key(c.row.run_id, c.row.node_id, c.row.iteration);
  }
  std::string operator()(const insert_attempt& c) const {
    return "insert_attempt " + key(c.row.run_id, c.row.node_id, c.row.iteration, c.row.attempt);
  }
  std::string operator()(const finish_attempt& c) const {
    return "finish_attempt " + key(c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
  }
  std::string operator()(const record_heartbeat& c) const {
    return "record_heartbeat " + key(c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
  }
  std::string operator()(const append_event& c) const {
    return "append_event " + c.row.run_id + " seq " + std::to_string(c.row.seq);
  }
  std::string operator()(const append_events& c) const {
    return "append_events " + c.run_id + " seq " + std::to_string(c.first_seq) + ".." +
           std::to_string(c.first_seq + c.count - 1);
  }
  std::string operator()(const store_frame& c) const {
    return "store_frame " + c.row.run_id + " frame " + std::to_string(c.row.frame_no);
  }
  std::string operator()(const touch_run& c) const { return "touch_run " + c.run_id; }
  std::string operator()(const request_cancel& c) const { return "request_cancel " + c.run_id; }
  std::string operator()(const claim_run& c) const { return "claim_run " + c.run_id; }
  std::string operator()(const request_handover& c) const { return "request_handover " + c.run_id; }
  std::string operator()(const withdraw_handover& c) const {
    return "withdraw_handover " + c.run_id;
  }
  std::string operator()(const release_run& c) const { return "release_run " + c.run_id; }
  std::string operator()(const continue_run& c) const {
    return "continue_run " + c.parent_run_id + " as " + c.run_id;
  }
  std::string operator()(const upsert_wait& c) const {
    return "upsert_wait " + c.row.run_id + "/" + to_string(c.row.key);
  }
  std::string operator()(const consume_inbox& c) const {
    return "consume_inbox " + std::to_string(c.id);
  }
  std::string operator()(const insert_inbox& c) const {
    return "insert_inbox " + c.row.run_id + " " + c.row.kind;
  }
  std::string operator()(const cancel_waits& c) const { return "cancel_waits " + c.run_id; }
  std::string operator()(const set_run_status& c) const {
    return "set_run_status " + c.run_id + " -> " + c.status;
  }
  std::string operator()(const upsert_loop& c) const {
    return "upsert_loop " + c.row.run_id + "/" + c.row.loop_id;
  }
  std::string operator()(const set_attempt_meta& c) const {
    return "set_attempt_meta " + key(c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
  }
  std::string operator()(const set_attempt_worker& c) const {
    return "set_attempt_worker " +
           key(c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
  }
  std::string operator()(const put_cache& c) const {
    return "put_cache " + c.workflow + "/" + c.node_id;
  }
  std::string operator()(const add_pending_nodes& c) const {
    return "add_pending_nodes " + c.run_id + " (" + std::to_string(c.nodes ? c.nodes->size() : 0) +
           " nodes)";
  }

  static std::string key(const std::string& run, const std::string& node, std::int64_t iteration,
                         std::int64_t attempt = 0) {
    std::string k = run + "/" + node + "[" + std::to_string(iteration) + "]";
    if (attempt > 0) k += " attempt " + std::to_string(attempt);
    return k;
  }
};

} // namespace

struct writer::impl {
  explicit impl(sqlite3* db)
      : db_(db), begin_(db, "BEGIN IMMEDIATE"), commit_(db, "COMMIT"), rollback_(db, "ROLLBACK"),
        insert_run_(db, R"sql(
INSERT INTO runs (run_id, workflow_name, status, input_json, config_json, workflow_hash,
                  workflow_path, vcs_revision, owner_id, owner_pid, heartbeat_ms,
                  cancel_requested, parent_run_id, error_json, created_ms, updated_ms,
                  finished_ms, cwd, run_no)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
        (SELECT COALESCE(max(run_no), 0) + 1 FROM runs)))sql"),
        run_no_(db, "SELECT run_no FROM runs WHERE run_id = ?1"), update_run_status_(db, R"sql(
UPDATE runs SET status = ?2, error_json = ?3, updated_ms = ?4, finished_ms = ?5
WHERE run_id = ?1)sql"),
        // A new row takes the next position in its run's key range (a
        // position another writer took fails the insert, and so the batch).
        insert_node_(db, R"sql(
INSERT INTO nodes (id, run_id, node_id, iteration, state, attempts, label, kind, updated_ms)
VALUES (?9, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8))sql"),
        update_node_(db, R"sql(
UPDATE nodes SET state = ?4, attempts = ?5, label = ?6, kind = ?7, updated_ms = ?8
WHERE id = ?9 AND run_id = ?1 AND node_id = ?2 AND iteration = ?3)sql"),
        node_keys_(db, R"sql(
SELECT id, node_id, iteration FROM nodes WHERE id >= ?1 AND id < ?1 + ?2)sql"),
        insert_attempt_(db, R"sql(
INSERT INTO attempts (id, run_id, node_id, iteration, attempt, state, started_ms, finished_ms,
                      heartbeat_ms, heartbeat_json, error_json, meta_json, cached, output_json)
VALUES (?14, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13))sql"),
        attempt_keys_(db, R"sql(
SELECT id, node_id, iteration, attempt FROM attempts WHERE id >= ?1 AND id < ?1 + ?2)sql"),
        finish_attempt_(db, R"sql(
UPDATE attempts SET state = ?5, finished_ms = ?6, error_json = ?7,
  meta_json = CASE WHEN ?8 IS NULL THEN meta_json
                   ELSE json_patch(COALESCE(meta_json, '{}'), ?8) END, output_json = ?9
WHERE id = ?10 AND run_id = ?1 AND node_id = ?2 AND iteration = ?3 AND attempt = ?4)sql"),
        heartbeat_(db, R"sql(
UPDATE attempts SET heartbeat_ms = ?5
WHERE id = ?10 AND run_id = ?1 AND node_id = ?2 AND iteration = ?3 AND attempt = ?4
  AND (heartbeat_ms IS NULL OR heartbeat_ms <= ?5))sql"),
        heartbeat_data_(db, R"sql(
UPDATE attempts SET heartbeat_ms = ?5, heartbeat_json = ?6
WHERE id = ?10 AND run_id = ?1 AND node_id = ?2 AND iteration = ?3 AND attempt = ?4
  AND (heartbeat_ms IS NULL OR heartbeat_ms <= ?5))sql"),
        insert_chunk_(db, R"sql(
INSERT INTO event_chunks (id, run_id, last_seq, events_json) VALUES (?1, ?2, ?3, ?4))sql"),
        // A chunk must not overlap its neighbours in the run's key range (the
        // same first seq is the primary key's to refuse).
        chunk_overlap_(db, R"sql(
SELECT EXISTS (SELECT 1 FROM event_chunks WHERE id > ?1 AND id <= ?1 + ?2)
    OR COALESCE((SELECT last_seq FROM event_chunks WHERE id < ?1 AND id >= ?3
                 ORDER BY id DESC LIMIT 1) >= ?1 - ?3, 0))sql"),
        store_frame_(db, R"sql(
INSERT INTO frames (id, run_id, frame_no, tree_hash, tree_json, created_ms, keyframe,
                    snapshot_json)
VALUES ((?7 << 32) + ?2, ?1, ?2, ?3, NULL, ?4, ?5, ?6))sql"),
        attempt_meta_(db, R"sql(
UPDATE attempts SET meta_json = json_patch(COALESCE(meta_json, '{}'), ?5)
WHERE id = ?10 AND run_id = ?1 AND node_id = ?2 AND iteration = ?3 AND attempt = ?4)sql"),
        put_cache_(db, R"sql(
INSERT INTO cache (key, workflow, node_id, output_json, run_id, created_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (key) DO UPDATE SET output_json = excluded.output_json, run_id = excluded.run_id,
  created_ms = excluded.created_ms)sql"),
        attempt_worker_(db, R"sql(
UPDATE attempts SET worker = ?5
WHERE id = ?10 AND run_id = ?1 AND node_id = ?2 AND iteration = ?3 AND attempt = ?4)sql"),
        store_tree_(db, R"sql(
INSERT INTO trees (hash, tree_json) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING)sql"),
        touch_run_(db, R"sql(
UPDATE runs SET heartbeat_ms = ?2 WHERE run_id = ?1 AND heartbeat_ms < ?2 AND owner_id = ?3)sql"),
        request_cancel_(db, R"sql(
UPDATE runs SET cancel_requested = 1 WHERE run_id = ?1)sql"),
        claim_run_(db, R"sql(
UPDATE runs SET owner_id = ?4, owner_pid = ?5, heartbeat_ms = ?6, updated_ms = ?6,
  status = 'running', handover_to = '',
  -- A failed or cancelled run driven again starts without its old end.
  cancel_requested = CASE WHEN status IN ('failed', 'cancelled') THEN 0 ELSE cancel_requested END,
  error_json = CASE WHEN status IN ('failed', 'cancelled') THEN NULL ELSE error_json END,
  finished_ms = CASE WHEN status IN ('failed', 'cancelled') THEN NULL ELSE finished_ms END
WHERE run_id = ?1 AND owner_id = ?2 AND heartbeat_ms = ?3)sql"),
        request_handover_(db, R"sql(
UPDATE runs SET handover_to = ?2 WHERE run_id = ?1 AND owner_id = ?3 AND owner_id != ''
  AND status NOT IN ('finished', 'failed', 'cancelled', 'continued'))sql"),
        withdraw_handover_(db, R"sql(
UPDATE runs SET handover_to = '' WHERE run_id = ?1 AND handover_to = ?2)sql"),
        release_run_(db, R"sql(
UPDATE runs SET owner_id = '', owner_pid = 0, heartbeat_ms = ?3, updated_ms = ?3
WHERE run_id = ?1 AND owner_id = ?2)sql"),
        upsert_wait_(db, R"sql(
INSERT INTO waits (run_id, node_id, iteration, kind, state, name, attempt, since_ms, deadline_ms,
                   details_json, updated_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET
  kind = excluded.kind, state = excluded.state, name = excluded.name, attempt = excluded.attempt,
  since_ms = excluded.since_ms, deadline_ms = excluded.deadline_ms,
  details_json = excluded.details_json, updated_ms = excluded.updated_ms)sql"),
        consume_inbox_(db, R"sql(
UPDATE inbox SET consumed_ms = ?2, consumed_by = ?3 WHERE id = ?1 AND consumed_ms IS NULL)sql"),
        // An approval only for a node waiting for one, with no decision yet.
        insert_approval_(db, R"sql(
INSERT INTO inbox (run_id, kind, node_id, iteration, name, payload_json, created_ms)
SELECT ?1, 'approval', ?2, ?3, '', ?4, ?5
WHERE EXISTS (SELECT 1 FROM waits WHERE run_id = ?1 AND node_id = ?2 AND iteration = ?3
                AND state = 'waiting' AND kind IN ('approval', 'gate'))
  AND NOT EXISTS (SELECT 1 FROM inbox WHERE run_id = ?1 AND node_id = ?2 AND iteration = ?3
                    AND kind = 'approval' AND consumed_ms IS NULL))sql"),
        insert_signal_(db, R"sql(
INSERT INTO inbox (run_id, kind, node_id, iteration, name, payload_json, created_ms)
VALUES (?1, 'signal', '', 0, ?2, ?3, ?4))sql"),
        cancel_waits_(db, R"sql(
UPDATE waits SET state = 'cancelled', updated_ms = ?2 WHERE run_id = ?1 AND state = 'waiting')sql"),
        // Decisions not taken go with their waits: a retry asks again.
        // (Signals stay: what happened outside still happened.)
        void_decisions_(db, R"sql(
UPDATE inbox SET consumed_ms = ?2, consumed_by = 'cancelled'
WHERE run_id = ?1 AND kind = 'approval' AND consumed_ms IS NULL)sql"),
        set_run_status_(db, R"sql(
UPDATE runs SET status = ?2, updated_ms = ?3 WHERE run_id = ?1)sql"),
        upsert_loop_(db, R"sql(
INSERT INTO loops (run_id, loop_id, iteration, state, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (run_id, loop_id) DO UPDATE SET
  iteration = excluded.iteration, state = excluded.state, updated_ms = excluded.updated_ms)sql"),
        continue_run_(db, R"sql(
INSERT INTO runs (run_id, workflow_name, status, input_json, config_json, workflow_hash,
                  workflow_path, vcs_revision, owner_id, owner_pid, heartbeat_ms,
                  cancel_requested, parent_run_id, error_json, created_ms, updated_ms,
                  finished_ms, cwd, run_no)
SELECT ?2, workflow_name, 'running', input_json,
       json_set(json_remove(COALESCE(config_json, '{}'), '$.fork'), '$.continued_from', ?1),
       workflow_hash, workflow_path, vcs_revision, '', 0, ?3, 0, ?1, NULL, ?3, ?3, NULL, cwd,
       (SELECT COALESCE(max(run_no), 0) + 1 FROM runs)
FROM runs WHERE run_id = ?1)sql") {}

  // Strings of a command are bound without copying (bind_text_ref): the
  // batch outlives the step, and in_use clears the bindings right after.

  // Steps an INSERT of a runs row: a run id already taken is `taken`.
  static void step_new_run(statement& s, const error& taken) {
    try {
      s.step();
    } catch (const smithers_error& e) {
      int code = e.err().details.value("sqlite_code", 0);
      if (code == SQLITE_CONSTRAINT_PRIMARYKEY || code == SQLITE_CONSTRAINT_UNIQUE)
        throw smithers_error(taken);
      throw;
    }
  }

  void operator()(const insert_run& c) {
    auto& s = insert_run_;
    in_use use{s};
    const run_row& r = c.row;
    s.bind_text_ref(1, r.run_id);
    s.bind_text_ref(2, r.workflow_name);
    s.bind_text_ref(3, r.status);
    s.bind_json(4, r.input);
    s.bind_json(5, r.config);
    s.bind_text_ref(6, r.workflow_hash);
    s.bind_text_ref(7, r.workflow_path);
    s.bind_text_ref(8, r.vcs_revision);
    s.bind_text_ref(9, r.owner_id);
    s.bind_int(10, r.owner_pid);
    s.bind_int(11, r.heartbeat_ms);
    s.bind_int(12, r.cancel_requested ? 1 : 0);
    if (r.parent_run_id.empty())
      s.bind_null(13); // "no parent" is NULL, not ''
    else
      s.bind_text_ref(13, r.parent_run_id);
    s.bind_json(14, r.error);
    s.bind_int(15, r.created_ms);
    s.bind_int(16, r.updated_ms);
    s.bind_opt_int(17, r.finished_ms);
    s.bind_text_ref(18, r.cwd);
    step_new_run(s, error{errc::invalid_run_id, "a run with id \"" + r.run_id + "\" already exists"});
  }

  // The run's number, the high half of its events' and frames' keys. Cached:
  // it never changes (forgotten on rollback, which may undo an insert_run).
  std::int64_t run_no(const std::string& run_id) {
    auto no = find_run_no(run_id);
    if (!no) throw smithers_error(errc::db_error, "no such run");
    return *no;
  }

  std::optional<std::int64_t> find_run_no(const std::string& run_id) {
    auto it = run_nos_.find(run_id);
    if (it != run_nos_.end()) return it->second;
    auto& s = run_no_;
    in_use use{s};
    s.bind_text_ref(1, run_id);
    if (!s.step()) return std::nullopt;
    std::int64_t no = s.column_int(0);
    run_nos_.emplace(run_id, no);
    return no;
  }

  void operator()(const update_run_status& c) {
    auto& s = update_run_status_;
    in_use use{s};
    s.bind_text_ref(1, c.run_id);
    s.bind_text_ref(2, c.status);
    s.bind_json(3, c.error);
    s.bind_int(4, c.updated_ms);
    s.bind_opt_int(5, c.finished_ms);
    s.step();
    if (s.changes() == 0) throw smithers_error(errc::db_error, "no such run");
    if (c.finished_ms) rows_.erase(c.run_id); // an ended run's keys are not needed again
  }

  // The run's node and attempt keys, loaded on first use.
  run_rows& rows_of(const std::string& run_id) {
    auto it = rows_.find(run_id);
    if (it != rows_.end()) return it->second;
    run_rows rr;
    rr.base = run_no(run_id) << 32;
    rr.next_node = rr.next_attempt = rr.base;
    {
      auto& s = node_keys_;
      in_use use{s};
      s.bind_int(1, rr.base);
      s.bind_int(2, reader::key_span);
      while (s.step()) {
        rr.nodes.emplace(row_key(s.column_text(1), s.column_int(2)), s.column_int(0));
        rr.next_node = std::max(rr.next_node, s.column_int(0) + 1);
      }
    }
    {
      auto& s = attempt_keys_;
      in_use use{s};
      s.bind_int(1, rr.base);
      s.bind_int(2, reader::key_span);
      while (s.step()) {
        rr.attempts.emplace(row_key(s.column_text(1), s.column_int(2), s.column_int(3)),
                            s.column_int(0));
        rr.next_attempt = std::max(rr.next_attempt, s.column_int(0) + 1);
      }
    }
    return rows_.emplace(run_id, std::move(rr)).first->second;
  }

  void operator()(const upsert_node& c) { set_node(c.row); }

  // Updates the node's row, or appends one if the run has none for it.
  void set_node(const node_row& n) {
    run_rows& rr = rows_of(n.run_id);
    auto key = row_key(n.node_id, n.iteration);
    auto it = rr.nodes.find(key);
    if (it != rr.nodes.end()) {
      if (update_node_at(it->second, n)) return;
      // The keys were stale (rows changed under the writer): never write
      // another row, fail the batch; its rollback drops the keys.
      throw smithers_error(errc::db_error, "node row " + key + " is not where it was");
    }
    if (rr.next_node >= rr.base + reader::key_span)
      throw smithers_error(errc::db_error, "run has too many nodes");
    auto& s = insert_node_;
    in_use use{s};
    s.bind_int(9, rr.next_node);
    bind_node_fields(s, n);
    s.step();
    rr.nodes.emplace(std::move(key), rr.next_node++);
  }

  static void bind_node_fields(statement& s, const node_row& n) {
    s.bind_text_ref(1, n.run_id);
    s.bind_text_ref(2, n.node_id);
    s.bind_int(3, n.iteration);
    s.bind_text_ref(4, n.state);
    s.bind_int(5, n.attempts);
    s.bind_text_ref(6, n.label);
    s.bind_text_ref(7, n.kind);
    s.bind_int(8, n.updated_ms);
  }

  bool update_node_at(std::int64_t id, const node_row& n) {
    auto& s = update_node_;
    in_use use{s};
    s.bind_int(9, id);
    bind_node_fields(s, n);
    s.step();
    return s.changes() > 0;
  }

  void operator()(const insert_attempt& c) {
    const attempt_row& a = c.row;
    run_rows& rr = rows_of(a.run_id);
    auto key = row_key(a.node_id, a.iteration, a.attempt);
    if (rr.attempts.count(key))
      throw smithers_error(errc::db_error,
                           "UNIQUE constraint failed: attempt " + key + " is already stored");
    if (rr.next_attempt >= rr.base + reader::key_span)
      throw smithers_error(errc::db_error, "run has too many attempts");
    auto& s = insert_attempt_;
    in_use use{s};
    s.bind_int(14, rr.next_attempt);
    bind_attempt_key(s, a.run_id, a.node_id, a.iteration, a.attempt);
    s.bind_text_ref(5, a.state);
    s.bind_int(6, a.started_ms);
    s.bind_opt_int(7, a.finished_ms);
    s.bind_opt_int(8, a.heartbeat_ms);
    s.bind_json(9, a.heartbeat);
    s.bind_json(10, a.error);
    s.bind_json(11, a.meta);
    s.bind_int(12, a.cached ? 1 : 0);
    bind_output(s, 13, a.output);
    s.step();
    rr.attempts.emplace(std::move(key), rr.next_attempt++);
  }

  // The id of an attempt's row, if there is such a run and it has the attempt.
  std::optional<std::int64_t> attempt_id(const std::string& run_id, const std::string& node_id,
                                         std::int64_t iteration, std::int64_t attempt) {
    if (!find_run_no(run_id)) return std::nullopt;
    run_rows& rr = rows_of(run_id);
    auto it = rr.attempts.find(row_key(node_id, iteration, attempt));
    if (it == rr.attempts.end()) return std::nullopt;
    return it->second;
  }

  void operator()(const finish_attempt& c) {
    auto id = attempt_id(c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
    // An output must never appear without its attempt.
    if (!id) throw smithers_error(errc::db_error, "no such attempt");
    auto& s = finish_attempt_;
    in_use use{s};
    s.bind_int(10, *id);
    bind_attempt_key(s, c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
    s.bind_text_ref(5, c.state);
    s.bind_int(6, c.finished_ms);
    s.bind_json(7, c.error);
    s.bind_json(8, c.meta);
    bind_output(s, 9, c.output);
    s.step();
    if (s.changes() == 0) throw smithers_error(errc::db_error, "no such attempt");
  }

  // A heartbeat for an unknown attempt changes nothing and is not an error:
  // failing would roll back the unrelated commands batched with it. Nor does
  // an older one: heartbeats reach the writer from more than one actor.
  void operator()(const record_heartbeat& c) {
    auto id = attempt_id(c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
    if (!id) return;
    auto& s = c.has_data ? heartbeat_data_ : heartbeat_;
    in_use use{s};
    s.bind_int(10, *id);
    bind_attempt_key(s, c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
    s.bind_int(5, c.heartbeat_ms);
    if (c.has_data) s.bind_json(6, c.data);
    s.step();
  }

  void operator()(const append_event& c) {
    const event_row& e = c.row;
    std::string text = "[";
    append_chunk_entry(text, e.type, e.timestamp_ms,
                       e.payload.is_null() ? json::object() : e.payload);
    text += ']';
    insert_chunk(e.run_id, e.seq, 1, text);
  }

  void operator()(const append_events& c) {
    if (c.count > 0) insert_chunk(c.run_id, c.first_seq, c.count, c.text);
  }

  void insert_chunk(const std::string& run_id, std::int64_t first_seq, std::int64_t count,
                    const std::string& text) {
    if (first_seq < 0 || count < 1 || first_seq + count > reader::key_span)
      throw smithers_error(errc::db_error, "event seq out of range");
    std::int64_t base = run_no(run_id) << 32;
    std::int64_t id = base + first_seq;
    {
      auto& s = chunk_overlap_;
      in_use use{s};
      s.bind_int(1, id);
      s.bind_int(2, count - 1);
      s.bind_int(3, base);
      s.step();
      if (s.column_int(0) != 0)
        throw smithers_error(errc::db_error, "events overlap events already stored");
    }
    auto& s = insert_chunk_;
    in_use use{s};
    s.bind_int(1, id);
    s.bind_text_ref(2, run_id);
    s.bind_int(3, first_seq + count - 1);
    s.bind_text_ref(4, text);
    s.step();
  }

  void operator()(const store_frame& c) {
    const frame_row& f = c.row;
    if (c.tree_text || !f.tree.is_null()) {
      auto& t = store_tree_;
      in_use use{t};
      t.bind_text_ref(1, f.tree_hash);
      if (c.tree_text)
        t.bind_text_ref(2, *c.tree_text);
      else
        t.bind_json(2, f.tree);
      t.step();
    }
    auto& s = store_frame_;
    in_use use{s};
    s.bind_int(7, run_no(f.run_id));
    s.bind_text_ref(1, f.run_id);
    s.bind_int(2, f.frame_no);
    s.bind_text_ref(3, f.tree_hash);
    s.bind_int(4, f.created_ms);
    s.bind_int(5, f.keyframe ? 1 : 0);
    if (!c.snapshot_text.empty())
      s.bind_text_ref(6, c.snapshot_text);
    else
      s.bind_json(6, f.snapshot);
    s.step();
  }

  void operator()(const set_attempt_meta& c) {
    auto id = attempt_id(c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
    if (!id) return; // as an UPDATE of no row
    auto& s = attempt_meta_;
    in_use use{s};
    s.bind_int(10, *id);
    bind_attempt_key(s, c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
    s.bind_json(5, c.meta);
    s.step();
  }

  void operator()(const set_attempt_worker& c) {
    auto id = attempt_id(c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
    if (!id) return; // as an UPDATE of no row
    auto& s = attempt_worker_;
    in_use use{s};
    s.bind_int(10, *id);
    bind_attempt_key(s, c.run_id, c.key.node.id, c.key.node.iteration, c.key.attempt);
    s.bind_text_ref(5, c.worker);
    s.step();
  }

  void operator()(const put_cache& c) {
    auto& s = put_cache_;
    in_use use{s};
    s.bind_text_ref(1, c.key);
    s.bind_text_ref(2, c.workflow);
    s.bind_text_ref(3, c.node_id);
    s.bind_json(4, c.output);
    s.bind_text_ref(5, c.run_id);
    s.bind_int(6, c.at_ms);
    s.step();
  }

  void operator()(const add_pending_nodes& c) {
    if (!c.nodes) return;
    static const std::string pending = "pending";
    static const std::string type = event_type::node_pending;
    const auto& nodes = *c.nodes;
    // Sized once: no rehash of a large tree's keys on the way (each node gets
    // at least one attempt).
    run_rows& rr = rows_of(c.run_id);
    rr.nodes.reserve(rr.nodes.size() + nodes.size());
    rr.attempts.reserve(rr.attempts.size() + nodes.size());
    node_row r;
    r.run_id = c.run_id;
    r.state = pending;
    r.updated_ms = c.at_ms;
    for (const pending_node& n : nodes) {
      r.node_id = n.key.id;
      r.iteration = n.key.iteration;
      r.label = n.label;
      r.kind = n.kind;
      set_node(r);
    }
    // The NodePending events, in chunks small enough to read back one at a
    // time; fields as the supervisor writes them (keys sorted).
    constexpr std::size_t per_chunk = 1024;
    std::string text;
    for (std::size_t first = 0; first < nodes.size(); first += per_chunk) {
      std::size_t end = std::min(nodes.size(), first + per_chunk);
      text = "[";
      for (std::size_t i = first; i < end; ++i) {
        if (i > first) text += ',';
        begin_chunk_entry(text, type, c.at_ms);
        text += R"({"iteration":)";
        text += std::to_string(nodes[i].key.iteration);
        text += R"(,"node_id":)";
        util::append_json(text, nodes[i].key.id);
        text += "}]";
      }
      text += ']';
      insert_chunk(c.run_id, c.first_seq + static_cast<std::int64_t>(first),
                   static_cast<std::int64_t>(end - first), text);
    }
  }

  void operator()(const touch_run& c) {
    auto& s = touch_run_;
    in_use use{s};
    s.bind_text_ref(1, c.run_id);
    s.bind_int(2, c.heartbeat_ms);
    s.bind_text_ref(3, c.owner_id);
    s.step();
  }

  void operator()(const request_cancel& c) {
    auto& s = request_cancel_;
    in_use use{s};
    s.bind_text_ref(1, c.run_id);
    s.step();
    if (s.changes() == 0) throw smithers_error(errc::run_not_found, "no such run");
  }

  void operator()(const request_handover& c) {
    auto& s = request_handover_;
    in_use use{s};
    s.bind_text_ref(1, c.run_id);
    s.bind_text_ref(2, c.requester_id);
    s.bind_text_ref(3, c.owner_id);
    s.step();
    if (s.changes() == 0)
      throw smithers_error(errc::run_resume_claim_failed,
                           "the run changed owner (or ended) before the handover was asked");
  }

  void operator()(const withdraw_handover& c) {
    auto& s = withdraw_handover_;
    in_use use{s};
    s.bind_text_ref(1, c.run_id);
    s.bind_text_ref(2, c.requester_id);
    s.step();
  }

  void operator()(const continue_run& c) {
    auto& s = continue_run_;
    in_use use{s};
    s.bind_text_ref(1, c.parent_run_id);
    s.bind_text_ref(2, c.run_id);
    s.bind_int(3, c.now_ms);
    step_new_run(s, error{errc::db_error, "cannot continue run \"" + c.parent_run_id + "\" as \"" +
                                              c.run_id + "\": a run with that id already exists"});
    if (sqlite3_changes(db_) != 1)
      throw smithers_error(errc::db_error,
                           "cannot continue run \"" + c.parent_run_id + "\": it is not stored");
  }

  void operator()(const upsert_loop& c) {
    auto& s = upsert_loop_;
    in_use use{s};
    s.bind_text_ref(1, c.row.run_id);
    s.bind_text_ref(2, c.row.loop_id);
    s.bind_int(3, c.row.iteration);
    s.bind_text_ref(4, c.row.state);
    s.bind_int(5, c.row.updated_ms);
    s.step();
  }

  void operator()(const upsert_wait& c) {
    auto& s = upsert_wait_;
    in_use use{s};
    s.bind_text_ref(1, c.row.run_id);
    s.bind_text_ref(2, c.row.key.id);
    s.bind_int(3, c.row.key.iteration);
    s.bind_text_ref(4, c.row.kind);
    s.bind_text_ref(5, c.row.state);
    s.bind_text_ref(6, c.row.name);
    s.bind_int(7, c.row.attempt);
    s.bind_int(8, c.row.since_ms);
    s.bind_opt_int(9, c.row.deadline_ms);
    s.bind_json(10, c.row.details);
    s.bind_int(11, c.row.updated_ms);
    s.step();
  }

  void operator()(const consume_inbox& c) {
    auto& s = consume_inbox_;
    in_use use{s};
    s.bind_int(1, c.id);
    s.bind_int(2, c.consumed_ms);
    s.bind_text_ref(3, c.consumed_by);
    s.step();
  }

  void operator()(const insert_inbox& c) {
    bool approval = c.row.kind == "approval";
    auto& s = approval ? insert_approval_ : insert_signal_;
    in_use use{s};
    s.bind_text_ref(1, c.row.run_id);
    if (approval) {
      s.bind_text_ref(2, c.row.key.id);
      s.bind_int(3, c.row.key.iteration);
      s.bind_json(4, c.row.payload);
      s.bind_int(5, c.row.created_ms);
    } else {
      s.bind_text_ref(2, c.row.name);
      s.bind_json(3, c.row.payload);
      s.bind_int(4, c.row.created_ms);
    }
    s.step();
    if (s.changes() == 0)
      throw smithers_error(errc::invalid_argument,
                           "node " + to_string(c.row.key) + " of run \"" + c.row.run_id +
                               "\" is no longer waiting for a decision, or another one came "
                               "first");
  }

  void operator()(const cancel_waits& c) {
    for (statement* st : {&cancel_waits_, &void_decisions_}) {
      auto& s = *st;
      in_use use{s};
      s.bind_text_ref(1, c.run_id);
      s.bind_int(2, c.at_ms);
      s.step();
    }
  }

  void operator()(const set_run_status& c) {
    auto& s = set_run_status_;
    in_use use{s};
    s.bind_text_ref(1, c.run_id);
    s.bind_text_ref(2, c.status);
    s.bind_int(3, c.updated_ms);
    s.step();
  }

  void operator()(const release_run& c) {
    auto& s = release_run_;
    in_use use{s};
    s.bind_text_ref(1, c.run_id);
    s.bind_text_ref(2, c.owner_id);
    s.bind_int(3, c.now_ms);
    s.step();
  }

  void operator()(const claim_run& c) {
    auto& s = claim_run_;
    in_use use{s};
    s.bind_text_ref(1, c.run_id);
    s.bind_text_ref(2, c.expected_owner_id);
    s.bind_int(3, c.expected_heartbeat_ms);
    s.bind_text_ref(4, c.owner_id);
    s.bind_int(5, c.owner_pid);
    s.bind_int(6, c.now_ms);
    s.step();
    if (s.changes() == 0)
      throw smithers_error(errc::run_resume_claim_failed, "another process claimed the run first");
    // Another owner may have written the run since this writer last did:
    // its keys are read again from the file.
    rows_.erase(c.run_id);
  }

  static void bind_attempt_key(statement& s, const std::string& run_id, const std::string& node_id,
                               std::int64_t iteration, std::int64_t attempt) {
    s.bind_text_ref(1, run_id);
    s.bind_text_ref(2, node_id);
    s.bind_int(3, iteration);
    s.bind_int(4, attempt);
  }

  // SQL NULL is "no output"; an output that is JSON null is the text null.
  static void bind_output(statement& s, int i, const std::optional<json>& output) {
    if (!output)
      s.bind_null(i);
    else if (output->is_null())
      s.bind_text(i, "null");
    else
      s.bind_json(i, *output);
  }

  void exec(statement& s) {
    in_use use{s};
    s.step();
  }

  void rollback() {
    run_nos_.clear();
    rows_.clear(); // may hold keys of rows the rollback removed
    // Some errors (disk full, I/O) already rolled the transaction back.
    if (sqlite3_get_autocommit(db_)) return;
    in_use use{rollback_};
    sqlite3_step(rollback_.handle());
  }

  sqlite3* db_;
  statement begin_, commit_, rollback_;
  statement insert_run_, run_no_, update_run_status_, insert_node_, update_node_, node_keys_,
      insert_attempt_, attempt_keys_, finish_attempt_, heartbeat_, heartbeat_data_, insert_chunk_,
      chunk_overlap_, store_frame_, attempt_meta_, put_cache_, attempt_worker_, store_tree_,
      touch_run_, request_cancel_, claim_run_, request_handover_, withdraw_handover_, release_run_,
      upsert_wait_, consume_inbox_, insert_approval_, insert_signal_, cancel_waits_,
      void_decisions_, set_run_status_, upsert_loop_, continue_run_;
  std::unordered_map<std::string, std::int64_t> run_nos_;
  std::unordered_map<std::string, run_rows> rows_;
};

void append_chunk_entry(std::string& out, const std::string& type, std::int64_t at_ms,
                        const json& fields) {
  begin_chunk_entry(out, type, at_ms);
  util::append_json(out, fields, json::error_handler_t::replace); // as bind_json
  out += ']';
}

writer::writer(database& db) : impl_(std::make_unique<impl>(db.handle())) {}

writer::~writer() = default;

void writer::apply(const std::vector<command>& batch) {
  apply_all(std::vector<const std::vector<command>*>{&batch});
}

void writer::apply_all(const std::vector<const std::vector<command>*>& batches) {
  std::size_t total = 0;
  for (const auto* b : batches)
    total += b->size();
  if (total == 0) return;
  impl& w = *impl_;
  bool faults = util::faults_armed();
  try {
    if (faults) util::fault_point("store.begin");
    w.exec(w.begin_);
  } catch (const smithers_error& e) {
    throw smithers_error(errc::db_error, "cannot begin a write transaction: " + e.err().message);
  }
  std::size_t i = 0;
  const command* current = nullptr;
  try {
    for (const auto* b : batches)
      for (const auto& c : *b) {
        current = &c;
        if (faults) {
          // "store.write.insert_attempt" (an attempt's start), ".finish_attempt" (its output), ...
          auto what = std::visit(describe{}, c);
          util::fault_point("store.write." + what.substr(0, what.find(' ')));
        }
        std::visit(w, c);
        ++i;
      }
    current = nullptr;
    if (faults) util::fault_point("store.commit");
    w.exec(w.commit_);
  } catch (const std::exception& e) {
    // Build the message before rolling back: ROLLBACK resets sqlite3_errmsg.
    auto* se = dynamic_cast<const smithers_error*>(&e);
    std::string cause = se ? se->err().message : e.what();
    std::string message = current ? "write failed at command " + std::to_string(i + 1) + " of " +
                                        std::to_string(total) + " (" +
                                        std::visit(describe{}, *current) + "): " + cause
                                  : "commit failed: " + cause;
    w.rollback();
    // A command that refused on purpose (a lost claim, a decision that came
    // second) keeps its code and its own words for the user; everything
    // else is a store failure, located.
    if (se && se->code() != errc::db_error) throw smithers_error(se->err());
    throw smithers_error(errc::db_error, std::move(message));
  }
  // Committed, not yet reported: a crash here loses only the reply.
  if (faults) util::fault_point("store.committed");
}

} // namespace smithers::store
