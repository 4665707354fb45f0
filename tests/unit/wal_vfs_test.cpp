// The WAL write-coalescing shim (store/wal_vfs.hpp): a commit reaches the
// file in one write, is in the file when COMMIT returns (a connection that
// bypasses the shim reads it), and a writer killed at any moment leaves
// every commit it reported and nothing else.
#include <catch2/catch.hpp>

#include "store/database.hpp"
#include "store/wal_vfs.hpp"
#include "support/temp_dir.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace smithers::store;
using test_support::temp_dir;

namespace {

// A connection on the plain unix VFS: it sees only what is in the files.
struct plain_connection {
  sqlite3* db = nullptr;
  explicit plain_connection(const std::string& path) {
    REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, "unix") == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
  }
  ~plain_connection() { sqlite3_close(db); }
  std::int64_t int_of(const char* sql) {
    statement s(db, sql);
    REQUIRE(s.step());
    return s.column_int(0);
  }
  std::string text_of(const char* sql) {
    statement s(db, sql);
    REQUIRE(s.step());
    return s.column_text(0);
  }
};

// One transaction adding `rows` rows of `size` bytes with ids from `first`.
void insert_rows(database& db, int first, int rows, int size) {
  db.exec("BEGIN IMMEDIATE");
  statement s(db.handle(), "INSERT INTO t (id, body) VALUES (?1, randomblob(?2))");
  for (int i = 0; i < rows; ++i) {
    s.bind_int(1, first + i);
    s.bind_int(2, size);
    s.step();
    s.reset();
  }
  db.exec("COMMIT");
}

database open_with_table(const std::string& path) {
  auto db = database::open(path);
  db.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB)");
  return db;
}

} // namespace

TEST_CASE("wal_vfs: a commit's frames reach the WAL in one write", "[store][wal_vfs]") {
  temp_dir dir;
  auto db = open_with_table(dir.file());
  for (int i = 0; i < 10; ++i) {
    auto before = wal_vfs::stats();
    insert_rows(db, i * 3, 3, 3000); // three pages or more, each two writes
    auto after = wal_vfs::stats();
    CHECK(after.requested - before.requested >= 6);
    CHECK(after.passed_on - before.passed_on == 1);
  }
  // Larger than one write may carry: pieces of 64 to 96 KB.
  auto before = wal_vfs::stats();
  insert_rows(db, 1000, 40, 3000); // ~40 pages, ~165 KB of frames
  auto after = wal_vfs::stats();
  CHECK(after.requested - before.requested >= 80);
  CHECK(after.passed_on - before.passed_on >= 2);
  CHECK(after.passed_on - before.passed_on <= 3);
}

TEST_CASE("wal_vfs: a commit is in the file when COMMIT returns", "[store][wal_vfs]") {
  temp_dir dir;
  auto db = open_with_table(dir.file());
  plain_connection reader(dir.file());
  int rows = 0;
  for (int i = 0; i < 30; ++i) {
    int n = (i % 5 == 0) ? 30 : 1; // now and then a commit of several pieces
    insert_rows(db, rows, n, 2500);
    rows += n;
    REQUIRE(reader.int_of("SELECT count(*) FROM t") == rows);
  }
  CHECK(reader.text_of("PRAGMA integrity_check") == "ok");
}

TEST_CASE("wal_vfs: under synchronous=FULL a commit is in the file too", "[store][wal_vfs]") {
  // FULL syncs the WAL at each commit: the shim writes out before the sync.
  temp_dir dir;
  auto db = database::open(dir.file(), open_mode::read_write, sync_mode::full);
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)");
  plain_connection reader(dir.file());
  for (int i = 0; i < 5; ++i) {
    auto before = wal_vfs::stats();
    insert_rows(db, i * 4, 4, 2000);
    CHECK(wal_vfs::stats().passed_on - before.passed_on >= 1);
    REQUIRE(reader.int_of("SELECT count(*) FROM t") == (i + 1) * 4);
  }
  CHECK(reader.text_of("PRAGMA integrity_check") == "ok");
}

