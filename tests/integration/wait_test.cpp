// Waiting in a real engine (actor system, SQLite file): an embedded engine
// keeps a waiting run's supervisor, so approve() and signal() continue it at
// once; decisions recorded by another connection reach the live owner; a
// released run goes on with resume (docs/waiting.md).
#include <catch2/catch.hpp>

#include "store/reader.hpp"
#include "support/engine_config.hpp"
#include "support/eventually.hpp"
#include "support/temp_dir.hpp"

#include <smithers/admin.hpp>
#include <smithers/engine.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

using namespace smithers;
using namespace std::chrono_literals;
using test_support::config_in;
using test_support::eventually;

namespace {

std::string stored_status(const engine& eng, const std::string& run_id) {
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  auto run = store::reader{db}.run(run_id);
  return run ? run->status : "";
}

std::string node_state_of(const engine& eng, const std::string& run_id, const std::string& id) {
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  for (const auto& n : store::reader{db}.nodes(run_id))
    if (n.node_id == id) return n.state;
  return "";
}

std::size_t inbox_rows(const std::string& db_path) {
  auto db = store::database::open(db_path, store::open_mode::read_only);
  std::size_t n = 0;
  for (const auto& r : store::reader{db}.runs())
    n += store::reader{db}.open_inbox(r.run_id).size();
  return n;
}

} // namespace

TEST_CASE("embedded: approve and signal continue a waiting run at once, no resume needed") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<int> deploys{0};
  workflow wf;
  wf.root = sequence({approval("ok", "Ship?"),
                      compute_task("deploy",
                                   [&](task_context&) {
                                     ++deploys;
                                     return json::object();
                                   }),
                      signal("ci", "ci-done")});
  run_options opts;
  opts.run_id = "embedded";
  auto h = eng.start(wf, opts);
  REQUIRE(eventually([&] { return stored_status(eng, "embedded") == "waiting-approval"; }, 10s));
  CHECK_FALSE(h.wait_for(100ms)); // the supervisor keeps the run: no exit, no release
  CHECK(deploys == 0);
  eng.approve("embedded", "ok", decision{"ann", "looks good", std::nullopt});
  REQUIRE(eventually([&] { return stored_status(eng, "embedded") == "waiting-event"; }, 10s));
  CHECK(deploys == 1);
  eng.signal("embedded", "ci-done", {{"status", "green"}});
  REQUIRE(h.wait_for(10s));
  auto res = h.wait();
  CHECK(res.status == run_status::finished);
  CHECK(res.outputs.at("ok")["approved"] == true);
  CHECK(res.outputs.at("ok")["by"] == "ann");
  CHECK(res.outputs.at("ci") == json{{"status", "green"}});
  CHECK(inbox_rows(eng.config().db_path) == 0);
}

TEST_CASE("embedded: refused decisions throw and write nothing") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({approval("ok", "Ship?"), approval("later", "Later?")});
  run_options opts;
  opts.run_id = "refusals";
  auto h = eng.start(wf, opts);
  REQUIRE(
      eventually([&] { return node_state_of(eng, "refusals", "ok") == "waiting-approval"; }, 10s));
  auto code_of = [&](auto&& f) {
    try {
      f();
    } catch (const smithers_error& e) {
      return std::string{e.code()};
    }
    return std::string{"none"};
  };
  CHECK(code_of([&] { eng.approve("nope", "ok"); }) == errc::run_not_found);
  CHECK(code_of([&] { eng.approve("refusals", "later"); }) ==
        errc::invalid_argument); // not waiting yet
  CHECK(code_of([&] { eng.approve("refusals", "ghost"); }) == errc::invalid_argument);
  CHECK(code_of([&] {
          eng.approve("refusals", "ok", decision{"", "", 3});
        }) == errc::invalid_argument);
  CHECK(code_of([&] { eng.signal("refusals", "bad name"); }) == errc::invalid_argument);
  json deep = json::array();
  for (int i = 0; i < 40; ++i)
    deep = json::array({deep});
  CHECK(code_of([&] { eng.signal("refusals", "ok", deep); }) == errc::invalid_input);
  CHECK(code_of([&] { eng.signal("refusals", "ok", std::string(70 * 1024, 'x')); }) ==
        errc::invalid_input);
  CHECK(code_of([&] {
          eng.approve("refusals", "ok", decision{std::string(300, 'x'), "", {}});
        }) == errc::invalid_argument);
  CHECK(inbox_rows(eng.config().db_path) == 0);
  eng.deny("refusals", "ok");
  REQUIRE(h.wait_for(10s));
  CHECK(h.wait().status == run_status::failed);
  CHECK(h.wait().err->details["failed_nodes"] == json::array({"ok"}));
  CHECK(code_of([&] { eng.approve("refusals", "ok"); }) == errc::invalid_argument); // ended
}

