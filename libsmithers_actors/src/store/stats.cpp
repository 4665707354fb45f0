#include "store/stats.hpp"

#include <sqlite3.h>

#include <algorithm>

namespace smithers::store {

namespace {

std::vector<run_count> count_runs(database& db) {
  statement s(db.handle(), R"sql(
SELECT workflow_name, status, count(*) FROM runs GROUP BY workflow_name, status
ORDER BY workflow_name, status)sql");
  std::vector<run_count> out;
  while (s.step())
    out.push_back({s.column_text(0), s.column_text(1), s.column_int(2)});
  return out;
}

// Whether any approval, timer or signal ever waited: only then is each
// attempt looked up in `waits` (a third of the scan's cost).
bool any_waits(database& db) {
  statement s(db.handle(), "SELECT 1 FROM waits WHERE kind != 'gate' LIMIT 1");
  return s.step();
}

// Each attempt's state and, when it is timed, its duration in ms. The rows
// are counted here rather than in SQL: a sum() per bucket, or a GROUP BY
// (a sort), cost 3x as much per row as handing the two columns over. A
// gate's wait row does not mark the task's own attempts; only its denial
// (APPROVAL_DENIED) is a wait.
constexpr const char* attempts_sql = R"sql(
SELECT state,
       CASE WHEN state IN ('finished', 'failed') AND cached = 0 AND finished_ms IS NOT NULL
                 AND (CASE WHEN state = 'failed' AND json_valid(error_json)
                           THEN error_json ->> 'code' END) IS NOT 'APPROVAL_DENIED'
                 %WAITS%
            THEN max(finished_ms - started_ms, 0) END
FROM attempts a)sql";

constexpr const char* not_a_wait = R"sql(AND NOT EXISTS (
                   SELECT 1 FROM waits w WHERE w.run_id = a.run_id AND w.node_id = a.node_id
                                           AND w.iteration = a.iteration AND w.kind != 'gate'))sql";

} // namespace

db_stats read_stats(database& db, const std::vector<double>& duration_bounds_s) {
  db_stats out;
  out.runs = count_runs(db);

  auto& h = out.attempt_durations;
  const std::size_t n = duration_bounds_s.size();
  h.bounds_s = duration_bounds_s;
  std::vector<double> bounds_ms;
  for (double b : duration_bounds_s)
    bounds_ms.push_back(b * 1000.0);
  std::vector<std::int64_t> per_bucket(n + 1, 0);
  std::int64_t sum_ms = 0;

  std::string sql = attempts_sql;
  sql.replace(sql.find("%WAITS%"), 7, any_waits(db) ? not_a_wait : "");
  statement s(db.handle(), sql);
  sqlite3_stmt* st = s.handle();
  while (s.step()) {
    const char* state = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    if (!state) state = "";
    auto it = std::find_if(out.attempts.begin(), out.attempts.end(),
                           [&](const state_count& c) { return c.state == state; });
    if (it == out.attempts.end()) it = out.attempts.insert(out.attempts.end(), {state, 0});
    ++it->count;
    if (sqlite3_column_type(st, 1) == SQLITE_NULL) continue;
    std::int64_t d = sqlite3_column_int64(st, 1);
    // The first bound >= d: buckets are "less than or equal".
    auto b = std::lower_bound(bounds_ms.begin(), bounds_ms.end(), static_cast<double>(d));
    ++per_bucket[static_cast<std::size_t>(b - bounds_ms.begin())];
    ++h.count;
    sum_ms += d;
  }
  h.sum_s = static_cast<double>(sum_ms) / 1000.0;
  std::int64_t running = 0;
  h.cumulative.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    h.cumulative.push_back(running += per_bucket[i]);
  std::sort(out.attempts.begin(), out.attempts.end(),
            [](const state_count& a, const state_count& b) { return a.state < b.state; });
  return out;
}

} // namespace smithers::store
