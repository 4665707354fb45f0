#include "actors/run_supervisor.hpp"

#include "actors/heartbeat_watchdog.hpp"
#include "actors/messages.hpp"
#include "actors/task_actor.hpp"
#include "expr/predicate.hpp"
#include "expr/shell_template.hpp"
#include "expr/template.hpp"
#include "format/validate.hpp"
#include "scheduler/scheduler.hpp"
#include "util/clock.hpp"
#include "util/json_text.hpp"
#include "util/owner.hpp"

#include <spdlog/spdlog.h>

#include <random>
#include <unordered_map>
#include <unordered_set>
#include <variant>

namespace smithers::actors {

namespace {

/// An attempt in flight.
struct live_attempt {
  std::int64_t attempt = 1;
  sched::index task = -1; // in the current plan (-1: a re-render dropped it)
  caf::actor actor;
  std::int64_t started_ms = 0;
  std::int64_t last_hb_write_ms = 0; // the watchdog throttles; this is the newest written
  bool unmounted = false; // a re-render dropped its node: being stopped, recorded cancelled
};

/// Why the run stops starting tasks before its tree is done.
enum class stop_mode {
  none,
  cancel,    // the run ends `cancelled`
  interrupt, // the process is going away: attempts end, the run stays resumable
  handover,  // a forced resume elsewhere: as interrupt, then the run is released
};

/// An attempt whose start is being committed: its task actor is spawned
/// once the attempt row is durable, so no work ever runs unrecorded.
struct pending_spawn {
  std::string node_id;
  std::int64_t attempt = 0;
  std::shared_ptr<task_job> job;
};

/// NodePending events of nodes entering the run, published from the same
/// compact list the store writes from.
struct pending_events {
  std::int64_t first_seq = 0;
  std::int64_t at_ms = 0;
  std::shared_ptr<const std::vector<store::pending_node>> nodes;
};

/// A value task resolved by the supervisor: applied once its batch commits,
/// so its dependents start only after its output is durable.
struct resolved_value {
  std::string node_id;
  sched::index task = -1; // in the plan of generation plan_gen
  std::uint64_t plan_gen = 0;
  json output;
};

/// What the supervisor keeps per task, at the task's index in the current
/// plan: flat arrays rather than maps keyed by node id, whose every lookup
/// is a few cache misses once a run has 100,000 tasks.
struct task_slot {
  std::int64_t attempts = 0;     // attempts started
  const char* written = nullptr; // state as last written (nullptr: none yet)
  bool in_delta = false;         // changed since the last frame
};

/// What happens once a batch has committed: its events are published, its
/// values reach the scheduler and the attempts it starts are spawned.
/// Results of task actors are applied to the scheduler as they arrive, so
/// the attempts they unblock are recorded in the same batch as the outputs
/// they need; none of them runs before that commit.
struct batch_effects {
  std::vector<std::variant<event, pending_events>> events;
  std::vector<pending_spawn> spawns;
  std::vector<resolved_value> values;
  std::size_t results = 0; // attempts ended in this batch
  bool final = false;
};

struct supervisor_state {
  std::shared_ptr<run_context> ctx;
  rendered_tree tree;
  std::unique_ptr<sched::plan> plan;
  std::unique_ptr<sched::scheduler> sched;
  std::uint64_t plan_gen = 0;   // bumped when a re-render replaces the plan
  std::vector<task_slot> slots; // by task index in the plan
  // Tasks a re-render dropped from the plan, by id: they stay in keyframes
  // and keep their attempt count should they come back.
  std::unordered_map<std::string, task_slot> dropped;
  std::unordered_map<std::string, json> outputs;      // committed outputs
  std::unordered_map<std::string, json> checkpoints;  // last heartbeat data per node
  std::unordered_map<std::string, live_attempt> live; // by node id
  std::unordered_map<caf::actor_id, std::pair<std::string, std::int64_t>> by_actor;
  std::unordered_map<std::string, std::shared_ptr<const json>> named_schemas;
  std::vector<store::command> writes;
  // Events since the last chunk was closed (seq chunk_first on), as the text
  // of the chunk the store will write: a batch's events go in one row.
  std::string chunk_text;
  std::int64_t chunk_first = 0;
  std::int64_t chunk_count = 0;
  batch_effects effects;
  std::unordered_map<std::uint64_t, batch_effects> in_flight;
  std::uint64_t next_batch = 1;
  std::int64_t next_seq = 0;
  std::int64_t frame_no = 0;
  // Frames: the tasks whose state changed since the last frame (their
  // slots hold the state), how many have a state written, and how much
  // changed since the last keyframe.
  std::vector<sched::index> delta;
  std::vector<std::string> dropped_delta; // ids in `dropped` changed since the last frame
  std::size_t written_count = 0;
  std::size_t delta_since_key = 0;
  bool wrote_keyframe = false;
  bool tree_changed = true;
  bool tick_queued = false;
  bool flush_deferred = false; // writes wait for the batch in flight
  bool dirty = false;          // outputs changed since the last render (dynamic workflows)
  bool ending = false;
  stop_mode stopping = stop_mode::none;
  error stop_error;
  caf::actor watchdog;
  run_result result;
  std::mt19937_64 rng{std::random_device{}()};
  static inline const char* name = "smithers.run_supervisor";
};

using sup_actor = caf::stateful_actor<supervisor_state>;

class supervisor {
public:
  explicit supervisor(sup_actor* self) : self_(self), st_(self->state) {}

  // Fields as alternating keys and values, each value put straight into the
  // event's object: an initializer list would first copy every value into a
  // json of its own (an output twice), on the path of every event.
  template <class... KV> void emit(const char* type, KV&&... kv) {
    static_assert(sizeof...(KV) % 2 == 0, "emit takes keys and values in pairs");
    event e;
    e.type = type;
    e.run_id = st_.ctx->run_id;
    e.seq = st_.next_seq++;
    e.timestamp_ms = util::now_ms();
    e.fields = json::object();
    put_fields(e.fields, std::forward<KV>(kv)...);
    add_to_chunk(e);
    st_.effects.events.push_back(std::move(e));
  }

  static void put_fields(json&) {}
  template <class V, class... Rest>
  static void put_fields(json& fields, const char* key, V&& value, Rest&&... rest) {
    fields.emplace(key, std::forward<V>(value));
    put_fields(fields, std::forward<Rest>(rest)...);
  }

