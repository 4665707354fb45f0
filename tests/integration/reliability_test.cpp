// Task reliability with a real actor system and a real SQLite file: retries
// and backoff, timeouts, heartbeats and the watchdog, cancellation, lost
// task actors. Time bounds are generous: the box is a loaded 2-core machine.
#include <catch2/catch.hpp>

#include "store/reader.hpp"
#include "store/writer.hpp"
#include "support/engine_config.hpp"
#include "support/event_recorder.hpp"
#include "support/eventually.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <smithers/engine.hpp>
#include <smithers/limits.hpp>

#include <atomic>
#include <cmath>
#include <csignal>
#include <fstream>
#include <mutex>
#include <thread>

using namespace smithers;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

using test_support::config_in;
using test_support::eventually;
using test_support::pid_from_file;
using test_support::process_alive;

std::vector<store::attempt_row> attempts_of(const engine& eng, const std::string& run_id) {
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  return store::reader{db}.attempts(run_id);
}

// Waits until `path` holds `lines` lines (a task wrote its pid), up to 10 s.
bool wait_for_lines(const std::string& path, std::size_t lines) {
  auto deadline = clock_type::now() + 10s;
  while (clock_type::now() < deadline) {
    std::ifstream in(path);
    std::size_t n = 0;
    std::string l;
    while (std::getline(in, l))
      ++n;
    if (n >= lines) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

} // namespace

TEST_CASE("a retry never starts before its backoff has passed") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({compute_task("flaky",
                                   [](task_context& ctx) -> json {
                                     if (ctx.attempt() < 3) throw std::runtime_error("not yet");
                                     return json::object();
                                   })
                          .retries(2)
                          .retry({150, 2.0, 1000, 0.0})});
  test_support::event_recorder log;
  run_options opts;
  opts.on_event = log.handler();
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  auto retries = log.of_type("NodeRetrying");
  REQUIRE(retries.size() == 2);
  CHECK(retries[0].fields["delay_ms"] == 150);
  CHECK(retries[1].fields["delay_ms"] == 300);
  auto attempts = attempts_of(eng, res.run_id);
  REQUIRE(attempts.size() == 3);
  for (int i = 0; i < 2; ++i) {
    const auto& failed = attempts[i];
    REQUIRE(failed.finished_ms);
    std::int64_t retry_at = failed.meta.at("retry_at_ms").get<std::int64_t>();
    CHECK(retry_at == *failed.finished_ms + (i == 0 ? 150 : 300));
    CHECK(attempts[i + 1].started_ms >= retry_at);
  }
}

TEST_CASE("backoff grows by its factor, is capped and jitters within bounds") {
  // The policy maths, through the retry events of a run that always fails.
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence(
      {compute_task("always", [](task_context&) -> json { throw std::runtime_error("no"); })
           .retries(4)
           .retry({10, 3.0, 100, 0.2})});
  test_support::event_recorder log;
  run_options opts;
  opts.on_event = log.handler();
  auto res = eng.run(wf, opts);
  CHECK(res.status == run_status::failed);
  auto retries = log.of_type("NodeRetrying");
  REQUIRE(retries.size() == 4);
  const double nominal[] = {10, 30, 90, 100};
  for (int i = 0; i < 4; ++i) {
    double d = retries[i].fields["delay_ms"].get<double>();
    CHECK(d >= std::floor(nominal[i] * 0.8));
    CHECK(d <= std::ceil(nominal[i] * 1.2));
  }
  CHECK(attempts_of(eng, res.run_id).size() == 5);
}

