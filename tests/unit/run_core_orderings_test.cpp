// The run core under rare orderings, on purpose (issue 23, part 3).
//
// `sim` plays the run supervisor around the pure core: a store that commits
// batches in order when told to (or fails one), attempts that answer when
// told to, retry timers and wait deadlines on a simulated clock, ticks the
// core asked for. It checks every effect as it comes out of the core
// against the rules of docs/architecture.md ("Durable before visible",
// "Monitoring replaces…", cancel) and keeps what breaks one.
//
// Two ways to drive it: a seeded explorer picks the next message at random
// among those the real actor could receive next (any order the mailbox
// allows), for thousands of seeds over small workflows; and named
// orderings, each driven by hand.
//
// Replay one seed: SMITHERS_CORE_SEED=<seed> (optionally
// SMITHERS_CORE_SCENARIO=<part of a scenario's name>) prints its trace;
// SMITHERS_CORE_SEEDS=<n> changes how many seeds each scenario runs;
// SMITHERS_CORE_STATS=1 prints what the seeds reached (endings, steps).
#include "core/run_core.hpp"
#include "workflow/render.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cstdlib>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <set>

using namespace smithers;
using core::effects;
using core::run_core;
using executors::task_outcome;

namespace {

json noop(task_context&) {
  return json::object();
}

task_outcome ok(json out) {
  task_outcome oc;
  oc.output = std::move(out);
  return oc;
}

task_outcome fail(const char* code, std::string msg = "boom") {
  task_outcome oc;
  oc.err = error{code, std::move(msg)};
  return oc;
}

std::string str(const attempt_key& a) {
  return to_string(a.node) + "#" + std::to_string(a.attempt);
}

struct attempt_less {
  bool operator()(const attempt_key& a, const attempt_key& b) const {
    return std::tie(a.node, a.attempt) < std::tie(b.node, b.attempt);
  }
};
template <class V> using attempt_map = std::map<attempt_key, V, attempt_less>;
using attempt_set = std::set<attempt_key, attempt_less>;

std::shared_ptr<const workflow> static_wf(node root) {
  auto wf = std::make_shared<workflow>();
  wf->root = std::move(root);
  return wf;
}

const retry_policy quick{100, 2.0, 1000, 0.5}; // jittered: the core's RNG is exercised

/// The actor's part, by hand or by the explorer. Every call goes through
/// call(): the core is called, its effects are checked and carried out.
struct sim {
  struct timer_at {
    node_key key;
    std::int64_t due = 0;
  };

  std::int64_t clock = 1'000'000;
  std::unique_ptr<run_core> core;
  // The store.
  std::vector<store::command> written;
  std::vector<std::uint64_t> written_in; // the batch of each written command
  std::deque<std::uint64_t> uncommitted; // sent, oldest first
  std::set<std::uint64_t> committed;
  // Attempts and messages on their way.
  attempt_map<std::shared_ptr<executors::task_job>> launched; // every launch
  attempt_set open;                                           // launched, not reported ended
  std::vector<attempt_key> running;                           // launched, no answer told yet
  std::vector<attempt_key> answered; // answered: late messages may still come
  attempt_set stop_asked;
  attempt_set last_stops; // of the last call
  std::vector<timer_at> timers;
  std::vector<timer_at> wakeups;
  int ticks_due = 0;
  bool done = false;
  bool killed = false;
  run_result result;
  std::vector<event> events; // published
  // What was asked of the run.
  bool cancelled = false;
  bool ending_at_cancel = false; // its end was decided already
  bool commit_failed = false;
  std::uint64_t failed_batch = 0;
  bool check_backoff = true; // no attempt before its retry_at_ms
  // What was written, by attempt and node.
  attempt_map<std::uint64_t> inserted_in;    // batch of each insert_attempt
  attempt_map<std::string> inserted_as;      // its state
  attempt_map<std::int64_t> started_at;      // its started_ms
  attempt_map<std::size_t> ended_at;         // index in `written` of its end
  attempt_map<std::string> ended_as;         // finish_attempt state
  attempt_map<std::int64_t> retry_at;        // a failed attempt's retry_at_ms
  std::map<node_key, std::int64_t> attempts; // the last attempt number inserted
  std::map<node_key, int> finished;          // finished attempts per node
  std::map<node_key, std::string> state_of;  // last written node state
  std::int64_t stored_seq = 0;               // next event seq the store expects
  std::int64_t published_seq = 0;            // next event seq a subscriber expects
  attempt_set inserted_after_cancel;         // in batches sent after the cancel
  std::vector<std::string> trace;
  std::vector<std::string> violations;

  explicit sim(std::shared_ptr<const workflow> wf, std::uint64_t seed = 42,
               json input = json::object()) {
    core::run_config cfg;
    cfg.run_id = "r";
    cfg.owner_id = "me";
    cfg.wf = wf;
    cfg.input = std::make_shared<const json>(std::move(input));
    cfg.computes = std::make_shared<const core::compute_registry>();
    std::unordered_map<std::string, json> outs;
    std::unordered_set<node_key, node_key_hash> ended;
    std::unordered_map<std::string, loop_state> loops;
    render_context rc{"r", cfg.input.get(), &outs, &ended, &loops};
    cfg.first_render = render(wf, rc);
    cfg.started_ms = clock;
    cfg.publish = [this](const event& e) { on_published(e); };
    core = std::make_unique<run_core>(
        std::move(cfg), [this] { return clock; }, seed);
    call("start", [](run_core& c) { c.start(); });
  }
  sim(const sim&) = delete;
  sim& operator=(const sim&) = delete;

  void violate(std::string what) { violations.push_back(std::move(what)); }

  template <class F> void call(std::string what, F&& f) {
    if (done) {
      violate("called after the run ended: " + what);
      return;
    }
    trace.push_back(std::to_string(clock) + " " + what);
    f(*core);
    collect();
  }

  // -- the messages the supervisor turns into calls ---------------------------

  void tick() {
    --ticks_due;
    call("tick", [](run_core& c) { c.tick(); });
  }
  void commit() {
    auto id = uncommitted.front();
    uncommitted.pop_front();
    committed.insert(id);
    call("commit " + std::to_string(id), [id](run_core& c) { c.on_committed(id); });
  }
  void fail_commit() {
    auto id = uncommitted.front();
    uncommitted.pop_front();
    commit_failed = true;
    failed_batch = id;
    call("commit failed " + std::to_string(id),
         [id](run_core& c) { c.on_commit_failed(id, "disk I/O error"); });
  }
  // Attempt keys are taken by copy: the caller's may be an element of
  // `running`, which these erase.
  void answer(attempt_key a, const task_outcome& oc) {
    forget_running(a);
    call("result " + str(a) + (oc.err ? " " + oc.err->code : " ok"),
         [&](run_core& c) { c.on_result(a, oc); });
  }
  /// Outcomes of pool attempts that came together: one call, one apply.
  void results(const std::vector<std::pair<attempt_key, task_outcome>>& items) {
    std::string what = "results";
    for (const auto& [a, oc] : items) {
      forget_running(a);
      what += " " + str(a) + (oc.err ? " " + oc.err->code : " ok");
    }
    call(what, [&](run_core& c) {
      for (const auto& [a, oc] : items)
        c.on_result(a, oc);
    });
  }
  void heartbeat_timeout(attempt_key a) {
    // The watchdog then ends the attempt's actor: no answer is expected,
    // though a pool attempt's may still come (a late one).
    forget_running(a);
    call("heartbeat timeout " + str(a),
         [&](run_core& c) { c.on_heartbeat_timeout(a, clock - 500); });
  }
  void lost(attempt_key a) {
    forget_running(a);
    call("lost " + str(a),
         [&](run_core& c) { c.on_attempt_lost(a, "task actor ended without a result (killed)"); });
  }
  void heartbeat(const attempt_key& a) {
    call("heartbeat " + str(a), [&](run_core& c) {
      c.on_heartbeat(a, clock, json{{"at", clock}}, true);
    });
  }
  void retry_due(const node_key& k) {
    call("retry due " + to_string(k), [&](run_core& c) { c.on_retry_due(k); });
  }
  void wake(const node_key& k) {
    call("wake " + to_string(k), [&](run_core& c) { c.on_wait_due(k); });
  }
  void inbox(const store::inbox_row& e) {
    call("inbox " + std::to_string(e.id), [&](run_core& c) { c.on_inbox(e); });
  }
  void cancel() {
    bool first = !cancelled;
    bool was_ending = core->ending();
    cancelled = true; // before the call: nothing it makes may launch
    if (first) ending_at_cancel = was_ending;
    call("cancel", [](run_core& c) {
      c.stop(core::stop_mode::cancel, error{errc::run_cancelled, "by test"});
    });
    // Every attempt running is asked to stop, at once.
    if (!was_ending)
      for (const auto& a : open)
        if (!last_stops.count(a)) violate("cancel did not ask " + str(a) + " to stop");
  }

