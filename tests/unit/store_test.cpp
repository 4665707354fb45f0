#include <catch2/catch.hpp>

#include "store/database.hpp"
#include "store/fork.hpp"
#include "store/reader.hpp"
#include "store/schema.hpp"
#include "store/writer.hpp"
#include "support/temp_dir.hpp"

#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace smithers::store;
using smithers::json;
using smithers::smithers_error;

namespace {

using test_support::temp_dir;

std::string pragma_text(database& db, const std::string& name) {
  statement s(db.handle(), "PRAGMA " + name);
  REQUIRE(s.step());
  return s.column_text(0);
}

// One integer from a plain connection (no migration, no pragmas of ours).
std::int64_t raw_int(const std::string& path, const char* sql) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  std::int64_t v = -1;
  {
    statement s(raw, sql);
    REQUIRE(s.step());
    v = s.column_int(0);
  }
  sqlite3_close(raw);
  return v;
}

std::int64_t count(database& db, const std::string& sql) {
  statement s(db.handle(), sql);
  REQUIRE(s.step());
  return s.column_int(0);
}

// A run's node ids as the reader lists them (first appearance first).
std::vector<std::string> node_ids(database& db, const std::string& run_id) {
  std::vector<std::string> ids;
  for (const auto& n : reader(db).nodes(run_id))
    ids.push_back(n.node_id);
  return ids;
}

// Writes a database file at an older schema version (its migrations, run
// raw), then `rows` in that version's tables, as an older smithers left it.
void write_old_schema(const std::string& path, int version, const std::string& rows) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  auto exec = [&](const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &err);
    INFO((err ? err : ""));
    sqlite3_free(err);
    REQUIRE(rc == SQLITE_OK);
  };
  for (const auto& m : migrations())
    if (m.version <= version) exec(m.sql);
  exec("PRAGMA user_version = " + std::to_string(version));
  exec(rows);
  sqlite3_close(raw);
}

// Runs f and returns the DB_ERROR message it throws ("" if it did not throw).
template <class F> std::string db_error_of(F&& f) {
  try {
    f();
  } catch (const smithers_error& e) {
    CHECK(e.code() == "DB_ERROR");
    return e.err().message;
  }
  return "";
}

run_row make_run(const std::string& id, std::int64_t created_ms = 1000,
                 const std::string& status = "running") {
  run_row r;
  r.run_id = id;
  r.workflow_name = "wf";
  r.status = status;
  r.created_ms = created_ms;
  r.updated_ms = created_ms;
  return r;
}

attempt_row make_attempt(const std::string& run, const std::string& node,
                         std::int64_t attempt = 1) {
  attempt_row a;
  a.run_id = run;
  a.node_id = node;
  a.attempt = attempt;
  a.state = "in-progress";
  a.started_ms = 10;
  return a;
}

event_row make_event(const std::string& run, std::int64_t seq, const std::string& type = "Tick") {
  event_row e;
  e.run_id = run;
  e.seq = seq;
  e.type = type;
  e.timestamp_ms = 100 + seq;
  e.payload = {{"type", type}, {"seq", seq}};
  return e;
}

} // namespace

TEST_CASE("the migrations are numbered 1 up to schema_version") {
  const auto& list = migrations();
  REQUIRE(!list.empty());
  for (std::size_t i = 0; i < list.size(); ++i)
    CHECK(list[i].version == static_cast<int>(i) + 1);
  CHECK(list.back().version == schema_version);
}

