// The embedding API: an engine owns an actor system, a database and the runs
// it drives. No CAF or SQLite types appear here.
#pragma once

#include <smithers/errors.hpp>
#include <smithers/events.hpp>
#include <smithers/limits.hpp>
#include <smithers/remote.hpp>
#include <smithers/status.hpp>
#include <smithers/workflow.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace smithers {

class metrics; // smithers/metrics.hpp

/// A heartbeat this old marks a run's owner on another host as gone.
inline constexpr std::chrono::milliseconds default_stale_after{30000};

struct engine_config {
  /// SQLite file (created if missing), or ":memory:".
  std::string db_path = "smithers.db";
  /// false: synchronous=NORMAL (WAL; a power loss may lose the last commits,
  /// a process crash loses nothing). true: synchronous=FULL.
  bool synchronous_full = false;
  /// CAF scheduler threads; 0: the number of cores, at least 2.
  std::size_t scheduler_threads = 0;
  /// Threads for blocking work (compute callables, subprocess I/O); the pool
  /// grows up to this many. 0: 64.
  std::size_t blocking_threads = 0;
  /// Run-wide limit on tasks in flight when neither the workflow nor the run
  /// options set one.
  std::int64_t default_max_concurrency = 32;
  /// A task's output may serialize to at most this many bytes (a command's
  /// stdout to four times as many) when the run does not say otherwise;
  /// more fails the attempt with INVALID_OUTPUT. 1 .. 256 MiB.
  std::size_t max_output_bytes = limits::default_max_output_bytes;

  /// Worker nodes (HOST:PORT, `smithers worker`) that run this engine's
  /// command tasks and named compute tasks (docs/operations.md, "Workers").
  /// Empty: every attempt runs in this process. Value tasks, inline C++
  /// computes and all persistence stay here.
  std::vector<std::string> workers;
  /// With workers: while none is reachable, run attempts here instead of
  /// waiting for one.
  bool local_fallback = false;
  /// Mutual TLS with the workers (all three files, or none).
  tls_files tls;
  /// A connection to a worker that is not established (and greeted) within
  /// this long is given up and tried again later.
  std::chrono::milliseconds worker_connect_timeout{3000};
  /// Where this engine counts what its runs do (every committed event) and
  /// its commits, for a host's /metrics (metrics::text()): one may be
  /// shared by several engines. Null: nothing is counted.
  std::shared_ptr<smithers::metrics> metrics;
};

struct run_options {
  std::string run_id; // empty: generated
  json input = json::object();
  std::optional<std::int64_t> max_concurrency; // overrides the workflow's
  /// Overrides engine_config::max_output_bytes for this run; recorded with
  /// the run, so every resume keeps it.
  std::optional<std::size_t> max_output_bytes;
  event_handler on_event; // this run's events, after commit
  std::string workflow_path;                   // recorded with the run (CLI)
  std::string workflow_hash;                   // recorded with the run (CLI)
  std::string vcs_revision;                    // git revision of the workflow's directory
  /// Where the run's commands run (a task's relative `cwd` is under it),
  /// recorded with the run so every resume agrees. Empty: the process's
  /// current directory at start.
  std::string cwd;
  /// When every remaining path waits for an approval or a signal, record
  /// the waiting status, let go of the run and end the handle with it (the
  /// CLI: exit 3, `resume` or `supervise` continue it). false (default):
  /// the engine keeps driving it, so approve() and signal() continue it at
  /// once (docs/waiting.md, "Who waits").
  bool release_when_waiting = false;
};

struct resume_options {
  /// Resume even if the owner seems alive, its heartbeat is fresh, or the
  /// workflow changed since the run started.
  bool force = false;
  /// A heartbeat older than this marks an owner on another host as gone.
  std::chrono::milliseconds stale_after = default_stale_after;
  /// With `force` while the owner lives: how long to wait for it to hand
  /// the run over before giving up (RUN_OWNER_ALIVE).
  std::chrono::milliseconds handover_timeout{15000};
  event_handler on_event;
  std::string workflow_hash; // CLI: hash of the workflow file (default: of the tree)
  std::string vcs_revision;  // compared with the recorded one when both are known
  bool release_when_waiting = false; // as run_options'
};

