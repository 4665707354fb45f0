// Resume through the engine API: what carries over, what runs again, what is
// refused. (Crashes of whole processes are tested in tests/system.)
#include <catch2/catch.hpp>

#include "store/reader.hpp"
#include "support/engine_config.hpp"
#include "support/event_recorder.hpp"
#include "support/eventually.hpp"
#include "support/frame_replay.hpp"
#include "support/temp_dir.hpp"

#include <smithers/engine.hpp>

#include <atomic>
#include <mutex>
#include <thread>

using namespace smithers;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

using test_support::config_in;
using test_support::eventually;

/// Counts calls per node id.
struct counter {
  std::mutex mtx;
  std::map<std::string, int> calls;

  compute_fn task(json out, std::chrono::milliseconds hold = 0ms) {
    return [this, out, hold](task_context& ctx) {
      {
        std::lock_guard<std::mutex> lk(mtx);
        ++calls[ctx.node_id()];
      }
      auto deadline = clock_type::now() + hold;
      while (clock_type::now() < deadline && !ctx.cancelled())
        std::this_thread::sleep_for(2ms);
      if (ctx.cancelled()) throw std::runtime_error("cancelled");
      return out;
    };
  }
  int of(const std::string& id) {
    std::lock_guard<std::mutex> lk(mtx);
    return calls[id];
  }
};

std::string refusal(const std::function<void()>& f) {
  try {
    f();
  } catch (const smithers_error& e) {
    return e.code();
  }
  return "accepted";
}

} // namespace

TEST_CASE("an interrupted run resumes: finished nodes never run again, the interrupted one does") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  counter c;
  std::atomic<bool> slow{true};
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({
      compute_task("a", c.task({{"a", 1}})),
      compute_task("b",
                   [&](task_context& ctx) {
                     json out = c.task({{"b", 2}})(ctx);
                     return out;
                   }),
      compute_task("long",
                   [&](task_context& ctx) -> json {
                     c.task(json::object())(ctx);
                     while (slow && !ctx.cancelled())
                       std::this_thread::sleep_for(2ms);
                     if (ctx.cancelled()) throw std::runtime_error("stopped");
                     return {{"long", true}};
                   }),
      compute_task("last", c.task({{"last", 3}})).needs({"a"}),
  });
  test_support::event_recorder recorder;
  run_options opts;
  opts.on_event = recorder.handler();
  auto h = eng.start(wf, opts);
  REQUIRE(eventually([&] { return c.of("long") == 1; }, 10s, 5ms));
  eng.interrupt("test interrupt");
  REQUIRE(h.wait_for(10s));
  CHECK(h.wait().status == run_status::running);

  slow = false;
  resume_options ro;
  ro.on_event = opts.on_event;
  auto r = eng.resume(wf, h.run_id(), ro);
  auto res = r.wait();
  REQUIRE(res.status == run_status::finished);
  CHECK(c.of("a") == 1);
  CHECK(c.of("b") == 1);
  CHECK(c.of("long") == 2);
  CHECK(c.of("last") == 1);
  CHECK(res.outputs.at("a") == json{{"a", 1}});
  CHECK(res.outputs.at("last") == json{{"last", 3}});
  {
    auto types = recorder.types();
    CHECK(std::count(types.begin(), types.end(), "RunResumed") == 1);
  }
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  auto attempts = rd.attempts(h.run_id());
  std::size_t long_attempts = 0;
  for (const auto& a : attempts) {
    CHECK(a.state != "in-progress");
    if (a.node_id == "long") ++long_attempts;
  }
  CHECK(long_attempts == 2);
  // Events stay one sequence across the resume.
  auto events = rd.events(h.run_id());
  for (std::size_t i = 0; i < events.size(); ++i)
    CHECK(events[i].seq == static_cast<std::int64_t>(i));
  // The resumed driver starts with a keyframe; the last frame shows the end.
  auto frames = rd.frame_summaries(h.run_id());
  REQUIRE(frames.size() >= 4);
  std::size_t keyframes = 0;
  for (const auto& f : frames)
    keyframes += f.keyframe ? 1 : 0;
  CHECK(keyframes >= 2);
  auto last = rd.snapshot_at(h.run_id(), frames.back().frame_no);
  for (const auto& [id, state] : last["states"].items())
    CHECK(state == "finished");
}