TEST_CASE("a compute task that ignores its timeout is recorded failed at the deadline") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<bool> saw_cancel{false};
  workflow wf;
  wf.root = sequence({compute_task("slow", [&](task_context& ctx) {
                        // Ignores the flag for 2 s, then notes it.
                        std::this_thread::sleep_for(2s);
                        saw_cancel = ctx.cancelled();
                        return json{{"late", true}};
                      }).timeout_ms(200)});
  auto t0 = clock_type::now();
  auto res = eng.run(wf, {});
  auto took = clock_type::now() - t0;
  CHECK(res.status == run_status::failed);
  CHECK(took < 1800ms); // recorded at the deadline, not when the callable returned
  auto attempts = attempts_of(eng, res.run_id);
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].state == "failed");
  CHECK(attempts[0].error["code"] == "TASK_TIMEOUT");
  CHECK(res.outputs.count("slow") == 0); // the late result is discarded
  std::this_thread::sleep_for(2300ms);
  CHECK(saw_cancel);
}

TEST_CASE("a cooperative compute task sees cancelled() when its timeout passes") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<bool> stopped{false};
  workflow wf;
  wf.root = sequence({compute_task("coop",
                                   [&](task_context& ctx) {
                                     auto deadline = clock_type::now() + 10s;
                                     while (!ctx.cancelled() && clock_type::now() < deadline)
                                       std::this_thread::sleep_for(5ms);
                                     stopped = ctx.cancelled();
                                     return json::object();
                                   })
                          .timeout_ms(100)
                          .retries(1)
                          .retry({10, 1.0, 10, 0.0})});
  auto res = eng.run(wf, {});
  CHECK(res.status == run_status::failed);
  CHECK(attempts_of(eng, res.run_id).size() == 2); // TASK_TIMEOUT is retryable
  CHECK(stopped);
}

TEST_CASE("a cancelled compute task that ignores the flag is recorded after the stop grace") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<bool> started{false}, saw_cancel{false};
  workflow wf;
  wf.root = sequence({compute_task("stubborn", [&](task_context& ctx) {
    started = true;
    std::this_thread::sleep_for(4500ms); // past the 3 s grace, ignoring the flag
    saw_cancel = ctx.cancelled();
    return json{{"late", true}};
  })});
  auto h = eng.start(wf, {});
  for (int i = 0; i < 500 && !started; ++i)
    std::this_thread::sleep_for(10ms);
  REQUIRE(started);
  auto t0 = clock_type::now();
  eng.cancel(h.run_id(), "enough");
  auto res = h.wait();
  auto took = clock_type::now() - t0;
  CHECK(res.status == run_status::cancelled);
  CHECK(took >= 2500ms); // it was given the grace
  CHECK(took < 4400ms);  // and not waited for to the end
  auto attempts = attempts_of(eng, res.run_id);
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].state == "cancelled");
  CHECK(attempts[0].error == json{{"code", "RUN_CANCELLED"}, {"message", "enough"}});
  CHECK(res.outputs.count("stubborn") == 0); // the late result is discarded
  std::this_thread::sleep_for(1500ms);
  CHECK(saw_cancel);
}

TEST_CASE("a compute task that heartbeats once and hangs is ended by the watchdog and its "
          "retry receives the checkpoint") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::mutex mtx;
  json seen_checkpoint;
  workflow wf;
  wf.root = sequence({compute_task("hang",
                                   [&](task_context& ctx) -> json {
                                     if (ctx.attempt() == 2) {
                                       std::lock_guard<std::mutex> lk(mtx);
                                       seen_checkpoint = ctx.last_heartbeat();
                                       return {{"resumed_from", ctx.last_heartbeat()["step"]}};
                                     }
                                     ctx.heartbeat({{"step", 7}});
                                     while (!ctx.cancelled())
                                       std::this_thread::sleep_for(5ms);
                                     return json::object();
                                   })
                          .heartbeat_timeout_ms(300)
                          .retries(1)
                          .retry({10, 1.0, 10, 0.0})});
  test_support::event_recorder log;
  run_options opts;
  opts.on_event = log.handler();
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.at("hang") == json{{"resumed_from", 7}});
  {
    std::lock_guard<std::mutex> lk(mtx);
    CHECK(seen_checkpoint == json{{"step", 7}});
  }
  auto timeouts = log.of_type("TaskHeartbeatTimeout");
  REQUIRE(timeouts.size() == 1);
  CHECK(timeouts[0].fields["heartbeat_timeout_ms"] == 300);
  std::int64_t detected =
      timeouts[0].timestamp_ms - timeouts[0].fields["last_heartbeat_ms"].get<std::int64_t>();
  CHECK(detected >= 300);
  CHECK(detected <= 300 + 300 + 400); // within timeout + 300 ms, plus slack for a loaded box
  auto attempts = attempts_of(eng, res.run_id);
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0].error["code"] == "TASK_HEARTBEAT_TIMEOUT");
  CHECK(attempts[0].heartbeat == json{{"step", 7}});
}