TEST_CASE("wal_vfs: frames of a rolled-back transaction do not disturb later commits",
          "[store][wal_vfs]") {
  temp_dir dir;
  auto db = open_with_table(dir.file());
  insert_rows(db, 0, 5, 1000);
  // A tiny page cache makes SQLite spill the big transaction's pages to the
  // WAL before it ends; the rollback then leaves them there, uncommitted.
  db.exec("PRAGMA cache_size = 8");
  db.exec("BEGIN IMMEDIATE");
  statement s(db.handle(), "INSERT INTO t (id, body) VALUES (?1, randomblob(3000))");
  for (int i = 0; i < 200; ++i) {
    s.bind_int(1, 100 + i);
    s.step();
    s.reset();
  }
  db.exec("ROLLBACK");
  insert_rows(db, 5, 2, 1000);
  insert_rows(db, 7, 50, 3000);
  plain_connection reader(dir.file());
  CHECK(reader.int_of("SELECT count(*) FROM t") == 57);
  CHECK(reader.int_of("SELECT count(*) FROM t WHERE id >= 100") == 0);
  CHECK(reader.text_of("PRAGMA integrity_check") == "ok");
}

TEST_CASE("wal_vfs: a second writer appends to a WAL it did not start", "[store][wal_vfs]") {
  temp_dir dir;
  auto first = open_with_table(dir.file());
  insert_rows(first, 0, 3, 3000); // the WAL's header and frames come from `first`
  auto second = database::open(dir.file());
  auto before = wal_vfs::stats();
  insert_rows(second, 3, 3, 3000); // appended: the shim reads the page size
  auto after = wal_vfs::stats();
  CHECK(after.passed_on - before.passed_on == 1);
  insert_rows(first, 6, 1, 100);
  plain_connection reader(dir.file());
  CHECK(reader.int_of("SELECT count(*) FROM t") == 7);
  CHECK(reader.text_of("PRAGMA integrity_check") == "ok");
}

TEST_CASE("wal_vfs: a writer killed at any moment keeps every reported commit",
          "[store][wal_vfs]") {
  // Each trial: a child commits transactions of mixed size (some span several
  // 64 KB writes) and reports each after COMMIT returns; it is SIGKILLed
  // after a varying number of reports. Every reported commit must be in the
  // file, with no gap and no half transaction.
  const int stops[] = {1, 7, 23, 60, 140};
  for (int stop_after : stops) {
    temp_dir dir;
    { open_with_table(dir.file()); } // schema first, so the child only commits
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      try {
        auto db = database::open(dir.file());
        for (int i = 0;; ++i) {
          int rows = (i % 9 == 4) ? 40 : 1 + i % 3; // every 9th: ~130 KB
          db.exec("BEGIN IMMEDIATE");
          statement s(db.handle(), "INSERT INTO t (id, body) VALUES (?1, randomblob(3000))");
          for (int r = 0; r < rows; ++r) {
            s.bind_int(1, i * 100 + r);
            s.step();
            s.reset();
          }
          db.exec("INSERT INTO t (id, body) VALUES (" + std::to_string(i * 100 + 99) + ", 'end')");
          db.exec("COMMIT");
          if (::write(fds[1], &i, sizeof i) != sizeof i) ::_exit(3);
        }
      } catch (...) {
        ::_exit(2);
      }
    }
    ::close(fds[1]);
    int last = -1;
    int got = 0;
    while (got < stop_after && ::read(fds[0], &last, sizeof last) == sizeof last)
      ++got;
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(WIFSIGNALED(status)); // it was committing, not failing
    int next = 0;
    while (::read(fds[0], &next, sizeof next) == sizeof next)
      last = next; // reports written before the kill
    ::close(fds[0]);
    INFO("killed after " << stop_after << " reports; last reported commit " << last);
    REQUIRE(last >= stop_after - 1);

    plain_connection reader(dir.file()); // recovers the WAL as any reader would
    CHECK(reader.text_of("PRAGMA integrity_check") == "ok");
    std::int64_t commits = reader.int_of("SELECT count(*) FROM t WHERE body = 'end'");
    // Every reported commit, and at most the one being reported at the kill.
    CHECK(commits >= last + 1);
    CHECK(commits <= last + 2);
    // Each commit whole: its marker row and all its data rows, or nothing.
    CHECK(reader.int_of("SELECT max(id) / 100 + 1 FROM t") == commits);
    std::int64_t expected_rows = 0;
    for (int i = 0; i < commits; ++i)
      expected_rows += ((i % 9 == 4) ? 40 : 1 + i % 3) + 1;
    CHECK(reader.int_of("SELECT count(*) FROM t") == expected_rows);
  }
}