TEST_CASE("a retry backoff carries over a resume: the next attempt waits for retry_at") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<int> calls{0};
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({compute_task("flaky",
                                    [&](task_context& ctx) -> json {
                                      ++calls;
                                      if (ctx.attempt() == 1)
                                        throw std::runtime_error("first fails");
                                      return {{"attempt", ctx.attempt()}};
                                    })
                           .retries(1)
                           .retry({800, 1.0, 800, 0.0})});
  auto h = eng.start(wf, {});
  REQUIRE(eventually([&] { return calls == 1; }, 10s, 5ms));
  std::this_thread::sleep_for(100ms); // the failure is committed, the backoff runs
  eng.interrupt("restart");
  REQUIRE(h.wait_for(10s));
  CHECK(calls == 1);
  auto res = eng.resume(wf, h.run_id()).wait();
  REQUIRE(res.status == run_status::finished);
  CHECK(calls == 2);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  auto attempts = store::reader{db}.attempts(h.run_id());
  REQUIRE(attempts.size() == 2);
  std::int64_t retry_at = attempts[0].meta.at("retry_at_ms").get<std::int64_t>();
  CHECK(attempts[1].started_ms >= retry_at);
  CHECK(attempts[1].started_ms - retry_at < 1500); // not restarted from the resume
}

TEST_CASE("resume refuses unknown, ended, driven and changed runs") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  counter c;
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({compute_task("a", c.task(json::object()))});
  auto finished = eng.run(*wf, {});
  REQUIRE(finished.status == run_status::finished);

  CHECK(refusal([&] { eng.resume(wf, "no-such-run"); }) == "RUN_NOT_FOUND");
  CHECK(refusal([&] { eng.resume(wf, finished.run_id); }) == "RUN_NOT_RESUMABLE");
  CHECK(refusal([&] { eng.resume(wf, "bad id"); }) == "INVALID_RUN_ID");

  auto slow = std::make_shared<workflow>();
  slow->root = sequence({compute_task("hold", c.task(json::object(), 20s))});
  auto h = eng.start(slow, {});
  REQUIRE(eventually([&] { return c.of("hold") == 1; }, 10s, 5ms));
  CHECK(refusal([&] { eng.resume(slow, h.run_id()); }) == "RUN_OWNER_ALIVE");
  eng.interrupt("stop");
  REQUIRE(h.wait_for(10s));

  auto changed = std::make_shared<workflow>();
  changed->root = sequence({compute_task("other", c.task(json::object()))});
  CHECK(refusal([&] { eng.resume(changed, h.run_id()); }) == "RESUME_METADATA_MISMATCH");
  // Refusals wrote nothing: the run is still resumable with its workflow.
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  auto events_before = store::reader{db}.events(h.run_id()).size();
  CHECK(refusal([&] { eng.resume(wf, "no-such-run"); }) == "RUN_NOT_FOUND");
  CHECK(store::reader{db}.events(h.run_id()).size() == events_before);

  resume_options force;
  force.force = true;
  auto res = eng.resume(changed, h.run_id(), force).wait();
  CHECK(res.status == run_status::finished);
  CHECK(res.outputs.count("other") == 1);
}

TEST_CASE("an in-memory run can be interrupted and resumed by the same engine") {
  engine_config cfg;
  cfg.db_path = ":memory:";
  engine eng{cfg};
  counter c;
  auto wf = std::make_shared<workflow>();
  wf->root = sequence(
      {compute_task("a", c.task({{"x", 1}})), compute_task("b", c.task({{"y", 2}}, 300ms))});
  auto h = eng.start(wf, {});
  REQUIRE(eventually([&] { return c.of("b") == 1; }, 10s, 5ms));
  eng.interrupt("pause");
  REQUIRE(h.wait_for(10s));
  auto res = eng.resume(wf, h.run_id()).wait();
  REQUIRE(res.status == run_status::finished);
  CHECK(c.of("a") == 1);
  CHECK(c.of("b") == 2);
  CHECK(res.outputs.size() == 2);
}

