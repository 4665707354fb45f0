// The run core without actors or a database: a driver plays the actor's
// part (commits every batch, answers launches) under an injected clock.
#include "core/recovery.hpp"
#include "core/retry.hpp"
#include "core/run_core.hpp"
#include "workflow/render.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

using namespace smithers;
using core::effects;
using core::run_core;
using executors::task_outcome;

namespace {

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

json noop(task_context&) {
  return json::object();
}

/// Drives a core like its actor would, but by hand: batches commit when
/// commit() is called, launched attempts wait in `running` for an answer.
struct driver {
  std::int64_t clock = 1'000'000;
  std::vector<event> events;
  std::vector<store::command> written;
  std::vector<std::uint64_t> written_in; // the batch of each written command
  std::vector<std::uint64_t> uncommitted;
  std::vector<std::shared_ptr<executors::task_job>> running;
  std::vector<effects::stop_request> stops;
  std::vector<effects::timer> timers;
  std::vector<effects::timer> wakeups;
  std::vector<attempt_key> ended;
  bool tick_due = false;
  bool done = false;
  bool killed = false;
  std::unique_ptr<run_core> core;
  run_result result;

  explicit driver(std::shared_ptr<const workflow> wf, json input = json::object(),
                  std::optional<core::resume_state> resume = {}, bool release = false,
                  const std::function<void(core::run_config&)>& configure = {}) {
    core::run_config cfg;
    cfg.run_id = "r";
    cfg.owner_id = "me";
    cfg.wf = wf;
    cfg.input = std::make_shared<const json>(std::move(input));
    cfg.computes = std::make_shared<const core::compute_registry>();
    std::unordered_map<std::string, json> outs;
    std::unordered_set<node_key, node_key_hash> ended;
    std::unordered_map<std::string, loop_state> loops;
    if (resume) {
      outs = resume->outputs;
      loops = resume->loops;
      for (const auto& [k, st] : resume->states)
        if (st == node_state::finished) ended.insert(k);
    }
    render_context rc{"r", cfg.input.get(), &outs, &ended, &loops};
    cfg.first_render = render(wf, rc);
    cfg.resume = std::move(resume);
    cfg.started_ms = clock;
    cfg.release_when_waiting = release;
    cfg.publish = [this](const event& e) { events.push_back(e); };
    if (configure) configure(cfg);
    core = std::make_unique<run_core>(std::move(cfg), [this] { return clock; }, 42);
    core->start();
    collect();
  }

  void collect() {
    effects fx = core->take_effects();
    for (auto& b : fx.batches) {
      for (auto& c : b.commands->commands) {
        written.push_back(c);
        written_in.push_back(b.id);
      }
      uncommitted.push_back(b.id);
    }
    for (auto& j : fx.launches)
      running.push_back(j);
    for (auto& s : fx.stops)
      stops.push_back(s);
    for (auto& t : fx.timers)
      timers.push_back(t);
    for (auto& t : fx.wakeups)
      wakeups.push_back(t);
    for (auto& a : fx.ended)
      ended.push_back(a);
    tick_due = tick_due || fx.tick;
    killed = killed || fx.kill_all;
    if (fx.done) {
      done = true;
      result = core->take_result();
    }
  }

  /// Ticks and commits until nothing moves without an answer from outside.
  void settle() {
    for (int guard = 0; guard < 1000 && !done; ++guard) {
      if (tick_due) {
        tick_due = false;
        core->tick();
        collect();
        continue;
      }
      if (uncommitted.empty()) return;
      auto id = uncommitted.front();
      uncommitted.erase(uncommitted.begin());
      core->on_committed(id);
      collect();
    }
  }

  /// Answers the running attempt of `id` (it must be running).
  void answer(const std::string& id, const task_outcome& oc) {
    auto it = std::find_if(running.begin(), running.end(),
                           [&](const auto& j) { return j->request.key.id == id; });
    REQUIRE(it != running.end());
    attempt_key a{(*it)->request.key, (*it)->request.attempt};
    running.erase(it);
    core->on_result(a, oc);
    collect();
    settle();
  }

  bool is_running(const std::string& id) const {
    return std::any_of(running.begin(), running.end(),
                       [&](const auto& j) { return j->request.key.id == id; });
  }

  std::vector<std::string> event_types(const std::string& node) const {
    std::vector<std::string> out;
    for (const auto& e : events)
      if (e.fields.value("node_id", "") == node) out.push_back(e.type);
    return out;
  }

  const event* last_event(const char* type) const {
    for (auto it = events.rbegin(); it != events.rend(); ++it)
      if (it->type == type) return &*it;
    return nullptr;
  }

  template <class C> std::vector<const C*> commands() const {
    std::vector<const C*> out;
    for (const auto& c : written)
      if (const auto* x = std::get_if<C>(&c)) out.push_back(x);
    return out;
  }
};

std::shared_ptr<const workflow> static_wf(node root) {
  auto wf = std::make_shared<workflow>();
  wf->root = std::move(root);
  return wf;
}

} // namespace

TEST_CASE("backoff: initial * backoff^(n-2), capped, jittered") {
  struct row {
    retry_policy p;
    std::int64_t next_attempt;
    double unit;
    std::int64_t expected;
  };
  const row rows[] = {
      {{1000, 2.0, 60000, 0.0}, 2, 0.5, 1000},   // first retry: the initial delay
      {{1000, 2.0, 60000, 0.0}, 3, 0.5, 2000},   // doubled
      {{1000, 2.0, 60000, 0.0}, 5, 0.5, 8000},   // 1000 * 2^3
      {{1000, 2.0, 5000, 0.0}, 9, 0.5, 5000},    // capped at max_ms
      {{100, 1.0, 60000, 0.0}, 7, 0.5, 100},     // constant
      {{1000, 2.0, 60000, 0.5}, 2, 0.0, 500},    // jitter -50 %
      {{1000, 2.0, 60000, 0.5}, 2, 0.5, 1000},   // jitter 0
      {{1000, 2.0, 60000, 0.5}, 2, 0.999, 1499}, // jitter just under +50 %
      {{0, 2.0, 60000, 0.0}, 4, 0.5, 0},         // no delay
  };
  for (const auto& r : rows) {
    CAPTURE(r.p.initial_ms, r.p.backoff, r.p.max_ms, r.p.jitter, r.next_attempt, r.unit);
    CHECK(core::backoff_ms(r.p, r.next_attempt, r.unit) == r.expected);
  }
}

TEST_CASE("retryable: what another attempt would only repeat is not retried") {
  const std::pair<const char*, bool> rows[] = {
      {errc::task_failed, true},        {errc::task_timeout, true},
      {errc::task_heartbeat_timeout, true}, {errc::invalid_output, false},
      {errc::invalid_workflow, false},  {errc::invalid_input, false},
  };
  for (const auto& [code, retryable] : rows) {
    CAPTURE(code);
    CHECK(core::is_retryable(error{code, "x"}) == retryable);
  }
}

TEST_CASE("run core: an attempt starts only once its start is committed") {
  driver d(static_wf(sequence({compute_task("a", noop)})));
  // The first tick records the attempt; nothing runs before the commit.
  d.core->tick();
  d.collect();
  CHECK(d.running.empty());
  CHECK(d.commands<store::insert_attempt>().size() == 1);
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.key == node_key{"a", 0});
  CHECK(d.running[0]->request.attempt == 1);
  d.answer("a", ok({{"x", 1}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.result.outputs.at("a") == json{{"x", 1}});
  CHECK(d.event_types("a") ==
        std::vector<std::string>{"NodePending", "NodeStarted", "NodeFinished"});
  CHECK(d.events.back().type == std::string{"RunFinished"});
}

TEST_CASE("run core: retries follow the policy, durably, then the run fails") {
  auto wf = static_wf(sequence(
      {compute_task("a", noop).retries(2).retry(retry_policy{100, 3.0, 60000, 0.0})}));
  driver d(wf);
  d.settle();
  d.answer("a", fail(errc::task_failed));
  // Backoff: a timer, and retry_at_ms on the failed attempt's row.
  REQUIRE(d.timers.size() == 1);
  CHECK(d.timers[0].key == node_key{"a", 0});
  CHECK(d.timers[0].delay_ms == 100);
  auto fins = d.commands<store::finish_attempt>();
  REQUIRE(fins.size() == 1);
  CHECK(fins[0]->state == "failed");
  CHECK(fins[0]->meta["retry_at_ms"] == d.clock + 100);
  CHECK(d.core->written_state({"a", 0}) == node_state::pending);
  CHECK(d.running.empty()); // waits for the timer
  d.clock += 100;
  d.core->on_retry_due({"a", 0});
  d.collect();
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.attempt == 2);
  d.answer("a", fail(errc::task_failed));
  REQUIRE(d.timers.size() == 2);
  CHECK(d.timers[1].delay_ms == 300); // 100 * 3
  d.core->on_retry_due({"a", 0});
  d.collect();
  d.settle();
  d.answer("a", fail(errc::task_failed));
  REQUIRE(d.done);
  CHECK(d.timers.size() == 2); // no third retry
  CHECK(d.result.status == run_status::failed);
  CHECK(d.result.err->code == std::string{errc::task_failed});
  CHECK(d.result.err->details["failed_nodes"] == json::array({"a"}));
  CHECK(d.core->attempts_of({"a", 0}) == 3);
}

TEST_CASE("run core: a failure that is not retryable is not retried") {
  driver d(static_wf(sequence({compute_task("a", noop).retries(5)})));
  d.settle();
  d.answer("a", fail(errc::invalid_output));
  REQUIRE(d.done);
  CHECK(d.timers.empty());
  CHECK(d.result.status == run_status::failed);
}

TEST_CASE("run core: the result holds every output, ids that share 8 bytes or end early too") {
  // end_run sorts the outputs (by their first 8 bytes, then the whole id)
  // before it builds the map. The order only makes the build cheaper, so
  // what must hold is that every output arrives unchanged, whatever its id:
  // shared 8-byte prefixes take the tie-break, short ids the zero padding.
  const std::vector<std::string> ids{"b",           "a",       "abcdefgh",   "abcdefgh_2",
                                     "abcdefgh_1",  "abcdefg", "abcdefgi",   "Z",
                                     "abcdefgh_10", "a_",      "abcdefghij", "0"};
  std::vector<node> kids;
  for (std::size_t i = 0; i < ids.size(); ++i)
    kids.push_back(value_task(ids[i], {{"i", i}}));
  driver d(static_wf(parallel(std::move(kids))));
  d.settle();
  REQUIRE(d.done);
  REQUIRE(d.result.status == run_status::finished);
  REQUIRE(d.result.outputs.size() == ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    CAPTURE(ids[i]);
    CHECK(d.result.outputs.at(ids[i]) == json{{"i", i}});
  }
  auto sorted = ids;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> got;
  for (const auto& [id, out] : d.result.outputs)
    got.push_back(id);
  CHECK(got == sorted);
}

TEST_CASE("run core: end conditions") {
  SECTION("continue_on_fail: the run finishes") {
    driver d(static_wf(sequence({compute_task("a", noop).continue_on_fail(), value_task("b", {{"v", 1}})})));
    d.settle();
    d.answer("a", fail(errc::task_failed));
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::finished);
    CHECK(d.result.outputs.count("b") == 1);
  }
  SECTION("a failure ends the run; nodes it never reached are cancelled (run-failed)") {
    driver d(static_wf(sequence({compute_task("a", noop), value_task("b", json::object())})));
    d.settle();
    d.answer("a", fail(errc::task_failed));
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::failed);
    CHECK(d.core->written_state({"b", 0}) == node_state::cancelled);
    const event* c = nullptr;
    for (const auto& e : d.events)
      if (e.type == "NodeCancelled" && e.fields["node_id"] == "b") c = &e;
    REQUIRE(c);
    CHECK(c->fields["reason"] == "run-failed");
  }
  SECTION("needs that can never be met: stuck, INVALID_WORKFLOW naming them") {
    driver d(static_wf(sequence({compute_task("a", noop).needs({"b"}), value_task("b", json::object())})));
    d.settle();
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::failed);
    CHECK(d.result.err->code == std::string{errc::invalid_workflow});
    CHECK(d.result.err->details["blocked_nodes"] == json::array({"a"}));
  }
  SECTION("skip_if skips, and what needs a skipped node is skipped too") {
    driver d(static_wf(sequence({value_task("a", {{"go", false}}),
                                 compute_task("b", noop).skip_if(
                                     {{"output", "a.go"}, {"equals", false}}),
                                 compute_task("c", noop).needs({"b"})})));
    d.settle();
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::finished);
    CHECK(d.core->written_state({"b", 0}) == node_state::skipped);
    CHECK(d.core->written_state({"c", 0}) == node_state::skipped);
    CHECK(d.running.empty());
  }
  SECTION("cancel: attempts in flight are asked to stop, recorded cancelled, the run ends cancelled") {
    driver d(static_wf(parallel({compute_task("a", noop), compute_task("b", noop)})));
    d.settle();
    REQUIRE(d.running.size() == 2);
    d.core->stop(core::stop_mode::cancel, error{errc::run_cancelled, "by test"});
    d.collect();
    CHECK(d.stops.size() == 2);
    d.settle();
    CHECK_FALSE(d.done); // waits for both attempts
    d.answer("a", fail(errc::run_cancelled, "by test"));
    CHECK_FALSE(d.done);
    d.answer("b", ok({{"b", 1}})); // finished before it could stop: its output is kept
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::cancelled);
    CHECK(d.core->written_state({"a", 0}) == node_state::cancelled);
    CHECK(d.core->written_state({"b", 0}) == node_state::finished);
    CHECK(d.result.outputs.at("b") == json{{"b", 1}});
  }
  SECTION("interrupt: the run stays running (resumable), its nodes pending") {
    driver d(static_wf(sequence({compute_task("a", noop)})));
    d.settle();
    d.core->stop(core::stop_mode::interrupt, error{errc::task_aborted, "going away"});
    d.collect();
    d.answer("a", fail(errc::task_aborted, "going away"));
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::running);
    CHECK(d.core->written_state({"a", 0}) == node_state::pending);
    CHECK(d.commands<store::update_run_status>().empty());
  }
}