  // Appends an event to the open chunk; a gap in seqs (nodes announced in
  // between) or a large chunk closes it first.
  void add_to_chunk(const event& e) {
    constexpr std::size_t max_chunk_bytes = 256 * 1024;
    if (st_.chunk_count > 0 &&
        (st_.chunk_first + st_.chunk_count != e.seq || st_.chunk_text.size() >= max_chunk_bytes))
      close_chunk();
    auto& text = st_.chunk_text;
    if (st_.chunk_count == 0) {
      st_.chunk_first = e.seq;
      text = '[';
    } else {
      text += ',';
    }
    store::append_chunk_entry(text, e.type, e.timestamp_ms, e.fields);
    ++st_.chunk_count;
  }

  void close_chunk() {
    if (st_.chunk_count == 0) return;
    st_.chunk_text += ']';
    st_.writes.push_back(store::append_events{st_.ctx->run_id, st_.chunk_first, st_.chunk_count,
                                              std::move(st_.chunk_text)});
    st_.chunk_text = std::string();
    st_.chunk_count = 0;
  }

  // A task's slot: at its index in the plan, or by id if a re-render
  // dropped it (t < 0).
  task_slot& slot_of(sched::index t, const std::string& id) {
    return t >= 0 ? st_.slots[static_cast<std::size_t>(t)] : st_.dropped[id];
  }

  void set_written(task_slot& sl, const char* state) {
    if (!sl.written) ++st_.written_count;
    sl.written = state;
  }

  // Records the state written for a task, for the next frame.
  void note_state(sched::index t, const std::string& id, const char* state) {
    task_slot& sl = slot_of(t, id);
    set_written(sl, state);
    if (sl.in_delta) return;
    sl.in_delta = true;
    if (t >= 0)
      st_.delta.push_back(t);
    else
      st_.dropped_delta.push_back(id);
  }

  void node_row(sched::index t, const std::string& id, node_state s) {
    const task_spec* spec = t >= 0 ? st_.plan->specs[t].get() : nullptr;
    store::node_row r;
    r.run_id = st_.ctx->run_id;
    r.node_id = id;
    r.state = to_string(s);
    r.attempts = slot_of(t, id).attempts;
    if (spec) {
      r.label = spec->label;
      r.kind = to_string(spec->kind);
    }
    r.updated_ms = util::now_ms();
    note_state(t, id, to_string(s));
    st_.writes.push_back(store::upsert_node{std::move(r)});
  }

  // Nodes entering the run: pending rows and NodePending events, in one
  // compact command (a large tree is announced without a row object and an
  // event object per node).
  void add_pending(const std::vector<sched::index>& tasks) {
    if (tasks.empty()) return;
    auto nodes = std::make_shared<std::vector<store::pending_node>>();
    nodes->reserve(tasks.size());
    // Sized once for the tree: growing a 100,000-entry map rehashes it a
    // dozen times, each a pass of cache misses over every entry.
    st_.outputs.reserve(st_.outputs.size() + tasks.size());
    st_.delta.reserve(st_.delta.size() + tasks.size());
    for (auto t : tasks) {
      const auto& id = st_.plan->task_ids[t];
      const task_spec* spec = st_.plan->specs[t].get();
      nodes->push_back({id, spec ? spec->label : std::string(),
                        spec ? std::string(to_string(spec->kind)) : std::string()});
      note_state(t, id, to_string(node_state::pending));
    }
    pending_events pe{st_.next_seq, util::now_ms(), nodes};
    st_.next_seq += static_cast<std::int64_t>(nodes->size());
    st_.writes.push_back(store::add_pending_nodes{st_.ctx->run_id, nodes, pe.first_seq, pe.at_ms});
    st_.effects.events.push_back(std::move(pe));
  }

  void publish(const std::variant<event, pending_events>& item) {
    if (const auto* e = std::get_if<event>(&item)) {
      st_.ctx->publish(*e);
      return;
    }
    const auto& pe = std::get<pending_events>(item);
    event e;
    e.type = event_type::node_pending;
    e.run_id = st_.ctx->run_id;
    e.timestamp_ms = pe.at_ms;
    for (std::size_t i = 0; i < pe.nodes->size(); ++i) {
      e.seq = pe.first_seq + static_cast<std::int64_t>(i);
      e.fields = json::object();
      put_fields(e.fields, "node_id", (*pe.nodes)[i].node_id, "iteration", 0);
      st_.ctx->publish(e);
    }
  }

  // The command that ends an attempt (its output, if any, goes with it).
  store::finish_attempt finish_cmd(const std::string& id, std::int64_t attempt, const char* state,
                                   std::int64_t at_ms, json err = nullptr) const {
    store::finish_attempt fa;
    fa.run_id = st_.ctx->run_id;
    fa.node_id = id;
    fa.attempt = attempt;
    fa.state = state;
    fa.finished_ms = at_ms;
    fa.error = std::move(err);
    return fa;
  }

  void queue_tick() {
    if (!st_.tick_queued) {
      st_.tick_queued = true;
      self_->send(self_, tick_atom::value);
    }
  }