TEST_CASE("opening a new file creates it with the current schema") {
  temp_dir dir;
  auto db = database::open(dir.file());
  CHECK(std::filesystem::exists(dir.file()));
  CHECK(db.user_version() == schema_version);
  CHECK(db.path() == dir.file());
  for (const char* table : {"runs", "nodes", "attempts", "event_chunks", "frames", "trees"})
    CHECK(count(db, std::string("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND "
                                "name = '") +
                        table + "'") == 1);
  // v3 keeps outputs on their attempts.
  CHECK(count(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'outputs'") == 0);
  // v4 stores events in chunks and shows them, one row each, in a view.
  CHECK(count(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'view' AND name = 'events'") ==
        1);
  // Checkpoints every 4,000 WAL pages (docs/operations.md: the WAL's size).
  CHECK(count(db, "PRAGMA wal_autocheckpoint") == 4000);
}

// sqlite_schema's rows (type, name, table, SQL text) of a file, by name.
std::vector<std::string> schema_rows(const std::string& path) {
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
  std::vector<std::string> rows;
  {
    statement s(raw, "SELECT type || ' ' || name || ' ' || tbl_name || ': ' || coalesce(sql, '') "
                     "FROM sqlite_schema ORDER BY name");
    while (s.step())
      rows.push_back(s.column_text(0));
  }
  sqlite3_close(raw);
  return rows;
}

TEST_CASE("a new file gets exactly the schema the migrations make") {
  // A new file is created from one script, not by replaying migrations
  // (store/schema.cpp): it must be what a file migrated from version 1 on
  // has, down to the SQL text SQLite keeps.
  temp_dir dir;
  { auto db = database::open(dir.file("new.db")); }
  write_old_schema(dir.file("v1.db"), 1, "SELECT 1");
  { auto db = database::open(dir.file("v1.db")); }
  write_old_schema(dir.file("chain.db"), schema_version, "SELECT 1");
  auto made = schema_rows(dir.file("new.db"));
  CHECK(made.size() >= 20); // the tables, indexes and view of version 10
  CHECK(made == schema_rows(dir.file("chain.db")));
  CHECK(made == schema_rows(dir.file("v1.db")));
}

TEST_CASE("a new file is in WAL mode, at the current version, with the synchronous mode asked") {
  // It is set up with synchronous=OFF and synced once (store/database.cpp);
  // the connection handed out must be back at the mode asked for.
  temp_dir dir;
  {
    auto db = database::open(dir.file("normal.db"));
    CHECK(count(db, "PRAGMA synchronous") == 1);
    auto full = database::open(dir.file("full.db"), open_mode::read_write, sync_mode::full);
    CHECK(count(full, "PRAGMA synchronous") == 2);
  }
  for (const char* name : {"normal.db", "full.db"}) {
    // Bytes 18 and 19 of the header are 2 in WAL mode.
    std::ifstream in(dir.file(name), std::ios::binary);
    char header[20] = {};
    in.read(header, sizeof header);
    CHECK(header[18] == 2);
    CHECK(header[19] == 2);
    CHECK(raw_int(dir.file(name), "PRAGMA user_version") == schema_version);
  }
}

TEST_CASE("reopening a migrated database keeps its version and its data") {
  temp_dir dir;
  {
    auto db = database::open(dir.file());
    writer(db).apply({insert_run{make_run("r1")}});
  }
  auto db = database::open(dir.file());
  CHECK(db.user_version() == schema_version);
  CHECK(reader(db).run_exists("r1"));
}

TEST_CASE("a version 2 database is migrated to keyed events and frames, outputs on attempts") {
  temp_dir dir;
  // Two runs whose rows interleave; r2 was forked and carried b's output in
  // without an attempt, as v2 forks did.
  write_old_schema(dir.file(), 2, R"sql(
INSERT INTO runs (run_id, workflow_name, status, created_ms, updated_ms)
  VALUES ('r1', 'wf', 'finished', 10, 10), ('r2', 'wf', 'running', 20, 20);
INSERT INTO events VALUES ('r1', 0, 'RunStarted', 11, '{}'), ('r2', 0, 'RunStarted', 21, '{}'),
  ('r1', 1, 'NodeFinished', 12, '{"node_id":"a"}'), ('r2', 1, 'NodeStarted', 22, '{}');
INSERT INTO frames (run_id, frame_no, tree_hash, tree_json, created_ms, keyframe, snapshot_json)
  VALUES ('r1', 0, 'h0', '{"k":0}', 11, 1, '{"states":{"a":"pending"}}'),
         ('r2', 0, 'h0', NULL, 21, 1, '{"states":{"b":"finished"}}'),
         ('r1', 1, 'h1', '{"k":1}', 12, 0, '{"states":{"a":"finished"}}');
INSERT INTO attempts (run_id, node_id, iteration, attempt, state, started_ms)
  VALUES ('r1', 'a', 0, 1, 'failed', 11), ('r1', 'a', 0, 2, 'finished', 12);
INSERT INTO outputs VALUES ('r1', 'a', 0, '{"x":1}'), ('r2', 'b', 0, '{"y":2}');
)sql");

  {
    // A reading command upgrades the file too: its queries need v3.
    auto ro = database::open(dir.file(), open_mode::read_only);
    CHECK(ro.user_version() == schema_version);
    CHECK(reader(ro).events("r1").size() == 2);
  }
  auto db = database::open(dir.file());
  CHECK(db.user_version() == schema_version);
  reader rd(db);
  auto e1 = rd.events("r1");
  REQUIRE(e1.size() == 2);
  CHECK(e1[1].type == "NodeFinished");
  CHECK(e1[1].payload["node_id"] == "a");
  CHECK(rd.events("r2").size() == 2);
  CHECK(rd.max_event_seq("r1") == 1);
  CHECK(rd.frame_count("r1") == 2);
  CHECK(rd.frames("r1")[1].tree == json{{"k", 1}});
  CHECK(rd.snapshot_at("r1", 1)["outputs"] == json{{"a", {{"x", 1}}}});

  auto a1 = rd.attempts("r1");
  REQUIRE(a1.size() == 2);
  CHECK(!a1[0].output); // failed: no output
  CHECK(a1[1].output == json{{"x", 1}});
  auto a2 = rd.attempts("r2");
  REQUIRE(a2.size() == 1);
  CHECK(a2[0].state == "finished");
  CHECK(a2[0].cached);
  CHECK(a2[0].meta == json{{"migrated_output", true}});
  CHECK(a2[0].output == json{{"y", 2}});
  auto o2 = rd.outputs("r2");
  REQUIRE(o2.size() == 1);
  CHECK(o2[0].value == json{{"y", 2}});

  // New rows go on after the migrated ones, per run.
  writer(db).apply({append_event{make_event("r2", 2)}, insert_run{make_run("r3")},
                    append_event{make_event("r3", 0)}});
  CHECK(rd.max_event_seq("r2") == 2);
  CHECK(rd.events("r3").size() == 1);
  CHECK(count(db, "SELECT count(DISTINCT run_no) FROM runs") == 3);
}

TEST_CASE("an older database that cannot be upgraded fails a read-only open and stays as it was") {
  temp_dir dir;
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(dir.file().c_str(), &raw) == SQLITE_OK);
  for (const auto& m : migrations())
    if (m.version <= 2) REQUIRE(sqlite3_exec(raw, m.sql, nullptr, nullptr, nullptr) == SQLITE_OK);
  // A foreign table in the way of migration 3.
  REQUIRE(sqlite3_exec(raw, "PRAGMA user_version = 2; CREATE TABLE events_v3 (x);", nullptr,
                       nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);

  CHECK_THAT(db_error_of([&] { database::open(dir.file(), open_mode::read_only); }),
             Catch::Contains("database schema version 2 needs an upgrade to " +
                             std::to_string(schema_version) + ", which failed") &&
                 Catch::Contains("table events_v3 already exists"));
  CHECK(raw_int(dir.file(), "PRAGMA user_version") == 2);
  CHECK(raw_int(dir.file(), "SELECT count(*) FROM sqlite_schema WHERE name = 'outputs'") == 1);
}

TEST_CASE("a database from a newer smithers is refused") {
  temp_dir dir;
  {
    auto db = database::open(dir.file());
    db.exec("PRAGMA user_version = 99");
  }
  std::string expected = "database schema version 99 is newer than this smithers (" +
                         std::to_string(schema_version) + ")";
  CHECK(db_error_of([&] { database::open(dir.file()); }) == expected);
  CHECK(db_error_of([&] { database::open(dir.file(), open_mode::read_only); }) == expected);
}

TEST_CASE("a failed migration leaves the database as it was") {
  temp_dir dir;
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(dir.file().c_str(), &raw) == SQLITE_OK);
  // A foreign "runs" table makes CREATE TABLE runs fail mid-migration.
  REQUIRE(sqlite3_exec(raw, "CREATE TABLE runs (x)", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);

  CHECK_THAT(db_error_of([&] { database::open(dir.file()); }),
             Catch::Contains("migration to schema version " + std::to_string(schema_version) +
                             " failed") &&
                 Catch::Contains("table runs already exists"));
  CHECK(raw_int(dir.file(), "SELECT count(*) FROM sqlite_schema WHERE name <> 'runs'") == 0);
  CHECK(raw_int(dir.file(), "PRAGMA user_version") == 0);
}

TEST_CASE("a read-only open of a missing file fails and creates nothing") {
  temp_dir dir;
  CHECK(db_error_of([&] { database::open(dir.file(), open_mode::read_only); }) ==
        "database not found: " + dir.file());
  CHECK(!std::filesystem::exists(dir.file()));
}

TEST_CASE("a read-only open of a database without our schema fails") {
  temp_dir dir;
  sqlite3* raw = nullptr;
  REQUIRE(sqlite3_open(dir.file().c_str(), &raw) == SQLITE_OK);
  REQUIRE(sqlite3_exec(raw, "CREATE TABLE other (x)", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(raw);
  CHECK(db_error_of([&] { database::open(dir.file(), open_mode::read_only); }) ==
        "database has no smithers schema: " + dir.file());
}

TEST_CASE("a file that is not a database fails to open with the SQLite message") {
  temp_dir dir;
  std::FILE* f = std::fopen(dir.file().c_str(), "w");
  REQUIRE(f);
  std::fputs("this is not a database, but long enough to have a header......................\n", f);
  std::fclose(f);
  CHECK_THAT(db_error_of([&] { database::open(dir.file()); }),
             Catch::Contains("cannot open database " + dir.file()) &&
                 Catch::Contains("file is not a database"));
  CHECK_THAT(db_error_of([&] { database::open(dir.file(), open_mode::read_only); }),
             Catch::Contains("file is not a database"));
}

TEST_CASE("a read-write file database uses WAL, foreign keys and a busy timeout") {
  temp_dir dir;
  auto db = database::open(dir.file());
  CHECK(pragma_text(db, "journal_mode") == "wal");
  CHECK(pragma_text(db, "synchronous") == "1"); // NORMAL
  CHECK(pragma_text(db, "foreign_keys") == "1");
  CHECK(pragma_text(db, "busy_timeout") == "5000");
}

TEST_CASE("sync_mode full sets synchronous=FULL") {
  temp_dir dir;
  auto db = database::open(dir.file(), open_mode::read_write, sync_mode::full);
  CHECK(pragma_text(db, "synchronous") == "2");
}

TEST_CASE("an in-memory database is migrated without WAL") {
  auto db = database::open(":memory:");
  CHECK(pragma_text(db, "journal_mode") == "memory");
  CHECK(db.user_version() == schema_version);
  writer(db).apply({insert_run{make_run("r1")}});
  CHECK(reader(db).run_exists("r1"));
}

TEST_CASE("a read-only connection reads but cannot write") {
  temp_dir dir;
  {
    auto db = database::open(dir.file());
    writer(db).apply({insert_run{make_run("r1")}});
  }
  auto ro = database::open(dir.file(), open_mode::read_only);
  CHECK(pragma_text(ro, "busy_timeout") == "5000");
  CHECK(reader(ro).run_exists("r1"));
  writer w(ro);
  CHECK_THAT(db_error_of([&] { w.apply({insert_run{make_run("r2")}}); }),
             Catch::Contains("readonly database"));
  CHECK_THAT(db_error_of([&] { ro.exec("DELETE FROM runs"); }),
             Catch::Contains("readonly database"));
}

TEST_CASE("a moved database keeps the connection") {
  auto a = database::open(":memory:");
  writer(a).apply({insert_run{make_run("r1")}});
  database b = std::move(a);
  CHECK(a.handle() == nullptr);
  CHECK(reader(b).run_exists("r1"));
}

TEST_CASE("a run row round-trips through the store") {
  auto db = database::open(":memory:");
  run_row r = make_run("r1", 1234, "running");
  r.input = {{"n", 3}, {"s", "x"}};
  r.config = {{"max_concurrency", 4}};
  r.workflow_hash = "abc";
  r.workflow_path = "/w/flow.json";
  r.vcs_revision = "deadbeef";
  r.owner_id = "owner-1";
  r.owner_pid = 4242;
  r.heartbeat_ms = 1300;
  r.cancel_requested = true;
  r.parent_run_id = "r0";
  r.error = {{"code", "X"}, {"message", "m"}};
  r.updated_ms = 1250;
  r.finished_ms = 1299;
  writer(db).apply({insert_run{r}});

  auto got = reader(db).run("r1");
  REQUIRE(got);
  CHECK(got->run_id == "r1");
  CHECK(got->workflow_name == "wf");
  CHECK(got->status == "running");
  CHECK(got->input == r.input);
  CHECK(got->config == r.config);
  CHECK(got->workflow_hash == "abc");
  CHECK(got->workflow_path == "/w/flow.json");
  CHECK(got->vcs_revision == "deadbeef");
  CHECK(got->owner_id == "owner-1");
  CHECK(got->owner_pid == 4242);
  CHECK(got->heartbeat_ms == 1300);
  CHECK(got->cancel_requested);
  CHECK(got->parent_run_id == "r0");
  CHECK(got->error == r.error);
  CHECK(got->created_ms == 1234);
  CHECK(got->updated_ms == 1250);
  CHECK(got->finished_ms == 1299);

  CHECK(!reader(db).run("nope"));
  CHECK(!reader(db).run_exists("nope"));
}

TEST_CASE("json null and empty optionals are stored as SQL NULL") {
  auto db = database::open(":memory:");
  run_row r = make_run("r1");
  r.input = nullptr; // defaults: error null, no parent, not finished
  attempt_row a = make_attempt("r1", "n");
  writer(db).apply({insert_run{r}, insert_attempt{a}});

  CHECK(count(db, "SELECT count(*) FROM runs WHERE input_json IS NULL AND error_json IS NULL "
                  "AND parent_run_id IS NULL AND finished_ms IS NULL") == 1);
  CHECK(count(db, "SELECT count(*) FROM attempts WHERE finished_ms IS NULL AND heartbeat_ms IS "
                  "NULL AND heartbeat_json IS NULL AND error_json IS NULL") == 1);
  auto got = reader(db).run("r1");
  REQUIRE(got);
  CHECK(got->input.is_null());
  CHECK(got->error.is_null());
  CHECK(got->parent_run_id.empty());
  CHECK(!got->finished_ms);
}

TEST_CASE("update_run_status sets status, error and times") {
  auto db = database::open(":memory:");
  writer w(db);
  w.apply({insert_run{make_run("r1")}});
  json err = {{"code", "TASK_FAILED"}, {"message", "boom"}};
  w.apply({update_run_status{"r1", "failed", err, 2000, 2001}});
  auto got = reader(db).run("r1");
  REQUIRE(got);
  CHECK(got->status == "failed");
  CHECK(got->error == err);
  CHECK(got->updated_ms == 2000);
  CHECK(got->finished_ms == 2001);

  // Resumed: the error is cleared and the run is not finished any more.
  w.apply({update_run_status{"r1", "running", nullptr, 3000, std::nullopt}});
  got = reader(db).run("r1");
  CHECK(got->status == "running");
  CHECK(got->error.is_null());
  CHECK(got->updated_ms == 3000);
  CHECK(!got->finished_ms);
}

TEST_CASE("update_run_status of an unknown run fails") {
  auto db = database::open(":memory:");
  CHECK_THAT(db_error_of([&] {
               writer(db).apply({update_run_status{"ghost", "failed", nullptr, 1, 1}});
             }),
             Catch::Contains("no such run"));
}

TEST_CASE("upserting a node updates it in place and keeps first-appearance order") {
  auto db = database::open(":memory:");
  writer w(db);
  node_row b{"r1", "b", 0, "pending", 0, "B", "command", 1};
  node_row a{"r1", "a", 0, "pending", 0, "A", "value", 2};
  node_row a1{"r1", "a", 1, "pending", 0, "A", "value", 3};
  w.apply({insert_run{make_run("r1")}, upsert_node{b}, upsert_node{a}, upsert_node{a1}});

  b.state = "finished";
  b.attempts = 2;
  b.label = "B2";
  b.updated_ms = 9;
  w.apply({upsert_node{b}});

  auto nodes = reader(db).nodes("r1");
  REQUIRE(nodes.size() == 3);
  CHECK(nodes[0].node_id == "b");
  CHECK(nodes[0].iteration == 0);
  CHECK(nodes[0].state == "finished");
  CHECK(nodes[0].attempts == 2);
  CHECK(nodes[0].label == "B2");
  CHECK(nodes[0].kind == "command");
  CHECK(nodes[0].updated_ms == 9);
  CHECK(nodes[1].node_id == "a");
  CHECK(nodes[1].iteration == 0);
  CHECK(nodes[2].node_id == "a");
  CHECK(nodes[2].iteration == 1);
  CHECK(reader(db).nodes("other").empty());
}

// Schema v5 keys a run's node and attempt rows by position; the writer keeps
// the run's keys. A run continued by another writer (a resume, in another
// process) loads them from the file and goes on where the first one stopped.
TEST_CASE("a second writer continues a run's rows by key, in the same order") {
  temp_dir dir;
  auto path = dir.file("s.db");
  {
    auto first = database::open(path);
    writer(first).apply({insert_run{make_run("r0")}, insert_run{make_run("r1")},
                         upsert_node{node_row{"r1", "a", 0, "pending", 0, "A", "compute", 1}},
                         upsert_node{node_row{"r0", "z", 0, "pending", 0, "", "compute", 1}},
                         upsert_node{node_row{"r1", "b", 0, "pending", 0, "B", "compute", 1}},
                         insert_attempt{make_attempt("r1", "a")},
                         insert_attempt{make_attempt("r1", "b")}});
  }
  auto db = database::open(path);
  writer w(db);
  w.apply({upsert_node{node_row{"r1", "a", 0, "finished", 1, "A", "compute", 5}},
           finish_attempt{"r1", {{"a", 0}, 1}, "finished", 50, nullptr, json{{"x", 1}}, nullptr},
           record_heartbeat{"r1", {{"b", 0}, 1}, 40, {{"p", 1}}, true},
           upsert_node{node_row{"r1", "c", 0, "pending", 0, "C", "value", 6}},
           insert_attempt{make_attempt("r1", "b", 2)}});
  auto nodes = reader(db).nodes("r1");
  REQUIRE(nodes.size() == 3);
  CHECK(nodes[0].node_id == "a");
  CHECK(nodes[0].state == "finished");
  CHECK(nodes[1].node_id == "b");
  CHECK(nodes[1].state == "pending");
  CHECK(nodes[2].node_id == "c");
  CHECK(reader(db).nodes("r0").size() == 1);
  auto attempts = reader(db).attempts("r1");
  REQUIRE(attempts.size() == 3);
  CHECK(attempts[0].state == "finished");
  CHECK(attempts[1].heartbeat == json{{"p", 1}});
  CHECK(attempts[2].attempt == 2);
  auto outputs = reader(db).outputs("r1");
  REQUIRE(outputs.size() == 1);
  CHECK(outputs[0].value == json{{"x", 1}});
  // Each row sits in its run's key range, in order of first appearance.
  CHECK(count(db, "SELECT count(*) FROM nodes WHERE id >> 32 = "
                  "(SELECT run_no FROM runs WHERE run_id = 'r1')") == 3);
  CHECK(count(db, "SELECT max(id) - min(id) FROM nodes WHERE run_id = 'r1'") == 2);

  SECTION("an attempt stored twice is refused, and its batch leaves nothing") {
    CHECK_THAT(db_error_of([&] {
                 w.apply({upsert_node{node_row{"r1", "d", 0, "pending", 0, "", "value", 7}},
                          insert_attempt{make_attempt("r1", "a")}});
               }),
               Catch::Contains("attempt a/0/1 is already stored"));
    CHECK(reader(db).nodes("r1").size() == 3);
    CHECK(reader(db).attempts("r1").size() == 3);
  }
}

TEST_CASE("rows changed under the writer fail its batch; it then reloads the run's keys") {
  temp_dir dir;
  auto path = dir.file("s.db");
  auto db = database::open(path);
  writer w(db);
  w.apply({insert_run{make_run("r1")},
           upsert_node{node_row{"r1", "a", 0, "pending", 0, "", "compute", 1}},
           upsert_node{node_row{"r1", "b", 0, "pending", 0, "", "compute", 1}}});
  database::open(path).exec("DELETE FROM nodes WHERE node_id = 'a'"); // not the owner's doing
  CHECK_THAT(db_error_of([&] {
               w.apply({upsert_node{node_row{"r1", "a", 0, "finished", 1, "", "compute", 2}}});
             }),
             Catch::Contains("not where it was"));
  auto nodes = reader(db).nodes("r1");
  REQUIRE(nodes.size() == 1);
  CHECK(nodes[0].state == "pending"); // b untouched
  // The failed batch dropped the keys: the next one finds a gone and appends it.
  w.apply({upsert_node{node_row{"r1", "a", 0, "finished", 1, "", "compute", 3}}});
  CHECK(node_ids(db, "r1") == std::vector<std::string>{"b", "a"});
  CHECK(reader(db).nodes("r1")[1].state == "finished");
}

TEST_CASE("a position another writer took fails the append; the next batch goes on after it") {
  temp_dir dir;
  auto path = dir.file("s.db");
  auto db = database::open(path);
  writer w(db);
  w.apply({insert_run{make_run("r1")},
           upsert_node{node_row{"r1", "a", 0, "pending", 0, "", "value", 1}}});
  {
    auto other = database::open(path);
    writer(other).apply({upsert_node{node_row{"r1", "x", 0, "pending", 0, "", "value", 2}}});
  }
  CHECK_THAT(db_error_of([&] {
               w.apply({upsert_node{node_row{"r1", "b", 0, "pending", 0, "", "value", 3}}});
             }),
             Catch::Contains("UNIQUE constraint failed: nodes.id"));
  w.apply({upsert_node{node_row{"r1", "b", 0, "pending", 0, "", "value", 4}}});
  CHECK(node_ids(db, "r1") == std::vector<std::string>{"a", "x", "b"});
}

TEST_CASE("a writer that claims a run back reads the keys the other owner added") {
  temp_dir dir;
  auto path = dir.file("s.db");
  auto db = database::open(path);
  writer w(db);
  auto run = make_run("r1");
  run.owner_id = "me";
  run.heartbeat_ms = 1;
  w.apply({insert_run{run}, upsert_node{node_row{"r1", "a", 0, "pending", 0, "", "value", 1}},
           insert_attempt{make_attempt("r1", "a")}});
  {
    // Another process resumes the run and adds a node and an attempt.
    auto other_db = database::open(path);
    writer other(other_db);
    other.apply({claim_run{"r1", "me", 1, "other", 2, 5},
                 upsert_node{node_row{"r1", "b", 0, "pending", 0, "", "value", 5}},
                 insert_attempt{make_attempt("r1", "b")}});
  }
  // This writer claims it back and goes on after what the other one wrote.
  w.apply({claim_run{"r1", "other", 5, "me", 1, 9},
           upsert_node{node_row{"r1", "c", 0, "pending", 0, "", "value", 9}},
           insert_attempt{make_attempt("r1", "c")},
           finish_attempt{"r1", {{"b", 0}, 1}, "finished", 10, nullptr, json{{"b", 1}}, nullptr}});
  CHECK(node_ids(db, "r1") == std::vector<std::string>{"a", "b", "c"});
  CHECK(reader(db).attempts("r1").size() == 3);
  REQUIRE(reader(db).outputs("r1").size() == 1);
}

TEST_CASE("a version 4 database is migrated to integer-keyed nodes and attempts") {
  temp_dir dir;
  write_old_schema(dir.file(), 4, R"sql(
INSERT INTO runs (run_id, workflow_name, status, created_ms, updated_ms, run_no)
  VALUES ('r1', 'wf', 'finished', 10, 10, 1), ('r2', 'wf', 'running', 20, 20, 2);
INSERT INTO nodes (run_id, node_id, iteration, state, attempts, label, kind, updated_ms) VALUES
  ('r1', 'b', 0, 'finished', 2, 'B', 'compute', 11),
  ('r2', 'x', 0, 'pending', 0, '', 'value', 21),
  ('r1', 'a', 0, 'finished', 1, '', 'value', 12);
INSERT INTO attempts (run_id, node_id, iteration, attempt, state, started_ms, finished_ms,
                      heartbeat_ms, heartbeat_json, error_json, meta_json, cached, output_json)
VALUES
  ('r1', 'b', 0, 1, 'finished', 11, 12, 12, '{"h":1}', NULL, '{"m":1}', 0, '{"v":1}'),
  ('r2', 'x', 0, 1, 'in-progress', 21, NULL, NULL, NULL, NULL, NULL, 0, NULL),
  ('r1', 'a', 0, 1, 'finished', 12, 12, NULL, NULL, NULL, NULL, 1, '{"a":true}'),
  ('r1', 'b', 0, 2, 'finished', 13, 14, NULL, NULL, NULL, NULL, 0, '{"v":2}');
)sql");

  auto db = database::open(dir.file());
  CHECK(db.user_version() == schema_version);
  reader rd(db);
  auto n1 = rd.nodes("r1");
  REQUIRE(n1.size() == 2);
  CHECK(n1[0].node_id == "b"); // first appearance order kept
  CHECK(n1[0].attempts == 2);
  CHECK(n1[0].label == "B");
  CHECK(n1[1].node_id == "a");
  REQUIRE(rd.nodes("r2").size() == 1);
  auto a1 = rd.attempts("r1");
  REQUIRE(a1.size() == 3);
  CHECK((a1[0].node_id == "a" && a1[0].cached));
  CHECK((a1[1].node_id == "b" && a1[1].attempt == 1));
  CHECK(a1[1].heartbeat == json{{"h", 1}});
  CHECK(a1[1].meta == json{{"m", 1}});
  CHECK(a1[2].attempt == 2);
  auto outs = rd.outputs("r1");
  REQUIRE(outs.size() == 2);
  // In the order the outputs were written; b's is its newest attempt's.
  CHECK((outs[0].node_id == "a" && outs[0].value == json{{"a", true}}));
  CHECK((outs[1].node_id == "b" && outs[1].value == json{{"v", 2}}));
  CHECK(count(db, "SELECT min(id) FROM nodes WHERE run_id = 'r2'") == (std::int64_t{2} << 32));
  // The run goes on where the migration left it.
  writer(db).apply(
      {upsert_node{node_row{"r2", "x", 0, "in-progress", 1, "", "value", 30}},
       finish_attempt{"r2", {{"x", 0}, 1}, "finished", 31, nullptr, json::object(), nullptr},
       upsert_node{node_row{"r2", "y", 0, "pending", 0, "", "value", 32}}});
  auto n2 = rd.nodes("r2");
  REQUIRE(n2.size() == 2);
  CHECK(n2[0].state == "in-progress");
  CHECK(n2[1].node_id == "y");
  CHECK(rd.outputs("r2").size() == 1);
}

TEST_CASE("a node row written again after a rolled-back insert is updated, not another") {
  auto db = database::open(":memory:");
  writer w(db);
  w.apply({insert_run{make_run("r1")}});
  // The batch inserts node x, then fails: x's row is rolled back.
  CHECK_THROWS_AS(
      w.apply({upsert_node{node_row{"r1", "x", 0, "pending", 0, "", "value", 1}},
               finish_attempt{"r1", {{"ghost", 0}, 1}, "finished", 2, nullptr, std::nullopt, nullptr}}),
      smithers_error);
  // y now takes the position x had; x's update must not land on y.
  w.apply({upsert_node{node_row{"r1", "y", 0, "pending", 0, "", "value", 3}}});
  w.apply({upsert_node{node_row{"r1", "x", 0, "finished", 1, "", "value", 4}}});
  auto nodes = reader(db).nodes("r1");
  REQUIRE(nodes.size() == 2);
  CHECK(nodes[0].node_id == "y");
  CHECK(nodes[0].state == "pending");
  CHECK(nodes[1].node_id == "x");
  CHECK(nodes[1].state == "finished");
}

TEST_CASE("an attempt round-trips and heartbeats update it") {
  auto db = database::open(":memory:");
  writer w(db);
  attempt_row a = make_attempt("r1", "n");
  a.iteration = 2;
  a.meta = {{"worker", "w1"}};
  a.cached = true;
  w.apply({insert_run{make_run("r1")}, insert_attempt{a}});

  auto got = reader(db).attempts("r1");
  REQUIRE(got.size() == 1);
  CHECK(got[0].run_id == "r1");
  CHECK(got[0].node_id == "n");
  CHECK(got[0].iteration == 2);
  CHECK(got[0].attempt == 1);
  CHECK(got[0].state == "in-progress");
  CHECK(got[0].started_ms == 10);
  CHECK(!got[0].finished_ms);
  CHECK(!got[0].heartbeat_ms);
  CHECK(got[0].heartbeat.is_null());
  CHECK(got[0].error.is_null());
  CHECK(got[0].meta == a.meta);
  CHECK(got[0].cached);

  SECTION("a heartbeat with data stores its time and data") {
    w.apply({record_heartbeat{"r1", {{"n", 2}, 1}, 50, {{"progress", 1}}, true}});
    got = reader(db).attempts("r1");
    CHECK(got[0].heartbeat_ms == 50);
    CHECK(got[0].heartbeat == json{{"progress", 1}});

    SECTION("a heartbeat without data keeps the previous data") {
      w.apply({record_heartbeat{"r1", {{"n", 2}, 1}, 60, nullptr, false}});
      got = reader(db).attempts("r1");
      CHECK(got[0].heartbeat_ms == 60);
      CHECK(got[0].heartbeat == json{{"progress", 1}});
    }
  }

  SECTION("a heartbeat for an unknown attempt or run changes nothing") {
    w.apply({record_heartbeat{"r1", {{"n", 2}, 7}, 50, {{"x", 1}}, true},
             record_heartbeat{"ghost", {{"n", 2}, 1}, 50, {{"x", 1}}, true},
             set_attempt_meta{"ghost", {{"n", 2}, 1}, {{"pgid", 1}}}});
    got = reader(db).attempts("r1");
    REQUIRE(got.size() == 1);
    CHECK(!got[0].heartbeat_ms);
  }
}

TEST_CASE("attempts are listed by node, iteration and attempt") {
  auto db = database::open(":memory:");
  attempt_row b2 = make_attempt("r1", "b", 2);
  attempt_row b1 = make_attempt("r1", "b", 1);
  attempt_row a1 = make_attempt("r1", "a", 1);
  a1.iteration = 1;
  attempt_row a0 = make_attempt("r1", "a", 1);
  writer(db).apply({insert_run{make_run("r1")}, insert_attempt{b2}, insert_attempt{b1},
                    insert_attempt{a1}, insert_attempt{a0}});
  auto got = reader(db).attempts("r1");
  REQUIRE(got.size() == 4);
  CHECK((got[0].node_id == "a" && got[0].iteration == 0));
  CHECK((got[1].node_id == "a" && got[1].iteration == 1));
  CHECK((got[2].node_id == "b" && got[2].attempt == 1));
  CHECK((got[3].node_id == "b" && got[3].attempt == 2));
}

TEST_CASE("finish_attempt with an output writes the attempt and the output") {
  auto db = database::open(":memory:");
  writer w(db);
  w.apply({insert_run{make_run("r1")}, insert_attempt{make_attempt("r1", "n")}});
  w.apply(
      {finish_attempt{"r1", {{"n", 0}, 1}, "finished", 77, nullptr, json{{"answer", 42}}, nullptr}});

  auto attempts = reader(db).attempts("r1");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].state == "finished");
  CHECK(attempts[0].finished_ms == 77);
  CHECK(attempts[0].error.is_null());
  auto outputs = reader(db).outputs("r1");
  REQUIRE(outputs.size() == 1);
  CHECK(outputs[0].run_id == "r1");
  CHECK(outputs[0].node_id == "n");
  CHECK(outputs[0].iteration == 0);
  CHECK(outputs[0].value == json{{"answer", 42}});

  SECTION("a later attempt replaces the output") {
    w.apply({insert_attempt{make_attempt("r1", "n", 2)},
             finish_attempt{"r1", {{"n", 0}, 2}, "finished", 88, nullptr, json("second"), nullptr}});
    outputs = reader(db).outputs("r1");
    REQUIRE(outputs.size() == 1);
    CHECK(outputs[0].value == "second");
  }
}

TEST_CASE("finish_attempt without an output records only the attempt") {
  auto db = database::open(":memory:");
  writer w(db);
  json err = {{"code", "TASK_FAILED"}, {"message", "exit 1"}};
  w.apply({insert_run{make_run("r1")}, insert_attempt{make_attempt("r1", "n")},
           finish_attempt{"r1", {{"n", 0}, 1}, "failed", 5, err, std::nullopt, nullptr}});
  auto attempts = reader(db).attempts("r1");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].state == "failed");
  CHECK(attempts[0].error == err);
  CHECK(reader(db).outputs("r1").empty());
}

TEST_CASE("an output that is JSON null is still an output") {
  auto db = database::open(":memory:");
  writer(db).apply(
      {insert_run{make_run("r1")}, insert_attempt{make_attempt("r1", "n")},
       finish_attempt{"r1", {{"n", 0}, 1}, "finished", 5, nullptr, json(nullptr), nullptr}});
  auto outputs = reader(db).outputs("r1");
  REQUIRE(outputs.size() == 1);
  CHECK(outputs[0].value.is_null());
}

TEST_CASE("finish_attempt without its attempt fails and rolls back the whole batch") {
  auto db = database::open(":memory:");
  writer w(db);
  w.apply({insert_run{make_run("r1")}});
  auto message = db_error_of([&] {
    w.apply({append_event{make_event("r1", 1)},
             upsert_node{{"r1", "n", 0, "finished", 1, "", "", 1}},
             finish_attempt{"r1", {{"n", 0}, 1}, "finished", 5, nullptr, json(1), nullptr}});
  });
  CHECK_THAT(message, Catch::Contains("no such attempt"));
  CHECK_THAT(message, Catch::Contains("command 3 of 3"));
  CHECK(reader(db).events("r1").empty());
  CHECK(reader(db).nodes("r1").empty());
  CHECK(reader(db).outputs("r1").empty());
}

TEST_CASE("a failing command leaves nothing of its batch behind") {
  temp_dir dir;
  auto db = database::open(dir.file());
  writer w(db);
  w.apply({insert_run{make_run("r1")}, append_event{make_event("r1", 1)}});

  SECTION("an event for a run that does not exist") {
    auto message = db_error_of([&] {
      w.apply({insert_run{make_run("r2")}, append_event{make_event("r1", 2)},
               append_event{make_event("ghost", 1)}});
    });
    CHECK_THAT(message, Catch::Contains("no such run"));
    CHECK_THAT(message, Catch::Contains("append_event ghost seq 1"));
  }
  SECTION("a duplicate event sequence number") {
    auto message = db_error_of([&] {
      w.apply({insert_run{make_run("r2")}, append_event{make_event("r1", 2)},
               append_event{make_event("r1", 1)}});
    });
    CHECK_THAT(message, Catch::Contains("UNIQUE constraint failed"));
  }
  SECTION("a duplicate run: INVALID_RUN_ID, told by SQLite's result code") {
    try {
      w.apply({insert_run{make_run("r2")}, append_event{make_event("r1", 2)},
               insert_run{make_run("r1")}});
      FAIL("a second run r1 was stored");
    } catch (const smithers_error& e) {
      CHECK(e.code() == "INVALID_RUN_ID");
      CHECK_THAT(e.err().message, Catch::Contains("a run with id \"r1\" already exists"));
    }
  }

  CHECK(!reader(db).run_exists("r2"));
  auto events = reader(db).events("r1");
  REQUIRE(events.size() == 1);
  CHECK(events[0].seq == 1);

  // Nothing is left open: the same writer commits the next batch.
  w.apply({append_event{make_event("r1", 2)}});
  CHECK(reader(db).events("r1").size() == 2);
  auto other = database::open(dir.file(), open_mode::read_only);
  CHECK(reader(other).events("r1").size() == 2);
}

TEST_CASE("a version 3 database is migrated to event chunks, one per event, read as before") {
  temp_dir dir;
  write_old_schema(dir.file(), 3, R"sql(
INSERT INTO runs (run_id, workflow_name, status, created_ms, updated_ms, run_no)
  VALUES ('r1', 'wf', 'finished', 10, 10, 1), ('r2', 'wf', 'running', 20, 20, 2);
INSERT INTO events (id, run_id, seq, type, timestamp_ms, payload_json) VALUES
  ((1 << 32) + 0, 'r1', 0, 'RunStarted', 11, '{}'),
  ((2 << 32) + 0, 'r2', 0, 'RunStarted', 21, NULL),
  ((1 << 32) + 1, 'r1', 1, 'NodeOutput', 12, '{"node_id":"a","output":{"text":"é \"q\""}}'),
  ((1 << 32) + 2, 'r1', 2, 'RunFinished', 13, '{"duration_ms":2}');
)sql");

  auto db = database::open(dir.file());
  CHECK(db.user_version() == schema_version);
  CHECK(count(db, "SELECT count(*) FROM event_chunks") == 4);
  reader rd(db);
  auto e1 = rd.events("r1");
  REQUIRE(e1.size() == 3);
  CHECK(e1[1].seq == 1);
  CHECK(e1[1].type == "NodeOutput");
  CHECK(e1[1].timestamp_ms == 12);
  CHECK(e1[1].payload["output"] == json{{"text", "é \"q\""}});
  CHECK(e1[1].payload["run_id"] == "r1");
  auto e2 = rd.events("r2");
  REQUIRE(e2.size() == 1);
  CHECK(e2[0].payload == json{{"type", "RunStarted"},
                              {"run_id", "r2"},
                              {"seq", 0},
                              {"timestamp_ms", 21}}); // a NULL payload reads as no fields
  CHECK(rd.max_event_seq("r1") == 2);
  CHECK(rd.events("r1", 0, 1).at(0).seq == 1);
  // The view shows one row per event, as the table did.
  CHECK(count(db, "SELECT count(*) FROM events WHERE run_id = 'r1'") == 3);
  CHECK(count(db, "SELECT timestamp_ms FROM events WHERE run_id = 'r1' AND seq = 2") == 13);
  CHECK(count(db, "SELECT payload_json ->> '$.output.text' = 'é \"q\"' FROM events "
                  "WHERE type = 'NodeOutput'") == 1);
  // Appends go on after the migrated events.
  writer(db).apply({append_event{make_event("r1", 3)}});
  CHECK(rd.max_event_seq("r1") == 3);
}

TEST_CASE("event chunks read back event by event, from any seq, with a limit") {
  auto db = database::open(":memory:");
  writer w(db);
  w.apply({insert_run{make_run("r1")}, insert_run{make_run("r2")}});
  // Seqs 0..2 in one chunk, 3 alone, 4..8 in a chunk; r2's chunk between.
  auto chunk = [](std::int64_t first, std::int64_t count) {
    std::string text = "[";
    for (std::int64_t i = 0; i < count; ++i)
      text += (i ? "," : "") + std::string(R"(["T",)") + std::to_string(first + i) + R"(,{"n":)" +
              std::to_string(first + i) + "}]";
    return append_events{"r1", first, count, text + "]"};
  };
  w.apply({chunk(0, 3), append_events{"r2", 0, 1, R"([["U",1,{}]])"}});
  w.apply({append_event{make_event("r1", 3)}, chunk(4, 5)});
  reader rd(db);
  CHECK(rd.max_event_seq("r1") == 8);
  CHECK(rd.max_event_seq("r2") == 0);
  for (std::int64_t after = -1; after <= 9; ++after)
    for (std::size_t limit : {1, 2, 4, 100}) {
      auto events = rd.events("r1", after, limit);
      auto expected = std::min<std::int64_t>(static_cast<std::int64_t>(limit), 8 - after);
      INFO("after " << after << ", limit " << limit);
      REQUIRE(static_cast<std::int64_t>(events.size()) == std::max<std::int64_t>(0, expected));
      for (std::size_t i = 0; i < events.size(); ++i) {
        std::int64_t seq = after + 1 + static_cast<std::int64_t>(i);
        CHECK(events[i].seq == seq);
        CHECK(events[i].run_id == "r1");
        if (seq != 3) {
          CHECK(events[i].timestamp_ms == seq);
          CHECK(events[i].payload["n"] == seq);
        }
      }
    }
  CHECK(rd.events("r2").size() == 1);
  CHECK(rd.events("r1", -1, 0).empty());
}

TEST_CASE("event chunks that overlap stored events are refused, and nothing is written") {
  auto db = database::open(":memory:");
  writer w(db);
  w.apply({insert_run{make_run("r1")},
           append_events{"r1", 2, 3, R"([["T",0,{}],["T",0,{}],["T",0,{}]])"}}); // seqs 2..4
  auto refused = [&](append_events c) {
    return db_error_of([&] { w.apply({append_event{make_event("r1", 9)}, std::move(c)}); });
  };
  CHECK_THAT(refused({"r1", 0, 3, R"([["T",0,{}],["T",0,{}],["T",0,{}]])"}),
             Catch::Contains("overlap")); // 0..2 reaches into 2..4
  CHECK_THAT(refused({"r1", 4, 1, R"([["T",0,{}]])"}), Catch::Contains("overlap"));
  CHECK_THAT(refused({"r1", 2, 1, R"([["T",0,{}]])"}), Catch::Contains("UNIQUE constraint failed"));
  CHECK_THAT(refused({"r1", 4294967295, 2, R"([["T",0,{}],["T",0,{}]])"}),
             Catch::Contains("out of range"));
  CHECK_THAT(refused({"ghost", 0, 1, R"([["T",0,{}]])"}), Catch::Contains("no such run"));
  // Each refusal rolled back its whole batch, seq 9 included.
  CHECK(reader(db).max_event_seq("r1") == 4);
  CHECK(reader(db).events("r1").size() == 3);
  // Right after the stored ones is fine.
  w.apply({append_events{"r1", 5, 1, R"([["T",0,{}]])"}});
  CHECK(reader(db).max_event_seq("r1") == 5);
}

TEST_CASE("a damaged event chunk is reported as DB_ERROR, naming the run and the seq") {
  temp_dir dir;
  auto db = database::open(dir.file());
  writer(db).apply({insert_run{make_run("r1")}});
  auto put = [&](std::int64_t first, std::int64_t last, const std::string& text) {
    statement s(db.handle(), "INSERT INTO event_chunks (id, run_id, last_seq, events_json) "
                             "SELECT (run_no << 32) + ?1, run_id, ?2, ?3 FROM runs");
    s.bind_int(1, first);
    s.bind_int(2, last);
    s.bind_text(3, text);
    s.step();
  };
  reader rd(db);
  put(0, 0, R"({"not":"an array"})");
  CHECK_THAT(db_error_of([&] { rd.events("r1"); }),
             Catch::Contains("event chunk 0 of run r1 is not a JSON array"));
  db.exec("DELETE FROM event_chunks");
  for (const char* entry : {R"(["T",1])", R"([1,1,{}])", R"(["T","1",{}])", R"("T")"}) {
    INFO(entry);
    put(0, 1, std::string(R"([["T",0,{}],)") + entry + "]");
    CHECK_THAT(db_error_of([&] { rd.events("r1"); }),
               Catch::Contains("event 1 of run r1 is malformed"));
    // The good event before it is still readable on its own.
    CHECK(rd.events("r1", -1, 1).size() == 1);
    db.exec("DELETE FROM event_chunks");
  }
}

TEST_CASE("a rolled-back run's number is not reused for another run's events") {
  auto db = database::open(":memory:");
  writer w(db);
  w.apply({insert_run{make_run("r1")}});
  // r2 gets number 2 inside a batch that rolls back...
  CHECK(!db_error_of([&] {
           w.apply({insert_run{make_run("r2")}, append_event{make_event("r2", 0)},
                    append_event{make_event("ghost", 0)}});
         }).empty());
  // ...so r3 gets 2 now, and r2, inserted again, 3: r2's events must not
  // land in r3's key range.
  w.apply({insert_run{make_run("r3")}});
  w.apply({insert_run{make_run("r2")}, append_event{make_event("r2", 0)}});
  reader rd(db);
  CHECK(rd.events("r2").size() == 1);
  CHECK(rd.events("r3").empty());
}

TEST_CASE("an empty batch is a no-op") {
  auto db = database::open(":memory:");
  writer(db).apply({});
  CHECK(reader(db).runs().empty());
}

TEST_CASE("runs are listed newest first and filtered by status") {
  auto db = database::open(":memory:");
  writer(db).apply(
      {insert_run{make_run("old", 100, "finished")}, insert_run{make_run("mid-a", 200, "running")},
       insert_run{make_run("mid-b", 200, "failed")}, insert_run{make_run("new", 300, "running")}});
  reader rd(db);

  std::vector<std::string> ids;
  for (const auto& r : rd.runs())
    ids.push_back(r.run_id);
  // Equal creation times: the later insert first.
  CHECK(ids == std::vector<std::string>{"new", "mid-b", "mid-a", "old"});

  ids.clear();
  for (const auto& r : rd.runs("running"))
    ids.push_back(r.run_id);
  CHECK(ids == std::vector<std::string>{"new", "mid-a"});

  CHECK(rd.runs("", 2).size() == 2);
  CHECK(rd.runs("", 2)[1].run_id == "mid-b");
  CHECK(rd.runs("cancelled").empty());
  CHECK(rd.runs("", 0).empty());
}

TEST_CASE("events are read after a sequence number, in order, up to a limit") {
  auto db = database::open(":memory:");
  std::vector<command> batch{insert_run{make_run("r1")}, insert_run{make_run("r2")}};
  for (std::int64_t seq : {3, 0, 4, 1, 2})
    batch.push_back(append_event{make_event("r1", seq, "T" + std::to_string(seq))});
  batch.push_back(append_event{make_event("r2", 0)});
  writer(db).apply(batch);
  reader rd(db);

  auto all = rd.events("r1");
  REQUIRE(all.size() == 5);
  for (std::int64_t i = 0; i < 5; ++i) {
    CHECK(all[i].run_id == "r1");
    CHECK(all[i].seq == i);
    CHECK(all[i].type == "T" + std::to_string(i));
    CHECK(all[i].timestamp_ms == 100 + i);
    // Read back as the whole event: the columns merged into the payload.
    CHECK(all[i].payload == json{{"type", "T" + std::to_string(i)},
                                 {"seq", i},
                                 {"run_id", "r1"},
                                 {"timestamp_ms", 100 + i}});
  }

  auto page = rd.events("r1", 1, 2);
  REQUIRE(page.size() == 2);
  CHECK(page[0].seq == 2);
  CHECK(page[1].seq == 3);
  CHECK(rd.events("r1", 4).empty());
  CHECK(rd.events("r2").size() == 1);
  CHECK(rd.events("none").empty());
  CHECK(rd.max_event_seq("r1") == 4);
  CHECK(rd.max_event_seq("r2") == 0);
  CHECK(rd.max_event_seq("none") == -1);
}

TEST_CASE("frames round-trip and are counted per run") {
  auto db = database::open(":memory:");
  writer w(db);
  w.apply({insert_run{make_run("r1")}, insert_run{make_run("r2")},
           store_frame{{"r1", 1, "h1", {{"kind", "sequence"}}, 10, true, nullptr}},
           store_frame{{"r1", 0, "h0", {{"kind", "task"}}, 5, true, nullptr}},
           store_frame{{"r2", 0, "hx", json::array(), 7, true, nullptr}}});
  reader rd(db);
  CHECK(rd.frame_count("r1") == 2);
  CHECK(rd.frame_count("r2") == 1);
  CHECK(rd.frame_count("none") == 0);
  auto frames = rd.frames("r1");
  REQUIRE(frames.size() == 2);
  CHECK(frames[0].run_id == "r1");
  CHECK(frames[0].frame_no == 0);
  CHECK(frames[0].tree_hash == "h0");
  CHECK(frames[0].tree == json{{"kind", "task"}});
  CHECK(frames[0].created_ms == 5);
  CHECK(frames[1].frame_no == 1);

  CHECK_THAT(db_error_of([&] {
               w.apply({store_frame{{"r1", 1, "again", nullptr, 11, true, nullptr}}});
             }),
             Catch::Contains("UNIQUE"));
}

TEST_CASE("a tree is stored once per hash, however many frames and runs use it") {
  auto db = database::open(":memory:");
  writer w(db);
  json tree = {{"sequence", json::array({{{"task", "a"}}})}};
  w.apply({insert_run{make_run("r1")}, insert_run{make_run("r2")},
           store_frame{{"r1", 0, "same", tree, 1, true, nullptr}},
           store_frame{{"r1", 1, "same", nullptr, 2, false, nullptr}},
           store_frame{{"r2", 0, "same", tree, 3, true, nullptr}}});
  statement count(db.handle(), "SELECT count(*) FROM trees");
  REQUIRE(count.step());
  CHECK(count.column_int(0) == 1);
  reader rd(db);
  CHECK(rd.tree("same") == tree);
  for (const auto& f : rd.frames("r1"))
    CHECK(f.tree == tree);
  CHECK(rd.tree("unknown").is_null());
}

TEST_CASE("a snapshot is rebuilt from the nearest keyframe and the deltas after it") {
  auto db = database::open(":memory:");
  writer w(db);
  auto frame = [](std::int64_t no, bool key, json states) {
    json snap = {{"states", std::move(states)}};
    if (key) snap["input"] = {{"n", no}};
    return store_frame{{"r1", no, "h", nullptr, 100 + no, key, snap}};
  };
  w.apply({insert_run{make_run("r1")}, insert_attempt{make_attempt("r1", "a")},
           frame(0, true, {{"a", "pending"}, {"b", "pending"}}),
           frame(1, false, {{"a", "in-progress"}}),
           finish_attempt{"r1", {{"a", 0}, 1}, "finished", 5, nullptr, json{{"v", 1}}, nullptr},
           frame(2, false, {{"a", "finished"}, {"b", "in-progress"}}),
           frame(3, true, {{"a", "finished"}, {"b", "in-progress"}}),
           frame(4, false, {{"b", "failed"}})});
  reader rd(db);
  auto at1 = rd.snapshot_at("r1", 1);
  CHECK(at1["states"] == json{{"a", "in-progress"}, {"b", "pending"}});
  CHECK(at1["outputs"] == json::object()); // a had not finished yet
  CHECK(at1["input"] == json{{"n", 0}});
  auto at2 = rd.snapshot_at("r1", 2);
  CHECK(at2["states"] == json{{"a", "finished"}, {"b", "in-progress"}});
  CHECK(at2["outputs"] == json{{"a", {{"v", 1}}}});
  auto at4 = rd.snapshot_at("r1", 4);
  CHECK(at4["states"] == json{{"a", "finished"}, {"b", "failed"}});
  CHECK(at4["input"] == json{{"n", 3}}); // from the keyframe at 3
  CHECK(rd.snapshot_at("r1", 5).is_null());
  auto list = rd.frame_summaries("r1");
  REQUIRE(list.size() == 5);
  CHECK(list[0].keyframe);
  CHECK_FALSE(list[1].keyframe);
  CHECK(list[2].changes == 2);
  CHECK(list[4].changes == 1);
}

TEST_CASE("children lists the runs forked from a run") {
  auto db = database::open(":memory:");
  auto child = make_run("c1");
  child.parent_run_id = "p";
  writer(db).apply({insert_run{make_run("p")}, insert_run{child}, insert_run{make_run("x")}});
  auto kids = reader(db).children("p");
  REQUIRE(kids.size() == 1);
  CHECK(kids[0].run_id == "c1");
}

TEST_CASE("strings with invalid UTF-8 inside JSON are still written") {
  auto db = database::open(":memory:");
  event_row e = make_event("r1", 0);
  e.payload = {{"text", std::string("bad \xff byte")}};
  writer(db).apply({insert_run{make_run("r1")}, append_event{e}});
  auto events = reader(db).events("r1");
  REQUIRE(events.size() == 1);
  CHECK(events[0].payload["text"].get<std::string>().rfind("bad ", 0) == 0);
}

TEST_CASE("a reader connection sees committed data while the writer is open") {
  temp_dir dir;
  auto wdb = database::open(dir.file());
  writer w(wdb);
  auto rdb = database::open(dir.file(), open_mode::read_only);
  reader rd(rdb);

  CHECK(!rd.run_exists("r1"));
  w.apply({insert_run{make_run("r1")}, append_event{make_event("r1", 0)}});
  CHECK(rd.run_exists("r1"));
  CHECK(rd.events("r1").size() == 1);

  // WAL: an open write transaction neither blocks the reader nor shows it
  // uncommitted rows.
  wdb.exec("BEGIN IMMEDIATE");
  wdb.exec("INSERT INTO event_chunks (id, run_id, last_seq, events_json) "
           "SELECT (run_no << 32) + 1, run_id, 1, '[[\"T\",0,{}]]' FROM runs WHERE run_id = 'r1'");
  CHECK(rd.events("r1").size() == 1);
  wdb.exec("COMMIT");
  CHECK(rd.events("r1").size() == 2);
}

TEST_CASE("two read-write connections on one file both commit") {
  temp_dir dir;
  auto a = database::open(dir.file());
  auto b = database::open(dir.file());
  writer wa(a);
  writer wb(b);
  wa.apply({insert_run{make_run("r1")}});
  wb.apply({insert_run{make_run("r2")}});
  CHECK(reader(a).runs().size() == 2);
  CHECK(reader(b).runs().size() == 2);
}

TEST_CASE("claim_run is a compare-and-set: the second claimer fails and writes nothing") {
  auto db = database::open(":memory:");
  writer w(db);
  auto run = make_run("r1");
  run.owner_id = "dead-owner";
  run.heartbeat_ms = 500;
  w.apply({insert_run{run}});
  w.apply({claim_run{"r1", "dead-owner", 500, "first", 11, 900}});
  try {
    w.apply(
        {append_event{make_event("r1", 0)}, claim_run{"r1", "dead-owner", 500, "second", 22, 901}});
    FAIL("the second claim succeeded");
  } catch (const smithers::smithers_error& e) {
    CHECK(e.code() == "RUN_RESUME_CLAIM_FAILED");
  }
  reader rd(db);
  auto r = rd.run("r1");
  CHECK(r->owner_id == "first");
  CHECK(r->owner_pid == 11);
  CHECK(r->heartbeat_ms == 900);
  CHECK(rd.events("r1").empty()); // the loser's batch rolled back whole
}

TEST_CASE("touch_run moves only the current owner's heartbeat, and only forward") {
  auto db = database::open(":memory:");
  writer w(db);
  auto run = make_run("r1");
  run.owner_id = "me";
  run.heartbeat_ms = 100;
  w.apply({insert_run{run}});
  w.apply({touch_run{"r1", "me", 200}});
  w.apply({touch_run{"r1", "me", 150}});    // older: ignored
  w.apply({touch_run{"r1", "other", 999}}); // not the owner: ignored
  CHECK(reader(db).run("r1")->heartbeat_ms == 200);
}

TEST_CASE("request_cancel marks the run and refuses unknown runs with RUN_NOT_FOUND") {
  auto db = database::open(":memory:");
  writer w(db);
  auto run = make_run("r1");
  run.owner_id = "me";
  w.apply({insert_run{run}});
  w.apply({request_cancel{"r1"}});
  CHECK(reader(db).run("r1")->cancel_requested);
  auto reqs = reader(db).owner_requests("me");
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].run_id == "r1");
  CHECK(reqs[0].cancel);
  CHECK(reqs[0].handover_to.empty());
  CHECK(reader(db).owner_requests("someone-else").empty());
  try {
    w.apply({request_cancel{"nope"}});
    FAIL("cancel of an unknown run succeeded");
  } catch (const smithers::smithers_error& e) {
    CHECK(e.code() == "RUN_NOT_FOUND");
  }
}

