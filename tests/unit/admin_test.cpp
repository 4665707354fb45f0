// The admin API over stored runs (smithers/admin.hpp), on a real file.
#include <catch2/catch.hpp>

#include "store/database.hpp"
#include "store/writer.hpp"
#include "support/temp_dir.hpp"

#include <smithers/admin.hpp>

using namespace smithers;
using namespace std::chrono_literals;

namespace {

// A run r1 whose owner is gone (a pid that cannot exist on this host), with
// a finished node a, an in-flight attempt of b and two frames.
void seed(const std::string& path) {
  auto db = store::database::open(path);
  store::writer w(db);
  store::run_row r;
  r.run_id = "r1";
  r.workflow_name = "wf";
  r.status = "running";
  r.owner_id = "nohost.invalid:999999999:1:x";
  r.created_ms = r.updated_ms = 1000;
  r.cwd = "/somewhere";
  store::node_row a{"r1", "a", 0, "finished", 1, "A", "value", 1000};
  store::node_row b{"r1", "b", 0, "in-progress", 1, "", "command", 1000};
  store::attempt_row aa;
  aa.run_id = "r1";
  aa.node_id = "a";
  aa.state = "finished";
  aa.started_ms = 1000;
  aa.finished_ms = 1001;
  aa.output = json{{"v", 1}};
  store::attempt_row ba;
  ba.run_id = "r1";
  ba.node_id = "b";
  ba.state = "in-progress";
  ba.started_ms = 1002;
  store::frame_row f0;
  f0.run_id = "r1";
  f0.frame_no = 0;
  f0.tree_hash = "h";
  f0.created_ms = 1000;
  store::frame_row f1 = f0;
  f1.frame_no = 1;
  f1.keyframe = false;
  w.apply({store::insert_run{r}, store::upsert_node{a}, store::upsert_node{b},
           store::insert_attempt{aa}, store::insert_attempt{ba},
           store::append_event{store::event_row{"r1", 0, "RunStarted", 1000, json::object()}},
           store::store_frame{f0, std::make_shared<const std::string>(R"({"task":"a"})"),
                              R"({"states":{"a":"pending","b":"pending"}})"},
           store::store_frame{f1, nullptr, R"({"states":{"a":"finished","b":"in-progress"}})"}});
}

} // namespace

TEST_CASE("run_store reads stored runs and never creates a database", "[admin]") {
  test_support::temp_dir dir;
  CHECK_FALSE(run_store::open_existing(dir.file()));
  CHECK_THROWS_WITH(run_store::open_for(dir.file(), "r1"), Catch::Contains("RUN_NOT_FOUND"));
  CHECK_FALSE(std::filesystem::exists(dir.file()));
  seed(dir.file());

  auto store = run_store::open_for(dir.file(), "r1");
  auto runs = store.runs();
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].run_id == "r1");
  CHECK(runs[0].cwd == "/somewhere");
  CHECK(store.run_count() == 1);
  CHECK(store.run_count("finished") == 0);
  CHECK_FALSE(store.find("nope"));
  CHECK_THROWS_WITH(store.get("nope"), Catch::Contains("RUN_NOT_FOUND"));

  auto j = store.inspect("r1");
  CHECK(j["run"]["workflow"] == "wf");
  CHECK(j["nodes"].size() == 2);
  CHECK(j["attempts"].size() == 2);
  CHECK(j["outputs"]["a"] == json{{"v", 1}});
  CHECK(j["frames"] == 2);

  auto events = store.events("r1");
  REQUIRE(events.size() == 1);
  CHECK(events[0]["type"] == "RunStarted");
  CHECK(events[0]["seq"] == 0);

  auto tl = store.timeline("r1");
  REQUIRE(tl["frames"].size() == 2);
  CHECK(tl["frames"][0]["changed"] == json{{"a", "pending"}, {"b", "pending"}});
  CHECK(tl["frames"][1]["changed"] == json{{"a", "finished"}, {"b", "in-progress"}});
}

TEST_CASE("run_store cancels a run nobody drives, and refuses one that has ended", "[admin]") {
  test_support::temp_dir dir;
  seed(dir.file());
  auto store = run_store::open_for(dir.file(), "r1");
  CHECK(driver_of(store.get("r1"), 30s) == run_driver::gone);
  CHECK_FALSE(owned_on_this_host(store.get("r1")));
  auto rep = store.cancel("r1", "no longer wanted", 30s);
  CHECK_FALSE(rep.requested);
  CHECK(rep.attempts == 1);
  CHECK(rep.nodes == 1); // b; a had finished
  auto run = store.get("r1");
  CHECK(run.status == "cancelled");
  CHECK(run.error["message"] == "no longer wanted");
  auto j = store.inspect("r1");
  for (const auto& n : j["nodes"])
    CHECK(n["state"] == (n["node_id"] == "a" ? "finished" : "cancelled"));
  CHECK(store.events("r1").back()["type"] == "RunCancelled");
  CHECK_THROWS_WITH(store.cancel("r1", "again", 30s), Catch::Contains("has already ended"));
}

TEST_CASE("run_store forks a run into a created one", "[admin]") {
  test_support::temp_dir dir;
  seed(dir.file());
  auto store = run_store::open_for(dir.file(), "r1");
  auto rep = store.fork("r1", 1, {}, "child");
  CHECK(rep.run_id == "child");
  auto child = store.get("child");
  CHECK(child.status == "created");
  CHECK(child.owner_id.empty());
  CHECK(child.parent_run_id == "r1");
  CHECK(driver_of(child, 30s) == run_driver::nobody);
  CHECK(store.timeline("r1")["forks"][0]["run_id"] == "child");
}