  // Every batch that changes node states (or the tree) carries a frame: the
  // tree when it changed (stored once per hash) and a snapshot of node
  // states — all of them in a keyframe, else only what changed since the
  // previous frame. A keyframe is due when the deltas since the last one add
  // up to a keyframe's size, so total snapshot storage stays linear in the
  // number of state changes.
  void maybe_frame() {
    std::size_t changes = st_.delta.size() + st_.dropped_delta.size();
    if (changes == 0 && !st_.tree_changed) return;
    bool key =
        !st_.wrote_keyframe || st_.delta_since_key >= std::max<std::size_t>(64, st_.written_count);
    // The snapshot's text is written directly, in plan order: a keyframe of
    // a large run would otherwise be a JSON object (a sorted map) of every
    // node, built and dumped once per keyframe.
    std::string snap = R"({"states":{)";
    std::size_t nodes = 0;
    auto put = [&](const std::string& id, const char* state) {
      if (nodes++ > 0) snap += ',';
      util::append_json_string(snap, id);
      snap += ":\"";
      snap += state; // state names need no escaping
      snap += '"';
    };
    if (key) {
      for (std::size_t t = 0; t < st_.slots.size(); ++t)
        if (st_.slots[t].written) put(st_.plan->task_ids[t], st_.slots[t].written);
      for (const auto& [id, sl] : st_.dropped)
        if (sl.written) put(id, sl.written);
    } else {
      for (auto t : st_.delta)
        put(st_.plan->task_ids[t], st_.slots[t].written);
      for (const auto& id : st_.dropped_delta)
        put(id, st_.dropped[id].written);
    }
    snap += '}';
    if (key) {
      snap += R"(,"input":)";
      util::append_json(snap, *st_.ctx->input);
    }
    snap += '}';
    for (auto t : st_.delta)
      st_.slots[t].in_delta = false;
    for (const auto& id : st_.dropped_delta)
      st_.dropped[id].in_delta = false;
    st_.delta.clear();
    st_.dropped_delta.clear();
    if (key) {
      st_.delta_since_key = 0;
      st_.wrote_keyframe = true;
    } else {
      st_.delta_since_key += changes;
    }
    store::frame_row f;
    f.run_id = st_.ctx->run_id;
    f.frame_no = st_.frame_no;
    f.tree_hash = st_.tree.hash;
    std::shared_ptr<const std::string> tree_text;
    if (st_.tree_changed) tree_text = st_.tree.canonical;
    f.created_ms = util::now_ms();
    f.keyframe = key;
    st_.writes.push_back(store::store_frame{std::move(f), std::move(tree_text), std::move(snap)});
    emit(event_type::frame_committed, "frame_no", st_.frame_no, "tree_hash", st_.tree.hash,
         "changes", changes, "keyframe", key);
    emit(event_type::snapshot_captured, "frame_no", st_.frame_no, "keyframe", key, "nodes", nodes);
    st_.tree_changed = false;
    ++st_.frame_no;
  }

  // Compiles the current tree and returns the tasks new to the run. Node
  // states and slots carry over by id: from the previous plan on a
  // re-render, states from `known` on a resume. Slots of tasks the new plan
  // drops move to `dropped`, and come back from there.
  std::vector<sched::index> rebuild(const std::unordered_map<std::string, node_state>& known) {
    auto plan = std::make_unique<sched::plan>(sched::compile(*st_.tree.root));
    const sched::plan* old = st_.plan.get();
    const std::size_t n = plan->task_count();
    std::vector<node_state> initial(n, node_state::pending);
    std::vector<task_slot> slots(n);
    std::vector<char> kept(old ? old->task_count() : 0, 0);
    std::vector<sched::index> fresh;
    std::vector<sched::index> back_to_pending; // returning, to run again
    for (std::size_t t = 0; t < n; ++t) {
      const auto& id = plan->task_ids[t];
      sched::index o = old ? old->find(id) : -1;
      if (o >= 0) {
        initial[t] = st_.sched->state(o);
        slots[t] = st_.slots[static_cast<std::size_t>(o)];
        kept[static_cast<std::size_t>(o)] = 1;
        continue;
      }
      auto dropped = st_.dropped.find(id);
      if (auto it = known.find(id); it != known.end())
        initial[t] = it->second;
      else if (dropped != st_.dropped.end() && dropped->second.written)
        // Back after a render left it out: it keeps what it had. A finished
        // node is never executed again (its output was kept); one stopped
        // when it was dropped runs again.
        initial[t] = returning_state(dropped->second.written);
      else
        fresh.push_back(static_cast<sched::index>(t));
      if (dropped != st_.dropped.end()) {
        slots[t] = dropped->second;
        st_.dropped.erase(dropped);
        if (initial[t] == node_state::pending &&
            std::string_view{slots[t].written} != to_string(node_state::pending))
          back_to_pending.push_back(static_cast<sched::index>(t));
      }
    }
    for (std::size_t o = 0; o < kept.size(); ++o)
      if (!kept[o]) st_.dropped[old->task_ids[o]] = st_.slots[o];
    // The frame's delta, re-indexed.
    st_.delta.clear();
    st_.dropped_delta.clear();
    for (std::size_t t = 0; t < n; ++t)
      if (slots[t].in_delta) st_.delta.push_back(static_cast<sched::index>(t));
    for (const auto& [id, sl] : st_.dropped)
      if (sl.in_delta) st_.dropped_delta.push_back(id);
    for (auto& [id, la] : st_.live) {
      la.task = plan->find(id);
      // Dropped while it runs: stopped, and recorded cancelled ("unmounted")
      // once it has; the run does not end before (check_end).
      if (la.task < 0 && !la.unmounted) {
        la.unmounted = true;
        if (la.actor)
          self_->send(la.actor, cancel_atom::value, unmounted_error().code,
                      unmounted_error().message);
      }
    }
    auto s = std::make_unique<sched::scheduler>(*plan, st_.ctx->max_concurrency, initial);
    // The old scheduler refers to the old plan: replace both together.
    st_.sched = std::move(s);
    st_.plan = std::move(plan);
    st_.slots = std::move(slots);
    ++st_.plan_gen;
    for (auto t : back_to_pending)
      node_row(t, st_.plan->task_ids[t], node_state::pending);
    return fresh;
  }

  static node_state returning_state(const char* written) {
    auto s = node_state_from(written).value_or(node_state::pending);
    return s == node_state::finished || s == node_state::failed || s == node_state::skipped
               ? s
               : node_state::pending;
  }

  static const error& unmounted_error() {
    static const error e{errc::task_aborted,
                         "unmounted: a re-render removed the node while this attempt ran"};
    return e;
  }

  void start() {
    st_.watchdog =
        spawn_heartbeat_watchdog(*self_, st_.ctx->run_id, st_.ctx->owner_id, st_.ctx->persistence);
    st_.next_seq = st_.ctx->next_seq;
    st_.result.run_id = st_.ctx->run_id;
    st_.tree = std::move(st_.ctx->first_render);
    if (st_.ctx->resume) {
      resume(*st_.ctx->resume);
      return;
    }
    add_pending(rebuild({}));
    queue_tick();
  }