namespace {

// Renders a, then b only while a's output says so: the test flips what a
// returned by re-rendering with outputs the driver controls.
struct toggling_workflow {
  std::shared_ptr<int> renders = std::make_shared<int>(0);
  std::shared_ptr<bool> with_b = std::make_shared<bool>(true);

  std::shared_ptr<const workflow> make() const {
    auto wf = std::make_shared<workflow>();
    auto flag = with_b;
    auto count = renders;
    wf->build = [flag, count](const render_context& rc) {
      ++*count;
      std::vector<node> kids{compute_task("a", noop)};
      if (*flag) kids.push_back(compute_task("b", noop));
      if (rc.output("a")) kids.push_back(compute_task("c", noop));
      return parallel(std::move(kids));
    };
    return wf;
  }
};

} // namespace

TEST_CASE("run core: a remounted finished task is not executed again and keeps its output") {
  toggling_workflow t;
  driver d(t.make());
  d.settle();
  REQUIRE(d.running.size() == 2);
  d.answer("b", ok({{"b", 1}}));
  // b finished; the next render (after a's output) drops it...
  *t.with_b = false;
  d.answer("a", ok({{"a", 1}}));
  REQUIRE(d.is_running("c"));
  CHECK(d.core->written_state({"b", 0}) == node_state::finished); // kept as written
  // ...and the one after brings it back: not started again.
  *t.with_b = true;
  d.answer("c", ok({{"c", 1}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.core->attempts_of({"b", 0}) == 1);
  CHECK(d.result.outputs.at("b") == json{{"b", 1}});
  int started = 0;
  for (const auto& ty : d.event_types("b"))
    started += ty == "NodeStarted";
  CHECK(started == 1);
}

TEST_CASE("run core: an unmounted task in flight is stopped, recorded cancelled, and the run waits") {
  toggling_workflow t;
  driver d(t.make());
  d.settle();
  REQUIRE(d.is_running("b"));
  *t.with_b = false;
  d.answer("a", ok({{"a", 1}})); // the re-render drops b while it runs
  REQUIRE(d.stops.size() == 1);
  CHECK(d.stops[0].key == attempt_key{{"b", 0}, 1});
  CHECK(d.stops[0].why.message.rfind("unmounted", 0) == 0);
  d.answer("c", ok({{"c", 1}}));
  CHECK_FALSE(d.done); // b has not ended yet
  d.answer("b", fail(errc::task_aborted, "stopped"));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.core->written_state({"b", 0}) == node_state::cancelled);
  auto fins = d.commands<store::finish_attempt>();
  auto it = std::find_if(fins.begin(), fins.end(), [](auto* f) { return f->key.node.id == "b"; });
  REQUIRE(it != fins.end());
  CHECK((*it)->state == "cancelled");
  const event* c = d.last_event("NodeCancelled");
  REQUIRE(c);
  CHECK(c->fields["reason"] == "unmounted");
  // Every launched attempt was reported ended (the watchdog forgets them).
  CHECK(d.ended.size() == 3);
}

TEST_CASE("run core: resume starts from the stored state") {
  auto wf = static_wf(sequence({compute_task("done", noop), compute_task("flying", noop),
                                compute_task("backoff", noop).retries(3)}));
  core::resume_state r;
  r.states[{"done", 0}] = node_state::finished;
  r.states[{"flying", 0}] = node_state::pending; // was in progress
  r.states[{"backoff", 0}] = node_state::pending;
  r.attempts[{"done", 0}] = 1;
  r.attempts[{"flying", 0}] = 2;
  r.attempts[{"backoff", 0}] = 1;
  r.outputs["done"] = {{"d", 1}};
  r.checkpoints[{"flying", 0}] = {{"step", 7}};
  r.orphaned.push_back({{"flying", 0}, 2});
  r.retry_at_ms[{"backoff", 0}] = 1'000'000 + 2500;
  r.next_frame = 4;
  r.previous_owner = "dead";
  driver d(wf, json::object(), r);
  d.settle();
  // The orphaned attempt is recorded cancelled (interrupted) first.
  auto fins = d.commands<store::finish_attempt>();
  REQUIRE(fins.size() == 1);
  CHECK(fins[0]->key.node == node_key{"flying", 0});
  CHECK(fins[0]->key.attempt == 2);
  CHECK(fins[0]->state == "cancelled");
  CHECK(d.events.front().type == std::string{"NodeCancelled"});
  CHECK(d.events.front().fields["reason"] == "interrupted");
  // The backoff still running is waited out: a timer for what is left of it.
  REQUIRE(d.timers.size() == 1);
  CHECK(d.timers[0].key == node_key{"backoff", 0});
  CHECK(d.timers[0].delay_ms == 2500);
  // The finished node does not run; the interrupted one runs again as
  // attempt 3, with its checkpoint.
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.key.id == "flying");
  CHECK(d.running[0]->request.attempt == 3);
  CHECK(d.running[0]->request.last_heartbeat == json{{"step", 7}});
  CHECK(d.running[0]->request.needs == json::object());
  // Frames continue where the stored ones end.
  auto frames = d.commands<store::store_frame>();
  REQUIRE_FALSE(frames.empty());
  CHECK(frames[0]->row.frame_no == 4);
  d.answer("flying", ok(json::object()));
  CHECK_FALSE(d.done);
  CHECK(d.running.empty()); // backoff still held
  d.core->on_retry_due({"backoff", 0});
  d.collect();
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.attempt == 2);
  d.answer("backoff", ok(json::object()));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.result.outputs.at("done") == json{{"d", 1}});
}

TEST_CASE("recover: stored rows to the state a resume starts from") {
  auto node = [](const char* id, const char* state, std::int64_t iteration = 0) {
    store::node_row n;
    n.run_id = "r";
    n.node_id = id;
    n.iteration = iteration;
    n.state = state;
    return n;
  };
  auto attempt = [](const char* id, std::int64_t no, const char* state, json meta = nullptr,
                    json beat = nullptr, std::int64_t iteration = 0) {
    store::attempt_row a;
    a.run_id = "r";
    a.node_id = id;
    a.iteration = iteration;
    a.attempt = no;
    a.state = state;
    a.meta = std::move(meta);
    a.heartbeat = std::move(beat);
    return a;
  };
  std::vector<store::node_row> nodes{node("fin", "finished"),    node("run", "in-progress"),
                                     node("can", "cancelled"),   node("wait", "pending"),
                                     node("gaveup", "failed"),   node("loop", "finished", 0),
                                     node("loop", "in-progress", 1)};
  std::vector<store::attempt_row> attempts{
      attempt("fin", 1, "finished"),
      attempt("run", 1, "failed"),
      attempt("run", 2, "in-progress", {{"host", "h"}, {"pgid", 42}, {"pgid_start", 7}},
              {{"ck", 1}}),
      attempt("wait", 1, "failed", {{"retry_at_ms", 5000}}),
      attempt("gaveup", 1, "failed", {{"retry_at_ms", 9000}}), // failed for good: no backoff
      attempt("can", 1, "cancelled", {{"retry_at_ms", "not a number"}}),
      attempt("loop", 1, "finished", nullptr, nullptr, 0),
      attempt("loop", 1, "in-progress", nullptr, nullptr, 1),
  };
  std::vector<store::output_row> outputs{{"r", "fin", 0, {{"v", 1}}},
                                         {"r", "loop", 0, {{"i", 0}}},
                                         {"r", "loop", 2, {{"i", 2}}},
                                         {"r", "loop", 1, {{"i", 1}}}};
  auto rec = core::recover(nodes, attempts, outputs);
  const auto& r = rec.state;
  struct state_row {
    node_key key;
    node_state state;
  };
  const state_row states[] = {
      {{"fin", 0}, node_state::finished},   {{"run", 0}, node_state::pending},
      {{"can", 0}, node_state::pending},    {{"wait", 0}, node_state::pending},
      {{"gaveup", 0}, node_state::failed},  {{"loop", 0}, node_state::finished},
      {{"loop", 1}, node_state::pending},
  };
  for (const auto& s : states) {
    CAPTURE(to_string(s.key));
    REQUIRE(r.states.count(s.key));
    CHECK(r.states.at(s.key) == s.state);
  }
  CHECK(r.attempts.at({"run", 0}) == 2);
  CHECK(r.attempts.at({"loop", 1}) == 1);
  std::set<std::pair<std::string, std::int64_t>> orphans;
  for (const auto& o : r.orphaned)
    orphans.insert({to_string(o.node), o.attempt});
  CHECK(orphans == std::set<std::pair<std::string, std::int64_t>>{{"run", 2}, {"loop@1", 1}});
  REQUIRE(rec.orphan_groups.size() == 1);
  CHECK(rec.orphan_groups[0]["pgid"] == 42);
  CHECK(r.checkpoints.at({"run", 0}) == json{{"ck", 1}});
  CHECK(r.retry_at_ms.size() == 1);
  CHECK(r.retry_at_ms.at({"wait", 0}) == 5000);
  CHECK(r.outputs.at("fin") == json{{"v", 1}});
  CHECK(r.outputs.at("loop") == json{{"i", 2}}); // the latest iteration's
}

TEST_CASE("run core: a branch mounts what its predicate chose once the node it reads has ended") {
  auto wf = static_wf(sequence(
      {compute_task("check", noop),
       branch("ship", {{"output", "check.ok"}, {"equals", true}}, compute_task("deploy", noop),
              compute_task("report", noop))}));
  SECTION("then") {
    driver d(wf);
    d.settle();
    REQUIRE(d.running.size() == 1);
    d.answer("check", ok({{"ok", true}}));
    REQUIRE(d.is_running("deploy"));
    CHECK_FALSE(d.core->written_state({"report", 0}));
    d.answer("deploy", ok(json::object()));
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::finished);
    CHECK(d.result.outputs.count("report") == 0);
  }
  SECTION("else, when check failed with continue_on_fail: a missing output") {
    auto wf2 = static_wf(sequence(
        {compute_task("check", noop).continue_on_fail(),
         branch("ship", {{"output", "check.ok"}, {"equals", true}}, compute_task("deploy", noop),
                compute_task("report", noop))}));
    driver d(wf2);
    d.settle();
    d.answer("check", fail(errc::task_failed));
    REQUIRE(d.is_running("report"));
    d.answer("report", ok(json::object()));
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::finished);
    CHECK_FALSE(d.core->written_state({"deploy", 0}));
  }
}

TEST_CASE("run core: a value read by a branch decides it only once committed") {
  auto wf = static_wf(sequence({value_task("check", {{"ok", true}}),
                                branch("ship", {{"output", "check.ok"}, {"equals", true}},
                                       compute_task("deploy", noop), compute_task("report", noop))}));
  driver d(wf);
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.key.id == "deploy");
}

TEST_CASE("run core: a branch that can never be decided fails the run, naming it") {
  // `ghost` sits in the else of a branch that chose then: it never runs.
  auto wf = static_wf(sequence(
      {value_task("a", {{"go", true}}),
       branch("first", {{"output", "a.go"}, {"equals", true}}, value_task("b", json::object()),
              value_task("ghost", {{"ok", true}})),
       branch("second", {{"output", "ghost.ok"}, {"equals", true}}, value_task("c", json::object()))}));
  driver d(wf);
  d.settle();
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::failed);
  CHECK(d.result.err->code == std::string{errc::invalid_workflow});
  CHECK(d.result.err->details["undecided_nodes"] == json::array({"second"}));
  CHECK(d.result.outputs.count("b") == 1);
}

TEST_CASE("run core: what follows an undecided branch waits for its decision") {
  // The branch reads `slow`, which runs beside it: `after` must not start
  // before the branch is decided and done.
  auto wf = static_wf(parallel(
      {compute_task("slow", noop),
       sequence({value_task("first", json::object()),
                 branch("gate", {{"output", "slow.go"}, {"equals", true}}, compute_task("inside", noop)),
                 compute_task("after", noop)})}));
  driver d(wf);
  d.settle();
  CHECK(d.is_running("slow"));
  CHECK_FALSE(d.is_running("after"));
  d.answer("slow", ok({{"go", true}}));
  REQUIRE(d.is_running("inside"));
  CHECK_FALSE(d.is_running("after"));
  d.answer("inside", ok(json::object()));
  REQUIRE(d.is_running("after"));
  d.answer("after", ok(json::object()));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
}

namespace {

// One task per iteration that reports the iteration; `until` holds once it
// reaches `stop_at`.
std::shared_ptr<const workflow> counting_loop(std::int64_t max, bool fail_on_max,
                                              std::int64_t stop_at) {
  loop_options o;
  o.max_iterations = max;
  o.fail_on_max = fail_on_max;
  return static_wf(sequence(
      {loop("count", compute_task("step", noop), {{"output", "step.n"}, {"gte", stop_at}}, o),
       compute_task("after", noop).needs({"step"})}));
}

// Answers the running step with its iteration as n.
void answer_step(driver& d) {
  REQUIRE(d.running.size() == 1);
  auto it = d.running.front()->request.key.iteration;
  d.answer("step", ok({{"n", it}}));
}

std::vector<std::pair<std::string, std::int64_t>> loop_rows(const driver& d) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  for (const auto* c : d.commands<store::upsert_loop>())
    out.emplace_back(c->row.state, c->row.iteration);
  return out;
}

} // namespace

