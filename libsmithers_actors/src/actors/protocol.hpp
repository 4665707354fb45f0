// The engine's actor protocols: every message each actor accepts and sends,
// in one place (docs/architecture.md, "Actors"). CAF lives here and in
// actors/*.cpp only.
//
// run_supervisor (one per run; actors/run_supervisor.cpp)
//   accepts  (start)                                   from spawn_run_supervisor
//            (tick)                                    from itself (coalesced)
//            (result, attempt_key, task_outcome_ptr)   from a task actor
//            (results)                                 from a pool attempt: outcomes wait in
//                                                      its result_outbox (task_actor.hpp)
//            (timeout, attempt_key)                    from itself: a pool attempt's timeout_ms
//            (grace, attempt_key)                      from itself: a stopped pool attempt did
//                                                      not end within the grace
//            (process, attempt_key, pid, host, pid_start) from a task actor
//            (output, attempt_key, stream, text)       from a task actor: a line it printed
//                                                      ("stdout"/"stderr") or an agent
//                                                      follow-up ("agent", AgentRetry JSON)
//            (heartbeat, heartbeat_ptr)                from the watchdog (throttled)
//            (hbtimeout, attempt_key, last_beat_ms)    from the watchdog
//            (retry, node_key)                         from itself (delayed: a backoff ended)
//            (wake, node_key)                          from itself (delayed: a timer's deadline,
//                                                      a signal's timeout)
//            (inbox, inbox_ptr)                        from the engine: a decision or a signal
//                                                      (engine::approve/deny/signal, or another
//                                                      process's, found by the request poller)
//            (cancel, reason)                          from the engine: end the run cancelled
//            (interrupt, reason)                       from the engine: stop, stay resumable
//            (idle, reason)                            from the engine's destructor: stop (as
//                                                      interrupt) if the run only waits
//            (handover, requester_owner_id)            from the engine's request poller
//            (assigned, attempt_key, worker)           from a remote attempt: sent to a worker
//            (workerup, worker, details_json)          from the worker pool: usable by this run
//            (workerdown, worker, details_json)        from the worker pool: lost
//            (committed, batch_id)                     from the persistence actor
//            (failed, batch_id, code, message)         from the persistence actor
//            down_msg                                  of its task actors (monitored)
//   sends    (write, batch_id, write_batch_ptr)        to the persistence actor
//            (cancel, code, message)                   to a task actor: stop
//            (track, attempt_key, task actor, heartbeat_timeout_ms),
//            (untrack, attempt_key)                    to the watchdog
//
// task_actor (one per attempt; actors/task_actor.cpp)
//   accepts  (done, task_outcome_ptr)                  from its job on the blocking pool
//            (timeout)                                 from itself (compute timeout_ms)
//            (cancel, code, message)                   from the supervisor
//            (grace)                                   from itself: the job did not stop in time
//   sends    (result, attempt_key, task_outcome_ptr)   to the supervisor, then quits
//            (process, attempt_key, pid, host, pid_start) to the supervisor (from the job)
//            (output, attempt_key, stream, text)       to the supervisor (from the job; at most
//                                                      limits::max_streamed_output_bytes)
//            (heartbeat, heartbeat_ptr)                to the watchdog (from the job)
//
// heartbeat_watchdog (one per run, linked to the supervisor)
//   accepts  (track, ...), (untrack, ...)              from the supervisor
//            (heartbeat, heartbeat_ptr)                from task jobs
//            (check)                                   from itself, every 100 ms
//            (committed, id), (failed, id, code, msg)  acks of its liveness writes
//   sends    (heartbeat, heartbeat_ptr), (hbtimeout, ...) to the supervisor
//            (write, batch_id, write_batch_ptr)        to the persistence actor (touch_run)
//            exit (user_shutdown)                      to a task actor whose heartbeat timed out
//
// persistence_actor (one per engine; actors/persistence_actor.cpp)
//   accepts  (write, batch_id, write_batch_ptr)        from any actor
//            (load, run_id)                            from the engine (a scoped actor)
//            (exec, store_job_ptr)                     from the engine (a scoped actor)
//            (flush)                                   from itself (group commit)
//   sends    (committed, batch_id) or (failed, batch_id, code, message) to the writer
//            (loaded, run_snapshot_ptr), (done, store_job_ptr) back to who asked
//
// remote_attempt (one per attempt sent to workers; actors/worker_pool.cpp)
//   accepts  (assigned, worker), (process, ...), (result, ...) from the pool
//            (runlocal)                                from the pool: run it here after all
//            (cancel, code, message)                   from the supervisor
//   sends    (submit, ticket, job, watchdog)           to the pool
//            (assigned, ...), (process, ...), (result, ...) to the supervisor, in order
//            (abandon, ticket)                         to the pool, when it ends first
//
// worker_pool (one per engine with workers; actors/worker_pool.cpp)
//   accepts  (submit, ...), (cancel, ticket, code, message), (abandon, ticket)
//            (subscribe, supervisor)                   from a supervisor: tell it of workers
//            (rreport, remote_report)                  from a worker (actors/wire.hpp)
//            (rflush), (reconnect, index)              from itself
//            down_msg                                  of workers and subscribers
//   sends    (rwork, remote_work)                      to a worker
//            (heartbeat, heartbeat_ptr)                to a run's watchdog
//
// worker_node (one per worker process; actors/worker_node.cpp)
//   accepts  (hello, owner_id, pool), (rwork, remote_work) from owners' pools
//            (result, ...), (process, ...), (heartbeat, ...) from its task actors
//            (rflush), (stop)                          from itself, from smithers::worker
//            down_msg                                  of owners and task actors
//   sends    (rreport, remote_report)                  to an owner's pool
//
// request_poller (one per engine with a database file; actors/ownership.cpp)
//   accepts  (poll)                                    from itself, every 250 ms
//   calls    the engine's handler with what other processes asked of its runs
//            (cancellations, handovers) and sent them (decisions, signals in
//            their inboxes); the engine tells the run's supervisor
//
// What crosses a process boundary (to and from workers, actors/wire.hpp) is
// plain data with an inspect(): node_key, attempt_key, executors::task_request
// and the wire structs. The *_ptr payloads are shared_ptrs to in-process
// structs and never leave it.
#pragma once