  /// Ticks and commits until nothing moves without news from outside.
  void settle() {
    for (int guard = 0; guard < 1000 && !done; ++guard) {
      if (ticks_due > 0)
        tick();
      else if (!uncommitted.empty())
        commit();
      else
        return;
    }
  }

  /// The retry timer of `id`: fires when due (the clock moves there).
  void fire_retry(const std::string& id) {
    auto it = std::find_if(timers.begin(), timers.end(),
                           [&](const timer_at& t) { return t.key.id == id; });
    REQUIRE(it != timers.end());
    timer_at t = *it;
    timers.erase(it);
    clock = std::max(clock, t.due);
    retry_due(t.key);
  }

  // -- views --------------------------------------------------------------------

  attempt_key running_of(const std::string& id) const {
    for (const auto& a : running)
      if (a.node.id == id) return a;
    FAIL("nothing of " << id << " is running");
    return {};
  }
  bool is_running(const std::string& id) const {
    return std::any_of(running.begin(), running.end(),
                       [&](const attempt_key& a) { return a.node.id == id; });
  }
  bool has_timer(const std::string& id) const {
    return std::any_of(timers.begin(), timers.end(),
                       [&](const timer_at& t) { return t.key.id == id; });
  }
  template <class C> std::vector<const C*> commands() const {
    std::vector<const C*> out;
    for (const auto& c : written)
      if (const auto* x = std::get_if<C>(&c)) out.push_back(x);
    return out;
  }
  const store::finish_attempt* finish_of(const std::string& id, std::int64_t attempt) const {
    for (const auto* f : commands<store::finish_attempt>())
      if (f->key.node.id == id && f->key.attempt == attempt) return f;
    return nullptr;
  }
  std::vector<const event*> events_of(const std::string& type, const std::string& node = "") const {
    std::vector<const event*> out;
    for (const auto& e : events)
      if (e.type == type && (node.empty() || e.fields.value("node_id", "") == node))
        out.push_back(&e);
    return out;
  }
  std::string state(const std::string& id, std::int64_t iteration = 0) const {
    auto it = state_of.find({id, iteration});
    return it == state_of.end() ? "" : it->second;
  }
  std::string trace_text() const {
    std::string out;
    for (const auto& t : trace)
      out += "  " + t + "\n";
    return out;
  }

  // -- carrying out and checking the effects ------------------------------------

  void forget_running(attempt_key a) {
    auto it = std::find(running.begin(), running.end(), a);
    if (it != running.end()) running.erase(it);
    if (std::find(answered.begin(), answered.end(), a) == answered.end()) answered.push_back(a);
  }

  void on_published(const event& e) {
    if (e.seq != published_seq)
      violate("published seq " + std::to_string(e.seq) + ", expected " +
              std::to_string(published_seq));
    published_seq = e.seq + 1;
    events.push_back(e);
  }

  // One written command: what it says of attempts, nodes and event seqs.
  void note(const store::command& c, std::uint64_t batch,
            std::vector<std::pair<std::int64_t, std::int64_t>>& seqs) {
    std::size_t at = written.size(); // its index once pushed
    if (const auto* ia = std::get_if<store::insert_attempt>(&c)) {
      attempt_key a{{ia->row.node_id, ia->row.iteration}, ia->row.attempt};
      if (inserted_in.count(a)) violate("attempt " + str(a) + " inserted twice");
      auto& last = attempts[a.node];
      if (a.attempt != last + 1)
        violate("attempt " + str(a) + " inserted after attempt " + std::to_string(last));
      last = a.attempt;
      inserted_in[a] = batch;
      inserted_as[a] = ia->row.state;
      started_at[a] = ia->row.started_ms;
      if (cancelled) inserted_after_cancel.insert(a);
      // A retry waits out its backoff (retry_at_ms, durable on the failed
      // attempt's row).
      if (auto r = retry_at.find({a.node, a.attempt - 1}); check_backoff && r != retry_at.end())
        if (ia->row.started_ms < r->second)
          violate("attempt " + str(a) + " started at " + std::to_string(ia->row.started_ms) +
                  ", before its backoff ends at " + std::to_string(r->second));
      if (ia->row.state == attempt_state::finished) {
        ended_at[a] = at;
        ended_as[a] = ia->row.state;
        if (++finished[a.node] > 1) violate("a second finished attempt of " + to_string(a.node));
      }
    } else if (const auto* fa = std::get_if<store::finish_attempt>(&c)) {
      const attempt_key& a = fa->key;
      if (!inserted_in.count(a)) violate("attempt " + str(a) + " ended but never inserted");
      if (ended_at.count(a)) violate("attempt " + str(a) + " ended twice");
      ended_at[a] = at;
      ended_as[a] = fa->state;
      if (fa->meta.is_object() && fa->meta.contains("retry_at_ms"))
        retry_at[a] = fa->meta.at("retry_at_ms").get<std::int64_t>();
      if (fa->state == attempt_state::finished && ++finished[a.node] > 1)
        violate("a second finished attempt of " + to_string(a.node));
    } else if (const auto* un = std::get_if<store::upsert_node>(&c)) {
      state_of[{un->row.node_id, un->row.iteration}] = un->row.state;
    } else if (const auto* pn = std::get_if<store::add_pending_nodes>(&c)) {
      for (const auto& n : *pn->nodes)
        state_of[n.key] = to_string(node_state::pending);
      seqs.emplace_back(pn->first_seq, static_cast<std::int64_t>(pn->nodes->size()));
    } else if (const auto* ev = std::get_if<store::append_events>(&c)) {
      seqs.emplace_back(ev->first_seq, ev->count);
    } else if (std::holds_alternative<store::append_event>(c)) {
      violate("a single append_event for this run"); // only a successor's are
    }
  }

