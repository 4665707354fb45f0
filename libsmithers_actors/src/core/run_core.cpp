#include "core/run_core.hpp"

#include "core/retry.hpp"
#include "executors/executor.hpp"
#include "expr/predicate.hpp"
#include "format/validate.hpp"
#include "util/clock.hpp"
#include "util/ids.hpp"
#include "util/json_bounds.hpp"
#include "util/json_parse.hpp"

#include <algorithm>
#include <string_view>
#include <unordered_set>

namespace smithers::core {

namespace {

const error& unmounted_error() {
  static const error e{errc::task_aborted,
                       "unmounted: a re-render removed the node while this attempt ran"};
  return e;
}

// A node back after a render left it out keeps what it had: a finished
// node is never executed again (its output was kept); one stopped when it
// was dropped runs again.
node_state returning_state(const char* written) {
  auto s = node_state_from(written).value_or(node_state::pending);
  return s == node_state::finished || s == node_state::failed || s == node_state::skipped
             ? s
             : node_state::pending;
}

// A key's first 8 bytes as a big-endian number, zero-padded: comparing two
// of them orders strings as std::string does, except when they are equal.
std::uint64_t key_prefix(const std::string& k) {
  std::uint64_t p = 0;
  for (std::size_t i = 0; i < 8; ++i)
    p = (p << 8) | (i < k.size() ? static_cast<unsigned char>(k[i]) : 0u);
  return p;
}

} // namespace

run_core::run_core(run_config cfg, clock_fn clock, std::uint64_t seed)
    : cfg_(std::move(cfg)), clock_(clock ? std::move(clock) : clock_fn{util::now_ms}), rng_(seed),
      builder_(cfg_.wf, cfg_.computes, cfg_.remote_computes), log_(cfg_.run_id, cfg_.next_seq) {
  result_.run_id = cfg_.run_id;
}

std::optional<node_state> run_core::written_state(const node_key& k) const {
  const char* w = nullptr;
  sched::index t = plan_ ? plan_->find(k) : -1;
  if (t >= 0) {
    w = table_.at(t).written;
  } else if (auto it = table_.dropped().find(k); it != table_.dropped().end()) {
    w = it->second.written;
  }
  if (!w) return std::nullopt;
  return node_state_from(w);
}

std::int64_t run_core::attempts_of(const node_key& k) const {
  sched::index t = plan_ ? plan_->find(k) : -1;
  if (t >= 0) return table_.at(t).attempts;
  auto it = table_.dropped().find(k);
  return it == table_.dropped().end() ? 0 : it->second.attempts;
}

bool run_core::is_live(const attempt_key& a) const {
  auto it = live_.find(a.node);
  return it != live_.end() && it->second.attempt == a.attempt;
}

void run_core::node_row(sched::index t, const node_key& k, node_state s) {
  const task_spec* spec = t >= 0 ? plan_->specs[static_cast<std::size_t>(t)].get() : nullptr;
  store::node_row r;
  r.run_id = cfg_.run_id;
  r.node_id = k.id;
  r.iteration = k.iteration;
  r.state = to_string(s);
  r.attempts = table_.slot(t, k).attempts;
  if (spec) {
    r.label = spec->label;
    r.kind = to_string(spec->kind);
  }
  r.updated_ms = now();
  table_.note_state(t, k, to_string(s));
  writes_.push_back(store::upsert_node{std::move(r)});
  // A value's output reaches outputs_ only once committed (on_committed):
  // it has ended for control flow from then on.
  bool value_output =
      s == node_state::finished && spec && (spec->kind == task_kind::value || is_wait(spec->kind));
  // Kept when control flow may read it: a tree with control flow, or a
  // build function that may return one later.
  bool track = tree_.control || cfg_.wf->dynamic();
  if (track && !value_output &&
      (s == node_state::finished || s == node_state::failed || s == node_state::skipped)) {
    // A branch or for_each reading this node may be decided now, output or not.
    ended_.insert(k);
    if (tree_.reads_any || tree_.control_reads.count(std::string{base_id(k.id)}))
      control_dirty_ = true;
  }
}

// Nodes entering the run: pending rows and NodePending events, in one
// compact command (a large tree is announced without a row object and an
// event object per node).
void run_core::add_pending(const std::vector<sched::index>& tasks) {
  if (tasks.empty()) return;
  auto nodes = std::make_shared<std::vector<store::pending_node>>();
  nodes->reserve(tasks.size());
  // Sized once for the tree: growing a 100,000-entry map rehashes it a
  // dozen times, each a pass of cache misses over every entry.
  outputs_.reserve(outputs_.size() + tasks.size());
  for (auto t : tasks) {
    const node_key& k = plan_->keys[static_cast<std::size_t>(t)];
    const task_spec* spec = plan_->specs[static_cast<std::size_t>(t)].get();
    nodes->push_back({k, spec ? spec->label : std::string(),
                      spec ? std::string(to_string(spec->kind)) : std::string()});
    table_.note_state(t, k, to_string(node_state::pending));
  }
  std::int64_t at = now();
  auto pe = log_.announce(nodes, at);
  writes_.push_back(store::add_pending_nodes{cfg_.run_id, std::move(nodes), pe.first_seq, at});
}

// The command that ends an attempt (its output, if any, goes with it).
store::finish_attempt run_core::finish_cmd(const attempt_key& a, const char* state,
                                           std::int64_t at_ms, json err) const {
  store::finish_attempt fa;
  fa.run_id = cfg_.run_id;
  fa.key = a;
  fa.state = state;
  fa.finished_ms = at_ms;
  fa.error = std::move(err);
  return fa;
}

void run_core::queue_tick() {
  if (!tick_queued_) {
    tick_queued_ = true;
    fx_.tick = true;
  }
}

void run_core::maybe_frame() {
  auto f = table_.take_frame(*plan_, *cfg_.input, tree_changed_, loops_, loops_changed_);
  loops_changed_.clear();
  if (!f) return;
  store::frame_row row;
  row.run_id = cfg_.run_id;
  row.frame_no = frame_no_;
  row.tree_hash = tree_.hash;
  std::shared_ptr<const std::string> tree_text;
  if (tree_changed_) tree_text = tree_.canonical;
  row.created_ms = now();
  row.keyframe = f->keyframe;
  writes_.push_back(store::store_frame{std::move(row), std::move(tree_text), std::move(f->text)});
  emit(event_type::frame_committed, "frame_no", frame_no_, "tree_hash", tree_.hash, "changes",
       f->changes, "keyframe", f->keyframe);
  emit(event_type::snapshot_captured, "frame_no", frame_no_, "keyframe", f->keyframe, "nodes",
       f->nodes);
  tree_changed_ = false;
  ++frame_no_;
}

// Compiles the current tree and returns the tasks new to the run. Node
// states and slots carry over by key: from the previous plan on a
// re-render, states from `known` on a resume. Tasks the new plan drops keep
// their slots (node_table) and come back with them.
std::vector<sched::index> run_core::rebuild(const key_map<node_state>& known) {
  auto plan = std::make_unique<sched::plan>(sched::compile(*tree_.root));
  const std::size_t n = plan->task_count();
  std::vector<sched::index> old_index;
  std::vector<char> returning;
  table_.replan(plan_.get(), *plan, old_index, returning);
  std::vector<node_state> initial(n, node_state::pending);
  std::vector<sched::index> fresh;
  std::vector<sched::index> back_to_pending; // returning, to run again
  for (std::size_t t = 0; t < n; ++t) {
    const node_key& k = plan->keys[t];
    if (old_index[t] >= 0) {
      initial[t] = sched_->state(old_index[t]);
      continue;
    }
    const task_slot& sl = table_.at(static_cast<sched::index>(t));
    if (returning[t] && live_.count(k)) {
      // Back while the attempt it had when it was dropped is being
      // stopped: in flight until that attempt ends, then it runs again
      // (attempt_failed) — never two attempts of one node at once.
      initial[t] = node_state::in_progress;
      continue;
    }
    if (auto it = known.find(k); it != known.end())
      initial[t] = it->second;
    else if (returning[t] && sl.written)
      initial[t] = returning_state(sl.written);
    else
      fresh.push_back(static_cast<sched::index>(t));
    if (returning[t] && initial[t] == node_state::pending && sl.written &&
        std::string_view{sl.written} != to_string(node_state::pending))
      back_to_pending.push_back(static_cast<sched::index>(t));
  }
  for (auto& [k, la] : live_) {
    la.task = plan->find(k);
    // Dropped while it runs: stopped, and recorded cancelled ("unmounted")
    // once it has; the run does not end before (check_end).
    if (la.task < 0 && !la.unmounted) {
      la.unmounted = true;
      if (la.launched) fx_.stops.push_back({{k, la.attempt}, unmounted_error()});
    }
  }
  auto s = std::make_unique<sched::scheduler>(*plan, cfg_.max_concurrency, initial);
  // The old scheduler refers to the old plan: replace both together.
  sched_ = std::move(s);
  plan_ = std::move(plan);
  ++plan_gen_;
  // A node waiting out a retry's backoff goes on waiting: the new
  // scheduler knows states, and "pending" does not say so. Its timer
  // releases it (on_retry_due), as after a resume.
  for (const auto& [k, rt] : retries_)
    if (sched::index t = plan_->find(k); t >= 0) sched_->hold(t);
  for (auto t : back_to_pending)
    node_row(t, plan_->keys[static_cast<std::size_t>(t)], node_state::pending);
  return fresh;
}

void run_core::start() {
  tree_ = std::move(cfg_.first_render);
  // The first render knew outputs but not which nodes ended without one:
  // control flow is decided again at the first tick.
  control_dirty_ = tree_.control;
  if (cfg_.resume) {
    resume(*cfg_.resume);
    return;
  }
  add_pending(rebuild({}));
  mount_loops();
  queue_tick();
}

// Continues a run from the store: attempts the dead owner left in flight
// are recorded cancelled and their nodes run again; finished nodes keep
// their outputs and never run again; backoffs still running are waited out.
void run_core::resume(resume_state& r) {
  outputs_ = std::move(r.outputs);
  history_ = std::move(r.history);
  latest_ = std::move(r.latest);
  for (const auto& [k, out] : history_)
    history_ids_.emplace(base_id(k.id));
  loops_ = std::move(r.loops);
  checkpoints_ = std::move(r.checkpoints);
  frame_no_ = r.next_frame;
  if (tree_.control || cfg_.wf->dynamic())
    for (const auto& [k, st] : r.states)
      if (st == node_state::finished || st == node_state::failed || st == node_state::skipped)
        ended_.insert(k);
  std::int64_t at = now();
  error lost{errc::task_aborted,
             "the process driving the run ended while this attempt was in flight"};
  for (const auto& a : r.orphaned) {
    writes_.push_back(finish_cmd(a, attempt_state::cancelled, at, lost.to_json()));
    emit_node(event_type::node_cancelled, a.node, "attempt", a.attempt, "reason",
              cancel_reason::interrupted, "error", lost.to_json());
  }
  // Who resumed it (this owner: host, pid), from what, and why.
  emit(event_type::run_resumed, "by", cfg_.owner_id, "previous_owner", r.previous_owner,
       "previous_status", r.previous_status, "orphaned_attempts", r.orphaned.size(), "forced",
       r.forced, "handover", r.handover, "retry", r.retry);
  retry_base_ = std::move(r.retry_base);
  lost_streak_ = std::move(r.lost_streak);
  disabled_agents_ = std::move(r.disabled_agents);
  // The claim set the run running again: after a wait, a failure, a cancel.
  if (!r.previous_status.empty() && r.previous_status != to_string(run_status::running))
    emit(event_type::run_status_changed, "status", to_string(run_status::running), "previous",
         r.previous_status);
  // Waiting nodes are pending to the scheduler, held until their outcome.
  key_map<node_state> known = r.states;
  for (auto& [k, st] : known)
    if (st == node_state::waiting_approval || st == node_state::waiting_timer ||
        st == node_state::waiting_event)
      st = node_state::pending;
  auto added = rebuild(known);
  // As stored: nodes no longer in the tree keep theirs in keyframes.
  for (const auto& [k, state] : r.states)
    table_.set_written(table_.slot(plan_->find(k), k), to_string(state));
  for (const auto& [k, count] : r.attempts)
    table_.slot(plan_->find(k), k).attempts = count;
  key_map<char> orphans;
  for (const auto& o : r.orphaned)
    orphans.emplace(o.node, 1);
  for (std::size_t t = 0; t < plan_->task_count(); ++t) {
    const node_key& k = plan_->keys[t];
    if (orphans.count(k) && r.states.count(k))
      node_row(static_cast<sched::index>(t), k, node_state::pending);
  }
  // A retried run's failed and cancelled nodes run again.
  for (const auto& k : r.retried)
    if (sched::index t = plan_->find(k); t >= 0 && !orphans.count(k))
      node_row(t, k, node_state::pending);
  // An interrupted node the resumed workflow no longer has (resumed with
  // another --workflow) will not run again here: not in-progress forever.
  for (const auto& [k, unused] : orphans)
    if (plan_->find(k) < 0) {
      node_row(-1, k, node_state::cancelled);
      emit_node(event_type::node_cancelled, k, "reason", cancel_reason::unmounted);
    }
  add_pending(added);
  for (const auto& id : r.failed_loops)
    write_loop(id, "running");
  mount_loops();
  restore_waits(r);
  for (const auto& [k, retry_at] : r.retry_at_ms) {
    sched::index t = plan_->find(k);
    if (t < 0) continue;
    retries_[k] = pending_retry{retry_at, nullptr};
    sched_->hold(t);
    fx_.timers.push_back({k, std::max<std::int64_t>(0, retry_at - at)});
  }
  queue_tick();
}

void run_core::rerender() {
  dirty_ = false;
  control_dirty_ = false;
  render_context rc{cfg_.run_id, cfg_.input.get(), &outputs_, &ended_, &loops_};
  rendered_tree next;
  try {
    next = render(cfg_.wf, rc);
  } catch (const smithers_error& e) {
    // What render refuses with a code of its own (a for_each's items that
    // are not an array: INVALID_INPUT) keeps it.
    fail_run(e.err());
    return;
  } catch (const std::exception& e) {
    fail_run(error{errc::invalid_workflow, std::string{"rendering the workflow failed: "} + e.what()});
    return;
  }
  if (next.hash == tree_.hash) return;
  // What a build function returns is checked (a static tree was, before the
  // run); deciding control flow only ever picks parts of a checked tree.
  auto ps = cfg_.wf->dynamic() ? spec::validate_tree(*cfg_.wf, *next.source) : spec::problems{};
  if (!ps.empty()) {
    fail_run(error{errc::invalid_workflow, "the workflow rendered an invalid tree: " + spec::join(ps)});
    return;
  }
  tree_ = std::move(next);
  tree_changed_ = true;
  add_pending(rebuild({}));
  mount_loops();
  drop_unmounted_waits();
}

// A waiting node a render dropped waits no more: recorded cancelled
// (reason unmounted); if a render brings it back, it waits anew.
void run_core::drop_unmounted_waits() {
  for (auto it = waits_.begin(); it != waits_.end();) {
    if (plan_->find(it->first) >= 0) {
      ++it;
      continue;
    }
    write_wait(it->first, it->second, "cancelled");
    node_row(-1, it->first, node_state::cancelled);
    emit_node(event_type::node_cancelled, it->first, "reason", cancel_reason::unmounted);
    it = waits_.erase(it);
  }
}

// Loops a render mounted for the first time start at iteration 0.
void run_core::mount_loops() {
  for (const auto& l : plan_->loops) {
    if (loops_.count(l.id)) continue;
    loops_.emplace(l.id, loop_state{});
    write_loop(l.id, "running");
    emit(event_type::loop_iteration_started, "loop_id", l.id, "iteration", 0);
  }
}

void run_core::write_loop(const std::string& id, const char* state) {
  store::loop_row row;
  row.run_id = cfg_.run_id;
  row.loop_id = id;
  row.iteration = loops_[id].iteration;
  row.state = state;
  row.updated_ms = now();
  writes_.push_back(store::upsert_loop{std::move(row)});
  loops_changed_.push_back(id);
}

// Loops whose iteration's body is done: `until` is evaluated on the outputs
// (what this core has recorded; written before the loop's new state, in
// the same batch or an earlier one), then the next iteration starts or the
// loop ends. Either way the tree is rendered again.
void run_core::advance_loops() {
  bool changed = false;
  for (auto li : sched_->take_loops_ready()) {
    const sched::plan_loop& l = plan_->loops[static_cast<std::size_t>(li)];
    auto it = loops_.find(l.id);
    if (it == loops_.end() || it->second.done || it->second.iteration != l.iteration) continue;
    loop_state& st = it->second;
    changed = true;
    bool holds = !l.until.is_null() && spec::evaluate(l.until, *cfg_.input, outputs_);
    if (!holds && st.iteration + 1 < l.max_iterations) {
      if (l.continue_as_new_every && (st.iteration + 1) % *l.continue_as_new_every == 0) {
        // The next iteration starts in the successor run: this one lets
        // what is in flight finish and ends `continued` (continue_run),
        // recording the loop's state only then — a crash before leaves
        // it where it was, and the resume decides again.
        continue_loops_.push_back(l.id); // two loops may reach theirs at once
        stop(stop_mode::continue_as_new, error{});
        continue;
      }
      ++st.iteration;
      write_loop(l.id, "running");
      emit(event_type::loop_iteration_started, "loop_id", l.id, "iteration", st.iteration);
      continue;
    }
    st.done = true;
    bool failed = !holds && l.fail_on_max;
    write_loop(l.id, failed ? "failed" : "finished");
    emit(event_type::loop_finished, "loop_id", l.id, "iteration", st.iteration, "iterations",
         st.iteration + 1, "reason", holds ? "until" : "max_iterations");
    if (failed) {
      fail_run(error{errc::loop_max_reached,
                     "loop \"" + l.id + "\" ran " + std::to_string(l.max_iterations) +
                         " iterations (max_iterations) without its `until` holding",
                     {{"loop_id", l.id}, {"max_iterations", l.max_iterations}}});
      return;
    }
  }
  if (changed) control_dirty_ = true;
}

// A committed output: the latest of its node for templates and predicates;
// inside a loop, also kept by key for {{outputs.X@N}}.
void run_core::record_output(const node_key& k, sched::index t, json output) {
  std::string id{base_id(k.id)};
  bool looped = k.iteration > 0 || id.size() != k.id.size() ||
                (t >= 0 && plan_->in_loop[static_cast<std::size_t>(t)]);
  if (looped) {
    // Its first looped output since a resume or a continuation, whose only
    // earlier one (iteration 0, carried as the latest) is in outputs_ alone.
    if (!history_ids_.count(id) && !latest_.count(id))
      if (auto old = outputs_.find(id); old != outputs_.end() && !(k == node_key{id, 0}))
        history_.emplace(node_key{id, 0}, old->second);
    history_[k] = output;
    history_ids_.insert(id);
    latest_[id] = k; // others' latest is (id, 0)
  }
  outputs_[std::move(id)] = std::move(output);
}

// {{outputs.<id>@N}} read by a task: iteration N of that node — inside
// nested loops, in the outer iterations render resolved for the reader
// (task_spec::output_ids).
const json* run_core::output_at(const task_spec& reader, std::string_view id,
                                std::int64_t iteration) const {
  std::string key_id{id};
  if (auto it = reader.output_ids.find(key_id); it != reader.output_ids.end())
    key_id = it->second;
  if (auto it = history_.find(node_key{key_id, iteration}); it != history_.end())
    return &it->second;
  // A node outside loops has iteration 0 only.
  if (iteration == 0 && !history_ids_.count(std::string{id}))
    if (auto it = outputs_.find(std::string{id}); it != outputs_.end()) return &it->second;
  return nullptr;
}

store::attempt_row run_core::attempt_row(const node_key& k, std::int64_t attempt, const char* state,
                                         std::int64_t started_ms) const {
  store::attempt_row ar;
  ar.run_id = cfg_.run_id;
  ar.node_id = k.id;
  ar.iteration = k.iteration;
  ar.attempt = attempt;
  ar.state = state;
  ar.started_ms = started_ms;
  return ar;
}

void run_core::start_task(sched::index t) {
  const node_key& k = plan_->keys[static_cast<std::size_t>(t)];
  const auto& spec = plan_->specs[static_cast<std::size_t>(t)];
  if ((is_wait(spec->kind) || spec->approval) && wait_step(t)) return;
  std::int64_t attempt = ++table_.slot(t, k).attempts;
  std::int64_t at = now();
  if (spec->kind == task_kind::value) {
    resolve_value(t, attempt, at);
    return;
  }
  attempt_inputs in;
  in.run_id = &cfg_.run_id;
  in.input = &cfg_.input;
  in.outputs = &outputs_;
  auto cp = checkpoints_.find(k);
  in.checkpoint = cp == checkpoints_.end() ? nullptr : &cp->second;
  in.base_cwd = &cfg_.cwd;
  in.max_output_bytes = cfg_.max_output_bytes;
  in.output_at = [this, &spec](std::string_view id, std::int64_t n) {
    return output_at(*spec, id, n);
  };
  in.disabled_agents = &disabled_agents_;
  if (spec->kind == task_kind::agent)
    if (auto b = retry_base_.find(k); b != retry_base_.end()) in.chain_turn = attempt - b->second;
  std::shared_ptr<executors::task_job> job;
  std::optional<error> cannot_build;
  try {
    job = builder_.build(k, attempt, spec, in);
  } catch (const smithers_error& e) {
    cannot_build = e.err();
  }
  // A cached output for exactly this work: nothing runs.
  if (job && !job->cache_key.empty() && cfg_.cache) {
    if (auto hit = cfg_.cache->find(job->cache_key); hit != cfg_.cache->end()) {
      finish_cached(t, attempt, at, job->cache_key, hit->second);
      return;
    }
  }
  store::attempt_row ar = attempt_row(k, attempt, attempt_state::in_progress, at);
  const bool agent = job && job->request.kind == task_kind::agent;
  if (agent) ar.meta = {{"agent", {{"id", job->request.agent.id}}}};
  writes_.push_back(store::insert_attempt{std::move(ar)});
  node_row(t, k, node_state::in_progress);
  if (agent)
    emit_node(event_type::node_started, k, "attempt", attempt, "agent", job->request.agent.id);
  else
    emit_node(event_type::node_started, k, "attempt", attempt);
  live_attempt la;
  la.attempt = attempt;
  la.task = t;
  la.started_ms = at;
  if (job) la.cache_key = job->cache_key;
  if (agent) la.agent = job->request.agent.id;
  live_.emplace(k, std::move(la));
  if (cannot_build) {
    attempt_failed({k, attempt}, *cannot_build);
    return;
  }
  batch_.launches.push_back({{k, attempt}, std::move(job)});
}

// A cache hit: the attempt is recorded started, finished and cached in this
// batch, with the stored output; like a value task's, it reaches the
// scheduler (and its dependents) after the commit.
void run_core::finish_cached(sched::index t, std::int64_t attempt, std::int64_t at,
                             const std::string& key, const json& output) {
  const node_key& k = plan_->keys[static_cast<std::size_t>(t)];
  store::attempt_row ar = attempt_row(k, attempt, attempt_state::finished, at);
  ar.finished_ms = at;
  ar.output = output;
  ar.cached = true;
  writes_.push_back(store::insert_attempt{std::move(ar)});
  emit_node(event_type::node_started, k, "attempt", attempt);
  emit_node(event_type::cache_hit, k, "attempt", attempt, "key", key);
  node_row(t, k, node_state::finished);
  emit_node(event_type::node_finished, k, "attempt", attempt, "duration_ms", 0, "cached", true,
            "output", output);
  ++batch_.results;
  batch_.values.push_back({k, t, plan_gen_, output});
}

// A value task has nothing to run, time out or watch: the core checks the
// value against its schema and records the attempt, started and ended, in
// this batch. Nothing is launched for it. Like any output, it reaches the
// scheduler (and its dependents) only after the commit.
void run_core::resolve_value(sched::index t, std::int64_t attempt, std::int64_t at) {
  const node_key& k = plan_->keys[static_cast<std::size_t>(t)];
  const auto& spec = plan_->specs[static_cast<std::size_t>(t)];
  executors::task_request req;
  req.run_id = cfg_.run_id;
  req.key = k;
  req.attempt = attempt;
  req.kind = task_kind::value;
  req.value = spec->value;
  req.output_schema = builder_.schema_for(spec);
  req.max_output_bytes = cfg_.max_output_bytes;
  executors::task_outcome oc = executors::resolve_value(std::move(req));
  // A failure is recorded by attempt_failed.
  store::attempt_row ar =
      attempt_row(k, attempt, oc.err ? attempt_state::in_progress : attempt_state::finished, at);
  if (!oc.err) {
    // Started and finished in one row, its output on it.
    ar.finished_ms = at;
    ar.output = *oc.output;
  }
  writes_.push_back(store::insert_attempt{std::move(ar)});
  emit_node(event_type::node_started, k, "attempt", attempt);
  if (oc.err) {
    live_attempt la;
    la.attempt = attempt;
    la.task = t;
    la.started_ms = at;
    live_.emplace(k, la);
    attempt_failed({k, attempt}, *oc.err);
    return;
  }
  node_row(t, k, node_state::finished);
  emit_node(event_type::node_finished, k, "attempt", attempt, "duration_ms", 0, "output",
            *oc.output);
  ++batch_.results;
  batch_.values.push_back({k, t, plan_gen_, std::move(*oc.output)});
}

// The attempt row is committed: now the work may run.
void run_core::launch(const pending_launch& pl) {
  auto it = live_.find(pl.key.node);
  if (it == live_.end() || it->second.attempt != pl.key.attempt) return; // ended meanwhile
  // A continue-as-new lets attempts whose start is durable run: it waits
  // for them like for any attempt in flight.
  bool stopping = stopping_ != stop_mode::none && stopping_ != stop_mode::continue_as_new;
  if (stopping || it->second.unmounted) {
    attempt_failed(pl.key, it->second.unmounted ? unmounted_error() : stop_error_);
    return;
  }
  if (ending_) {
    // The run failed while this start was being committed: it never ran.
    end_live(pl.key.node);
    writes_.push_back(finish_cmd(
        pl.key, attempt_state::cancelled, now(),
        error{errc::task_aborted, "the run ended before this attempt started"}.to_json()));
    flush();
    return;
  }
  it->second.launched = true;
  fx_.launches.push_back(pl.job);
}

void run_core::write_heartbeat(const node_key& k, live_attempt& la, std::int64_t at_ms,
                               const json& data, bool has_data) {
  store::record_heartbeat rh;
  rh.run_id = cfg_.run_id;
  rh.key = {k, la.attempt};
  rh.heartbeat_ms = at_ms;
  rh.has_data = has_data;
  if (has_data) rh.data = data;
  std::size_t bytes = has_data ? data.dump().size() : 0;
  writes_.push_back(std::move(rh));
  std::int64_t interval = at_ms - (la.last_hb_write_ms ? la.last_hb_write_ms : la.started_ms);
  emit_node(event_type::task_heartbeat, k, "attempt", la.attempt, "has_data", has_data,
            "data_bytes", bytes, "interval_ms", interval);
  la.last_hb_write_ms = at_ms;
  if (has_data) checkpoints_[k] = data;
}

void run_core::on_heartbeat(const attempt_key& a, std::int64_t at_ms, const json& data,
                            bool has_data) {
  auto it = live_.find(a.node);
  if (it == live_.end() || it->second.attempt != a.attempt)
    return; // a late heartbeat of an attempt that has ended
  write_heartbeat(a.node, it->second, at_ms, data, has_data);
  queue_tick();
}

// Removes an attempt from the live set, writing its final heartbeat (the
// outcome carries it) if none newer was written.
run_core::live_attempt run_core::end_live(const node_key& k, const executors::last_heartbeat* beat) {
  auto it = live_.find(k);
  live_attempt la = std::move(it->second);
  live_.erase(it);
  // >=: beats within one millisecond of the last write may carry newer data.
  if (beat && beat->at_ms > 0 && beat->at_ms >= la.last_hb_write_ms)
    write_heartbeat(k, la, beat->at_ms, beat->data, beat->has_data);
  if (la.launched) fx_.ended.push_back({k, la.attempt});
  return la;
}

void run_core::on_result(const attempt_key& a, const executors::task_outcome& oc) {
  auto it = live_.find(a.node);
  if (it == live_.end() || it->second.attempt != a.attempt) return;
  // An attempt of a node a render dropped was asked to stop: whatever it
  // returns, it is recorded cancelled (its node runs again if it returns).
  const json* meta = oc.meta.is_object() && !oc.meta.empty() ? &oc.meta : nullptr;
  if (oc.err || it->second.unmounted || !oc.output) {
    attempt_failed(a,
                   oc.err                 ? *oc.err
                   : it->second.unmounted ? unmounted_error()
                                          : error{errc::task_failed, "the task produced no output"},
                   &oc.beat, meta);
    queue_tick();
    return;
  }
  auto la = end_live(a.node, &oc.beat);
  checkpoints_.erase(a.node); // only a next attempt would read it
  std::int64_t at = now();
  auto fa = finish_cmd(a, attempt_state::finished, at);
  fa.output = *oc.output;
  if (meta) fa.meta = *meta;
  writes_.push_back(std::move(fa));
  // Stored in the batch that records the attempt finished: an output is in
  // the cache only if its attempt is.
  if (!la.cache_key.empty() && cfg_.cache) {
    writes_.push_back(
        store::put_cache{la.cache_key, cfg_.wf->name, a.node.id, *oc.output, cfg_.run_id, at});
    (*cfg_.cache)[la.cache_key] = *oc.output;
  }
  sched::index t = la.task;
  node_row(t, a.node, node_state::finished);
  emit_node(event_type::node_finished, a.node, "attempt", a.attempt, "duration_ms",
            at - la.started_ms, "output", *oc.output);
  ++batch_.results;
  record_output(a.node, t, *oc.output);
  dirty_ = true;
  if (t >= 0) sched_->complete(t, node_state::finished);
  queue_tick(); // coalesce: every queued result lands in one batch
}

void run_core::attempt_failed(const attempt_key& a, const error& err,
                              const executors::last_heartbeat* beat, const json* meta) {
  live_attempt la = end_live(a.node, beat);
  const node_key& k = a.node;
  sched::index t = la.task;
  std::int64_t at = now();
  const task_spec* spec = t >= 0 ? plan_->specs[static_cast<std::size_t>(t)].get() : nullptr;
  auto fa = finish_cmd(a, attempt_state::failed, at);
  if (meta) fa.meta = *meta; // merged into the attempt's (the writer patches)
  if (la.unmounted && stopping_ == stop_mode::none) {
    // Its node is out of the tree: never retried here; if a render brings
    // it back, it runs again.
    error why = unmounted_error();
    if (err.code != errc::task_aborted) why.details = {{"task_error", err.to_json()}};
    fa.state = attempt_state::cancelled;
    fa.error = why.to_json();
    writes_.push_back(std::move(fa));
    bool back = t >= 0; // a render brought the node back meanwhile
    node_row(t, k, back ? node_state::pending : node_state::cancelled);
    emit_node(event_type::node_cancelled, k, "attempt", a.attempt, "reason",
              cancel_reason::unmounted, "error", why.to_json());
    ++batch_.results;
    if (back) {
      sched_->defer(t);
      sched_->release(t);
    }
    return;
  }
  if (stopping_ != stop_mode::none && stopping_ != stop_mode::continue_as_new) {
    // Ended by the stop: recorded as cancelled, never retried.
    error why = stop_error_;
    if (err.code != errc::run_cancelled && err.code != errc::task_aborted)
      why.details = {{"task_error", err.to_json()}};
    fa.state = attempt_state::cancelled;
    fa.error = why.to_json();
    writes_.push_back(std::move(fa));
    bool back_to_pending = stopping_ != stop_mode::cancel;
    node_row(t, k, back_to_pending ? node_state::pending : node_state::cancelled);
    emit_node(event_type::node_cancelled, k, "attempt", a.attempt, "reason",
              back_to_pending ? cancel_reason::interrupted : cancel_reason::cancelled, "error",
              why.to_json());
    return;
  }
  fa.error = err.to_json();
  // A worker lost under the attempt is not the task's failure: it runs again
  // at once elsewhere, its retries untouched — a few times in a row; then
  // it counts like any failure, and the attempt after it (a retry) has its
  // own few free re-dispatches.
  bool redispatch = false;
  if (err.code == errc::worker_lost && spec && lost_streak_[k] < limits::max_free_redispatches) {
    ++lost_streak_[k];
    ++retry_base_[k];
    redispatch = true;
  } else if (!lost_streak_.empty()) {
    lost_streak_.erase(k);
  }
  // An agent whose credentials failed is not asked again in this run; the
  // chain moves on at once, without using a retry, while an agent is left.
  bool next_agent = false;
  // The agent is the one this core picked, whatever the error says (a
  // worker's word): each free retry disables one more, so they end.
  if (err.code == errc::agent_auth_failed && spec && spec->kind == task_kind::agent &&
      !la.agent.empty()) {
    disabled_agents_.insert(la.agent);
    if (core::attempt_builder::pick_agent(spec->agents, 1, &disabled_agents_)) {
      ++retry_base_[k];
      next_agent = true;
    }
  }
  std::int64_t base = 0; // attempts that do not count: before a retry, free re-dispatches
  if (!retry_base_.empty())
    if (auto b = retry_base_.find(k); b != retry_base_.end()) base = b->second;
  // An agent's unusable answer may be a better one next time (or from the
  // next agent of its chain): retryable for agents only.
  bool retryable = is_retryable(err) ||
                   (spec && spec->kind == task_kind::agent && err.code == errc::invalid_output);
  bool retry = redispatch || next_agent || (spec && retryable && a.attempt - base <= spec->retries);
  if (retry) {
    retry_policy rp = spec->retry.value_or(retry_policy{});
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    // The backoff grows with the retries, not with the free re-dispatches.
    bool free = redispatch || next_agent;
    std::int64_t delay = free ? 0 : backoff_ms(rp, a.attempt - base + 1, unit(rng_));
    // The earliest start of the next attempt is durable: derived from this
    // attempt's finish time, so a restart neither skips nor restarts it.
    if (!fa.meta.is_object()) fa.meta = json::object();
    fa.meta["retry_at_ms"] = at + delay;
    if (redispatch) fa.meta["redispatch"] = true; // recovery counts these (not retries)
    if (next_agent) fa.meta["next_agent"] = true; // and these
    retries_[k] = pending_retry{at + delay, err.to_json()};
    writes_.push_back(std::move(fa));
    node_row(t, k, node_state::pending);
    emit_node(event_type::node_failed, k, "attempt", a.attempt, "error", err.to_json(),
              "will_retry", true);
    emit_node(event_type::node_retrying, k, "attempt", a.attempt, "next_attempt", a.attempt + 1,
              "delay_ms", delay, "retry_at_ms", at + delay, "error", err.to_json(), "redispatch",
              redispatch, "next_agent", next_agent);
    ++batch_.results;
    if (t >= 0) {
      sched_->defer(t);
      fx_.timers.push_back({k, delay});
    }
  } else {
    writes_.push_back(std::move(fa));
    node_row(t, k, node_state::failed);
    emit_node(event_type::node_failed, k, "attempt", a.attempt, "error", err.to_json(),
              "will_retry", false);
    ++batch_.results;
    if (t >= 0) sched_->complete(t, node_state::failed);
  }
}

void run_core::on_process(const attempt_key& a, std::int64_t pid, const std::string& host,
                          std::int64_t pid_start) {
  if (!is_live(a)) return;
  writes_.push_back(store::set_attempt_meta{
      cfg_.run_id, a, {{"host", host}, {"pgid", pid}, {"pgid_start", pid_start}}});
  queue_tick();
}

void run_core::on_heartbeat_timeout(const attempt_key& a, std::int64_t last_beat_ms) {
  auto it = live_.find(a.node);
  if (it == live_.end() || it->second.attempt != a.attempt) return;
  sched::index t = it->second.task;
  std::int64_t limit = 0;
  if (t >= 0 && plan_->specs[static_cast<std::size_t>(t)]->heartbeat_timeout_ms)
    limit = *plan_->specs[static_cast<std::size_t>(t)]->heartbeat_timeout_ms;
  emit_node(event_type::task_heartbeat_timeout, a.node, "attempt", a.attempt,
            "heartbeat_timeout_ms", limit, "last_heartbeat_ms", last_beat_ms);
  attempt_failed(a, error{errc::task_heartbeat_timeout,
                          "no heartbeat for " + std::to_string(limit) + " ms",
                          {{"heartbeat_timeout_ms", limit}, {"last_heartbeat_ms", last_beat_ms}}});
  queue_tick();
}

void run_core::on_output(const attempt_key& a, const std::string& stream, const std::string& text) {
  if (!is_live(a)) return; // printed after its attempt ended (a stop's grace)
  if (stream == "agent") {
    util::json_parse_error pe;
    auto fields = util::parse_json(text, {util::max_heartbeat_depth, 0}, &pe);
    if (!fields || !fields->is_object()) return;
    (*fields)["node_id"] = a.node.id;
    (*fields)["iteration"] = a.node.iteration;
    (*fields)["attempt"] = a.attempt;
    log_.emit_fields(writes_, now(), event_type::agent_retry, std::move(*fields));
  } else {
    emit_node(event_type::node_output, a.node, "attempt", a.attempt, "stream", stream, "text",
              text);
  }
  queue_tick();
}

void run_core::on_attempt_lost(const attempt_key& a, const std::string& why) {
  if (!is_live(a)) return; // its result arrived first
  attempt_failed(a, error{errc::task_failed, why});
  queue_tick();
}

void run_core::on_worker(const attempt_key& a, const std::string& worker) {
  if (!is_live(a) || worker.empty()) return; // "": it runs here after all
  writes_.push_back(store::set_attempt_worker{cfg_.run_id, a, worker});
  queue_tick();
}

void run_core::on_worker_event(bool joined, const std::string& worker, const json& details) {
  if (ending_) return;
  json fields = details.is_object() ? details : json::object();
  fields["worker"] = worker;
  log_.emit_fields(writes_, now(), joined ? event_type::worker_joined : event_type::worker_lost,
                   std::move(fields));
  queue_tick();
}

void run_core::stop(stop_mode mode, error why) {
  if (ending_) return;
  // A cancel, an interrupt or a handover overrides a continue-as-new that
  // waits for its attempts: the loop stays where it was.
  bool overrides = stopping_ == stop_mode::continue_as_new && mode != stop_mode::continue_as_new;
  if (stopping_ != stop_mode::none && !overrides) return;
  if (overrides) continue_loops_.clear();
  stopping_ = mode;
  stop_error_ = std::move(why);
  // Continuing as new lets attempts in flight finish: their results go on.
  if (mode != stop_mode::continue_as_new)
    for (auto& [k, la] : live_)
      if (la.launched) fx_.stops.push_back({{k, la.attempt}, stop_error_});
  queue_tick();
}

void run_core::stop_if_waiting(const std::string& reason) {
  if (ending_) return;
  // Sticky: a run busy now stops once it only waits (update_status).
  idle_reason_ = reason;
  if (status_ == run_status::running || !live_.empty()) return;
  stop(stop_mode::interrupt, error{errc::task_aborted, reason});
}

void run_core::finish_stop() {
  if (stopping_ == stop_mode::cancel) {
    end_run(run_status::cancelled, stop_error_);
    return;
  }
  if (stopping_ == stop_mode::continue_as_new) {
    continue_run();
    return;
  }
  // Interrupted: the run stays `running` in the store, resumable; its
  // in-flight attempts are recorded cancelled, their nodes pending. A
  // handover also lets go of the run, in the same commit, for the resumer
  // waiting to claim it: from then on this process writes nothing to it.
  ending_ = true;
  result_.status = run_status::running;
  result_.err = stop_error_;
  // So does a run that only waited for a person or a signal: nobody needs
  // to notice this process is gone before a decision can continue it.
  bool waiting_outside =
      status_ == run_status::waiting_approval || status_ == run_status::waiting_event;
  if (stopping_ == stop_mode::handover || waiting_outside)
    writes_.push_back(store::release_run{cfg_.run_id, cfg_.owner_id, now()});
  batch_.final = true;
  flush();
}

void run_core::fail_run(error err) {
  end_run(run_status::failed, std::move(err));
}

namespace {

// "<id>~<n>" for the n-th run of a chain: "a" -> "a~1" -> "a~2".
std::string successor_id(const std::string& id) {
  auto tilde = id.rfind('~');
  if (tilde != std::string::npos && tilde + 1 < id.size() &&
      id.find_first_not_of("0123456789", tilde + 1) == std::string::npos &&
      id.size() - tilde - 1 < 15)
    return id.substr(0, tilde) + "~" + std::to_string(std::stoll(id.substr(tilde + 1)) + 1);
  return id + "~1";
}

} // namespace

// Continue-as-new: in the commit that ends this run `continued`, the
// successor is created with what it carries — every node of the current
// tree that ended (finished ones with their output), the latest output of
// every other node, and the mounted loops where they stand — so it repeats
// nothing and its history starts there (docs/workflow-format.md).
void run_core::continue_run() {
  // A failure that will not be retried ends the run here, as it would have.
  if (!sched_->failed_tasks().empty()) {
    check_end();
    if (ending_) return;
  }
  std::string next = successor_id(cfg_.run_id);
  if (auto err = util::check_run_id(next)) {
    fail_run(error{errc::invalid_run_id, "cannot continue as new: " + err->message});
    return;
  }
  std::int64_t at = now();
  std::vector<store::command> carried;
  std::size_t bytes = 0;
  std::size_t nodes = 0;
  json meta = {{"continued_from", cfg_.run_id}};
  auto carry = [&](const node_key& k, const char* state, const json* output,
                   const task_spec* spec) {
    store::node_row n;
    n.run_id = next;
    n.node_id = k.id;
    n.iteration = k.iteration;
    n.state = state;
    n.attempts = output ? 1 : 0;
    n.updated_ms = at;
    if (spec) {
      n.label = spec->label;
      n.kind = to_string(spec->kind);
    }
    carried.push_back(store::upsert_node{std::move(n)});
    ++nodes;
    if (!output) return;
    bytes += output->dump().size();
    store::attempt_row a;
    a.run_id = next;
    a.node_id = k.id;
    a.iteration = k.iteration;
    a.attempt = 1;
    a.state = attempt_state::finished;
    a.started_ms = at;
    a.finished_ms = at;
    a.cached = true;
    a.meta = meta;
    a.output = *output;
    carried.push_back(store::insert_attempt{std::move(a)});
  };
  std::unordered_set<std::string> done_ids;
  for (std::size_t t = 0; t < plan_->task_count(); ++t) {
    const node_key& k = plan_->keys[t];
    node_state s = sched_->state(static_cast<sched::index>(t));
    if (s == node_state::finished) {
      std::string id{base_id(k.id)};
      auto out = outputs_.find(id);
      if (out == outputs_.end()) continue;
      carry(k, to_string(s), &out->second, plan_->specs[t].get());
      done_ids.insert(std::move(id));
    } else if (s == node_state::skipped || s == node_state::failed) {
      carry(k, to_string(s), nullptr, plan_->specs[t].get());
    }
  }
  for (const auto& [id, out] : outputs_) {
    if (done_ids.count(id)) continue;
    auto l = latest_.find(id);
    carry(l == latest_.end() ? node_key{id, 0} : l->second, to_string(node_state::finished),
          &out, nullptr);
  }
  // Nodes waiting out a retry's backoff carry their last attempt: the
  // successor numbers on and waits out the rest (recovery reads it).
  for (const auto& [k, rt] : retries_) {
    sched::index t = plan_->find(k);
    if (t < 0 || sched_->state(t) != node_state::pending) continue;
    std::int64_t n = table_.at(t).attempts;
    carry(k, to_string(node_state::pending), nullptr, plan_->specs[static_cast<std::size_t>(t)].get());
    std::get<store::upsert_node>(carried.back()).row.attempts = n;
    store::attempt_row a;
    a.run_id = next;
    a.node_id = k.id;
    a.iteration = k.iteration;
    a.attempt = n;
    a.state = attempt_state::failed;
    a.started_ms = at;
    a.finished_ms = at;
    a.error = rt.error;
    a.meta = {{"continued_from", cfg_.run_id}, {"retry_at_ms", rt.at_ms}};
    if (auto cp = checkpoints_.find(k); cp != checkpoints_.end()) a.heartbeat = cp->second;
    carried.push_back(store::insert_attempt{std::move(a)});
  }
  if (bytes > limits::max_continuation_state_bytes) {
    fail_run(error{errc::continuation_state_too_large,
                   "cannot continue as new: the carried state is " + std::to_string(bytes) +
                       " bytes, more than " +
                       std::to_string(limits::max_continuation_state_bytes),
                   {{"bytes", bytes}, {"limit", limits::max_continuation_state_bytes}}});
    return;
  }
  // The loops that ended this run: stopped after their iteration here,
  // they go on with the next one there.
  for (const auto& id : continue_loops_) {
    write_loop(id, "continued");
    ++loops_[id].iteration;
  }
  writes_.push_back(store::continue_run{cfg_.run_id, next, at});
  for (auto& c : carried)
    writes_.push_back(std::move(c));
  std::size_t loops = 0;
  for (const auto& l : plan_->loops) {
    auto it = loops_.find(l.id);
    if (it == loops_.end()) continue;
    store::loop_row row;
    row.run_id = next;
    row.loop_id = l.id;
    row.iteration = it->second.iteration;
    row.state = it->second.done ? "finished" : "running";
    row.updated_ms = at;
    writes_.push_back(store::upsert_loop{std::move(row)});
    ++loops;
  }
  store::event_row started{next,
                           0,
                           event_type::run_started,
                           at,
                           {{"workflow", cfg_.wf->name},
                            {"input", *cfg_.input},
                            {"continued_from", {{"run_id", cfg_.run_id}}}}};
  writes_.push_back(store::append_event{std::move(started)});
  std::int64_t seq = 1;
  for (const auto& id : continue_loops_)
    writes_.push_back(store::append_event{store::event_row{
        next, seq++, event_type::loop_iteration_started, at,
        {{"loop_id", id}, {"iteration", loops_[id].iteration}}}});
  emit(event_type::run_continued_as_new, "next_run_id", next, "carried_nodes", nodes,
       "carried_loops", loops, "carried_bytes", bytes);
  result_.continued_as = next;
  end_run(run_status::continued, std::nullopt);
}

void run_core::end_run(run_status status, std::optional<error> err) {
  if (ending_) return;
  ending_ = true;
  std::int64_t at = now();
  // Moved, not copied: nothing reads them after the run has ended. Sorted
  // first, then appended at the map's end: inserted in the hash map's order,
  // each of a large run's outputs cost a descent of the tree, a cache miss a
  // level (~100 ms of a 100,000-task run; docs/benchmarks.md, item 10 of
  // "Real tasks").
  using output_it = std::unordered_map<std::string, json>::iterator;
  std::vector<std::pair<std::uint64_t, output_it>> order;
  order.reserve(outputs_.size());
  for (auto it = outputs_.begin(); it != outputs_.end(); ++it)
    order.emplace_back(key_prefix(it->first), it);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second->first < b.second->first;
  });
  for (auto& [prefix, it] : order)
    result_.outputs.emplace_hint(result_.outputs.end(), it->first, std::move(it->second));
  outputs_.clear();
  result_.status = status;
  result_.err = err;
  // Nodes the run never reached are not left pending forever: they will
  // not run (unless the run is resumed, which runs cancelled nodes again).
  if (status != run_status::finished && status != run_status::continued) {
    const char* reason =
        status == run_status::cancelled ? cancel_reason::cancelled : cancel_reason::run_failed;
    for (std::size_t t = 0; t < table_.size(); ++t)
      if (node_table::is_pending(table_.at(static_cast<sched::index>(t))))
        never_reached(static_cast<sched::index>(t), plan_->keys[t], reason);
    std::vector<node_key> dropped_pending;
    for (const auto& [k, sl] : table_.dropped())
      if (node_table::is_pending(sl)) dropped_pending.push_back(k);
    for (const auto& k : dropped_pending)
      never_reached(-1, k, reason);
  }
  // Nothing waits for a run that has ended (its successor waits anew),
  // nor is a decision kept for a retry: it asks again.
  if (had_waits_) writes_.push_back(store::cancel_waits{cfg_.run_id, at});
  // The last frame comes before the run's end, so RunFinished (or
  // RunFailed, RunCancelled) is the last event.
  maybe_frame();
  writes_.push_back(store::update_run_status{cfg_.run_id, to_string(status),
                                             err ? err->to_json() : json(), at, at});
  emit(event_type::run_status_changed, "status", to_string(status));
  if (status == run_status::finished)
    emit(event_type::run_finished, "duration_ms", at - cfg_.started_ms);
  else if (status == run_status::continued)
    ; // RunContinuedAsNew came first, with the successor's id
  else if (status == run_status::cancelled)
    emit(event_type::run_cancelled, "error", err ? err->to_json() : json());
  else
    emit(event_type::run_failed, "error", err ? err->to_json() : json());
  batch_.final = true;
  // Attempts still in flight (a failed run with in-flight siblings never
  // gets here; a render error may) end with the run.
  if (!live_.empty()) fx_.kill_all = true;
  flush();
}