TEST_CASE("a decision recorded by another connection reaches the live owner within 500 ms") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({approval("ok", "Ship?"), signal("go", "go")});
  run_options opts;
  opts.run_id = "remote";
  auto h = eng.start(wf, opts);
  REQUIRE(eventually([&] { return stored_status(eng, "remote") == "waiting-approval"; }, 10s));
  // Another process's view of the file: run_store on a connection of its own.
  auto store = run_store::open_for(eng.config().db_path, "remote");
  auto rep = store.decide("remote", "ok", std::nullopt, true, "bob", "");
  CHECK_FALSE(rep.needs_resume); // a live owner holds it
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return stored_status(eng, "remote") == "waiting-event"; }, 10s));
  // Measured for the note; asserted only loosely (a loaded machine).
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < 5s);
  store.signal("remote", "go", json{{"n", 1}});
  REQUIRE(h.wait_for(10s));
  auto res = h.wait();
  CHECK(res.status == run_status::finished);
  CHECK(res.outputs.at("ok")["by"] == "bob");
  CHECK(res.outputs.at("go") == json{{"n", 1}});
}

TEST_CASE("release_when_waiting lets go; resume with the decision in the inbox goes on") {
  test_support::temp_dir dir;
  auto cfg = config_in(dir);
  std::atomic<int> after{0};
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({compute_task("before",
                                    [](task_context&) {
                                      return json{{"n", 1}};
                                    }),
                       compute_task("deploy", [&](task_context&) {
                         ++after;
                         return json::object();
                       }).needs_approval("Deploy?")});
  {
    engine eng{cfg};
    run_options opts;
    opts.run_id = "released";
    opts.release_when_waiting = true;
    auto res = eng.start(wf, opts).wait();
    CHECK(res.status == run_status::waiting_approval);
    REQUIRE(res.waiting.size() == 1);
    CHECK(res.waiting[0].key == node_key{"deploy", 0});
    CHECK(res.waiting[0].kind == "approval");
    CHECK(res.waiting[0].title == "Deploy?");
    auto db = store::database::open(cfg.db_path, store::open_mode::read_only);
    auto run = store::reader{db}.run("released");
    REQUIRE(run);
    CHECK(run->owner_id.empty());
    CHECK(run->status == "waiting-approval");
    CHECK(after == 0);
  }
  {
    engine eng{cfg};
    eng.approve("released", "deploy", decision{"carol", "", std::nullopt});
    auto res = eng.resume(wf, "released").wait();
    CHECK(res.status == run_status::finished);
    CHECK(after == 1);
    auto db = store::database::open(cfg.db_path, store::open_mode::read_only);
    for (const auto& a : store::reader{db}.attempts("released"))
      CHECK(a.attempt == 1); // "before" did not run again, "deploy" once
  }
}

TEST_CASE("a failed run resumed is retried: finished nodes stay, failed ones go on numbered") {
  test_support::temp_dir dir;
  auto cfg = config_in(dir);
  std::atomic<int> firsts{0};
  std::atomic<bool> fixed{false};
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({compute_task("first",
                                    [&](task_context&) {
                                      ++firsts;
                                      return json::object();
                                    }),
                       compute_task("flaky",
                                    [&](task_context&) -> json {
                                      if (!fixed) throw std::runtime_error("not yet");
                                      return json{{"ok", true}};
                                    })
                           .retries(1)
                           .retry(retry_policy{10, 1.0, 10, 0.0})});
  engine eng{cfg};
  run_options opts;
  opts.run_id = "retry-me";
  auto failed = eng.start(wf, opts).wait();
  REQUIRE(failed.status == run_status::failed);
  fixed = true;
  std::vector<event> seen;
  std::mutex m;
  resume_options ro;
  ro.on_event = [&](const event& e) {
    std::lock_guard<std::mutex> lk(m);
    seen.push_back(e);
  };
  auto res = eng.resume(wf, "retry-me", ro).wait();
  CHECK(res.status == run_status::finished);
  CHECK(firsts == 1);
  auto db = store::database::open(cfg.db_path, store::open_mode::read_only);
  std::vector<std::int64_t> flaky;
  for (const auto& a : store::reader{db}.attempts("retry-me"))
    if (a.node_id == "flaky") flaky.push_back(a.attempt);
  CHECK(flaky == std::vector<std::int64_t>{1, 2, 3});
  auto run = store::reader{db}.run("retry-me");
  CHECK(run->error.is_null());
  std::lock_guard<std::mutex> lk(m);
  REQUIRE_FALSE(seen.empty());
  CHECK(seen.front().type == event_type::run_resumed);
  CHECK(seen.front().fields["retry"] == true);
  CHECK(seen.front().fields["previous_status"] == "failed");
  // A finished run is not resumable.
  CHECK_THROWS_WITH(eng.resume(wf, "retry-me"), Catch::Contains("has finished"));
}

