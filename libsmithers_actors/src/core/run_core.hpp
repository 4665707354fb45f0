// The run core: one run's state machine, without actors or a database
// (docs/architecture.md, "The run core").
//
// It owns what a run knows — the rendered tree and its plan, the scheduler,
// node states by key, attempts, committed outputs, checkpoints — and decides
// everything: which attempts start, retries and their backoff, skips,
// re-renders (mount, unmount, remount), stops, the run's end, and what is
// written (store commands in batches), with which events and frames.
//
// The actor around it (actors/run_supervisor.cpp) feeds it messages and
// carries out its effects: send a batch to the persistence actor, launch an
// attempt whose start is durable, ask an attempt to stop, set a retry timer,
// stop watching an ended attempt, end the run. Nothing here blocks.
//
// Loops: render keys a loop body's nodes by the loop's iteration (from the
// loop states here); when a body is done the scheduler says so, and
// advance_loops() evaluates `until` and starts the next iteration (a new
// render) or ends the loop. Where the next features go: a node waiting for
// an approval, a timer or a signal is a state the scheduler holds until an
// event releases it, like a retry's backoff (hold/release, on_retry_due).
#pragma once

#include "core/attempt_builder.hpp"
#include "core/event_log.hpp"
#include "core/node_table.hpp"
#include "executors/task_job.hpp"
#include "scheduler/scheduler.hpp"
#include "store/rows.hpp"
#include "store/writer.hpp"
#include "workflow/render.hpp"

#include <smithers/engine.hpp>
#include <smithers/node_key.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace smithers::core {

/// What a resumed run starts from, read from the store.
struct resume_state {
  key_map<node_state> states;
  key_map<std::int64_t> attempts; // attempts started
  std::unordered_map<std::string, json> outputs; // latest finished iteration per node id
  std::unordered_map<std::string, node_key> latest; // the key each of those came from
  key_map<json> history; // every iteration's output of nodes with more than one
  std::unordered_map<std::string, loop_state> loops; // by loop instance
  key_map<json> checkpoints;                     // last heartbeat data
  key_map<std::int64_t> retry_at_ms;             // backoffs still running
  std::vector<attempt_key> orphaned;             // attempts left in progress
  std::vector<store::wait_row> waits;            // what nodes wait (and waited) for
  std::vector<store::inbox_row> inbox;           // decisions and signals not taken yet
  // A failed or cancelled run driven again (docs/waiting.md, "Retrying"):
  bool retry = false;
  std::string previous_status;           // as stored before the claim
  std::vector<node_key> retried;         // failed nodes that run again
  key_map<std::int64_t> retry_base;      // attempts that do not count against retries:
                                         // before a retry, and free re-dispatches
  key_map<std::int64_t> lost_streak;     // WORKER_LOST re-dispatches in a row, per node
  std::set<std::string> disabled_agents; // AGENT_AUTH_FAILED in this run (docs/agents.md)
  std::vector<std::string> failed_loops; // loops that failed, running again
  std::int64_t next_frame = 0;
  std::string previous_owner;
  bool forced = false;
  bool handover = false; // the previous owner released the run to this resume
};

/// Everything a run is started with.
struct run_config {
  std::string run_id;
  std::string owner_id; // this engine's
  std::shared_ptr<const workflow> wf;
  std::shared_ptr<const json> input;
  std::int64_t max_concurrency = 0; // 0: unlimited
  std::string cwd;                  // where commands run (a task's relative cwd is under it)
  std::size_t max_output_bytes = limits::default_max_output_bytes; // a task output, serialized
  std::shared_ptr<const compute_registry> computes;
  rendered_tree first_render;         // validated before the run was created
  std::int64_t next_seq = 0;          // events already written
  std::optional<resume_state> resume; // set when resuming
  std::int64_t started_ms = 0;
  std::function<void(const event&)> publish; // after commit
  bool release_when_waiting = false;         // run_options::release_when_waiting
  /// Workers may run compute functions this process does not have.
  bool remote_computes = false;
  /// The workflow's task cache as stored when the run (re)started: key ->
  /// output; null when the workflow caches nothing. The run adds what it
  /// stores.
  std::shared_ptr<std::unordered_map<std::string, json>> cache;
};