TEST_CASE("a command that heartbeats once and hangs is ended within the heartbeat timeout and "
          "its retry gets the checkpoint on stdin and in SMITHERS_LAST_HEARTBEAT") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  auto pids = dir.file("pids");
  workflow wf;
  // Attempt 1 records its pid, checkpoints and hangs; attempt 2 echoes what it got.
  wf.root =
      sequence({shell_task("cmd", "if [ \"$SMITHERS_ATTEMPT\" = 1 ]; then echo $$ >> " + pids +
                                      "; echo '::heartbeat {\"line\": 41}'; exec sleep 30; fi; "
                                      "ctx=$(cat); printf '{\"env\": %s, \"stdin\": %s}' "
                                      "\"$SMITHERS_LAST_HEARTBEAT\" \"$ctx\"")
                    .heartbeat_timeout_ms(400)
                    .retries(1)
                    .retry({10, 1.0, 10, 0.0})});
  test_support::event_recorder log;
  run_options opts;
  opts.on_event = log.handler();
  auto t0 = clock_type::now();
  auto res = eng.run(wf, opts);
  CHECK(clock_type::now() - t0 < 6s);
  REQUIRE(res.status == run_status::finished);
  const json& out = res.outputs.at("cmd");
  CHECK(out["env"] == json{{"line", 41}});
  CHECK(out["stdin"]["last_heartbeat"] == json{{"line", 41}});
  CHECK(out["stdin"]["attempt"] == 2);
  auto timeouts = log.of_type("TaskHeartbeatTimeout");
  REQUIRE(timeouts.size() == 1);
  std::int64_t detected =
      timeouts[0].timestamp_ms - timeouts[0].fields["last_heartbeat_ms"].get<std::int64_t>();
  CHECK(detected <= 400 + 300 + 400);
  pid_t hung = pid_from_file(pids);
  REQUIRE(hung > 0);
  eventually([&] { return !process_alive(hung); }, 5s, 20ms);
  CHECK_FALSE(process_alive(hung));
}

TEST_CASE("heartbeats are throttled and the newest one is always written") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({compute_task("chatty", [](task_context& ctx) {
    for (int i = 1; i <= 200; ++i)
      ctx.heartbeat({{"i", i}});
    return json::object();
  })});
  test_support::event_recorder log;
  run_options opts;
  opts.on_event = log.handler();
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  auto beats = log.of_type("TaskHeartbeat");
  CHECK(beats.size() >= 1);
  CHECK(beats.size() <= 4); // 200 beats in well under a second
  auto attempts = attempts_of(eng, res.run_id);
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].heartbeat == json{{"i", 200}});
  CHECK(beats.back().fields["data_bytes"] == json{{"i", 200}}.dump().size());
}