  // Continues a run from the store: attempts the dead owner left in flight
  // are recorded cancelled and their nodes run again; finished nodes keep
  // their outputs and never run again; backoffs still running are waited out.
  void resume(resume_state& r) {
    st_.outputs = std::move(r.outputs);
    st_.checkpoints = std::move(r.checkpoints);
    st_.frame_no = r.next_frame;
    std::int64_t now = util::now_ms();
    error lost{errc::task_aborted,
               "the process driving the run ended while this attempt was in flight"};
    for (const auto& [id, attempt] : r.orphaned) {
      st_.writes.push_back(finish_cmd(id, attempt, attempt_state::cancelled, now, lost.to_json()));
      emit(event_type::node_cancelled, "node_id", id, "iteration", 0, "attempt", attempt, "reason",
           cancel_reason::interrupted, "error", lost.to_json());
    }
    emit(event_type::run_resumed, "previous_owner", r.previous_owner, "orphaned_attempts",
         r.orphaned.size(), "forced", r.forced, "handover", r.handover);
    auto added = rebuild(r.states);
    // As stored: nodes no longer in the tree keep theirs in keyframes.
    for (const auto& [id, state] : r.states)
      set_written(slot_of(st_.plan->find(id), id), to_string(state));
    for (const auto& [id, count] : r.attempts)
      slot_of(st_.plan->find(id), id).attempts = count;
    std::unordered_set<std::string> orphans;
    for (const auto& o : r.orphaned)
      orphans.insert(o.first);
    for (std::size_t t = 0; t < st_.plan->task_count(); ++t) {
      const auto& id = st_.plan->task_ids[t];
      if (orphans.count(id) && r.states.count(id))
        node_row(static_cast<sched::index>(t), id, node_state::pending);
    }
    // An interrupted node the resumed workflow no longer has (resumed with
    // another --workflow) will not run again here: not in-progress forever.
    for (const auto& id : orphans)
      if (st_.plan->find(id) < 0) {
        node_row(-1, id, node_state::cancelled);
        emit(event_type::node_cancelled, "node_id", id, "iteration", 0, "reason",
             cancel_reason::unmounted);
      }
    add_pending(added);
    for (const auto& [id, at] : r.retry_at_ms) {
      sched::index t = st_.plan->find(id);
      if (t < 0) continue;
      st_.sched->hold(t);
      self_->delayed_send(self_, std::chrono::milliseconds{std::max<std::int64_t>(0, at - now)},
                          retry_atom::value, id);
    }
    queue_tick();
  }

  void rerender() {
    st_.dirty = false;
    render_context rc{st_.ctx->run_id, st_.ctx->input.get(), &st_.outputs};
    rendered_tree next;
    try {
      next = render(st_.ctx->wf, rc);
    } catch (const std::exception& e) {
      fail_run(
          error{errc::invalid_workflow, std::string{"rendering the workflow failed: "} + e.what()});
      return;
    }
    if (next.hash == st_.tree.hash) return;
    auto ps = spec::validate_tree(*st_.ctx->wf, *next.root);
    if (!ps.empty()) {
      fail_run(error{errc::invalid_workflow,
                     "the workflow rendered an invalid tree: " + spec::join(ps)});
      return;
    }
    st_.tree = std::move(next);
    st_.tree_changed = true;
    add_pending(rebuild({}));
  }

  std::shared_ptr<const json> schema_for(const std::shared_ptr<task_spec>& spec) {
    if (!spec->output_schema.is_null())
      return std::shared_ptr<const json>(spec, &spec->output_schema); // aliases the spec
    if (spec->output.empty()) return nullptr;
    auto& cached = st_.named_schemas[spec->output];
    if (!cached) {
      auto it = st_.ctx->wf->output_schemas.find(spec->output);
      if (it != st_.ctx->wf->output_schemas.end())
        cached = std::make_shared<const json>(it->second);
    }
    return cached;
  }

  // Commands run where the run started (recorded with it, so every resume
  // agrees); a task's relative cwd is under that directory.
  std::string task_cwd(const task_spec& spec) const {
    const std::string& base = st_.ctx->cwd;
    if (spec.cwd.empty()) return base;
    if (spec.cwd[0] == '/' || base.empty()) return spec.cwd;
    return base + "/" + spec.cwd;
  }

  void start_task(sched::index t) {
    const auto& id = st_.plan->task_ids[t];
    const auto& spec = st_.plan->specs[t];
    std::int64_t attempt = ++st_.slots[static_cast<std::size_t>(t)].attempts;
    std::int64_t now = util::now_ms();
    if (spec->kind == task_kind::value) {
      resolve_value(t, attempt, now);
      return;
    }

    store::attempt_row ar;
    ar.run_id = st_.ctx->run_id;
    ar.node_id = id;
    ar.attempt = attempt;
    ar.state = attempt_state::in_progress;
    ar.started_ms = now;
    st_.writes.push_back(store::insert_attempt{std::move(ar)});
    node_row(t, id, node_state::in_progress);
    emit(event_type::node_started, "node_id", id, "iteration", 0, "attempt", attempt);

    auto job = std::make_shared<task_job>();
    job->run_id = st_.ctx->run_id;
    job->node_id = id;
    job->attempt = attempt;
    job->task_index = t;
    job->spec = spec;
    job->input = st_.ctx->input;
    for (const auto& need : spec->needs) {
      auto it = st_.outputs.find(need);
      if (it != st_.outputs.end()) job->needs[need] = it->second;
    }
    if (auto it = st_.checkpoints.find(id); it != st_.checkpoints.end())
      job->last_heartbeat = it->second;
    job->output_schema = schema_for(spec);
    job->cwd = task_cwd(*spec);
    job->max_output_bytes = st_.ctx->max_output_bytes;
    live_attempt la;
    la.attempt = attempt;
    la.task = t;
    la.started_ms = now;
    try {
      if (spec->kind == task_kind::command) {
        spec::template_scope scope;
        scope.input = st_.ctx->input.get();
        scope.outputs = &st_.outputs;
        scope.run_id = st_.ctx->run_id;
        scope.node_id = id;
        scope.attempt = attempt;
        // A script gets each value through a SMITHERS_TEMPLATE_<n> variable,
        // never spliced into its code; other arguments take values verbatim.
        if (spec->use_shell) {
          auto sh = spec::expand_shell(spec->shell, scope, "/bin/sh");
          job->argv = {"/bin/sh", "-c", std::move(sh.script)};
          job->env.merge(sh.env);
        } else {
          auto ex = spec::expand_argv(spec->argv, scope);
          job->argv = std::move(ex.argv);
          job->env.merge(ex.env);
        }
        for (const auto& [k, v] : spec->env) // names never start with SMITHERS_TEMPLATE_
          job->env[k] = spec::expand(v, scope, k.size() + 1);
      } else if (spec->kind == task_kind::compute) {
        if (spec->compute) {
          job->compute = spec->compute;
        } else {
          auto it = st_.ctx->computes->find(spec->compute_name);
          if (it == st_.ctx->computes->end())
            throw smithers_error(errc::invalid_workflow, "no compute function named \"" +
                                                             spec->compute_name +
                                                             "\" is registered");
          job->compute = it->second;
        }
      }
    } catch (const smithers_error& e) {
      st_.live.emplace(id, std::move(la));
      attempt_failed(id, attempt, e.err());
      return;
    }
    st_.live.emplace(id, std::move(la));
    st_.effects.spawns.push_back({id, attempt, std::move(job)});
  }