/// Why the run stops starting tasks before its tree is done.
enum class stop_mode {
  none,
  cancel,    // the run ends `cancelled`
  interrupt, // the process is going away: attempts end, the run stays resumable
  handover,  // a forced resume elsewhere: as interrupt, then the run is released
  /// Continue-as-new: nothing new starts, what is in flight finishes, then
  /// the run ends `continued` and its successor carries its state on.
  continue_as_new,
};

/// What the actor must do after a call into the core.
struct effects {
  struct batch {
    std::uint64_t id = 0;
    std::shared_ptr<store::write_batch> commands;
  };
  struct stop_request {
    attempt_key key;
    error why;
  };
  struct timer {
    node_key key;
    std::int64_t delay_ms = 0;
  };
  std::vector<batch> batches; // to the persistence actor, in order
  /// Attempts whose start is durable: run them now.
  std::vector<std::shared_ptr<executors::task_job>> launches;
  std::vector<stop_request> stops; // attempts to ask to stop
  std::vector<timer> timers;       // call on_retry_due(key) after delay_ms
  std::vector<timer> wakeups;      // call on_wait_due(key) after delay_ms
  std::vector<attempt_key> ended;  // launched attempts that ended: stop watching them
  bool kill_all = false; // end every attempt still running now
  bool tick = false;     // call tick() once the messages already queued are handled
  bool done = false;     // the run has ended: take_result(), nothing more to do
};

class run_core {
public:
  using clock_fn = std::function<std::int64_t()>;

  explicit run_core(run_config cfg, clock_fn clock = {}, std::uint64_t seed = std::random_device{}());
  run_core(const run_core&) = delete;
  run_core& operator=(const run_core&) = delete;

  /// Announces the first render's nodes, or picks a resumed run up.
  void start();
  /// Re-renders if outputs changed, starts what may start, checks the end.
  void tick();

  void on_result(const attempt_key& a, const executors::task_outcome& oc);
  void on_heartbeat(const attempt_key& a, std::int64_t at_ms, const json& data, bool has_data);
  /// A command's process group started (on `host`): recorded so that a
  /// resume after a crash can end it.
  void on_process(const attempt_key& a, std::int64_t pid, const std::string& host,
                  std::int64_t pid_start);
  void on_heartbeat_timeout(const attempt_key& a, std::int64_t last_beat_ms);
  /// A line an attempt printed (stream "stdout"/"stderr": NodeOutput), or
  /// an agent asked again ("agent": `text` holds AgentRetry's fields).
  void on_output(const attempt_key& a, const std::string& stream, const std::string& text);
  /// An attempt ended without a result (its actor or worker is gone).
  void on_attempt_lost(const attempt_key& a, const std::string& why);
  /// The attempt was sent to a worker (HOST:PORT): recorded on its row.
  void on_worker(const attempt_key& a, const std::string& worker);
  /// A worker became usable by this run, or was lost (WorkerJoined,
  /// WorkerLost with `details`).
  void on_worker_event(bool joined, const std::string& worker, const json& details);
  /// A retry's backoff has passed.
  void on_retry_due(const node_key& k);
  /// A decision or a signal stored in the run's inbox (each is taken once,
  /// however often it is told).
  void on_inbox(const store::inbox_row& entry);
  /// A timer's deadline or a signal's timeout may have come.
  void on_wait_due(const node_key& k);
  /// Cancel (ends `cancelled`), interrupt or handover (the run stays
  /// resumable): no new starts; every attempt in flight is asked to stop and
  /// recorded cancelled once it has.
  void stop(stop_mode mode, error why);
  /// An interrupt, if all the run does is wait (for a person, a signal, a
  /// timer): its engine is going away and nothing in flight needs ending.
  void stop_if_waiting(const std::string& reason);
  void on_committed(std::uint64_t batch);
  /// Without the store there is no durable progress: the run stops here,
  /// resumable once the store works.
  void on_commit_failed(std::uint64_t batch, const std::string& message);

  effects take_effects() { return std::exchange(fx_, {}); }
  /// The run's result, once effects().done.
  run_result take_result() { return std::move(result_); }

