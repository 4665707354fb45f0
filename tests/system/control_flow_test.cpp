// Control flow through the CLI, as a user runs it: the examples of the
// repository and the files a user would write.
#include <catch2/catch.hpp>

#include "cli_support.hpp"

#include <csignal>
#include <set>

using namespace smithers::system_test;
using smithers::json;

TEST_CASE("the branch example takes then or else from a committed output", "[system][branch]") {
  sandbox sb;
  command_options opts;
  opts.cwd = source_dir();
  SECTION("then") {
    auto r = sb.cli_json({"run", "./examples/branch.json", "--input", R"({"changes": 2})"}, opts);
    INFO(r);
    REQUIRE(r.exit_code == 0);
    auto j = r.out_json();
    CHECK(j["run"]["status"] == "finished");
    CHECK(j["outputs"]["deploy"] == json{{"deployed", true}});
    CHECK_FALSE(j["outputs"].contains("report"));
  }
  SECTION("else, reading the check's reason") {
    auto r = sb.cli_json({"run", "./examples/branch.json", "--input", R"({"changes": 0})"}, opts);
    INFO(r);
    REQUIRE(r.exit_code == 0);
    auto j = r.out_json();
    CHECK(j["outputs"]["report"] == json{{"report", "nothing changed"}});
    CHECK_FALSE(j["outputs"].contains("deploy"));
    // Only the nodes that ran are in the run.
    std::set<std::string> ids;
    for (const auto& n : j["nodes"])
      ids.insert(n["node_id"].get<std::string>());
    CHECK(ids == std::set<std::string>{"check", "report"});
  }
}

TEST_CASE("validate checks a branch's predicate and shows it in graph", "[system][branch]") {
  sandbox sb;
  auto bad = sb.write("bad.json", json::parse(R"({"root": {"sequence": [
    {"task": "a", "value": {}},
    {"branch": "b", "if": {"output": "nobody.ok", "equals": true}, "then": {"task": "c", "value": {}}}
  ]}})"));
  auto r = sb.cli({"validate", bad});
  INFO(r);
  CHECK(r.exit_code == 4);
  CHECK(r.err.find("root.sequence[1].if") != std::string::npos);
  CHECK(r.err.find("\"nobody\"") != std::string::npos);

  auto g = sb.cli({"graph", source_dir() + "/examples/branch.json"});
  INFO(g);
  REQUIRE(g.exit_code == 0);
  CHECK(g.out.find("branch ship-it if") != std::string::npos);
  CHECK(g.out.find("then") != std::string::npos);
  CHECK(g.out.find("else") != std::string::npos);
  auto dot = sb.cli({"graph", source_dir() + "/examples/branch.json", "--format", "dot"});
  REQUIRE(dot.exit_code == 0);
  CHECK(dot.out.find("branch ship-it") != std::string::npos);
}

TEST_CASE("the for_each example fans out over a command's output", "[system][for_each]") {
  sandbox sb;
  command_options opts;
  opts.cwd = source_dir();
  auto r = sb.cli_json({"run", "./examples/for-each.json"}, opts);
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = r.out_json();
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["outputs"]["count-readme"] == json{{"file", "readme"}, {"index", 0}, {"double", 6}});
  CHECK(j["outputs"]["count-notes"] == json{{"file", "notes"}, {"index", 1}, {"double", 10}});
  CHECK(j["outputs"]["done"] == json{{"ok", true}});
  auto g = sb.cli({"graph", source_dir() + "/examples/for-each.json"});
  REQUIRE(g.exit_code == 0);
  CHECK(g.out.find("for_each per-file over outputs.list.files as file") != std::string::npos);
}

TEST_CASE("a for_each whose items are not an array fails the run with INVALID_INPUT", "[system][for_each]") {
  sandbox sb;
  auto wf = sb.write("wf.json", json::parse(R"({"root": {"sequence": [
    {"task": "list", "value": {"files": "not a list"}},
    {"for_each": "each", "items": "outputs.list.files", "as": "f",
     "body": {"task": "t-{{f_index}}", "value": {}}}
  ]}})"));
  auto r = sb.cli_json({"run", wf});
  INFO(r);
  CHECK(r.exit_code == 1); // the run exists and failed: not refused input (4)
  auto j = r.out_json();
  CHECK(j["run"]["status"] == "failed");
  CHECK(j["run"]["error"]["code"] == "INVALID_INPUT");
  CHECK(j["run"]["error"]["message"].get<std::string>().find("outputs.list.files") !=
        std::string::npos);
}

