// The engine end to end: a real actor system, a real SQLite file in a temp
// dir, workflows built in C++.
#include <catch2/catch.hpp>

#include "store/reader.hpp"
#include "support/engine_config.hpp"
#include "support/event_recorder.hpp"
#include "support/frame_replay.hpp"
#include "support/temp_dir.hpp"

#include <smithers/engine.hpp>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace smithers;
using namespace std::chrono_literals;

namespace {

using test_support::config_in;

compute_fn constant(json out) {
  return [out](task_context&) { return out; };
}

/// Tracks how many callables run at once.
struct concurrency_probe {
  std::atomic<int> now{0};
  std::atomic<int> peak{0};

  compute_fn task(std::chrono::milliseconds hold) {
    return [this, hold](task_context&) {
      int n = ++now;
      int p = peak.load();
      while (n > p && !peak.compare_exchange_weak(p, n)) {
      }
      std::this_thread::sleep_for(hold);
      --now;
      return json::object();
    };
  }
};

std::size_t count_runs(const std::string& db_path) {
  auto db = store::database::open(db_path, store::open_mode::read_only);
  return store::reader{db}.runs().size();
}

// A dynamic workflow: "count" outputs {"n": 3}; once that is committed, the
// re-render adds a parallel fan-out item0..item2.
workflow count_then_fan_out() {
  workflow wf;
  wf.build = [](const render_context& ctx) {
    std::vector<node> steps{value_task("count", {{"n", 3}})};
    if (const json* c = ctx.output("count")) {
      std::vector<node> fan;
      for (int i = 0; i < (*c)["n"].get<int>(); ++i)
        fan.push_back(value_task("item" + std::to_string(i), {{"i", i}}));
      steps.push_back(parallel(std::move(fan)));
    }
    return sequence(std::move(steps));
  };
  return wf;
}

} // namespace

TEST_CASE("a C++ workflow with sequence, parallel, needs and compute tasks finishes") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.name = "squares";
  wf.root = sequence({
      compute_task("numbers", constant({{"xs", {1, 2, 3}}})),
      parallel({
          compute_task("sum",
                       [](task_context& ctx) {
                         int s = 0;
                         for (int x : ctx.need("numbers")["xs"])
                           s += x;
                         return json{{"sum", s}};
                       })
              .needs({"numbers"}),
          value_task("meta", {{"title", "squares"}}),
      }),
  });
  auto res = eng.run(wf, {});
  REQUIRE(res.status == run_status::finished);
  CHECK_FALSE(res.err);
  CHECK(res.outputs.at("sum") == json{{"sum", 6}});
  CHECK(res.outputs.at("meta") == json{{"title", "squares"}});

  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  auto run = rd.run(res.run_id);
  REQUIRE(run);
  CHECK(run->status == "finished");
  CHECK(run->finished_ms);
  auto nodes = rd.nodes(res.run_id);
  REQUIRE(nodes.size() == 3);
  for (const auto& n : nodes) {
    CHECK(n.state == "finished");
    CHECK(n.attempts == 1);
  }
  auto attempts = rd.attempts(res.run_id);
  REQUIRE(attempts.size() == 3);
  for (const auto& a : attempts) {
    CHECK(a.state == "finished");
    CHECK(a.finished_ms);
  }
  CHECK(rd.outputs(res.run_id).size() == 3);
  // A frame per batch of state changes, all of one (static) tree; the last
  // snapshot shows every node finished.
  auto frames = rd.frame_summaries(res.run_id);
  REQUIRE(frames.size() >= 2);
  CHECK(frames.front().keyframe);
  for (const auto& f : frames)
    CHECK(f.tree_hash == frames.front().tree_hash);
  auto last = rd.snapshot_at(res.run_id, frames.back().frame_no);
  CHECK(last["states"] == json{{"numbers", "finished"}, {"sum", "finished"}, {"meta", "finished"}});
  CHECK(last["outputs"]["sum"] == json{{"sum", 6}});
}

