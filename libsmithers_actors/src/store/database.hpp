// One SQLite connection with our pragmas and schema migrations.
// The persistence actor owns the only write connection of a process; readers
// (CLI, inspect, logs) open their own read-only connections.
#pragma once

#include <smithers/errors.hpp>

#include <string>

struct sqlite3;

namespace smithers::store {

/// Schema version written to PRAGMA user_version by the latest migration.
inline constexpr int schema_version = 1;

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

  database(database&& other) noexcept;
  database& operator=(database&& other) noexcept;
  database(const database&) = delete;
  database& operator=(const database&) = delete;
  ~database();

  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

  /// Executes SQL without results; throws DB_ERROR.
  void exec(const std::string& sql);
  /// PRAGMA user_version.
  int user_version() const;

private:
  database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_ = nullptr;
  std::string path_;
};

} // namespace smithers::store