#include "executors/task_job.hpp"
#include "store/writer.hpp"
#include "util/json_parse.hpp"

#include <smithers/events.hpp>
#include <smithers/limits.hpp>
#include <smithers/node_key.hpp>

#include <caf/all.hpp>

#include <memory>
#include <vector>

namespace smithers::actors {

using write_atom = caf::atom_constant<caf::atom("write")>;
using committed_atom = caf::atom_constant<caf::atom("committed")>;
using failed_atom = caf::atom_constant<caf::atom("failed")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using result_atom = caf::atom_constant<caf::atom("result")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using start_atom = caf::atom_constant<caf::atom("start")>;
using track_atom = caf::atom_constant<caf::atom("track")>;
using untrack_atom = caf::atom_constant<caf::atom("untrack")>;
using check_atom = caf::atom_constant<caf::atom("check")>;
using hb_timeout_atom = caf::atom_constant<caf::atom("hbtimeout")>;
using timeout_atom = caf::atom_constant<caf::atom("timeout")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using interrupt_atom = caf::atom_constant<caf::atom("interrupt")>;
using continue_atom = caf::atom_constant<caf::atom("continue")>;
using handover_atom = caf::atom_constant<caf::atom("handover")>;
using grace_atom = caf::atom_constant<caf::atom("grace")>;
using poll_atom = caf::atom_constant<caf::atom("poll")>;
using load_atom = caf::atom_constant<caf::atom("load")>;
using loaded_atom = caf::atom_constant<caf::atom("loaded")>;
using exec_atom = caf::atom_constant<caf::atom("exec")>;
using process_atom = caf::atom_constant<caf::atom("process")>;
using wake_atom = caf::atom_constant<caf::atom("wake")>;
using inbox_atom = caf::atom_constant<caf::atom("inbox")>;
using idle_atom = caf::atom_constant<caf::atom("idle")>;
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using assigned_atom = caf::atom_constant<caf::atom("assigned")>;
using run_local_atom = caf::atom_constant<caf::atom("runlocal")>;
using abandon_atom = caf::atom_constant<caf::atom("abandon")>;
using rflush_atom = caf::atom_constant<caf::atom("rflush")>;
using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using worker_up_atom = caf::atom_constant<caf::atom("workerup")>;
using worker_down_atom = caf::atom_constant<caf::atom("workerdown")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using output_atom = caf::atom_constant<caf::atom("output")>;
using results_atom = caf::atom_constant<caf::atom("results")>;

using store::write_batch;
using write_batch_ptr = std::shared_ptr<write_batch>;

using executors::task_job;
using executors::task_outcome;
using task_outcome_ptr = std::shared_ptr<task_outcome>;

/// Everything stored about one run, read on the writer's own connection (so
/// it works for ":memory:" too).
struct run_snapshot {
  std::optional<store::run_row> run;
  std::vector<store::node_row> nodes;
  std::vector<store::attempt_row> attempts;
  std::vector<store::output_row> outputs;
  std::vector<store::loop_row> loops;
  std::vector<store::wait_row> waits;
  std::vector<store::inbox_row> inbox; // not consumed yet
  std::int64_t max_seq = -1;
  std::int64_t frames = 0;
  std::string error; // set when reading failed
};
using run_snapshot_ptr = std::shared_ptr<run_snapshot>;

/// Store work run on the writer's connection (e.g. a fork), in its thread.
struct store_job {
  std::function<void(store::database&)> fn;
  std::optional<error> failure;
};
using store_job_ptr = std::shared_ptr<store_job>;

struct heartbeat_msg {
  attempt_key key;
  json data;
  bool has_data = false;
  std::int64_t at_ms = 0;
};
using heartbeat_ptr = std::shared_ptr<heartbeat_msg>;

using inbox_ptr = std::shared_ptr<const store::inbox_row>;

} // namespace smithers::actors