TEST_CASE("events reach subscribers in seq order, each one already committed") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({value_task("a", json::object()), value_task("b", json::object())});
  std::mutex mtx;
  std::vector<event> seen;
  std::vector<bool> durable;
  auto db_path = eng.config().db_path;
  run_options opts;
  opts.on_event = [&](const event& e) {
    auto db = store::database::open(db_path, store::open_mode::read_only);
    bool in_db = !store::reader{db}.events(e.run_id, e.seq - 1, 1).empty();
    std::lock_guard<std::mutex> lk(mtx);
    seen.push_back(e);
    durable.push_back(in_db);
  };
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  std::lock_guard<std::mutex> lk(mtx);
  REQUIRE(seen.size() >= 8);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i].seq == static_cast<std::int64_t>(i));
    CHECK(durable[i]);
  }
  CHECK(seen.front().type == "RunStarted");
  CHECK(seen.back().type == "RunFinished");
  auto db = store::database::open(db_path, store::open_mode::read_only);
  auto stored = store::reader{db}.events(res.run_id);
  REQUIRE(stored.size() == seen.size());
  for (std::size_t i = 0; i < stored.size(); ++i)
    CHECK(stored[i].type == seen[i].type);
}

TEST_CASE("a dependent starts only after the output it needs is committed") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  auto db_path = eng.config().db_path;
  std::atomic<bool> saw_output{false};
  workflow wf;
  wf.root = parallel({
      compute_task("producer", constant({{"v", 42}})),
      compute_task("consumer",
                   [&](task_context& ctx) {
                     auto db = store::database::open(db_path, store::open_mode::read_only);
                     store::reader rd{db};
                     for (const auto& o : rd.outputs(ctx.run_id()))
                       if (o.node_id == "producer" && o.value == json{{"v", 42}}) saw_output = true;
                     for (const auto& a : rd.attempts(ctx.run_id()))
                       if (a.node_id == "producer" && a.state != "finished") saw_output = false;
                     return json{{"got", ctx.need("producer")["v"]}};
                   })
          .needs({"producer"}),
  });
  auto res = eng.run(wf, {});
  REQUIRE(res.status == run_status::finished);
  CHECK(saw_output);
  CHECK(res.outputs.at("consumer") == json{{"got", 42}});
}

TEST_CASE("group and run-wide max_concurrency bound the tasks in flight") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  SECTION("group limit") {
    concurrency_probe probe;
    std::vector<node> kids;
    for (int i = 0; i < 12; ++i)
      kids.push_back(compute_task("t" + std::to_string(i), probe.task(30ms)));
    workflow wf;
    wf.root = parallel(std::move(kids), 3);
    REQUIRE(eng.run(wf, {}).status == run_status::finished);
    CHECK(probe.peak == 3);
  }
  SECTION("run limit from the run options") {
    concurrency_probe probe;
    std::vector<node> kids;
    for (int i = 0; i < 12; ++i)
      kids.push_back(compute_task("t" + std::to_string(i), probe.task(30ms)));
    workflow wf;
    wf.root = parallel(std::move(kids));
    run_options opts;
    opts.max_concurrency = 2;
    REQUIRE(eng.run(wf, opts).status == run_status::finished);
    CHECK(probe.peak == 2);
  }
}

TEST_CASE("blocking compute work does not starve the actor scheduler") {
  // Two CAF scheduler threads, eight callables that block at once: they can
  // only overlap if they run off the scheduler.
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  concurrency_probe probe;
  std::vector<node> kids;
  for (int i = 0; i < 8; ++i)
    kids.push_back(compute_task("t" + std::to_string(i), probe.task(400ms)));
  workflow wf;
  wf.root = parallel(std::move(kids));
  REQUIRE(eng.run(wf, {}).status == run_status::finished);
  CHECK(probe.peak == 8);
}

TEST_CASE("a failing task is retried and the retry's attempt is recorded") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<int> calls{0};
  workflow wf;
  wf.root = sequence({compute_task("flaky",
                                   [&](task_context& ctx) -> json {
                                     ++calls;
                                     if (ctx.attempt() == 1)
                                       throw std::runtime_error("first try fails");
                                     return {{"attempt", ctx.attempt()}};
                                   })
                          .retries(2)
                          .retry({10, 2.0, 100, 0.0})});
  test_support::event_recorder recorder;
  run_options opts;
  opts.on_event = recorder.handler();
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  CHECK(calls == 2);
  auto types = recorder.types();
  CHECK(res.outputs.at("flaky") == json{{"attempt", 2}});
  CHECK(std::count(types.begin(), types.end(), "NodeRetrying") == 1);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  auto attempts = store::reader{db}.attempts(res.run_id);
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0].state == "failed");
  CHECK(attempts[0].error["code"] == "TASK_FAILED");
  CHECK(attempts[0].error["message"].get<std::string>().find("first try fails") !=
        std::string::npos);
  CHECK(attempts[1].state == "finished");
}

