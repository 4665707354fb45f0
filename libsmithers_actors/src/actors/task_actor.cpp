#include "actors/task_actor.hpp"

#include "actors/dispatcher.hpp"
#include "actors/protocol.hpp"
#include "executors/command.hpp"
#include "executors/executor.hpp"
#include "util/clock.hpp"
#include "util/owner.hpp"

#include <caf/execution_unit.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/policy/work_stealing.hpp>
#include <caf/scheduler/worker.hpp>

namespace smithers::actors {

namespace {

constexpr std::int64_t plain_beat_interval_ms = 50;

struct task_state {
  bool reported = false;
  std::optional<error> stop_reason; // set once asked to stop
  static inline const char* name = "smithers.task";
};

using task_actor_t = caf::stateful_actor<task_state>;

void report(task_actor_t* self, const caf::actor& supervisor, const task_job& job,
            task_outcome_ptr oc) {
  if (self->state.reported) return;
  self->state.reported = true;
  self->send(supervisor, result_atom::value, attempt_key{job.request.key, job.request.attempt},
             std::move(oc));
  self->quit();
}

// Sends as `me` (a task actor: a worker node relays by sender), or
// without a sender (a pool attempt has no actor).
template <class... Ts> void send_from(const caf::actor& me, const caf::actor& dest, Ts&&... xs) {
  if (me)
    caf::send_as(me, dest, std::forward<Ts>(xs)...);
  else
    caf::anon_send(dest, std::forward<Ts>(xs)...);
}

// Runs the attempt's job on the calling (pool) thread and returns its
// outcome; heartbeats go to `watchdog`, the process group and streamed
// output to `supervisor`, all sent as `me`.
task_outcome_ptr run_job(const std::shared_ptr<task_job>& job,
                         const std::shared_ptr<std::atomic<bool>>& cancel, const caf::actor& me,
                         const caf::actor& supervisor, const caf::actor& watchdog) {
  executors::last_heartbeat last;
  std::int64_t last_sent_ms = 0;
  auto beat = [&](json data, bool has_data) {
    std::int64_t now = util::now_ms();
    last.at_ms = now;
    if (has_data) {
      last.data = data;
      last.has_data = true;
    } else if (now - last_sent_ms < plain_beat_interval_ms) {
      return; // liveness only: no need to tell anyone this often
    }
    last_sent_ms = now;
    auto hb = std::make_shared<heartbeat_msg>();
    hb->key = attempt_key{job->request.key, job->request.attempt};
    hb->data = std::move(data);
    hb->has_data = has_data;
    hb->at_ms = now;
    // As the task actor: a worker node relays by sender (worker_node.cpp).
    send_from(me, watchdog, heartbeat_atom::value, std::move(hb));
  };
  // The supervisor records the process group — on the host where it runs,
  // told from here — so a resume after a crash of this process can end it.
  auto started = [&](std::int64_t pid) {
    send_from(me, supervisor, process_atom::value,
              attempt_key{job->request.key, job->request.attempt}, pid, util::host_name(),
              util::process_start_time(pid).value_or(0));
  };
  // What the attempt prints becomes NodeOutput events, in order, up to a
  // bound; the rest is only counted (the attempt's meta says how much).
  const attempt_key key{job->request.key, job->request.attempt};
  std::size_t streamed = 0, dropped = 0;
  auto output = [&](const std::string& line, bool is_stderr) {
    const std::size_t room = limits::max_streamed_output_bytes - streamed;
    if (room == 0) {
      dropped += line.size() + 1;
      return;
    }
    std::string text = executors::valid_utf8(line);
    text += '\n';
    if (text.size() > room) {
      std::size_t cut = room;
      while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80)
        --cut; // never inside a UTF-8 sequence
      dropped += text.size() - cut;
      text.resize(cut);
      streamed = limits::max_streamed_output_bytes; // the bound is reached
    } else {
      streamed += text.size();
    }
    if (!text.empty())
      send_from(me, supervisor, output_atom::value, key,
                std::string{is_stderr ? "stderr" : "stdout"}, std::move(text));
  };
  auto agent_retry = [&](json fields) {
    send_from(me, supervisor, output_atom::value, key, std::string{"agent"},
              fields.dump(-1, ' ', false, json::error_handler_t::replace));
  };
  executors::attempt_io io;
  io.cancel = cancel;
  io.heartbeat = beat;
  io.process_started = started;
  io.output = output;
  io.agent_retry = agent_retry;
  auto oc = std::make_shared<task_outcome>(executors::execute(*job, io));
  oc->beat = std::move(last);
  if (dropped > 0) {
    if (!oc->meta.is_object()) oc->meta = json::object();
    oc->meta["output_dropped_bytes"] = dropped;
  }
  return oc;
}

caf::behavior task_actor(task_actor_t* self, std::shared_ptr<task_job> job, util::thread_pool* pool,
                         caf::actor supervisor, caf::actor watchdog) {
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  // Whatever ends this actor (a result, a timeout, a cancel, the supervisor
  // or the watchdog ending it) tells the running job to stop.
  self->attach_functor([cancel] { cancel->store(true); });
  auto me = caf::actor_cast<caf::actor>(self);
  pool->submit([job, cancel, me, watchdog, supervisor] {
    caf::anon_send(me, done_atom::value, run_job(job, cancel, me, supervisor, watchdog));
  });
  const auto& req = job->request;
  if (req.kind == task_kind::compute && req.timeout_ms)
    self->delayed_send(self, std::chrono::milliseconds{*req.timeout_ms}, timeout_atom::value);
  return {
      [=](done_atom, task_outcome_ptr oc) {
        report(self, supervisor, *job, stopped_outcome(std::move(oc), self->state.stop_reason));
      },
      [=](timeout_atom) {
        cancel->store(true);
        report(self, supervisor, *job, timeout_outcome(job->request.key, *job->request.timeout_ms));
      },
      [=](cancel_atom, const std::string& code, const std::string& reason) {
        if (self->state.stop_reason) return;
        self->state.stop_reason = error{code, reason};
        cancel->store(true);
        self->delayed_send(self, stop_grace, grace_atom::value);
      },
      [=](grace_atom) {
        report(self, supervisor, *job, unstopped_outcome(*self->state.stop_reason));
      },
  };
}

} // namespace