TEST_CASE("bad heartbeat data fails the attempt without retrying") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = parallel({
      compute_task("nan",
                   [](task_context& ctx) {
                     ctx.heartbeat({{"x", std::nan("")}});
                     return json::object();
                   })
          .retries(3)
          .continue_on_fail(),
      compute_task("huge",
                   [](task_context& ctx) {
                     ctx.heartbeat({{"blob", std::string(limits::max_heartbeat_bytes, 'x')}});
                     return json::object();
                   })
          .retries(3)
          .continue_on_fail(),
  });
  auto res = eng.run(wf, {});
  CHECK(res.status == run_status::finished);
  auto attempts = attempts_of(eng, res.run_id);
  REQUIRE(attempts.size() == 2);
  for (const auto& a : attempts) {
    CHECK(a.state == "failed");
    CHECK(a.error["code"] == (a.node_id == "nan" ? "HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE"
                                                 : "HEARTBEAT_PAYLOAD_TOO_LARGE"));
  }
}

TEST_CASE("skip_if skips a task and the tasks that need it") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({
      value_task("check", {{"ok", false}}),
      value_task("deploy", {{"done", true}}).skip_if({{"output", "check.ok"}, {"equals", false}}),
      value_task("announce", json::object()).needs({"deploy"}),
      value_task("always", json::object()).skip_if({{"input", "dry_run"}, {"equals", true}}),
  });
  test_support::event_recorder log;
  run_options opts;
  opts.on_event = log.handler();
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.count("deploy") == 0);
  CHECK(res.outputs.count("announce") == 0);
  CHECK(res.outputs.count("always") == 1);
  auto skipped = log.of_type("NodeSkipped");
  REQUIRE(skipped.size() == 2);
  CHECK(skipped[0].fields["node_id"] == "deploy");
  CHECK(skipped[1].fields["node_id"] == "announce");
}

TEST_CASE("cancelling a run stops its commands, records the attempts and leaves no process") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  auto pids = dir.file("pids");
  std::vector<node> kids;
  for (int i = 0; i < 3; ++i)
    kids.push_back(shell_task("sleep" + std::to_string(i), "sh -c 'sleep 30' & echo $! >> " + pids +
                                                               "; echo $$ >> " + pids + "; wait"));
  workflow wf;
  wf.root = sequence({parallel(std::move(kids)), value_task("after", json::object())});
  test_support::event_recorder log;
  run_options opts;
  opts.on_event = log.handler();
  auto handle = eng.start(wf, opts);
  REQUIRE(wait_for_lines(pids, 6));
  eng.cancel(handle.run_id(), "user asked");
  REQUIRE(handle.wait_for(10s));
  auto res = handle.wait();
  CHECK(res.status == run_status::cancelled);
  REQUIRE(res.err);
  CHECK(res.err->code == "RUN_CANCELLED");
  // No process of any attempt is left. (A killed background `sleep` is
  // reaped by init, not by us: on a loaded machine that may take a moment.)
  std::ifstream in(pids);
  pid_t pid;
  while (in >> pid)
    CHECK(test_support::eventually([&] { return !process_alive(pid); }, 5s));
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  CHECK(rd.run(handle.run_id())->status == "cancelled");
  auto attempts = rd.attempts(handle.run_id());
  REQUIRE(attempts.size() == 3);
  for (const auto& a : attempts) {
    CHECK(a.state == "cancelled");
    CHECK(a.error["code"] == "RUN_CANCELLED");
    CHECK(a.error["message"] == "user asked");
  }
  // Every node ends cancelled: the three stopped, and "after", never reached.
  for (const auto& n : rd.nodes(handle.run_id()))
    CHECK(n.state == "cancelled");
  CHECK(log.of_type("RunCancelled").size() == 1);
  auto cancelled = log.of_type("NodeCancelled");
  CHECK(cancelled.size() == 4);
  for (const auto& e : cancelled) {
    INFO(e.fields.dump());
    CHECK(e.fields["reason"] == "cancelled");
    CHECK(e.fields.contains("attempt") == (e.fields["node_id"] != "after"));
  }
}