  // A value task has nothing to run, time out or watch: the supervisor
  // checks the value against its schema and records the attempt, started
  // and ended, in this batch. No task actor is spawned for it. Like any
  // output, it reaches the scheduler (and its dependents) only after the
  // commit.
  void resolve_value(sched::index t, std::int64_t attempt, std::int64_t now) {
    const auto& id = st_.plan->task_ids[t];
    const auto& spec = st_.plan->specs[t];
    task_job job;
    job.run_id = st_.ctx->run_id;
    job.node_id = id;
    job.attempt = attempt;
    job.task_index = t;
    job.spec = spec;
    job.output_schema = schema_for(spec);
    job.max_output_bytes = st_.ctx->max_output_bytes;
    task_outcome oc = execute(job, nullptr, {});
    store::attempt_row ar;
    ar.run_id = st_.ctx->run_id;
    ar.node_id = id;
    ar.attempt = attempt;
    ar.state = oc.err ? "in-progress" : "finished"; // a failure is recorded by attempt_failed
    ar.started_ms = now;
    if (!oc.err) {
      // Started and finished in one row, its output on it.
      ar.finished_ms = now;
      ar.output = *oc.output;
    }
    st_.writes.push_back(store::insert_attempt{std::move(ar)});
    emit(event_type::node_started, "node_id", id, "iteration", 0, "attempt", attempt);
    if (oc.err) {
      live_attempt la;
      la.attempt = attempt;
      la.task = t;
      la.started_ms = now;
      st_.live.emplace(id, std::move(la));
      attempt_failed(id, attempt, *oc.err);
      return;
    }
    node_row(t, id, node_state::finished);
    emit(event_type::node_output, "node_id", id, "iteration", 0, "output", *oc.output);
    emit(event_type::node_finished, "node_id", id, "iteration", 0, "attempt", attempt,
         "duration_ms", 0);
    ++st_.effects.results;
    st_.effects.values.push_back({id, t, st_.plan_gen, std::move(*oc.output)});
  }

  // The attempt row is committed: now the work may run.
  void spawn(const pending_spawn& sp) {
    auto it = st_.live.find(sp.node_id);
    if (it == st_.live.end() || it->second.attempt != sp.attempt) return; // ended meanwhile
    if (st_.stopping != stop_mode::none || it->second.unmounted) {
      attempt_failed(sp.node_id, sp.attempt,
                     it->second.unmounted ? unmounted_error() : st_.stop_error);
      return;
    }
    if (st_.ending) {
      // The run failed while this start was being committed: it never ran.
      end_live(sp.node_id);
      st_.writes.push_back(finish_cmd(
          sp.node_id, sp.attempt, attempt_state::cancelled, util::now_ms(),
          error{errc::task_aborted, "the run ended before this attempt started"}.to_json()));
      flush();
      return;
    }
    auto& la = it->second;
    la.actor = spawn_task_actor(*self_, sp.job, st_.ctx->pool, caf::actor_cast<caf::actor>(self_),
                                st_.watchdog);
    self_->monitor(la.actor);
    if (st_.ctx->on_task_spawned) st_.ctx->on_task_spawned(sp.node_id, sp.attempt, la.actor);
    self_->send(st_.watchdog, track_atom::value, sp.node_id, sp.attempt, la.actor,
                sp.job->spec->heartbeat_timeout_ms.value_or(0));
    st_.by_actor.emplace(la.actor.id(), std::make_pair(sp.node_id, sp.attempt));
  }

  void write_heartbeat(const std::string& id, live_attempt& la, std::int64_t at_ms,
                       const json& data, bool has_data) {
    store::record_heartbeat rh;
    rh.run_id = st_.ctx->run_id;
    rh.node_id = id;
    rh.attempt = la.attempt;
    rh.heartbeat_ms = at_ms;
    rh.has_data = has_data;
    if (has_data) rh.data = data;
    std::size_t bytes = has_data ? data.dump().size() : 0;
    st_.writes.push_back(std::move(rh));
    std::int64_t interval = at_ms - (la.last_hb_write_ms ? la.last_hb_write_ms : la.started_ms);
    emit(event_type::task_heartbeat, "node_id", id, "iteration", 0, "attempt", la.attempt,
         "has_data", has_data, "data_bytes", bytes, "interval_ms", interval);
    la.last_hb_write_ms = at_ms;
    if (has_data) st_.checkpoints[id] = data;
  }

  // A throttled heartbeat from the watchdog: write it.
  void on_heartbeat(const heartbeat_msg& hb, const std::string& id) {
    auto it = st_.live.find(id);
    if (it == st_.live.end() || it->second.attempt != hb.attempt)
      return; // a late heartbeat of an attempt that has ended
    write_heartbeat(id, it->second, hb.at_ms, hb.data, hb.has_data);
    queue_tick();
  }

  // Removes an attempt from the live set, writing its final heartbeat (the
  // outcome carries it) if the watchdog had not written it yet.
  live_attempt end_live(const std::string& id, const last_heartbeat* beat = nullptr) {
    auto it = st_.live.find(id);
    live_attempt la = std::move(it->second);
    st_.live.erase(it);
    // >=: beats within one millisecond of the last write may carry newer data.
    if (beat && beat->at_ms > 0 && beat->at_ms >= la.last_hb_write_ms)
      write_heartbeat(id, la, beat->at_ms, beat->data, beat->has_data);
    if (la.actor) self_->send(st_.watchdog, untrack_atom::value, id, la.attempt);
    return la;
  }

