// Control flow through the CLI, as a user runs it: the examples of the
// repository and the files a user would write.
#include <catch2/catch.hpp>

#include "cli_support.hpp"

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
