#include "actors/worker_pool.hpp"

#include "actors/protocol.hpp"
#include "actors/task_actor.hpp"
#include "actors/wire.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <set>
#include <unordered_map>

namespace smithers::actors {

namespace {

using std::chrono::milliseconds;

constexpr milliseconds first_backoff{250};
// A worker that comes back is found again within this long.
constexpr milliseconds max_backoff{2000};

task_outcome_ptr failure(const std::string& code, const std::string& message,
                         json details = json::object()) {
  auto oc = std::make_shared<task_outcome>();
  oc->err = error{code, message, std::move(details)};
  return oc;
}

// A worker's result, checked like any input from outside.
task_outcome_ptr outcome_from(const remote_result& r, const std::string& worker) {
  auto oc = std::make_shared<task_outcome>();
  if (r.ok) {
    json out;
    if (auto err = executors::json_from_wire(r.output, out))
      return failure(errc::internal, "worker " + worker + " sent an output that is not JSON");
    oc->output = std::move(out);
  } else {
    json details;
    if (executors::json_from_wire(r.details, details) || !details.is_object())
      details = json::object();
    oc->err = error{r.code.empty() ? std::string{errc::task_failed} : r.code, r.message,
                    std::move(details)};
  }
  if (r.beat_at_ms > 0) {
    oc->beat.at_ms = r.beat_at_ms;
    oc->beat.has_data = r.beat_has_data;
    if (r.beat_has_data && executors::json_from_wire(r.beat_data, oc->beat.data)) {
      oc->beat.has_data = false;
      oc->beat.data = nullptr;
    }
  }
  json meta;
  if (!executors::json_from_wire(r.meta, meta) && meta.is_object()) oc->meta = std::move(meta);
  return oc;
}

// -- the pool -------------------------------------------------------------------

struct worker_conn {
  endpoint ep;
  std::string name;  // HOST:PORT, as configured: what attempts record
  caf::actor handle; // set while connected
  worker_info info;
  std::set<std::string> computes;
  std::int64_t in_flight = 0;
  bool known = false; // has joined once: `computes` is what it offered last
  bool connecting = false;
  milliseconds backoff = first_backoff;
  remote_work out; // to send at the next flush
  std::string last_error;
};

struct ticket_entry {
  caf::actor proxy;
  caf::actor watchdog;
  std::shared_ptr<task_job> job;
  int worker = -1; // -1: waiting for a slot
};

struct pool_state {
  worker_pool_config cfg;
  std::vector<worker_conn> workers;
  std::unordered_map<std::uint64_t, ticket_entry> tickets;
  std::deque<std::uint64_t> queue; // tickets waiting for a slot, oldest first
  // Tickets only a worker that is away could run: queued again when one joins.
  std::vector<std::uint64_t> parked;
  std::unordered_map<caf::actor_id, caf::actor> subscribers;
  bool flush_queued = false;
  static inline const char* name = "smithers.worker_pool";
};

using pool_actor = caf::stateful_actor<pool_state>;

bool connected(const worker_conn& w) {
  return static_cast<bool>(w.handle);
}

std::size_t connected_count(const pool_state& st) {
  return static_cast<std::size_t>(std::count_if(st.workers.begin(), st.workers.end(), connected));
}

// Whether `w` runs the job, as far as is known (a worker that has never
// joined might run anything).
bool can_run(const worker_conn& w, const task_job& job) {
  if (job.request.kind == task_kind::command || job.request.kind == task_kind::agent || !w.known)
    return true;
  return job.request.kind == task_kind::compute && w.computes.count(job.request.compute_name);
}

void schedule_flush(pool_actor* self) {
  if (self->state.flush_queued) return;
  self->state.flush_queued = true;
  // Behind whatever is queued now: every submit and cancel in the mailbox
  // goes out in one message per worker.
  self->send(self, rflush_atom::value);
}

std::string text_of(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json worker_details(const worker_conn& w) {
  return json{{"worker", w.name},
              {"host", w.info.host},
              {"pid", w.info.pid},
              {"slots", w.info.slots},
              {"computes", w.info.computes}};
}

void tell_subscribers(pool_actor* self, bool up, const std::string& worker, const json& details) {
  std::string text = text_of(details);
  for (const auto& [id, sup] : self->state.subscribers) {
    if (up)
      self->send(sup, worker_up_atom::value, worker, text);
    else
      self->send(sup, worker_down_atom::value, worker, text);
  }
}

void end_ticket(pool_actor* self, std::uint64_t ticket, task_outcome_ptr oc) {
  auto& st = self->state;
  auto it = st.tickets.find(ticket);
  if (it == st.tickets.end()) return;
  const auto& req = it->second.job->request;
  self->send(it->second.proxy, result_atom::value, attempt_key{req.key, req.attempt},
             std::move(oc));
  st.tickets.erase(it);
}

// Places waiting attempts, oldest first, while there are free slots.
void place(pool_actor* self) {
  auto& st = self->state;
  while (!st.queue.empty()) {
    std::uint64_t t = st.queue.front();
    auto it = st.tickets.find(t);
    if (it == st.tickets.end()) {
      st.queue.pop_front();
      continue;
    }
    auto& e = it->second;
    int best = -1;
    bool anyone = false; // a connected worker could run it, once it has a slot
    bool away = false;   // a worker that is away might
    for (std::size_t i = 0; i < st.workers.size(); ++i) {
      const auto& w = st.workers[i];
      if (!can_run(w, *e.job)) continue;
      if (!connected(w)) {
        away = true;
        continue;
      }
      anyone = true;
      if (w.in_flight >= w.info.slots) continue;
      if (best < 0 || w.in_flight * st.workers[static_cast<std::size_t>(best)].info.slots <
                          st.workers[static_cast<std::size_t>(best)].in_flight * w.info.slots)
        best = static_cast<int>(i);
    }
    if (best >= 0) {
      st.queue.pop_front();
      auto& w = st.workers[static_cast<std::size_t>(best)];
      e.worker = best;
      ++w.in_flight;
      w.out.tasks.push_back(remote_task{t, e.job->request});
      self->send(e.proxy, assigned_atom::value, w.name);
      schedule_flush(self);
      continue;
    }
    if (anyone) return; // every worker that can run it is busy: wait for a slot
    if (st.cfg.local_fallback && connected_count(st) == 0) {
      st.queue.pop_front();
      self->send(e.proxy, run_local_atom::value);
      st.tickets.erase(it);
      continue;
    }
    if (connected_count(st) == 0) return; // none reachable: wait (reconnecting)
    st.queue.pop_front();
    if (away) { // only a worker that is away runs it: it waits for one to join
      st.parked.push_back(t);
      continue;
    }
    // Every worker has told what it runs, and none runs this function.
    if (st.cfg.local_fallback && e.job->compute) {
      self->send(e.proxy, run_local_atom::value);
      st.tickets.erase(it);
      continue;
    }
    end_ticket(
        self, t,
        failure(errc::worker_unavailable,
                "no connected worker runs compute function \"" + e.job->request.compute_name + "\"",
                {{"compute", e.job->request.compute_name}}));
  }
}

void connect(pool_actor* self, std::size_t index);

void lose(pool_actor* self, std::size_t index, const std::string& why) {
  auto& st = self->state;
  auto& w = st.workers[index];
  if (!connected(w)) return;
  spdlog::warn("worker {} lost: {}", w.name, why);
  json details = worker_details(w);
  details["reason"] = why;
  std::vector<std::uint64_t> lost;
  for (const auto& [t, e] : st.tickets)
    if (e.worker == static_cast<int>(index)) lost.push_back(t);
  details["attempts_lost"] = lost.size();
  w.handle = nullptr;
  w.in_flight = 0;
  w.out = {};
  tell_subscribers(self, false, w.name, details);
  // Before the attempts' failures: a run's log says why they failed.
  for (auto t : lost)
    end_ticket(
        self, t,
        failure(errc::worker_lost, "worker " + w.name + " was lost: " + why, {{"worker", w.name}}));
  self->delayed_send(self, w.backoff, reconnect_atom::value, static_cast<std::uint64_t>(index));
  place(self); // with local fallback, what waits may run here now
}

void retry_later(pool_actor* self, std::size_t index, const std::string& why);

void joined(pool_actor* self, std::size_t index, caf::actor handle, worker_info info) {
  auto& st = self->state;
  auto& w = st.workers[index];
  w.connecting = false;
  if (info.slots < 1 || info.slots > limits::max_worker_slots) {
    retry_later(self, index, "it offered " + std::to_string(info.slots) + " slots");
    return;
  }
  w.handle = std::move(handle);
  w.info = std::move(info);
  w.known = true;
  w.computes = std::set<std::string>(w.info.computes.begin(), w.info.computes.end());
  // What waited for a worker that was away may run now.
  st.queue.insert(st.queue.begin(), st.parked.begin(), st.parked.end());
  st.parked.clear();
  w.backoff = first_backoff;
  w.last_error.clear();
  self->monitor(w.handle);
  spdlog::info("worker {} joined ({} slots)", w.name, w.info.slots);
  tell_subscribers(self, true, w.name, worker_details(w));
  place(self);
}

void retry_later(pool_actor* self, std::size_t index, const std::string& why) {
  auto& w = self->state.workers[index];
  w.connecting = false;
  if (why != w.last_error) spdlog::warn("cannot reach worker {}: {}", w.name, why);
  w.last_error = why;
  self->delayed_send(self, w.backoff, reconnect_atom::value, static_cast<std::uint64_t>(index));
  w.backoff = std::min(max_backoff, w.backoff * 2);
}

void connect(pool_actor* self, std::size_t index) {
  auto& st = self->state;
  auto& w = st.workers[index];
  if (connected(w) || w.connecting) return;
  w.connecting = true;
  auto mm = network_handle(self->system(), st.cfg.tls);
  auto timeout = st.cfg.connect_timeout;
  // Both steps time out: a peer speaking something else (plaintext against
  // TLS, say) may never answer.
  self->request(mm, timeout, caf::connect_atom::value, w.ep.host, w.ep.port)
      .then(
          [=](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
            if (!ptr) {
              retry_later(self, index, "nothing is published on that port");
              return;
            }
            auto handle = caf::actor_cast<caf::actor>(std::move(ptr));
            self->request(handle, timeout, hello_atom::value, self->state.cfg.owner_id,
                          caf::actor_cast<caf::actor>(self))
                .then([=](worker_info& info) { joined(self, index, handle, std::move(info)); },
                      [=](caf::error& err) {
                        retry_later(self, index,
                                    "no answer to hello: " + self->system().render(err));
                      });
          },
          [=](caf::error& err) { retry_later(self, index, self->system().render(err)); });
}

caf::behavior worker_pool(pool_actor* self, worker_pool_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  for (const auto& ep : st.cfg.workers) {
    worker_conn w;
    w.ep = ep;
    w.name = ep.to_string();
    st.workers.push_back(std::move(w));
  }
  for (std::size_t i = 0; i < st.workers.size(); ++i)
    connect(self, i);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.subscribers.erase(dm.source.id())) return;
    for (std::size_t i = 0; i < st.workers.size(); ++i)
      if (connected(st.workers[i]) && st.workers[i].handle.address() == dm.source)
        lose(self, i, self->system().render(dm.reason));
  });
  return {
      [=](submit_atom, std::uint64_t ticket, const std::shared_ptr<task_job>& job,
          const caf::actor& watchdog) {
        auto& st = self->state;
        auto proxy = caf::actor_cast<caf::actor>(self->current_sender());
        st.tickets[ticket] = ticket_entry{proxy, watchdog, job, -1};
        st.queue.push_back(ticket);
        place(self);
      },
      [=](cancel_atom, std::uint64_t ticket, const std::string& code, const std::string& message) {
        auto& st = self->state;
        auto it = st.tickets.find(ticket);
        if (it == st.tickets.end()) return;
        if (it->second.worker < 0) { // never sent: it ends here
          end_ticket(self, ticket, failure(code, message));
          return;
        }
        auto& w = st.workers[static_cast<std::size_t>(it->second.worker)];
        w.out.cancels.push_back(remote_cancel{ticket, code, message});
        schedule_flush(self);
      },
      [=](abandon_atom, std::uint64_t ticket) {
        // Its proxy ended first (a heartbeat timeout, the run's end): stop
        // the remote attempt, forget its result.
        auto& st = self->state;
        auto it = st.tickets.find(ticket);
        if (it == st.tickets.end()) return;
        if (it->second.worker < 0) {
          st.tickets.erase(it);
          return;
        }
        // Its slot stays taken until the worker reports the attempt ended.
        auto& w = st.workers[static_cast<std::size_t>(it->second.worker)];
        w.out.cancels.push_back(
            remote_cancel{ticket, errc::task_aborted, "the attempt was abandoned by its owner"});
        schedule_flush(self);
      },
      [=](subscribe_atom, const caf::actor& sup) {
        auto& st = self->state;
        st.subscribers.emplace(sup.id(), sup);
        self->monitor(sup);
        for (const auto& w : st.workers)
          if (connected(w))
            self->send(sup, worker_up_atom::value, w.name, text_of(worker_details(w)));
      },
      [=](rreport_atom, const remote_report& rep) {
        auto& st = self->state;
        auto from = self->current_sender();
        int index = -1;
        for (std::size_t i = 0; i < st.workers.size(); ++i)
          if (connected(st.workers[i]) &&
              st.workers[i].handle.address() == caf::actor_cast<caf::actor_addr>(from))
            index = static_cast<int>(i);
        if (index < 0) return; // a worker already given up on
        auto& w = st.workers[static_cast<std::size_t>(index)];
        for (const auto& p : rep.procs) {
          auto it = st.tickets.find(p.ticket);
          if (it == st.tickets.end() || it->second.worker != index) continue;
          const auto& req = it->second.job->request;
          self->send(it->second.proxy, process_atom::value, attempt_key{req.key, req.attempt},
                     p.pid, p.host, p.pid_start);
        }
        for (const auto& b : rep.beats) {
          auto it = st.tickets.find(b.ticket);
          if (it == st.tickets.end() || it->second.worker != index) continue;
          auto hb = std::make_shared<heartbeat_msg>();
          const auto& req = it->second.job->request;
          hb->key = attempt_key{req.key, req.attempt};
          hb->at_ms = b.at_ms;
          hb->has_data = b.has_data && !executors::json_from_wire(b.data, hb->data);
          self->send(it->second.watchdog, heartbeat_atom::value, std::move(hb));
        }
        // Before the results: what an attempt printed precedes its end.
        for (const auto& o : rep.outputs) {
          auto it = st.tickets.find(o.ticket);
          if (it == st.tickets.end() || it->second.worker != index) continue;
          if (o.stream != "stdout" && o.stream != "stderr" && o.stream != "agent") continue;
          if (o.text.size() > limits::max_streamed_output_bytes)
            continue; // not from a worker of ours
          const auto& req = it->second.job->request;
          self->send(it->second.proxy, output_atom::value, attempt_key{req.key, req.attempt},
                     o.stream, o.text);
        }
        for (const auto& r : rep.done) {
          auto it = st.tickets.find(r.ticket);
          if (it == st.tickets.end() || it->second.worker != index) continue;
          --w.in_flight;
          end_ticket(self, r.ticket, outcome_from(r, w.name));
        }
        place(self);
      },
      [=](rflush_atom) {
        auto& st = self->state;
        st.flush_queued = false;
        for (auto& w : st.workers)
          if (connected(w) && (!w.out.tasks.empty() || !w.out.cancels.empty()))
            self->send(w.handle, rwork_atom::value, std::exchange(w.out, {}));
      },
      [=](reconnect_atom, std::uint64_t index) {
        if (index < self->state.workers.size()) connect(self, static_cast<std::size_t>(index));
      },
  };
}