// Background checkpoints (store/checkpointer.hpp) replace the automatic one
// of the write connection: the WAL stays bounded, checkpointed pages reach
// the database file while the writer goes on, and nothing is lost.
namespace {

std::uintmax_t size_of(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : n;
}

// The largest the WAL may get: `frames` frames of 4 KB pages and a header.
std::uintmax_t wal_bytes(int frames) {
  return 32 + static_cast<std::uintmax_t>(frames) * (4096 + 24);
}

} // namespace

TEST_CASE("checkpointer: a thread checkpoints while the writer goes on", "[store][checkpoint]") {
  temp_dir dir;
  {
    auto db = open_with_table(dir.file());
    db.checkpoint_in_background(20, 100);
    std::uintmax_t largest_wal = 0;
    for (int i = 0; i < 400; ++i) {
      insert_rows(db, i, 1, 3000); // a page or two per commit
      largest_wal = std::max(largest_wal, size_of(dir.file() + "-wal"));
    }
    // The thread runs on its own: give it time to finish what it was asked.
    for (int i = 0; i < 250 && db.background_checkpoints() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(db.background_checkpoints() >= 1);
    // Pages reached the database file before any close: ~1.2 MB of rows.
    CHECK(size_of(dir.file()) > 400u * 3000 / 2);
    // Bounded by the cap, plus the one commit that crosses it.
    CHECK(largest_wal <= wal_bytes(100 + 4));
    plain_connection reader(dir.file());
    CHECK(reader.int_of("SELECT count(*) FROM t") == 400);
    CHECK(reader.text_of("PRAGMA integrity_check") == "ok");
  }
  // The last connection to close checkpointed and removed the WAL.
  CHECK_FALSE(std::filesystem::exists(dir.file() + "-wal"));
  plain_connection reader(dir.file());
  CHECK(reader.int_of("SELECT count(*) FROM t") == 400);
}

TEST_CASE("checkpointer: at the cap the writer checkpoints itself", "[store][checkpoint]") {
  // A thread that is never asked (its threshold is out of reach) leaves the
  // WAL to the cap alone.
  temp_dir dir;
  auto db = open_with_table(dir.file());
  // The WAL starts empty: what is measured is the inserts' frames, not those
  // of the schema's migrations (which grow with every schema version).
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  db.checkpoint_in_background(1 << 30, 50);
  std::uintmax_t largest_wal = 0;
  for (int i = 0; i < 200; ++i) {
    insert_rows(db, i, 1, 3000);
    largest_wal = std::max(largest_wal, size_of(dir.file() + "-wal"));
  }
  CHECK(db.background_checkpoints() == 0);
  CHECK(db.capped_checkpoints() >= 2);
  CHECK(largest_wal <= wal_bytes(50 + 4));
  plain_connection reader(dir.file());
  CHECK(reader.int_of("SELECT count(*) FROM t") == 200);
  CHECK(reader.text_of("PRAGMA integrity_check") == "ok");
}

TEST_CASE("checkpointer: not for in-memory databases", "[store][checkpoint]") {
  auto db = database::open(":memory:");
  db.checkpoint_in_background(1, 2);
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  db.exec("INSERT INTO t VALUES (1)");
  CHECK(db.background_checkpoints() == 0);
  CHECK(db.capped_checkpoints() == 0);
}
