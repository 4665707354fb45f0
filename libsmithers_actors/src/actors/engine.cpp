// The engine façade: construction and teardown, the plumbing its parts share
// (publishing, the persistence actor's synchronous calls, launching a
// supervisor), start, cancel, fork, computes and subscribers. Resume lives in
// resume.cpp, ownership and requests from other processes in ownership.cpp,
// validation in run_validation.cpp, run handles in run_handle.cpp.
#include <smithers/engine.hpp>
#include <smithers/metrics.hpp>

#include "actors/engine_impl.hpp"
#include "actors/ownership.hpp"
#include "actors/persistence_actor.hpp"
#include "actors/protocol.hpp"
#include "actors/run_handle.hpp"
#include "actors/run_supervisor.hpp"
#include "actors/wire.hpp"
#include "actors/worker_pool.hpp"
#include "core/run_validation.hpp"
#include "store/cancel.hpp"
#include "store/fork.hpp"
#include "store/inbox.hpp"
#include "store/reader.hpp"
#include "store/writer.hpp"
#include "util/clock.hpp"
#include "util/ids.hpp"
#include "util/owner.hpp"

#include <smithers/limits.hpp>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <thread>

namespace smithers {

namespace {

std::size_t default_scheduler_threads() {
  auto n = std::thread::hardware_concurrency();
  return std::max<std::size_t>(2, n);
}

// A subscriber's exception must not take the run (or the engine) down with
// it: it is logged and the event stream goes on.
void call_handler(const event_handler& h, const event& e) noexcept {
  try {
    h(e);
  } catch (const std::exception& ex) {
    spdlog::error("event handler threw on {} (seq {}) of run {}: {}", e.type, e.seq, e.run_id,
                  ex.what());
  } catch (...) {
    spdlog::error("event handler threw on {} (seq {}) of run {}", e.type, e.seq, e.run_id);
  }
}

} // namespace

// -- what the engine's parts share ---------------------------------------------

void engine::impl::publish(const event& e) {
  if (cfg.metrics) cfg.metrics->observe(e);
  std::vector<event_handler> hs;
  {
    std::lock_guard<std::mutex> lk(mtx);
    for (const auto& [id, h] : subscribers)
      hs.push_back(h);
  }
  for (const auto& h : hs)
    call_handler(h, e);
}

std::shared_ptr<const actors::compute_registry> engine::impl::computes_snapshot() const {
  std::lock_guard<std::mutex> lk(mtx);
  return std::make_shared<const actors::compute_registry>(computes);
}

std::shared_ptr<actors::run_snapshot> engine::impl::load(const std::string& run_id) {
  caf::scoped_actor self{*sys};
  self->send(persistence, actors::load_atom::value, run_id);
  actors::run_snapshot_ptr snap;
  self->receive([&](actors::loaded_atom, actors::run_snapshot_ptr s) { snap = std::move(s); });
  if (!snap->error.empty()) throw smithers_error(errc::db_error, snap->error);
  return snap;
}

namespace {

bool uses_cache(const node& n) {
  if (n.task && n.task->cache) return true;
  for (const auto& c : n.children)
    if (uses_cache(c)) return true;
  return false;
}

} // namespace

run_handle engine::impl::launch(std::shared_ptr<actors::run_context> ctx, event_handler on_event) {
  // The workflow's task cache, as stored now (its own entries join it).
  if (ctx->wf && (ctx->wf->dynamic() || uses_cache(ctx->wf->root))) {
    auto entries = std::make_shared<std::unordered_map<std::string, json>>();
    store_sync(
        [&](store::database& db) { *entries = store::reader{db}.cache_entries(ctx->wf->name); });
    ctx->cache = std::move(entries);
  }
  auto st = std::make_shared<run_handle::state>();
  st->run_id = ctx->run_id;
  ctx->owner_id = owner_id;
  ctx->persistence = persistence;
  ctx->pool = pool.get();
  if (workers) {
    ctx->dispatch = remote;
    ctx->workers = workers;
    ctx->remote_computes = true;
  }
  ctx->publish = [this, on_event](const event& e) {
    if (on_event) call_handler(on_event, e);
    publish(e);
  };
  ctx->on_end = [st, this](run_result r) {
    actors::set_driven(st->run_id, false);
    {
      // An ended run's result belongs to its handles alone: a long-lived
      // engine does not keep every run's outputs.
      std::lock_guard<std::mutex> lk(mtx);
      supervisors.erase(st->run_id);
      runs.erase(std::remove(runs.begin(), runs.end(), st), runs.end());
    }
    st->end(std::move(r));
  };
  std::lock_guard<std::mutex> lk(mtx);
  runs.push_back(st);
  supervisors[st->run_id] = actors::spawn_run_supervisor(*sys, ctx);
  return run_handle{st};
}

void engine::impl::store_sync(std::function<void(store::database&)> fn) {
  auto job = std::make_shared<actors::store_job>();
  job->fn = std::move(fn);
  caf::scoped_actor self{*sys};
  self->send(persistence, actors::exec_atom::value, job);
  self->receive([](actors::done_atom, const actors::store_job_ptr&) {});
  if (job->failure) throw smithers_error(*job->failure);
}

store::run_row engine::impl::read_run(const std::string& run_id) {
  std::optional<store::run_row> row;
  store_sync([&](store::database& db) { row = store::reader{db}.run(run_id); });
  if (!row) throw smithers_error(errc::run_not_found, "no run with id \"" + run_id + "\"");
  return *row;
}

void engine::impl::write_sync(std::vector<store::command> cmds) {
  caf::scoped_actor self{*sys};
  auto batch = std::make_shared<actors::write_batch>();
  batch->commands = std::move(cmds);
  self->send(persistence, actors::write_atom::value, std::uint64_t{0}, batch);
  std::optional<error> failure;
  self->receive(
      [&](actors::committed_atom, std::uint64_t) {},
      [&](actors::failed_atom, std::uint64_t, const std::string& code, const std::string& msg) {
        failure = error{code, msg};
      });
  if (failure) throw smithers_error(*failure);
}

// -- engine -------------------------------------------------------------------

engine::engine(engine_config cfg) : impl_(std::make_unique<impl>()) {
  impl_->cfg = std::move(cfg);
  auto& c = impl_->cfg;
  if (c.max_output_bytes < 1 || c.max_output_bytes > limits::max_output_bytes_ceiling)
    throw smithers_error(errc::invalid_argument,
                         "engine_config::max_output_bytes must be from 1 to " +
                             std::to_string(limits::max_output_bytes_ceiling));
  // Workers' addresses and TLS files are checked before anything opens.
  std::vector<endpoint> workers;
  for (const auto& w : c.workers)
    workers.push_back(parse_endpoint(w, "worker"));
  if (c.tls.enabled() && workers.empty())
    throw smithers_error(errc::invalid_argument, "TLS files given, but no workers");
  check_tls_files(c.tls);
  if (c.worker_connect_timeout.count() < 1)
    throw smithers_error(errc::invalid_argument, "worker_connect_timeout must be positive");
  // Open (and migrate) first: a bad database path fails the constructor.
  impl_->db = std::make_shared<store::database>(store::database::open(
      c.db_path, store::open_mode::read_write,
      c.synchronous_full ? store::sync_mode::full : store::sync_mode::normal));
  // Every statement the writer needs prepares now: a file it cannot write
  // fails here, with DB_ERROR, not later inside the persistence actor.
  // The persistence actor takes it over: they prepare once.
  std::unique_ptr<store::writer> writer;
  try {
    writer = std::make_unique<store::writer>(*impl_->db);
  } catch (const smithers_error& e) {
    throw smithers_error(errc::db_error,
                         "cannot write database " + c.db_path + ": " + e.err().message);
  }
  // Checkpoints off the write path (store/checkpointer.hpp).
  impl_->db->checkpoint_in_background();
  std::size_t threads = c.scheduler_threads ? c.scheduler_threads : default_scheduler_threads();
  impl_->sys_cfg.set("scheduler.max-threads", threads);
  // Idle CAF workers spin briefly, then poll every 50 us for 25 ms, then
  // wait on a condition variable (10 ms timeout) that enqueues from outside
  // CAF — results from pool threads, timers, the host's calls — notify. The
  // polling phase delayed those results by up to a poll and took CPU from
  // the busy worker on a 2-core machine: skip it (the compute sequence case
  // went from ~3,700 to ~5,700 steps/s), and wake up every 1 ms to steal.
  impl_->sys_cfg.set("work-stealing.relaxed-sleep-duration",
                     caf::timespan{std::chrono::milliseconds{1}});
  impl_->sys_cfg.set("work-stealing.moderate-poll-attempts", std::size_t{1});
  // The network only when there are workers: the middleman is a thread
  // and a socket layer a local engine does not need.
  if (!workers.empty()) {
    actors::register_wire_types(impl_->sys_cfg);
    actors::configure_network(impl_->sys_cfg, c.tls);
  }
  impl_->sys = std::make_unique<caf::actor_system>(impl_->sys_cfg);
  impl_->pool = std::make_unique<util::thread_pool>(c.blocking_threads ? c.blocking_threads : 64);
  impl_->persistence =
      actors::spawn_persistence(*impl_->sys, impl_->db, c.metrics, std::move(writer));
  impl_->owner_id = util::make_owner_id();
  if (!workers.empty()) {
    actors::worker_pool_config wc;
    wc.workers = std::move(workers);
    wc.tls = c.tls.enabled();
    wc.local_fallback = c.local_fallback;
    wc.owner_id = impl_->owner_id;
    wc.connect_timeout = c.worker_connect_timeout;
    impl_->workers = actors::spawn_worker_pool(*impl_->sys, std::move(wc));
    impl_->remote = actors::make_remote_dispatcher(impl_->workers, impl_->pool.get());
  }
  // Only a file can carry requests from other processes.
  if (c.db_path != ":memory:" && c.db_path.rfind("file::memory:", 0) != 0) {
    auto* im = impl_.get();
    impl_->poller = actors::spawn_request_poller(
        *impl_->sys, c.db_path, impl_->owner_id,
        [im](const store::owner_request& req) { im->on_owner_request(req); },
        [im](const store::inbox_row& e) {
          return im->tell_supervisor(e.run_id, actors::inbox_atom::value,
                                     std::make_shared<const store::inbox_row>(e));
        });
  }
}

engine::~engine() {
  std::vector<std::shared_ptr<run_handle::state>> runs;
  {
    std::lock_guard<std::mutex> lk(impl_->mtx);
    runs = impl_->runs;
    // A run that only waits (for a person, a signal, a timer) would keep
    // the destructor forever: it stops here, resumable — its waits are in
    // the store — and one waiting for outside is let go of.
    for (const auto& [id, sup] : impl_->supervisors)
      caf::anon_send(sup, actors::idle_atom::value,
                     std::string{"the engine shut down while the run waited"});
  }
  for (auto& r : runs)
    run_handle{r}.await_end();
  if (impl_->poller) caf::anon_send_exit(impl_->poller, caf::exit_reason::user_shutdown);
  impl_->poller = nullptr;
  if (impl_->workers) caf::anon_send_exit(impl_->workers, caf::exit_reason::user_shutdown);
  impl_->workers = nullptr;
  impl_->remote.reset();
  caf::anon_send_exit(impl_->persistence, caf::exit_reason::user_shutdown);
  impl_->persistence = nullptr;
  impl_->sys->await_all_actors_done();
  impl_->pool.reset();
  impl_->sys.reset();
}

const engine_config& engine::config() const {
  return impl_->cfg;
}

const std::string& engine::owner_id() const {
  return impl_->owner_id;
}

cancel_outcome engine::cancel(const std::string& run_id, const std::string& reason) {
  if (impl_->tell_supervisor(run_id, actors::cancel_atom::value, reason))
    return cancel_outcome::stopping;
  // Not driven here: a live owner elsewhere gets a durable request; a run
  // nobody drives is ended cancelled right here.
  auto& im = *impl_;
  store::unowned_cancel req{run_id, im.owner_id, static_cast<std::int64_t>(::getpid()),
                            util::now_ms(), error{errc::run_cancelled, reason}};
  store::cancel_outcome out;
  im.store_sync([&](store::database& db) {
    auto run = store::reader{db}.run(run_id);
    // Ours but not driven (interrupted): this process is alive, yet nobody
    // will act on a request.
    if (run && run->owner_id == im.owner_id) {
      out.run = *run;
      out.ended = store::cancel_unowned_run(db, req);
      return;
    }
    out = store::cancel_stored_run(db, req, default_stale_after.count());
  });
  if (out.requested) return cancel_outcome::requested;
  impl::end_groups(out.ended.process_groups);
  return cancel_outcome::cancelled;
}

bool engine::continue_as_new(const std::string& run_id) {
  return impl_->tell_supervisor(run_id, actors::continue_atom::value);
}

std::string engine::fork(const std::string& run_id, std::int64_t frame_no,
                         const std::vector<std::string>& reset_nodes,
                         const std::string& new_run_id) {
  store::fork_request req{run_id, frame_no, reset_nodes, new_run_id, util::now_ms()};
  std::string child;
  auto job = std::make_shared<actors::store_job>();
  job->fn = [&](store::database& db) { child = store::fork_run(db, req).run_id; };
  caf::scoped_actor self{*impl_->sys};
  self->send(impl_->persistence, actors::exec_atom::value, job);
  self->receive([](actors::done_atom, const actors::store_job_ptr&) {});
  if (job->failure) throw smithers_error(*job->failure);
  return child;
}

void engine::approve(const std::string& run_id, const std::string& node_id, decision d) {
  impl_->decide(run_id, node_id, true, std::move(d));
}

void engine::deny(const std::string& run_id, const std::string& node_id, decision d) {
  impl_->decide(run_id, node_id, false, std::move(d));
}

void engine::signal(const std::string& run_id, const std::string& name, json payload) {
  if (auto err = util::check_run_id(run_id)) throw smithers_error(*err);
  store::signal_request req{run_id, name, std::move(payload), util::now_ms()};
  store::inbox_row row;
  impl_->store_sync([&](store::database& db) { row = store::record_signal(db, req); });
  impl_->tell_supervisor(run_id, actors::inbox_atom::value,
                         std::make_shared<const store::inbox_row>(std::move(row)));
}

void engine::impl::decide(const std::string& run_id, const std::string& node_id, bool approved,
                          decision d) {
  if (auto err = util::check_run_id(run_id)) throw smithers_error(*err);
  store::decision_request req{run_id,          node_id,           d.iteration,   approved,
                              std::move(d.by), std::move(d.note), util::now_ms()};
  store::inbox_row row;
  store_sync([&](store::database& db) { row = store::record_decision(db, req); });
  // Driven here: at once. Elsewhere: its poller finds it. Nobody: on resume.
  tell_supervisor(run_id, actors::inbox_atom::value,
                  std::make_shared<const store::inbox_row>(std::move(row)));
}

void engine::interrupt(const std::string& reason) {
  std::vector<caf::actor> sups;
  {
    std::lock_guard<std::mutex> lk(impl_->mtx);
    for (const auto& [id, sup] : impl_->supervisors)
      sups.push_back(sup);
  }
  for (const auto& sup : sups)
    caf::anon_send(sup, actors::interrupt_atom::value, reason);
}

void engine::register_compute(const std::string& name, compute_fn fn) {
  if (name.empty()) throw smithers_error(errc::invalid_argument, "a compute function needs a name");
  if (!fn)
    throw smithers_error(errc::invalid_argument, "compute function \"" + name + "\" is empty");
  std::lock_guard<std::mutex> lk(impl_->mtx);
  impl_->computes[name] = std::move(fn);
}

bool engine::has_compute(const std::string& name) const {
  std::lock_guard<std::mutex> lk(impl_->mtx);
  return impl_->computes.count(name) > 0;
}

std::uint64_t engine::subscribe(event_handler handler) {
  std::lock_guard<std::mutex> lk(impl_->mtx);
  auto id = impl_->next_subscriber++;
  impl_->subscribers.emplace(id, std::move(handler));
  return id;
}

void engine::unsubscribe(std::uint64_t id) {
  std::lock_guard<std::mutex> lk(impl_->mtx);
  impl_->subscribers.erase(id);
}

void engine::validate(const workflow& wf, const run_options& opts) const {
  // With workers, a function this process lacks may be a worker's: a task
  // no worker offers fails with WORKER_UNAVAILABLE when it runs.
  bool remote = !impl_->cfg.workers.empty();
  validate_run(wf, opts,
               [this, remote](const std::string& name) { return remote || has_compute(name); });
}

run_handle engine::start(const workflow& wf, run_options opts) {
  return start(std::make_shared<const workflow>(wf), std::move(opts));
}

run_handle engine::start(std::shared_ptr<const workflow> wf, run_options opts) {
  if (!wf) throw smithers_error(errc::invalid_argument, "no workflow given");
  validate(*wf, opts);
  auto& im = *impl_;

  auto ctx = std::make_shared<actors::run_context>();
  ctx->run_id = opts.run_id.empty() ? util::new_run_id() : opts.run_id;
  ctx->wf = wf;
  ctx->input = std::make_shared<const json>(std::move(opts.input));
  ctx->max_concurrency =
      opts.max_concurrency.value_or(wf->max_concurrency.value_or(im.cfg.default_max_concurrency));
  ctx->max_output_bytes = opts.max_output_bytes.value_or(im.cfg.max_output_bytes);
  ctx->cwd = opts.cwd;
  ctx->release_when_waiting = opts.release_when_waiting;
  if (ctx->cwd.empty()) {
    std::error_code ec;
    ctx->cwd = std::filesystem::current_path(ec).string();
  }
  ctx->computes = im.computes_snapshot();
  // A dynamic workflow is rendered once here so a broken build function is
  // refused before the run exists.
  ctx->first_render = core::first_render(wf, ctx->run_id, *ctx->input, {});

  // Create the run: its row and RunStarted in one transaction. A duplicate
  // id fails the insert, so nothing else is written.
  std::int64_t now = util::now_ms();
  store::run_row row;
  row.run_id = ctx->run_id;
  row.workflow_name = wf->name;
  row.status = to_string(run_status::running);
  row.input = *ctx->input;
  row.config = {{"max_concurrency", ctx->max_concurrency},
                {"max_output_bytes", ctx->max_output_bytes}};
  row.workflow_hash = opts.workflow_hash.empty() ? ctx->first_render.hash : opts.workflow_hash;
  row.workflow_path = opts.workflow_path;
  row.vcs_revision = opts.vcs_revision;
  row.cwd = ctx->cwd;
  row.owner_id = im.owner_id;
  row.owner_pid = static_cast<std::int64_t>(::getpid());
  row.heartbeat_ms = now;
  row.created_ms = now;
  row.updated_ms = now;
  event started;
  started.type = event_type::run_started;
  started.run_id = ctx->run_id;
  started.seq = 0;
  started.timestamp_ms = now;
  started.fields = {{"workflow", wf->name}, {"input", *ctx->input}};
  if (!actors::mark_driven(ctx->run_id))
    throw smithers_error(errc::invalid_run_id,
                         "a run with id \"" + ctx->run_id + "\" already exists");
  try {
    im.write_sync(
        {store::insert_run{row},
         store::append_event{store::event_row{ctx->run_id, 0, started.type, now, started.fields}}});
  } catch (const smithers_error&) {
    actors::set_driven(ctx->run_id, false); // INVALID_RUN_ID from the store when the id exists
    throw;
  }
  auto on_event = opts.on_event;
  if (on_event) call_handler(on_event, started);
  im.publish(started);
  ctx->next_seq = 1;
  ctx->started_ms = now;
  return im.launch(ctx, on_event);
}

run_result engine::run(const workflow& wf, run_options opts) {
  // run() returns only once the run has ended, so the caller's workflow
  // outlives it: borrowed (a shared_ptr that owns nothing), not copied; a
  // 100,000-task tree is a pass of cache misses to copy and one to free.
  std::shared_ptr<const workflow> borrowed(std::shared_ptr<const workflow>{}, &wf);
  // Nobody else holds this handle: its result (every output) is moved out,
  // not copied.
  return start(std::move(borrowed), std::move(opts)).take();
}

} // namespace smithers