TEST_CASE("run core: a loop runs its body per iteration, keyed by it, until `until` holds") {
  driver d(counting_loop(5, false, 2));
  d.settle();
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    REQUIRE(d.running.size() == 1);
    CHECK(d.running.front()->request.key == node_key{"step", i});
    answer_step(d);
  }
  // until held after iteration 2: the loop ended and what follows ran.
  REQUIRE(d.running.size() == 1);
  CHECK(d.running.front()->request.key == node_key{"after", 0});
  d.answer("after", ok(json::object()));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.result.outputs.at("step") == json{{"n", 2}}); // the latest iteration's
  // Each iteration's node has its own row and attempt 1.
  for (int i = 0; i < 3; ++i) {
    CHECK(d.core->attempts_of({"step", i}) == 1);
    CHECK(d.core->written_state({"step", i}) == node_state::finished);
  }
  CHECK_FALSE(d.core->written_state({"step", 3}));
  // The loop's state is written as it moves: durable before the next
  // iteration's nodes run.
  CHECK(loop_rows(d) == std::vector<std::pair<std::string, std::int64_t>>{
                            {"running", 0}, {"running", 1}, {"running", 2}, {"finished", 2}});
  std::vector<std::int64_t> started;
  for (const auto& e : d.events)
    if (e.type == event_type::loop_iteration_started) started.push_back(e.fields["iteration"]);
  CHECK(started == std::vector<std::int64_t>{0, 1, 2});
  const event* fin = d.last_event(event_type::loop_finished);
  REQUIRE(fin);
  CHECK(fin->fields["reason"] == "until");
  CHECK(fin->fields["iterations"] == 3);
}

TEST_CASE("run core: max_iterations without `until` holding: fail or return-last") {
  SECTION("fail: LOOP_MAX_REACHED") {
    driver d(counting_loop(3, true, 100));
    d.settle();
    for (int i = 0; i < 3; ++i)
      answer_step(d);
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::failed);
    REQUIRE(d.result.err);
    CHECK(d.result.err->code == errc::loop_max_reached);
    CHECK(d.result.err->details["loop_id"] == "count");
    CHECK(d.result.err->details["max_iterations"] == 3);
    CHECK(loop_rows(d).back() == std::pair<std::string, std::int64_t>{"failed", 2});
    // What follows the loop never ran.
    CHECK(d.core->attempts_of({"after", 0}) == 0);
  }
  SECTION("return-last: the loop ends normally") {
    driver d(counting_loop(3, false, 100));
    d.settle();
    for (int i = 0; i < 3; ++i)
      answer_step(d);
    REQUIRE(d.running.size() == 1);
    CHECK(d.running.front()->request.key == node_key{"after", 0});
    CHECK(d.last_event(event_type::loop_finished)->fields["reason"] == "max_iterations");
    CHECK(loop_rows(d).back() == std::pair<std::string, std::int64_t>{"finished", 2});
  }
}

TEST_CASE("run core: a failed body node fails the loop unless it continues on failure") {
  driver d(counting_loop(5, false, 2));
  d.settle();
  answer_step(d);
  d.answer("step", fail(errc::invalid_output));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::failed);
  CHECK(d.result.err->code == errc::task_failed);
  CHECK(loop_rows(d).back() == std::pair<std::string, std::int64_t>{"running", 1});
}

