// smithers::metrics fed by a real engine's events, and read from the
// database it wrote: the process's series and the database's agree.
#include <catch2/catch.hpp>

#include "support/engine_config.hpp"
#include "support/eventually.hpp"
#include "support/exposition.hpp"
#include "support/temp_dir.hpp"

#include <smithers/admin.hpp>
#include <smithers/engine.hpp>
#include <smithers/metrics.hpp>

#include <stdexcept>

using namespace smithers;
using test_support::parse_exposition;

TEST_CASE("metrics of a run: from its events and from its database", "[metrics]") {
  test_support::temp_dir dir;
  // The engine feeds it: every committed event, every commit.
  auto counted = std::make_shared<metrics>();
  auto cfg = test_support::config_in(dir);
  cfg.metrics = counted;
  engine eng{cfg};
  metrics& m = *counted;

  workflow wf;
  wf.name = "metrics \"demo\"";
  wf.root = sequence({
      value_task("a", {{"v", 1}}),
      compute_task("flaky",
                   [](task_context& ctx) -> json {
                     if (ctx.attempt() == 1) throw std::runtime_error("first try fails");
                     return {{"ok", true}};
                   })
          .retries(1)
          .retry({10, 2.0, 100, 0.0}),
      parallel({compute_task("c",
                             [](task_context&) {
                               return json{{"c", 1}};
                             }),
                compute_task("d",
                             [](task_context&) {
                               return json{{"d", 1}};
                             })}),
  });
  auto res = eng.run(wf, {});
  REQUIRE(res.status == run_status::finished);

  const std::string finished = "smithers_runs_finished_total{workflow=\"metrics \"demo\"\"}";
  // Subscribers hear of the last commit on an engine thread.
  REQUIRE(test_support::eventually([&] {
    auto x = parse_exposition(m.text());
    return x.has(finished) && x.at(finished) == 1;
  }));

  auto store = run_store::open_existing(eng.config().db_path);
  REQUIRE(store);
  std::string text = m.text(*store);
  INFO(text);
  auto x = parse_exposition(text);

  CHECK(x.at("smithers_runs_started_total{workflow=\"metrics \"demo\"\"}") == 1);
  CHECK(x.at("smithers_runs_failed_total{workflow=\"metrics \"demo\"\"}") == 0);
  CHECK(x.at("smithers_tasks_started_total") == 5); // a, flaky twice, c, d
  CHECK(x.at("smithers_tasks_finished_total") == 4);
  CHECK(x.at("smithers_tasks_failed_total") == 1);
  CHECK(x.at("smithers_tasks_retried_total") == 1);
  CHECK(x.at("smithers_tasks_in_flight") == 0);
  CHECK(x.at("smithers_attempt_duration_seconds_count") == 5);
  // Every node's first start (flaky's retry had no NodePending before it).
  CHECK(x.at("smithers_queue_wait_seconds_count") == 4);
  CHECK(x.at("smithers_workers_connected") == 0);
  // Commits: at least one per task, each with its commands.
  CHECK(x.at("smithers_commit_latency_seconds_count") >= 5);
  CHECK(x.at("smithers_commit_batch_size_count") == x.at("smithers_commit_latency_seconds_count"));
  CHECK(x.at("smithers_commit_batch_size_sum") >= x.at("smithers_commit_batch_size_count"));

  CHECK(x.at("smithers_db_runs{workflow=\"metrics \"demo\"\",status=\"finished\"}") == 1);
  CHECK(x.at("smithers_db_runs{workflow=\"metrics \"demo\"\",status=\"running\"}") == 0);
  CHECK(x.at("smithers_db_attempts{state=\"finished\"}") == 4);
  CHECK(x.at("smithers_db_attempts{state=\"failed\"}") == 1);
  CHECK(x.at("smithers_db_tasks_in_flight") == 0);
  // The same attempts, timed from their rows.
  CHECK(x.at("smithers_db_attempt_duration_seconds_count") == 5);
  CHECK(x.at("smithers_db_read_errors_total") == 0);
}
