#include "actors/run_supervisor.hpp"

#include "actors/dispatcher.hpp"
#include "actors/heartbeat_watchdog.hpp"
#include "actors/protocol.hpp"
#include "actors/task_actor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace smithers::actors {

namespace {

struct supervisor_state {
  // What the actors need of the run's context; its run_config part moved
  // into the core.
  std::shared_ptr<run_context> ctx;
  std::string owner_id; // for the watchdog's liveness writes
  std::unique_ptr<core::run_core> core;
  std::shared_ptr<dispatcher> dispatch;
  caf::actor watchdog;
  // The actors running attempts, both ways.
  struct running_attempt {
    std::int64_t attempt = 0;
    caf::actor actor; // none: a pool attempt (actors/task_actor.hpp)
    // A pool attempt's: its stop flag, the stop asked of it, its timeout.
    std::shared_ptr<std::atomic<bool>> cancel;
    std::optional<error> stop_reason;
    std::int64_t timeout_ms = 0;
    bool tracked = true; // by the watchdog
    // An attempt that waits for a worker's slot: its heartbeat timeout,
    // armed once it is assigned.
    std::int64_t hb_timeout_later = 0;
  };
  std::unordered_map<node_key, running_attempt, node_key_hash> running;
  std::unordered_map<caf::actor_id, attempt_key> by_actor;
  std::shared_ptr<result_outbox> outbox; // of its pool attempts, made at the first
  bool finished = false;
  static inline const char* name = "smithers.run_supervisor";
};

using sup_actor = caf::stateful_actor<supervisor_state>;

void end_attempts(sup_actor* self) {
  for (auto& [k, ra] : self->state.running)
    if (ra.actor)
      self->send_exit(ra.actor, caf::exit_reason::user_shutdown);
    else
      ra.cancel->store(true);
}

// The running pool attempt `a`, or null (ended, or a task actor's).
supervisor_state::running_attempt* pool_attempt(sup_actor* self, const attempt_key& a) {
  auto it = self->state.running.find(a.node);
  if (it == self->state.running.end() || it->second.attempt != a.attempt || it->second.actor)
    return nullptr;
  return &it->second;
}

void finish(sup_actor* self, run_result result) {
  auto& st = self->state;
  st.finished = true;
  // A normal exit does not end linked actors in CAF: end the watchdog here.
  if (st.watchdog) self->send_exit(st.watchdog, caf::exit_reason::user_shutdown);
  if (st.ctx->on_end) {
    auto cb = std::move(st.ctx->on_end);
    st.ctx->on_end = nullptr;
    cb(std::move(result));
  }
  self->quit();
}

// Carries out what the core decided, in order: ended attempts are
// forgotten before stops and launches, batches go out before the attempts
// they start run.
void apply(sup_actor* self) {
  auto& st = self->state;
  if (st.finished) return;
  core::effects fx = st.core->take_effects();
  for (const auto& a : fx.ended) {
    auto it = st.running.find(a.node);
    if (it == st.running.end() || it->second.attempt != a.attempt) continue;
    if (it->second.actor)
      st.by_actor.erase(it->second.actor.id());
    else
      it->second.cancel->store(true); // a callable still running sees cancelled()
    bool tracked = it->second.tracked;
    st.running.erase(it);
    if (tracked) self->send(st.watchdog, untrack_atom::value, a);
  }
  for (auto& b : fx.batches)
    self->send(st.ctx->persistence, write_atom::value, b.id, std::move(b.commands));
  for (const auto& s : fx.stops) {
    auto it = st.running.find(s.key.node);
    if (it == st.running.end() || it->second.attempt != s.key.attempt) continue;
    auto& ra = it->second;
    if (ra.actor) {
      self->send(ra.actor, cancel_atom::value, s.why.code, s.why.message);
    } else if (!ra.stop_reason) {
      // As a task actor does: flag it, wait for it at most the grace.
      ra.stop_reason = s.why;
      ra.cancel->store(true);
      self->delayed_send(self, stop_grace, grace_atom::value, s.key);
    }
  }
  // Compute jobs go to their pool together once all are made (see
  // thread_pool::submit_short).
  std::vector<std::pair<util::thread_pool*, std::vector<std::function<void()>>>> pool_jobs;
  // Direct compute tasks are called here, once the pool has its jobs: no
  // hand-off to a thread and back (docs/architecture.md, "Compute attempts
  // run without a task actor"). Their outcomes come through the outbox as
  // a pool job's do, so a timeout or a cancel that arrived during the call
  // is handled as for a pool job.
  std::vector<std::function<void()>> direct_jobs;
  for (auto& job : fx.launches) {
    attempt_key a{job->request.key, job->request.attempt};
    std::int64_t hb_timeout = job->request.heartbeat_timeout_ms.value_or(0);
    bool direct = job->direct && job->compute; // its function is in this process
    auto* pool = direct ? nullptr : st.dispatch->pool_for(*job);
    if (direct || pool) {
      supervisor_state::running_attempt ra;
      ra.attempt = a.attempt;
      ra.timeout_ms = job->request.timeout_ms.value_or(0);
      if (ra.timeout_ms > 0)
        self->delayed_send(self, std::chrono::milliseconds{ra.timeout_ms}, timeout_atom::value, a);
      // Watched only for a heartbeat timeout: the watchdog writes the
      // heartbeats of an attempt it does not track all the same.
      ra.tracked = hb_timeout > 0;
      if (ra.tracked) self->send(st.watchdog, track_atom::value, a, caf::actor{}, hb_timeout);
      if (!st.outbox)
        st.outbox = std::make_shared<result_outbox>(caf::actor_cast<caf::actor>(self));
      auto* into = &direct_jobs;
      if (!direct) {
        auto it = std::find_if(pool_jobs.begin(), pool_jobs.end(),
                               [pool](const auto& pj) { return pj.first == pool; });
        if (it == pool_jobs.end()) it = pool_jobs.insert(pool_jobs.end(), {pool, {}});
        into = &it->second;
      }
      ra.cancel = add_pool_attempt(std::move(job), st.outbox, caf::actor_cast<caf::actor>(self),
                                   st.watchdog, *into);
      st.running[a.node] = std::move(ra);
      continue;
    }
    bool later = st.dispatch->starts_later(*job);
    caf::actor actor = st.dispatch->dispatch(*self, std::move(job), st.watchdog);
    self->monitor(actor);
    if (st.ctx->on_task_spawned) st.ctx->on_task_spawned(a.node, a.attempt, actor);
    self->send(st.watchdog, track_atom::value, a, actor, later ? 0 : hb_timeout);
    st.by_actor.emplace(actor.id(), a);
    supervisor_state::running_attempt ra;
    ra.attempt = a.attempt;
    ra.actor = std::move(actor);
    ra.hb_timeout_later = later ? hb_timeout : 0;
    st.running[a.node] = std::move(ra);
  }
  // One attempt in flight (a chain): the run waits on nothing else, and
  // its wake-up goes to this worker, whose core has the run's data in
  // cache. Several: CAF spreads the wake-ups over the workers, so the
  // supervisor and the persistence actor overlap on two cores (pinned, a
  // compute fan-out lost ~6 %). task_actor.cpp, pinned_unit.
  if (!pool_jobs.empty() && st.outbox)
    st.outbox->pin(st.running.size() == 1 ? self->context() : nullptr);
  for (auto& [pool, jobs] : pool_jobs)
    pool->submit_short(std::move(jobs));
  for (auto& call : direct_jobs)
    call();
  for (const auto& t : fx.timers)
    self->delayed_send(self, std::chrono::milliseconds{t.delay_ms}, retry_atom::value, t.key);
  // A timer sleeps on a message, however long: no polling.
  for (const auto& t : fx.wakeups)
    self->delayed_send(self, std::chrono::milliseconds{t.delay_ms}, wake_atom::value, t.key);
  if (fx.kill_all) end_attempts(self);
  if (fx.done) {
    finish(self, st.core->take_result());
    return;
  }
  if (fx.tick) self->send(self, tick_atom::value);
}

// Every handler calls into the core, then carries out its effects.
template <class F> void handle(sup_actor* self, F&& f) {
  if (self->state.finished) return;
  f(*self->state.core);
  apply(self);
}

caf::behavior run_supervisor(sup_actor* self, std::shared_ptr<run_context> ctx) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.dispatch = st.ctx->dispatch ? st.ctx->dispatch : make_local_dispatcher(st.ctx->pool);
  st.owner_id = st.ctx->owner_id;
  st.core = std::make_unique<core::run_core>(static_cast<core::run_config&&>(std::move(*st.ctx)));
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    auto it = st.by_actor.find(dm.source.id());
    if (it == st.by_actor.end()) return;
    attempt_key a = it->second;
    st.by_actor.erase(it);
    handle(self, [&](core::run_core& c) {
      c.on_attempt_lost(a, "task actor ended without a result (" + caf::to_string(dm.reason) + ")");
    });
  });
  // A bug must not leave a run hanging: fail it and tell the waiter.
  self->set_exception_handler([=](std::exception_ptr& ep) -> caf::error {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    auto& st = self->state;
    spdlog::error("run {}: supervisor failed: {}", st.core->run_id(), what);
    run_result r;
    r.run_id = st.core->run_id();
    r.status = run_status::failed;
    r.err = error{errc::internal, "run supervisor failed: " + what};
    end_attempts(self);
    if (!st.finished) finish(self, std::move(r));
    return caf::exit_reason::unhandled_exception;
  });
  return {
      [=](start_atom) {
        auto& st = self->state;
        st.watchdog =
            spawn_heartbeat_watchdog(*self, st.core->run_id(), st.owner_id, st.ctx->persistence);
        // Which workers this run can use, and when one is lost.
        if (st.ctx->workers)
          self->send(st.ctx->workers, subscribe_atom::value, caf::actor_cast<caf::actor>(self));
        handle(self, [](core::run_core& c) { c.start(); });
      },
      [=](tick_atom) { handle(self, [](core::run_core& c) { c.tick(); }); },
      [=](result_atom, const attempt_key& a, task_outcome_ptr oc) {
        if (auto* ra = pool_attempt(self, a)) oc = stopped_outcome(std::move(oc), ra->stop_reason);
        handle(self, [&](core::run_core& c) { c.on_result(a, *oc); });
      },
      // Outcomes of pool attempts, all that came: one apply for them all.
      [=](results_atom) {
        auto& st = self->state;
        if (!st.outbox) return;
        auto items = st.outbox->take();
        handle(self, [&](core::run_core& c) {
          for (auto& [a, oc] : items) {
            if (auto* ra = pool_attempt(self, a))
              oc = stopped_outcome(std::move(oc), ra->stop_reason);
            c.on_result(a, *oc);
          }
        });
      },
      // A pool attempt past its timeout, or not stopped within the grace:
      // it fails now, and what it returns later is discarded.
      [=](timeout_atom, const attempt_key& a) {
        auto* ra = pool_attempt(self, a);
        if (!ra) return;
        ra->cancel->store(true);
        auto oc = timeout_outcome(a.node, ra->timeout_ms);
        handle(self, [&](core::run_core& c) { c.on_result(a, *oc); });
      },
      [=](grace_atom, const attempt_key& a) {
        auto* ra = pool_attempt(self, a);
        if (!ra || !ra->stop_reason) return;
        auto oc = unstopped_outcome(*ra->stop_reason);
        handle(self, [&](core::run_core& c) { c.on_result(a, *oc); });
      },
      [=](heartbeat_atom, const heartbeat_ptr& hb) {
        handle(self, [&](core::run_core& c) {
          c.on_heartbeat(hb->key, hb->at_ms, hb->data, hb->has_data);
        });
      },
      [=](retry_atom, const node_key& k) {
        handle(self, [&](core::run_core& c) { c.on_retry_due(k); });
      },
      [=](wake_atom, const node_key& k) {
        handle(self, [&](core::run_core& c) { c.on_wait_due(k); });
      },
      [=](inbox_atom, const inbox_ptr& e) {
        handle(self, [&](core::run_core& c) { c.on_inbox(*e); });
      },
      [=](process_atom, const attempt_key& a, std::int64_t pid, const std::string& host,
          std::int64_t pid_start) {
        handle(self, [&](core::run_core& c) { c.on_process(a, pid, host, pid_start); });
      },
      [=](output_atom, const attempt_key& a, const std::string& stream, const std::string& text) {
        handle(self, [&](core::run_core& c) { c.on_output(a, stream, text); });
      },
      [=](assigned_atom, const attempt_key& a, const std::string& worker) {
        auto& st = self->state;
        // On its way to a worker: the heartbeat timeout counts from now (the
        // watchdog hears it after the track at launch: same sender).
        if (auto it = st.running.find(a.node); it != st.running.end() &&
                                               it->second.attempt == a.attempt &&
                                               it->second.hb_timeout_later > 0) {
          self->send(st.watchdog, track_atom::value, a, it->second.actor,
                     std::exchange(it->second.hb_timeout_later, 0));
        }
        handle(self, [&](core::run_core& c) { c.on_worker(a, worker); });
      },
      [=](worker_up_atom, const std::string& worker, const std::string& details) {
        handle(self, [&](core::run_core& c) {
          c.on_worker_event(true, worker, json::parse(details, nullptr, false));
        });
      },
      [=](worker_down_atom, const std::string& worker, const std::string& details) {
        handle(self, [&](core::run_core& c) {
          c.on_worker_event(false, worker, json::parse(details, nullptr, false));
        });
      },
      [=](hb_timeout_atom, const attempt_key& a, std::int64_t last_ms) {
        handle(self, [&](core::run_core& c) { c.on_heartbeat_timeout(a, last_ms); });
      },
      [=](cancel_atom, const std::string& reason) {
        handle(self, [&](core::run_core& c) {
          c.stop(core::stop_mode::cancel, error{errc::run_cancelled, reason});
        });
      },
      [=](interrupt_atom, const std::string& reason) {
        handle(self, [&](core::run_core& c) {
          c.stop(core::stop_mode::interrupt, error{errc::task_aborted, reason});
        });
      },
      [=](idle_atom, const std::string& reason) {
        handle(self, [&](core::run_core& c) { c.stop_if_waiting(reason); });
      },
      [=](continue_atom) {
        handle(self, [&](core::run_core& c) { c.stop(core::stop_mode::continue_as_new, error{}); });
      },
      [=](handover_atom, const std::string& requester) {
        handle(self, [&](core::run_core& c) {
          c.stop(core::stop_mode::handover,
                 error{errc::task_aborted,
                       "handed over to another process (a forced resume)",
                       {{"handover_to", requester}}});
        });
      },
      [=](committed_atom, std::uint64_t id) {
        handle(self, [&](core::run_core& c) { c.on_committed(id); });
      },
      [=](failed_atom, std::uint64_t id, const std::string&, const std::string& msg) {
        spdlog::error("run {}: {}", self->state.core->run_id(), msg);
        handle(self, [&](core::run_core& c) { c.on_commit_failed(id, msg); });
      },
  };
}

} // namespace

caf::actor spawn_run_supervisor(caf::actor_system& sys, std::shared_ptr<run_context> ctx) {
  auto a = sys.spawn(run_supervisor, std::move(ctx));
  caf::anon_send(a, start_atom::value);
  return a;
}

} // namespace smithers::actors