task_outcome_ptr timeout_outcome(const node_key& key, std::int64_t timeout_ms) {
  auto oc = std::make_shared<task_outcome>();
  oc->err =
      error{errc::task_timeout,
            "compute task \"" + key.id + "\" timed out after " + std::to_string(timeout_ms) + " ms",
            {{"timeout_ms", timeout_ms}}};
  return oc;
}

task_outcome_ptr stopped_outcome(task_outcome_ptr oc, const std::optional<error>& stop_reason) {
  if (!stop_reason || oc->output) return oc;
  // Stopped on request: the failure is the stop, whatever the job said.
  oc->err = stop_reason;
  return oc;
}

task_outcome_ptr unstopped_outcome(const error& stop_reason) {
  auto oc = std::make_shared<task_outcome>();
  oc->err = stop_reason;
  oc->err->message += " (the task did not stop within " + std::to_string(stop_grace.count()) +
                      " ms; its result is discarded)";
  return oc;
}

namespace {

using stealing_worker = caf::scheduler::worker<caf::policy::work_stealing>;

// The execution unit an outcome is sent "from": if the message unblocks
// the supervisor, the supervisor is scheduled on the pinned worker (CAF's
// external_enqueue, which wakes it if it sleeps; an idle worker steals it
// if that one is busy). Without it, a message from a thread outside CAF
// goes to the workers in turn (work_stealing::central_enqueue): on two
// cores a chain's supervisor then changed worker, and core, at every
// other step, and a 100,000-step chain migrated threads ~32,000 times
// instead of ~1,000 (docs/benchmarks.md, item 14 of "Real tasks").
class pinned_unit final : public caf::execution_unit {
public:
  explicit pinned_unit(stealing_worker* w) : caf::execution_unit(&w->system()), w_(w) {}
  void exec_later(caf::resumable* job) override { w_->external_enqueue(job); }

private:
  stealing_worker* w_;
};

} // namespace

// Not a work-stealing worker (CAF's work_sharing, a test coordinator, a
// detached actor's thread), or nullptr: CAF picks the worker.
void result_outbox::pin(caf::execution_unit* where) {
  pinned_.store(dynamic_cast<stealing_worker*>(where), std::memory_order_relaxed);
}

void result_outbox::put(attempt_key key, task_outcome_ptr oc) {
  bool first;
  {
    std::lock_guard<std::mutex> lk(mtx_);
    first = items_.empty();
    items_.emplace_back(std::move(key), std::move(oc));
  }
  if (!first) return;
  auto* w = static_cast<stealing_worker*>(pinned_.load(std::memory_order_relaxed));
  if (!w) {
    caf::anon_send(supervisor_, results_atom::value);
    return;
  }
  pinned_unit unit{w};
  caf::actor_cast<caf::abstract_actor*>(supervisor_)
      ->enqueue(caf::make_mailbox_element(nullptr, caf::make_message_id(), {}, results_atom::value),
                &unit);
}

std::vector<result_outbox::item> result_outbox::take() {
  std::lock_guard<std::mutex> lk(mtx_);
  return std::exchange(items_, {});
}

std::shared_ptr<std::atomic<bool>> add_pool_attempt(std::shared_ptr<task_job> job,
                                                    std::shared_ptr<result_outbox> outbox,
                                                    caf::actor supervisor, caf::actor watchdog,
                                                    std::vector<std::function<void()>>& jobs) {
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  jobs.emplace_back([job = std::move(job), cancel, outbox = std::move(outbox),
                     supervisor = std::move(supervisor), watchdog = std::move(watchdog)] {
    auto oc = run_job(job, cancel, caf::actor{}, supervisor, watchdog);
    outbox->put(attempt_key{job->request.key, job->request.attempt}, std::move(oc));
  });
  return cancel;
}

caf::actor spawn_task_actor(caf::local_actor& parent, std::shared_ptr<task_job> job,
                            util::thread_pool* pool, caf::actor supervisor, caf::actor watchdog) {
  return parent.spawn(task_actor, std::move(job), pool, std::move(supervisor), std::move(watchdog));
}

namespace {

class local_dispatcher final : public dispatcher {
public:
  explicit local_dispatcher(util::thread_pool* pool) : pool_(pool) {}
  caf::actor dispatch(caf::local_actor& supervisor, std::shared_ptr<task_job> job,
                      const caf::actor& watchdog) override {
    return spawn_task_actor(supervisor, std::move(job), pool_,
                            caf::actor_cast<caf::actor>(&supervisor), watchdog);
  }
  util::thread_pool* pool_for(const task_job& job) const override {
    return job.request.kind == task_kind::compute ? pool_ : nullptr;
  }

private:
  util::thread_pool* pool_;
};

} // namespace

std::shared_ptr<dispatcher> make_local_dispatcher(util::thread_pool* pool) {
  return std::make_shared<local_dispatcher>(pool);
}

} // namespace smithers::actors