TEST_CASE("the review-loop example revises until the reviewer approves", "[system][loop]") {
  sandbox sb;
  command_options opts;
  opts.cwd = source_dir();
  auto r = sb.cli_json({"run", "./examples/review-loop.json", "--run-id", "rl"}, opts);
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = r.out_json();
  CHECK(j["run"]["status"] == "finished");
  // Shipped the third draft, and read the first review (iteration 0).
  CHECK(j["outputs"]["ship"] == json{{"shipped_draft", 2}, {"first_review", "draft 0 needs tests"}});
  CHECK(j["outputs"]["review@1"] == json{{"approved", false}, {"comments", "draft 1 needs tests"}});
  std::set<std::string> keys;
  for (const auto& n : j["nodes"])
    keys.insert(n["node_id"].get<std::string>() + "#" + std::to_string(n["iteration"].get<int>()));
  CHECK(keys == std::set<std::string>{"plan#0", "implement#0", "review#0", "implement#1", "review#1",
                                      "implement#2", "review#2", "ship#0"});
  auto insp = sb.cli_json({"inspect", "rl"}).out_json();
  REQUIRE(insp["loops"].size() == 1);
  CHECK(insp["loops"][0]["loop_id"] == "revise");
  CHECK(insp["loops"][0]["state"] == "finished");
  CHECK(insp["loops"][0]["iteration"] == 2);
  auto text = sb.cli({"inspect", "rl"});
  CHECK(text.out.find("implement@2") != std::string::npos);
  CHECK(text.out.find("LOOPS") != std::string::npos);
  int started = 0, finished = 0;
  for (const auto& e : sb.cli_json({"logs", "rl"}).out_ndjson()) {
    if (e["type"] == "LoopIterationStarted") ++started;
    if (e["type"] == "LoopFinished") {
      ++finished;
      CHECK(e["reason"] == "until");
    }
  }
  CHECK(started == 3);
  CHECK(finished == 1);

  auto g = sb.cli({"graph", source_dir() + "/examples/review-loop.json"});
  INFO(g);
  REQUIRE(g.exit_code == 0);
  CHECK(g.out.find("loop revise until") != std::string::npos);
  CHECK(g.out.find("(max 5, then fail)") != std::string::npos);
  auto dot = sb.cli({"graph", source_dir() + "/examples/review-loop.json", "--format", "dot"});
  REQUIRE(dot.exit_code == 0);
  CHECK(dot.out.find("next iteration") != std::string::npos);
}

TEST_CASE("a loop that never satisfies until fails the run with LOOP_MAX_REACHED", "[system][loop]") {
  sandbox sb;
  auto wf = sb.write("wf.json", json::parse(R"({"root": {"loop": "l", "max_iterations": 3,
    "on_max_reached": "fail", "until": {"output": "t.done", "equals": true},
    "body": {"task": "t", "run": ["sh", "-c", "echo '{\"done\": false}'"]}}})"));
  auto r = sb.cli({"run", wf, "--run-id", "m"});
  INFO(r);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("LOOP_MAX_REACHED") != std::string::npos);
  auto j = sb.cli_json({"inspect", "m"}).out_json();
  CHECK(j["run"]["status"] == "failed");
  CHECK(j["run"]["error"]["code"] == "LOOP_MAX_REACHED");
  CHECK(j["loops"][0]["state"] == "failed");
  CHECK(j["outputs"].contains("t@2"));
  CHECK_FALSE(j["outputs"].contains("t@3"));
}