TEST_CASE("a handover is asked of the current owner, released by it alone, then claimed") {
  auto db = database::open(":memory:");
  writer w(db);
  auto run = make_run("r1");
  run.owner_id = "old";
  run.heartbeat_ms = 100;
  w.apply({insert_run{run}});
  // Asked of an owner the run does not have: refused, nothing written.
  CHECK_THROWS_WITH(w.apply({request_handover{"r1", "someone", "new"}}),
                    Catch::Contains("RUN_RESUME_CLAIM_FAILED"));
  CHECK(reader(db).run("r1")->handover_to.empty());
  w.apply({request_handover{"r1", "old", "new"}});
  auto reqs = reader(db).owner_requests("old");
  REQUIRE(reqs.size() == 1);
  CHECK_FALSE(reqs[0].cancel);
  CHECK(reqs[0].handover_to == "new");
  // Only the owner's release counts.
  w.apply({release_run{"r1", "someone", 200}});
  CHECK(reader(db).run("r1")->owner_id == "old");
  w.apply({release_run{"r1", "old", 200}});
  auto released = reader(db).run("r1");
  CHECK(released->owner_id.empty());
  CHECK(released->owner_pid == 0);
  CHECK(released->heartbeat_ms == 200);
  CHECK(released->status == "running");
  // A released run cannot be asked for again; the resumer claims it and the
  // request is gone with the claim.
  CHECK_THROWS(w.apply({request_handover{"r1", "", "other"}}));
  w.apply({claim_run{"r1", "", 200, "new", 42, 300}});
  auto claimed = reader(db).run("r1");
  CHECK(claimed->owner_id == "new");
  CHECK(claimed->handover_to.empty());
  CHECK(reader(db).owner_requests("new").empty());
}

