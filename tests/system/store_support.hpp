// Helpers the crash and waiting tests share: time, seeded randomness (a
// failing trial replays with SMITHERS_CRASH_SEED), and the store read
// directly — as a run's rows stand, whatever the CLI would print.
#pragma once

#include "system/cli_support.hpp"

#include "store/database.hpp"
#include "store/reader.hpp"

#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace smithers::system_test {

inline std::int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

inline void sleep_ms(std::int64_t ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

inline std::uint64_t test_seed() {
  if (const char* s = std::getenv("SMITHERS_CRASH_SEED"); s && *s) return std::stoull(s);
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

inline int uniform(std::mt19937_64& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

// A database file can exist before its schema does (while `run` creates it,
// or after a kill at that moment): the readers see no runs in it then.
template <class T, class F> T read_store(const std::string& db, F&& f) {
  if (!file_exists(db)) return T{};
  try {
    auto d = store::database::open(db, store::open_mode::read_only);
    return f(store::reader{d});
  } catch (const smithers::smithers_error& e) {
    // A kill while `run` created the file leaves it without a schema or with
    // a hot journal that a read-only connection cannot roll back: no runs
    // either.
    if (contains(e.err().message, "no smithers schema") ||
        contains(e.err().message, "attempt to write a readonly database"))
      return T{};
    throw;
  }
}

/// Lines of a file (a task's side-effect log), counted.
inline std::map<std::string, int> line_counts(const std::string& path) {
  std::map<std::string, int> counts;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) ++counts[line];
  return counts;
}

inline std::optional<store::run_row> db_run(const std::string& db, const std::string& run_id) {
  return read_store<std::optional<store::run_row>>(
      db, [&](const store::reader& rd) { return rd.run(run_id); });
}

inline std::vector<store::attempt_row> db_attempts(const std::string& db,
                                                   const std::string& run_id) {
  return read_store<std::vector<store::attempt_row>>(
      db, [&](const store::reader& rd) { return rd.attempts(run_id); });
}

inline std::vector<store::event_row> db_events(const std::string& db, const std::string& run_id) {
  return read_store<std::vector<store::event_row>>(
      db, [&](const store::reader& rd) { return rd.events(run_id); });
}

} // namespace smithers::system_test
