// Database-wide figures for metrics (smithers/metrics.hpp): runs by
// workflow and status, attempts by state, how long ended attempts took.
// Aggregated in SQL, so a scrape reads a few rows whatever the table sizes
// (it still scans runs and attempts: callers cache the result).
#pragma once

#include "store/database.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace smithers::store {

struct run_count {
  std::string workflow;
  std::string status;
  std::int64_t count = 0;
};

struct state_count {
  std::string state;
  std::int64_t count = 0;
};

/// A histogram of durations: `cumulative[i]` attempts took at most
/// `bounds_s[i]` seconds; `count` is all of them (the +Inf bucket).
struct duration_histogram {
  std::vector<double> bounds_s;
  std::vector<std::int64_t> cumulative;
  std::int64_t count = 0;
  double sum_s = 0;
};

struct db_stats {
  std::vector<run_count> runs;       // by workflow, then status
  std::vector<state_count> attempts; // by state
  /// Attempts that ended by themselves (finished or failed), except cached
  /// ones (cache hits, a fork's or a continuation's copies) and waits (an
  /// approval, timer or signal, a denied gate): finished_ms - started_ms.
  duration_histogram attempt_durations;
};

/// `duration_bounds_s`: the histogram's upper bounds, ascending.
db_stats read_stats(database& db, const std::vector<double>& duration_bounds_s);

} // namespace smithers::store