  void collect() {
    effects fx = core->take_effects();
    std::string said;
    // In the supervisor's order: ended attempts are forgotten first.
    for (const auto& a : fx.ended) {
      if (!open.erase(a)) violate("reported ended but not running: " + str(a));
      said += " ended " + str(a) + ";";
    }
    for (auto& b : fx.batches) {
      // One batch in flight at a time; the store commits them in order.
      if (!uncommitted.empty())
        violate("batch " + std::to_string(b.id) + " sent while another commits");
      std::vector<std::pair<std::int64_t, std::int64_t>> seqs;
      for (auto& c : b.commands->commands) {
        note(c, b.id, seqs);
        written.push_back(c);
        written_in.push_back(b.id);
      }
      // Its events' seqs follow the previous batch's, without a gap.
      std::sort(seqs.begin(), seqs.end());
      for (const auto& [first, count] : seqs) {
        if (first != stored_seq)
          violate("batch " + std::to_string(b.id) + " stores seq " + std::to_string(first) +
                  ", expected " + std::to_string(stored_seq));
        stored_seq = first + count;
      }
      uncommitted.push_back(b.id);
      said += " batch " + std::to_string(b.id) + ";";
    }
    last_stops.clear();
    for (const auto& s : fx.stops) {
      if (!open.count(s.key)) violate("stop asked of " + str(s.key) + ", which is not running");
      last_stops.insert(s.key);
      stop_asked.insert(s.key);
      said += " stop " + str(s.key) + ";";
    }
    for (const auto& j : fx.launches) {
      attempt_key a{j->request.key, j->request.attempt};
      if (launched.count(a)) violate("launched twice: " + str(a));
      // Durable before it runs: its attempt row is committed.
      auto ins = inserted_in.find(a);
      if (ins == inserted_in.end() || !committed.count(ins->second))
        violate("launched before its start was committed: " + str(a));
      if (cancelled) violate("launched after the cancel: " + str(a));
      for (const auto& o : open)
        if (o.node == a.node) violate("two attempts of " + to_string(a.node) + " at once");
      launched[a] = j;
      open.insert(a);
      running.push_back(a);
      said += " launch " + str(a) + ";";
    }
    for (const auto& t : fx.timers) {
      if (cancelled) violate("a retry timer after the cancel: " + to_string(t.key));
      timers.push_back({t.key, clock + t.delay_ms});
      said += " timer " + to_string(t.key) + " +" + std::to_string(t.delay_ms) + ";";
    }
    for (const auto& t : fx.wakeups) {
      wakeups.push_back({t.key, clock + t.delay_ms});
      said += " wakeup " + to_string(t.key) + " +" + std::to_string(t.delay_ms) + ";";
    }
    if (fx.tick) {
      ++ticks_due;
      said += " tick;";
    }
    if (fx.kill_all) {
      killed = true;
      said += " kill all;";
    }
    if (!said.empty() && !trace.empty()) trace.back() += "  ->" + said;
    if (fx.done) {
      done = true;
      result = core->take_result();
      trace.back() += " done " + std::string(to_string(result.status));
      check_end();
    }
  }

  // The rules a run that has ended obeys.
  void check_end() {
    auto status = std::string(to_string(result.status));
    if (commit_failed) {
      // It stops where the store stopped: nothing written after, resumable.
      if (result.status != run_status::failed || !result.err || result.err->code != errc::db_error)
        violate("a failed commit ended the run " + status);
      if (!uncommitted.empty() || written_in.back() != failed_batch)
        violate("a batch sent after the failed one");
      for (std::size_t i = 0; i < written.size(); ++i)
        if (std::holds_alternative<store::update_run_status>(written[i]) &&
            committed.count(written_in[i]))
          violate("a final status committed, then a commit failed");
      return;
    }
    if (!uncommitted.empty()) violate("done with batches still uncommitted");
    // Its final status: written last, in the last batch, and published last.
    std::size_t fin_at = written.size();
    for (std::size_t i = 0; i < written.size(); ++i)
      if (std::holds_alternative<store::update_run_status>(written[i])) fin_at = i;
    if (fin_at == written.size()) {
      violate("no final status written");
      return;
    }
    if (std::get<store::update_run_status>(written[fin_at]).status != status)
      violate("final status written " + std::get<store::update_run_status>(written[fin_at]).status +
              ", result " + status);
    if (written_in[fin_at] != written_in.back())
      violate("the final status is not in the last batch");
    const char* last_event = result.status == run_status::finished    ? event_type::run_finished
                             : result.status == run_status::cancelled ? event_type::run_cancelled
                                                                      : event_type::run_failed;
    if (events.empty() || events.back().type != last_event)
      violate("the last event is not " + std::string(last_event));
    if (published_seq != stored_seq) violate("stored events that were never published");
    // Every attempt that started has ended, by the run's final batch.
    for (const auto& [a, st] : inserted_as)
      if (!ended_at.count(a)) violate("attempt " + str(a) + " never ended");
    if (!open.empty()) violate("launched attempts never reported ended: " + str(*open.begin()));
    if (killed) violate("the run ended with attempts it had to kill");
    if (core->live_count() != 0) violate("attempts still live in the core");
    // Node states agree with the attempts; nothing is left in flight, and
    // in a run that did not finish, nothing is left pending either.
    for (const auto& [k, st] : state_of) {
      if (st == "in-progress") violate(to_string(k) + " left in-progress");
      bool waiting = st == "pending" || st.rfind("waiting", 0) == 0;
      if (waiting && result.status != run_status::finished)
        violate(to_string(k) + " left " + st + " in a run that ended " + status);
      int n = finished.count(k) ? finished.at(k) : 0;
      if ((st == "finished") != (n == 1))
        violate(to_string(k) + " is " + st + " with " + std::to_string(n) + " finished attempts");
    }
    // A cancel applied before the run decided its end wins, whatever had
    // finished; after that it changes nothing.
    if (cancelled && !ending_at_cancel && result.status != run_status::cancelled)
      violate("cancelled before its end was decided, but ended " + status);
    if ((!cancelled || ending_at_cancel) && result.status == run_status::cancelled)
      violate("ended cancelled without a cancel that counted");
    if (result.status != run_status::finished && result.status != run_status::failed &&
        result.status != run_status::cancelled)
      violate("ended " + status);
    // An attempt whose start was sent after the cancel never ran; one that
    // waited for that commit to run (it did not end in the same batch, as
    // an approval's or a value's failure does) is recorded cancelled.
    for (const auto& a : inserted_after_cancel) {
      if (launched.count(a)) violate("attempt " + str(a) + ", recorded after the cancel, ran");
      auto e = ended_at.find(a);
      if (e != ended_at.end() && written_in[e->second] != inserted_in.at(a) &&
          ended_as.at(a) != attempt_state::cancelled)
        violate("attempt " + str(a) + ", recorded after the cancel, ended " + ended_as.at(a));
    }
  }
};

// -- the explorer ----------------------------------------------------------------------

/// A small workflow and how its attempts answer.
struct scenario {
  std::string name;
  std::function<std::shared_ptr<const workflow>()> make;
  /// The output of an attempt that succeeds.
  std::function<json(const attempt_key&, std::mt19937_64&)> output;
  std::set<std::string> flaky;     // base ids that fail (retryably) about half the time
  std::vector<node_key> approvals; // decisions to deliver at some point
  /// Re-renders can happen while a retry waits out its backoff (the bug
  /// found in run_core::rebuild; its own test below counts early retries).
  bool races_backoff = false;
};

json plain_output(const attempt_key& a, std::mt19937_64&) {
  return json{{"attempt", a.attempt}};
}

std::vector<scenario> scenarios() {
  std::vector<scenario> out;
  out.push_back({"a sequence of 3 tasks with retries",
                 [] {
                   auto t = [](const char* id) {
                     return compute_task(id, noop).retries(2).retry(quick).heartbeat_timeout_ms(
                         500);
                   };
                   return static_wf(sequence({t("a"), t("b"), t("c")}));
                 },
                 plain_output,
                 {"a", "b", "c"},
                 {},
                 false});
  out.push_back({"a parallel of 4, one flaky",
                 [] {
                   return static_wf(parallel({compute_task("p1", noop), compute_task("p2", noop),
                                              compute_task("p3", noop),
                                              compute_task("flaky", noop).retries(3).retry(quick)},
                                             3));
                 },
                 plain_output,
                 {"flaky"},
                 {},
                 false});
  out.push_back(
      {"a loop with until",
       [] {
         loop_options o;
         o.max_iterations = 4;
         return static_wf(
             sequence({loop("count", sequence({compute_task("step", noop).retries(1).retry(quick)}),
                            {{"output", "step.n"}, {"gte", 2}}, o),
                       compute_task("after", noop).needs({"step"})}));
       },
       [](const attempt_key&, std::mt19937_64& rng) {
         return json{{"n", static_cast<int>(rng() % 3)}};
       },
       {"step"},
       {},
       false});
  out.push_back({"a branch reading a task",
                 [] {
                   return static_wf(
                       sequence({compute_task("check", noop).retries(1).retry(quick),
                                 branch("ship", {{"output", "check.ok"}, {"equals", true}},
                                        compute_task("deploy", noop).retries(1).retry(quick),
                                        compute_task("report", noop))}));
                 },
                 [](const attempt_key&, std::mt19937_64& rng) {
                   return json{{"ok", rng() % 2 == 0}};
                 },
                 {"check", "deploy"},
                 {},
                 false});
  out.push_back({"a for_each over a value task's items",
                 [] {
                   json items = json::array({{{"n", "x"}}, {{"n", "y"}}, {{"n", "z"}}});
                   return static_wf(
                       sequence({value_task("list", {{"items", items}}),
                                 for_each("each", "outputs.list.items", "f",
                                          compute_task("t-{{f.n}}", noop).retries(1).retry(quick)),
                                 compute_task("after", noop)}));
                 },
                 plain_output,
                 {"t-x", "t-y", "t-z"},
                 {},
                 false});
  out.push_back({"an approval beside a timer",
                 [] {
                   return static_wf(
                       sequence({parallel({approval("ok", "Ship?"), timer("cool", 300)}),
                                 compute_task("deploy", noop).retries(1).retry(quick)}));
                 },
                 plain_output,
                 {"deploy"},
                 {{"ok", 0}},
                 false});
  // Both below re-render while a retry may wait out its backoff.
  out.push_back(
      {"a branch decided beside a retry's backoff",
       [] {
         return static_wf(parallel(
             {compute_task("flaky", noop).retries(2).retry(quick),
              sequence({compute_task("check", noop),
                        branch("ship", {{"output", "check.ok"}, {"equals", true}},
                               compute_task("deploy", noop), compute_task("report", noop))})}));
       },
       [](const attempt_key&, std::mt19937_64& rng) {
         return json{{"ok", rng() % 2 == 0}};
       },
       {"flaky"},
       {},
       true});
  out.push_back(
      {"a node renders drop and bring back",
       [] {
         // x is out of the tree between p1's end and p2's.
         auto wf = std::make_shared<workflow>();
         wf->build = [](const render_context& ctx) {
           std::vector<node> kids{sequence({compute_task("p1", noop), compute_task("p2", noop)})};
           if (!ctx.output("p1") || ctx.output("p2"))
             kids.push_back(compute_task("x", noop).retries(2).retry(quick));
           return parallel(std::move(kids));
         };
         return std::shared_ptr<const workflow>(wf);
       },
       plain_output,
       {"x"},
       {},
       true});
  return out;
}

/// One seeded exploration: at each step, one of the messages the real
/// supervisor could handle next, picked at random.
struct exploration {
  enum act {
    commit,
    tick,
    answer,
    heartbeat_timeout,
    lose,
    heartbeat,
    late,
    cancel,
    retry,
    wake,
    advance,
    decide,
    count
  };