void run_core::never_reached(sched::index t, const node_key& k, const char* reason) {
  node_row(t, k, node_state::cancelled);
  emit_node(event_type::node_cancelled, k, "reason", reason);
}

void run_core::tick() {
  tick_queued_ = false;
  if (ending_) return;
  if (stopping_ == stop_mode::none) advance_loops();
  if (ending_) return;
  // A run continuing as new renders no more: its successor renders on.
  if (stopping_ != stop_mode::continue_as_new && ((dirty_ && cfg_.wf->dynamic()) || control_dirty_))
    rerender();
  if (ending_) return;
  if (stopping_ != stop_mode::none) {
    if (live_.empty() && !results_pending()) finish_stop();
    flush();
    return;
  }
  for (;;) {
    for (auto t : sched_->take_auto_skipped())
      record_skip(t, "a node it needs did not finish");
    auto ready = sched_->take_runnable();
    if (ready.empty()) break;
    bool skipped_any = false;
    pull_again_ = false;
    for (auto t : ready) {
      const auto& spec = *plan_->specs[static_cast<std::size_t>(t)];
      // A wait that has its outcome was not skipped when it began: it ends now.
      bool resolving = !waits_.empty() && waits_.count(plan_->keys[static_cast<std::size_t>(t)]);
      if (!resolving && !spec.skip_if.is_null() &&
          spec::evaluate(spec.skip_if, *cfg_.input, outputs_)) {
        // Skipping frees the slot and may unblock others: schedule again.
        sched_->complete(t, node_state::skipped);
        record_skip(t, "skip_if matched");
        skipped_any = true;
      } else {
        start_task(t);
      }
    }
    // A wait that began (or went on) took a slot it does not keep: what
    // it left may start now.
    if (!skipped_any && !pull_again_) break;
  }
  // A wait that ended skipped (a denied approval) skips what needs it.
  for (auto t : sched_->take_auto_skipped())
    record_skip(t, "a node it needs did not finish");
  // A skip may have ended a loop's iteration: it advances next tick.
  if (sched_->has_loops_ready()) queue_tick();
  check_end();
  if (!ending_ && (!waits_.empty() || status_ != run_status::running)) update_status();
  flush();
}

