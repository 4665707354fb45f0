#include <smithers/engine.hpp>

#include "actors/messages.hpp"
#include "actors/persistence_actor.hpp"
#include "actors/run_supervisor.hpp"
#include "format/validate.hpp"
#include "schema/schema.hpp"
#include "store/cancel.hpp"
#include "store/fork.hpp"
#include "store/reader.hpp"
#include "store/writer.hpp"
#include "util/clock.hpp"
#include "util/ids.hpp"
#include "util/json_bounds.hpp"
#include "util/owner.hpp"

#include <smithers/limits.hpp>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

namespace smithers {

// -- run handles --------------------------------------------------------------

struct run_handle::state {
  std::string run_id;
  std::mutex mtx;
  std::condition_variable cv;
  bool done = false;
  run_result result;

  // Waits for the run's end; the lock is held for reading the result.
  std::unique_lock<std::mutex> ended() {
    std::unique_lock<std::mutex> lk(mtx);
    cv.wait(lk, [&] { return done; });
    return lk;
  }
};

const std::string& run_handle::run_id() const {
  return st_->run_id;
}

run_result run_handle::wait() const {
  auto lk = st_->ended();
  return st_->result;
}

run_result run_handle::take() {
  auto lk = st_->ended();
  return std::move(st_->result);
}

void run_handle::await_end() const {
  st_->ended();
}

bool run_handle::wait_for(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lk(st_->mtx);
  return st_->cv.wait_for(lk, timeout, [&] { return st_->done; });
}

// -- engine -------------------------------------------------------------------

namespace {

std::size_t default_scheduler_threads() {
  auto n = std::thread::hardware_concurrency();
  return std::max<std::size_t>(2, n);
}

void collect_compute_names(const node& n, const std::string& path,
                           std::vector<std::pair<std::string, std::string>>& out) {
  if (n.is_task()) {
    if (n.task && n.task->kind == task_kind::compute && !n.task->compute)
      out.emplace_back(spec::child_path(path, "compute"), n.task->compute_name);
    return;
  }
  for (std::size_t i = 0; i < n.children.size(); ++i)
    collect_compute_names(n.children[i], spec::child_node_path(path, n.kind, i), out);
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

constexpr std::chrono::milliseconds cancel_poll_interval{250};
// A forced resume polls the run this often while its owner lets go of it.
constexpr std::chrono::milliseconds handover_poll_interval{50};

json problems_json(const spec::problems& ps);

// Runs driven by any engine of this process: a resume of one of them would
// make two drivers, whatever the owner id says.
std::mutex driven_mtx;
std::set<std::string> driven_runs;

bool driven_here(const std::string& run_id) {
  std::lock_guard<std::mutex> lk(driven_mtx);
  return driven_runs.count(run_id) > 0;
}

// Marks a run driven here before its row is written (so the request poller
// never mistakes a run being started for one nobody drives); false if it
// already was.
bool mark_driven(const std::string& run_id) {
  std::lock_guard<std::mutex> lk(driven_mtx);
  return driven_runs.insert(run_id).second;
}

void set_driven(const std::string& run_id, bool on) {
  std::lock_guard<std::mutex> lk(driven_mtx);
  if (on)
    driven_runs.insert(run_id);
  else
    driven_runs.erase(run_id);
}

rendered_tree first_render(const std::shared_ptr<const workflow>& wf, const std::string& run_id,
                           const json& input,
                           const std::unordered_map<std::string, json>& outputs) {
  render_context rc{run_id, &input, &outputs};
  rendered_tree r;
  try {
    r = render(wf, rc);
  } catch (const smithers_error&) {
    throw;
  } catch (const std::exception& e) {
    throw smithers_error(errc::invalid_workflow,
                         std::string{"rendering the workflow failed: "} + e.what());
  }
  if (wf->dynamic()) {
    auto ps = spec::validate_tree(*wf, *r.root);
    if (!ps.empty())
      throw smithers_error(errc::invalid_workflow, "invalid workflow: " + spec::join(ps),
                           problems_json(ps));
  }
  return r;
}

// Polls the store for what other processes asked of runs of this engine —
// cancellations and handovers — on its own read-only connection (detached:
// the reads may block on the disk).
struct poller_state {
  std::unique_ptr<store::database> db;
  std::string db_path;
  std::string owner_id;
  std::function<void(const store::owner_request&)> on_request;
  static inline const char* name = "smithers.request_poller";
};

caf::behavior request_poller(caf::stateful_actor<poller_state>* self, std::string db_path,
                             std::string owner_id,
                             std::function<void(const store::owner_request&)> on_request) {
  self->state.db_path = std::move(db_path);
  self->state.owner_id = std::move(owner_id);
  self->state.on_request = std::move(on_request);
  self->send(self, actors::poll_atom::value);
  return {
      [=](actors::poll_atom) {
        auto& st = self->state;
        try {
          if (!st.db)
            st.db = std::make_unique<store::database>(
                store::database::open(st.db_path, store::open_mode::read_only));
          for (const auto& req : store::reader{*st.db}.owner_requests(st.owner_id))
            st.on_request(req);
        } catch (const std::exception& e) {
          spdlog::warn("polling for cancellation and handover requests failed: {}", e.what());
          st.db.reset();
        }
        self->delayed_send(self, cancel_poll_interval, actors::poll_atom::value);
      },
  };
}

json problems_json(const spec::problems& ps) {
  json list = json::array();
  for (const auto& p : ps)
    list.push_back({{"path", p.path}, {"message", p.message}});
  return {{"problems", list}};
}

} // namespace

struct engine::impl {
  engine_config cfg;
  caf::actor_system_config sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<store::database> db;
  caf::actor persistence;
  caf::actor poller;
  std::unique_ptr<util::thread_pool> pool;
  std::string owner_id;