  const scenario& sc;
  std::mt19937_64 rng;
  sim s;
  bool will_cancel;
  bool may_fail_commit;
  std::size_t decided = 0;
  int steps = 0;
  static constexpr int max_steps = 1000; // the longest seed takes < 100

  exploration(const scenario& c, std::uint64_t seed, bool check_backoff)
      : sc(c), rng(seed), s(c.make(), seed), will_cancel(seed % 3 == 0),
        may_fail_commit(seed % 16 == 5) {
    s.check_backoff = check_backoff;
  }

  double unit() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }
  template <class V> std::size_t pick(const V& v) { return rng() % v.size(); }

  // An attempt's answer: a stopped one mostly ends as asked; others fail
  // as flaky as their node is.
  task_outcome answer_for(const attempt_key& a) {
    if (s.stop_asked.count(a) && unit() < 0.7)
      return fail(s.cancelled ? errc::run_cancelled : errc::task_aborted, "stopped");
    double r = unit();
    double flaky = sc.flaky.count(std::string{base_id(a.node.id)}) ? 0.45 : 0.05;
    if (r < flaky) return fail(errc::task_failed);
    if (r < flaky + 0.02) return fail(errc::invalid_output); // not retried
    return ok(sc.output(a, rng));
  }

  void run() {
    while (!s.done && s.violations.empty()) {
      if (++steps > max_steps) {
        s.violate("the run did not end within " + std::to_string(max_steps) + " steps");
        return;
      }
      if (!step()) {
        s.violate("stuck: the run has not ended and nothing can happen (" +
                  std::to_string(s.running.size()) + " running, " +
                  std::to_string(s.core->live_count()) + " live in the core)");
        return;
      }
    }
  }

