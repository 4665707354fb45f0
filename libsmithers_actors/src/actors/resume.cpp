// engine::resume: reading a stored run, the refusals, a handover from a live
// owner, the compare-and-set claim, and a supervisor started from the
// recovered state.
#include "actors/engine_impl.hpp"
#include "actors/ownership.hpp"
#include "actors/run_handle.hpp"
#include "core/recovery.hpp"
#include "core/run_validation.hpp"
#include "store/cancel.hpp"
#include "store/writer.hpp"
#include "util/clock.hpp"
#include "util/ids.hpp"
#include "util/owner.hpp"

#include <smithers/metrics.hpp>

#include <unistd.h>

#include <chrono>
#include <thread>
#include <unordered_set>

namespace smithers {

namespace {

// A forced resume polls the run this often while its owner lets go of it.
constexpr std::chrono::milliseconds handover_poll_interval{50};

} // namespace

run_handle engine::resume(std::shared_ptr<const workflow> wf, const std::string& run_id,
                          resume_options opts) {
  if (!wf) throw smithers_error(errc::invalid_argument, "no workflow given");
  if (auto err = util::check_run_id(run_id)) throw smithers_error(*err);
  auto& im = *impl_;
  auto snap = im.load(run_id);
  if (!snap->run) throw smithers_error(errc::run_not_found, "no run with id \"" + run_id + "\"");
  core::refuse_ended(*snap->run);
  if (actors::driven_here(run_id))
    throw smithers_error(errc::run_owner_alive,
                         "run \"" + run_id + "\" is being driven by this process");
  core::check_workflow(*wf);
  {
    // Refusals come before anything is asked of a live owner.
    const store::run_row& run = *snap->run;
    std::string current_hash = opts.workflow_hash;
    if (current_hash.empty())
      current_hash = core::first_render(wf, run_id, run.input, {}).hash;
    core::check_same_workflow(run, current_hash, opts.vcs_revision, opts.force);
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
    core::refuse_ended(*snap->run);
    handover = true;
  }
  const store::run_row& run = *snap->run;
  // A resumed run's events do not name its workflow; its metrics do.
  if (im.cfg.metrics) im.cfg.metrics->note_run(run_id, run.workflow_name);

  // A failed or cancelled run driven again (docs/waiting.md, "Retrying").
  auto stored_status = run_status_from(run.status);
  bool retry = stored_status == run_status::failed || stored_status == run_status::cancelled;
  // A cancellation requested while nobody drove the run is honoured before
  // anything starts (a retried run's old request is cleared by its claim).
  if (run.cancel_requested && !retry) {
    error why{errc::run_cancelled,
              "cancelled: a cancellation was requested while no process drove the run"};
    im.cancel_unowned(run_id, why);
    return actors::ended_handle(run_result{run_id, run_status::cancelled, why, {}, {}, {}});
  }

  auto ctx = std::make_shared<actors::run_context>();
  ctx->run_id = run_id;
  ctx->wf = wf;
  ctx->input = std::make_shared<const json>(run.input);
  ctx->max_concurrency = run.config.value("max_concurrency", im.cfg.default_max_concurrency);
  ctx->max_output_bytes = run.config.value("max_output_bytes", im.cfg.max_output_bytes);
  ctx->cwd = run.cwd;
  ctx->computes = im.computes_snapshot();
  ctx->release_when_waiting = opts.release_when_waiting;
  auto rec = core::recover(snap->nodes, snap->attempts, snap->outputs, snap->loops, retry);
  actors::resume_state& r = rec.state;
  r.retry = retry;
  r.previous_status = run.status;
  r.waits = std::move(snap->waits);
  r.inbox = std::move(snap->inbox);
  r.previous_owner = run.owner_id;
  r.forced = opts.force;
  r.handover = handover;
  r.next_frame = snap->frames;
  // Control flow is decided as the run left it: by the nodes that ended.
  std::unordered_set<node_key, node_key_hash> ended;
  for (const auto& [k, st] : r.states)
    if (st == node_state::finished || st == node_state::failed || st == node_state::skipped)
      ended.insert(k);
  ctx->first_render = core::first_render(wf, run_id, *ctx->input, r.outputs, &ended, &r.loops);
  // Claim last: a refused resume writes nothing.
  if (!actors::mark_driven(run_id))
    throw smithers_error(errc::run_owner_alive,
                         "run \"" + run_id + "\" is being driven by this process");
  try {
    im.write_sync({store::claim_run{run_id, run.owner_id, run.heartbeat_ms, im.owner_id,
                                    static_cast<std::int64_t>(::getpid()), now}});
  } catch (...) {
    actors::set_driven(run_id, false);
    throw;
  }
  // No process of an attempt outlives it: end what the dead owner left
  // running before those attempts run again.
  impl::end_groups(rec.orphan_groups);
  ctx->resume = std::move(r);
  ctx->next_seq = snap->max_seq + 1;
  ctx->started_ms = run.created_ms;
  return im.launch(ctx, opts.on_event);
}

} // namespace smithers
