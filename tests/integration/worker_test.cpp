// The C++ API of distribution: a smithers::worker serving a host's own
// compute functions, an engine with engine_config::workers sending them
// attempts over a real loopback connection (two actor systems, one process).
#include <catch2/catch.hpp>

#include "store/reader.hpp"
#include "support/engine_config.hpp"
#include "support/eventually.hpp"
#include "support/temp_dir.hpp"

#include <smithers/engine.hpp>
#include <smithers/worker.hpp>

#include <atomic>
#include <chrono>
#include <memory>

using namespace smithers;
using namespace std::chrono_literals;
using test_support::config_in;
using test_support::eventually;

namespace {

std::vector<store::attempt_row> attempts_of(const engine& eng, const std::string& run_id) {
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  return store::reader{db}.attempts(run_id);
}

std::string code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const smithers_error& e) {
    return e.err().code + ": " + e.err().message;
  }
  return "no error";
}

} // namespace

TEST_CASE("a host's worker runs its registered functions for an engine elsewhere") {
  test_support::temp_dir dir;
  worker w{worker_config{}};
  std::atomic<int> ran_here{0};
  w.register_compute("triple", [&](task_context& ctx) {
    ++ran_here;
    ctx.heartbeat({{"half", "way"}});
    return json{{"n", ctx.needs()["a"]["n"].get<int>() * 3}};
  });
  auto port = w.start();
  REQUIRE(port > 0);
  REQUIRE(w.port() == port);

  auto cfg = config_in(dir);
  cfg.workers = {"127.0.0.1:" + std::to_string(port)};
  engine eng{cfg};
  // The owner does not have "triple": with workers, that is allowed.
  CHECK_FALSE(eng.has_compute("triple"));
  workflow wf;
  wf.name = "remote";
  std::atomic<int> inline_ran{0};
  wf.root =
      sequence({value_task("a", {{"n", 7}}), compute_task("b", std::string{"triple"}).needs({"a"}),
                compute_task("c", [&](task_context& ctx) {
                  ++inline_ran; // a C++ callable cannot travel: it runs here
                  return json{{"m", ctx.needs()["b"]["n"].get<int>() + 1}};
                }).needs({"b"})});
  run_options opts;
  opts.run_id = "r";
  std::vector<std::string> types;
  opts.on_event = [&](const event& e) { types.push_back(e.type); };
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs["b"] == json{{"n", 21}});
  CHECK(res.outputs["c"] == json{{"m", 22}});
  CHECK(ran_here == 1);
  CHECK(inline_ran == 1);
  CHECK(std::count(types.begin(), types.end(), "WorkerJoined") == 1);
  for (const auto& a : attempts_of(eng, "r")) {
    INFO(a.node_id);
    CHECK(a.worker == (a.node_id == "b" ? cfg.workers[0] : std::string{}));
    if (a.node_id == "b") CHECK(a.heartbeat == json{{"half", "way"}});
  }
}

TEST_CASE("a direct task runs in the owner where its function is, and on a worker where not") {
  test_support::temp_dir dir;
  worker w{worker_config{}};
  std::atomic<int> on_worker{0}, here{0};
  auto there = [&](task_context&) {
    ++on_worker;
    return json{{"where", "worker"}};
  };
  w.register_compute("triple", there);
  w.register_compute("only_there", there);
  auto port = w.start();
  REQUIRE(port > 0);
  auto cfg = config_in(dir);
  cfg.workers = {"127.0.0.1:" + std::to_string(port)};
  engine eng{cfg};
  eng.register_compute("triple", [&](task_context&) {
    ++here;
    return json{{"where", "owner"}};
  });
  workflow wf;
  wf.name = "direct-remote";
  wf.root = sequence({compute_task("a", std::string{"triple"}).direct(),
                      compute_task("b", std::string{"triple"}),
                      compute_task("c", std::string{"only_there"}).direct()});
  run_options opts;
  opts.run_id = "r";
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs["a"] == json{{"where", "owner"}});  // direct: its function is here
  CHECK(res.outputs["b"] == json{{"where", "worker"}}); // named, with workers: sent
  CHECK(res.outputs["c"] == json{{"where", "worker"}}); // direct, but only a worker has it
  CHECK(here == 1);
  CHECK(on_worker == 2);
  for (const auto& a : attempts_of(eng, "r")) {
    INFO(a.node_id);
    CHECK(a.worker == (a.node_id == "a" ? std::string{} : cfg.workers[0]));
  }
}