  void on_result(const std::string& id, std::int64_t attempt, const task_outcome& oc) {
    auto it = st_.live.find(id);
    if (it == st_.live.end() || it->second.attempt != attempt) return;
    // An attempt of a node a render dropped was asked to stop: whatever it
    // returns, it is recorded cancelled (its node runs again if it returns).
    if (oc.err || it->second.unmounted) {
      attempt_failed(id, attempt, oc.err ? *oc.err : unmounted_error(), &oc.beat);
      return;
    }
    auto la = end_live(id, &oc.beat);
    std::int64_t now = util::now_ms();
    auto fa = finish_cmd(id, attempt, attempt_state::finished, now);
    fa.output = *oc.output;
    st_.writes.push_back(std::move(fa));
    sched::index t = la.task;
    node_row(t, id, node_state::finished);
    emit(event_type::node_output, "node_id", id, "iteration", 0, "output", *oc.output);
    emit(event_type::node_finished, "node_id", id, "iteration", 0, "attempt", attempt,
         "duration_ms", now - la.started_ms);
    ++st_.effects.results;
    st_.outputs[id] = *oc.output;
    st_.dirty = true;
    if (t >= 0) st_.sched->complete(t, node_state::finished);
  }

  void attempt_failed(const std::string& id, std::int64_t attempt, const error& err,
                      const last_heartbeat* beat = nullptr) {
    live_attempt la = end_live(id, beat);
    sched::index t = la.task;
    std::int64_t now = util::now_ms();
    const task_spec* spec = t >= 0 ? st_.plan->specs[t].get() : nullptr;
    auto fa = finish_cmd(id, attempt, attempt_state::failed, now);
    if (la.unmounted && st_.stopping == stop_mode::none) {
      // Its node is out of the tree: never retried here; if a render brings
      // it back, it runs again.
      error why = unmounted_error();
      if (err.code != errc::task_aborted) why.details = {{"task_error", err.to_json()}};
      fa.state = attempt_state::cancelled;
      fa.error = why.to_json();
      st_.writes.push_back(std::move(fa));
      node_row(t, id, node_state::cancelled);
      emit(event_type::node_cancelled, "node_id", id, "iteration", 0, "attempt", attempt, "reason",
           cancel_reason::unmounted, "error", why.to_json());
      ++st_.effects.results;
      return;
    }
    if (st_.stopping != stop_mode::none) {
      // Ended by the stop: recorded as cancelled, never retried.
      error why = st_.stop_error;
      if (err.code != errc::run_cancelled && err.code != errc::task_aborted)
        why.details = {{"task_error", err.to_json()}};
      fa.state = attempt_state::cancelled;
      fa.error = why.to_json();
      st_.writes.push_back(std::move(fa));
      bool back_to_pending = st_.stopping != stop_mode::cancel;
      node_row(t, id, back_to_pending ? node_state::pending : node_state::cancelled);
      emit(event_type::node_cancelled, "node_id", id, "iteration", 0, "attempt", attempt, "reason",
           back_to_pending ? cancel_reason::interrupted : cancel_reason::cancelled, "error",
           why.to_json());
      return;
    }
    fa.error = err.to_json();
    bool retry = spec && is_retryable(err) && attempt <= spec->retries;
    if (retry) {
      retry_policy rp = spec->retry.value_or(retry_policy{});
      std::uniform_real_distribution<double> unit(0.0, 1.0);
      std::int64_t delay = backoff_ms(rp, attempt + 1, unit(st_.rng));
      // The earliest start of the next attempt is durable: derived from this
      // attempt's finish time, so a restart neither skips nor restarts it.
      fa.meta = {{"retry_at_ms", now + delay}};
      st_.writes.push_back(std::move(fa));
      node_row(t, id, node_state::pending);
      emit(event_type::node_retrying, "node_id", id, "iteration", 0, "attempt", attempt,
           "next_attempt", attempt + 1, "delay_ms", delay, "retry_at_ms", now + delay, "error",
           err.to_json());
      ++st_.effects.results;
      if (t >= 0) {
        st_.sched->defer(t);
        self_->delayed_send(self_, std::chrono::milliseconds{delay}, retry_atom::value, id);
      }
    } else {
      st_.writes.push_back(std::move(fa));
      node_row(t, id, node_state::failed);
      emit(event_type::node_failed, "node_id", id, "iteration", 0, "attempt", attempt, "error",
           err.to_json());
      ++st_.effects.results;
      if (t >= 0) st_.sched->complete(t, node_state::failed);
    }
  }

  // A command's process group started: recorded with its pid's start time so
  // that a resume after a crash of this process can end it.
  // The host and the pid's start time come from where the process runs (a
  // remote worker's, one day), not from this supervisor.
  void on_process(const std::string& id, std::int64_t attempt, std::int64_t pid,
                  const std::string& host, std::int64_t pid_start) {
    auto it = st_.live.find(id);
    if (it == st_.live.end() || it->second.attempt != attempt) return;
    st_.writes.push_back(store::set_attempt_meta{
        st_.ctx->run_id, id, 0, attempt,
        {{"host", host}, {"pgid", pid}, {"pgid_start", pid_start}}});
    queue_tick();
  }

  void on_heartbeat_timeout(const std::string& id, std::int64_t attempt,
                            std::int64_t last_beat_ms) {
    auto it = st_.live.find(id);
    if (it == st_.live.end() || it->second.attempt != attempt) return;
    sched::index t = it->second.task;
    std::int64_t limit = 0;
    if (t >= 0 && st_.plan->specs[t]->heartbeat_timeout_ms)
      limit = *st_.plan->specs[t]->heartbeat_timeout_ms;
    emit(event_type::task_heartbeat_timeout, "node_id", id, "iteration", 0, "attempt", attempt,
         "heartbeat_timeout_ms", limit, "last_heartbeat_ms", last_beat_ms);
    attempt_failed(id, attempt,
                   error{errc::task_heartbeat_timeout,
                         "no heartbeat for " + std::to_string(limit) + " ms",
                         {{"heartbeat_timeout_ms", limit}, {"last_heartbeat_ms", last_beat_ms}}});
    queue_tick();
  }

  void on_down(const caf::down_msg& dm) {
    auto it = st_.by_actor.find(dm.source.id());
    if (it == st_.by_actor.end()) return;
    auto [id, attempt] = it->second;
    st_.by_actor.erase(it);
    auto lit = st_.live.find(id);
    if (lit == st_.live.end() || lit->second.attempt != attempt) return; // its result arrived first
    attempt_failed(id, attempt,
                   error{errc::task_failed,
                         "task actor ended without a result (" + caf::to_string(dm.reason) + ")"});
    queue_tick();
  }