TEST_CASE("a loop inside a for_each reads its item's tasks in `until`", "[system][loop]") {
  sandbox sb;
  // Each item's loop retries its own task until that task reports the
  // item's target count.
  auto wf = sb.write("wf.json", json::parse(R"({"root": {"for_each": "each", "items": "input.items",
    "as": "x", "body": {"loop": "try-{{x.name}}", "max_iterations": 6, "on_max_reached": "fail",
      "until": {"output": "t-{{x.name}}.n", "gte": 2},
      "body": {"sequence": [
        {"task": "t-{{x.name}}", "run": ["sh", "-c", "printf '{\"n\": %s}' \"$1\"", "sh", "{{iteration}}"]},
        {"task": "odd-{{x.name}}", "value": {"odd": true}, "needs": ["t-{{x.name}}"],
         "skip_if": {"output": "t-{{x.name}}.n", "in": [0, 2]}}]}}}})"));
  auto r = sb.cli_json({"run", wf, "--run-id", "fe",
                        "--input", R"({"items": [{"name": "a"}, {"name": "b"}]})"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.cli_json({"inspect", "fe"}).out_json();
  std::set<std::string> loops;
  for (const auto& l : j["loops"])
    loops.insert(l["loop_id"].get<std::string>() + ":" + l["state"].get<std::string>() + "@" +
                 std::to_string(l["iteration"].get<int>()));
  CHECK(loops == std::set<std::string>{"try-a:finished@2", "try-b:finished@2"});
  CHECK(j["outputs"]["t-b@2"] == json{{"n", 2}});
  // skip_if read this item's task of this iteration: odd only in iteration 1.
  CHECK(j["outputs"].contains("odd-a@1"));
  CHECK_FALSE(j["outputs"].contains("odd-a"));
  CHECK_FALSE(j["outputs"].contains("odd-a@2"));
}

TEST_CASE("a branch in a for_each body decides on the body's own templated task", "[system][for_each]") {
  sandbox sb;
  auto wf = sb.write("wf.json", json::parse(R"({"root": {"for_each": "each", "items": "input.items",
    "as": "x", "body": {"sequence": [
      {"task": "check-{{x}}", "run": ["sh", "-c", "printf '{\"big\": %s}' \"$1\"", "sh", "{{x}}"]},
      {"branch": "size", "if": {"output": "check-{{x}}.big", "gt": 5},
       "then": {"task": "big-{{x}}", "value": {"big": true}},
       "else": {"task": "small-{{x}}", "value": {"big": false}}}]}}})"));
  auto r = sb.cli_json({"run", wf, "--run-id", "b", "--input", R"({"items": [3, 9]})"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto outs = r.out_json()["outputs"];
  CHECK(outs.contains("small-3"));
  CHECK(outs.contains("big-9"));
  CHECK_FALSE(outs.contains("big-3"));
  CHECK_FALSE(outs.contains("small-9"));
}

TEST_CASE("fork at a frame inside nested loops resets a node of one iteration", "[system][loop]") {
  sandbox sb;
  auto side = sb.file("side");
  auto wf = sb.write("wf.json", json{
      {"root",
       {{"loop", "outer"},
        {"max_iterations", 2},
        {"body",
         {{"loop", "inner"},
          {"max_iterations", 2},
          {"body",
           {{"sequence",
             json::array({{{"task", "a"},
                           {"run", json::array({"sh", "-c", "echo a >> '" + side + "'; echo '{}'"})}},
                          {{"task", "b"},
                           {"needs", json::array({"a"})},
                           {"run", json::array({"sh", "-c",
                                                "echo b >> '" + side + "'; echo '{}'"})}}})}}}}}}}});
  REQUIRE(sb.cli({"run", wf, "--run-id", "p"}).exit_code == 0);
  CHECK(count_lines(read_file(side), "a") == 4);
  // The last frame: every node of both outer iterations is in it, named
  // with both iterations.
  auto tl = sb.cli_json({"timeline", "p"}).out_json();
  auto last = tl["frames"].back()["frame_no"].get<std::int64_t>();
  auto fork = sb.cli({"fork", "p", "--frame", std::to_string(last), "--reset-node", "a@1@1",
                      "--run-id", "child", "--run"});
  INFO(fork);
  REQUIRE(fork.exit_code == 0);
  // a@1@1 and b@1@1 (which needs it) ran again; nothing else did.
  CHECK(count_lines(read_file(side), "a") == 5);
  CHECK(count_lines(read_file(side), "b") == 5);
  auto child = sb.cli_json({"inspect", "child"}).out_json();
  CHECK(child["run"]["status"] == "finished");
  auto after = sb.cli_json({"timeline", "p"}).out_json();
  CHECK(after["forks"][0]["reset_nodes"] == json{"a@1@1", "b@1@1"});
}

namespace {

// setup; a loop of `step` (appending its iteration to `side`) until it
// reports 10, continuing as new every 3 iterations; after.
json chain_workflow(const std::string& side, const char* sleep_s) {
  return {{"name", "chain"},
          {"root",
           {{"sequence",
             json::array(
                 {{{"task", "setup"},
                   {"run", json::array({"sh", "-c", "echo setup >> '" + side + "'; echo '{}'"})}},
                  {{"loop", "l"},
                   {"max_iterations", 12},
                   {"continue_as_new_every", 3},
                   {"until", {{"output", "step.i"}, {"gte", 10}}},
                   {"body",
                    {{"task", "step"},
                     {"run", json::array({"sh", "-c",
                                          "echo step$1 >> '" + side + "'; sleep " + sleep_s +
                                              "; printf '{\"i\": %s}' \"$1\"",
                                          "sh", "{{iteration}}"})}}}},
                  {{"task", "after"},
                   {"needs", json::array({"step"})},
                   {"run", json::array({"sh", "-c", "printf '{\"last\": %s}' \"$1\"", "sh",
                                        "{{outputs.step.i}}"})}}})}}}};
}

} // namespace

TEST_CASE("run follows a continue-as-new chain to its end; inspect names the lineage",
          "[system][loop]") {
  sandbox sb;
  auto side = sb.file("side");
  auto wf = sb.write("wf.json", chain_workflow(side, "0"));
  auto r = sb.cli({"run", wf, "--run-id", "c"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("run c~3 finished") != std::string::npos);
  CHECK(r.out.find("after: {\"last\":10}") != std::string::npos);
  CHECK(r.err.find("run c continued as c~1") != std::string::npos);
  auto lines = read_file(side);
  CHECK(count_lines(lines, "setup") == 1);
  for (int i = 0; i <= 10; ++i)
    CHECK(count_lines(lines, "step" + std::to_string(i)) == 1);
  auto first = sb.cli_json({"inspect", "c"}).out_json();
  CHECK(first["run"]["status"] == "continued");
  CHECK(first["lineage"] == json{{"continued_as", "c~1"}});
  CHECK(first["loops"][0]["state"] == "continued");
  auto mid = sb.cli_json({"inspect", "c~2"}).out_json();
  CHECK(mid["lineage"] == json{{"continued_from", "c~1"}, {"continued_as", "c~3"}});
  auto text = sb.cli({"inspect", "c~2"});
  CHECK(text.out.find("continues c~1") != std::string::npos);
  CHECK(text.out.find("continued c~3") != std::string::npos);
  // timeline names the chain, not as forks; a fork of a successor
  // continues nothing.
  auto tl = sb.cli_json({"timeline", "c~1"});
  INFO(tl);
  REQUIRE(tl.exit_code == 0);
  CHECK(tl.out_json()["continued_from"] == "c");
  CHECK(tl.out_json()["continued_as"] == "c~2");
  CHECK(tl.out_json()["forks"].empty());
  auto tl_text = sb.cli({"timeline", "c~1"});
  CHECK(tl_text.out.find("continues c, continued as c~2") != std::string::npos);
  auto fork = sb.cli_json({"fork", "c~1", "--frame", "0", "--run-id", "f"});
  INFO(fork);
  REQUIRE(fork.exit_code == 0);
  CHECK(sb.cli_json({"inspect", "f"}).out_json()["lineage"] == json::object());
  CHECK(sb.cli_json({"inspect", "c~1"}).out_json()["lineage"]["continued_as"] == "c~2");
  // A continued run has ended: resume refuses it.
  auto again = sb.cli({"resume", "c"});
  CHECK(again.exit_code == 4);
  CHECK(again.err.find("RUN_NOT_RESUMABLE") != std::string::npos);
}

TEST_CASE("a chain killed mid-way is picked up by supervise, which follows it to the end",
          "[system][loop]") {
  sandbox sb;
  auto side = sb.file("side");
  auto wf = sb.write("wf.json", chain_workflow(side, "0.05"));
  auto proc = sb.start({"run", wf, "--run-id", "k"});
  // Past the first continuation (3 iterations of 50 ms), not at the end.
  REQUIRE(eventually([&] { return count_lines(read_file(side), "step5") == 1; },
                     std::chrono::seconds(20), std::chrono::milliseconds(5)));
  proc->signal(SIGKILL);
  proc->wait();
  auto sup = sb.cli({"supervise", "--once", "--stale-after", "1ms"});
  INFO(sup);
  REQUIRE(sup.exit_code == 0);
  CHECK(sup.out.find("finished") != std::string::npos);
  auto runs = sb.cli_json({"ps"}).out_json();
  int finished = 0, continued = 0;
  for (const auto& run : runs) {
    finished += run["status"] == "finished";
    continued += run["status"] == "continued";
  }
  CHECK(finished == 1);
  CHECK(continued == 3);
  // Each iteration ran once, but for the one in flight at the kill.
  auto lines = read_file(side);
  CHECK(count_lines(lines, "setup") == 1);
  int reruns = 0;
  for (int i = 0; i <= 10; ++i) {
    int n = count_lines(lines, "step" + std::to_string(i));
    CHECK(n >= 1);
    reruns += n - 1;
  }
  CHECK(reruns <= 1);
}

TEST_CASE("the long-loop example continues as new twice and reports from the last run",
          "[system][loop]") {
  sandbox sb;
  command_options opts;
  opts.cwd = source_dir();
  auto r = sb.cli_json({"run", "./examples/long-loop.json", "--run-id", "poll"}, opts);
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = r.out_json();
  CHECK(j["run"]["run_id"] == "poll~2");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["outputs"]["report"] == json{{"finished_at", 9}});
  CHECK(j["lineage"] == json{{"continued_from", "poll~1"}});
  CHECK(sb.cli_json({"inspect", "poll"}).out_json()["run"]["status"] == "continued");
}