// Results recorded but not yet committed keep the stop from finishing, so
// the final batch comes after them.
bool run_core::results_pending() const {
  for (const auto& [id, b] : in_flight_)
    if (b.results || !b.launches.empty()) return true;
  return batch_.results || !batch_.launches.empty();
}

void run_core::record_skip(sched::index t, const char* reason) {
  const node_key& k = plan_->keys[static_cast<std::size_t>(t)];
  node_row(t, k, node_state::skipped);
  emit_node(event_type::node_skipped, k, "reason", reason);
}

void run_core::check_end() {
  // Attempts of nodes a re-render dropped end (recorded cancelled) before
  // the run does: no attempt of an ended run stays in-progress.
  for (const auto& [k, la] : live_)
    if (la.task < 0) return;
  // The run's end is written after every batch already sent (the store
  // commits in order), so it is never durable before the outputs it reports.
  auto add_name = [](const std::string& name, json& ids, std::string& names) {
    ids.push_back(name);
    names += (names.empty() ? "" : ", ") + name;
  };
  auto names_of = [&](const std::vector<sched::index>& tasks, json& ids, std::string& names) {
    for (auto t : tasks)
      add_name(to_string(plan_->keys[static_cast<std::size_t>(t)]), ids, names);
  };

  switch (sched_->status()) {
  case sched::outcome::running:
    return;
  case sched::outcome::finished:
    end_run(run_status::finished, std::nullopt);
    return;
  case sched::outcome::failed: {
    json ids = json::array();
    std::string names;
    names_of(sched_->failed_tasks(), ids, names);
    fail_run(error{errc::task_failed, "run failed: task(s) " + names + " failed",
                   {{"failed_nodes", ids}}});
    return;
  }
  case sched::outcome::stuck: {
    if (!tree_.undecided.empty()) {
      // Nothing can run, and a branch or for_each still waits for a node
      // that will never end (one no branch mounted).
      json ids = json::array();
      std::string names;
      for (const auto& id : tree_.undecided)
        add_name(id, ids, names);
      fail_run(error{errc::invalid_workflow,
                     "run cannot go on: " + names +
                         " read(s) outputs of nodes that will never run",
                     {{"undecided_nodes", ids}}});
      return;
    }
    json ids = json::array();
    std::string names;
    names_of(sched_->blocked_tasks(), ids, names);
    fail_run(error{errc::invalid_workflow,
                   "run cannot go on: task(s) " + names +
                       " need outputs of nodes that can only run after them",
                   {{"blocked_nodes", ids}}});
    return;
  }
  }
}

