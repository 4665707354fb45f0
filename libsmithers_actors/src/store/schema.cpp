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
// larger — and agent outputs (in outputs and NodeOutput events) are large.
// nodes are listed in rowid order, so they are upserted, never replaced.
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
};

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
  for (const auto& m : migrations()) {
    if (m.version <= version) continue;
    db.exec("BEGIN IMMEDIATE");
    int current = 0;
    try {
      // Another process may have migrated between our read and our lock.
      current = db.user_version();
      if (current < m.version) {
        db.exec(m.sql);
        db.exec("PRAGMA user_version = " + std::to_string(m.version));
      }
      db.exec("COMMIT");
    } catch (const smithers_error& e) {
      if (!sqlite3_get_autocommit(db.handle()))
        sqlite3_exec(db.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw smithers_error(errc::db_error, "migration to schema version " +
                                               std::to_string(m.version) +
                                               " failed: " + e.err().message);
    }
    if (current > schema_version) throw_newer(current);
    version = std::max(current, m.version);
  }
}

} // namespace smithers::store
