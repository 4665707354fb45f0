// Stored runs, for tools: the CLI's ps, inspect, logs, timeline, cancel and
// fork, and one day an HTTP API. A run_store reads a database file on a
// connection of its own (never the connection of an engine that drives
// runs) and acts on runs that no engine of this process drives. No CAF or
// SQLite type appears here.
#pragma once

#include <smithers/errors.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace smithers {

/// One run as stored.
struct run_info {
  std::string run_id;
  std::string workflow_name;
  std::string status; // docs/reference.md#states, plus "created" for a fork nobody started
  json input = json::object();
  json config = json::object(); // max_concurrency, max_output_bytes, a fork's origin
  std::string workflow_hash;
  std::string workflow_path;
  std::string vcs_revision;
  std::string cwd;      // where its commands run
  std::string owner_id; // "" when no process owns it
  std::int64_t owner_pid = 0;
  std::int64_t heartbeat_ms = 0;
  bool cancel_requested = false;
  std::string parent_run_id;
  json error; // null or {"code", "message", "details"}
  std::int64_t created_ms = 0;
  std::int64_t updated_ms = 0;
  std::optional<std::int64_t> finished_ms;

  /// As `ps --format json` and `inspect --format json` show it ("run").
  json to_json() const;
};

/// Who drives a stored run, as far as another process can tell.
enum class run_driver {
  nobody, // no owner recorded: a fork never started, a released run
  alive,  // its owner process runs (this host), or heartbeats (another host)
  gone,   // its owner died (this host), or its heartbeat is stale (another host)
};

/// `stale_after`: a heartbeat this old marks an owner on another host gone.
run_driver driver_of(const run_info& run, std::chrono::milliseconds stale_after);

/// Whether the run's owner is (or was) a process of this host: then its
/// liveness is known from its pid, not only from its heartbeat.
bool owned_on_this_host(const run_info& run);

/// A page of runs (run_store::runs): newest first.
struct run_query {
  std::string status;   // "" for all
  std::string workflow; // a workflow name, "" for all
  std::size_t limit = 100;
  std::size_t offset = 0;
};

/// What run_store::cancel did.
struct cancel_report {
  bool requested = false;   // a live owner was asked (it stops the run itself)
  run_info run;             // as it was before
  std::size_t attempts = 0; // not requested: attempts in flight recorded cancelled
  std::size_t nodes = 0;    // not requested: nodes that had not ended, cancelled
};

/// A decision or signal stored for a run (run_store::decide, signal).
struct inbox_report {
  std::int64_t id = 0;
  std::string node_id; // a decision's node...
  std::int64_t iteration = 0;
  run_info run; // as it was when it was stored
  /// Nobody drives the run: the decision waits there until `smithers
  /// resume` (or `supervise`) continues it.
  bool needs_resume = false;
};

/// What run_store::fork created.
struct fork_report {
  std::string run_id;
  std::vector<std::string> reset; // nodes set back to pending by the reset
  std::string workflow_path;      // the parent's, to run the fork with
};

class run_store {
public:
  /// The database at `path`, or nullopt when there is none (no runs).
  /// DB_ERROR when it exists but cannot be read (unreadable, damaged, newer).
  static std::optional<run_store> open_existing(const std::string& path);
  /// As open_existing, but a missing database is RUN_NOT_FOUND for `run_id`.
  static run_store open_for(const std::string& path, const std::string& run_id);

  run_store(run_store&&) noexcept;
  run_store& operator=(run_store&&) noexcept;
  ~run_store();

  /// Empties the task cache of `workflow` (every workflow's when empty);
  /// returns the number of entries removed.
  std::int64_t clear_cache(const std::string& workflow = "");

  /// Newest first; `status` "" for all; at most `limit`.
  std::vector<run_info> runs(const std::string& status = "", std::size_t limit = 1000) const;
  std::size_t run_count(const std::string& status = "") const;
  std::vector<run_info> runs(const run_query& q) const;
  std::size_t run_count(const run_query& q) const;
  /// Runs whose row changed (status, owner heartbeat) at or after
  /// `since_ms`, oldest change first: for watching the list.
  std::vector<run_info> runs_updated_since(std::int64_t since_ms, std::size_t limit) const;
  /// A number that changes whenever any process commits to the database
  /// (SQLite's data_version): a cheap "is there anything new to read?".
  std::int64_t data_version() const;
  std::optional<run_info> find(const std::string& run_id) const;
  /// RUN_NOT_FOUND when there is no such run.
  run_info get(const std::string& run_id) const;

  /// {"run", "lineage", "nodes", "attempts", "outputs", "loops", "waiting"
  /// (what its nodes wait for), "inbox" (decisions and signals not taken
  /// yet), "frames"}: `inspect --format json`.
  json inspect(const std::string& run_id) const;
  /// Event objects with seq > after_seq, ascending, at most `limit`.
  std::vector<json> events(const std::string& run_id, std::int64_t after_seq = -1,
                           std::size_t limit = 100000) const;
  /// The run's latest frame: {"frame_no", "tree_hash", "tree" (the
  /// rendered workflow tree), "states" ({node: state})}; all null before
  /// its first frame. RUN_NOT_FOUND.
  json latest_tree(const std::string& run_id) const;
  /// {"run_id", "parent_run_id", "frames" (each with "changed": {node:
  /// state}), "forks"}: `timeline --format json`.
  json timeline(const std::string& run_id) const;

  /// A cancel from outside the owning process: a durable request when a
  /// live process drives the run, otherwise the run is ended cancelled here
  /// (one transaction, a compare-and-set claim) and the commands its dead
  /// owner left on this host are killed. RUN_NOT_FOUND, INVALID_ARGUMENT
  /// (it has ended).
  cancel_report cancel(const std::string& run_id, const std::string& reason,
                       std::chrono::milliseconds stale_after);

  /// An approval (approved) or denial of what node `node_id` (in
  /// `iteration`, or the one iteration that waits) waits for: see
  /// engine::approve. RUN_NOT_FOUND, INVALID_ARGUMENT, nothing written.
  inbox_report decide(const std::string& run_id, const std::string& node_id,
                      std::optional<std::int64_t> iteration, bool approved, const std::string& by,
                      const std::string& note);
  /// A signal for a run that has not ended: see engine::signal.
  inbox_report signal(const std::string& run_id, const std::string& name, const json& payload);
  /// Whether a waiting run can go on: a decision for a node it waits for,
  /// a signal a waiting node takes, or a deadline passed.
  bool wait_ready(const std::string& run_id) const;
  /// Waiting runs that can go on, oldest first.
  std::vector<std::string> ready_waiting_runs() const;

  /// A new run from frame `frame_no` of `run_id` (time travel), status
  /// `created`: see engine::fork. RUN_NOT_FOUND, INVALID_ARGUMENT (no such
  /// frame or node), INVALID_RUN_ID.
  fork_report fork(const std::string& run_id, std::int64_t frame_no,
                   const std::vector<std::string>& reset_nodes = {},
                   const std::string& new_run_id = "");

  /// Database-wide figures for metrics (store/stats.hpp).
  json stats() const;

private:
  struct impl;
  explicit run_store(std::unique_ptr<impl> im);
  std::unique_ptr<impl> impl_;
};

} // namespace smithers