// One batch in flight at a time: what arrives while it commits goes into
// the next one, so batches (and frames) grow with the load instead of one
// per message. Nothing waits longer than one commit.
void run_core::flush() {
  if (!in_flight_.empty()) {
    flush_deferred_ = true;
    return;
  }
  send_batch();
}

void run_core::send_batch() {
  flush_deferred_ = false;
  maybe_frame();
  log_.close_chunk(writes_);
  if (writes_.empty() && !batch_.results && !batch_.final) return;
  auto batch = std::make_shared<store::write_batch>();
  batch->commands.swap(writes_);
  std::uint64_t id = next_batch_++;
  batch_.events = log_.take();
  in_flight_.emplace(id, std::move(batch_));
  batch_ = batch_effects{};
  fx_.batches.push_back({id, std::move(batch)});
}

void run_core::on_committed(std::uint64_t id) {
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  batch_effects b = std::move(it->second);
  in_flight_.erase(it);
  if (cfg_.publish)
    for (const auto& e : b.events)
      event_log::publish(cfg_.run_id, e, cfg_.publish);
  if (b.final) {
    done();
    return;
  }
  for (auto& v : b.values) {
    sched::index t = v.plan_gen == plan_gen_ ? v.task : plan_->find(v.key);
    record_output(v.key, t, std::move(v.output));
    if (tree_.control || cfg_.wf->dynamic()) {
      ended_.insert(v.key);
      if (tree_.reads_any || tree_.control_reads.count(std::string{base_id(v.key.id)}))
        control_dirty_ = true;
    }
    dirty_ = true;
    if (t >= 0) sched_->complete(t, node_state::finished);
  }
  for (const auto& pl : b.launches)
    launch(pl);
  if (!b.values.empty()) queue_tick();
  if (flush_deferred_) send_batch();
  // A stop waits for results being committed (see results_pending).
  if (!b.launches.empty() || (b.results && stopping_ != stop_mode::none)) queue_tick();
  // Whether the run now only waits is decided once nothing is in flight.
  if (!waits_.empty() && in_flight_.empty()) queue_tick();
}