TEST_CASE("a withdrawn handover request is gone; another requester's is kept") {
  auto db = database::open(":memory:");
  writer w(db);
  auto run = make_run("r1");
  run.owner_id = "old";
  w.apply({insert_run{run}});
  w.apply({request_handover{"r1", "old", "new"}});
  w.apply({withdraw_handover{"r1", "other"}});
  CHECK(reader(db).run("r1")->handover_to == "new");
  w.apply({withdraw_handover{"r1", "new"}});
  CHECK(reader(db).run("r1")->handover_to.empty());
  CHECK(reader(db).owner_requests("old").empty());
}

TEST_CASE("a run's working directory is stored with it") {
  auto db = database::open(":memory:");
  writer w(db);
  auto run = make_run("r1");
  run.cwd = "/some/where";
  w.apply({insert_run{run}});
  CHECK(reader(db).run("r1")->cwd == "/some/where");
}

TEST_CASE("open_existing is empty for a missing file and for one without a schema") {
  temp_dir tmp;
  std::filesystem::path dir = tmp.path();
  auto missing = (dir / "missing.db").string();
  CHECK_FALSE(database::open_existing(missing));
  CHECK_FALSE(std::filesystem::exists(missing));
  auto bare = (dir / "bare.db").string();
  {
    sqlite3* raw = nullptr;
    sqlite3_open(bare.c_str(), &raw);
    sqlite3_exec(raw, "CREATE TABLE x (a)", nullptr, nullptr, nullptr);
    sqlite3_close(raw);
  }
  CHECK_FALSE(database::open_existing(bare));
  auto good = (dir / "good.db").string();
  database::open(good);
  CHECK(database::open_existing(good));
}