TEST_CASE("a failure without continue_on_fail fails the run, naming the node") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<bool> after_ran{false};
  workflow wf;
  wf.root = sequence({
      compute_task("boom", [](task_context&) -> json { throw std::runtime_error("kaput"); }),
      compute_task("after",
                   [&](task_context&) {
                     after_ran = true;
                     return json::object();
                   }),
  });
  auto res = eng.run(wf, {});
  CHECK(res.status == run_status::failed);
  REQUIRE(res.err);
  CHECK(res.err->code == "TASK_FAILED");
  CHECK(res.err->message.find("boom") != std::string::npos);
  CHECK_FALSE(after_ran);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  CHECK(rd.run(res.run_id)->status == "failed");
  // The node the run never reached is not left pending forever.
  for (const auto& n : rd.nodes(res.run_id))
    CHECK(n.state == (n.node_id == "boom" ? "failed" : "cancelled"));
  bool said_why = false;
  for (const auto& e : rd.events(res.run_id))
    if (e.type == "NodeCancelled" && e.payload["node_id"] == "after")
      said_why = e.payload["reason"] == "run-failed" && !e.payload.contains("attempt");
  CHECK(said_why);
}

TEST_CASE("continue_on_fail lets the run go on and skips the failed node's dependents") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({
      compute_task("boom", [](task_context&) -> json { throw std::runtime_error("kaput"); })
          .continue_on_fail(),
      compute_task("needs_boom", constant(json::object())).needs({"boom"}),
      value_task("last", {{"ok", true}}),
  });
  auto res = eng.run(wf, {});
  CHECK(res.status == run_status::finished);
  CHECK(res.outputs.count("last") == 1);
  CHECK(res.outputs.count("needs_boom") == 0);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  for (const auto& n : store::reader{db}.nodes(res.run_id)) {
    if (n.node_id == "boom")
      CHECK(n.state == "failed");
    else if (n.node_id == "needs_boom")
      CHECK(n.state == "skipped");
    else
      CHECK(n.state == "finished");
  }
}

TEST_CASE("an output that fails its schema is INVALID_OUTPUT and is not retried") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<int> calls{0};
  workflow wf;
  wf.output_schemas["count"] = {
      {"type", "object"}, {"required", {"n"}}, {"properties", {{"n", {{"type", "integer"}}}}}};
  wf.root = sequence({compute_task("c",
                                   [&](task_context&) {
                                     ++calls;
                                     return json{{"n", "three"}};
                                   })
                          .output("count")
                          .retries(3)});
  auto res = eng.run(wf, {});
  CHECK(res.status == run_status::failed);
  CHECK(calls == 1);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  auto attempts = store::reader{db}.attempts(res.run_id);
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].error["code"] == "INVALID_OUTPUT");
  CHECK(attempts[0].error["message"].get<std::string>().find("$.n") != std::string::npos);
}

TEST_CASE("compute tasks see heartbeats and registered functions by name") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  eng.register_compute("double", [](task_context& ctx) {
    ctx.heartbeat({{"progress", 0.5}});
    return json{{"v", ctx.input()["x"].get<int>() * 2}};
  });
  workflow wf;
  wf.root = sequence({compute_task("d", std::string{"double"})});
  run_options opts;
  opts.input = {{"x", 21}};
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.at("d") == json{{"v", 42}});
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  auto attempts = store::reader{db}.attempts(res.run_id);
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].heartbeat == json{{"progress", 0.5}});
  CHECK(attempts[0].heartbeat_ms);
}

TEST_CASE("command tasks run through the engine with templates") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({
      value_task("greeting", {{"word", "hello world"}}),
      command_task("echo", {"sh", "-c", "printf '{\"said\": \"%s\"}' \"$1\"", "sh",
                            "{{outputs.greeting.word}}"}),
  });
  auto res = eng.run(wf, {});
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.at("echo") == json{{"said", "hello world"}});
}

TEST_CASE("a template naming a missing value fails the attempt without retrying") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({shell_task("t", "echo {{input.missing}}").retries(2)});
  auto res = eng.run(wf, {});
  CHECK(res.status == run_status::failed);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  auto attempts = store::reader{db}.attempts(res.run_id);
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].error["code"] == "TEMPLATE_MISSING_VALUE");
}