  bool step() {
    std::vector<std::size_t> due_timers, due_wakes;
    std::int64_t next_due = std::numeric_limits<std::int64_t>::max();
    for (std::size_t i = 0; i < s.timers.size(); ++i)
      if (s.timers[i].due <= s.clock)
        due_timers.push_back(i);
      else
        next_due = std::min(next_due, s.timers[i].due);
    for (std::size_t i = 0; i < s.wakeups.size(); ++i)
      if (s.wakeups[i].due <= s.clock)
        due_wakes.push_back(i);
      else
        next_due = std::min(next_due, s.wakeups[i].due);
    std::array<int, count> w{};
    w[commit] = s.uncommitted.empty() ? 0 : 5;
    w[tick] = s.ticks_due > 0 ? 5 : 0;
    w[answer] = s.running.empty() ? 0 : 8;
    w[heartbeat_timeout] = s.running.empty() ? 0 : 1;
    w[lose] = s.running.empty() ? 0 : 1;
    w[heartbeat] = s.running.empty() ? 0 : 1;
    w[cancel] = will_cancel && !s.cancelled ? 1 : 0;
    w[retry] = due_timers.empty() ? 0 : 3;
    w[wake] = due_wakes.empty() ? 0 : 3;
    w[advance] = next_due == std::numeric_limits<std::int64_t>::max() ? 0 : 2;
    w[decide] = decided < sc.approvals.size() ? 1 : 0;
    // Messages about attempts that have ended move nothing: only beside
    // something that does.
    int moving = 0;
    for (int x : w)
      moving += x;
    if (moving == 0) return false;
    w[late] = s.answered.empty() ? 0 : 1;
    int total = moving + w[late];
    int r = static_cast<int>(rng() % static_cast<std::uint64_t>(total));
    int a = 0;
    while (r >= w[a])
      r -= w[a++];
    switch (a) {
    case commit:
      if (may_fail_commit && unit() < 0.05)
        s.fail_commit();
      else
        s.commit();
      break;
    case tick:
      s.tick();
      break;
    case answer: {
      if (s.running.size() > 1 && unit() < 0.3) {
        // Several outcomes handled in one go (the supervisor's outbox).
        std::vector<std::pair<attempt_key, task_outcome>> items;
        for (const auto& k : s.running)
          if (items.empty() || unit() < 0.6) items.emplace_back(k, answer_for(k));
        s.results(items);
        break;
      }
      auto k = s.running[pick(s.running)];
      s.answer(k, answer_for(k));
      break;
    }
    case heartbeat_timeout:
      s.heartbeat_timeout(s.running[pick(s.running)]);
      break;
    case lose:
      s.lost(s.running[pick(s.running)]);
      break;
    case heartbeat:
      s.heartbeat(s.running[pick(s.running)]);
      break;
    case late: {
      // What the mailbox may still hold for an attempt that has ended: a
      // second result (a pool attempt's timeout came first), its heartbeat
      // timeout, its actor's down message, a heartbeat.
      auto k = s.answered[pick(s.answered)];
      switch (rng() % 4) {
      case 0:
        s.answer(k, answer_for(k));
        break;
      case 1:
        s.heartbeat_timeout(k);
        break;
      case 2:
        s.lost(k);
        break;
      default:
        s.heartbeat(k);
      }
      break;
    }
    case cancel:
      s.cancel();
      break;
    case retry: {
      auto i = due_timers[pick(due_timers)];
      auto k = s.timers[i].key;
      s.timers.erase(s.timers.begin() + static_cast<std::ptrdiff_t>(i));
      s.retry_due(k);
      break;
    }
    case wake: {
      auto i = due_wakes[pick(due_wakes)];
      auto k = s.wakeups[i].key;
      s.wakeups.erase(s.wakeups.begin() + static_cast<std::ptrdiff_t>(i));
      s.wake(k);
      break;
    }
    case advance:
      // To the next deadline, or part of the way.
      s.clock = unit() < 0.5 ? next_due
                             : s.clock + 1 +
                                   static_cast<std::int64_t>(
                                       rng() % static_cast<std::uint64_t>(next_due - s.clock));
      s.trace.push_back(std::to_string(s.clock) + " (clock)");
      break;
    case decide: {
      store::inbox_row e;
      e.id = static_cast<std::int64_t>(decided) + 1;
      e.run_id = "r";
      e.kind = "approval";
      e.key = sc.approvals[decided++];
      e.payload = {
          {"approved", unit() < 0.8}, {"by", "ann"}, {"note", ""}, {"decided_ms", s.clock}};
      s.inbox(e);
      if (unit() < 0.3) s.inbox(e); // a poller's second look: taken once
      break;
    }
    default:
      break;
    }
    return true;
  }
};

std::optional<std::uint64_t> env_number(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::stoull(v);
}

std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines)
    out += (out.empty() ? "" : "\n") + l;
  return out;
}

/// Runs the scenarios over many seeds, each until its run ends; a seed that
/// breaks a rule is reported with its trace (the first three per scenario).
/// known_bug_only: only the scenarios that race a backoff with a re-render,
/// counting retries started early (the rebuild bug). SMITHERS_CORE_STATS=1:
/// what the seeds reached.
void explore(bool known_bug_only) {
  auto one_seed = env_number("SMITHERS_CORE_SEED");
  std::uint64_t seeds = env_number("SMITHERS_CORE_SEEDS").value_or(known_bug_only ? 500 : 2000);
  const char* only = std::getenv("SMITHERS_CORE_SCENARIO");
  for (const auto& sc : scenarios()) {
    if (known_bug_only && !sc.races_backoff) continue;
    if (only && *only && sc.name.find(only) == std::string::npos) continue;
    std::map<std::string, int> ended; // final statuses reached
    int cancels = 0, late_cancels = 0, early_retries = 0, failures = 0, max_steps = 0;
    long steps = 0;
    for (std::uint64_t i = 0; i < (one_seed ? 1 : seeds); ++i) {
      std::uint64_t seed = one_seed.value_or(i);
      exploration x(sc, seed, true);
      x.run();
      if (one_seed) WARN(sc.name << ", seed " << seed << ":\n" << x.s.trace_text());
      if (x.s.done) {
        ++ended[x.s.commit_failed ? "commit-failed" : to_string(x.s.result.status)];
        cancels += x.s.cancelled && !x.s.ending_at_cancel;
        late_cancels += x.s.cancelled && x.s.ending_at_cancel;
      }
      steps += x.steps;
      max_steps = std::max(max_steps, x.steps);
      if (x.s.violations.empty()) continue;
      if (known_bug_only &&
          x.s.violations[0].find("before its backoff ends") != std::string::npos) {
        ++early_retries;
        continue;
      }
      INFO(sc.name << ", seed " << seed << " (replay: SMITHERS_CORE_SEED=" << seed << ")");
      INFO("trace:\n" << x.s.trace_text());
      FAIL_CHECK(join(x.s.violations));
      if (++failures == 3) break;
    }
    if (std::getenv("SMITHERS_CORE_STATS"))
      WARN(sc.name << ": finished " << ended["finished"] << ", failed " << ended["failed"]
                   << ", cancelled " << ended["cancelled"] << ", commit failed "
                   << ended["commit-failed"] << "; cancels " << cancels << " (+" << late_cancels
                   << " after the end was decided); steps " << steps << " (at most " << max_steps
                   << " for one seed)");
    if (known_bug_only) {
      // Was not 0 before the rebuild fix (see the named test below).
      INFO(sc.name << ": " << early_retries << " seeds started a retry before its backoff ended");
      CHECK(early_retries == 0);
      continue;
    }
    if (one_seed || failures || seeds < 500) continue;
    // The seeds reach every ending, so each rule above was exercised.
    INFO(sc.name << ": finished " << ended["finished"] << ", failed " << ended["failed"]
                 << ", cancelled " << ended["cancelled"] << ", commit failed "
                 << ended["commit-failed"]);
    CHECK(ended["finished"] > 0);
    CHECK(ended["failed"] > 0);
    CHECK(ended["cancelled"] > 0);
    CHECK(ended["commit-failed"] > 0);
  }
}

} // namespace

TEST_CASE("run core orderings: seeded explorer keeps every rule over thousands of orderings") {
  explore(false);
}

// Found by this explorer (run_core::rebuild, fixed): a new plan's scheduler
// started from the node states, so a node held for its retry's backoff was
// runnable again after any re-render (a branch decided, a loop's next
// iteration, a node brought back) and its next attempt started at once,
// before retry_at_ms.
TEST_CASE("run core orderings: seeded explorer, backoffs across re-renders") {
  explore(true);
}

// -- named orderings -------------------------------------------------------------------

TEST_CASE("run core orderings: a result, then a cancel before the tick that would use it") {
  sim s(static_wf(sequence(
      {parallel({compute_task("a", noop), compute_task("b", noop)}), compute_task("c", noop)})));
  s.settle();
  REQUIRE(s.running.size() == 2);
  attempt_key a = s.running_of("a"), b = s.running_of("b");
  s.answer(a, ok({{"a", 1}}));
  REQUIRE(s.ticks_due == 1); // the tick that would record it is queued...
  s.cancel();                // ...behind the cancel
  // a has ended: only b is asked to stop.
  CHECK(s.last_stops == attempt_set{b});
  s.settle();
  CHECK_FALSE(s.done); // b has not stopped yet
  // a's result is durable; nothing new started.
  REQUIRE(s.finish_of("a", 1));
  CHECK(s.finish_of("a", 1)->state == "finished");
  CHECK(s.finish_of("a", 1)->output.value_or(json()) == json{{"a", 1}});
  CHECK(s.attempts.count({"c", 0}) == 0);
  s.answer(b, fail(errc::run_cancelled, "stopped"));
  s.settle();
  REQUIRE(s.done);
  CHECK(s.result.status == run_status::cancelled);
  CHECK(s.result.outputs.at("a") == json{{"a", 1}});
  CHECK(s.finish_of("b", 1)->state == "cancelled");
  CHECK(s.state("a") == "finished");
  CHECK(s.state("b") == "cancelled");
  CHECK(s.state("c") == "cancelled"); // never reached
  REQUIRE(s.events_of(event_type::node_cancelled, "c").size() == 1);
  CHECK(s.events_of(event_type::node_cancelled, "c")[0]->fields.value("reason", "") == "cancelled");
  CHECK(s.events.back().type == event_type::run_cancelled);
  CHECK(s.violations.empty());
}

