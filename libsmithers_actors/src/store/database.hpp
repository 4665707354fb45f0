// One SQLite connection with our pragmas and schema migrations.
// The persistence actor owns the only write connection of a process; readers
// (CLI, inspect, logs) open their own read-only connections.
#pragma once

#include <smithers/errors.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace smithers::store {

class checkpointer;

/// Schema version written to PRAGMA user_version by the latest migration.
inline constexpr int schema_version = 10;

/// WAL pages between checkpoints of a read-write connection (SQLite's
/// wal_autocheckpoint, and the background checkpointer's interval).
inline constexpr int checkpoint_pages = 4000;

enum class open_mode { read_write, read_only };
enum class sync_mode { normal, full };

class database {
public:
  /// Opens (creating when read_write) the file; ":memory:" is allowed.
  /// read_write: WAL, synchronous per `sync`, busy_timeout 5 s, foreign keys,
  /// then runs every pending migration in one transaction.
  /// read_only: busy_timeout 5 s; DB_ERROR if the file does not exist or its
  /// schema is newer than this build knows.
  /// Throws smithers_error(DB_ERROR) with the SQLite message on failure.
  static database open(const std::string& path, open_mode mode = open_mode::read_write,
                       sync_mode sync = sync_mode::normal);

  /// For readers that must not create anything: nullopt when the file does
  /// not exist or holds no smithers schema yet (its creator was killed, say).
  static std::optional<database> open_existing(const std::string& path);

  database(database&& other) noexcept;
  database& operator=(database&& other) noexcept;
  database(const database&) = delete;
  database& operator=(const database&) = delete;
  ~database();

  sqlite3* handle() const { return db_; }
  /// The rowid of the last row this connection inserted.
  std::int64_t last_insert_rowid() const;
  const std::string& path() const { return path_; }

  /// Executes SQL without results; throws DB_ERROR.
  void exec(const std::string& sql);
  /// PRAGMA user_version.
  int user_version() const;

  /// From now on WAL checkpoints run on a thread of their own, every
  /// `every_frames` new WAL frames, instead of in the COMMIT that crosses
  /// the threshold; at `cap_frames` the writer checkpoints itself so the WAL
  /// stays bounded (store/checkpointer.hpp). The engine's write connection
  /// does this. No-op for ":memory:" and read-only connections, and when
  /// already on.
  void checkpoint_in_background(int every_frames = checkpoint_pages,
                                int cap_frames = 4 * checkpoint_pages);
  /// Checkpoints run so far by that thread and by the writer at the cap
  /// (0 when off).
  std::int64_t background_checkpoints() const;
  std::int64_t capped_checkpoints() const;

private:
  database(sqlite3* db, std::string path);
  void close();
  sqlite3* db_ = nullptr;
  std::string path_;
  bool writable_ = false;
  bool full_sync_ = false;
  std::unique_ptr<checkpointer> checkpointer_; // stopped before db_ closes
};

/// Throws smithers_error(DB_ERROR) "<context>: <sqlite3_errmsg(db)>".
[[noreturn]] void throw_db_error(sqlite3* db, std::string_view context);

/// A prepared statement (RAII). Parameters are 1-based, columns 0-based, as
/// in SQLite. JSON goes in as dump() text (null -> SQL NULL) and comes back
/// parsed (SQL NULL -> null). Errors throw DB_ERROR.
class statement {
public:
  statement() = default;
  statement(sqlite3* db, std::string_view sql);
  statement(statement&& other) noexcept;
  statement& operator=(statement&& other) noexcept;
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  ~statement();

  sqlite3_stmt* handle() const { return stmt_; }

  void bind_null(int i);
  void bind_int(int i, std::int64_t v);
  void bind_opt_int(int i, const std::optional<std::int64_t>& v);
  /// Copies the text.
  void bind_text(int i, std::string_view v);
  /// Does not copy: `v` must stay alive until the next reset().
  void bind_text_ref(int i, const std::string& v);
  void bind_json(int i, const json& v);

  /// Runs one step; true when a row is ready, false when done.
  bool step();
  /// Resets the statement and clears its bindings for the next use.
  void reset();
  /// Rows changed by the last completed INSERT/UPDATE/DELETE on this connection.
  int changes() const;

  bool column_is_null(int i) const;
  std::int64_t column_int(int i) const;
  std::optional<std::int64_t> column_opt_int(int i) const;
  std::string column_text(int i) const; // NULL -> ""
  json column_json(int i) const;        // NULL -> null

private:
  void check_bind(int rc, int i);
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

} // namespace smithers::store