TEST_CASE("run core: a resumed loop goes on in its iteration without redoing finished nodes") {
  // Killed in iteration 2 after `a` finished there, `b` in flight.
  auto wf = static_wf(loop("l", sequence({compute_task("a", noop), compute_task("b", noop)}),
                           {{"output", "b.n"}, {"gte", 3}}));
  core::resume_state r;
  for (int i = 0; i < 2; ++i) {
    r.states[{"a", i}] = node_state::finished;
    r.states[{"b", i}] = node_state::finished;
    r.history[{"a", i}] = {{"n", i}};
    r.history[{"b", i}] = {{"n", i}};
  }
  r.states[{"a", 2}] = node_state::finished;
  r.states[{"b", 2}] = node_state::pending;
  r.history[{"a", 2}] = {{"n", 2}};
  r.outputs["a"] = {{"n", 2}};
  r.outputs["b"] = {{"n", 1}};
  r.attempts[{"a", 2}] = 1;
  r.attempts[{"b", 2}] = 1;
  r.orphaned.push_back({{"b", 2}, 1});
  r.loops["l"] = loop_state{2, false};
  r.next_frame = 9;
  driver d(wf, json::object(), r);
  d.settle();
  // Only b of iteration 2 runs (its second attempt); a@2 is not repeated.
  REQUIRE(d.running.size() == 1);
  CHECK(d.running.front()->request.key == node_key{"b", 2});
  CHECK(d.running.front()->request.attempt == 2);
  CHECK(loop_rows(d).empty()); // the stored state stands
  d.answer("b", ok({{"n", 2}}));
  // Iteration 3: both run.
  REQUIRE(d.running.size() == 1);
  CHECK(d.running.front()->request.key == node_key{"a", 3});
  d.answer("a", ok({{"n", 3}}));
  d.answer("b", ok({{"n", 3}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.core->attempts_of({"a", 2}) == 1);
}

TEST_CASE("run core: nested loops key inner nodes by (outer, inner) and read X@N") {
  // outer: 2 iterations; inner: 2 iterations of `s`; `t` reads s's first
  // inner iteration of the same outer one.
  loop_options two;
  two.max_iterations = 2;
  // After the outer loop, `final` needs s (the last one) and reads s's
  // inner iteration 1 of the outer loop's last iteration.
  auto wf = static_wf(sequence(
      {loop("outer",
            sequence({loop("inner", compute_task("s", noop), nullptr, two),
                      command_task("t", {"echo", "{{outputs.s@0.v}}"}).needs({"s"})}),
            nullptr, two),
       command_task("final", {"echo", "{{outputs.s@1.v}}"}).needs({"s"})}));
  driver d(wf);
  d.settle();
  std::vector<std::string> seen;
  for (int guard = 0; guard < 20 && !d.done; ++guard) {
    REQUIRE(d.running.size() == 1);
    auto job = d.running.front();
    seen.push_back(to_string(job->request.key));
    CAPTURE(to_string(job->request.key));
    if (job->request.key.id.rfind("s", 0) == 0) {
      // s's value names its key, so an argument shows which one was read.
      d.answer(job->request.key.id, ok({{"v", to_string(job->request.key)}}));
    } else if (job->request.key.id == "final") {
      CHECK(job->request.argv.at(1) == "s@1@1");
      d.answer("final", ok(json::object()));
    } else {
      std::string outer = job->request.key.iteration == 0 ? "0" : "1";
      CHECK(job->request.argv.at(1) == "s@" + outer + "@0");
      d.answer(job->request.key.id, ok(json::object()));
    }
  }
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(seen ==
        std::vector<std::string>{"s@0@0", "s@0@1", "t", "s@1@0", "s@1@1", "t@1", "final"});
  CHECK(d.core->loops().at("inner@0").done);
  CHECK(d.core->loops().at("inner@1").done);
  CHECK(d.core->loops().at("outer").iteration == 1);
}

TEST_CASE("run core: a branch in a loop is decided again every iteration") {
  // Iteration i: check says ok when i is odd; the branch runs `odd` then.
  loop_options three;
  three.max_iterations = 3;
  auto wf = static_wf(loop(
      "l",
      sequence({compute_task("check", noop),
                branch("b", {{"output", "check.odd"}, {"equals", true}}, compute_task("odd", noop),
                       compute_task("even", noop))}),
      nullptr, three));
  driver d(wf);
  d.settle();
  std::vector<std::string> seen;
  for (int guard = 0; guard < 20 && !d.done; ++guard) {
    REQUIRE(d.running.size() == 1);
    auto k = d.running.front()->request.key;
    seen.push_back(to_string(k));
    d.answer(k.id, ok({{"odd", k.iteration % 2 == 1}}));
  }
  CHECK(d.result.status == run_status::finished);
  CHECK(seen == std::vector<std::string>{"check", "even", "check@1", "odd@1", "check@2", "even@2"});
}

TEST_CASE("run core: continue_as_new_every ends the run `continued` with its state carried") {
  loop_options o;
  o.max_iterations = 10;
  o.continue_as_new_every = 2;
  // A sibling still in flight when the loop reaches 2 iterations finishes
  // first: nothing is cut short.
  auto wf = static_wf(sequence(
      {compute_task("setup", noop),
       parallel({loop("l", compute_task("step", noop), {{"output", "step.n"}, {"gte", 9}}, o),
                 compute_task("slow", noop)}),
       compute_task("after", noop).needs({"step"})}));
  driver d(wf);
  d.settle();
  d.answer("setup", ok({{"s", 1}}));
  REQUIRE(d.running.size() == 2);
  d.answer("step", ok({{"n", 0}}));
  d.answer("step", ok({{"n", 1}}));
  // Iteration 2 starts in the successor: nothing new here, slow goes on.
  REQUIRE(d.running.size() == 1);
  CHECK(d.running.front()->request.key.id == "slow");
  CHECK_FALSE(d.done);
  CHECK(d.stops.empty());
  // Nothing says so in the store yet: a crash now resumes the loop where it
  // was, and the resume decides again.
  for (const auto& row : loop_rows(d))
    CHECK(row.first == "running");
  d.answer("slow", ok({{"slow", true}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::continued);
  CHECK(d.result.continued_as == "r~1");
  // One commit ends this run and creates its successor with what it carries.
  auto cont = d.commands<store::continue_run>();
  REQUIRE(cont.size() == 1);
  CHECK(cont[0]->parent_run_id == "r");
  CHECK(cont[0]->run_id == "r~1");
  std::map<std::string, std::string> carried;
  for (const auto* n : d.commands<store::upsert_node>())
    if (n->row.run_id == "r~1")
      carried[to_string(node_key{n->row.node_id, n->row.iteration})] = n->row.state;
  CHECK(carried == std::map<std::string, std::string>{
                       {"setup", "finished"}, {"step@1", "finished"}, {"slow", "finished"}});
  std::map<std::string, json> outputs;
  for (const auto* a : d.commands<store::insert_attempt>())
    if (a->row.run_id == "r~1") {
      CHECK(a->row.cached);
      outputs[a->row.node_id] = *a->row.output;
    }
  CHECK(outputs.at("step") == json{{"n", 1}});
  bool loop_carried = false;
  for (const auto* l : d.commands<store::upsert_loop>()) {
    if (l->row.run_id == "r~1") {
      CHECK(l->row.loop_id == "l");
      CHECK(l->row.iteration == 2);
      CHECK(l->row.state == "running");
      loop_carried = true;
    } else if (l->row.state != "running") {
      CHECK(l->row.state == "continued");
      CHECK(l->row.iteration == 1);
    }
  }
  CHECK(loop_carried);
  const event* ev = d.last_event(event_type::run_continued_as_new);
  REQUIRE(ev);
  CHECK(ev->fields["next_run_id"] == "r~1");
  CHECK(d.core->attempts_of({"after", 0}) == 0);
  // Nothing of this run is left pending for it: the successor runs it.
  CHECK_FALSE(d.core->written_state({"step", 2}));
}

TEST_CASE("run core: carried state over 10 MiB is CONTINUATION_STATE_TOO_LARGE") {
  loop_options o;
  o.max_iterations = 10;
  o.continue_as_new_every = 1;
  auto wf = static_wf(loop("l", compute_task("big", noop), nullptr, o));
  driver d(wf);
  d.settle();
  d.answer("big", ok({{"blob", std::string(limits::max_continuation_state_bytes, 'x')}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::failed);
  REQUIRE(d.result.err);
  CHECK(d.result.err->code == errc::continuation_state_too_large);
  CHECK(d.commands<store::continue_run>().empty());
}

TEST_CASE("run core: successor ids number the chain") {
  // Through the core: r -> r~1 is above; a successor's successor is r~2.
  loop_options o;
  o.max_iterations = 10;
  o.continue_as_new_every = 1;
  auto wf = static_wf(loop("l", compute_task("s", noop), nullptr, o));
  core::resume_state r;
  r.loops["l"] = loop_state{3, false};
  // The same core, resumed as run "r~1" would be: its id decides the next.
  core::run_config cfg;
  cfg.run_id = "chain~1";
  cfg.owner_id = "me";
  cfg.wf = wf;
  cfg.input = std::make_shared<const json>(json::object());
  cfg.computes = std::make_shared<const core::compute_registry>();
  std::unordered_map<std::string, json> outs;
  std::unordered_map<std::string, loop_state> loops = r.loops;
  render_context rc{"chain~1", cfg.input.get(), &outs, nullptr, &loops};
  cfg.first_render = render(wf, rc);
  cfg.resume = std::move(r);
  std::int64_t clock = 1000;
  run_core c(std::move(cfg), [&] { return clock; }, 1);
  c.start();
  std::vector<std::uint64_t> batches;
  std::vector<std::shared_ptr<executors::task_job>> jobs;
  run_result res;
  bool done = false;
  for (int guard = 0; guard < 100 && !done; ++guard) {
    auto fx = c.take_effects();
    for (auto& b : fx.batches) batches.push_back(b.id);
    for (auto& j : fx.launches) jobs.push_back(j);
    if (fx.done) {
      done = true;
      res = c.take_result();
      break;
    }
    if (fx.tick) {
      c.tick();
      continue;
    }
    if (!batches.empty()) {
      auto id = batches.front();
      batches.erase(batches.begin());
      c.on_committed(id);
      continue;
    }
    if (!jobs.empty()) {
      auto j = jobs.front();
      jobs.erase(jobs.begin());
      CHECK(j->request.key == node_key{"s", 3});
      c.on_result({j->request.key, j->request.attempt}, ok(json::object()));
    }
  }
  REQUIRE(done);
  CHECK(res.status == run_status::continued);
  CHECK(res.continued_as == "chain~2");
}

namespace {

// A loop continuing as new every iteration beside a task that is in flight
// (or waiting for a retry) when the loop's first iteration ends.
std::shared_ptr<const workflow> continuing_beside(node sibling) {
  loop_options o;
  o.max_iterations = 10;
  o.continue_as_new_every = 1;
  return static_wf(parallel({loop("l", compute_task("step", noop), nullptr, o), std::move(sibling)}));
}

} // namespace

TEST_CASE("run core: a cancel while a continue-as-new waits for attempts wins") {
  driver d(continuing_beside(compute_task("slow", noop)));
  d.settle();
  d.answer("step", ok({{"n", 0}}));
  REQUIRE(d.running.size() == 1); // slow, finishing before the run continues
  d.core->stop(core::stop_mode::cancel, error{errc::run_cancelled, "stop it"});
  d.collect();
  REQUIRE(d.stops.size() == 1); // now slow is asked to stop
  CHECK(d.stops[0].key.node.id == "slow");
  d.answer("slow", fail(errc::task_aborted, "stopped"));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::cancelled);
  CHECK(d.result.continued_as.empty());
  CHECK(d.commands<store::continue_run>().empty());
  CHECK(loop_rows(d) == std::vector<std::pair<std::string, std::int64_t>>{{"running", 0}});
}

TEST_CASE("run core: a node waiting out a backoff carries its last attempt to the successor") {
  retry_policy rp;
  rp.initial_ms = 60000;
  driver d(continuing_beside(compute_task("flaky", noop).retries(3).retry(rp)));
  d.settle();
  d.answer("flaky", fail(errc::task_failed, "try again"));
  REQUIRE(d.timers.size() == 1); // its backoff runs; nothing of it is in flight
  d.answer("step", ok({{"n", 0}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::continued);
  const store::attempt_row* carried = nullptr;
  for (const auto* a : d.commands<store::insert_attempt>())
    if (a->row.run_id == "r~1" && a->row.node_id == "flaky") carried = &a->row;
  REQUIRE(carried);
  CHECK(carried->state == "failed");
  CHECK(carried->attempt == 1);
  CHECK(carried->meta["retry_at_ms"] == d.clock + 60000);
  CHECK(carried->error["code"] == errc::task_failed);
  bool pending = false;
  for (const auto* n : d.commands<store::upsert_node>())
    if (n->row.run_id == "r~1" && n->row.node_id == "flaky")
      pending = n->row.state == "pending" && n->row.attempts == 1;
  CHECK(pending);
  // The successor's first iteration is announced in its own events.
  bool announced = false;
  for (const auto* e : d.commands<store::append_event>())
    if (e->row.run_id == "r~1" && e->row.type == event_type::loop_iteration_started)
      announced = e->row.seq == 1 && e->row.payload["iteration"] == 1;
  CHECK(announced);
}

TEST_CASE("run core: an attempt whose start commits after a continue-as-new began runs and is waited for") {
  loop_options o;
  o.max_iterations = 10;
  o.continue_as_new_every = 1;
  driver d(static_wf(parallel({loop("l", compute_task("step", noop), nullptr, o),
                               sequence({compute_task("a", noop), compute_task("b", noop)})})));
  d.settle();
  auto take = [&](const std::string& id) {
    auto it = std::find_if(d.running.begin(), d.running.end(),
                           [&](const auto& j) { return j->request.key.id == id; });
    REQUIRE(it != d.running.end());
    attempt_key k{(*it)->request.key, (*it)->request.attempt};
    d.running.erase(it);
    return k;
  };
  // a ends: b's start is written, its batch not yet committed...
  d.core->on_result(take("a"), ok(json::object()));
  d.collect();
  d.core->tick();
  d.collect();
  REQUIRE_FALSE(d.uncommitted.empty());
  // ...when the loop's iteration ends and the run is to continue as new.
  d.core->on_result(take("step"), ok({{"n", 0}}));
  d.collect();
  d.settle();
  REQUIRE(d.is_running("b")); // launched once durable, not failed
  CHECK_FALSE(d.done);
  d.answer("b", ok({{"b", 1}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::continued);
  CHECK(d.core->written_state({"b", 0}) == node_state::finished);
}

TEST_CASE("run core: after a resume, X@0 is still there once X@1 has finished") {
  loop_options two;
  two.max_iterations = 2;
  auto wf = static_wf(sequence({loop("l", compute_task("x", noop), nullptr, two),
                                command_task("read", {"echo", "{{outputs.x@0.v}}"}).needs({"x"})}));
  core::resume_state r;
  r.states[{"x", 0}] = node_state::finished;
  r.outputs["x"] = {{"v", "first"}}; // one output so far: not kept by key
  r.attempts[{"x", 0}] = 1;
  r.loops["l"] = loop_state{1, false};
  driver d(wf, json::object(), r);
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running.front()->request.key == node_key{"x", 1});
  d.answer("x", ok({{"v", "second"}}));
  REQUIRE(d.running.size() == 1);
  CHECK(d.running.front()->request.argv.at(1) == "first");
}

TEST_CASE("run core: a backoff and a checkpoint inside an iteration carry over a resume") {
  loop_options o;
  o.max_iterations = 5;
  auto wf = static_wf(loop("l", compute_task("s", noop).retries(2), nullptr, o));
  core::resume_state r;
  for (int i = 0; i < 3; ++i) r.states[{"s", i}] = i < 2 ? node_state::finished : node_state::pending;
  r.outputs["s"] = {{"i", 1}};
  r.history[{"s", 0}] = {{"i", 0}};
  r.history[{"s", 1}] = {{"i", 1}};
  r.attempts[{"s", 2}] = 1;
  r.retry_at_ms[{"s", 2}] = 1'000'000 + 5000; // the driver's clock + 5 s
  r.checkpoints[{"s", 2}] = {{"page", 7}};
  r.loops["l"] = loop_state{2, false};
  driver d(wf, json::object(), r);
  d.settle();
  // Nothing runs before the backoff has passed; then attempt 2 of s@2, with
  // its checkpoint.
  CHECK(d.running.empty());
  REQUIRE(d.timers.size() == 1);
  CHECK(d.timers[0].key == node_key{"s", 2});
  CHECK(d.timers[0].delay_ms == 5000);
  d.clock += 5000;
  d.core->on_retry_due({"s", 2});
  d.collect();
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running.front()->request.key == node_key{"s", 2});
  CHECK(d.running.front()->request.attempt == 2);
  CHECK(d.running.front()->request.last_heartbeat == json{{"page", 7}});
}

TEST_CASE("run core: a node back while its dropped attempt is being stopped runs once that ends") {
  auto wf = std::make_shared<workflow>();
  // then (slow) while p1 runs, else (other) between p1 and p2, then again.
  wf->build = [](const render_context& ctx) {
    bool then_side = !ctx.output("p1") || ctx.output("p2");
    json cond = then_side ? json{{"input", "flag"}, {"exists", false}}
                          : json{{"input", "flag"}, {"exists", true}};
    return parallel({sequence({compute_task("p1", noop), compute_task("p2", noop)}),
                     branch("side", cond, compute_task("slow", noop), compute_task("other", noop))});
  };
  driver d(wf);
  d.settle();
  REQUIRE(d.is_running("slow"));
  d.answer("p1", ok(json::object()));
  // Dropped: asked to stop; other and p2 start.
  REQUIRE(d.stops.size() == 1);
  CHECK(d.stops[0].key == attempt_key{{"slow", 0}, 1});
  d.answer("other", ok(json::object()));
  d.answer("p2", ok(json::object()));
  // Back, while attempt 1 has not stopped yet: no second attempt beside it.
  CHECK(d.core->attempts_of({"slow", 0}) == 1);
  REQUIRE(d.running.size() == 1);
  CHECK(d.running.front()->request.attempt == 1);
  CHECK_FALSE(d.done);
  // Attempt 1 ends (stopped): recorded cancelled, and attempt 2 runs.
  d.answer("slow", fail(errc::task_aborted, "stopped"));
  REQUIRE(d.running.size() == 1);
  CHECK(d.running.front()->request.key == node_key{"slow", 0});
  CHECK(d.running.front()->request.attempt == 2);
  d.answer("slow", ok({{"slow", true}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.result.outputs.at("slow") == json{{"slow", true}});
}

TEST_CASE("run core: two loops reaching continue-as-new at once both go on in one successor") {
  loop_options o;
  o.max_iterations = 10;
  o.continue_as_new_every = 1;
  driver d(static_wf(parallel({loop("a", compute_task("x", noop), nullptr, o),
                               loop("b", compute_task("y", noop), nullptr, o)})));
  d.settle();
  REQUIRE(d.running.size() == 2);
  // Both results land before the tick that advances the loops.
  for (const char* id : {"x", "y"}) {
    auto it = std::find_if(d.running.begin(), d.running.end(),
                           [&](const auto& j) { return j->request.key.id == id; });
    REQUIRE(it != d.running.end());
    attempt_key k{(*it)->request.key, (*it)->request.attempt};
    d.running.erase(it);
    d.core->on_result(k, ok(json::object()));
  }
  d.collect();
  d.settle();
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::continued);
  std::map<std::string, std::string> parent, successor;
  for (const auto* l : d.commands<store::upsert_loop>())
    (l->row.run_id == "r" ? parent : successor)[l->row.loop_id] =
        l->row.state + "@" + std::to_string(l->row.iteration);
  CHECK(parent == std::map<std::string, std::string>{{"a", "continued@0"}, {"b", "continued@0"}});
  CHECK(successor == std::map<std::string, std::string>{{"a", "running@1"}, {"b", "running@1"}});
  std::set<std::int64_t> seqs;
  for (const auto* e : d.commands<store::append_event>())
    if (e->row.run_id == "r~1") seqs.insert(e->row.seq);
  CHECK(seqs == std::set<std::int64_t>{0, 1, 2});
}

// -- waits: approvals, timers, signals (docs/waiting.md) ------------------------

namespace {

store::inbox_row decision_for(std::int64_t id, node_key k, bool approved, std::string by = "ann") {
  store::inbox_row e;
  e.id = id;
  e.run_id = "r";
  e.kind = "approval";
  e.key = std::move(k);
  e.payload = {{"approved", approved}, {"by", by}, {"note", "n"}, {"decided_ms", 5}};
  return e;
}

store::inbox_row signal_for(std::int64_t id, std::string name, json data) {
  store::inbox_row e;
  e.id = id;
  e.run_id = "r";
  e.kind = "signal";
  e.name = std::move(name);
  e.payload = std::move(data);
  return e;
}

void tell(driver& d, const store::inbox_row& e) {
  d.core->on_inbox(e);
  d.collect();
  d.settle();
}

std::vector<std::string> statuses(const driver& d) {
  std::vector<std::string> out;
  for (const auto& e : d.events)
    if (e.type == std::string{event_type::run_status_changed})
      out.push_back(e.fields.value("status", ""));
  return out;
}

} // namespace

TEST_CASE("run core: an approval waits, takes no attempt, and its decision is its output") {
  driver d(static_wf(sequence({approval("ok", "Ship?"), compute_task("after", noop)})));
  d.settle();
  CHECK(d.core->written_state({"ok", 0}) == node_state::waiting_approval);
  CHECK(d.core->status() == run_status::waiting_approval);
  CHECK(d.running.empty());
  CHECK(d.core->attempts_of({"ok", 0}) == 0);
  auto waits = d.commands<store::upsert_wait>();
  REQUIRE(waits.size() == 1);
  CHECK(waits[0]->row.kind == "approval");
  CHECK(waits[0]->row.state == "waiting");
  CHECK(waits[0]->row.details["title"] == "Ship?");
  CHECK(d.last_event(event_type::approval_requested)->fields["title"] == "Ship?");

  tell(d, decision_for(7, {"ok", 0}, true));
  CHECK(d.core->written_state({"ok", 0}) == node_state::finished);
  CHECK(d.core->outputs().at("ok") ==
        json{{"approved", true}, {"by", "ann"}, {"note", "n"}, {"decided_ms", 5}});
  auto consumed = d.commands<store::consume_inbox>();
  REQUIRE(consumed.size() == 1);
  CHECK(consumed[0]->id == 7);
  CHECK(consumed[0]->consumed_by == "ok");
  CHECK(d.is_running("after")); // only once the decision is durable
  CHECK(statuses(d) == std::vector<std::string>{"waiting-approval", "running"});
  // Told again (a poller's second look): taken once.
  tell(d, decision_for(7, {"ok", 0}, true));
  CHECK(d.commands<store::consume_inbox>().size() == 1);
}

TEST_CASE("run core: a denied approval fails, continues or skips as on_deny says") {
  struct row {
    deny_action on_deny;
    node_state state;
    run_status run;
    bool after_runs;
  };
  for (auto r : {row{deny_action::fail, node_state::failed, run_status::failed, false},
                 row{deny_action::proceed, node_state::finished, run_status::finished, true},
                 row{deny_action::skip, node_state::skipped, run_status::finished, false}}) {
    INFO(to_string(r.on_deny));
    driver d(static_wf(
        sequence({approval("ok", "Ship?", "", r.on_deny), compute_task("after", noop).needs({"ok"}),
                  value_task("last", json::object())})));
    d.settle();
    tell(d, decision_for(1, {"ok", 0}, false));
    CHECK(d.core->written_state({"ok", 0}) == r.state);
    CHECK(d.is_running("after") == r.after_runs);
    if (r.after_runs) d.answer("after", ok(json::object()));
    REQUIRE(d.done);
    CHECK(d.result.status == r.run);
    if (r.on_deny == deny_action::fail) {
      CHECK(d.result.err->details["failed_nodes"] == json::array({"ok"}));
      auto fins = d.commands<store::finish_attempt>();
      REQUIRE(fins.size() == 1);
      CHECK(fins[0]->error["code"] == errc::approval_denied);
    }
    if (r.on_deny == deny_action::proceed) CHECK(d.result.outputs.at("ok")["approved"] == false);
    if (r.on_deny == deny_action::skip) {
      CHECK(d.event_types("after").back() == event_type::node_skipped);
      CHECK(d.result.outputs.count("last") == 1); // what follows goes on
    }
  }
}

TEST_CASE("run core: a needs_approval gate holds the task's first attempt until approved") {
  driver d(
      static_wf(sequence({compute_task("deploy", noop).needs_approval("Deploy?").retries(1)})));
  d.settle();
  CHECK(d.running.empty());
  CHECK(d.core->written_state({"deploy", 0}) == node_state::waiting_approval);
  CHECK(d.event_types("deploy") ==
        std::vector<std::string>{event_type::node_pending, event_type::approval_requested});
  tell(d, decision_for(3, {"deploy", 0}, true));
  REQUIRE(d.is_running("deploy"));
  CHECK(d.running[0]->request.attempt == 1);
  // A retry does not ask again.
  d.answer("deploy", fail(errc::task_failed));
  d.core->on_retry_due({"deploy", 0});
  d.collect();
  d.settle();
  REQUIRE(d.is_running("deploy"));
  CHECK(d.running[0]->request.attempt == 2);
  CHECK(d.commands<store::upsert_wait>().size() == 2); // waiting, approved
  d.answer("deploy", ok(json::object()));
  CHECK(d.result.status == run_status::finished);
}

TEST_CASE("run core: a timer sleeps on a wakeup to its stored deadline and fires once") {
  driver d(static_wf(sequence({timer("cool", 500), compute_task("after", noop)})));
  d.settle();
  REQUIRE(d.wakeups.size() == 1);
  CHECK(d.wakeups[0].delay_ms == 500);
  auto waits = d.commands<store::upsert_wait>();
  REQUIRE(waits.size() == 1);
  CHECK(waits[0]->row.deadline_ms == d.clock + 500);
  CHECK(d.core->status() == run_status::waiting_timer);
  // Woken early (a clock that moved): it sleeps on, to the same deadline.
  d.clock += 200;
  d.core->on_wait_due({"cool", 0});
  d.collect();
  REQUIRE(d.wakeups.size() == 2);
  CHECK(d.wakeups[1].delay_ms == 300);
  CHECK(d.core->written_state({"cool", 0}) == node_state::waiting_timer);
  d.clock += 300;
  d.core->on_wait_due({"cool", 0});
  d.collect();
  d.settle();
  CHECK(d.core->written_state({"cool", 0}) == node_state::finished);
  CHECK(d.core->outputs().at("cool") == json{{"deadline_ms", d.clock}, {"fired_ms", d.clock}});
  CHECK(d.is_running("after"));
  d.core->on_wait_due({"cool", 0}); // late duplicate
  d.collect();
  d.settle();
  int fired = 0;
  for (const auto& e : d.events)
    fired += e.type == std::string{event_type::timer_fired};
  CHECK(fired == 1);
}

TEST_CASE("run core: signals go to the oldest waiter; early ones wait for a node, oldest first") {
  driver d(static_wf(sequence({parallel({signal("first", "ci"), timer("t", 10)}),
                               signal("second", "ci"), signal("third", "ci")})));
  d.settle();
  // Two arrive while only "first" waits: it takes the older, the newer waits.
  tell(d, signal_for(1, "ci", {{"n", 1}}));
  tell(d, signal_for(2, "ci", {{"n", 2}}));
  CHECK(d.core->outputs().at("first") == json{{"n", 1}});
  d.clock += 10;
  d.core->on_wait_due({"t", 0});
  d.collect();
  d.settle();
  // "second" mounts and takes the stored one at once.
  CHECK(d.core->outputs().at("second") == json{{"n", 2}});
  CHECK(d.core->written_state({"third", 0}) == node_state::waiting_event);
  CHECK(d.core->status() == run_status::waiting_event);
  tell(d, signal_for(3, "other", 1)); // another name: nobody takes it
  CHECK(d.core->written_state({"third", 0}) == node_state::waiting_event);
  tell(d, signal_for(4, "ci", "done"));
  REQUIRE(d.done);
  CHECK(d.result.outputs.at("third") == "done");
  CHECK(d.commands<store::consume_inbox>().size() == 3);
}

TEST_CASE("run core: a signal's timeout fails the attempt with SIGNAL_TIMEOUT, retried like any") {
  driver d(static_wf(
      sequence({signal("ci", "ci-done", 1000).retries(1).retry(retry_policy{50, 1.0, 50, 0.0})})));
  d.settle();
  REQUIRE(d.wakeups.size() == 1);
  d.clock += 1000;
  d.core->on_wait_due({"ci", 0});
  d.collect();
  d.settle();
  REQUIRE(d.timers.size() == 1); // the retry's backoff
  auto fins = d.commands<store::finish_attempt>();
  REQUIRE(fins.size() == 1);
  CHECK(fins[0]->error["code"] == errc::signal_timeout);
  CHECK(d.core->written_state({"ci", 0}) == node_state::pending);
  d.clock += 50;
  d.core->on_retry_due({"ci", 0});
  d.collect();
  d.settle();
  CHECK(d.core->written_state({"ci", 0}) == node_state::waiting_event);
  REQUIRE(d.wakeups.size() == 2);
  tell(d, signal_for(9, "ci-done", {{"ok", true}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.core->attempts_of({"ci", 0}) == 2);
}

TEST_CASE("run core: release_when_waiting lets go of a run that only waits for outside") {
  SECTION("an approval alone: released, its status and what it waits for reported") {
    driver d(static_wf(parallel({approval("a", "A?"), signal("s", "go")})), json::object(), {},
             true);
    d.settle();
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::waiting_approval);
    REQUIRE(d.result.waiting.size() == 2);
    CHECK(d.result.waiting[0].key == node_key{"a", 0});
    CHECK(d.result.waiting[0].title == "A?");
    CHECK(d.result.waiting[1].kind == "signal");
    CHECK(d.result.waiting[1].name == "go");
    CHECK(d.commands<store::release_run>().size() == 1);
    auto st = d.commands<store::set_run_status>();
    REQUIRE(st.size() == 1);
    CHECK(st[0]->status == "waiting-approval");
  }
  SECTION("with a timer or a signal timeout left, the owner keeps it") {
    for (auto n : {timer("t", 100), signal("s2", "x", 100)}) {
      driver d(static_wf(parallel({approval("a", "A?"), n})), json::object(), {}, true);
      d.settle();
      CHECK_FALSE(d.done);
      CHECK(d.commands<store::release_run>().empty());
      CHECK(d.core->status() == run_status::waiting_approval);
    }
  }
}

// An approval beside a timer, then a task; and a resume of it with both
// waiting, the timer's deadline passed while nobody owned the run.
std::shared_ptr<const workflow> approval_beside_timer() {
  return static_wf(
      sequence({parallel({approval("a", "A?"), timer("t", 1000)}), compute_task("after", noop)}));
}

core::resume_state approval_beside_timer_resumed(const std::string& previous_status) {
  core::resume_state r;
  r.states = {{{"a", 0}, node_state::waiting_approval},
              {{"t", 0}, node_state::waiting_timer},
              {{"after", 0}, node_state::pending}};
  r.previous_status = previous_status;
  store::wait_row a;
  a.key = {"a", 0};
  a.kind = "approval";
  a.state = "waiting";
  a.since_ms = 10;
  store::wait_row t;
  t.key = {"t", 0};
  t.kind = "timer";
  t.state = "waiting";
  t.since_ms = 10;
  t.deadline_ms = 999'000;
  r.waits = {a, t};
  return r;
}

// A run let go of, waiting for approval "a" alone.
void check_released(driver& d) {
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::waiting_approval);
  CHECK(d.commands<store::release_run>().size() == 1);
  REQUIRE(d.result.waiting.size() == 1);
  CHECK(d.result.waiting[0].key == node_key{"a", 0});
}

TEST_CASE("run core: a resumed run is released once its last timer fires beside an approval") {
  // Found by the fault driver: resumed with a timer due beside an approval,
  // the timer fired while the resume's first commit was in flight, so the
  // status went from waiting-approval to waiting-approval, and the release
  // (decided only on a change of status) never came: `smithers resume`
  // never exited.
  auto wf = approval_beside_timer();
  auto r = approval_beside_timer_resumed("running");
  SECTION("the timer fires after the resume's first commit") {
    driver d(wf, json::object(), r, true);
    d.settle();
    REQUIRE_FALSE(d.done); // the timer's deadline is kept
    CHECK(d.core->status() == run_status::waiting_approval);
    d.core->on_wait_due({"t", 0});
    d.collect();
    d.settle();
    check_released(d);
  }
  SECTION("the timer fires while the resume's first commit is in flight") {
    driver d(wf, json::object(), r, true);
    d.tick_due = false;
    d.core->tick();
    d.collect();
    REQUIRE(!d.uncommitted.empty());
    d.core->on_wait_due({"t", 0});
    d.collect();
    d.settle();
    check_released(d);
  }
}

TEST_CASE("run core: a resumed run waits again where it was and takes what arrived") {
  auto wf = approval_beside_timer();
  auto r = approval_beside_timer_resumed("waiting-approval");
  r.inbox = {decision_for(5, {"a", 0}, true)};
  driver d(wf, json::object(), r);
  REQUIRE(d.wakeups.size() == 1);
  CHECK(d.wakeups[0].delay_ms == 0); // due at once
  d.settle();
  CHECK(d.core->written_state({"a", 0}) == node_state::finished);
  CHECK(d.core->written_state({"t", 0}) == node_state::waiting_timer);
  d.core->on_wait_due({"t", 0});
  d.collect();
  d.settle();
  CHECK(d.core->outputs().at("t")["deadline_ms"] == 999'000);
  CHECK(d.is_running("after"));
  CHECK(d.commands<store::upsert_wait>().size() == 2); // approved, fired: no new waits
  auto st = statuses(d);
  REQUIRE_FALSE(st.empty());
  CHECK(st.front() == "running"); // the resume's
}

TEST_CASE("run core: a retried run's failed node gets a fresh retry budget") {
  core::resume_state r;
  r.retry = true;
  r.states = {{{"a", 0}, node_state::pending}};
  r.attempts = {{{"a", 0}, 2}};
  r.retry_base = {{{"a", 0}, 2}};
  r.retried = {{"a", 0}};
  driver d(static_wf(sequence(
               {compute_task("a", noop).retries(1).retry(retry_policy{10, 1.0, 10, 0.0})})),
           json::object(), r);
  d.settle();
  REQUIRE(d.is_running("a"));
  CHECK(d.running[0]->request.attempt == 3);
  d.answer("a", fail(errc::task_failed));
  CHECK(d.timers.size() == 1); // attempt 3 is the first of the new budget: retried
  d.core->on_retry_due({"a", 0});
  d.collect();
  d.settle();
  CHECK(d.running[0]->request.attempt == 4);
  d.answer("a", fail(errc::task_failed));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::failed);
  CHECK(d.core->attempts_of({"a", 0}) == 4);
}

TEST_CASE("run core: a waiting node a render drops waits no more; brought back, it waits anew") {
  auto with_gate = std::make_shared<bool>(true);
  auto wf = std::make_shared<workflow>();
  wf->build = [with_gate](const render_context&) {
    std::vector<node> kids{compute_task("a", noop)};
    if (*with_gate) kids.push_back(approval("gate", "Go?"));
    return parallel(std::move(kids));
  };
  driver d(wf);
  d.settle();
  CHECK(d.core->written_state({"gate", 0}) == node_state::waiting_approval);
  *with_gate = false;
  d.answer("a", ok({{"a", 1}})); // the re-render drops the waiting approval
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.core->written_state({"gate", 0}) == node_state::cancelled);
  CHECK(d.last_event("NodeCancelled")->fields["reason"] == "unmounted");
  auto waits = d.commands<store::upsert_wait>();
  REQUIRE(waits.size() == 2);
  CHECK(waits[1]->row.state == "cancelled");
  // A decision for it now is not taken by anything.
  CHECK(d.commands<store::consume_inbox>().empty());
}

TEST_CASE("run core: a wait gives back the slot it took; what it left starts and the run is busy") {
  driver d(static_wf(parallel({approval("gate", "Go?"), compute_task("x", noop)}, 1)),
           json::object(), {}, true);
  d.settle();
  REQUIRE(d.is_running("x")); // not left pending behind the waiting approval
  CHECK_FALSE(d.done);        // not let go of while x runs
  d.answer("x", ok(json::object()));
  REQUIRE(d.done); // now it only waits: released
  CHECK(d.result.status == run_status::waiting_approval);
}

TEST_CASE("run core: a deadline centuries away is slept on a day at a time") {
  driver d(static_wf(sequence({timer_until("far", 16'725'225'600'000)}))); // year 2500
  d.settle();
  REQUIRE(d.wakeups.size() == 1);
  CHECK(d.wakeups[0].delay_ms == 86'400'000);
  d.clock += 86'400'000;
  d.core->on_wait_due({"far", 0});
  d.collect();
  REQUIRE(d.wakeups.size() == 2); // early: one more day, no busy loop
  CHECK(d.wakeups[1].delay_ms == 86'400'000);
  CHECK(d.core->written_state({"far", 0}) == node_state::waiting_timer);
}

// -- workers: WORKER_LOST re-dispatched for free, attempts' workers ----------

namespace {

enum class then { free_redispatch, retry, fail };

struct lost_step {
  const char* code; // the attempt's error
  then outcome;
};

const char* outcome_name(then o) {
  return o == then::free_redispatch ? "free re-dispatch" : o == then::retry ? "retry" : "fail";
}

/// Fails attempt after attempt of task "a" with the codes of `steps`,
/// checking after each what became of it: run again at once for free
/// (NodeRetrying redispatch, a 0 ms timer, the finish command's meta says
/// so), retried after its backoff (100 ms), or failed for good. The first
/// attempt failing is number `first`.
void play_lost(driver& d, const std::vector<lost_step>& steps, std::int64_t first = 1) {
  const node_key k{"a", 0};
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto& s = steps[i];
    const std::int64_t n = first + static_cast<std::int64_t>(i); // the attempt failing now
    CAPTURE(n, s.code, outcome_name(s.outcome));
    REQUIRE_FALSE(d.done);
    REQUIRE(d.running.size() == 1);
    REQUIRE(d.running[0]->request.attempt == n);
    const auto timers_before = d.timers.size();
    const auto fins_before = d.commands<store::finish_attempt>().size();
    const std::int64_t at = d.clock;
    d.answer("a", fail(s.code));
    auto fins = d.commands<store::finish_attempt>();
    REQUIRE(fins.size() == fins_before + 1);
    const auto& fin = *fins.back();
    CHECK(fin.key == attempt_key{k, n});
    CHECK(fin.state == "failed");
    CHECK(fin.error["code"] == s.code);
    const event* failed = d.last_event(event_type::node_failed);
    REQUIRE(failed);
    CHECK(failed->fields["attempt"] == n);
    if (s.outcome == then::fail) {
      CHECK(failed->fields["will_retry"] == false);
      CHECK(d.timers.size() == timers_before);
      CHECK(d.core->written_state(k) == node_state::failed);
      REQUIRE(d.done);
      CHECK(d.result.status == run_status::failed);
      CHECK(d.result.err->details["failed_nodes"] == json::array({"a"}));
      CHECK(d.core->attempts_of(k) == n);
      CHECK(i + 1 == steps.size()); // the table ends where the run does
      return;
    }
    const bool free = s.outcome == then::free_redispatch;
    const std::int64_t delay = free ? 0 : 100;
    CHECK(failed->fields["will_retry"] == true);
    const event* retrying = d.last_event(event_type::node_retrying);
    REQUIRE(retrying);
    CHECK(retrying->fields["attempt"] == n);
    CHECK(retrying->fields["next_attempt"] == n + 1);
    CHECK(retrying->fields["redispatch"] == free);
    CHECK(retrying->fields["delay_ms"] == delay);
    CHECK(retrying->fields["retry_at_ms"] == at + delay);
    json meta{{"retry_at_ms", at + delay}};
    if (free) meta["redispatch"] = true;
    CHECK(fin.meta == meta);
    REQUIRE(d.timers.size() == timers_before + 1);
    CHECK(d.timers.back().key == k);
    CHECK(d.timers.back().delay_ms == delay);
    CHECK(d.core->written_state(k) == node_state::pending);
    CHECK(d.running.empty()); // waits for its timer, even one of 0 ms
    d.clock += delay;
    d.core->on_retry_due(k);
    d.collect();
    d.settle();
  }
}

} // namespace

TEST_CASE("run core: WORKER_LOST runs the attempt again at once, 3 in a row, retries untouched") {
  const char* L = errc::worker_lost;
  const char* F = errc::task_failed;
  const auto free = then::free_redispatch;
  const auto retry = then::retry;
  const auto fail_ = then::fail;
  struct row {
    const char* name;
    std::int64_t retries;
    std::vector<lost_step> steps;
  };
  const std::vector<row> rows = {
      {"retries 0: three free, the 4th fails the node",
       0,
       {{L, free}, {L, free}, {L, free}, {L, fail_}}},
      {"retries 1: three free, the 4th is the retry, which has three free of its own",
       1,
       {{L, free}, {L, free}, {L, free}, {L, retry}, {L, free}, {L, free}, {L, free}, {L, fail_}}},
      {"retries 1: a failure of the task ends the streak; the next WORKER_LOSTs are free again",
       1,
       {{L, free}, {L, free}, {L, free}, {F, retry}, {L, free}, {L, free}, {L, free}, {L, fail_}}},
      {"retries 1: the retry first, then three free",
       1,
       {{F, retry}, {L, free}, {L, free}, {L, free}, {L, fail_}}},
      {"retries 2: free attempts between failures do not use the budget",
       2,
       {{L, free}, {F, retry}, {L, free}, {L, free}, {L, free}, {F, retry}, {F, fail_}}},
      {"retries 0: a failure that is not retryable after a free one fails the node",
       0,
       {{L, free}, {errc::invalid_output, fail_}}},
      {"retries 0: without WORKER_LOST nothing is free", 0, {{F, fail_}}},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      driver d(static_wf(sequence(
          {compute_task("a", noop).retries(r.retries).retry(retry_policy{100, 1.0, 100, 0.0})})));
      d.settle();
      play_lost(d, r.steps);
      CHECK(d.done);
    }
  }
}

TEST_CASE("run core: an attempt run again after WORKER_LOST can still finish the node") {
  driver d(static_wf(sequence({compute_task("a", noop)})));
  d.settle();
  play_lost(
      d, {{errc::worker_lost, then::free_redispatch}, {errc::worker_lost, then::free_redispatch}});
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.attempt == 3);
  d.answer("a", ok({{"x", 1}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.result.outputs.at("a") == json{{"x", 1}});
  CHECK(d.core->attempts_of({"a", 0}) == 3);
}

TEST_CASE("run core: each node has its own WORKER_LOST streak") {
  // Three free ones of a do not use up b's.
  driver d(static_wf(parallel({compute_task("a", noop), compute_task("b", noop)})));
  d.settle();
  REQUIRE(d.running.size() == 2);
  for (int i = 0; i < 3; ++i) {
    d.answer("a", fail(errc::worker_lost));
    CHECK(d.last_event(event_type::node_retrying)->fields["redispatch"] == true);
    d.core->on_retry_due({"a", 0});
    d.collect();
    d.settle();
  }
  d.answer("b", fail(errc::worker_lost));
  const event* retrying = d.last_event(event_type::node_retrying);
  REQUIRE(retrying);
  CHECK(retrying->fields["node_id"] == "b");
  CHECK(retrying->fields["redispatch"] == true);
  // a's 4th counts: with retries 0, a fails.
  d.answer("a", fail(errc::worker_lost));
  CHECK(d.core->written_state({"a", 0}) == node_state::failed);
}

TEST_CASE("run core: on_worker records the worker of a live attempt only") {
  driver d(static_wf(parallel({compute_task("a", noop), compute_task("b", noop)})));
  d.settle();
  REQUIRE(d.running.size() == 2);
  d.answer("b", ok(json::object())); // b's attempt 1 has ended
  REQUIRE_FALSE(d.done);
  struct row {
    attempt_key key;
    bool recorded;
  };
  const row rows[] = {
      {{{"a", 0}, 1}, true},                           // in flight
      {{{"a", 0}, 2}, false},                          // not this attempt
      {{{"a", 0}, 0}, false},  {{{"a", 1}, 1}, false}, // another iteration
      {{{"b", 0}, 1}, false},                          // ended
      {{{"zz", 0}, 1}, false},                         // no such node
  };
  for (const auto& r : rows) {
    CAPTURE(to_string(r.key.node), r.key.attempt);
    const auto before = d.commands<store::set_attempt_worker>().size();
    d.core->on_worker(r.key, "h:1");
    d.collect();
    d.settle();
    auto w = d.commands<store::set_attempt_worker>();
    REQUIRE(w.size() == before + (r.recorded ? 1 : 0));
    if (r.recorded) {
      CHECK(w.back()->run_id == "r");
      CHECK(w.back()->key == r.key);
      CHECK(w.back()->worker == "h:1");
    }
  }
  // Once a has ended, it is not recorded either.
  d.answer("a", ok(json::object()));
  REQUIRE(d.done);
  d.core->on_worker({{"a", 0}, 1}, "h:2");
  d.collect();
  CHECK(d.commands<store::set_attempt_worker>().size() == 1);
}

TEST_CASE("run core: on_worker_event emits WorkerJoined and WorkerLost with the worker") {
  struct row {
    bool joined;
    json details;
    const char* type;
    json fields;
  };
  const std::vector<row> rows = {
      {true, {{"slots", 4}}, event_type::worker_joined, {{"slots", 4}, {"worker", "h:1"}}},
      {false,
       {{"reason", "connection lost"}, {"in_flight", 2}},
       event_type::worker_lost,
       {{"reason", "connection lost"}, {"in_flight", 2}, {"worker", "h:1"}}},
      {true, json::object(), event_type::worker_joined, {{"worker", "h:1"}}},
      {false, nullptr, event_type::worker_lost, {{"worker", "h:1"}}},
      {true, json::array({1, 2}), event_type::worker_joined, {{"worker", "h:1"}}},
      {false, "text", event_type::worker_lost, {{"worker", "h:1"}}},
      {true, {{"worker", "other:2"}}, event_type::worker_joined, {{"worker", "h:1"}}},
  };
  driver d(static_wf(sequence({compute_task("a", noop)})));
  d.settle();
  REQUIRE(d.is_running("a"));
  for (const auto& r : rows) {
    CAPTURE(r.joined, r.details.dump());
    const auto before = d.events.size();
    d.core->on_worker_event(r.joined, "h:1", r.details);
    d.collect();
    d.settle();
    REQUIRE(d.events.size() == before + 1);
    const auto& e = d.events.back();
    CHECK(e.type == std::string{r.type});
    CHECK(e.run_id == "r");
    CHECK(e.fields == r.fields);
    CHECK_FALSE(d.done); // the run goes on
  }
  // Once the run has ended, nothing more.
  d.answer("a", ok(json::object()));
  REQUIRE(d.done);
  const auto before = d.events.size();
  d.core->on_worker_event(false, "h:1", {{"reason", "late"}});
  d.collect();
  d.settle();
  CHECK(d.events.size() == before);
  CHECK(d.core->take_effects().batches.empty());
}

TEST_CASE("run core: a resume goes on counting WORKER_LOST in a row as the live run did") {
  // The same five WORKER_LOSTs with retries 1, once in one process and once
  // with a crash and resume after the 4th (the retry the streak's end used).
  auto wf = static_wf(
      sequence({compute_task("a", noop).retries(1).retry(retry_policy{100, 1.0, 100, 0.0})}));
  const char* L = errc::worker_lost;
  driver live(wf);
  live.settle();
  play_lost(live, {{L, then::free_redispatch},
                   {L, then::free_redispatch},
                   {L, then::free_redispatch},
                   {L, then::retry}});
  REQUIRE(live.running.size() == 1);
  // What the live run wrote, as the store gives it back.
  std::vector<store::node_row> nodes(1);
  nodes[0].run_id = "r";
  nodes[0].node_id = "a";
  nodes[0].state = "pending";
  std::vector<store::attempt_row> attempts;
  for (const auto* f : live.commands<store::finish_attempt>()) {
    store::attempt_row a;
    a.run_id = "r";
    a.node_id = f->key.node.id;
    a.attempt = f->key.attempt;
    a.state = f->state;
    a.error = f->error;
    a.meta = f->meta;
    attempts.push_back(a);
  }
  REQUIRE(attempts.size() == 4);
  std::vector<store::output_row> outputs;
  auto rec = core::recover(nodes, attempts, outputs);
  CHECK(rec.state.retry_base.at({"a", 0}) == 3);
  driver resumed(wf, json::object(), rec.state);
  resumed.core->on_retry_due({"a", 0});
  resumed.collect();
  resumed.settle();
  REQUIRE(resumed.running.size() == 1);
  REQUIRE(resumed.running[0]->request.attempt == 5);
  // The 4th counted (the retry): attempt 5 has free re-dispatches of its
  // own, live and after the resume alike.
  play_lost(live, {{L, then::free_redispatch}}, 5);
  resumed.answer("a", fail(L));
  const event* again = resumed.last_event(event_type::node_retrying);
  REQUIRE(again != nullptr);
  CHECK(again->fields["attempt"] == 5);
  CHECK(again->fields["redispatch"] == true);
  CHECK(resumed.core->written_state({"a", 0}) == node_state::pending);
  CHECK_FALSE(resumed.done);
}

namespace {

// A workflow named "cw": a cached task `a` (inline compute) and `b`, which
// needs it.
std::shared_ptr<const workflow> cached_wf(node a) {
  auto wf = std::make_shared<workflow>();
  wf->name = "cw";
  wf->root = sequence({std::move(a), compute_task("b", noop).needs({"a"})});
  return wf;
}

using cache_map = std::unordered_map<std::string, json>;

std::function<void(core::run_config&)> with_cache(std::shared_ptr<cache_map> cache,
                                                  std::string run_id = "r") {
  return [cache = std::move(cache), run_id = std::move(run_id)](core::run_config& c) {
    c.cache = cache;
    c.run_id = run_id;
  };
}

/// The key attempt 1 of the task `n` of `wf` gets in a run of `input`
/// whose core has no outputs yet, built as the core builds it.
std::string key_of(const std::shared_ptr<const workflow>& wf, const node& n, const json& input) {
  core::attempt_builder b(wf, std::make_shared<const core::compute_registry>());
  std::string run_id = "some run";
  auto in_ptr = std::make_shared<const json>(input);
  std::unordered_map<std::string, json> outputs;
  std::string cwd; // run_config::cwd as the driver leaves it
  core::attempt_inputs in;
  in.run_id = &run_id;
  in.input = &in_ptr;
  in.outputs = &outputs;
  in.base_cwd = &cwd;
  in.output_at = [](std::string_view, std::int64_t) -> const json* { return nullptr; };
  return b.build({n.id, 0}, 1, n.task, in)->cache_key;
}

const event* node_event(const driver& d, const char* type, const std::string& node) {
  for (const auto& e : d.events)
    if (e.type == type && e.fields.value("node_id", "") == node) return &e;
  return nullptr;
}

} // namespace

TEST_CASE("run core: a cache hit runs nothing; the attempt is recorded finished and cached") {
  auto wf = cached_wf(compute_task("a", noop).cache());
  const std::string key = key_of(wf, wf->root.children[0], json::object());
  REQUIRE(key.size() == 64);
  auto cache = std::make_shared<cache_map>();
  (*cache)[key] = {{"x", 7}};
  (*cache)[std::string(64, '0')] = {{"x", "someone else's"}};
  driver d(wf, json::object(), {}, false, with_cache(cache));
  d.core->tick();
  d.collect();
  // One batch records the attempt started, finished and cached, with the
  // stored output; nothing is launched, and b waits for the commit.
  auto ins = d.commands<store::insert_attempt>();
  REQUIRE(ins.size() == 1);
  const store::attempt_row& row = ins[0]->row;
  CHECK(row.node_id == "a");
  CHECK(row.attempt == 1);
  CHECK(row.state == "finished");
  CHECK(row.cached);
  REQUIRE(row.output);
  CHECK(*row.output == json{{"x", 7}});
  CHECK(row.started_ms == d.clock);
  CHECK(row.finished_ms == std::optional<std::int64_t>{d.clock});
  CHECK(d.commands<store::finish_attempt>().empty());
  for (const auto* n : d.commands<store::upsert_node>())
    if (n->row.node_id == "a") CHECK(n->row.state != "in-progress");
  CHECK(d.running.empty());
  d.settle();
  // After the commit, b starts with a's cached output.
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.key.id == "b");
  CHECK(d.running[0]->request.needs == json{{"a", {{"x", 7}}}});
  CHECK(d.core->written_state({"a", 0}) == node_state::finished);
  CHECK(d.core->attempts_of({"a", 0}) == 1);
  CHECK(d.event_types("a") ==
        std::vector<std::string>{"NodePending", "NodeStarted", "CacheHit", "NodeFinished"});
  const event* hit = node_event(d, "CacheHit", "a");
  REQUIRE(hit);
  CHECK(hit->fields["key"] == key);
  CHECK(hit->fields["attempt"] == 1);
  const event* fin = node_event(d, "NodeFinished", "a");
  REQUIRE(fin);
  CHECK(fin->fields["output"] == json{{"x", 7}});
  CHECK(fin->fields["cached"] == true);
  CHECK(fin->fields["duration_ms"] == 0);
  CHECK(fin->fields["attempt"] == 1);
  d.answer("b", ok({{"y", 1}}));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
  CHECK(d.result.outputs.at("a") == json{{"x", 7}});
  // A hit stores nothing, and b is not cached.
  CHECK(d.commands<store::put_cache>().empty());
  CHECK(cache->size() == 2);
  CHECK(d.commands<store::insert_attempt>().size() == 2);
  CHECK(node_event(d, "CacheHit", "b") == nullptr);
}

TEST_CASE("run core: a cache miss runs the task; its output is stored under its key") {
  auto wf = cached_wf(compute_task("a", noop).cache({"", "v1"}));
  const json input = {{"q", 1}};
  auto cache = std::make_shared<cache_map>();
  driver d(wf, input, {}, false, with_cache(cache));
  d.settle();
  REQUIRE(d.running.size() == 1);
  const std::string key = d.running[0]->cache_key;
  CHECK(d.running[0]->request.key.id == "a");
  CHECK(key.size() == 64);
  CHECK(key == key_of(wf, wf->root.children[0], input));
  CHECK(d.event_types("a") == std::vector<std::string>{"NodePending", "NodeStarted"});
  d.clock += 250;
  d.answer("a", ok({{"x", 1}}));
  auto puts = d.commands<store::put_cache>();
  REQUIRE(puts.size() == 1);
  CHECK(puts[0]->key == key);
  CHECK(puts[0]->workflow == "cw");
  CHECK(puts[0]->node_id == "a");
  CHECK(puts[0]->output == json{{"x", 1}});
  CHECK(puts[0]->run_id == "r");
  CHECK(puts[0]->at_ms == d.clock);
  CHECK(*cache == cache_map{{key, {{"x", 1}}}});
  // In the batch that records the attempt finished, after it.
  std::optional<std::size_t> fin_at, put_at;
  for (std::size_t i = 0; i < d.written.size(); ++i) {
    if (const auto* f = std::get_if<store::finish_attempt>(&d.written[i]))
      if (f->key.node.id == "a") fin_at = i;
    if (std::holds_alternative<store::put_cache>(d.written[i])) put_at = i;
  }
  REQUIRE(fin_at);
  REQUIRE(put_at);
  CHECK(*fin_at < *put_at);
  CHECK(d.written_in[*fin_at] == d.written_in[*put_at]);
  const event* fin = node_event(d, "NodeFinished", "a");
  REQUIRE(fin);
  CHECK_FALSE(fin->fields.contains("cached"));
  CHECK(node_event(d, "CacheHit", "a") == nullptr);
  for (const auto* a : d.commands<store::insert_attempt>())
    CHECK_FALSE(a->row.cached);
  REQUIRE(d.is_running("b"));
  CHECK(d.running[0]->cache_key.empty()); // b has no cache
  d.answer("b", ok(json::object()));
  REQUIRE(d.done);
  CHECK(d.commands<store::put_cache>().size() == 1);

  SECTION("the next run with that cache hits, whatever its id") {
    driver d2(wf, input, {}, false, with_cache(cache, "r2"));
    d2.settle();
    REQUIRE(d2.running.size() == 1);
    CHECK(d2.running[0]->request.key.id == "b");
    CHECK(d2.running[0]->request.needs == json{{"a", {{"x", 1}}}});
    const event* hit = node_event(d2, "CacheHit", "a");
    REQUIRE(hit);
    CHECK(hit->fields["key"] == key);
    CHECK(d2.commands<store::put_cache>().empty());
  }
  SECTION("a run of another input misses") {
    driver d3(wf, json{{"q", 2}}, {}, false, with_cache(cache, "r3"));
    d3.settle();
    REQUIRE(d3.running.size() == 1);
    CHECK(d3.running[0]->request.key.id == "a");
    CHECK(d3.running[0]->cache_key != key);
    CHECK(node_event(d3, "CacheHit", "a") == nullptr);
  }
  SECTION("a run of another version misses") {
    auto wf2 = cached_wf(compute_task("a", noop).cache({"", "v2"}));
    driver d4(wf2, input, {}, false, with_cache(cache, "r4"));
    d4.settle();
    REQUIRE(d4.running.size() == 1);
    CHECK(d4.running[0]->request.key.id == "a");
  }
}

TEST_CASE("run core: a failed attempt of a cached task stores nothing; its successful retry does") {
  auto wf = cached_wf(
      compute_task("a", noop).retries(1).retry(retry_policy{100, 1.0, 1000, 0.0}).cache());
  auto cache = std::make_shared<cache_map>();
  driver d(wf, json::object(), {}, false, with_cache(cache));
  d.settle();
  REQUIRE(d.running.size() == 1);
  const std::string key = d.running[0]->cache_key;
  REQUIRE_FALSE(key.empty());
  d.answer("a", fail(errc::task_failed));
  CHECK(d.commands<store::put_cache>().empty());
  CHECK(cache->empty());
  REQUIRE(d.timers.size() == 1);
  d.clock += 100;
  d.core->on_retry_due({"a", 0});
  d.collect();
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.attempt == 2);
  CHECK(d.running[0]->cache_key == key); // the attempt number is not in the key
  d.answer("a", ok({{"second", true}}));
  auto puts = d.commands<store::put_cache>();
  REQUIRE(puts.size() == 1);
  CHECK(puts[0]->key == key);
  CHECK(puts[0]->output == json{{"second", true}});
  CHECK(cache->at(key) == json{{"second", true}});
}

TEST_CASE("run core: what is not cached stores nothing") {
  SECTION("a cached task's failure that ends the run") {
    auto cache = std::make_shared<cache_map>();
    driver d(cached_wf(compute_task("a", noop).cache()), json::object(), {}, false,
             with_cache(cache));
    d.settle();
    d.answer("a", fail(errc::task_failed));
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::failed);
    CHECK(d.commands<store::put_cache>().empty());
    CHECK(cache->empty());
  }
  SECTION("a task without cache, in a run with a cache") {
    auto cache = std::make_shared<cache_map>();
    auto wf = cached_wf(compute_task("a", noop));
    driver d(wf, json::object(), {}, false, with_cache(cache));
    d.settle();
    REQUIRE(d.running.size() == 1);
    CHECK(d.running[0]->cache_key.empty());
    d.answer("a", ok({{"x", 1}}));
    d.answer("b", ok({{"y", 1}}));
    REQUIRE(d.done);
    CHECK(d.commands<store::put_cache>().empty());
    CHECK(cache->empty());
  }
  SECTION("a cached task in a run without a cache (null): it runs") {
    auto wf = cached_wf(compute_task("a", noop).cache());
    driver d(wf);
    d.settle();
    REQUIRE(d.running.size() == 1);
    CHECK(d.running[0]->request.key.id == "a");
    d.answer("a", ok({{"x", 1}}));
    d.answer("b", ok({{"y", 1}}));
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::finished);
    CHECK(d.commands<store::put_cache>().empty());
  }
  SECTION("a cached task whose attempt is cancelled by an unmount") {
    // Like the toggling workflow: a cached b is dropped while it runs and
    // returns an output anyway; it is recorded cancelled, not cached.
    auto with_b = std::make_shared<bool>(true);
    auto wf = std::make_shared<workflow>();
    wf->name = "cw";
    wf->build = [with_b](const render_context&) {
      std::vector<node> kids{compute_task("a", noop)};
      if (*with_b) kids.push_back(compute_task("b", noop).cache());
      return parallel(std::move(kids));
    };
    auto cache = std::make_shared<cache_map>();
    driver d(wf, json::object(), {}, false, with_cache(cache));
    d.settle();
    REQUIRE(d.is_running("b"));
    *with_b = false;
    d.answer("a", ok({{"a", 1}}));
    REQUIRE(d.stops.size() == 1);
    d.answer("b", ok({{"b", 1}}));
    REQUIRE(d.done);
    CHECK(d.core->written_state({"b", 0}) == node_state::cancelled);
    CHECK(d.commands<store::put_cache>().empty());
    CHECK(cache->empty());
  }
}

// The run-level face of the key leaving out the iteration (see
// attempt_builder_test.cpp): iteration 1 of a cached loop body reuses
// iteration 0's output instead of running.
TEST_CASE("run core: each iteration of a cached loop body runs") {
  loop_options o;
  o.max_iterations = 4;
  auto wf = std::make_shared<workflow>();
  wf->name = "cw";
  wf->root = sequence(
      {loop("count", compute_task("step", noop).cache(), {{"output", "step.n"}, {"gte", 2}}, o)});
  auto cache = std::make_shared<cache_map>();
  driver d(wf, json::object(), {}, false, with_cache(cache));
  d.settle();
  for (int i = 0; i < 3 && !d.done; ++i) {
    CAPTURE(i);
    REQUIRE(d.running.size() == 1);
    CHECK(d.running.front()->request.key == node_key{"step", i});
    answer_step(d);
  }
  REQUIRE(d.done);
  CHECK(node_event(d, "CacheHit", "step") == nullptr);
  CHECK(d.result.outputs.at("step") == json{{"n", 2}});
}

// -- agent tasks: auth failures move the chain on, INVALID_OUTPUT retried,
// -- streamed output, the outcome's meta ---------------------------------------

namespace {

agent_spec agent_entry(std::string id) {
  return agent_spec{std::move(id), {"claude", "-p"}, "", {}};
}

task_outcome auth_failed(const std::string& agent) {
  task_outcome oc = fail(errc::agent_auth_failed, "agent failed to authenticate");
  oc.err->details = {{"agent", agent}, {"matched", "401"}, {"exit_code", 1}};
  oc.meta = {{"agent", {{"id", agent}, {"follow_ups", 0}}}};
  return oc;
}

std::size_t count_events(const driver& d, const char* type) {
  return static_cast<std::size_t>(std::count_if(d.events.begin(), d.events.end(),
                                                [&](const event& e) { return e.type == type; }));
}

} // namespace

TEST_CASE("run core: an agent that fails to authenticate is left at once for the next of the "
          "chain, without using a retry") {
  // retries 0, and a backoff that would show were it used.
  auto wf = static_wf(sequence({agent_task("a", {agent_entry("a1"), agent_entry("a2")}, "p")
                                    .retry(retry_policy{5000, 1.0, 5000, 0.0})}));
  driver d(wf);
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.kind == task_kind::agent);
  CHECK(d.running[0]->request.agent.id == "a1");
  CHECK(d.running[0]->request.attempt == 1);
  // The attempt's row and NodeStarted name the agent asked.
  auto ins = d.commands<store::insert_attempt>();
  REQUIRE(ins.size() == 1);
  CHECK(ins[0]->row.meta == json{{"agent", {{"id", "a1"}}}});
  const event* started = d.last_event(event_type::node_started);
  REQUIRE(started);
  CHECK(started->fields["agent"] == "a1");

  const std::int64_t at = d.clock;
  d.answer("a", auth_failed("a1"));
  auto fins = d.commands<store::finish_attempt>();
  REQUIRE(fins.size() == 1);
  CHECK(fins[0]->state == "failed");
  CHECK(fins[0]->error["code"] == errc::agent_auth_failed);
  // The outcome's meta, merged with what the retry adds.
  CHECK(fins[0]->meta == json{{"agent", {{"id", "a1"}, {"follow_ups", 0}}},
                              {"retry_at_ms", at},
                              {"next_agent", true}});
  const event* failed = d.last_event(event_type::node_failed);
  REQUIRE(failed);
  CHECK(failed->fields["will_retry"] == true);
  const event* retrying = d.last_event(event_type::node_retrying);
  REQUIRE(retrying);
  CHECK(retrying->fields["next_agent"] == true);
  CHECK(retrying->fields["redispatch"] == false);
  CHECK(retrying->fields["delay_ms"] == 0);
  CHECK(retrying->fields["retry_at_ms"] == at);
  CHECK(retrying->fields["next_attempt"] == 2);
  REQUIRE(d.timers.size() == 1);
  CHECK(d.timers[0].delay_ms == 0); // no backoff
  CHECK(d.core->written_state({"a", 0}) == node_state::pending);
  d.core->on_retry_due({"a", 0});
  d.collect();
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.attempt == 2);
  CHECK(d.running[0]->request.agent.id == "a2");
  CHECK(d.commands<store::insert_attempt>().back()->row.meta == json{{"agent", {{"id", "a2"}}}});
  CHECK(d.last_event(event_type::node_started)->fields["agent"] == "a2");

  SECTION("the second answers: the node finishes") {
    d.answer("a", ok({{"done", true}}));
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::finished);
    CHECK(d.result.outputs.at("a") == json{{"done", true}});
  }
  SECTION("the second fails to authenticate too: no agent is left, the node fails") {
    d.answer("a", auth_failed("a2"));
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::failed);
    CHECK(d.result.err->details["failed_nodes"] == json::array({"a"}));
    CHECK(d.timers.size() == 1); // no retry
    CHECK(d.core->attempts_of({"a", 0}) == 2);
    CHECK(d.last_event(event_type::node_failed)->fields["will_retry"] == false);
    auto f = d.commands<store::finish_attempt>();
    REQUIRE(f.size() == 2);
    CHECK(f[1]->error["code"] == errc::agent_auth_failed);
    CHECK(f[1]->meta == json{{"agent", {{"id", "a2"}, {"follow_ups", 0}}}});
  }
  SECTION("the second fails otherwise: its retries (0) are all it has") {
    d.answer("a", fail(errc::task_failed));
    REQUIRE(d.done);
    CHECK(d.result.status == run_status::failed);
    CHECK(d.core->attempts_of({"a", 0}) == 2);
  }
}