void run_core::on_commit_failed(std::uint64_t id, const std::string& message) {
  in_flight_.erase(id);
  // Its row stays as last committed, so it can be resumed once the store works.
  result_.status = run_status::failed;
  result_.err = error{errc::db_error, message};
  fx_.kill_all = true;
  done();
}

void run_core::done() {
  fx_.done = true;
}

void run_core::on_retry_due(const node_key& k) {
  if (ending_ || stopping_ != stop_mode::none) return;
  // The backoff is over whether or not its node is mounted now: brought
  // back later, it runs at once (and a stale entry would keep the run
  // counted busy, never waiting).
  retries_.erase(k);
  sched::index t = plan_->find(k);
  if (t < 0) return;
  sched_->release(t);
  queue_tick();
}

// -- waits (docs/waiting.md) -----------------------------------------------------

namespace {

const char* kind_name(int k) {
  static const char* names[] = {"approval", "gate", "timer", "signal"};
  return names[k];
}

} // namespace

// A wait node, or a task behind a needs_approval gate, taken by the
// scheduler: it begins waiting, or — released by its outcome — ends. False:
// the gate is passed, the task's attempt starts.
bool run_core::wait_step(sched::index t) {
  const node_key& k = plan_->keys[static_cast<std::size_t>(t)];
  const task_spec& spec = *plan_->specs[static_cast<std::size_t>(t)];
  if (!is_wait(spec.kind) && (!spec.approval || gates_passed_.count(k))) return false;
  auto it = waits_.find(k);
  if (it == waits_.end()) {
    begin_wait(t);
    return true;
  }
  if (it->second.outcome == wait_entry::outcome_t::none) {
    sched_->defer(t); // taken again without an outcome: it goes on waiting
    pull_again_ = true;
    return true;
  }
  wait_entry w = std::move(it->second);
  waits_.erase(it);
  bool gate = w.kind == wait_entry::kind_t::gate;
  resolve_wait(t, std::move(w));
  // An approved gate lets the task's first attempt start now.
  return !(gate && gates_passed_.count(k));
}

