// The worker's side of distribution (docs/architecture.md, "The worker
// protocol"): smithers::worker publishes one worker_node actor. For each
// owner that says hello it keeps a session; each task request becomes a
// local task actor (actors/task_actor.hpp: the same timeouts, cancellation
// and process-group ending as in an owner), whose results, heartbeats and
// process groups go back to the owner in batches. An owner that is lost
// (its process died, its network is gone, it hangs) has its attempts ended.
#include <smithers/worker.hpp>

#include "actors/protocol.hpp"
#include "actors/task_actor.hpp"
#include "actors/wire.hpp"
#include "util/owner.hpp"
#include "util/thread_pool.hpp"

#include <caf/openssl/all.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace smithers {

namespace actors {
namespace {

using registry = std::map<std::string, compute_fn>;

struct session {
  caf::actor owner;
  std::string owner_id;
  std::unordered_map<std::uint64_t, caf::actor> tasks; // ticket -> task actor
  remote_report out;                                   // for the next flush
};

struct running_task {
  caf::actor_addr owner;
  std::uint64_t ticket = 0;
};

struct node_state {
  std::shared_ptr<const registry> computes;
  util::thread_pool* pool = nullptr;
  std::int64_t slots = 0;
  std::map<caf::actor_addr, session> sessions;
  std::unordered_map<caf::actor_id, running_task> tasks; // by task actor
  bool flush_queued = false;
  static inline const char* name = "smithers.worker_node";
};

using node_actor = caf::stateful_actor<node_state>;

remote_result to_wire(std::uint64_t ticket, const task_outcome& oc) {
  remote_result r;
  r.ticket = ticket;
  auto text = [](const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); };
  if (oc.output && !oc.err) {
    r.ok = true;
    r.output = text(*oc.output);
  } else {
    error e = oc.err ? *oc.err : error{errc::task_failed, "the task produced no output"};
    r.code = e.code;
    r.message = e.message;
    r.details = text(e.details.is_object() ? e.details : json::object());
  }
  if (oc.beat.at_ms > 0) {
    r.beat_at_ms = oc.beat.at_ms;
    r.beat_has_data = oc.beat.has_data;
    if (oc.beat.has_data) r.beat_data = text(oc.beat.data);
  }
  if (oc.meta.is_object()) r.meta = text(oc.meta);
  return r;
}

void schedule_flush(node_actor* self) {
  if (self->state.flush_queued) return;
  self->state.flush_queued = true;
  self->send(self, rflush_atom::value);
}

// Where a message from one of this node's task actors belongs.
session* session_of(node_actor* self, running_task*& task) {
  auto& st = self->state;
  auto it = st.tasks.find(self->current_sender() ? self->current_sender()->id() : 0);
  if (it == st.tasks.end()) return nullptr;
  task = &it->second;
  auto s = st.sessions.find(it->second.owner);
  return s == st.sessions.end() ? nullptr : &s->second;
}

void report(node_actor* self, session& s, remote_result r) {
  s.out.done.push_back(std::move(r));
  schedule_flush(self);
}

// A task request as it arrived, checked before anything runs: a request
// this worker cannot carry out fails its attempt, it is not guessed at.
std::optional<error> check_request(const executors::task_request& req, const registry& computes) {
  auto bad = [](const std::string& why) {
    return error{errc::invalid_argument, "the worker refused the task request: " + why};
  };
  if (req.kind == task_kind::command) {
    if (req.argv.empty() || req.argv[0].empty()) return bad("a command with no program");
  } else if (req.kind == task_kind::compute) {
    if (req.compute_name.empty()) return bad("a compute task without a function name");
    if (!computes.count(req.compute_name))
      return error{errc::worker_unavailable,
                   "this worker has no compute function named \"" + req.compute_name + "\"",
                   {{"compute", req.compute_name}}};
  } else if (req.kind == task_kind::agent) {
    if (req.agent.command.empty() || req.agent.command[0].empty())
      return bad("an agent with no program");
  } else {
    return bad("only command, agent and compute tasks run on workers");
  }
  if (req.max_output_bytes < 1 || req.max_output_bytes > limits::max_output_bytes_ceiling)
    return bad("max_output_bytes out of range");
  if ((req.timeout_ms && *req.timeout_ms < 1) ||
      (req.heartbeat_timeout_ms && *req.heartbeat_timeout_ms < 1))
    return bad("a timeout that is not positive");
  return std::nullopt;
}

void start_task(node_actor* self, session& s, const caf::actor_addr& owner, remote_task& t) {
  auto& st = self->state;
  if (s.tasks.count(t.ticket)) return; // told twice
  if (auto err = check_request(t.req, *st.computes)) {
    task_outcome oc;
    oc.err = std::move(err);
    report(self, s, to_wire(t.ticket, oc));
    return;
  }
  auto job = std::make_shared<task_job>();
  job->request = std::move(t.req);
  if (job->request.kind == task_kind::compute)
    job->compute = st.computes->at(job->request.compute_name);
  auto me = caf::actor_cast<caf::actor>(self);
  // This node is the task actor's supervisor and watchdog both: it relays.
  auto task = spawn_task_actor(*self, std::move(job), st.pool, me, me);
  self->monitor(task);
  st.tasks[task.id()] = running_task{owner, t.ticket};
  s.tasks[t.ticket] = std::move(task);
}

caf::behavior worker_node(node_actor* self, std::shared_ptr<const registry> computes,
                          util::thread_pool* pool, std::int64_t slots) {
  auto& st = self->state;
  st.computes = std::move(computes);
  st.pool = pool;
  st.slots = slots;
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (auto s = st.sessions.find(dm.source); s != st.sessions.end()) {
      // The owner is gone: its attempts end, their processes with them.
      if (s->second.tasks.empty())
        spdlog::info("owner {} disconnected ({})", s->second.owner_id,
                     self->system().render(dm.reason));
      else
        spdlog::warn("owner {} lost ({}): ending its {} attempt(s)", s->second.owner_id,
                     self->system().render(dm.reason), s->second.tasks.size());
      for (auto& [ticket, task] : s->second.tasks) {
        st.tasks.erase(task.id());
        self->send_exit(task, caf::exit_reason::user_shutdown);
      }
      st.sessions.erase(s);
      return;
    }
    auto t = st.tasks.find(dm.source.id());
    if (t == st.tasks.end()) return;
    // A task actor that ended without its result (it reports before it
    // quits otherwise).
    running_task rt = t->second;
    st.tasks.erase(t);
    auto s2 = st.sessions.find(rt.owner);
    if (s2 == st.sessions.end()) return;
    s2->second.tasks.erase(rt.ticket);
    task_outcome oc;
    oc.err = error{errc::task_failed, "the task actor on the worker ended without a result (" +
                                          self->system().render(dm.reason) + ")"};
    report(self, s2->second, to_wire(rt.ticket, oc));
  });
  return {
      [=](hello_atom, const std::string& owner_id, const caf::actor& owner) -> worker_info {
        auto& st = self->state;
        if (owner) {
          auto& s = st.sessions[owner.address()];
          if (!s.owner) {
            s.owner = owner;
            s.owner_id = owner_id.substr(0, 512);
            self->monitor(owner);
            spdlog::info("owner {} connected", s.owner_id);
          }
        }
        worker_info info;
        info.host = util::host_name();
        info.pid = static_cast<std::int64_t>(::getpid());
        info.slots = st.slots;
        for (const auto& [name, fn] : *st.computes)
          info.computes.push_back(name);
        return info;
      },
      [=](rwork_atom, remote_work& work) {
        auto& st = self->state;
        auto from = caf::actor_cast<caf::actor_addr>(self->current_sender());
        auto s = st.sessions.find(from);
        if (s == st.sessions.end()) return; // no hello: not an owner of ours
        for (auto& t : work.tasks)
          start_task(self, s->second, from, t);
        for (const auto& c : work.cancels)
          if (auto it = s->second.tasks.find(c.ticket); it != s->second.tasks.end())
            self->send(it->second, cancel_atom::value, c.code, c.message);
      },
      [=](result_atom, const attempt_key&, const task_outcome_ptr& oc) {
        running_task* rt = nullptr;
        session* s = session_of(self, rt);
        if (!rt) return;
        std::uint64_t ticket = rt->ticket;
        self->state.tasks.erase(self->current_sender()->id());
        if (!s) return;
        s->tasks.erase(ticket);
        report(self, *s, to_wire(ticket, *oc));
      },
      [=](process_atom, const attempt_key&, std::int64_t pid, const std::string& host,
          std::int64_t pid_start) {
        running_task* rt = nullptr;
        session* s = session_of(self, rt);
        if (!s) return;
        s->out.procs.push_back(remote_proc{rt->ticket, pid, host, pid_start});
        schedule_flush(self);
      },
      [=](output_atom, const attempt_key&, std::string& stream, std::string& text) {
        running_task* rt = nullptr;
        session* s = session_of(self, rt);
        if (!s) return;
        s->out.outputs.push_back(remote_output{rt->ticket, std::move(stream), std::move(text)});
        schedule_flush(self);
      },
      [=](heartbeat_atom, const heartbeat_ptr& hb) {
        running_task* rt = nullptr;
        session* s = session_of(self, rt);
        if (!s) return;
        remote_beat b;
        b.ticket = rt->ticket;
        b.at_ms = hb->at_ms;
        b.has_data = hb->has_data;
        if (hb->has_data) b.data = hb->data.dump(-1, ' ', false, json::error_handler_t::replace);
        s->out.beats.push_back(std::move(b));
        schedule_flush(self);
      },
      [=](rflush_atom) {
        auto& st = self->state;
        st.flush_queued = false;
        for (auto& [addr, s] : st.sessions)
          if (!s.out.done.empty() || !s.out.beats.empty() || !s.out.procs.empty() ||
              !s.out.outputs.empty())
            self->send(s.owner, rreport_atom::value, std::exchange(s.out, {}));
      },
      [=](stop_atom) {
        auto& st = self->state;
        for (auto& [id, rt] : st.tasks)
          if (auto s = st.sessions.find(rt.owner); s != st.sessions.end())
            if (auto t = s->second.tasks.find(rt.ticket); t != s->second.tasks.end())
              self->send_exit(t->second, caf::exit_reason::user_shutdown);
        self->quit();
      },
  };
}

} // namespace
} // namespace actors

