// Monitoring replaces orphan recovery: a task actor that dies without a
// result is a failed attempt, retried under the task's policy. The test
// drives a run supervisor directly so it can end task actors from outside,
// as a crash in an executor would.
#include <catch2/catch.hpp>

#include "actors/protocol.hpp"
#include "actors/persistence_actor.hpp"
#include "actors/run_supervisor.hpp"
#include "store/reader.hpp"
#include "store/writer.hpp"
#include "support/temp_dir.hpp"
#include "util/clock.hpp"
#include "util/ids.hpp"

#include <caf/all.hpp>

#include <future>
#include <thread>

using namespace smithers;
using namespace std::chrono_literals;

namespace {

struct harness {
  test_support::temp_dir dir;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<store::database> db;
  caf::actor persistence;
  util::thread_pool pool{8};

  harness() {
    cfg.set("scheduler.max-threads", 2);
    sys = std::make_unique<caf::actor_system>(cfg);
    db = std::make_shared<store::database>(store::database::open(dir.file("smithers.db")));
    persistence = actors::spawn_persistence(*sys, db);
  }

  ~harness() {
    caf::anon_send_exit(persistence, caf::exit_reason::user_shutdown);
    persistence = nullptr;
    sys->await_all_actors_done();
  }

  // Runs `wf`, calling `on_spawn` for every task actor; returns the result.
  run_result
  run(const workflow& wf,
      std::function<void(const node_key&, std::int64_t, const caf::actor&)> on_spawn) {
    auto ctx = std::make_shared<actors::run_context>();
    ctx->run_id = "lost-" + util::random_hex(4);
    ctx->wf = std::make_shared<const workflow>(wf);
    ctx->input = std::make_shared<const json>(json::object());
    ctx->computes = std::make_shared<const actors::compute_registry>();
    render_context rc{ctx->run_id, ctx->input.get(), nullptr};
    ctx->first_render = render(ctx->wf, rc);
    ctx->started_ms = util::now_ms();
    ctx->persistence = persistence;
    ctx->pool = &pool;
    ctx->on_task_spawned = std::move(on_spawn);
    store::run_row row;
    row.run_id = ctx->run_id;
    row.status = "running";
    row.created_ms = row.updated_ms = ctx->started_ms;
    // Through the persistence actor, which owns the connection (a writer of
    // our own on this thread would race with the actor's use of it).
    auto batch = std::make_shared<actors::write_batch>();
    batch->commands.push_back(store::insert_run{row});
    caf::scoped_actor self{*sys};
    self->send(persistence, actors::write_atom::value, std::uint64_t{1}, batch);
    self->receive([](actors::committed_atom, std::uint64_t) {},
                  [](actors::failed_atom, std::uint64_t, const std::string&,
                     const std::string& msg) { FAIL("inserting the run failed: " << msg); });
    std::promise<run_result> done;
    auto fut = done.get_future();
    ctx->on_end = [&done](run_result r) { done.set_value(std::move(r)); };
    auto sup = actors::spawn_run_supervisor(*sys, ctx);
    REQUIRE(fut.wait_for(20s) == std::future_status::ready);
    return fut.get();
  }

  std::vector<store::attempt_row> attempts(const std::string& run_id) {
    auto rd = store::database::open(dir.file("smithers.db"), store::open_mode::read_only);
    return store::reader{rd}.attempts(run_id);
  }
};

// A command, so its attempt has a task actor (a compute attempt in this
// process has none: actors/task_actor.hpp). Ending the actor ends the
// process group.
node sleeper(std::string id) {
  return command_task(std::move(id), {"sleep", "10"});
}

} // namespace

TEST_CASE("a task actor that dies without a result is a failed attempt, then retried") {
  harness h;
  workflow wf;
  wf.root = sequence({sleeper("victim").retries(1).retry({10, 1.0, 10, 0})});
  auto res = h.run(wf, [&](const node_key&, std::int64_t attempt, const caf::actor& a) {
    if (attempt == 1) // the first attempt's actor crashes; the retry is left alone
      caf::anon_send_exit(a, caf::exit_reason::kill);
    else
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown); // also ends it: no result either
  });
  CHECK(res.status == run_status::failed);
  auto attempts = h.attempts(res.run_id);
  REQUIRE(attempts.size() == 2);
  for (const auto& a : attempts) {
    CHECK(a.state == "failed");
    CHECK(a.error["code"] == "TASK_FAILED");
    CHECK(a.error["message"].get<std::string>().find("ended without a result") !=
          std::string::npos);
  }
}

TEST_CASE("after a lost attempt the retry runs normally and the run finishes") {
  harness h;
  workflow wf;
  wf.root = sequence({shell_task("victim", "if [ \"$SMITHERS_ATTEMPT\" = 1 ]; then sleep 10; fi; "
                                           "echo \"{\\\"attempt\\\": $SMITHERS_ATTEMPT}\"")
                          .retries(2)
                          .retry({10, 1.0, 10, 0})});
  auto res = h.run(wf, [&](const node_key&, std::int64_t attempt, const caf::actor& a) {
    if (attempt == 1) caf::anon_send_exit(a, caf::exit_reason::kill);
  });
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.at("victim") == json{{"attempt", 2}});
  auto attempts = h.attempts(res.run_id);
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0].state == "failed");
  CHECK(attempts[1].state == "finished");
}

TEST_CASE("value and compute tasks run without a task actor; commands get one per attempt") {
  harness h;
  workflow wf;
  wf.root = sequence({
      value_task("v", {{"n", 2}}),
      compute_task("c",
                   [](task_context& ctx) {
                     return json{{"twice", ctx.needs()["v"]["n"].get<int>() * 2}};
                   })
          .needs({"v"}),
      command_task("k", {"echo", "{\"ok\": true}"}),
      value_task("w", {{"done", true}}),
  });
  std::vector<std::string> spawned;
  auto res = h.run(
      wf, [&](const node_key& k, std::int64_t, const caf::actor&) { spawned.push_back(k.id); });
  REQUIRE(res.status == run_status::finished);
  CHECK(spawned == std::vector<std::string>{"k"});
  CHECK(res.outputs.at("k") == json{{"ok", true}});
  CHECK(res.outputs.at("c") == json{{"twice", 4}}); // the value's output reached its dependent
  for (const auto& a : h.attempts(res.run_id)) {
    CHECK(a.state == "finished");
    CHECK(a.attempt == 1);
    REQUIRE(a.finished_ms.has_value());
    if (a.node_id == "v" || a.node_id == "w")
      CHECK(*a.finished_ms == a.started_ms); // written finished at once
  }
}

TEST_CASE("a value that fails its schema fails the run with INVALID_OUTPUT, no actor involved") {
  harness h;
  workflow wf;
  wf.root = sequence(
      {value_task("v", {{"n", "two"}})
           .output_schema({{"type", "object"}, {"properties", {{"n", {{"type", "integer"}}}}}})
           .retries(2)});
  int spawned = 0;
  auto res = h.run(wf, [&](const node_key&, std::int64_t, const caf::actor&) { ++spawned; });
  CHECK(res.status == run_status::failed);
  CHECK(spawned == 0);
  auto attempts = h.attempts(res.run_id);
  REQUIRE(attempts.size() == 1); // INVALID_OUTPUT is not retried
  CHECK(attempts[0].state == "failed");
  CHECK(attempts[0].error["code"] == "INVALID_OUTPUT");
}