void run_core::write_wait(const node_key& k, const wait_entry& w, const char* state) {
  store::wait_row row;
  row.run_id = cfg_.run_id;
  row.key = k;
  row.kind = kind_name(static_cast<int>(w.kind));
  row.state = state;
  row.name = w.name;
  row.since_ms = w.since_ms;
  row.deadline_ms = w.deadline_ms;
  row.updated_ms = now();
  sched::index t = plan_->find(k);
  if (t >= 0) {
    const task_spec& spec = *plan_->specs[static_cast<std::size_t>(t)];
    row.attempt = table_.at(t).attempts + 1;
    if (spec.approval)
      row.details = {{"title", spec.approval->title},
                     {"summary", spec.approval->summary},
                     {"on_deny", to_string(spec.approval->on_deny)}};
  }
  writes_.push_back(store::upsert_wait{std::move(row)});
}

void run_core::begin_wait(sched::index t) {
  const node_key& k = plan_->keys[static_cast<std::size_t>(t)];
  const task_spec& spec = *plan_->specs[static_cast<std::size_t>(t)];
  std::int64_t at = now();
  wait_entry w;
  w.since_ms = at;
  node_state ns = node_state::waiting_approval;
  switch (spec.kind) {
  case task_kind::timer:
    w.kind = wait_entry::kind_t::timer;
    w.deadline_ms = spec.duration_ms ? at + *spec.duration_ms : spec.until_ms.value_or(at);
    ns = node_state::waiting_timer;
    break;
  case task_kind::signal:
    w.kind = wait_entry::kind_t::signal;
    w.name = spec.signal_name;
    if (spec.timeout_ms) w.deadline_ms = at + *spec.timeout_ms;
    ns = node_state::waiting_event;
    break;
  case task_kind::approval:
    w.kind = wait_entry::kind_t::approval;
    break;
  default:
    w.kind = wait_entry::kind_t::gate;
    break;
  }
  write_wait(k, w, "waiting");
  node_row(t, k, ns);
  // A gate's task starts (NodeStarted) once approved.
  if (w.kind != wait_entry::kind_t::gate)
    emit_node(event_type::node_started, k, "attempt", table_.at(t).attempts + 1, "waits_for",
              to_string(spec.kind));
  if (w.kind == wait_entry::kind_t::timer) {
    emit_node(event_type::timer_scheduled, k, "deadline_ms", *w.deadline_ms, "delay_ms",
              std::max<std::int64_t>(0, *w.deadline_ms - at));
  } else if (w.kind != wait_entry::kind_t::signal) {
    emit_node(event_type::approval_requested, k, "title", spec.approval->title, "summary",
              spec.approval->summary, "on_deny", to_string(spec.approval->on_deny), "gate",
              w.kind == wait_entry::kind_t::gate);
  }
  sched_->defer(t);
  pull_again_ = true;
  had_waits_ = true;
  wait_entry& stored = waits_[k] = std::move(w);
  // What arrived before it waited; a deadline that has passed.
  if (!take_inbox(k, stored) && stored.deadline_ms) {
    if (*stored.deadline_ms <= at)
      on_wait_due(k);
    else
      wake_at(k, *stored.deadline_ms);
  }
}