// -- one attempt on a worker ----------------------------------------------------

struct remote_attempt_state {
  std::shared_ptr<bool> reported = std::make_shared<bool>(false);
  caf::actor local;          // the task actor, when it runs here after all
  std::optional<error> stop; // asked to stop (before it may run here)
  static inline const char* name = "smithers.remote_attempt";
};

using remote_attempt_actor = caf::stateful_actor<remote_attempt_state>;

caf::behavior remote_attempt(remote_attempt_actor* self, std::shared_ptr<task_job> job,
                             caf::actor pool, util::thread_pool* local_pool, caf::actor supervisor,
                             caf::actor watchdog) {
  std::uint64_t ticket = self->id();
  auto reported = self->state.reported;
  // Ended before its result (a heartbeat timeout, the run stopping): the
  // pool stops the remote attempt.
  self->attach_functor([pool, ticket, reported] {
    if (!*reported) caf::anon_send(pool, abandon_atom::value, ticket);
  });
  self->send(pool, submit_atom::value, ticket, job, watchdog);
  return {
      [=](assigned_atom, const std::string& worker) {
        const auto& req = job->request;
        self->send(supervisor, assigned_atom::value, attempt_key{req.key, req.attempt}, worker);
      },
      [=](process_atom, const attempt_key& a, std::int64_t pid, const std::string& host,
          std::int64_t pid_start) {
        self->send(supervisor, process_atom::value, a, pid, host, pid_start);
      },
      [=](output_atom, const attempt_key& a, const std::string& stream, const std::string& text) {
        self->send(supervisor, output_atom::value, a, stream, text);
      },
      [=](result_atom, const attempt_key& a, const task_outcome_ptr& oc) {
        *self->state.reported = true;
        self->send(supervisor, result_atom::value, a, oc);
        self->quit();
      },
      [=](cancel_atom, const std::string& code, const std::string& message) {
        if (!self->state.stop) self->state.stop = error{code, message};
        if (self->state.local)
          self->send(self->state.local, cancel_atom::value, code, message);
        else
          self->send(pool, cancel_atom::value, ticket, code, message);
      },
      [=](run_local_atom) {
        const auto& req = job->request;
        auto refuse = [&](task_outcome_ptr oc) {
          *self->state.reported = true;
          self->send(supervisor, result_atom::value, attempt_key{req.key, req.attempt},
                     std::move(oc));
          self->quit();
        };
        // Stopped while the pool gave it back: it never runs.
        if (self->state.stop)
          return refuse(failure(self->state.stop->code, self->state.stop->message));
        if (req.kind == task_kind::compute && !job->compute)
          return refuse(failure(errc::worker_unavailable,
                                "no worker runs compute function \"" + req.compute_name +
                                    "\", and this process has none by that name",
                                {{"compute", req.compute_name}}));
        // Starts now, here: its heartbeat timeout counts from now ("" = no
        // worker). Its result and process come here and go on to the
        // supervisor.
        self->send(supervisor, assigned_atom::value, attempt_key{req.key, req.attempt},
                   std::string{});
        self->state.local =
            spawn_task_actor(*self, job, local_pool, caf::actor_cast<caf::actor>(self), watchdog);
        self->link_to(self->state.local);
      },
  };
}