  // Cancel (the run ends cancelled), interrupt or handover (the run stays
  // resumable): no new starts, every attempt in flight is asked to stop and
  // recorded cancelled once it has.
  void stop(stop_mode mode, error why) {
    if (st_.ending || st_.stopping != stop_mode::none) return;
    st_.stopping = mode;
    st_.stop_error = std::move(why);
    for (auto& [id, la] : st_.live)
      if (la.actor)
        self_->send(la.actor, cancel_atom::value, st_.stop_error.code, st_.stop_error.message);
    queue_tick();
  }

  void finish_stop() {
    if (st_.stopping == stop_mode::cancel) {
      end_run(run_status::cancelled, st_.stop_error);
      return;
    }
    // Interrupted: the run stays `running` in the store, resumable; its
    // in-flight attempts are recorded cancelled, their nodes pending. A
    // handover also lets go of the run, in the same commit, for the resumer
    // waiting to claim it: from then on this process writes nothing to it.
    st_.ending = true;
    st_.result.status = run_status::running;
    st_.result.err = st_.stop_error;
    if (st_.stopping == stop_mode::handover)
      st_.writes.push_back(store::release_run{st_.ctx->run_id, st_.ctx->owner_id, util::now_ms()});
    st_.effects.final = true;
    flush();
  }

  void fail_run(error err) { end_run(run_status::failed, std::move(err)); }

  void end_run(run_status status, std::optional<error> err) {
    if (st_.ending) return;
    st_.ending = true;
    std::int64_t now = util::now_ms();
    // Moved, not copied: nothing reads them after the run has ended.
    for (auto& [id, out] : st_.outputs)
      st_.result.outputs.emplace(id, std::move(out));
    st_.outputs.clear();
    st_.result.status = status;
    st_.result.err = err;
    // Nodes the run never reached are not left pending forever: they will
    // not run (unless the run is resumed, which runs cancelled nodes again).
    if (status != run_status::finished) {
      const char* reason =
          status == run_status::cancelled ? cancel_reason::cancelled : cancel_reason::run_failed;
      for (std::size_t t = 0; t < st_.slots.size(); ++t)
        if (is_pending(st_.slots[t]))
          never_reached(static_cast<sched::index>(t), st_.plan->task_ids[t], reason);
      std::vector<std::string> dropped_pending;
      for (const auto& [id, sl] : st_.dropped)
        if (is_pending(sl)) dropped_pending.push_back(id);
      for (const auto& id : dropped_pending)
        never_reached(-1, id, reason);
    }
    // The last frame comes before the run's end, so RunFinished (or
    // RunFailed, RunCancelled) is the last event.
    maybe_frame();
    st_.writes.push_back(store::update_run_status{st_.ctx->run_id, to_string(status),
                                                  err ? err->to_json() : json(), now, now});
    emit(event_type::run_status_changed, "status", to_string(status));
    if (status == run_status::finished)
      emit(event_type::run_finished, "duration_ms", now - st_.ctx->started_ms);
    else if (status == run_status::cancelled)
      emit(event_type::run_cancelled, "error", err ? err->to_json() : json());
    else
      emit(event_type::run_failed, "error", err ? err->to_json() : json());
    st_.effects.final = true;
    // Attempts still in flight (a failed run with in-flight siblings never
    // gets here; a render error may) end with the supervisor.
    for (auto& [id, la] : st_.live)
      if (la.actor) self_->send_exit(la.actor, caf::exit_reason::user_shutdown);
    flush();
  }

  static bool is_pending(const task_slot& sl) {
    return sl.written && std::string_view{sl.written} == to_string(node_state::pending);
  }

  void never_reached(sched::index t, const std::string& id, const char* reason) {
    node_row(t, id, node_state::cancelled);
    emit(event_type::node_cancelled, "node_id", id, "iteration", 0, "reason", reason);
  }

  void tick() {
    st_.tick_queued = false;
    if (st_.ending) return;
    if (st_.ctx->wf->dynamic() && st_.dirty) rerender();
    if (st_.ending) return;
    if (st_.stopping != stop_mode::none) {
      if (st_.live.empty() && !results_pending()) finish_stop();
      flush();
      return;
    }
    for (;;) {
      for (auto t : st_.sched->take_auto_skipped())
        record_skip(t, "a node it needs did not finish");
      auto ready = st_.sched->take_runnable();
      if (ready.empty()) break;
      bool skipped_any = false;
      for (auto t : ready) {
        const auto& spec = *st_.plan->specs[t];
        if (!spec.skip_if.is_null() && spec::evaluate(spec.skip_if, *st_.ctx->input, st_.outputs)) {
          // Skipping frees the slot and may unblock others: schedule again.
          st_.sched->complete(t, node_state::skipped);
          record_skip(t, "skip_if matched");
          skipped_any = true;
        } else {
          start_task(t);
        }
      }
      if (!skipped_any) break;
    }
    check_end();
    flush();
  }

  // Results recorded but not yet committed keep the stop from finishing, so
  // the final batch comes after them.
  bool results_pending() const {
    for (const auto& [id, fx] : st_.in_flight)
      if (fx.results || !fx.spawns.empty()) return true;
    return st_.effects.results || !st_.effects.spawns.empty();
  }

  void record_skip(sched::index t, const char* reason) {
    const auto& id = st_.plan->task_ids[t];
    node_row(t, id, node_state::skipped);
    emit(event_type::node_skipped, "node_id", id, "iteration", 0, "reason", reason);
  }

  void check_end() {
    // Attempts of nodes a re-render dropped end (recorded cancelled) before
    // the run does: no attempt of an ended run stays in-progress.
    for (const auto& [id, la] : st_.live)
      if (la.task < 0) return;
    // The run's end is written after every batch already sent (the
    // persistence actor commits in order), so it is never durable before
    // the outputs it reports.
    switch (st_.sched->status()) {
    case sched::outcome::running:
      return;
    case sched::outcome::finished:
      end_run(run_status::finished, std::nullopt);
      return;
    case sched::outcome::failed: {
      json ids = json::array();
      std::string names;
      for (auto t : st_.sched->failed_tasks()) {
        ids.push_back(st_.plan->task_ids[t]);
        names += (names.empty() ? "" : ", ") + st_.plan->task_ids[t];
      }
      fail_run(error{
          errc::task_failed, "run failed: task(s) " + names + " failed", {{"failed_nodes", ids}}});
      return;
    }
    case sched::outcome::stuck: {
      json ids = json::array();
      std::string names;
      for (auto t : st_.sched->blocked_tasks()) {
        ids.push_back(st_.plan->task_ids[t]);
        names += (names.empty() ? "" : ", ") + st_.plan->task_ids[t];
      }
      fail_run(error{errc::invalid_workflow,
                     "run cannot go on: task(s) " + names +
                         " need outputs of nodes that can only run after them",
                     {{"blocked_nodes", ids}}});
      return;
    }
    }
  }

