#include "store/schema.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <iterator>

namespace smithers::store {

namespace {

// Rowid tables throughout: rows can be large (heartbeat data, outputs, trees)
// and a WITHOUT ROWID table copies whole rows into its interior pages.
// Measured here (WAL, 5 rows per commit): with 150-byte rows WITHOUT ROWID
// was ~20 % faster and 8 % smaller, with 1 KB rows 2x slower and 3.3x
// larger — and agent outputs (on attempts and in NodeOutput events) are
// large. Append-only tables use an integer key instead (see v3), and so,
// since v5, do nodes and attempts: keyed by position in their run, listed in
// that (first-appearance) order.
constexpr migration all_migrations[] = {
    {1, R"sql(
CREATE TABLE runs (
  run_id           TEXT    NOT NULL PRIMARY KEY,
  workflow_name    TEXT    NOT NULL,
  status           TEXT    NOT NULL,
  input_json       TEXT,
  config_json      TEXT,
  workflow_hash    TEXT    NOT NULL DEFAULT '',
  workflow_path    TEXT    NOT NULL DEFAULT '',
  vcs_revision     TEXT    NOT NULL DEFAULT '',
  owner_id         TEXT    NOT NULL DEFAULT '',
  owner_pid        INTEGER NOT NULL DEFAULT 0,
  heartbeat_ms     INTEGER NOT NULL DEFAULT 0,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  parent_run_id    TEXT,
  error_json       TEXT,
  created_ms       INTEGER NOT NULL,
  updated_ms       INTEGER NOT NULL,
  finished_ms      INTEGER
);
CREATE INDEX runs_by_status ON runs (status, created_ms);
CREATE INDEX runs_by_created ON runs (created_ms);

CREATE TABLE nodes (
  run_id     TEXT    NOT NULL REFERENCES runs (run_id),
  node_id    TEXT    NOT NULL,
  iteration  INTEGER NOT NULL,
  state      TEXT    NOT NULL,
  attempts   INTEGER NOT NULL DEFAULT 0,
  label      TEXT    NOT NULL DEFAULT '',
  kind       TEXT    NOT NULL DEFAULT '',
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (run_id, node_id, iteration)
);

CREATE TABLE attempts (
  run_id         TEXT    NOT NULL REFERENCES runs (run_id),
  node_id        TEXT    NOT NULL,
  iteration      INTEGER NOT NULL,
  attempt        INTEGER NOT NULL,
  state          TEXT    NOT NULL,
  started_ms     INTEGER NOT NULL,
  finished_ms    INTEGER,
  heartbeat_ms   INTEGER,
  heartbeat_json TEXT,
  error_json     TEXT,
  meta_json      TEXT,
  cached         INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, node_id, iteration, attempt)
);

CREATE TABLE outputs (
  run_id     TEXT    NOT NULL REFERENCES runs (run_id),
  node_id    TEXT    NOT NULL,
  iteration  INTEGER NOT NULL,
  value_json TEXT,
  PRIMARY KEY (run_id, node_id, iteration)
);

CREATE TABLE events (
  run_id       TEXT    NOT NULL REFERENCES runs (run_id),
  seq          INTEGER NOT NULL,
  type         TEXT    NOT NULL,
  timestamp_ms INTEGER NOT NULL,
  payload_json TEXT,
  PRIMARY KEY (run_id, seq)
);

CREATE TABLE frames (
  run_id     TEXT    NOT NULL REFERENCES runs (run_id),
  frame_no   INTEGER NOT NULL,
  tree_hash  TEXT    NOT NULL,
  tree_json  TEXT,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (run_id, frame_no)
);
)sql"},
    // v2: time travel. Trees are stored once per hash (content-addressed) and
    // frames carry a snapshot of node states: a full keyframe now and then,
    // otherwise only what changed since the previous frame. Frames of v1
    // keep their inline tree_json.
    {2, R"sql(
CREATE TABLE trees (
  hash      TEXT PRIMARY KEY,
  tree_json TEXT NOT NULL
);
ALTER TABLE frames ADD COLUMN keyframe INTEGER NOT NULL DEFAULT 1;
ALTER TABLE frames ADD COLUMN snapshot_json TEXT;
CREATE INDEX runs_by_parent ON runs (parent_run_id);
)sql"},
    // v3: fewer b-trees per commit (a chain step's commit wrote ~11 pages).
    // Each run gets a number; events and frames are keyed by the integer
    // run_no << 32 | seq (frame_no) alone, so an append touches one b-tree
    // (the table's last page) instead of the table and a (run_id, seq) index.
    // An output lives on the attempt that produced it (outputs is gone);
    // outputs a v2 fork copied in without an attempt get a finished, cached
    // attempt marked {"migrated_output": true}.
    {3, R"sql(
ALTER TABLE runs ADD COLUMN run_no INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET run_no = rowid;
CREATE UNIQUE INDEX runs_by_no ON runs (run_no);

CREATE TABLE events_v3 (
  id           INTEGER PRIMARY KEY, -- run_no << 32 | seq
  run_id       TEXT    NOT NULL REFERENCES runs (run_id),
  seq          INTEGER NOT NULL CHECK (seq >= 0 AND seq < 4294967296),
  type         TEXT    NOT NULL,
  timestamp_ms INTEGER NOT NULL,
  payload_json TEXT
);
INSERT INTO events_v3
  SELECT (r.run_no << 32) + e.seq, e.run_id, e.seq, e.type, e.timestamp_ms, e.payload_json
  FROM events e JOIN runs r ON r.run_id = e.run_id ORDER BY 1;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;

CREATE TABLE frames_v3 (
  id            INTEGER PRIMARY KEY, -- run_no << 32 | frame_no
  run_id        TEXT    NOT NULL REFERENCES runs (run_id),
  frame_no      INTEGER NOT NULL CHECK (frame_no >= 0 AND frame_no < 4294967296),
  tree_hash     TEXT    NOT NULL,
  tree_json     TEXT,
  created_ms    INTEGER NOT NULL,
  keyframe      INTEGER NOT NULL DEFAULT 1,
  snapshot_json TEXT
);
INSERT INTO frames_v3
  SELECT (r.run_no << 32) + f.frame_no, f.run_id, f.frame_no, f.tree_hash, f.tree_json,
         f.created_ms, f.keyframe, f.snapshot_json
  FROM frames f JOIN runs r ON r.run_id = f.run_id ORDER BY 1;
DROP TABLE frames;
ALTER TABLE frames_v3 RENAME TO frames;

ALTER TABLE attempts ADD COLUMN output_json TEXT;
UPDATE attempts SET output_json = (
  SELECT o.value_json FROM outputs o
  WHERE o.run_id = attempts.run_id AND o.node_id = attempts.node_id
    AND o.iteration = attempts.iteration)
WHERE state = 'finished';
INSERT INTO attempts (run_id, node_id, iteration, attempt, state, started_ms, finished_ms,
                      meta_json, cached, output_json)
  SELECT o.run_id, o.node_id, o.iteration,
         1 + COALESCE((SELECT max(a.attempt) FROM attempts a WHERE a.run_id = o.run_id
                         AND a.node_id = o.node_id AND a.iteration = o.iteration), 0),
         'finished', r.created_ms, r.created_ms, '{"migrated_output":true}', 1, o.value_json
  FROM outputs o JOIN runs r ON r.run_id = o.run_id
  WHERE NOT EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = o.run_id AND a.node_id = o.node_id
                      AND a.iteration = o.iteration AND a.state = 'finished');
DROP TABLE outputs;
)sql"},
    // v4: events are stored in chunks, one row per run of consecutive events
    // a commit writes (a chain step's five events, a fan-out batch's ~50):
    // one b-tree insert per commit instead of one per event, which was a
    // fifth of a trivial task's cost. The `events` view shows one row per
    // event, as the table did, for anyone querying the file.
    {4, R"sql(
CREATE TABLE event_chunks (
  id          INTEGER PRIMARY KEY, -- run_no << 32 | seq of its first event
  run_id      TEXT    NOT NULL REFERENCES runs (run_id),
  last_seq    INTEGER NOT NULL CHECK (last_seq >= (id & 4294967295) AND last_seq < 4294967296),
  events_json TEXT    NOT NULL -- [[type, timestamp_ms, {fields}], ...] for seqs first..last
);
INSERT INTO event_chunks (id, run_id, last_seq, events_json)
  SELECT id, run_id, seq,
         json_array(json_array(type, timestamp_ms, json(COALESCE(payload_json, '{}'))))
  FROM events ORDER BY id;
DROP TABLE events;
CREATE VIEW events (id, run_id, seq, type, timestamp_ms, payload_json) AS
  SELECT c.id + j.key, c.run_id, (c.id & 4294967295) + j.key, j.value ->> 0, j.value ->> 1,
         j.value -> 2
  FROM event_chunks c, json_each(c.events_json) j;
)sql"},
    // v5: nodes and attempts keyed by one integer each, as events and frames
    // are: run_no << 32 | the row's position in its run (first appearance).
    // A write appended to, or updated, its row through an index on the text
    // key (run_id, node_id, iteration[, attempt]): a seek per write and one
    // more b-tree page per commit (a chain step wrote 5.5 WAL pages, now
    // 4.3). The key stays unique: rows of a run are written by its owner's
    // writer, which keeps the run's keys while it writes it.
    {5, R"sql(
CREATE TABLE nodes_v5 (
  id         INTEGER PRIMARY KEY, -- run_no << 32 | position in the run
  run_id     TEXT    NOT NULL REFERENCES runs (run_id),
  node_id    TEXT    NOT NULL,
  iteration  INTEGER NOT NULL,
  state      TEXT    NOT NULL,
  attempts   INTEGER NOT NULL DEFAULT 0,
  label      TEXT    NOT NULL DEFAULT '',
  kind       TEXT    NOT NULL DEFAULT '',
  updated_ms INTEGER NOT NULL
);
INSERT INTO nodes_v5
  SELECT (r.run_no << 32) + row_number() OVER (PARTITION BY n.run_id ORDER BY n.rowid) - 1,
         n.run_id, n.node_id, n.iteration, n.state, n.attempts, n.label, n.kind, n.updated_ms
  FROM nodes n JOIN runs r ON r.run_id = n.run_id ORDER BY 1;
DROP TABLE nodes;
ALTER TABLE nodes_v5 RENAME TO nodes;

CREATE TABLE attempts_v5 (
  id             INTEGER PRIMARY KEY, -- run_no << 32 | position in the run
  run_id         TEXT    NOT NULL REFERENCES runs (run_id),
  node_id        TEXT    NOT NULL,
  iteration      INTEGER NOT NULL,
  attempt        INTEGER NOT NULL,
  state          TEXT    NOT NULL,
  started_ms     INTEGER NOT NULL,
  finished_ms    INTEGER,
  heartbeat_ms   INTEGER,
  heartbeat_json TEXT,
  error_json     TEXT,
  meta_json      TEXT,
  cached         INTEGER NOT NULL DEFAULT 0,
  output_json    TEXT
);
INSERT INTO attempts_v5
  SELECT (r.run_no << 32) + row_number() OVER (PARTITION BY a.run_id ORDER BY a.rowid) - 1,
         a.run_id, a.node_id, a.iteration, a.attempt, a.state, a.started_ms, a.finished_ms,
         a.heartbeat_ms, a.heartbeat_json, a.error_json, a.meta_json, a.cached, a.output_json
  FROM attempts a JOIN runs r ON r.run_id = a.run_id ORDER BY 1;
DROP TABLE attempts;
ALTER TABLE attempts_v5 RENAME TO attempts;
)sql"},
    // v6: a run's working directory, so every resume runs its commands
    // where the run started; and forced takeovers as a handover: a resumer
    // records its owner id in handover_to and the live owner releases the
    // run (owner_id '') before the resumer claims it.
    {6, R"sql(
ALTER TABLE runs ADD COLUMN cwd TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN handover_to TEXT NOT NULL DEFAULT '';
)sql"},
    // v7: loop states (docs/storage.md, "loops"): a loop instance's current
    // iteration and whether it has ended, so a resume continues it there.
    {7, R"sql(
CREATE TABLE loops (
  run_id     TEXT    NOT NULL REFERENCES runs (run_id),
  loop_id    TEXT    NOT NULL,
  iteration  INTEGER NOT NULL,
  state      TEXT    NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (run_id, loop_id)
) WITHOUT ROWID;
)sql"},
    // v8: waiting (docs/storage.md, "waits" and "inbox"). A wait is what a
    // node of a run waits for — an approval, a timer's deadline, a signal —
    // written by the run's owner when the node mounts, so that nobody has
    // to stay up while it waits. The inbox holds what arrived for a run
    // (decisions, signals), written by any process, consumed by the owner
    // in the batch that resolves the node.
    {8, R"sql(
CREATE TABLE waits (
  run_id       TEXT    NOT NULL REFERENCES runs (run_id),
  node_id      TEXT    NOT NULL,
  iteration    INTEGER NOT NULL,
  kind         TEXT    NOT NULL, -- approval | gate | timer | signal
  state        TEXT    NOT NULL, -- waiting | approved | denied | fired | received | timed-out
                                 -- | cancelled (the run ended while it waited)
  name         TEXT    NOT NULL DEFAULT '', -- a signal's
  attempt      INTEGER NOT NULL DEFAULT 0,  -- the attempt it resolves
  since_ms     INTEGER NOT NULL,
  deadline_ms  INTEGER,                     -- a timer fires, a signal times out
  details_json TEXT,                        -- an approval's title and summary
  updated_ms   INTEGER NOT NULL,
  PRIMARY KEY (run_id, node_id, iteration)
) WITHOUT ROWID;
CREATE INDEX waits_waiting ON waits (state, deadline_ms);
CREATE TABLE inbox (
  id           INTEGER PRIMARY KEY,
  run_id       TEXT    NOT NULL REFERENCES runs (run_id),
  kind         TEXT    NOT NULL, -- approval | signal
  node_id      TEXT    NOT NULL DEFAULT '', -- approval: the node decided
  iteration    INTEGER NOT NULL DEFAULT 0,
  name         TEXT    NOT NULL DEFAULT '', -- signal: its name
  payload_json TEXT,                        -- approval: {approved, by, note, decided_ms}; signal: its data
  created_ms   INTEGER NOT NULL,
  consumed_ms  INTEGER,
  consumed_by  TEXT    -- the node (to_string of its key) that took it
);
CREATE INDEX inbox_open ON inbox (run_id, id) WHERE consumed_ms IS NULL;
)sql"},
    // v9: distribution (docs/storage.md, "attempts"): the worker an attempt
    // was sent to, as HOST:PORT; NULL when it ran in the owner's process.
    {9, R"sql(
ALTER TABLE attempts ADD COLUMN worker TEXT;
)sql"},
    // v10: the task cache (docs/storage.md, "cache"): a finished output by
    // its key (a hash of what the task ran on), shared by the runs of a
    // workflow in this database.
    {10, R"sql(
CREATE TABLE cache (
  key         TEXT    NOT NULL PRIMARY KEY,
  workflow    TEXT    NOT NULL,
  node_id     TEXT    NOT NULL,
  output_json TEXT    NOT NULL,
  run_id      TEXT    NOT NULL, -- the run whose attempt produced it
  created_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX cache_workflow ON cache (workflow);
)sql"},
};

// What migrations 1 to schema_version make, as SQLite keeps it in
// sqlite_schema (in that table's order), for a new file: creating it at once
// costs a fraction of replaying the migrations (whose table rebuilds and
// renames re-parse the schema: ~5 ms of CPU, half of `smithers run`'s start
// on a new file). A test checks that both give the same sqlite_schema; a new
// migration replaces this text with the dump of the migrated schema.
constexpr const char* new_file_schema = R"sql(
CREATE TABLE runs (
  run_id           TEXT    NOT NULL PRIMARY KEY,
  workflow_name    TEXT    NOT NULL,
  status           TEXT    NOT NULL,
  input_json       TEXT,
  config_json      TEXT,
  workflow_hash    TEXT    NOT NULL DEFAULT '',
  workflow_path    TEXT    NOT NULL DEFAULT '',
  vcs_revision     TEXT    NOT NULL DEFAULT '',
  owner_id         TEXT    NOT NULL DEFAULT '',
  owner_pid        INTEGER NOT NULL DEFAULT 0,
  heartbeat_ms     INTEGER NOT NULL DEFAULT 0,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  parent_run_id    TEXT,
  error_json       TEXT,
  created_ms       INTEGER NOT NULL,
  updated_ms       INTEGER NOT NULL,
  finished_ms      INTEGER
, run_no INTEGER NOT NULL DEFAULT 0, cwd TEXT NOT NULL DEFAULT '', handover_to TEXT NOT NULL DEFAULT '');
CREATE INDEX runs_by_status ON runs (status, created_ms);
CREATE INDEX runs_by_created ON runs (created_ms);
CREATE TABLE trees (
  hash      TEXT PRIMARY KEY,
  tree_json TEXT NOT NULL
);
CREATE INDEX runs_by_parent ON runs (parent_run_id);
CREATE UNIQUE INDEX runs_by_no ON runs (run_no);
CREATE TABLE "frames" (
  id            INTEGER PRIMARY KEY, -- run_no << 32 | frame_no
  run_id        TEXT    NOT NULL REFERENCES runs (run_id),
  frame_no      INTEGER NOT NULL CHECK (frame_no >= 0 AND frame_no < 4294967296),
  tree_hash     TEXT    NOT NULL,
  tree_json     TEXT,
  created_ms    INTEGER NOT NULL,
  keyframe      INTEGER NOT NULL DEFAULT 1,
  snapshot_json TEXT
);
CREATE TABLE event_chunks (
  id          INTEGER PRIMARY KEY, -- run_no << 32 | seq of its first event
  run_id      TEXT    NOT NULL REFERENCES runs (run_id),
  last_seq    INTEGER NOT NULL CHECK (last_seq >= (id & 4294967295) AND last_seq < 4294967296),
  events_json TEXT    NOT NULL -- [[type, timestamp_ms, {fields}], ...] for seqs first..last
);
CREATE VIEW events (id, run_id, seq, type, timestamp_ms, payload_json) AS
  SELECT c.id + j.key, c.run_id, (c.id & 4294967295) + j.key, j.value ->> 0, j.value ->> 1,
         j.value -> 2
  FROM event_chunks c, json_each(c.events_json) j;
CREATE TABLE "nodes" (
  id         INTEGER PRIMARY KEY, -- run_no << 32 | position in the run
  run_id     TEXT    NOT NULL REFERENCES runs (run_id),
  node_id    TEXT    NOT NULL,
  iteration  INTEGER NOT NULL,
  state      TEXT    NOT NULL,
  attempts   INTEGER NOT NULL DEFAULT 0,
  label      TEXT    NOT NULL DEFAULT '',
  kind       TEXT    NOT NULL DEFAULT '',
  updated_ms INTEGER NOT NULL
);
CREATE TABLE "attempts" (
  id             INTEGER PRIMARY KEY, -- run_no << 32 | position in the run
  run_id         TEXT    NOT NULL REFERENCES runs (run_id),
  node_id        TEXT    NOT NULL,
  iteration      INTEGER NOT NULL,
  attempt        INTEGER NOT NULL,
  state          TEXT    NOT NULL,
  started_ms     INTEGER NOT NULL,
  finished_ms    INTEGER,
  heartbeat_ms   INTEGER,
  heartbeat_json TEXT,
  error_json     TEXT,
  meta_json      TEXT,
  cached         INTEGER NOT NULL DEFAULT 0,
  output_json    TEXT
, worker TEXT);
CREATE TABLE loops (
  run_id     TEXT    NOT NULL REFERENCES runs (run_id),
  loop_id    TEXT    NOT NULL,
  iteration  INTEGER NOT NULL,
  state      TEXT    NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (run_id, loop_id)
) WITHOUT ROWID;
CREATE TABLE waits (
  run_id       TEXT    NOT NULL REFERENCES runs (run_id),
  node_id      TEXT    NOT NULL,
  iteration    INTEGER NOT NULL,
  kind         TEXT    NOT NULL, -- approval | gate | timer | signal
  state        TEXT    NOT NULL, -- waiting | approved | denied | fired | received | timed-out
                                 -- | cancelled (the run ended while it waited)
  name         TEXT    NOT NULL DEFAULT '', -- a signal's
  attempt      INTEGER NOT NULL DEFAULT 0,  -- the attempt it resolves
  since_ms     INTEGER NOT NULL,
  deadline_ms  INTEGER,                     -- a timer fires, a signal times out
  details_json TEXT,                        -- an approval's title and summary
  updated_ms   INTEGER NOT NULL,
  PRIMARY KEY (run_id, node_id, iteration)
) WITHOUT ROWID;
CREATE INDEX waits_waiting ON waits (state, deadline_ms);
CREATE TABLE inbox (
  id           INTEGER PRIMARY KEY,
  run_id       TEXT    NOT NULL REFERENCES runs (run_id),
  kind         TEXT    NOT NULL, -- approval | signal
  node_id      TEXT    NOT NULL DEFAULT '', -- approval: the node decided
  iteration    INTEGER NOT NULL DEFAULT 0,
  name         TEXT    NOT NULL DEFAULT '', -- signal: its name
  payload_json TEXT,                        -- approval: {approved, by, note, decided_ms}; signal: its data
  created_ms   INTEGER NOT NULL,
  consumed_ms  INTEGER,
  consumed_by  TEXT    -- the node (to_string of its key) that took it
);
CREATE INDEX inbox_open ON inbox (run_id, id) WHERE consumed_ms IS NULL;
CREATE TABLE cache (
  key         TEXT    NOT NULL PRIMARY KEY,
  workflow    TEXT    NOT NULL,
  node_id     TEXT    NOT NULL,
  output_json TEXT    NOT NULL,
  run_id      TEXT    NOT NULL, -- the run whose attempt produced it
  created_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX cache_workflow ON cache (workflow);
)sql";

static_assert(all_migrations[std::size(all_migrations) - 1].version == schema_version,
              "the last migration must produce schema_version");

[[noreturn]] void throw_newer(int version) {
  throw smithers_error(errc::db_error, newer_schema_message(version));
}

} // namespace