TEST_CASE("a remote compute sees the cancellation of its run") {
  test_support::temp_dir dir;
  worker w{worker_config{}};
  std::atomic<bool> started{false}, saw_cancel{false};
  w.register_compute("spin", [&](task_context& ctx) -> json {
    started = true;
    while (!ctx.cancelled())
      std::this_thread::sleep_for(5ms);
    saw_cancel = true;
    throw std::runtime_error("stopped");
  });
  auto cfg = config_in(dir);
  cfg.workers = {"127.0.0.1:" + std::to_string(w.start())};
  engine eng{cfg};
  workflow wf;
  wf.name = "spin";
  wf.root = compute_task("s", std::string{"spin"});
  run_options opts;
  opts.run_id = "r";
  auto h = eng.start(wf, opts);
  REQUIRE(eventually([&] { return started.load(); }, 20s));
  CHECK(eng.cancel("r") == cancel_outcome::stopping);
  auto res = h.wait();
  CHECK(res.status == run_status::cancelled);
  CHECK(eventually([&] { return saw_cancel.load(); }, 10s));
  auto attempts = attempts_of(eng, "r");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0].state == "cancelled");
}

TEST_CASE("worker and engine configurations are checked up front") {
  test_support::temp_dir dir;
  auto refused = [](const worker_config& c) { return code_of([&] { worker w{c}; }); };
  worker_config open_listen;
  open_listen.listen = "0.0.0.0:0";
  CHECK(refused(open_listen).rfind("INVALID_ARGUMENT: --listen 0.0.0.0:0: without TLS", 0) == 0);
  open_listen.insecure = true;
  CHECK(refused(open_listen) == "no error");
  worker_config slots;
  slots.slots = limits::max_worker_slots + 1;
  CHECK(refused(slots).find("--slots must be from 1 to") != std::string::npos);
  worker_config half_tls;
  half_tls.tls.cert = dir.path() + "/cert.pem";
  CHECK(refused(half_tls).find("all three") != std::string::npos);

  auto engine_refused = [&](engine_config c) { return code_of([&] { engine e{c}; }); };
  auto cfg = config_in(dir);
  cfg.workers = {"127.0.0.1"};
  CHECK(engine_refused(cfg).find("INVALID_ARGUMENT: worker \"127.0.0.1\": no port") == 0);
  cfg.workers = {};
  cfg.tls.cert = "x";
  CHECK(engine_refused(cfg).find("TLS files given, but no workers") != std::string::npos);
  cfg.tls = {};
  cfg.workers = {"127.0.0.1:1"};
  cfg.worker_connect_timeout = 0ms;
  CHECK(engine_refused(cfg).find("worker_connect_timeout") != std::string::npos);
  // Nothing was created by the refusals.
  CHECK_FALSE(std::filesystem::exists(cfg.db_path));

  // Functions need a name and a body, and come before start().
  worker a{worker_config{}};
  CHECK(code_of([&] {
          a.register_compute("", [](task_context&) { return json::object(); });
        }).find("needs a name") != std::string::npos);
  CHECK(code_of([&] { a.register_compute("f", nullptr); }).find("is empty") != std::string::npos);
  // A worker listens once; a port taken is a clear error.
  auto port = a.start();
  CHECK(code_of([&] {
          a.register_compute("late", [](task_context&) { return json::object(); });
        }).find("after the worker started") != std::string::npos);
  CHECK(a.start() == port);
  worker_config same;
  same.listen = "127.0.0.1:" + std::to_string(port);
  worker b{same};
  auto msg = code_of([&] { b.start(); });
  CHECK(msg.rfind("INVALID_ARGUMENT: cannot listen on 127.0.0.1:" + std::to_string(port), 0) == 0);
  a.stop();
  a.stop(); // idempotent
  CHECK(code_of([&] { a.start(); }).find("has been stopped") != std::string::npos);
}