TEST_CASE("bad input is refused before anything is written") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.input_schema = {
      {"type", "object"}, {"required", {"repo"}}, {"properties", {{"repo", {{"type", "string"}}}}}};
  wf.root = sequence({value_task("a", json::object())});

  auto refuses = [&](run_options opts, const std::string& code, const std::string& needle) {
    try {
      eng.start(wf, std::move(opts));
      FAIL("start() accepted bad input");
    } catch (const smithers_error& e) {
      CHECK(e.code() == code);
      CHECK(e.err().message.find(needle) != std::string::npos);
    }
  };
  run_options missing;
  refuses(missing, "INVALID_INPUT", "missing required property \"repo\"");
  run_options wrong_type;
  wrong_type.input = {{"repo", 3}};
  refuses(wrong_type, "INVALID_INPUT", "$.repo");
  run_options bad_id;
  bad_id.input = {{"repo", "x"}};
  bad_id.run_id = "has space";
  refuses(bad_id, "INVALID_RUN_ID", "position 3");
  run_options bad_limit;
  bad_limit.input = {{"repo", "x"}};
  bad_limit.max_concurrency = 0;
  refuses(bad_limit, "INVALID_ARGUMENT", "max_concurrency");

  workflow unknown_compute;
  unknown_compute.root = sequence({compute_task("c", std::string{"nope"})});
  try {
    eng.start(unknown_compute, {});
    FAIL("unknown compute accepted");
  } catch (const smithers_error& e) {
    CHECK(e.code() == "INVALID_WORKFLOW");
    CHECK(e.err().message.find("root.sequence[0].compute") != std::string::npos);
  }
  CHECK(count_runs(eng.config().db_path) == 0);
}

TEST_CASE("a run id that exists is refused and the first run is untouched") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({value_task("a", json::object())});
  run_options opts;
  opts.run_id = "fixed-id";
  REQUIRE(eng.run(wf, opts).status == run_status::finished);
  try {
    eng.start(wf, opts);
    FAIL("duplicate run id accepted");
  } catch (const smithers_error& e) {
    CHECK(e.code() == "INVALID_RUN_ID");
  }
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  CHECK(rd.runs().size() == 1);
  CHECK(rd.run("fixed-id")->status == "finished");
}

TEST_CASE("an in-memory database runs workflows too") {
  engine_config cfg;
  cfg.db_path = ":memory:";
  engine eng{cfg};
  workflow wf;
  wf.root = parallel({value_task("a", {{"x", 1}}), value_task("b", {{"x", 2}})});
  auto res = eng.run(wf, {});
  CHECK(res.status == run_status::finished);
  CHECK(res.outputs.size() == 2);
}

TEST_CASE("a dynamic workflow is re-rendered from committed outputs") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  auto res = eng.run(count_then_fan_out(), {});
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.size() == 4);
  CHECK(res.outputs.at("item2") == json{{"i", 2}});
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  std::set<std::string> trees;
  for (const auto& f : store::reader{db}.frame_summaries(res.run_id))
    trees.insert(f.tree_hash);
  CHECK(trees.size() == 2); // before and after the fan-out appeared
}

TEST_CASE("a node a re-render drops keeps its state in frames, and is not run again") {
  // x runs, the next render drops it (and adds 100 nodes, enough changes
  // for a keyframe while x is out of the tree), the one after brings it
  // back: finished, it keeps its output and does not run again (docs/architecture.md, "Rendering and frames"),
  // and every frame's snapshot is the node states its events describe, x
  // included while dropped.
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  constexpr int wide = 100;
  workflow wf;
  wf.build = [](const render_context& ctx) {
    if (!ctx.output("a"))
      return parallel({value_task("a", {{"v", 1}}), value_task("x", {{"v", 2}})});
    std::vector<node> fan;
    bool fan_done = true;
    for (int i = 0; i < wide; ++i) {
      std::string id = "p" + std::to_string(i);
      fan_done = fan_done && ctx.output(id);
      fan.push_back(value_task(id, {{"i", i}}));
    }
    std::vector<node> steps;
    steps.push_back(value_task("a", {{"v", 1}}));
    steps.push_back(parallel(std::move(fan)));
    if (fan_done) {
      steps.push_back(value_task("x", {{"v", 2}}));
      steps.push_back(value_task("c", {{"v", 3}}));
    }
    return sequence(std::move(steps));
  };
  auto res = eng.run(wf, {});
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.size() == wide + 3);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  for (const auto& n : rd.nodes(res.run_id)) {
    INFO(n.node_id);
    CHECK(n.state == "finished");
    CHECK(n.attempts == 1);
  }
  CHECK(res.outputs.at("x") == json{{"v", 2}});
  int keyframes_without_x = 0;
  auto frames = rd.frames(res.run_id);
  auto states = test_support::check_frames_against_events(
      rd, res.run_id, [&](std::int64_t no, bool keyframe) {
        if (keyframe &&
            frames.at(static_cast<std::size_t>(no)).tree.dump().find("\"x\"") == std::string::npos)
          ++keyframes_without_x;
      });
  CHECK(keyframes_without_x > 0);
  CHECK(states.size() == wide + 3);
}