TEST_CASE("an engine shut down while its runs wait stops them, resumable, and does not hang") {
  test_support::temp_dir dir;
  auto cfg = config_in(dir);
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({parallel({approval("ok", "Ship?"), timer("cool", 60'000)}),
                       value_task("after", json{{"done", true}})});
  run_handle h;
  auto t0 = std::chrono::steady_clock::now();
  {
    engine eng{cfg};
    run_options opts;
    opts.run_id = "shutdown";
    h = eng.start(wf, opts);
    REQUIRE(eventually([&] { return stored_status(eng, "shutdown") == "waiting-approval"; }, 10s));
  } // the destructor: no waiting for an approval or a 60 s timer
  CHECK(std::chrono::steady_clock::now() - t0 < 30s);
  auto stopped = h.wait();
  CHECK(stopped.status == run_status::running);
  {
    engine eng{cfg};
    eng.approve("shutdown", "ok");
    auto res = eng.resume(wf, "shutdown");
    // The timer kept its deadline: the run waits for it, then goes on.
    REQUIRE(eventually([&] { return stored_status(eng, "shutdown") == "waiting-timer"; }, 10s));
    auto db = store::database::open(cfg.db_path, store::open_mode::read_only);
    std::size_t timers = 0;
    for (const auto& w : store::reader{db}.waits("shutdown"))
      timers += w.kind == "timer";
    CHECK(timers == 1); // one wait, its deadline from the first mount
    eng.cancel("shutdown");
    CHECK(res.wait().status == run_status::cancelled);
  }
}

TEST_CASE("an engine shut down while a task runs beside a wait stops the run once it only waits") {
  test_support::temp_dir dir;
  auto cfg = config_in(dir);
  auto wf = std::make_shared<workflow>();
  std::atomic<bool> started{false};
  wf->root = parallel({approval("ok", "Ship?"), compute_task("slow", [&](task_context&) {
                                                  started = true;
                                                  std::this_thread::sleep_for(300ms);
                                                  return json::object();
                                                })});
  run_handle h;
  auto t0 = std::chrono::steady_clock::now();
  {
    engine eng{cfg};
    run_options opts;
    opts.run_id = "busy";
    h = eng.start(wf, opts);
    REQUIRE(eventually([&] { return started.load(); }, 10s));
  } // `slow` still runs when the destructor asks: it finishes, then the run stops
  CHECK(std::chrono::steady_clock::now() - t0 < 30s);
  CHECK(h.wait().status == run_status::running);
  auto db = store::database::open(cfg.db_path, store::open_mode::read_only);
  for (const auto& n : store::reader{db}.nodes("busy"))
    if (n.node_id == "slow") CHECK(n.state == "finished");
}

TEST_CASE("signals nobody takes are bounded per run") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = approval("ok", "Ship?");
  run_options opts;
  opts.run_id = "many";
  auto h = eng.start(wf, opts);
  REQUIRE(eventually([&] { return stored_status(eng, "many") == "waiting-approval"; }, 10s));
  for (std::size_t i = 0; i < limits::max_open_signals; ++i)
    eng.signal("many", "unheard", json{{"i", i}});
  try {
    eng.signal("many", "unheard");
    FAIL("the signal over the limit was stored");
  } catch (const smithers_error& e) {
    CHECK(e.code() == errc::invalid_argument);
    CHECK_THAT(e.err().message, Catch::Contains("1000 signals"));
  }
  eng.approve("many", "ok");
  CHECK(h.wait().status == run_status::finished);
}