TEST_CASE("add_pending_nodes writes a pending row and a NodePending event per node") {
  temp_dir dir;
  auto db = database::open(dir.file());
  auto nodes = std::make_shared<std::vector<pending_node>>(std::vector<pending_node>{
      {{"a", 0}, "First", "value"}, {{"b", 0}, "", "compute"}, {{"c\"q", 3}, "", "command"}});
  writer(db).apply({insert_run{make_run("r1")}, add_pending_nodes{"r1", nodes, 5, 1234}});
  reader rd(db);
  auto rows = rd.nodes("r1");
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].node_id == "a");
  CHECK(rows[0].label == "First");
  CHECK(rows[1].kind == "compute");
  CHECK(rows[2].iteration == 3); // keyed (node_id, iteration)
  for (const auto& n : rows) {
    CHECK(n.state == "pending");
    CHECK(n.attempts == 0);
    CHECK(n.updated_ms == 1234);
  }
  auto events = rd.events("r1");
  REQUIRE(events.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(events[i].seq == 5 + static_cast<std::int64_t>(i));
    CHECK(events[i].type == "NodePending");
    CHECK(events[i].timestamp_ms == 1234);
    CHECK(events[i].payload["node_id"] == (*nodes)[i].key.id); // escaped and read back
    CHECK(events[i].payload["iteration"] == (*nodes)[i].key.iteration);
  }
}