// -- smithers::worker -------------------------------------------------------------

struct worker::impl {
  worker_config cfg;
  endpoint listen;
  std::map<std::string, compute_fn> computes;
  caf::actor_system_config sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<util::thread_pool> pool;
  caf::actor node;
  std::uint16_t port = 0;
  bool stopped = false;
  std::mutex mtx;
};

worker::worker(worker_config cfg) : impl_(std::make_unique<impl>()) {
  impl_->cfg = std::move(cfg);
  auto& c = impl_->cfg;
  impl_->listen = parse_endpoint(c.listen, "--listen", true);
  if (!c.tls.enabled() && !c.insecure && !is_loopback_host(impl_->listen.host))
    throw smithers_error(errc::invalid_argument,
                         "--listen " + c.listen +
                             ": without TLS a worker listens on a loopback address only (anyone "
                             "who reaches the port could run commands); give --tls-cert, "
                             "--tls-key and --tls-ca, or --insecure");
  if (c.slots < 0 || c.slots > limits::max_worker_slots)
    throw smithers_error(errc::invalid_argument,
                         "--slots must be from 1 to " + std::to_string(limits::max_worker_slots));
  if (c.slots == 0)
    c.slots =
        std::max<std::int64_t>(2, static_cast<std::int64_t>(std::thread::hardware_concurrency()));
  check_tls_files(c.tls);
}