  // Views, for tests and the actor.
  const std::string& run_id() const { return cfg_.run_id; }
  bool has_live(const node_key& k) const { return live_.count(k) != 0; }
  std::size_t live_count() const { return live_.size(); }
  std::optional<node_state> written_state(const node_key& k) const;
  std::int64_t attempts_of(const node_key& k) const;
  const std::unordered_map<std::string, json>& outputs() const { return outputs_; }
  const std::unordered_map<std::string, loop_state>& loops() const { return loops_; }
  bool ending() const { return ending_; }
  /// The run's status as last written (running or waiting-*).
  run_status status() const { return status_; }

private:
  /// A node waiting for something other than its attempts: a decision, a
  /// deadline, a signal (docs/waiting.md). The scheduler holds it meanwhile
  /// (out of flight: a wait takes no concurrency slot); its outcome
  /// releases it, and the node is resolved when it is taken again.
  struct wait_entry {
    enum class kind_t { approval, gate, timer, signal };
    enum class outcome_t { none, approved, denied, fired, received, timed_out };
    kind_t kind = kind_t::approval;
    outcome_t outcome = outcome_t::none;
    std::int64_t since_ms = 0;
    std::optional<std::int64_t> deadline_ms;
    std::string name; // a signal's
    json payload;     // the decision, or the signal's data
    std::int64_t inbox_id = 0;
  };
  /// An attempt in flight.
  struct live_attempt {
    std::int64_t attempt = 1;
    sched::index task = -1; // in the current plan (-1: a re-render dropped it)
    bool launched = false;  // its job was handed out to run
    std::int64_t started_ms = 0;
    std::int64_t last_hb_write_ms = 0; // the watchdog throttles; this is the newest written
    bool unmounted = false; // a re-render dropped its node: being stopped, recorded cancelled
    std::string cache_key;  // a cached task's: its output is stored under it
    std::string agent;      // an agent task's: the agent this attempt asks
  };
  /// An attempt whose start is being committed: launched once the attempt
  /// row is durable, so no work ever runs unrecorded.
  struct pending_launch {
    attempt_key key;
    std::shared_ptr<executors::task_job> job;
  };
  /// A value task resolved here: applied once its batch commits, so its
  /// dependents start only after its output is durable.
  struct resolved_value {
    node_key key;
    sched::index task = -1; // in the plan of generation plan_gen
    std::uint64_t plan_gen = 0;
    json output;
  };
  /// What happens once a batch has committed: its events are published, its
  /// values reach the scheduler and the attempts it starts are launched.
  /// Results are applied to the scheduler as they arrive, so the attempts
  /// they unblock are recorded in the same batch as the outputs they need;
  /// none of them runs before that commit.
  struct batch_effects {
    std::vector<logged_event> events;
    std::vector<pending_launch> launches;
    std::vector<resolved_value> values;
    std::size_t results = 0; // attempts ended in this batch
    bool final = false;
  };

  std::int64_t now() const { return clock_(); }
  template <class... KV> void emit(const char* type, KV&&... kv) {
    log_.emit(writes_, now(), type, std::forward<KV>(kv)...);
  }
  template <class... KV> void emit_node(const char* type, const node_key& k, KV&&... kv) {
    log_.emit_node(writes_, now(), type, k, std::forward<KV>(kv)...);
  }