TEST_CASE("a finished compute task a render drops and brings back is not executed again") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<int> executions{0};
  auto counted = compute_task("once", [&](task_context&) {
    ++executions;
    return json{{"n", 1}};
  });
  workflow wf;
  // once, then a step without it, then once again beside a last step.
  wf.build = [counted](const render_context& ctx) {
    if (!ctx.output("once")) return sequence({counted});
    if (!ctx.output("gap")) return sequence({value_task("gap", {{"g", 1}})});
    return sequence({counted, compute_task("last", [](task_context& c) {
                       return json{{"saw", c.need("once")}};
                     }).needs({"once"})});
  };
  auto res = eng.run(wf, {});
  REQUIRE(res.status == run_status::finished);
  CHECK(executions == 1);
  CHECK(res.outputs.at("once") == json{{"n", 1}});
  CHECK(res.outputs.at("last") == json{{"saw", {{"n", 1}}}});
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  int attempts = 0;
  for (const auto& a : rd.attempts(res.run_id))
    attempts += a.node_id == "once";
  CHECK(attempts == 1);
}

TEST_CASE("a task a render drops while it runs is stopped and recorded cancelled, unmounted") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  auto pid_file = dir.file("pid");
  std::atomic<bool> saw_cancel{false};
  workflow wf;
  // slow and cmd start beside a; a's output takes both out of the tree.
  wf.build = [&, pid_file](const render_context& ctx) {
    if (ctx.output("a")) return sequence({value_task("after", json::object())});
    return parallel(
        {compute_task("a",
                      [pid_file](task_context& c) {
                        // Wait until the command runs, so both are in flight.
                        for (int i = 0; i < 3000 && !c.cancelled(); ++i) {
                          if (std::ifstream(pid_file).peek() != EOF) break;
                          std::this_thread::sleep_for(std::chrono::milliseconds(10));
                        }
                        return json{{"go", true}};
                      }),
         compute_task("slow",
                      [&](task_context& c) {
                        while (!c.cancelled())
                          std::this_thread::sleep_for(std::chrono::milliseconds(5));
                        saw_cancel = true;
                        return json::object();
                      }),
         shell_task("cmd", "echo $$ > " + pid_file + "; exec sleep 60")});
  };
  auto res = eng.run(wf, {});
  REQUIRE(res.status == run_status::finished);
  CHECK(saw_cancel);
  pid_t pid = 0;
  std::ifstream(pid_file) >> pid;
  REQUIRE(pid > 0);
  CHECK(::kill(pid, 0) != 0); // the command's process is gone
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  std::map<std::string, std::string> node_states;
  for (const auto& n : rd.nodes(res.run_id))
    node_states[n.node_id] = n.state;
  CHECK(node_states["slow"] == "cancelled");
  CHECK(node_states["cmd"] == "cancelled");
  for (const auto& a : rd.attempts(res.run_id)) {
    INFO(a.node_id);
    CHECK(a.state != "in-progress");
    if (a.node_id == "slow" || a.node_id == "cmd") {
      CHECK(a.state == "cancelled");
      CHECK(a.error["message"].get<std::string>().rfind("unmounted", 0) == 0);
    }
  }
  int unmounted = 0;
  for (const auto& e : rd.events(res.run_id))
    if (e.type == "NodeCancelled" && e.payload["reason"] == "unmounted") ++unmounted;
  CHECK(unmounted == 2);
}