TEST_CASE("fork through the engine: a child from a frame, with a reset node, runs to the end") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  counter c;
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({compute_task("a", c.task({{"a", 1}})),
                       compute_task("b", c.task({{"b", 2}})).needs({"a"}),
                       compute_task("c", c.task({{"c", 3}}))});
  auto parent = eng.run(*wf, {});
  REQUIRE(parent.status == run_status::finished);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  auto frames = store::reader{db}.frame_summaries(parent.run_id);
  auto child = eng.fork(parent.run_id, frames.back().frame_no, {"a"}, "the-child");
  CHECK(child == "the-child");
  // The kept node's output comes with a finished attempt saying where from.
  auto carried = store::reader{db}.attempts(child);
  REQUIRE(carried.size() == 1);
  CHECK(carried[0].node_id == "c");
  CHECK(carried[0].state == "finished");
  CHECK(carried[0].cached);
  CHECK(carried[0].output == json{{"c", 3}});
  CHECK(carried[0].meta["forked_from"]["run_id"] == parent.run_id);
  auto res = eng.resume(wf, child).wait();
  REQUIRE(res.status == run_status::finished);
  CHECK(c.of("a") == 2); // reset
  CHECK(c.of("b") == 2); // needs a
  CHECK(c.of("c") == 1); // kept
  CHECK(res.outputs.size() == 3);
  CHECK(store::reader{db}.run("the-child")->parent_run_id == parent.run_id);
  CHECK(refusal([&] { eng.fork(parent.run_id, 10000); }) == "INVALID_ARGUMENT");
  CHECK(refusal([&] { eng.fork("nope", 0); }) == "RUN_NOT_FOUND");
  CHECK(refusal([&] { eng.fork(parent.run_id, 0, {}, "the-child"); }) == "INVALID_RUN_ID");
}

namespace {

// n value tasks t0..t{n-1} in a parallel group of width 16.
workflow value_fanout(int n) {
  std::vector<node> kids;
  for (int i = 0; i < n; ++i)
    kids.push_back(value_task("t" + std::to_string(i), {{"i", i}}));
  workflow wf;
  wf.root = parallel(std::move(kids), 16);
  return wf;
}

} // namespace

TEST_CASE("frame and snapshot storage grows linearly with the number of tasks") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  auto bytes_per_task = [&](int n) {
    auto res = eng.run(value_fanout(n), {});
    REQUIRE(res.status == run_status::finished);
    auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
    store::statement s(db.handle(), R"sql(
SELECT COALESCE(sum(length(snapshot_json)), 0) +
       (SELECT COALESCE(sum(length(tree_json)), 0) FROM trees WHERE hash IN
          (SELECT tree_hash FROM frames WHERE run_id = ?1))
FROM frames WHERE run_id = ?1)sql");
    s.bind_text_ref(1, res.run_id);
    REQUIRE(s.step());
    return static_cast<double>(s.column_int(0)) / n;
  };
  double small = bytes_per_task(500);
  double large = bytes_per_task(4000);
  INFO("bytes per task: " << small << " at 500, " << large << " at 4000");
  CHECK(large < small * 1.5); // quadratic storage would grow ~8x
  CHECK(large < 600);
}

TEST_CASE("every frame of a large fan-out rebuilds the node states its events describe") {
  // The first frame carries all nodes entering the run; later ones a few
  // changes each, and a keyframe now and then. Replaying the events up to
  // each FrameCommitted must give that frame's snapshot.
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  auto res = eng.run(value_fanout(300), {});
  REQUIRE(res.status == run_status::finished);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  int frames_checked = 0;
  auto states = test_support::check_frames_against_events(
      rd, res.run_id, [&](std::int64_t, bool) { ++frames_checked; });
  CHECK(frames_checked > 300 / 16);
  CHECK(states.size() == 300);
}