TEST_CASE("run core orderings: the last result and a cancel: the cancel wins until the end is "
          "decided") {
  sim s(static_wf(sequence({compute_task("a", noop)})));
  s.settle();
  attempt_key a = s.running_of("a");
  SECTION("the cancel before the tick: cancelled, though every node finished") {
    s.answer(a, ok({{"a", 1}}));
    s.cancel();
    CHECK(s.last_stops.empty());
    s.settle();
    REQUIRE(s.done);
    CHECK(s.result.status == run_status::cancelled);
    CHECK(s.state("a") == "finished");
    CHECK(s.result.outputs.at("a") == json{{"a", 1}});
    // The result's batch is committed before the final one.
    CHECK(s.written_in[s.ended_at.at(a)] < s.written_in.back());
    CHECK(s.events_of(event_type::run_finished).empty());
  }
  SECTION("the cancel after the tick (the final batch committing): ignored, finished") {
    s.answer(a, ok({{"a", 1}}));
    s.tick();
    REQUIRE(s.core->ending());
    auto before = s.written.size();
    s.cancel();
    CHECK(s.written.size() == before);
    CHECK(s.uncommitted.size() == 1);
    s.commit();
    REQUIRE(s.done);
    CHECK(s.result.status == run_status::finished);
    CHECK(s.events_of(event_type::run_cancelled).empty());
  }
  CHECK(s.violations.empty());
}

TEST_CASE("run core orderings: a cancel, then results before the tick") {
  sim s(static_wf(sequence(
      {parallel({compute_task("a", noop).retries(2).retry(quick), compute_task("b", noop)}),
       compute_task("c", noop)})));
  s.settle();
  attempt_key a = s.running_of("a"), b = s.running_of("b");
  s.cancel();
  CHECK(s.last_stops == attempt_set{a, b});
  // a fails of its own accord (not the stop) with retries left: not retried.
  s.answer(a, fail(errc::task_failed));
  // b finished before it could stop: its output is kept.
  s.answer(b, ok({{"b", 1}}));
  s.settle();
  REQUIRE(s.done);
  CHECK(s.result.status == run_status::cancelled);
  CHECK(s.timers.empty());
  const auto* fa = s.finish_of("a", 1);
  REQUIRE(fa);
  CHECK(fa->state == "cancelled");
  CHECK(fa->error.value("code", "") == errc::run_cancelled);
  CHECK(fa->error.value(json::json_pointer("/details/task_error/code"), "") == errc::task_failed);
  CHECK(s.attempts.at({"a", 0}) == 1);
  CHECK(s.state("a") == "cancelled");
  CHECK(s.state("b") == "finished");
  CHECK(s.result.outputs.at("b") == json{{"b", 1}});
  // What b unblocked never started.
  CHECK(s.attempts.count({"c", 0}) == 0);
  CHECK(s.state("c") == "cancelled");
  CHECK(s.violations.empty());
}

TEST_CASE("run core orderings: a heartbeat timeout after its attempt's result is ignored") {
  sim s(static_wf(
      sequence({compute_task("a", noop).retries(1).retry(quick).heartbeat_timeout_ms(500)})));
  s.settle();
  attempt_key a = s.running_of("a");
  s.answer(a, ok({{"v", 1}}));
  // Sent by the watchdog before it was told to stop watching a, then the
  // down message of the actor it ended.
  s.heartbeat_timeout(a);
  s.lost(a);
  s.settle();
  REQUIRE(s.done);
  CHECK(s.result.status == run_status::finished);
  CHECK(s.result.outputs.at("a") == json{{"v", 1}});
  CHECK(s.events_of(event_type::task_heartbeat_timeout).empty());
  CHECK(s.commands<store::finish_attempt>().size() == 1);
  CHECK(s.finish_of("a", 1)->state == "finished");
  CHECK(s.timers.empty());
  CHECK(s.violations.empty());
}

TEST_CASE("run core orderings: a heartbeat timeout before the result wins: the late result is "
          "discarded") {
  SECTION("retries left: the next attempt runs after the backoff") {
    sim s(static_wf(sequence({compute_task("a", noop)
                                  .retries(1)
                                  .retry(retry_policy{100, 2.0, 1000, 0.0})
                                  .heartbeat_timeout_ms(500)})));
    s.settle();
    attempt_key a1 = s.running_of("a");
    s.heartbeat_timeout(a1);
    auto before = s.written.size();
    s.answer(a1, ok({{"late", true}})); // the pool attempt returned after all
    CHECK(s.written.size() == before);  // nothing of it is written
    s.settle();
    const auto* f1 = s.finish_of("a", 1);
    REQUIRE(f1);
    CHECK(f1->state == "failed");
    CHECK(f1->error.value("code", "") == errc::task_heartbeat_timeout);
    std::int64_t retry_at = f1->meta.value("retry_at_ms", std::int64_t{0});
    CHECK(retry_at == s.clock + 100);
    REQUIRE(s.events_of(event_type::task_heartbeat_timeout, "a").size() == 1);
    CHECK(s.events_of(event_type::task_heartbeat_timeout, "a")[0]->fields.value(
              "heartbeat_timeout_ms", 0) == 500);
    CHECK(s.state("a") == "pending");
    CHECK_FALSE(s.is_running("a")); // waits for its backoff
    s.fire_retry("a");
    s.settle();
    attempt_key a2 = s.running_of("a");
    CHECK(a2.attempt == 2);
    CHECK(s.started_at.at(a2) >= retry_at);
    s.answer(a2, ok({{"v", 2}}));
    s.settle();
    REQUIRE(s.done);
    CHECK(s.result.status == run_status::finished);
    CHECK(s.result.outputs.at("a") == json{{"v", 2}});
    CHECK(s.violations.empty());
  }
  SECTION("no retries left: the run fails, the late result changes nothing") {
    sim s(static_wf(sequence({compute_task("a", noop).heartbeat_timeout_ms(500)})));
    s.settle();
    attempt_key a1 = s.running_of("a");
    s.heartbeat_timeout(a1);
    s.answer(a1, ok({{"late", true}})); // before the tick that ends the run
    s.settle();
    REQUIRE(s.done);
    CHECK(s.result.status == run_status::failed);
    CHECK(s.result.err->details["failed_nodes"] == json::array({"a"}));
    CHECK(s.result.outputs.count("a") == 0);
    CHECK(s.commands<store::finish_attempt>().size() == 1);
    CHECK(s.state("a") == "failed");
    CHECK(s.violations.empty());
  }
}

namespace {

// x is in the tree while *with_x holds: the test flips it between renders
// (a dynamic workflow renders again after each batch of outputs).
struct toggled {
  std::shared_ptr<bool> with_x = std::make_shared<bool>(true);
  retry_policy backoff{1000, 2.0, 60000, 0.0};

