// The task cache through the smithers binary (docs/workflow-format.md,
// "Caching"): a second run of a workflow executes nothing it has cached;
// a changed version, output schema, needed output or command misses; a
// failed attempt is never cached; `smithers cache clear` empties it.
#include "system/cli_support.hpp"
#include "system/store_support.hpp"

using namespace smithers::system_test;
using smithers::json;

namespace {

/// A command task that appends its id to `side` and prints `output`.
json cached_task(const std::string& id, const std::string& side, const std::string& output,
                 json cache = true) {
  return {{"task", id},
          {"run",
           json::array({"sh", "-c", "echo " + id + " >> '" + side + "'; echo '" + output + "'"})},
          {"cache", std::move(cache)}};
}

int runs_of(const std::string& side, const std::string& id) {
  return file_exists(side) ? count_lines(read_file(side), id) : 0;
}

json attempt(const sandbox& sb, const std::string& run_id, const std::string& node) {
  auto a = attempts_of(sb.inspect(run_id), node);
  REQUIRE(a.size() == 1);
  return a[0];
}

} // namespace

TEST_CASE("a second run executes nothing that is cached, and says so") {
  sandbox sb;
  std::string side = sb.file("side.txt");
  json wf = {
      {"name", "cached"},
      {"root",
       {{"sequence",
         json::array(
             {cached_task("a", side, R"({"n": 1})"),
              json{{"task", "b"},
                   {"needs", {"a"}},
                   {"run",
                    json::array(
                        {"sh", "-c", "echo b >> '" + side + "'; echo '{\"m\": {{outputs.a.n}}}'"})},
                   {"cache", {{"version", "v1"}}}},
              json{{"task", "c"}, {"compute", "echo"}, {"cache", true}},
              json{{"task", "u"},
                   {"run", json::array({"sh", "-c", "echo u >> '" + side + "'; echo '{}'"})}}})}}}};
  sb.write("wf.json", wf);
  auto first = sb.cli({"run", "wf.json", "--run-id", "r1"});
  INFO(first);
  REQUIRE(first.exit_code == 0);
  CHECK(attempt(sb, "r1", "a")["cached"] == false);
  auto second = sb.cli({"run", "wf.json", "--run-id", "r2"});
  INFO(second);
  REQUIRE(second.exit_code == 0);
  CHECK(runs_of(side, "a") == 1);
  CHECK(runs_of(side, "b") == 1);
  CHECK(runs_of(side, "u") == 2); // not cached: runs every time
  for (const char* id : {"a", "b", "c"}) {
    INFO(id);
    auto a = attempt(sb, "r2", id);
    CHECK(a["cached"] == true);
    CHECK(a["state"] == "finished");
  }
  CHECK(attempt(sb, "r2", "u")["cached"] == false);
  auto j1 = sb.inspect("r1"), j2 = sb.inspect("r2");
  CHECK(j2["outputs"] == j1["outputs"]);
  auto events = sb.events("r2");
  auto hits = of_type(events, "CacheHit");
  REQUIRE(hits.size() == 3);
  CHECK(hits[0]["node_id"] == "a");
  CHECK(hits[0]["key"].get<std::string>().size() == 64);
  for (const auto& e : of_type(events, "NodeFinished"))
    if (e["node_id"] != "u") CHECK(e["cached"] == true);
  // The text view marks them too.
  CHECK(contains(sb.cli({"inspect", "r2"}).out, "cached"));
}

TEST_CASE("a changed version, schema, command or needed output misses the cache") {
  sandbox sb;
  std::string side = sb.file("side.txt");
  std::string state = sb.write("state.txt", std::string{"1"});
  // `a` is not cached and prints what state.txt holds; `b` (cached) needs it.
  auto workflow = [&](const std::string& version, json schema, const std::string& extra) {
    json b = cached_task("b", side, R"({"ok": true})", {{"version", version}});
    b["needs"] = {"a"};
    b["run"][2] = b["run"][2].get<std::string>() + extra;
    if (!schema.is_null()) b["output_schema"] = schema;
    return json{{"name", "miss"},
                {"root",
                 {{"sequence", json::array({json{{"task", "a"},
                                                 {"run", json::array({"sh", "-c",
                                                                      "echo \"{\\\"v\\\": $(cat '" +
                                                                          state + "')}\""})}},
                                            b})}}}};
  };
  int run = 0;
  auto go = [&](const json& wf) {
    sb.write("wf.json", wf);
    auto r = sb.cli({"run", "wf.json", "--run-id", "r" + std::to_string(++run)});
    INFO(r);
    REQUIRE(r.exit_code == 0);
    return runs_of(side, "b");
  };
  json schema = {{"type", "object"}, {"required", {"ok"}}};
  CHECK(go(workflow("v1", nullptr, "")) == 1);
  CHECK(go(workflow("v1", nullptr, "")) == 1);    // hit
  CHECK(go(workflow("v2", nullptr, "")) == 2);    // another version
  CHECK(go(workflow("v2", nullptr, "")) == 2);    // hit
  CHECK(go(workflow("v2", schema, "")) == 3);     // an output schema now
  CHECK(go(workflow("v2", schema, "")) == 3);     // hit
  CHECK(go(workflow("v2", schema, " # x")) == 4); // another command
  sb.write("state.txt", std::string{"2"});
  CHECK(go(workflow("v2", schema, " # x")) == 5); // a needed output changed
  CHECK(go(workflow("v2", schema, " # x")) == 5); // hit
}