  mutable std::mutex mtx;
  actors::compute_registry computes;
  std::map<std::uint64_t, event_handler> subscribers;
  std::uint64_t next_subscriber = 1;
  std::vector<std::shared_ptr<run_handle::state>> runs; // not ended yet
  // Handles keep supervisors alive while their runs go on (CAF collects
  // actors nobody refers to).
  std::map<std::string, caf::actor> supervisors;

  // Sends `msg` to the supervisor of a run of this engine; false if none.
  template <class... Ts> bool tell_supervisor(const std::string& run_id, Ts&&... xs) {
    caf::actor sup;
    {
      std::lock_guard<std::mutex> lk(mtx);
      auto it = supervisors.find(run_id);
      if (it == supervisors.end()) return false;
      sup = it->second;
    }
    caf::anon_send(sup, std::forward<Ts>(xs)...);
    return true;
  }

  void publish(const event& e) {
    std::vector<event_handler> hs;
    {
      std::lock_guard<std::mutex> lk(mtx);
      for (const auto& [id, h] : subscribers)
        hs.push_back(h);
    }
    for (const auto& h : hs)
      call_handler(h, e);
  }

  std::shared_ptr<actors::run_snapshot> load(const std::string& run_id) {
    caf::scoped_actor self{*sys};
    self->send(persistence, actors::load_atom::value, run_id);
    actors::run_snapshot_ptr snap;
    self->receive([&](actors::loaded_atom, actors::run_snapshot_ptr s) { snap = std::move(s); });
    if (!snap->error.empty()) throw smithers_error(errc::db_error, snap->error);
    return snap;
  }

  // Spawns the supervisor of a run whose row exists, and hands out its handle.
  run_handle launch(std::shared_ptr<actors::run_context> ctx, event_handler on_event) {
    auto st = std::make_shared<run_handle::state>();
    st->run_id = ctx->run_id;
    ctx->owner_id = owner_id;
    ctx->persistence = persistence;
    ctx->pool = pool.get();
    ctx->publish = [this, on_event](const event& e) {
      if (on_event) call_handler(on_event, e);
      publish(e);
    };
    ctx->on_end = [st, this](run_result r) {
      set_driven(st->run_id, false);
      {
        // An ended run's result belongs to its handles alone: a long-lived
        // engine does not keep every run's outputs.
        std::lock_guard<std::mutex> lk(mtx);
        supervisors.erase(st->run_id);
        runs.erase(std::remove(runs.begin(), runs.end(), st), runs.end());
      }
      std::lock_guard<std::mutex> lk(st->mtx);
      st->result = std::move(r);
      st->done = true;
      st->cv.notify_all();
    };
    std::lock_guard<std::mutex> lk(mtx);
    runs.push_back(st);
    supervisors[st->run_id] = actors::spawn_run_supervisor(*sys, ctx);
    return run_handle{st};
  }