  std::shared_ptr<const workflow> make(std::vector<node> steps) const {
    auto wf = std::make_shared<workflow>();
    auto flag = with_x;
    auto policy = backoff;
    wf->build = [flag, policy, steps](const render_context&) {
      std::vector<node> kids{sequence(steps)};
      if (*flag) kids.push_back(compute_task("x", noop).retries(3).retry(policy));
      return parallel(std::move(kids));
    };
    return wf;
  }
};

} // namespace

TEST_CASE("run core orderings: a retry timer that fires while its node is unmounted runs nothing: "
          "back, the node runs its next attempt once") {
  toggled t;
  sim s(t.make({compute_task("p", noop), compute_task("q", noop)}));
  s.settle();
  attempt_key x1 = s.running_of("x");
  s.answer(x1, fail(errc::task_failed));
  s.settle();
  REQUIRE(s.has_timer("x"));
  std::int64_t retry_at = s.finish_of("x", 1)->meta.value("retry_at_ms", std::int64_t{0});
  // A render drops x during its backoff...
  *t.with_x = false;
  s.answer(s.running_of("p"), ok(json::object()));
  s.settle();
  REQUIRE(s.is_running("q"));
  // ...its timer fires meanwhile: nothing starts, nothing is written of x.
  auto before = s.attempts.at({"x", 0});
  s.fire_retry("x");
  s.settle();
  CHECK(s.attempts.at({"x", 0}) == before);
  CHECK_FALSE(s.is_running("x"));
  // Back: its next attempt runs, once, after the backoff.
  *t.with_x = true;
  s.answer(s.running_of("q"), ok(json::object()));
  s.settle();
  REQUIRE(s.is_running("x"));
  attempt_key x2 = s.running_of("x");
  CHECK(x2.attempt == 2);
  CHECK(s.started_at.at(x2) >= retry_at);
  s.answer(x2, ok({{"x", 2}}));
  s.settle();
  REQUIRE(s.done);
  CHECK(s.result.status == run_status::finished);
  CHECK(s.attempts.at({"x", 0}) == 2);
  CHECK(s.finished.at({"x", 0}) == 1);
  CHECK(s.result.outputs.at("x") == json{{"x", 2}});
  CHECK(s.violations.empty());
}

TEST_CASE("run core orderings: dropped and back during its backoff, a node never runs two attempts "
          "at once") {
  toggled t;
  sim s(t.make({compute_task("p", noop), compute_task("q", noop), compute_task("r", noop)}));
  s.settle();
  s.answer(s.running_of("x"), fail(errc::task_failed));
  s.settle();
  std::int64_t retry_at = s.finish_of("x", 1)->meta.value("retry_at_ms", std::int64_t{0});
  *t.with_x = false;
  s.answer(s.running_of("p"), ok(json::object()));
  s.settle();
  // Back before its timer fired.
  *t.with_x = true;
  s.answer(s.running_of("q"), ok(json::object()));
  s.settle();
  // The backoff passes and its timer fires: attempt 2 runs, whether it
  // started at once or waited for this.
  s.clock = std::max(s.clock, retry_at);
  s.fire_retry("x");
  s.settle();
  REQUIRE(s.is_running("x"));
  attempt_key x2 = s.running_of("x");
  CHECK(x2.attempt == 2);
  CHECK(s.attempts.at({"x", 0}) == 2);
  s.answer(x2, ok({{"x", 2}}));
  s.answer(s.running_of("r"), ok(json::object()));
  s.settle();
  REQUIRE(s.done);
  CHECK(s.result.status == run_status::finished);
  CHECK(s.finished.at({"x", 0}) == 1);
  CHECK(s.violations.empty()); // includes: never two attempts of x at once
}

// The rebuild bug above, by hand (fixed).
TEST_CASE("run core orderings: a re-render during a retry's backoff does not start the retry "
          "early") {
  SECTION("a branch decided beside the backoff") {
    sim s(static_wf(
        parallel({compute_task("x", noop).retries(1).retry(retry_policy{1000, 2.0, 60000, 0.0}),
                  sequence({compute_task("check", noop),
                            branch("ship", {{"output", "check.ok"}, {"equals", true}},
                                   compute_task("deploy", noop))})})));
    s.settle();
    s.answer(s.running_of("x"), fail(errc::task_failed));
    s.settle();
    REQUIRE(s.has_timer("x"));
    s.answer(s.running_of("check"), ok({{"ok", true}})); // decides the branch: a new plan
    s.settle();
    REQUIRE(s.is_running("deploy"));
    CHECK_FALSE(s.is_running("x")); // fails today: attempt 2 started at once
    CHECK(s.attempts.at({"x", 0}) == 1);
    CHECK(s.violations.empty()); // "started ... before its backoff ends"
  }
  SECTION("dropped and brought back") {
    toggled t;
    sim s(t.make({compute_task("p", noop), compute_task("q", noop), compute_task("r", noop)}));
    s.settle();
    s.answer(s.running_of("x"), fail(errc::task_failed));
    s.settle();
    *t.with_x = false;
    s.answer(s.running_of("p"), ok(json::object()));
    s.settle();
    *t.with_x = true;
    s.answer(s.running_of("q"), ok(json::object()));
    s.settle();
    CHECK_FALSE(s.is_running("x")); // fails today
    CHECK(s.violations.empty());
  }
}

// Found by this file (run_core::on_retry_due, fixed): a timer that fired
// while its node was out of the tree returned before erasing the node's
// entry in retries_; the node, back, ran and finished, but the stale entry
// kept counting as a backoff in progress: update_status() called the run
// busy, so a run that only waited for an approval stayed `running` (never
// waiting-approval, never released with release_when_waiting, never
// interrupted when idle).
TEST_CASE("run core orderings: a retry timer fired while unmounted leaves no backoff behind") {
  toggled t;
  sim s(t.make({compute_task("p", noop), compute_task("q", noop), approval("ok", "Ship?")}));
  s.settle();
  s.answer(s.running_of("x"), fail(errc::task_failed));
  s.settle();
  *t.with_x = false;
  s.answer(s.running_of("p"), ok(json::object()));
  s.settle();
  s.fire_retry("x"); // while x is out of the tree
  s.settle();
  *t.with_x = true;
  s.answer(s.running_of("q"), ok(json::object()));
  s.settle();
  s.answer(s.running_of("x"), ok({{"x", 2}}));
  s.settle();
  // All that is left is the approval.
  REQUIRE(s.state("ok") == "waiting-approval");
  CHECK(s.core->status() == run_status::waiting_approval); // fails today: running
}

TEST_CASE("run core orderings: a commit that fails while attempts run ends the run there") {
  SECTION("the failed batch held a result: never published, no final status written") {
    sim s(static_wf(sequence(
        {parallel({compute_task("a", noop), compute_task("b", noop)}), compute_task("c", noop)})));
    s.settle();
    s.answer(s.running_of("a"), ok({{"a", 1}}));
    s.tick();
    REQUIRE(s.uncommitted.size() == 1);
    s.fail_commit();
    REQUIRE(s.done);
    CHECK(s.result.status == run_status::failed);
    CHECK(s.result.err->code == errc::db_error);
    CHECK(s.killed); // b is ended with the run
    CHECK(s.events_of(event_type::node_finished).empty());
    CHECK(s.commands<store::update_run_status>().empty()); // resumable as it stands
    CHECK(s.uncommitted.empty());
    CHECK(s.violations.empty());
  }
  SECTION("the failed batch held an attempt's start: it never runs") {
    sim s(static_wf(sequence({compute_task("a", noop), compute_task("b", noop)})));
    s.settle();
    s.answer(s.running_of("a"), ok({{"a", 1}}));
    s.tick();
    REQUIRE(s.inserted_in.count({{"b", 0}, 1}) == 1); // b's start is in the batch
    s.fail_commit();
    REQUIRE(s.done);
    CHECK(s.launched.count({{"b", 0}, 1}) == 0);
    CHECK(s.result.err->code == errc::db_error);
    CHECK(s.violations.empty());
  }
}

