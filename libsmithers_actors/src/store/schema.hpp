// Schema migrations, keyed by PRAGMA user_version. A migration is never
// edited once released: a schema change is a new entry at the end.
#pragma once

#include "store/database.hpp"

#include <string>
#include <vector>

namespace smithers::store {

struct migration {
  int version;     // user_version after this migration
  const char* sql; // one or more statements, run in one transaction
};

/// All migrations, ascending by version, the last at schema_version.
const std::vector<migration>& migrations();

/// "database schema version N is newer than this smithers (M)"
std::string newer_schema_message(int version);

/// Applies every pending migration, all in one BEGIN IMMEDIATE transaction
/// that re-reads the version under the lock (so two processes opening a
/// new file do not both apply them); a failure rolls all of them back.
/// Throws DB_ERROR if the database is newer than schema_version.
void migrate(database& db);

} // namespace smithers::store