TEST_CASE("run core: an agent disabled by one node is not asked by another") {
  // x's only agent fails to authenticate: x fails (continue_on_fail), and
  // y, whose chain starts with the same agent, asks its second at once.
  auto wf =
      static_wf(sequence({agent_task("x", {agent_entry("shared")}, "p").continue_on_fail(),
                          agent_task("y", {agent_entry("shared"), agent_entry("other")}, "q")}));
  driver d(wf);
  d.settle();
  d.answer("x", auth_failed("shared"));
  CHECK(d.core->written_state({"x", 0}) == node_state::failed);
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.key.id == "y");
  CHECK(d.running[0]->request.attempt == 1);
  CHECK(d.running[0]->request.agent.id == "other");
  d.answer("y", ok(json::object()));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
}

TEST_CASE("run core: an agent task whose every agent is disabled fails before running") {
  auto wf = static_wf(sequence({agent_task("x", {agent_entry("shared")}, "p").continue_on_fail(),
                                agent_task("y", {agent_entry("shared")}, "q").retries(3)}));
  driver d(wf);
  d.settle();
  d.answer("x", auth_failed("shared"));
  REQUIRE(d.done);
  CHECK(d.running.empty()); // y never launched
  CHECK(d.timers.empty());  // nor retried
  CHECK(d.core->written_state({"y", 0}) == node_state::failed);
  auto fins = d.commands<store::finish_attempt>();
  REQUIRE(fins.size() == 2);
  CHECK(fins[1]->key.node == node_key{"y", 0});
  CHECK(fins[1]->error["code"] == errc::agent_auth_failed);
  CHECK(fins[1]->error["details"]["agents"] == json::array({"shared"}));
  CHECK(d.result.status == run_status::failed);
}