TEST_CASE("run core orderings: an attempt lost after its result changes nothing: lost before it, "
          "it is retried and the result discarded") {
  sim s(static_wf(sequence({compute_task("a", noop).retries(1).retry(quick),
                            compute_task("b", noop).retries(1).retry(quick)})));
  s.settle();
  attempt_key a1 = s.running_of("a");
  s.answer(a1, ok({{"a", 1}}));
  s.lost(a1);
  s.settle();
  CHECK(s.finish_of("a", 1)->state == "finished");
  attempt_key b1 = s.running_of("b");
  s.lost(b1);
  s.answer(b1, ok({{"late", true}}));
  s.settle();
  const auto* fb = s.finish_of("b", 1);
  REQUIRE(fb);
  CHECK(fb->state == "failed");
  CHECK(fb->error.value("code", "") == errc::task_failed);
  CHECK(fb->error.value("message", "") == "task actor ended without a result (killed)");
  s.fire_retry("b");
  s.settle();
  s.answer(s.running_of("b"), ok({{"b", 2}}));
  s.settle();
  REQUIRE(s.done);
  CHECK(s.result.status == run_status::finished);
  CHECK(s.result.outputs.at("b") == json{{"b", 2}});
  CHECK(s.commands<store::finish_attempt>().size() == 3);
  CHECK(s.violations.empty());
}

TEST_CASE("run core orderings: a pool timeout, then the callable's own result: the first wins") {
  sim s(static_wf(sequence({compute_task("a", noop).retries(1).retry(quick)})));
  s.settle();
  attempt_key a1 = s.running_of("a");
  s.answer(a1, fail(errc::task_timeout, "timed out"));
  s.answer(a1, ok({{"late", true}}));
  s.heartbeat(a1); // and a heartbeat it sent before returning
  s.settle();
  CHECK(s.finish_of("a", 1)->state == "failed");
  CHECK(s.commands<store::record_heartbeat>().empty());
  CHECK(s.has_timer("a"));
  CHECK(s.violations.empty());
}

TEST_CASE("run core orderings: a retry timer that fires after a cancel starts nothing") {
  sim s(static_wf(
      parallel({compute_task("a", noop).retries(1).retry(quick), compute_task("b", noop)})));
  s.settle();
  s.answer(s.running_of("a"), fail(errc::task_failed));
  s.settle();
  REQUIRE(s.has_timer("a"));
  s.cancel();
  s.fire_retry("a");
  s.answer(s.running_of("b"), fail(errc::run_cancelled, "stopped"));
  s.settle();
  REQUIRE(s.done);
  CHECK(s.result.status == run_status::cancelled);
  CHECK(s.attempts.at({"a", 0}) == 1);
  CHECK(s.state("a") == "cancelled"); // waiting out its backoff: never reached
  CHECK(s.violations.empty());
}

TEST_CASE("run core orderings: an interrupt, then a cancel: the interrupt stands") {
  sim s(static_wf(sequence({compute_task("a", noop)})));
  s.settle();
  attempt_key a = s.running_of("a");
  s.call("interrupt", [](run_core& c) {
    c.stop(core::stop_mode::interrupt, error{errc::task_aborted, "going away"});
  });
  CHECK(s.last_stops == attempt_set{a});
  s.call("cancel", [](run_core& c) {
    c.stop(core::stop_mode::cancel, error{errc::run_cancelled, "by test"});
  });
  CHECK(s.last_stops.empty());
  s.answer(a, fail(errc::task_aborted, "going away"));
  s.settle();
  REQUIRE(s.done);
  CHECK(s.result.status == run_status::running); // resumable
  CHECK(s.state("a") == "pending");
  CHECK(s.finish_of("a", 1)->state == "cancelled");
  CHECK(s.commands<store::update_run_status>().empty());
}

TEST_CASE("run core orderings: a node a render drops while its start commits never runs: back, "
          "it does") {
  // x follows w; p's output drops it, q's brings it back.
  auto with_x = std::make_shared<bool>(true);
  auto wf = std::make_shared<workflow>();
  wf->build = [with_x](const render_context&) {
    std::vector<node> second{compute_task("w", noop)};
    if (*with_x) second.push_back(compute_task("x", noop));
    return parallel({sequence({compute_task("p", noop), compute_task("q", noop)}),
                     sequence(std::move(second))});
  };
  sim s(wf);
  s.settle();
  s.answer(s.running_of("w"), ok(json::object()));
  s.tick(); // x's start: a batch not yet committed
  REQUIRE(s.inserted_in.count({{"x", 0}, 1}) == 1);
  REQUIRE(s.uncommitted.size() == 1);
  *with_x = false;
  s.answer(s.running_of("p"), ok(json::object()));
  s.tick();                    // the render drops x while its start commits
  CHECK(s.last_stops.empty()); // nothing to stop: it never ran
  s.settle();
  CHECK(s.launched.count({{"x", 0}, 1}) == 0);
  REQUIRE(s.finish_of("x", 1));
  CHECK(s.finish_of("x", 1)->state == "cancelled");
  CHECK(s.state("x") == "cancelled");
  *with_x = true;
  s.answer(s.running_of("q"), ok(json::object()));
  s.settle();
  attempt_key x2 = s.running_of("x");
  CHECK(x2.attempt == 2);
  s.answer(x2, ok({{"x", 2}}));
  s.settle();
  REQUIRE(s.done);
  CHECK(s.result.status == run_status::finished);
  CHECK(s.violations.empty());
}

TEST_CASE("run core orderings: an ended attempt's process start, printed line and worker write "
          "nothing") {
  sim s(static_wf(sequence({compute_task("a", noop), compute_task("b", noop)})));
  s.settle();
  attempt_key a = s.running_of("a");
  s.answer(a, ok({{"a", 1}}));
  // Queued behind the result in the supervisor's mailbox.
  auto tell = [&](const attempt_key& k) {
    s.call("process " + str(k), [&](run_core& c) { c.on_process(k, 4242, "host", 7); });
    s.call("output " + str(k), [&](run_core& c) { c.on_output(k, "stdout", "a line\n"); });
    s.call("assigned " + str(k), [&](run_core& c) { c.on_worker(k, "w1:7000"); });
  };
  tell(a);
  s.settle();
  CHECK(s.commands<store::set_attempt_meta>().empty());
  CHECK(s.commands<store::set_attempt_worker>().empty());
  CHECK(s.events_of(event_type::node_output).empty());
  // The same of the running b are recorded.
  attempt_key b = s.running_of("b");
  tell(b);
  s.settle();
  REQUIRE(s.commands<store::set_attempt_meta>().size() == 1);
  CHECK(s.commands<store::set_attempt_meta>()[0]->key == b);
  REQUIRE(s.commands<store::set_attempt_worker>().size() == 1);
  CHECK(s.commands<store::set_attempt_worker>()[0]->worker == "w1:7000");
  CHECK(s.events_of(event_type::node_output, "b").size() == 1);
  s.answer(b, ok({{"b", 1}}));
  s.settle();
  REQUIRE(s.done);
  CHECK(s.result.status == run_status::finished);
  CHECK(s.violations.empty());
}