namespace smithers {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_key& x) {
  return f(caf::meta::type_name("node_key"), x.id, x.iteration);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, attempt_key& x) {
  return f(caf::meta::type_name("attempt_key"), x.node, x.attempt);
}

} // namespace smithers

namespace smithers::executors {

/// A JSON value from the wire, parsed with the engine's bounds: a peer's
/// data is input like any other.
inline caf::error json_from_wire(const std::string& text, json& out) {
  util::json_parse_error pe;
  auto v = util::parse_json(text, {limits::max_stored_json_depth, 0}, &pe);
  if (!v) return caf::make_error(caf::sec::invalid_argument, "bad JSON in a task request: " + pe.message);
  out = std::move(*v);
  return caf::none;
}

/// The task request as it crosses the wire (a remote worker's; docs/
/// architecture.md, "The task protocol"). JSON fields travel as their text;
/// shared JSON (input, schema) is shared again on arrival.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_request& x) {
  std::int64_t kind = static_cast<std::int64_t>(x.kind);
  std::int64_t timeout = x.timeout_ms.value_or(-1);
  std::int64_t hb_timeout = x.heartbeat_timeout_ms.value_or(-1);
  std::string value, input, needs, beat, schema;
  // Text that is not UTF-8 (a C++ compute may return any bytes) must not
  // throw inside the serializer: it travels with replacement characters.
  auto text = [](const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); };
  auto save = [&]() -> caf::error {
    value = text(x.value);
    input = x.input ? text(*x.input) : "null";
    needs = text(x.needs);
    beat = text(x.last_heartbeat);
    schema = x.output_schema ? text(*x.output_schema) : "null";
    return caf::none;
  };
  auto load = [&]() -> caf::error {
    if (kind < 0 || kind > static_cast<std::int64_t>(task_kind::agent) ||
        is_wait(static_cast<task_kind>(kind)))
      return caf::make_error(caf::sec::invalid_argument, "bad task kind in a task request");
    x.kind = static_cast<task_kind>(kind);
    x.timeout_ms = timeout >= 0 ? std::optional<std::int64_t>{timeout} : std::nullopt;
    x.heartbeat_timeout_ms =
        hb_timeout >= 0 ? std::optional<std::int64_t>{hb_timeout} : std::nullopt;
    json in, sc;
    for (auto [text, out] : {std::pair{&value, &x.value}, std::pair{&input, &in},
                             std::pair{&needs, &x.needs}, std::pair{&beat, &x.last_heartbeat},
                             std::pair{&schema, &sc}})
      if (auto err = json_from_wire(*text, *out)) return err;
    x.input = in.is_null() ? nullptr : std::make_shared<const json>(std::move(in));
    x.output_schema = sc.is_null() ? nullptr : std::make_shared<const json>(std::move(sc));
    return caf::none;
  };
  return f(caf::meta::type_name("task_request"), caf::meta::save_callback(save), x.run_id, x.key,
           x.attempt, kind, x.compute_name, x.argv, x.env, x.cwd, x.max_output_bytes, timeout,
           hb_timeout, value, input, needs, beat, schema, x.prompt, x.agent.id, x.agent.command,
           x.agent.model, x.agent.env, x.worktree_path, x.worktree_branch, x.worktree_base,
           caf::meta::load_callback(load));
}

} // namespace smithers::executors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::write_batch_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::task_outcome_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::heartbeat_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::run_snapshot_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::store_job_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(smithers::actors::inbox_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<smithers::executors::task_job>)