TEST_CASE("`by` keys the cache on what it names, and failed attempts are never cached") {
  sandbox sb;
  std::string side = sb.file("side.txt");
  std::string flag = sb.file("fail-once");
  sb.write("fail-once", std::string{"x"});
  // Fails while the flag file exists (removing it), then succeeds.
  json t = {{"task", "t"},
            {"run", json::array({"sh", "-c",
                                 "echo t >> '" + side + "'; if [ -e '" + flag + "' ]; then rm '" +
                                     flag + "'; exit 3; fi; echo '{\"day\": \"{{input.day}}\"}'"})},
            {"retries", 1},
            {"retry", {{"initial_ms", 10}}},
            {"cache", {{"by", "{{input.day}}"}}}};
  sb.write("wf.json", json{{"name", "by"}, {"root", t}});
  auto r1 =
      sb.cli({"run", "wf.json", "--run-id", "r1", "--input", R"({"day": "mon", "noise": 1})"});
  INFO(r1);
  REQUIRE(r1.exit_code == 0);
  CHECK(runs_of(side, "t") == 2); // failed once, then finished: only that one is stored
  auto a = attempts_of(sb.inspect("r1"), "t");
  REQUIRE(a.size() == 2);
  CHECK(a[0]["state"] == "failed");
  // Other input, same `by`: a hit.
  auto r2 =
      sb.cli({"run", "wf.json", "--run-id", "r2", "--input", R"({"day": "mon", "noise": 2})"});
  REQUIRE(r2.exit_code == 0);
  CHECK(runs_of(side, "t") == 2);
  CHECK(sb.inspect("r2")["outputs"]["t"] == json{{"day", "mon"}});
  // Another `by`: a miss.
  auto r3 = sb.cli({"run", "wf.json", "--run-id", "r3", "--input", R"({"day": "tue"})"});
  REQUIRE(r3.exit_code == 0);
  CHECK(runs_of(side, "t") == 3);

  // A task that only fails leaves nothing behind: the next run runs it again.
  json bad = {{"task", "bad"},
              {"run", json::array({"sh", "-c", "echo bad >> '" + side + "'; exit 1"})},
              {"cache", true}};
  sb.write("bad.json", json{{"name", "bad"}, {"root", bad}});
  CHECK(sb.cli({"run", "bad.json", "--run-id", "b1"}).exit_code == 1);
  CHECK(sb.cli({"run", "bad.json", "--run-id", "b2"}).exit_code == 1);
  CHECK(runs_of(side, "bad") == 2);
}

TEST_CASE("smithers cache clear empties one workflow's cache or all of it") {
  sandbox sb;
  std::string side = sb.file("side.txt");
  for (const char* name : {"one", "two"})
    sb.write(std::string{name} + ".json",
             json{{"name", name}, {"root", cached_task(std::string{"t"} + name, side, "{}")}});
  auto run_both = [&](const std::string& suffix) {
    for (const char* name : {"one", "two"})
      REQUIRE(sb.cli({"run", std::string{name} + ".json", "--run-id", std::string{name} + suffix})
                  .exit_code == 0);
  };
  run_both("1");
  run_both("2");
  CHECK(runs_of(side, "tone") == 1);
  CHECK(runs_of(side, "ttwo") == 1);
  auto cleared = sb.cli_json({"cache", "clear", "--workflow", "one"});
  INFO(cleared);
  REQUIRE(cleared.exit_code == 0);
  CHECK(cleared.out_json() == json{{"removed", 1}, {"workflow", "one"}});
  run_both("3");
  CHECK(runs_of(side, "tone") == 2);
  CHECK(runs_of(side, "ttwo") == 1);
  auto all = sb.cli({"cache", "clear"});
  CHECK(all.exit_code == 0);
  CHECK(contains(all.out, "removed 2 cached output(s)"));
  run_both("4");
  CHECK(runs_of(side, "tone") == 3);
  CHECK(runs_of(side, "ttwo") == 2);
  // Without a database there is nothing to clear, and none is made.
  sandbox empty;
  auto none = empty.cli({"cache", "clear"});
  CHECK(none.exit_code == 0);
  CHECK_FALSE(empty.db_exists());
}

TEST_CASE("a cache option that cannot work is refused before anything runs") {
  sandbox sb;
  struct bad {
    json task;
    std::string says;
  };
  std::vector<bad> cases{
      {{{"task", "v"}, {"value", json::object()}, {"cache", true}},
       "only command, compute and agent"},
      {{{"task", "c"}, {"compute", "noop"}, {"cache", {{"by", "x"}, {"ttl", 5}}}},
       "unknown key \"ttl\" in cache"},
      {{{"task", "c"}, {"compute", "noop"}, {"cache", "yes"}}, "true, false or an object"},
      {{{"task", "c"}, {"compute", "noop"}, {"cache", {{"version", 2}}}}, "cache.version"},
      {{{"task", "c"}, {"compute", "noop"}, {"cache", {{"by", "{{outputs.ghost.sha}}"}}}},
       "\"ghost\""},
      {{{"task", "c"}, {"compute", "noop"}, {"cache", {{"by", "{{input.x"}}}}, "cache.by"},
  };
  for (const auto& c : cases) {
    INFO(c.task.dump());
    sb.write("wf.json", json{{"name", "bad"}, {"root", c.task}});
    auto r = sb.cli({"run", "wf.json"});
    INFO(r);
    CHECK(r.exit_code == 4);
    CHECK(contains(r.err, "INVALID_WORKFLOW"));
    CHECK(contains(r.err, c.says));
    CHECK_FALSE(sb.db_exists());
  }
}