// Sleeps on a message until `deadline_ms`, in steps of at most a day: a
// deadline centuries away never overflows the clock the message waits on.
void run_core::wake_at(const node_key& k, std::int64_t deadline_ms) {
  constexpr std::int64_t max_sleep_ms = 24 * 60 * 60 * 1000;
  fx_.wakeups.push_back({k, std::clamp<std::int64_t>(deadline_ms - now(), 0, max_sleep_ms)});
}

// The oldest decision or signal waiting in the inbox for this wait.
bool run_core::take_inbox(const node_key& k, wait_entry& w) {
  if (w.kind == wait_entry::kind_t::timer) return false;
  bool signal = w.kind == wait_entry::kind_t::signal;
  for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
    bool match = signal ? it->kind == "signal" && it->name == w.name
                        : it->kind == "approval" && it->key == k;
    if (!match) continue;
    store::inbox_row e = std::move(*it);
    inbox_.erase(it);
    auto o = signal                               ? wait_entry::outcome_t::received
             : e.payload.value("approved", false) ? wait_entry::outcome_t::approved
                                                  : wait_entry::outcome_t::denied;
    set_outcome(k, w, o, std::move(e.payload), e.id);
    return true;
  }
  return false;
}

void run_core::set_outcome(const node_key& k, wait_entry& w, wait_entry::outcome_t o, json payload,
                           std::int64_t inbox_id) {
  w.outcome = o;
  w.payload = std::move(payload);
  w.inbox_id = inbox_id;
  if (sched::index t = plan_->find(k); t >= 0) sched_->release(t);
  queue_tick();
}

void run_core::on_inbox(const store::inbox_row& entry) {
  if (ending_ || !inbox_seen_.insert(entry.id).second) return;
  inbox_.push_back(entry);
  // The oldest waiter takes a signal; an approval goes to its node.
  wait_entry* best = nullptr;
  node_key best_key;
  for (auto& [k, w] : waits_) {
    if (w.outcome != wait_entry::outcome_t::none) continue;
    bool match =
        entry.kind == "signal"
            ? w.kind == wait_entry::kind_t::signal && w.name == entry.name
            : (w.kind == wait_entry::kind_t::approval || w.kind == wait_entry::kind_t::gate) &&
                  k == entry.key;
    if (!match) continue;
    if (!best || w.since_ms < best->since_ms ||
        (w.since_ms == best->since_ms && to_string(k) < to_string(best_key))) {
      best = &w;
      best_key = k;
    }
  }
  if (best) take_inbox(best_key, *best);
}

void run_core::on_wait_due(const node_key& k) {
  if (ending_) return;
  auto it = waits_.find(k);
  if (it == waits_.end() || it->second.outcome != wait_entry::outcome_t::none ||
      !it->second.deadline_ms)
    return;
  std::int64_t at = now();
  if (at < *it->second.deadline_ms) { // early (a long sleep's step, a clock that moved)
    wake_at(k, *it->second.deadline_ms);
    return;
  }
  bool timer = it->second.kind == wait_entry::kind_t::timer;
  set_outcome(k, it->second,
              timer ? wait_entry::outcome_t::fired : wait_entry::outcome_t::timed_out,
              json{{"fired_ms", at}}, 0);
}