  // Runs `fn` on the persistence actor's connection (in its thread, between
  // batches) and waits for it; rethrows its smithers_error.
  void store_sync(std::function<void(store::database&)> fn) {
    auto job = std::make_shared<actors::store_job>();
    job->fn = std::move(fn);
    caf::scoped_actor self{*sys};
    self->send(persistence, actors::exec_atom::value, job);
    self->receive([](actors::done_atom, const actors::store_job_ptr&) {});
    if (job->failure) throw smithers_error(*job->failure);
  }

  store::run_row read_run(const std::string& run_id) {
    std::optional<store::run_row> row;
    store_sync([&](store::database& db) { row = store::reader{db}.run(run_id); });
    if (!row) throw smithers_error(errc::run_not_found, "no run with id \"" + run_id + "\"");
    return *row;
  }

  // Ends, as cancelled, a run that nobody drives (this engine's own runs
  // that it no longer drives included), and the commands it left behind.
  store::unowned_cancel_result cancel_unowned(const std::string& run_id, const error& why) {
    store::unowned_cancel req{run_id, owner_id, static_cast<std::int64_t>(::getpid()),
                              util::now_ms(), why};
    store::unowned_cancel_result res;
    store_sync([&](store::database& db) { res = store::cancel_unowned_run(db, req); });
    end_groups(res.process_groups);
    return res;
  }

  static void end_groups(const std::vector<json>& groups) {
    for (const auto& m : groups)
      util::end_orphaned_group(m.value("host", std::string{}), m.value("pgid", std::int64_t{0}),
                               m.value("pgid_start", std::int64_t{0}));
  }

  // What another process asked of a run of this engine. A run being started
  // or resumed here right now is driven, only not yet by a supervisor this
  // could tell: the next poll will.
  void on_owner_request(const store::owner_request& req) {
    if (req.cancel) {
      if (tell_supervisor(req.run_id, actors::cancel_atom::value,
                          std::string{"cancelled by request"}))
        return;
      // Ours, but no longer driven (interrupted): nobody else will act on it.
      if (driven_here(req.run_id)) return;
      try {
        cancel_unowned(req.run_id, error{errc::run_cancelled, "cancelled by request"});
      } catch (const std::exception& e) {
        spdlog::warn("cancelling run {} on request failed: {}", req.run_id, e.what());
      }
      return;
    }
    if (tell_supervisor(req.run_id, actors::handover_atom::value, req.handover_to)) return;
    if (driven_here(req.run_id)) return;
    try {
      write_sync({store::release_run{req.run_id, owner_id, util::now_ms()}});
    } catch (const std::exception& e) {
      spdlog::warn("releasing run {} to {} failed: {}", req.run_id, req.handover_to, e.what());
    }
  }