class remote_dispatcher final : public dispatcher {
public:
  remote_dispatcher(caf::actor pool, util::thread_pool* local)
      : pool_(std::move(pool)), local_(local) {}

  caf::actor dispatch(caf::local_actor& supervisor, std::shared_ptr<task_job> job,
                      const caf::actor& watchdog) override {
    auto sup = caf::actor_cast<caf::actor>(&supervisor);
    // An inline C++ callable cannot travel: it runs here.
    if (job->request.kind == task_kind::compute && job->request.compute_name.empty())
      return spawn_task_actor(supervisor, std::move(job), local_, sup, watchdog);
    return supervisor.spawn(remote_attempt, std::move(job), pool_, local_, sup, watchdog);
  }

  bool starts_later(const task_job& job) const override {
    return !(job.request.kind == task_kind::compute && job.request.compute_name.empty());
  }

  // An inline C++ callable cannot travel: it runs here, on the pool.
  util::thread_pool* pool_for(const task_job& job) const override {
    return job.request.kind == task_kind::compute && job.request.compute_name.empty() ? local_
                                                                                      : nullptr;
  }

private:
  caf::actor pool_;
  util::thread_pool* local_;
};

} // namespace

caf::actor spawn_worker_pool(caf::actor_system& sys, worker_pool_config cfg) {
  return sys.spawn(worker_pool, std::move(cfg));
}

std::shared_ptr<dispatcher> make_remote_dispatcher(caf::actor pool, util::thread_pool* local) {
  return std::make_shared<remote_dispatcher>(std::move(pool), local);
}

} // namespace smithers::actors
