#include "store/database.hpp"

#include "store/checkpointer.hpp"
#include "store/schema.hpp"
#include "store/wal_vfs.hpp"
#include "util/json_parse.hpp"
#include "util/json_text.hpp"

#include <smithers/limits.hpp>

#include <sqlite3.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

namespace smithers::store {

namespace {

constexpr int busy_timeout_ms = 5000;

bool is_memory(const std::string& path) {
  return path.empty() || path == ":memory:";
}

// The start of a statement on one line, to say which one failed.
std::string sql_excerpt(std::string_view sql) {
  constexpr std::size_t max_length = 60;
  std::string out;
  for (char c : sql) {
    bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (space && (out.empty() || out.back() == ' ')) continue;
    if (out.size() == max_length) {
      out += "...";
      break;
    }
    out += space ? ' ' : c;
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Process-wide SQLite settings, applied before SQLite initializes (that is,
// before the first connection or VFS lookup; later they are refused, which
// is harmless). Memory statistics off: with them on, every one of SQLite's
// ~30 allocations per task takes a global mutex (4 % of a fan-out's
// instructions); the engine never reads sqlite3_memory_used().
void configure_sqlite() {
  static const int done = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return 0;
  }();
  (void)done;
}

// Whether `path` is a file to be created: missing, or empty (an empty file
// is an empty database to SQLite). Not a "file:" URI, which is not a path.
bool is_new_file(const std::string& path) {
  if (path.rfind("file:", 0) == 0) return false;
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  return ec ? !std::filesystem::exists(path, ec) && !ec : size == 0;
}

// Makes a new file's first page durable, and its directory entry as SQLite
// would: the one sync a new database needs (see database::open). Like
// SQLite, a directory that cannot be synced (some network and FUSE file
// systems refuse) is not an error.
void sync_new_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  int err = fd < 0 || ::fsync(fd) != 0 ? errno : 0;
  if (fd >= 0) ::close(fd);
  if (err != 0)
    throw smithers_error(errc::db_error,
                         "cannot sync new database " + path + ": " + std::strerror(err));
  auto dir = std::filesystem::path(path).parent_path();
  int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECTORY);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
}

// Puts a new file's connection back at the synchronous mode asked for on
// every way out of database::open, errors included: closing a connection
// at synchronous=OFF would checkpoint without syncing what another process
// may have committed meanwhile.
class sync_restorer {
public:
  sync_restorer(sqlite3* db, const char* pragma) : db_(db), pragma_(pragma) {}
  sync_restorer(const sync_restorer&) = delete;
  sync_restorer& operator=(const sync_restorer&) = delete;
  ~sync_restorer() {
    if (db_) sqlite3_exec(db_, pragma_, nullptr, nullptr, nullptr);
  }
  /// Restores it now; throws as any statement would.
  void restore(database& db) {
    db_ = nullptr;
    db.exec(pragma_);
  }

private:
  sqlite3* db_;
  const char* pragma_;
};

} // namespace

void throw_db_error(sqlite3* db, std::string_view context) {
  std::string message(context);
  message += ": ";
  message += db ? sqlite3_errmsg(db) : "out of memory";
  throw smithers_error(errc::db_error, std::move(message));
}

// ---------------------------------------------------------------- database

const std::string no_schema_message = "database has no smithers schema: ";

// A file whose version says current but whose tables are not all there (a
// hand-made file, a table dropped by hand) is refused here, with a clear
// DB_ERROR, rather than failing later inside an actor that cannot report it.
void check_tables(database& db, const std::string& path,
                  std::initializer_list<const char*> required = {
                      "runs", "nodes", "attempts", "event_chunks", "frames", "trees", "events",
                      "loops", "waits", "inbox", "cache"}) {
  std::string missing;
  for (const char* name : required) {
    statement s(db.handle(), "SELECT 1 FROM sqlite_master WHERE name = ?1");
    s.bind_text(1, name);
    if (!s.step()) missing += std::string(missing.empty() ? "" : ", ") + name;
  }
  if (!missing.empty())
    throw smithers_error(errc::db_error, "database " + path + " is damaged: schema version " +
                                             std::to_string(db.user_version()) + " but no " +
                                             missing);
}

database database::open(const std::string& path, open_mode mode, sync_mode sync) {
  configure_sqlite();
  const bool read_only = mode == open_mode::read_only;
  if (read_only && !is_memory(path)) {
    // SQLite would only say "unable to open database file".
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
      throw smithers_error(errc::db_error,
                           ec && ec != std::errc::no_such_file_or_directory
                               ? "cannot access database " + path + ": " + ec.message()
                               : "database not found: " + path);
  }

  const bool new_file = !read_only && !is_memory(path) && is_new_file(path);
  // NOMUTEX: a connection is used by one thread at a time (its owning actor).
  // Readers open read-write (never creating) with query_only on: a process
  // killed while it set the file up can leave a hot journal that only a
  // writable connection may roll back; query_only still refuses our writes.
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READWRITE | (read_only ? 0 : SQLITE_OPEN_CREATE);
  sqlite3* raw = nullptr;
  // Files go through the WAL write-coalescing shim (store/wal_vfs.hpp).
  const char* vfs = wal_vfs::name();
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, vfs);
  if (rc != SQLITE_OK && read_only) {
    sqlite3_close(raw); // e.g. a file we may not write: plain read-only then
    raw = nullptr;
    rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READONLY, vfs);
  }
  database db(raw, path); // closes the handle if anything below throws
  if (rc != SQLITE_OK) throw_db_error(raw, "cannot open database " + path);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  if (read_only) db.exec("PRAGMA query_only=1");

  // The first statements are where "file is not a database" shows up.
  auto naming_path = [&](auto&& setup) {
    try {
      setup();
    } catch (const smithers_error& e) {
      throw smithers_error(errc::db_error, "cannot open database " + path + ": " + e.err().message);
    }
  };

  if (read_only) {
    int version = 0;
    naming_path([&] { version = db.user_version(); });
    if (version > schema_version)
      throw smithers_error(errc::db_error, newer_schema_message(version));
    if (version < 1) throw smithers_error(errc::db_error, no_schema_message + path);
    if (version < schema_version) {
      // The queries are written for the current schema: upgrade the file
      // first (as any writing command would), then read it.
      try {
        open(path, open_mode::read_write, sync);
      } catch (const smithers_error& e) {
        throw smithers_error(errc::db_error, "database schema version " + std::to_string(version) +
                                                 " needs an upgrade to " +
                                                 std::to_string(schema_version) +
                                                 ", which failed: " + e.err().message);
      }
    }
    check_tables(db, path);
    return db;
  }

  const char* sync_pragma =
      sync == sync_mode::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
  // Declared after `db`: destroyed, and the mode restored, before it closes.
  std::optional<sync_restorer> restorer;
  if (new_file) restorer.emplace(raw, sync_pragma);
  naming_path([&] {
    if (!is_memory(path)) {
      // A new file is set up without SQLite's syncs (the switch of a new
      // file to WAL syncs a rollback journal four times, the new WAL and
      // its directory twice more) and then synced once: its first page,
      // which says WAL, and its directory entry. With the schema from one
      // script (store/schema.cpp) that cut `smithers run`'s start on a new
      // file from ~25 to ~17.5 ms, an existing file's (docs/benchmarks.md).
      // The schema's transaction is as durable as any commit under
      // synchronous=NORMAL; the limits are in docs/storage.md.
      if (new_file) db.exec("PRAGMA synchronous=OFF");
      statement wal(raw, "PRAGMA journal_mode=WAL");
      std::string journal = wal.step() ? wal.column_text(0) : std::string();
      if (journal != "wal")
        throw smithers_error(errc::db_error, "cannot enable WAL (journal_mode is " + journal + ")");
      if (new_file) sync_new_file(path);
    }
    if (!new_file) db.exec(sync_pragma);
    db.exec("PRAGMA foreign_keys=ON");
    // Checkpoint every 4,000 WAL pages (16 MB) instead of 1,000: each
    // checkpoint writes the pages back and syncs twice, and hot pages (the
    // tables' last pages) are written back once per checkpoint however often
    // they were committed. Chain steps ×0.92 wall time (paired, 11 runs);
    // 8,000 measured no better.
    db.exec("PRAGMA wal_autocheckpoint=" + std::to_string(checkpoint_pages));
  });
  // Tables every version has: without them a migration would fail on
  // whatever it alters first, and say less.
  if (db.user_version() > 0) check_tables(db, path, {"runs", "nodes", "attempts"});
  migrate(db);
  if (restorer) restorer->restore(db);
  check_tables(db, path);
  db.writable_ = true;
  db.full_sync_ = sync == sync_mode::full;
  return db;
}