  void node_row(sched::index t, const node_key& k, node_state s);
  void add_pending(const std::vector<sched::index>& tasks);
  store::finish_attempt finish_cmd(const attempt_key& a, const char* state, std::int64_t at_ms,
                                   json err = nullptr) const;
  void queue_tick();
  void maybe_frame();
  std::vector<sched::index> rebuild(const key_map<node_state>& known);
  void resume(resume_state& r);
  void rerender();
  void mount_loops();
  void advance_loops();
  void write_loop(const std::string& id, const char* state);
  void record_output(const node_key& k, sched::index t, json output);
  void continue_run();
  const json* output_at(const task_spec& reader, std::string_view id, std::int64_t iteration) const;
  store::attempt_row attempt_row(const node_key& k, std::int64_t attempt, const char* state,
                                 std::int64_t started_ms) const;
  void start_task(sched::index t);
  void finish_cached(sched::index t, std::int64_t attempt, std::int64_t at, const std::string& key,
                     const json& output);
  bool wait_step(sched::index t);
  void begin_wait(sched::index t);
  void resolve_wait(sched::index t, wait_entry w);
  void write_wait(const node_key& k, const wait_entry& w, const char* state);
  void set_outcome(const node_key& k, wait_entry& w, wait_entry::outcome_t o, json payload,
                   std::int64_t inbox_id);
  bool take_inbox(const node_key& k, wait_entry& w);
  void finish_inline(sched::index t, std::int64_t attempt, std::int64_t started_ms, json output);
  void fail_inline(sched::index t, std::int64_t attempt, std::int64_t started_ms, const error& err);
  void update_status();
  void restore_waits(resume_state& r);
  void drop_unmounted_waits();
  void wake_at(const node_key& k, std::int64_t deadline_ms);
  void resolve_value(sched::index t, std::int64_t attempt, std::int64_t now);
  void launch(const pending_launch& pl);
  void write_heartbeat(const node_key& k, live_attempt& la, std::int64_t at_ms, const json& data,
                       bool has_data);
  live_attempt end_live(const node_key& k, const executors::last_heartbeat* beat = nullptr);
  void attempt_failed(const attempt_key& a, const error& err,
                      const executors::last_heartbeat* beat = nullptr, const json* meta = nullptr);
  void finish_stop();
  void fail_run(error err);
  void end_run(run_status status, std::optional<error> err);
  void never_reached(sched::index t, const node_key& k, const char* reason);
  bool results_pending() const;
  void record_skip(sched::index t, const char* reason);
  void check_end();
  void flush();
  void send_batch();
  void done();
  bool is_live(const attempt_key& a) const;

  run_config cfg_;
  clock_fn clock_;
  std::mt19937_64 rng_;
  attempt_builder builder_;
  event_log log_;
  node_table table_;
  rendered_tree tree_;
  std::unique_ptr<sched::plan> plan_;
  std::unique_ptr<sched::scheduler> sched_;
  std::uint64_t plan_gen_ = 0; // bumped when a re-render replaces the plan
  std::unordered_map<std::string, json> outputs_; // committed, latest per node id (base_id)
  std::unordered_set<node_key, node_key_hash> ended_; // nodes that have ended (control flow reads it)
  std::unordered_map<std::string, loop_state> loops_; // by loop instance
  std::vector<std::string> loops_changed_;           // since the last frame
  key_map<json> history_;                  // outputs of nodes inside loops, every iteration
  std::unordered_set<std::string> history_ids_; // base ids with outputs in history_
  std::unordered_map<std::string, node_key> latest_; // base id -> key of its output in outputs_ (loops only)
  std::vector<std::string> continue_loops_; // loops whose iteration ended this run (continue-as-new)
  struct pending_retry {
    std::int64_t at_ms = 0;
    json error;
  };
  key_map<pending_retry> retries_; // backoffs running: what a successor carries
  key_map<json> checkpoints_;                      // last heartbeat data per node
  key_map<wait_entry> waits_;                      // nodes waiting (docs/waiting.md)
  std::vector<store::inbox_row> inbox_;            // arrived, not taken by any node yet
  std::unordered_set<std::int64_t> inbox_seen_;    // inbox ids already told
  key_map<char> gates_passed_;                     // needs_approval gates approved
  key_map<std::int64_t> retry_base_;               // attempts that do not count against retries
  key_map<std::int64_t> lost_streak_;              // WORKER_LOST failures in a row, per node
  std::set<std::string> disabled_agents_;          // agents whose credentials failed
  run_status status_ = run_status::running;        // as last written
  bool pull_again_ = false; // a wait took a slot from take_runnable and gave it back
  bool had_waits_ = false;  // waits were stored for this run (cancelled when it ends)
  std::optional<std::string> idle_reason_; // stop_if_waiting: stop once the run only waits
  key_map<live_attempt> live_;
  std::vector<store::command> writes_;
  batch_effects batch_; // of the batch being gathered
  std::unordered_map<std::uint64_t, batch_effects> in_flight_;
  std::uint64_t next_batch_ = 1;
  std::int64_t frame_no_ = 0;
  bool tree_changed_ = true;
  bool tick_queued_ = false;
  bool flush_deferred_ = false; // writes wait for the batch in flight
  bool dirty_ = false;          // outputs changed since the last render (dynamic workflows)
  bool control_dirty_ = false;  // a node control flow reads has ended since the last render
  bool ending_ = false;
  stop_mode stopping_ = stop_mode::none;
  error stop_error_;
  run_result result_;
  effects fx_;
};

} // namespace smithers::core