TEST_CASE("a fork keeps each node's iteration, read from the snapshot's \"id@N\" keys") {
  auto db = database::open(":memory:");
  writer w(db);
  node_row x;
  x.run_id = "r1";
  x.node_id = "x";
  x.iteration = 2;
  x.state = "finished";
  x.attempts = 1;
  attempt_row a;
  a.run_id = "r1";
  a.node_id = "x";
  a.iteration = 2;
  a.attempt = 1;
  a.state = "finished";
  a.started_ms = 5;
  a.finished_ms = 5;
  a.output = json{{"v", 2}};
  frame_row f{"r1", 0, "h", json{{"kind", "sequence"}}, 5, true, nullptr};
  w.apply({insert_run{make_run("r1")}, upsert_node{x}, insert_attempt{a},
           store_frame{f, nullptr, R"({"states":{"x@2":"finished","y":"pending"},"input":{}})"}});
  fork_request req;
  req.run_id = "r1";
  req.frame_no = 0;
  req.new_run_id = "child";
  req.now_ms = 9;
  fork_run(db, req);
  reader rd(db);
  auto nodes = rd.nodes("child");
  REQUIRE(nodes.size() == 2);
  for (const auto& n : nodes) {
    if (n.node_id == "x") {
      CHECK(n.iteration == 2);
      CHECK(n.state == "finished");
    } else {
      CHECK(n.node_id == "y");
      CHECK(n.iteration == 0);
    }
  }
  auto outs = rd.outputs("child");
  REQUIRE(outs.size() == 1);
  CHECK(outs[0].node_id == "x");
  CHECK(outs[0].iteration == 2);
  CHECK(outs[0].value == json{{"v", 2}});
}