std::string newer_schema_message(int version) {
  return "database schema version " + std::to_string(version) + " is newer than this smithers (" +
         std::to_string(schema_version) + ")";
}

const std::vector<migration>& migrations() {
  static const std::vector<migration> list(std::begin(all_migrations), std::end(all_migrations));
  return list;
}

void migrate(database& db) {
  int version = db.user_version();
  if (version > schema_version) throw_newer(version);
  if (version == schema_version) return;
  // Every pending migration in one transaction (a new file: the schema they
  // make, at once), so a failure or a crash leaves the file as it was.
  db.exec("BEGIN IMMEDIATE");
  int current = 0, applying = schema_version;
  try {
    // Another process may have migrated between our read and our lock.
    current = db.user_version();
    if (current == 0) {
      db.exec(new_file_schema);
    } else if (current < schema_version) {
      for (const auto& m : migrations()) {
        if (m.version <= current) continue;
        applying = m.version;
        db.exec(m.sql);
      }
    }
    if (current < schema_version) {
      applying = schema_version;
      db.exec("PRAGMA user_version = " + std::to_string(schema_version));
    }
    db.exec("COMMIT");
  } catch (const smithers_error& e) {
    if (!sqlite3_get_autocommit(db.handle()))
      sqlite3_exec(db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw smithers_error(errc::db_error, "migration to schema version " + std::to_string(applying) +
                                             " failed: " + e.err().message);
  }
  if (current > schema_version) throw_newer(current);
}

} // namespace smithers::store