TEST_CASE("a cancellation request recorded by another process is noticed within 500 ms") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({compute_task("wait", [](task_context& ctx) {
    auto deadline = clock_type::now() + 20s;
    while (!ctx.cancelled() && clock_type::now() < deadline)
      std::this_thread::sleep_for(5ms);
    return json::object();
  })});
  test_support::event_recorder log;
  run_options opts;
  opts.on_event = log.handler();
  auto handle = eng.start(wf, opts);
  while (log.of_type("NodeStarted").empty())
    std::this_thread::sleep_for(5ms);
  {
    // What `smithers cancel` does: its own connection, its own transaction.
    auto db = store::database::open(eng.config().db_path, store::open_mode::read_write);
    store::writer{db}.apply({store::request_cancel{handle.run_id()}});
  }
  auto t0 = clock_type::now();
  REQUIRE(handle.wait_for(10s));
  auto noticed = clock_type::now() - t0;
  CHECK(handle.wait().status == run_status::cancelled);
  CHECK(noticed < 1500ms); // polled every 250 ms; generous for a loaded box
}

TEST_CASE("interrupting leaves the run resumable: attempts cancelled, nodes pending") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({value_task("first", json::object()), shell_task("long", "exec sleep 30"),
                      value_task("last", json::object())});
  test_support::event_recorder log;
  run_options opts;
  opts.on_event = log.handler();
  auto handle = eng.start(wf, opts);
  eventually([&] { return log.of_type("NodeStarted").size() >= 2; }, 10s, 5ms);
  eng.interrupt("interrupted by SIGINT");
  REQUIRE(handle.wait_for(10s));
  auto res = handle.wait();
  CHECK(res.status == run_status::running);
  REQUIRE(res.err);
  CHECK(res.err->code == "TASK_ABORTED");
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  CHECK(rd.run(handle.run_id())->status == "running");
  for (const auto& n : rd.nodes(handle.run_id()))
    CHECK(n.state == (n.node_id == "first" ? "finished" : "pending"));
  auto attempts = rd.attempts(handle.run_id());
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[1].node_id == "long");
  CHECK(attempts[1].state == "cancelled");
  CHECK(attempts[1].error["message"] == "interrupted by SIGINT");
}

TEST_CASE("cancel refuses unknown runs and runs that have ended") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({value_task("a", json::object())});
  auto res = eng.run(wf, {});
  try {
    eng.cancel("no-such-run");
    FAIL("cancel of an unknown run");
  } catch (const smithers_error& e) {
    CHECK(e.code() == "RUN_NOT_FOUND");
  }
  try {
    eng.cancel(res.run_id);
    FAIL("cancel of a finished run");
  } catch (const smithers_error& e) {
    CHECK(e.code() == "INVALID_ARGUMENT");
    CHECK(e.err().message.find("finished") != std::string::npos);
  }
}

// Direct compute tasks (task_spec::direct): called by the run's supervisor,
// not handed to the pool.
TEST_CASE("a direct compute task runs while the pool's only thread is taken") {
  // One pool thread, held by `waiter` until `setter` has run: a `setter`
  // handed to the pool would queue behind it and `waiter` would give up.
  test_support::temp_dir dir;
  auto cfg = config_in(dir);
  cfg.blocking_threads = 1;
  engine eng{cfg};
  std::atomic<bool> set{false};
  workflow wf;
  wf.root = parallel({compute_task("waiter",
                                   [&](task_context&) {
                                     auto deadline = clock_type::now() + 10s;
                                     while (!set && clock_type::now() < deadline)
                                       std::this_thread::sleep_for(5ms);
                                     return json{{"saw", set.load()}};
                                   }),
                      compute_task("setter", [&](task_context& ctx) {
                        set = true;
                        return json{{"attempt", ctx.attempt()}};
                      }).direct()});
  auto res = eng.run(wf, {});
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.at("waiter") == json{{"saw", true}});
  CHECK(res.outputs.at("setter") == json{{"attempt", 1}});
  auto attempts = attempts_of(eng, res.run_id);
  REQUIRE(attempts.size() == 2);
  for (const auto& a : attempts)
    CHECK(a.state == "finished");
}