TEST_CASE("every node is announced pending once, stored and published alike") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  // Nodes enter at the start and again when the re-render adds the fan-out.
  workflow wf = count_then_fan_out();
  test_support::event_recorder recorder;
  run_options opts;
  opts.on_event = recorder.handler();
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  std::vector<store::event_row> stored;
  for (auto& e : rd.events(res.run_id))
    if (e.type == "NodePending") stored.push_back(std::move(e));
  auto published = recorder.of_type("NodePending");
  REQUIRE(published.size() == 4);
  REQUIRE(stored.size() == 4);
  std::vector<std::string> order;
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(stored[i].seq == published[i].seq);
    CHECK(stored[i].payload["node_id"] == published[i].fields["node_id"]);
    CHECK(stored[i].payload["iteration"] == 0);
    CHECK(published[i].fields["iteration"] == 0);
    order.push_back(published[i].fields["node_id"].get<std::string>());
  }
  CHECK(order == std::vector<std::string>{"count", "item0", "item1", "item2"});
  // The fan-out was announced after count's output: later seqs.
  auto seq_of = [&](const char* type, const char* node) {
    for (const auto& e : rd.events(res.run_id))
      if (e.type == type && e.payload.value("node_id", "") == node) return e.seq;
    return std::int64_t{-1};
  };
  CHECK(seq_of("NodePending", "item0") > seq_of("NodeFinished", "count"));
  auto nodes = rd.nodes(res.run_id);
  REQUIRE(nodes.size() == 4);
  for (const auto& n : nodes) {
    CHECK(n.state == "finished");
    CHECK(n.kind == "value");
    CHECK(n.attempts == 1);
  }
}

TEST_CASE("many runs at once on one engine all finish") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  std::vector<node> kids;
  for (int i = 0; i < 20; ++i)
    kids.push_back(value_task("t" + std::to_string(i), {{"i", i}}));
  wf.root = parallel(std::move(kids), 4);
  std::vector<run_handle> handles;
  for (int r = 0; r < 10; ++r)
    handles.push_back(eng.start(wf, {}));
  for (auto& h : handles) {
    auto res = h.wait();
    CHECK(res.status == run_status::finished);
    CHECK(res.outputs.size() == 20);
  }
  CHECK(count_runs(eng.config().db_path) == 10);
}

TEST_CASE("an engine ends after the runs in flight, and their handles outlive it") {
  test_support::temp_dir dir;
  run_handle h;
  {
    engine eng{config_in(dir)};
    workflow wf;
    wf.root = sequence({compute_task("slow",
                                     [](task_context&) {
                                       std::this_thread::sleep_for(100ms);
                                       return json{{"done", true}};
                                     }),
                        value_task("after", {{"v", 1}})});
    h = eng.start(wf, {});
    CHECK_FALSE(h.wait_for(0ms));
  } // the destructor waits for the run
  CHECK(h.wait_for(0ms));
  // wait() copies: a handle's result can be read more than once.
  for (int i = 0; i < 2; ++i) {
    auto res = h.wait();
    CHECK(res.status == run_status::finished);
    CHECK(res.outputs.at("slow") == json{{"done", true}});
    CHECK(res.outputs.at("after") == json{{"v", 1}});
  }
}

TEST_CASE("an event handler that throws does not stop the run or the engine") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<int> calls{0};
  auto sub = eng.subscribe([&](const event&) {
    ++calls;
    throw std::runtime_error("subscriber bug");
  });
  workflow wf;
  wf.root = sequence({value_task("a", json::object()), value_task("b", json::object())});
  run_options opts;
  opts.on_event = [](const event&) { throw 42; };
  auto res = eng.run(wf, opts);
  CHECK(res.status == run_status::finished);
  CHECK(calls >= 8);
  eng.unsubscribe(sub);
}

TEST_CASE("the owner's liveness heartbeat advances while a run is driven") {
  // supervise and resume tell a dead owner from a live one by this column.
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<bool> release{false};
  workflow wf;
  wf.root = sequence({compute_task("wait", [&](task_context& ctx) {
    while (!release && !ctx.cancelled())
      std::this_thread::sleep_for(10ms);
    return json::object();
  })});
  auto h = eng.start(wf, {});
  auto heartbeat = [&] {
    auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
    auto run = store::reader{db}.run(h.run_id());
    REQUIRE(run);
    CHECK(run->owner_id == eng.owner_id());
    return run->heartbeat_ms;
  };
  std::this_thread::sleep_for(300ms);
  auto first = heartbeat();
  // The watchdog writes it every second; give a loaded machine room.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  auto later = first;
  while (later == first && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(200ms);
    later = heartbeat();
  }
  CHECK(later > first);
  release = true;
  CHECK(h.wait().status == run_status::finished);
}