worker::~worker() {
  stop();
}

void worker::register_compute(const std::string& name, compute_fn fn) {
  if (name.empty()) throw smithers_error(errc::invalid_argument, "a compute function needs a name");
  if (!fn)
    throw smithers_error(errc::invalid_argument, "compute function \"" + name + "\" is empty");
  std::lock_guard<std::mutex> lk(impl_->mtx);
  if (impl_->sys)
    throw smithers_error(errc::invalid_argument, "register_compute after the worker started");
  impl_->computes[name] = std::move(fn);
}

std::uint16_t worker::start() {
  std::lock_guard<std::mutex> lk(impl_->mtx);
  auto& im = *impl_;
  if (im.sys) return im.port;
  if (im.stopped) throw smithers_error(errc::invalid_argument, "the worker has been stopped");
  std::size_t threads = im.cfg.scheduler_threads
                            ? im.cfg.scheduler_threads
                            : std::max<std::size_t>(2, std::thread::hardware_concurrency());
  im.sys_cfg.set("scheduler.max-threads", threads);
  actors::register_wire_types(im.sys_cfg);
  actors::configure_network(im.sys_cfg, im.cfg.tls);
  im.sys = std::make_unique<caf::actor_system>(im.sys_cfg);
  // One thread per slot (a command's thread waits on its process).
  im.pool = std::make_unique<util::thread_pool>(static_cast<std::size_t>(im.cfg.slots));
  auto computes = std::make_shared<const std::map<std::string, compute_fn>>(im.computes);
  im.node = im.sys->spawn(actors::worker_node, computes, im.pool.get(), im.cfg.slots);
  const char* in = im.listen.host.empty() ? nullptr : im.listen.host.c_str();
  auto published = im.cfg.tls.enabled()
                       ? caf::openssl::publish(im.node, im.listen.port, in, true)
                       : im.sys->middleman().publish(im.node, im.listen.port, in, true);
  if (!published) {
    std::string why = im.sys->render(published.error());
    caf::anon_send_exit(im.node, caf::exit_reason::user_shutdown);
    im.node = nullptr;
    im.sys.reset();
    im.pool.reset();
    throw smithers_error(errc::invalid_argument, "cannot listen on " + im.cfg.listen + ": " + why);
  }
  im.port = *published;
  return im.port;
}

std::uint16_t worker::port() const {
  return impl_->port;
}

void worker::stop() {
  std::lock_guard<std::mutex> lk(impl_->mtx);
  auto& im = *impl_;
  if (!im.sys) return;
  im.stopped = true;
  if (im.node) caf::anon_send(im.node, actors::stop_atom::value);
  im.node = nullptr;
  im.sys->await_all_actors_done();
  im.pool.reset(); // joins the threads: every job has ended
  im.sys.reset();
}

const worker_config& worker::config() const {
  return impl_->cfg;
}

} // namespace smithers