std::optional<database> database::open_existing(const std::string& path) {
  std::error_code ec;
  if (!is_memory(path) && !std::filesystem::exists(path, ec)) {
    // Missing is "no runs"; unreadable is an error, not an empty list.
    if (ec && ec != std::errc::no_such_file_or_directory)
      throw smithers_error(errc::db_error, "cannot access database " + path + ": " + ec.message());
    return std::nullopt;
  }
  try {
    return open(path, open_mode::read_only);
  } catch (const smithers_error& e) {
    // A file whose creator was killed before its schema existed holds no
    // runs; the next writer sets it up.
    if (e.err().message.rfind(no_schema_message, 0) == 0) return std::nullopt;
    throw;
  }
}

database::database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

database::database(database&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), path_(std::move(other.path_)),
      writable_(other.writable_), full_sync_(other.full_sync_),
      checkpointer_(std::move(other.checkpointer_)) {}

database& database::operator=(database&& other) noexcept {
  if (this != &other) {
    close();
    db_ = std::exchange(other.db_, nullptr);
    path_ = std::move(other.path_);
    writable_ = other.writable_;
    full_sync_ = other.full_sync_;
    checkpointer_ = std::move(other.checkpointer_);
  }
  return *this;
}

database::~database() {
  close();
}

void database::close() {
  checkpointer_.reset(); // its connection first: the last one to close cleans up the WAL
  // close_v2: statements still alive (a bug, but not a crash) keep it open.
  if (db_) sqlite3_close_v2(db_);
  db_ = nullptr;
}

