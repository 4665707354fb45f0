// Metrics in Prometheus' text format (0.0.4): what the runs this process
// drives did, from their committed events, and what the database holds, for
// a process that drives nothing (`smithers serve`). Thread-safe; no CAF or
// SQLite type appears here.
//
// From events (observe), "tasks" meaning attempts of command, agent,
// compute and value tasks (approvals, timers and signals are waits, left
// out); run series are labelled `workflow`:
//   smithers_runs_{started,resumed,finished,failed,cancelled,continued}_total
//   smithers_tasks_{started,finished,failed,retried,cancelled}_total,
//   smithers_cache_hits_total                                      counters
//   smithers_tasks_in_flight, smithers_workers_connected            gauges
//     (workers as the runs hear of them: WorkerJoined/WorkerLost reach runs
//     only, so a worker lost while no run goes on stays counted)
//   smithers_attempt_duration_seconds (NodeStarted to its end),
//   smithers_queue_wait_seconds (NodePending to the first NodeStarted) histograms
// From the persistence actor (observe_commit): smithers_commit_batch_size,
// smithers_commit_latency_seconds (histograms).
// From the database (text(store)), whoever drives the runs:
//   smithers_db_runs{workflow,status}, smithers_db_attempts{state},
//   smithers_db_tasks_in_flight (gauges), smithers_db_attempt_duration_seconds
//   (histogram), smithers_db_read_errors_total.
#pragma once

#include <smithers/events.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace smithers {

class run_store;

class metrics {
public:
  /// Upper bounds of the histograms, without +Inf: attempt durations and
  /// queue waits (seconds, here and in the database's), commit latencies
  /// (seconds, from 100 µs), commit batch sizes (store commands).
  static const std::vector<double>& duration_bounds();
  static const std::vector<double>& commit_latency_bounds();
  static const std::vector<double>& batch_bounds();

  /// Bookkeeping bounds: node entries (a NodePending waiting for its start,
  /// an attempt in flight, a wait) and runs (for their workflow name). Past
  /// them the oldest entry is dropped: its end is then counted but observes
  /// no duration, and a dropped attempt leaves the in-flight gauge.
  static constexpr std::size_t max_node_entries = 100000;
  static constexpr std::size_t max_runs = 10000;
  /// Distinct `workflow` label values; later workflows count under "_other".
  static constexpr std::size_t max_workflows = 1000;
  /// How long text(store) reuses the database's figures (at least; longer
  /// when reading them took long: ten times the read).
  static constexpr std::chrono::milliseconds store_ttl{2000};

  metrics();
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  /// Every committed event of the runs this process drives (an
  /// event_handler: engine::subscribe). Cheap for the events it ignores.
  void observe(const event& ev);
  /// The workflow of a run this process did not start (a resume): RunStarted
  /// carries it, RunResumed does not. Optional: else its series say "".
  void note_run(const std::string& run_id, const std::string& workflow);
  /// One committed transaction of the persistence actor.
  void observe_commit(std::size_t batch_commands, std::chrono::microseconds latency);

  /// This process's series.
  std::string text() const;
  /// text() plus database-wide series (smithers_db_*) read from `store`
  /// (run_store::stats(): a scan of runs and attempts, ~0.4 s per million
  /// attempts), cached for store_ttl. A failed read counts in
  /// smithers_db_read_errors_total and shows the last figures read. The
  /// store is used on the calling thread, like any run_store call.
  std::string text(const run_store& store) const;
  /// Only the database-wide series (what text(store) adds to text()): for a
  /// process that drives no runs, whose own series would all be zero.
  std::string database_text(const run_store& store) const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace smithers