TEST_CASE("run core: INVALID_OUTPUT is retried for agent tasks only") {
  struct row {
    const char* name;
    node task;
    bool retried;
  };
  const retry_policy quick{100, 1.0, 100, 0.0};
  const std::vector<row> rows = {
      {"an agent task, retries 1",
       agent_task("a", {agent_entry("a1"), agent_entry("a2")}, "p").retries(1).retry(quick), true},
      {"an agent task, retries 0", agent_task("a", {agent_entry("a1")}, "p").retry(quick), false},
      {"a command task, retries 1", command_task("a", {"make"}).retries(1).retry(quick), false},
      {"a compute task, retries 1", compute_task("a", noop).retries(1).retry(quick), false},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      driver d(static_wf(sequence({r.task})));
      d.settle();
      REQUIRE(d.running.size() == 1);
      d.answer("a", fail(errc::invalid_output, "no usable answer"));
      if (!r.retried) {
        REQUIRE(d.done);
        CHECK(d.timers.empty());
        CHECK(d.result.status == run_status::failed);
        CHECK(d.last_event(event_type::node_failed)->fields["will_retry"] == false);
      } else {
        CHECK_FALSE(d.done);
        REQUIRE(d.timers.size() == 1);
        CHECK(d.timers[0].delay_ms == 100); // a retry: with its backoff
        const event* retrying = d.last_event(event_type::node_retrying);
        REQUIRE(retrying);
        CHECK(retrying->fields["next_agent"] == false);
        CHECK_FALSE(d.commands<store::finish_attempt>()[0]->meta.contains("next_agent"));
        d.clock += 100;
        d.core->on_retry_due({"a", 0});
        d.collect();
        d.settle();
        REQUIRE(d.running.size() == 1);
        CHECK(d.running[0]->request.attempt == 2);
        CHECK(d.running[0]->request.agent.id == "a2"); // attempt 2: the chain's second
        d.answer("a", fail(errc::invalid_output));
        REQUIRE(d.done); // the retry was the only one
        CHECK(d.result.status == run_status::failed);
        CHECK(d.timers.size() == 1);
      }
    }
  }
}