// The defaults: every 4,000 new WAL frames, as the automatic checkpoint was
// (see open), and by the writer itself at 16,000 (64 MB of 4 KB pages).
// The writer gets SQLite's automatic checkpoint back at checkpoint_pages.
void database::checkpoint_in_background(int every_frames, int cap_frames) {
  if (checkpointer_ || !writable_ || is_memory(path_)) return;
  checkpointer_ = std::make_unique<checkpointer>(db_, path_, full_sync_, every_frames, cap_frames,
                                                 checkpoint_pages);
}

std::int64_t database::background_checkpoints() const {
  return checkpointer_ ? checkpointer_->background_checkpoints() : 0;
}

std::int64_t database::capped_checkpoints() const {
  return checkpointer_ ? checkpointer_->capped_checkpoints() : 0;
}

void database::exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string message = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw smithers_error(errc::db_error, message + " (in: " + sql_excerpt(sql) + ")");
  }
}

int database::user_version() const {
  statement s(db_, "PRAGMA user_version");
  return s.step() ? static_cast<int>(s.column_int(0)) : 0;
}

// --------------------------------------------------------------- statement

statement::statement(sqlite3* db, std::string_view sql) : db_(db) {
  int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
    throw_db_error(db, "cannot prepare \"" + sql_excerpt(sql) + "\"");
  }
}

statement::statement(statement&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}

statement& statement::operator=(statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = other.db_;
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

statement::~statement() {
  sqlite3_finalize(stmt_);
}

void statement::check_bind(int rc, int i) {
  if (rc != SQLITE_OK)
    throw_db_error(db_, "cannot bind parameter " + std::to_string(i) + " of \"" +
                            sql_excerpt(sqlite3_sql(stmt_)) + "\"");
}

void statement::bind_null(int i) {
  check_bind(sqlite3_bind_null(stmt_, i), i);
}

void statement::bind_int(int i, std::int64_t v) {
  check_bind(sqlite3_bind_int64(stmt_, i, v), i);
}

void statement::bind_opt_int(int i, const std::optional<std::int64_t>& v) {
  if (v)
    bind_int(i, *v);
  else
    bind_null(i);
}

void statement::bind_text(int i, std::string_view v) {
  check_bind(sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8), i);
}

void statement::bind_text_ref(int i, const std::string& v) {
  check_bind(sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8), i);
}

void statement::bind_json(int i, const json& v) {
  if (v.is_null()) {
    bind_null(i);
    return;
  }
  // replace: invalid UTF-8 inside a string must not make a write fail.
  bind_text(i, util::json_text(v, json::error_handler_t::replace));
}

bool statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // The extended result code rides along, so callers tell a constraint
  // from a broken file without reading the message.
  throw smithers_error(errc::db_error,
                       std::string(sqlite3_errmsg(db_)) +
                           " (in: " + sql_excerpt(sqlite3_sql(stmt_)) + ")",
                       {{"sqlite_code", sqlite3_extended_errcode(db_)}});
}

void statement::reset() {
  // The return value repeats the last step's error, already reported.
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int statement::changes() const {
  return sqlite3_changes(db_);
}

bool statement::column_is_null(int i) const {
  return sqlite3_column_type(stmt_, i) == SQLITE_NULL;
}

std::int64_t statement::column_int(int i) const {
  return sqlite3_column_int64(stmt_, i);
}

std::optional<std::int64_t> statement::column_opt_int(int i) const {
  if (column_is_null(i)) return std::nullopt;
  return column_int(i);
}

std::string statement::column_text(int i) const {
  auto text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
  if (!text) return {};
  return std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i)));
}

json statement::column_json(int i) const {
  auto text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
  if (!text) return nullptr;
  auto size = static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i));
  // Bounded like any JSON from outside: a file written by an older version
  // (or by hand) may hold a value deep enough to crash whatever copies it.
  util::json_parse_error err;
  auto j = util::parse_json({text, size}, {limits::max_stored_json_depth}, &err);
  if (!j)
    throw smithers_error(errc::db_error, std::string("invalid JSON in column ") +
                                             sqlite3_column_name(stmt_, i) + " " + err.path + ": " +
                                             err.message);
  return std::move(*j);
}

std::int64_t database::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}

} // namespace smithers::store