// A wait with its outcome, taken by the scheduler again: the node ends (or,
// for an approved gate, its first attempt may start).
void run_core::resolve_wait(sched::index t, wait_entry w) {
  const node_key& k = plan_->keys[static_cast<std::size_t>(t)];
  const task_spec& spec = *plan_->specs[static_cast<std::size_t>(t)];
  using o = wait_entry::outcome_t;
  std::int64_t at = now();
  if (w.inbox_id) writes_.push_back(store::consume_inbox{w.inbox_id, to_string(k), at});
  switch (w.outcome) {
  case o::approved:
  case o::denied: {
    bool approved = w.outcome == o::approved;
    json decision = {{"approved", approved},
                     {"by", w.payload.value("by", std::string{})},
                     {"note", w.payload.value("note", std::string{})},
                     {"decided_ms", w.payload.value("decided_ms", at)}};
    write_wait(k, w, approved ? "approved" : "denied");
    emit_node(event_type::approval_decided, k, "approved", approved, "by", decision["by"], "note",
              decision["note"], "gate", w.kind == wait_entry::kind_t::gate);
    deny_action on_deny = spec.approval ? spec.approval->on_deny : deny_action::fail;
    if (w.kind == wait_entry::kind_t::gate && approved) {
      gates_passed_.emplace(k, 1);
      return; // the task's attempt starts (wait_step)
    }
    std::int64_t attempt = ++table_.slot(t, k).attempts;
    if (approved || on_deny == deny_action::proceed) {
      finish_inline(t, attempt, w.since_ms, std::move(decision));
    } else if (on_deny == deny_action::skip) {
      --table_.slot(t, k).attempts; // nothing was attempted
      sched_->complete(t, node_state::skipped);
      record_skip(t, "approval denied");
      queue_tick(); // what follows may start now
    } else {
      std::string by = decision["by"].get<std::string>();
      fail_inline(
          t, attempt, w.since_ms,
          error{errc::approval_denied,
                "approval of " + to_string(k) + " was denied" + (by.empty() ? "" : " by " + by),
                decision});
    }
    return;
  }
  case o::fired: {
    std::int64_t fired = w.payload.value("fired_ms", at);
    write_wait(k, w, "fired");
    emit_node(event_type::timer_fired, k, "deadline_ms", *w.deadline_ms, "fired_ms", fired);
    std::int64_t attempt = ++table_.slot(t, k).attempts;
    finish_inline(t, attempt, w.since_ms,
                  json{{"deadline_ms", *w.deadline_ms}, {"fired_ms", fired}});
    return;
  }
  case o::received: {
    write_wait(k, w, "received");
    emit_node(event_type::signal_received, k, "name", w.name, "inbox_id", w.inbox_id);
    std::int64_t attempt = ++table_.slot(t, k).attempts;
    finish_inline(t, attempt, w.since_ms, std::move(w.payload));
    return;
  }
  case o::timed_out: {
    write_wait(k, w, "timed-out");
    std::int64_t attempt = ++table_.slot(t, k).attempts;
    std::int64_t limit = spec.timeout_ms.value_or(0);
    fail_inline(t, attempt, w.since_ms,
                error{errc::signal_timeout,
                      "no signal \"" + w.name + "\" within " + std::to_string(limit) + " ms",
                      {{"name", w.name}, {"timeout_ms", limit}}});
    return;
  }
  case o::none:
    break;
  }
}

// A wait's attempt, started and finished in one row with its output, like
// a value: its dependents start once the output is durable.
void run_core::finish_inline(sched::index t, std::int64_t attempt, std::int64_t started_ms,
                             json output) {
  const node_key& k = plan_->keys[static_cast<std::size_t>(t)];
  std::int64_t at = now();
  store::attempt_row ar = attempt_row(k, attempt, attempt_state::finished, started_ms);
  ar.finished_ms = at;
  ar.output = output;
  writes_.push_back(store::insert_attempt{std::move(ar)});
  node_row(t, k, node_state::finished);
  emit_node(event_type::node_finished, k, "attempt", attempt, "duration_ms", at - started_ms,
            "output", output);
  ++batch_.results;
  batch_.values.push_back({k, t, plan_gen_, std::move(output)});
}

// A wait that ends in failure: recorded as an attempt that failed (retried
// like any, if its error is retryable and the node has retries left).
void run_core::fail_inline(sched::index t, std::int64_t attempt, std::int64_t started_ms,
                           const error& err) {
  const node_key& k = plan_->keys[static_cast<std::size_t>(t)];
  store::attempt_row ar = attempt_row(k, attempt, attempt_state::in_progress, started_ms);
  writes_.push_back(store::insert_attempt{std::move(ar)});
  live_attempt la;
  la.attempt = attempt;
  la.task = t;
  la.started_ms = started_ms;
  live_.emplace(k, la);
  attempt_failed({k, attempt}, err);
}

// The run's status while it goes on: running while anything can happen
// inside it; waiting-approval, waiting-event or waiting-timer when all
// that is left waits. With release_when_waiting, a run that waits only
// for outside (no deadline of its own to keep) is let go of here.
void run_core::update_status() {
  // Decided once what is being committed has been (on_committed ticks).
  if (stopping_ != stop_mode::none || !in_flight_.empty()) return;
  bool busy = !live_.empty() || !retries_.empty() || sched_->has_loops_ready() || tick_queued_ ||
              results_pending() || sched_->has_runnable();
  bool approval = false, event = false, timer = false, deadline = false;
  for (const auto& [k, w] : waits_) {
    if (w.outcome != wait_entry::outcome_t::none) {
      busy = true;
      break;
    }
    if (w.deadline_ms) deadline = true;
    if (w.kind == wait_entry::kind_t::approval || w.kind == wait_entry::kind_t::gate)
      approval = true;
    else if (w.kind == wait_entry::kind_t::signal)
      event = true;
    else
      timer = true;
  }
  run_status next = busy       ? run_status::running
                    : approval ? run_status::waiting_approval
                    : event    ? run_status::waiting_event
                    : timer    ? run_status::waiting_timer
                               : run_status::running;
  if (next != run_status::running && idle_reason_) {
    stop(stop_mode::interrupt, error{errc::task_aborted, *idle_reason_});
    return;
  }
  if (next != status_) {
    status_ = next;
    writes_.push_back(store::set_run_status{cfg_.run_id, to_string(next), now()});
    emit(event_type::run_status_changed, "status", to_string(next));
  }
  // Not only on a change of status: a timer that fires beside an approval
  // while a commit is in flight leaves it waiting-approval throughout, now
  // without a deadline to keep.
  if (!cfg_.release_when_waiting || deadline ||
      (next != run_status::waiting_approval && next != run_status::waiting_event))
    return;
  // Nothing more happens in this process: let go of the run, resumable.
  ending_ = true;
  result_.status = next;
  for (const auto& [k, w] : waits_) {
    waiting_node wn;
    wn.key = k;
    wn.kind = w.kind == wait_entry::kind_t::signal  ? "signal"
              : w.kind == wait_entry::kind_t::timer ? "timer"
                                                    : "approval";
    wn.name = w.name;
    if (sched::index t = plan_->find(k);
        t >= 0 && plan_->specs[static_cast<std::size_t>(t)]->approval)
      wn.title = plan_->specs[static_cast<std::size_t>(t)]->approval->title;
    wn.deadline_ms = w.deadline_ms;
    result_.waiting.push_back(std::move(wn));
  }
  std::sort(result_.waiting.begin(), result_.waiting.end(),
            [](const waiting_node& a, const waiting_node& b) { return a.key < b.key; });
  writes_.push_back(store::release_run{cfg_.run_id, cfg_.owner_id, now()});
  batch_.final = true;
}

// Waits a resumed run had: held again, deadlines slept on (a deadline that
// passed while nobody owned the run is due at once), gates approved kept;
// then what arrived meanwhile is taken.
void run_core::restore_waits(resume_state& r) {
  had_waits_ = had_waits_ || !r.waits.empty();
  for (const auto& row : r.waits) {
    sched::index t = plan_->find(row.key);
    if (row.kind == "gate" && row.state == "approved") {
      gates_passed_.emplace(row.key, 1);
      continue;
    }
    if (row.state != "waiting" || t < 0) continue;
    auto st = r.states.find(row.key);
    if (st == r.states.end() ||
        (st->second != node_state::waiting_approval && st->second != node_state::waiting_timer &&
         st->second != node_state::waiting_event))
      continue;
    wait_entry w;
    w.kind = row.kind == "gate"     ? wait_entry::kind_t::gate
             : row.kind == "timer"  ? wait_entry::kind_t::timer
             : row.kind == "signal" ? wait_entry::kind_t::signal
                                    : wait_entry::kind_t::approval;
    w.since_ms = row.since_ms;
    w.deadline_ms = row.deadline_ms;
    w.name = row.name;
    sched_->hold(t);
    waits_[row.key] = std::move(w);
  }
  // Signals go to the oldest waiter: restored waits first, in age order.
  for (const auto& e : r.inbox)
    on_inbox(e);
  for (auto& [k, w] : waits_) {
    if (w.outcome != wait_entry::outcome_t::none || !w.deadline_ms) continue;
    wake_at(k, *w.deadline_ms); // at once if it passed while nobody owned the run
  }
}

} // namespace smithers::core