TEST_CASE("a direct compute task is retried, and past its timeout fails once its call returns") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  SECTION("retried after a throw, its output committed") {
    workflow wf;
    wf.root = sequence({compute_task("flaky",
                                     [](task_context& ctx) -> json {
                                       if (ctx.attempt() == 1) throw std::runtime_error("once");
                                       return {{"attempt", ctx.attempt()}};
                                     })
                            .direct()
                            .retries(1)
                            .retry({10, 1.0, 10, 0.0}),
                        compute_task("next",
                                     [](task_context& ctx) {
                                       return json{{"got", ctx.need("flaky")}};
                                     })
                            .needs({"flaky"})
                            .direct()});
    auto res = eng.run(wf, {});
    REQUIRE(res.status == run_status::finished);
    CHECK(res.outputs.at("next") == json{{"got", {{"attempt", 2}}}});
    auto attempts = attempts_of(eng, res.run_id);
    REQUIRE(attempts.size() == 3);
    CHECK(attempts[0].state == "failed");
    CHECK(attempts[0].error["code"] == "TASK_FAILED");
  }
  SECTION("a call longer than its timeout: TASK_TIMEOUT, the output discarded") {
    workflow wf;
    wf.root = sequence({compute_task("slow",
                                     [](task_context&) {
                                       // A direct call cannot be interrupted: the
                                       // timeout (at 50 ms, well before the
                                       // call's end) is seen when it returns.
                                       std::this_thread::sleep_for(1s);
                                       return json{{"late", true}};
                                     })
                            .direct()
                            .timeout_ms(50)});
    auto res = eng.run(wf, {});
    CHECK(res.status == run_status::failed);
    REQUIRE(res.err);
    CHECK(res.err->code == "TASK_FAILED"); // the run's; the attempt's is below
    CHECK(res.outputs.count("slow") == 0);
    auto attempts = attempts_of(eng, res.run_id);
    REQUIRE(attempts.size() == 1);
    CHECK(attempts[0].state == "failed");
    CHECK(attempts[0].error["code"] == "TASK_TIMEOUT");
  }
}

TEST_CASE("a run cancelled during a direct call ends cancelled once the call returns") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<bool> in_call{false}, cancel_sent{false}, after_ran{false};
  workflow wf;
  wf.root = sequence({compute_task("slow",
                                   [&](task_context& ctx) {
                                     in_call = true;
                                     // Returns only once the cancel is queued:
                                     // it comes before this call's outcome.
                                     auto deadline = clock_type::now() + 10s;
                                     while (!cancel_sent && clock_type::now() < deadline)
                                       std::this_thread::sleep_for(5ms);
                                     return json{{"saw_cancel", ctx.cancelled()}};
                                   })
                          .direct(),
                      compute_task("after", [&](task_context&) {
                        after_ran = true;
                        return json::object();
                      }).direct()});
  auto handle = eng.start(wf, {});
  REQUIRE(test_support::eventually([&] { return in_call.load(); }, 10s));
  eng.cancel(handle.run_id(), "user asked");
  cancel_sent = true;
  REQUIRE(handle.wait_for(10s));
  auto res = handle.wait();
  CHECK(res.status == run_status::cancelled);
  REQUIRE(res.err);
  CHECK(res.err->code == "RUN_CANCELLED");
  CHECK_FALSE(after_ran);
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  CHECK(rd.run(handle.run_id())->status == "cancelled");
  // As for a pool job asked to stop: an attempt that produced its output
  // keeps it (the call never saw the flag); the next task never starts.
  auto attempts = rd.attempts(handle.run_id());
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].node_id == "slow");
  CHECK(attempts[0].state == "finished");
  CHECK(attempts[0].output == std::optional<json>{json{{"saw_cancel", false}}});
  for (const auto& n : rd.nodes(handle.run_id()))
    CHECK(n.state == (n.node_id == "slow" ? "finished" : "cancelled"));
}