/// A node a run waits for (run_result::waiting, `smithers inspect`).
struct waiting_node {
  node_key key;
  std::string kind;  // approval (also a task's needs_approval gate), signal, timer
  std::string name;  // a signal's name
  std::string title; // an approval's title
  std::optional<std::int64_t> deadline_ms; // a timer fires, a signal times out
};

struct run_result {
  std::string run_id;
  run_status status = run_status::running;
  std::optional<error> err;            // set when failed or cancelled
  std::map<std::string, json> outputs; // node id -> output
  /// Status `continued` (continue-as-new): the run that goes on from here,
  /// created (running, unowned) in the same commit that ended this one.
  /// resume() drives it.
  std::string continued_as;
  /// Status waiting-approval or waiting-event (release_when_waiting): what
  /// it waits for.
  std::vector<waiting_node> waiting;
};

/// Who decided an approval, and why (engine::approve, engine::deny).
struct decision {
  std::string by;
  std::string note;
  /// The node's iteration inside a loop; none: the one that waits.
  std::optional<std::int64_t> iteration;
};

/// What engine::cancel did.
enum class cancel_outcome {
  stopping,  // driven by this engine: it is stopping the run now
  requested, // driven by another live process: asked, durably, to stop it
  cancelled, // driven by nobody: ended cancelled by this call
};

/// A run started asynchronously.
class run_handle {
public:
  struct state;
  run_handle() = default;
  explicit run_handle(std::shared_ptr<state> st) : st_(std::move(st)) {}

  const std::string& run_id() const;
  /// Blocks until the run ends (finished, failed, cancelled, continued) or,
  /// with release_when_waiting, waits for a person or a signal.
  run_result wait() const;
  /// Waits at most `timeout`; true when the run has ended.
  bool wait_for(std::chrono::milliseconds timeout) const;

private:
  friend class engine;
  run_result take();      // waits, then moves the result out (engine::run)
  void await_end() const; // waits without copying the result
  std::shared_ptr<state> st_;
};

/// The checks engine::validate makes, usable before any engine (and so any
/// database file) exists: run id, input bounds and schema, the workflow,
/// compute names (`has_compute`), limits. Throws smithers_error
/// (INVALID_RUN_ID, INVALID_INPUT, INVALID_WORKFLOW, INVALID_ARGUMENT) whose
/// message names the offending path; details carry {"problems": [...]}.
/// `check_input` false: the input is not checked (`smithers validate`
/// without --input checks the workflow's input schema, not an empty input).
void validate_run(const workflow& wf, const run_options& opts,
                  const std::function<bool(const std::string&)>& has_compute,
                  bool check_input = true);

class engine {
public:
  /// Opens (and migrates) the database and starts the actor system.
  /// Throws smithers_error(DB_ERROR) when the database cannot be opened.
  explicit engine(engine_config cfg = {});
  /// Waits for every run started through this engine to end; a run that
  /// only waits (for an approval, a signal, a timer) is stopped instead,
  /// resumable (its handle's wait() returns status `running`).
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Makes `name` usable as {"compute": "name"} in JSON workflows.
  void register_compute(const std::string& name, compute_fn fn);
  bool has_compute(const std::string& name) const;

  /// Checks everything a run needs before anything is written: run id,
  /// input bounds and schema, the workflow, compute names, limits. Throws
  /// smithers_error (INVALID_RUN_ID, INVALID_INPUT, INVALID_WORKFLOW,
  /// INVALID_ARGUMENT) naming the offending path.
  void validate(const workflow& wf, const run_options& opts) const;

  /// Validates, creates the run and drives it to its end on the engine's
  /// threads. Throws like validate(); INVALID_RUN_ID if the id exists.
  run_handle start(std::shared_ptr<const workflow> wf, run_options opts = {});
  run_handle start(const workflow& wf, run_options opts = {});
  /// start() and wait().
  run_result run(const workflow& wf, run_options opts = {});