  // Writes a batch through the persistence actor and waits for its commit.
  void write_sync(std::vector<store::command> cmds) {
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
};

engine::engine(engine_config cfg) : impl_(std::make_unique<impl>()) {
  impl_->cfg = std::move(cfg);
  auto& c = impl_->cfg;
  if (c.max_output_bytes < 1 || c.max_output_bytes > limits::max_output_bytes_ceiling)
    throw smithers_error(errc::invalid_argument,
                         "engine_config::max_output_bytes must be from 1 to " +
                             std::to_string(limits::max_output_bytes_ceiling));
  // Open (and migrate) first: a bad database path fails the constructor.
  impl_->db = std::make_shared<store::database>(store::database::open(
      c.db_path, store::open_mode::read_write,
      c.synchronous_full ? store::sync_mode::full : store::sync_mode::normal));
  // Every statement the writer needs prepares now: a file it cannot write
  // fails here, with DB_ERROR, not later inside the persistence actor.
  try {
    store::writer probe{*impl_->db};
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
  impl_->sys = std::make_unique<caf::actor_system>(impl_->sys_cfg);
  impl_->pool = std::make_unique<util::thread_pool>(c.blocking_threads ? c.blocking_threads : 64);
  impl_->persistence = actors::spawn_persistence(*impl_->sys, impl_->db);
  impl_->owner_id = util::make_owner_id();
  // Only a file can carry requests from other processes.
  if (c.db_path != ":memory:" && c.db_path.rfind("file::memory:", 0) != 0) {
    auto* im = impl_.get();
    impl_->poller = impl_->sys->spawn<caf::detached>(
        request_poller, c.db_path, impl_->owner_id,
        [im](const store::owner_request& req) { im->on_owner_request(req); });
  }
}

engine::~engine() {
  std::vector<std::shared_ptr<run_handle::state>> runs;
  {
    std::lock_guard<std::mutex> lk(impl_->mtx);
    runs = impl_->runs;
  }
  for (auto& r : runs)
    run_handle{r}.await_end();
  if (impl_->poller) caf::anon_send_exit(impl_->poller, caf::exit_reason::user_shutdown);
  impl_->poller = nullptr;
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

void validate_run(const workflow& wf, const run_options& opts,
                  const std::function<bool(const std::string&)>& has_compute, bool check_input) {
  if (!opts.run_id.empty())
    if (auto err = util::check_run_id(opts.run_id)) throw smithers_error(*err);
  if (opts.max_concurrency &&
      (*opts.max_concurrency < 1 || *opts.max_concurrency > limits::max_option_value))
    throw smithers_error(errc::invalid_argument,
                         "max_concurrency must be a positive integer up to " +
                             std::to_string(limits::max_option_value) + ", got " +
                             std::to_string(*opts.max_concurrency));
  if (opts.max_output_bytes &&
      (*opts.max_output_bytes < 1 || *opts.max_output_bytes > limits::max_output_bytes_ceiling))
    throw smithers_error(errc::invalid_argument,
                         "max_output_bytes must be from 1 to " +
                             std::to_string(limits::max_output_bytes_ceiling) + ", got " +
                             std::to_string(*opts.max_output_bytes));
  if (check_input)
    if (auto err = util::check_input_bounds(opts.input)) throw smithers_error(*err);
  auto ps = spec::validate_workflow(wf);
  if (!ps.empty())
    throw smithers_error(errc::invalid_workflow, "invalid workflow: " + spec::join(ps),
                         problems_json(ps));
  if (check_input && !wf.input_schema.is_null()) {
    auto ips = spec::validate(wf.input_schema, opts.input);
    if (!ips.empty())
      throw smithers_error(errc::invalid_input,
                           "input does not match the workflow's input schema: " + spec::join(ips),
                           problems_json(ips));
  }
  if (!wf.dynamic()) {
    std::vector<std::pair<std::string, std::string>> names;
    collect_compute_names(wf.root, "root", names);
    spec::problems missing;
    for (const auto& [path, name] : names)
      if (!has_compute(name))
        missing.push_back({path, "no compute function named \"" + name + "\" is registered"});
    if (!missing.empty())
      throw smithers_error(errc::invalid_workflow, "invalid workflow: " + spec::join(missing),
                           problems_json(missing));
  }
}

void engine::validate(const workflow& wf, const run_options& opts) const {
  validate_run(wf, opts, [this](const std::string& name) { return has_compute(name); });
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
  if (ctx->cwd.empty()) {
    std::error_code ec;
    ctx->cwd = std::filesystem::current_path(ec).string();
  }
  {
    std::lock_guard<std::mutex> lk(im.mtx);
    ctx->computes = std::make_shared<const actors::compute_registry>(im.computes);
  }
  // A dynamic workflow is rendered once here so a broken build function is
  // refused before the run exists.
  ctx->first_render = first_render(wf, ctx->run_id, *ctx->input, {});

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
  if (!mark_driven(ctx->run_id))
    throw smithers_error(errc::invalid_run_id,
                         "a run with id \"" + ctx->run_id + "\" already exists");
  try {
    im.write_sync(
        {store::insert_run{row},
         store::append_event{store::event_row{ctx->run_id, 0, started.type, now, started.fields}}});
  } catch (const smithers_error&) {
    set_driven(ctx->run_id, false); // INVALID_RUN_ID from the store when the id exists
    throw;
  }
  auto on_event = opts.on_event;
  if (on_event) call_handler(on_event, started);
  im.publish(started);
  ctx->next_seq = 1;
  ctx->started_ms = now;
  return im.launch(ctx, on_event);
}

namespace {

// A handle for a run that ended before any supervisor was needed.
run_handle ended_handle(run_result r) {
  auto st = std::make_shared<run_handle::state>();
  st->run_id = r.run_id;
  st->result = std::move(r);
  st->done = true;
  return run_handle{st};
}

} // namespace

run_handle engine::resume(std::shared_ptr<const workflow> wf, const std::string& run_id,
                          resume_options opts) {
  if (!wf) throw smithers_error(errc::invalid_argument, "no workflow given");
  if (auto err = util::check_run_id(run_id)) throw smithers_error(*err);
  auto& im = *impl_;
  auto snap = im.load(run_id);
  if (!snap->run) throw smithers_error(errc::run_not_found, "no run with id \"" + run_id + "\"");
  auto refuse_ended = [&](const store::run_row& run) {
    auto status = run_status_from(run.status);
    if (status && is_terminal(*status))
      throw smithers_error(errc::run_not_resumable,
                           "run \"" + run_id + "\" has ended (" + run.status + ")");
  };
  refuse_ended(*snap->run);
  if (driven_here(run_id))
    throw smithers_error(errc::run_owner_alive,
                         "run \"" + run_id + "\" is being driven by this process");
  auto ps = spec::validate_workflow(*wf);
  if (!ps.empty())
    throw smithers_error(errc::invalid_workflow, "invalid workflow: " + spec::join(ps),
                         problems_json(ps));
  {
    // Refusals come before anything is asked of a live owner.
    const store::run_row& run = *snap->run;
    std::string current_hash = opts.workflow_hash;
    if (current_hash.empty()) current_hash = first_render(wf, run_id, run.input, {}).hash;
    json changed = json::array();
    std::string what;
    if (current_hash != run.workflow_hash) {
      changed.push_back(
          {{"field", "workflow_hash"}, {"recorded", run.workflow_hash}, {"current", current_hash}});
      what = "workflow hash";
    }
    if (!run.vcs_revision.empty() && opts.vcs_revision != run.vcs_revision) {
      changed.push_back({{"field", "vcs_revision"},
                         {"recorded", run.vcs_revision},
                         {"current", opts.vcs_revision}});
      what += std::string{what.empty() ? "" : ", "} + "git revision " + run.vcs_revision + " -> " +
              (opts.vcs_revision.empty() ? std::string{"none"} : opts.vcs_revision);
    }
    if (!changed.empty() && !opts.force)
      throw smithers_error(errc::resume_metadata_mismatch,
                           "run \"" + run_id + "\" started from a different workflow (changed: " +
                               what + "); --force resumes anyway",
                           {{"changed", changed}});
  }

  std::int64_t now = util::now_ms();
  auto driver = store::driver_of(*snap->run, now, opts.stale_after.count());
  if (driver == store::run_driver::alive) {
    // This process, no longer driving it (driven_here said so: an
    // interrupted run): nobody drives it.
    auto parsed_owner = util::parse_owner_id(snap->run->owner_id);
    if (util::check_owner(snap->run->owner_id) == util::owner_state::alive && parsed_owner &&
        parsed_owner->pid == static_cast<std::int64_t>(::getpid()))
      driver = store::run_driver::gone;
  }
  bool handover = false;
  if (driver == store::run_driver::alive) {
    const store::run_row& run = *snap->run;
    if (!opts.force) {
      if (util::check_owner(run.owner_id) == util::owner_state::alive)
        throw smithers_error(errc::run_owner_alive,
                             "run \"" + run_id + "\" is owned by process " +
                                 std::to_string(run.owner_pid) + ", which is still running",
                             {{"owner_id", run.owner_id}, {"owner_pid", run.owner_pid}});
      throw smithers_error(errc::run_still_running,
                           "run \"" + run_id + "\" has a heartbeat from " +
                               std::to_string((now - run.heartbeat_ms) / 1000) +
                               " s ago (stale after " +
                               std::to_string(opts.stale_after.count() / 1000) + " s)",
                           {{"owner_id", run.owner_id}, {"heartbeat_ms", run.heartbeat_ms}});
    }
    // Forced while the owner lives: a handover, never two drivers. Ask the
    // owner (durably, as a cancel request) to stop and let go; claim the run
    // only once it has — or once it is gone.
    im.write_sync({store::request_handover{run_id, run.owner_id, im.owner_id}});
    auto deadline = std::chrono::steady_clock::now() + opts.handover_timeout;
    for (;;) {
      auto current = im.read_run(run_id);
      if (current.owner_id != run.owner_id) break; // released (or claimed by another)
      if (auto st = run_status_from(current.status); st && is_terminal(*st)) break;
      if (util::check_owner(run.owner_id) == util::owner_state::dead) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        im.write_sync({store::withdraw_handover{run_id, im.owner_id}});
        throw smithers_error(errc::run_owner_alive,
                             "run \"" + run_id + "\" is owned by process " +
                                 std::to_string(run.owner_pid) +
                                 ", which did not hand it over within " +
                                 std::to_string(opts.handover_timeout.count() / 1000) +
                                 " s; it may be hung: stop it (kill " +
                                 std::to_string(run.owner_pid) + ") and resume again",
                             {{"owner_id", run.owner_id}, {"owner_pid", run.owner_pid}});
      }
      std::this_thread::sleep_for(handover_poll_interval);
    }
    // What the owner wrote as it let go.
    snap = im.load(run_id);
    refuse_ended(*snap->run);
    handover = true;
  }
  const store::run_row& run = *snap->run;

  // A cancellation requested while nobody drove the run is honoured before
  // anything starts.
  if (run.cancel_requested) {
    error why{errc::run_cancelled,
              "cancelled: a cancellation was requested while no process drove the run"};
    im.cancel_unowned(run_id, why);
    return ended_handle(run_result{run_id, run_status::cancelled, why, {}});
  }

  auto ctx = std::make_shared<actors::run_context>();
  ctx->run_id = run_id;
  ctx->wf = wf;
  ctx->input = std::make_shared<const json>(run.input);
  ctx->max_concurrency = run.config.value("max_concurrency", im.cfg.default_max_concurrency);
  ctx->max_output_bytes = run.config.value("max_output_bytes", im.cfg.max_output_bytes);
  ctx->cwd = run.cwd;
  {
    std::lock_guard<std::mutex> lk(im.mtx);
    ctx->computes = std::make_shared<const actors::compute_registry>(im.computes);
  }
  actors::resume_state r;
  r.previous_owner = run.owner_id;
  r.forced = opts.force;
  r.handover = handover;
  r.next_frame = snap->frames;
  for (auto& o : snap->outputs)
    r.outputs[o.node_id] = std::move(o.value);
  ctx->first_render = first_render(wf, run_id, *ctx->input, r.outputs);
  for (const auto& n : snap->nodes) {
    auto s = node_state_from(n.state).value_or(node_state::pending);
    // Whatever was in flight or cancelled runs again.
    if (s == node_state::in_progress || s == node_state::cancelled) s = node_state::pending;
    r.states[n.node_id] = s;
  }
  std::unordered_map<std::string, const store::attempt_row*> last;
  std::vector<json> orphan_groups; // commands the dead owner left running
  for (const auto& a : snap->attempts) {
    r.attempts[a.node_id] = std::max(r.attempts[a.node_id], a.attempt);
    if (a.state == attempt_state::in_progress) {
      r.orphaned.emplace_back(a.node_id, a.attempt);
      if (a.meta.is_object() && a.meta.contains("pgid")) orphan_groups.push_back(a.meta);
    }
    if (!a.heartbeat.is_null()) r.checkpoints[a.node_id] = a.heartbeat;
    last[a.node_id] = &a;
  }
  for (const auto& [id, a] : last) {
    if (a->state == attempt_state::failed && r.states[id] == node_state::pending &&
        a->meta.is_object() && a->meta.contains("retry_at_ms"))
      r.retry_at_ms[id] = a->meta["retry_at_ms"].get<std::int64_t>();
  }
  // Claim last: a refused resume writes nothing.
  if (!mark_driven(run_id))
    throw smithers_error(errc::run_owner_alive,
                         "run \"" + run_id + "\" is being driven by this process");
  try {
    im.write_sync({store::claim_run{run_id, run.owner_id, run.heartbeat_ms, im.owner_id,
                                    static_cast<std::int64_t>(::getpid()), now}});
  } catch (...) {
    set_driven(run_id, false);
    throw;
  }
  // No process of an attempt outlives it: end what the dead owner left
  // running before those attempts run again.
  impl::end_groups(orphan_groups);
  ctx->resume = std::move(r);
  ctx->next_seq = snap->max_seq + 1;
  ctx->started_ms = run.created_ms;
  return im.launch(ctx, opts.on_event);
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