TEST_CASE("run core: on_output turns a live attempt's lines into NodeOutput and AgentRetry") {
  driver d(static_wf(sequence({command_task("a", {"make"}), command_task("b", {"make"})})));
  d.settle();
  REQUIRE(d.running.size() == 1);
  const attempt_key live{{"a", 0}, 1};
  auto emit = [&](const attempt_key& a, const std::string& stream, const std::string& text) {
    d.core->on_output(a, stream, text);
    d.collect();
    d.settle();
  };
  emit(live, "stdout", "line\n");
  emit(live, "stderr", "warning: x\n");
  REQUIRE(count_events(d, event_type::node_output) == 2);
  const event* out = node_event(d, event_type::node_output, "a");
  REQUIRE(out);
  CHECK(out->fields["stream"] == "stdout");
  CHECK(out->fields["text"] == "line\n");
  CHECK(out->fields["attempt"] == 1);
  CHECK(out->fields["iteration"] == 0);
  const event* err = d.last_event(event_type::node_output);
  CHECK(err->fields["stream"] == "stderr");
  CHECK(err->fields["text"] == "warning: x\n");

  // An agent asked again: the fields given, and whose attempt it is.
  emit(live, "agent",
       R"({"follow_up":1,"agent":"a1","problems":[{"path":"$","message":"m"}],)"
       R"("answer_bytes":12,"node_id":"not me","attempt":99})");
  REQUIRE(count_events(d, event_type::agent_retry) == 1);
  const event* retry = d.last_event(event_type::agent_retry);
  CHECK(retry->fields["follow_up"] == 1);
  CHECK(retry->fields["agent"] == "a1");
  CHECK(retry->fields["answer_bytes"] == 12);
  CHECK(retry->fields["problems"] == json::array({{{"path", "$"}, {"message", "m"}}}));
  CHECK(retry->fields["node_id"] == "a");
  CHECK(retry->fields["iteration"] == 0);
  CHECK(retry->fields["attempt"] == 1);

  // What is not an object of fields is dropped.
  for (const char* garbage : {"", "not json", "{\"follow_up\":", "[1,2]", "\"text\"", "42", "null",
                              "{\"a\":1} trailing"}) {
    CAPTURE(garbage);
    emit(live, "agent", garbage);
    CHECK(count_events(d, event_type::agent_retry) == 1);
  }
  // Output of attempts that are not live is dropped: another attempt
  // number, a node not running, a node that has finished.
  emit({{"a", 0}, 2}, "stdout", "stale\n");
  emit({{"a", 1}, 1}, "stdout", "stale\n");
  emit({{"b", 0}, 1}, "stdout", "early\n");
  emit({{"b", 0}, 1}, "agent", R"({"follow_up":1})");
  d.answer("a", ok({{"x", 1}}));
  REQUIRE(d.is_running("b"));
  emit(live, "stdout", "after the end\n");
  emit(live, "agent", R"({"follow_up":2})");
  CHECK(count_events(d, event_type::node_output) == 2);
  CHECK(count_events(d, event_type::agent_retry) == 1);
  // b's attempt 1 is live now.
  emit({{"b", 0}, 1}, "stdout", "b's\n");
  CHECK(count_events(d, event_type::node_output) == 3);
  CHECK(d.last_event(event_type::node_output)->fields["node_id"] == "b");
  d.answer("b", ok(json::object()));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::finished);
}