  /// Continues a run after a crash, an interrupt or a restart, or starts a
  /// `created` one (a fork): claims it (of two resumers exactly one wins),
  /// records the attempts its previous owner left in flight as cancelled,
  /// and drives it on. Finished nodes are never run again; retry backoffs
  /// carry over. A cancellation requested while nobody drove the run is
  /// honoured first: the run ends `cancelled` and nothing starts (the handle
  /// is already done). Throws RUN_NOT_FOUND, RUN_NOT_RESUMABLE (it has
  /// ended), RUN_OWNER_ALIVE (its owner process still runs on this host),
  /// RUN_STILL_RUNNING (a fresh heartbeat from an owner not known to be
  /// dead), RESUME_METADATA_MISMATCH (the workflow changed) — the last three
  /// unless opts.force — and RUN_RESUME_CLAIM_FAILED when another resumer
  /// won. With opts.force and a live owner it is a handover: the owner is
  /// asked (durably) to stop driving the run and release it, and this call
  /// blocks until it has (or has died), at most opts.handover_timeout
  /// (RUN_OWNER_ALIVE then). Two processes never drive a run at once.
  run_handle resume(std::shared_ptr<const workflow> wf, const std::string& run_id,
                    resume_options opts = {});

  /// Time travel: creates a new run from frame `frame_no` of `run_id` and
  /// returns its id. The child has the parent's input and workflow, its node
  /// states and outputs as of that frame, and `reset_nodes` (with every task
  /// that needs them) set back to pending; resume() runs it. Throws
  /// RUN_NOT_FOUND, INVALID_ARGUMENT (no such frame or node), INVALID_RUN_ID.
  std::string fork(const std::string& run_id, std::int64_t frame_no,
                   const std::vector<std::string>& reset_nodes = {},
                   const std::string& new_run_id = "");

  /// Cancels a run: no new attempts start, attempts in flight are stopped
  /// (their process groups ended) and recorded `cancelled`, and the run ends
  /// `cancelled` with RunCancelled. A run driven by this engine is told at
  /// once (`stopping`); a run a live process drives gets a durable request
  /// that its owner notices within 500 ms (`requested`); a run nobody drives
  /// (its owner died, or a fork never started) is ended cancelled here, the
  /// commands its owner left running ended (`cancelled`). Throws
  /// RUN_NOT_FOUND for an unknown id and INVALID_ARGUMENT for a run that has
  /// already ended.
  cancel_outcome cancel(const std::string& run_id, const std::string& reason = "cancelled");
  /// Continue-as-new, on demand: a run this engine drives starts nothing
  /// more, lets its attempts in flight finish, then ends `continued` and
  /// its successor is created with the carried state (each loop at its
  /// iteration, the latest output of every node; docs/workflow-format.md).
  /// False when this engine does not drive the run.
  bool continue_as_new(const std::string& run_id);

  /// Decides the approval a node of a run waits for (an approval node, or a
  /// task's needs_approval gate): stored in the run's inbox, then taken by
  /// whoever drives the run — at once when this engine does, within 500 ms
  /// when another process does, on resume otherwise. Throws RUN_NOT_FOUND,
  /// INVALID_ARGUMENT (the run has ended; the node does not wait for a
  /// decision or already has one) with nothing written.
  void approve(const std::string& run_id, const std::string& node_id, decision d = {});
  void deny(const std::string& run_id, const std::string& node_id, decision d = {});
  /// Delivers signal `name` with `payload` (bounded like input) to a run
  /// that has not ended: the oldest node waiting for that name takes it, or
  /// the next one to wait for it. Throws RUN_NOT_FOUND, INVALID_ARGUMENT,
  /// INVALID_INPUT.
  void signal(const std::string& run_id, const std::string& name, json payload = json::object());

  /// Stops driving every run of this engine and leaves them resumable:
  /// attempts in flight are stopped and recorded `cancelled`, their nodes go
  /// back to `pending`, the runs stay `running` in the store. Their handles'
  /// wait() returns status `running` with a TASK_ABORTED error. For a host
  /// that is shutting down (the CLI calls it on SIGINT/SIGTERM).
  void interrupt(const std::string& reason);

  /// This engine's owner id, recorded on the runs it drives.
  const std::string& owner_id() const;

  /// Every event of every run of this engine, after commit. Returns an id
  /// for unsubscribe().
  std::uint64_t subscribe(event_handler handler);
  void unsubscribe(std::uint64_t id);

  const engine_config& config() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace smithers