  // One batch in flight at a time: what arrives while it commits goes into
  // the next one, so batches (and frames) grow with the load instead of
  // one per message. Nothing waits longer than one commit.
  void flush() {
    if (!st_.in_flight.empty()) {
      st_.flush_deferred = true;
      return;
    }
    send_batch();
  }

  void send_batch() {
    st_.flush_deferred = false;
    maybe_frame();
    close_chunk();
    if (st_.writes.empty() && !st_.effects.results && !st_.effects.final) return;
    auto batch = std::make_shared<write_batch>();
    batch->commands.swap(st_.writes);
    std::uint64_t id = st_.next_batch++;
    st_.in_flight.emplace(id, std::move(st_.effects));
    st_.effects = batch_effects{};
    self_->send(st_.ctx->persistence, write_atom::value, id, batch);
  }

  void on_committed(std::uint64_t id) {
    auto it = st_.in_flight.find(id);
    if (it == st_.in_flight.end()) return;
    batch_effects fx = std::move(it->second);
    st_.in_flight.erase(it);
    if (st_.ctx->publish)
      for (const auto& e : fx.events)
        publish(e);
    if (fx.final) {
      finish();
      return;
    }
    for (auto& v : fx.values) {
      sched::index t = v.plan_gen == st_.plan_gen ? v.task : st_.plan->find(v.node_id);
      st_.outputs[v.node_id] = std::move(v.output);
      st_.dirty = true;
      if (t >= 0) st_.sched->complete(t, node_state::finished);
    }
    for (const auto& sp : fx.spawns)
      spawn(sp);
    if (!fx.values.empty()) queue_tick();
    if (st_.flush_deferred) send_batch();
    // A stop waits for results being committed (see results_pending).
    if (!fx.spawns.empty() || (fx.results && st_.stopping != stop_mode::none)) queue_tick();
  }

  void on_commit_failed(std::uint64_t id, const std::string& msg) {
    st_.in_flight.erase(id);
    // Without the store there is no durable progress: stop the run here. Its
    // row stays as last committed, so it can be resumed once the store works.
    spdlog::error("run {}: {}", st_.ctx->run_id, msg);
    st_.result.status = run_status::failed;
    st_.result.err = error{errc::db_error, msg};
    for (auto& [nid, la] : st_.live)
      if (la.actor) self_->send_exit(la.actor, caf::exit_reason::user_shutdown);
    finish();
  }

  void on_retry(const std::string& id) {
    if (st_.ending || st_.stopping != stop_mode::none) return;
    sched::index t = st_.plan->find(id);
    if (t < 0) return;
    st_.sched->release(t);
    queue_tick();
  }

  void finish() {
    // A normal exit does not end linked actors in CAF: end the watchdog here.
    if (st_.watchdog) self_->send_exit(st_.watchdog, caf::exit_reason::user_shutdown);
    if (st_.ctx->on_end) {
      auto cb = std::move(st_.ctx->on_end);
      st_.ctx->on_end = nullptr;
      cb(std::move(st_.result));
    }
    self_->quit();
  }

private:
  sup_actor* self_;
  supervisor_state& st_;
};

caf::behavior run_supervisor(sup_actor* self, std::shared_ptr<run_context> ctx) {
  self->state.ctx = std::move(ctx);
  self->set_down_handler([=](caf::down_msg& dm) { supervisor{self}.on_down(dm); });
  // A bug must not leave a run hanging: fail it and tell the waiter.
  self->set_exception_handler([=](std::exception_ptr& ep) -> caf::error {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("run {}: supervisor failed: {}", self->state.ctx->run_id, what);
    auto& st = self->state;
    st.result.run_id = st.ctx->run_id;
    st.result.status = run_status::failed;
    st.result.err = error{errc::internal, "run supervisor failed: " + what};
    for (auto& [id, la] : st.live)
      if (la.actor) self->send_exit(la.actor, caf::exit_reason::user_shutdown);
    if (st.watchdog) self->send_exit(st.watchdog, caf::exit_reason::user_shutdown);
    if (st.ctx->on_end) {
      auto cb = std::move(st.ctx->on_end);
      st.ctx->on_end = nullptr;
      cb(st.result);
    }
    return caf::exit_reason::unhandled_exception;
  });
  return {
      [=](start_atom) { supervisor{self}.start(); },
      [=](tick_atom) { supervisor{self}.tick(); },
      [=](result_atom, const std::string& id, std::int64_t attempt, const task_outcome_ptr& oc) {
        supervisor s{self};
        s.on_result(id, attempt, *oc);
        s.queue_tick(); // coalesce: every queued result lands in one batch
      },
      [=](heartbeat_atom, const std::string& id, const heartbeat_ptr& hb) {
        supervisor{self}.on_heartbeat(*hb, id);
      },
      [=](retry_atom, const std::string& id) { supervisor{self}.on_retry(id); },
      [=](process_atom, const std::string& id, std::int64_t attempt, std::int64_t pid,
          const std::string& host, std::int64_t pid_start) {
        supervisor{self}.on_process(id, attempt, pid, host, pid_start);
      },
      [=](hb_timeout_atom, const std::string& id, std::int64_t attempt, std::int64_t last_ms) {
        supervisor{self}.on_heartbeat_timeout(id, attempt, last_ms);
      },
      [=](cancel_atom, const std::string& reason) {
        supervisor{self}.stop(stop_mode::cancel, error{errc::run_cancelled, reason});
      },
      [=](interrupt_atom, const std::string& reason) {
        supervisor{self}.stop(stop_mode::interrupt, error{errc::task_aborted, reason});
      },
      [=](handover_atom, const std::string& requester) {
        supervisor{self}.stop(stop_mode::handover,
                              error{errc::task_aborted,
                                    "handed over to another process (a forced resume)",
                                    {{"handover_to", requester}}});
      },
      [=](committed_atom, std::uint64_t id) { supervisor{self}.on_committed(id); },
      [=](failed_atom, std::uint64_t id, const std::string&, const std::string& msg) {
        supervisor{self}.on_commit_failed(id, msg);
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