TEST_CASE("run core: NodeFinished carries the output; no NodeOutput event of it") {
  driver d(static_wf(sequence({command_task("a", {"make"}), value_task("v", {{"k", 2}})})));
  d.settle();
  d.clock += 40;
  d.answer("a", ok({{"x", 1}, {"s", "text"}}));
  REQUIRE(d.done);
  const event* fin = node_event(d, event_type::node_finished, "a");
  REQUIRE(fin);
  CHECK(fin->fields["output"] == json{{"x", 1}, {"s", "text"}});
  CHECK(fin->fields["attempt"] == 1);
  CHECK(fin->fields["duration_ms"] == 40);
  CHECK(d.event_types("a") ==
        std::vector<std::string>{"NodePending", "NodeStarted", "NodeFinished"});
  const event* vfin = node_event(d, event_type::node_finished, "v");
  REQUIRE(vfin);
  CHECK(vfin->fields["output"] == json{{"k", 2}});
  CHECK(count_events(d, event_type::node_output) == 0);
}

TEST_CASE("run core: an outcome's meta goes into its finish_attempt command") {
  const json agent_meta = {{"agent", {{"id", "a1"}, {"follow_ups", 2}, {"answer_bytes", 99}}},
                           {"worktree", {{"path", "/w"}}}};
  struct row {
    const char* name;
    task_outcome oc;
    std::int64_t retries;
    json meta; // of the finish command; null: none (kept as it is)
  };
  auto with_meta = [](task_outcome oc, json meta) {
    oc.meta = std::move(meta);
    return oc;
  };
  const std::vector<row> rows = {
      {"success", with_meta(ok({{"x", 1}}), agent_meta), 0, agent_meta},
      {"success without meta", ok({{"x", 1}}), 0, nullptr},
      {"success with empty meta", with_meta(ok({{"x", 1}}), json::object()), 0, nullptr},
      {"a failure for good", with_meta(fail(errc::task_failed), agent_meta), 0, agent_meta},
      {"a failure retried: retry_at_ms added", with_meta(fail(errc::task_failed), agent_meta), 1,
       [&] {
         json m = agent_meta;
         m["retry_at_ms"] = 1'000'000 + 100;
         return m;
       }()},
      {"a failure retried without meta",
       fail(errc::task_failed),
       1,
       {{"retry_at_ms", 1'000'000 + 100}}},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      driver d(static_wf(sequence({agent_task("a", {agent_entry("a1")}, "p")
                                       .retries(r.retries)
                                       .retry(retry_policy{100, 1.0, 100, 0.0})})));
      d.settle();
      REQUIRE(d.clock == 1'000'000);
      d.answer("a", r.oc);
      auto fins = d.commands<store::finish_attempt>();
      REQUIRE(fins.size() == 1);
      CHECK(fins[0]->meta == r.meta);
      if (r.oc.output) {
        REQUIRE(fins[0]->output);
        CHECK(*fins[0]->output == *r.oc.output);
      }
    }
  }
}

TEST_CASE("run core: a resume keeps the agents recovery found disabled") {
  auto wf = static_wf(sequence({agent_task("a", {agent_entry("a1"), agent_entry("a2")}, "p")}));
  core::resume_state r;
  r.states[{"a", 0}] = node_state::pending;
  r.attempts[{"a", 0}] = 1; // a1 failed to authenticate; a2 never started
  r.retry_base[{"a", 0}] = 1;
  r.disabled_agents = {"a1"};
  driver d(wf, json::object(), r);
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.attempt == 2);
  CHECK(d.running[0]->request.agent.id == "a2");
  // Were it a2's turn to fail to authenticate, no agent is left.
  d.answer("a", auth_failed("a2"));
  REQUIRE(d.done);
  CHECK(d.result.status == run_status::failed);
}

TEST_CASE("run core: a free re-dispatch asks the same agent again; a counted retry the next") {
  auto wf = static_wf(sequence({agent_task("a", {agent_entry("a1"), agent_entry("a2")}, "p")
                                    .retries(1)
                                    .retry(retry_policy{10, 1.0, 10, 0.0})}));
  driver d(wf);
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.agent.id == "a1");
  // The worker under attempt 1 is lost: attempt 2 is a1's turn still.
  d.answer("a", fail(errc::worker_lost));
  d.core->on_retry_due({"a", 0});
  d.collect();
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.attempt == 2);
  CHECK(d.running[0]->request.agent.id == "a1");
  // A failure that uses the retry: attempt 3 asks the next agent.
  d.answer("a", fail(errc::invalid_output));
  d.core->on_retry_due({"a", 0});
  d.collect();
  d.settle();
  REQUIRE(d.running.size() == 1);
  CHECK(d.running[0]->request.attempt == 3);
  CHECK(d.running[0]->request.agent.id == "a2");
}
