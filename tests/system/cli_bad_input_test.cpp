// Bad input to the smithers binary (docs/workflow-format.md#limits): every refusal names its error
// code and the offending path or value, exits 4 and leaves no trace: no new
// database file, no new run row.
#include "system/cli_support.hpp"

#include "util/ids.hpp"

#include <smithers/limits.hpp>

#include <functional>

using namespace smithers::system_test;
using smithers::json;
namespace limits = smithers::limits;

namespace {

// Workflow with an input schema, for INVALID_INPUT by schema.
json repo_workflow() {
  return json::parse(R"({
    "name": "needs-repo",
    "input": {"type": "object", "required": ["repo"],
              "properties": {"repo": {"type": "string", "minLength": 1}}},
    "root": {"task": "a", "value": {"ok": true}}
  })");
}

// `run` of the good workflow with extra arguments.
args_fn run_good(std::vector<std::string> extra) {
  return [extra](const sandbox& sb) {
    std::vector<std::string> args{"run", sb.write("wf.json", good_workflow())};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
}

// `run` of the good workflow with this input, given as a file.
args_fn run_with_input_file(const std::string& input_text) {
  return [input_text](const sandbox& sb) {
    return std::vector<std::string>{"run", sb.write("wf.json", good_workflow()), "--input",
                                    "@" + sb.write("input.json", input_text)};
  };
}

// Runs the good workflow with this input (as a file) and expects it to finish
// with the input recorded.
void check_input_accepted(const json& input) {
  sandbox sb;
  auto r = sb.cli_json({"run", sb.write("wf.json", good_workflow()), "--run-id", "ok", "--input",
                        "@" + sb.write("input.json", input.dump())});
  INFO(r.exit_code << "\n" << r.err.substr(0, 2000));
  REQUIRE(r.exit_code == 0);
  CHECK(r.out_json()["run"]["input"] == input);
}

json nested(std::size_t depth) {
  // depth 1 is {} itself
  json v = json::object();
  for (std::size_t i = 1; i < depth; ++i)
    v = json{{"d", v}};
  return v;
}

json array_of(std::size_t n) {
  return json{{"items", json(std::vector<int>(n, 7))}};
}

json string_of(std::size_t bytes) {
  return json{{"s", std::string(bytes, 'x')}};
}

} // namespace

// ---------------------------------------------------------------- run ids

TEST_CASE("a run id of exactly max_run_id_length characters is accepted", "[system][limits]") {
  sandbox sb;
  std::string id(limits::max_run_id_length, 'r');
  id.replace(0, 6, "a.b:c-");
  auto r = sb.cli_json({"run", sb.write("wf.json", good_workflow()), "--run-id", id});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(sb.run_id_of(r) == id);
  CHECK(sb.inspect(id)["run"]["status"] == "finished");
}

TEST_CASE("a run id one character over the limit is refused with INVALID_RUN_ID",
          "[system][limits]") {
  check_refused(run_good({"--run-id", std::string(limits::max_run_id_length + 1, 'r')}),
                {"INVALID_RUN_ID",
                 {"run id", std::to_string(limits::max_run_id_length + 1),
                  std::to_string(limits::max_run_id_length)}});
}

TEST_CASE("an empty run id is refused with INVALID_RUN_ID", "[system][limits]") {
  check_refused(run_good({"--run-id", ""}), {"INVALID_RUN_ID", {"run id", "empty"}});
}

TEST_CASE("a run id with characters outside [A-Za-z0-9._:~-] is refused with INVALID_RUN_ID",
          "[system][limits]") {
  for (std::string bad : {"has space", "slash/id", "semi;colon", "star*", "ümlaut", "~home", "chain~1"}) {
    INFO("run id " << bad);
    check_refused(run_good({"--run-id", bad}), {"INVALID_RUN_ID", {"run id"}});
  }
}

TEST_CASE("a duplicate run id is refused with INVALID_RUN_ID and leaves the first run alone",
          "[system][limits]") {
  sandbox sb;
  seed_run(sb);
  auto before = sb.inspect("seed");
  auto events_before = sb.events("seed");

  auto t = sb.cli({"run", sb.write("wf.json", good_workflow()), "--run-id", "seed"});
  check_text_refusal(t, {"INVALID_RUN_ID", {"seed", "already exists"}});
  auto j = sb.cli_json({"run", sb.write("wf.json", good_workflow()), "--run-id", "seed"});
  check_json_refusal(j, {"INVALID_RUN_ID", {"seed"}});

  CHECK(sb.runs().size() == 1);
  CHECK(sb.inspect("seed") == before);
  CHECK(sb.events("seed") == events_before);
}

// ---------------------------------------------------------- workflow path

TEST_CASE("a workflow path one byte over max_workflow_path_bytes is refused with "
          "INVALID_ARGUMENT",
          "[system][limits]") {
  auto make = [](const sandbox& sb) {
    std::string path = sb.dir().path() + "/";
    path += std::string(limits::max_workflow_path_bytes + 1 - path.size(), 'w');
    REQUIRE(path.size() == limits::max_workflow_path_bytes + 1);
    return std::vector<std::string>{"run", path};
  };
  check_refused(make, {"INVALID_ARGUMENT",
                       {"workflow path", std::to_string(limits::max_workflow_path_bytes + 1),
                        std::to_string(limits::max_workflow_path_bytes)}});
}

TEST_CASE("a long workflow path below the limit is accepted", "[system][limits]") {
  sandbox sb;
  sb.write("wf.json", good_workflow());
  // The kernel's PATH_MAX (4096 with the terminating NUL) caps what can be
  // opened; stay a little below both it and our limit.
  std::size_t target = std::min<std::size_t>(limits::max_workflow_path_bytes, 4095) - 1;
  std::string path = sb.dir().path() + "/";
  while (path.size() + 2 + std::string("wf.json").size() <= target)
    path += "./";
  path += "wf.json";
  REQUIRE(path.size() <= limits::max_workflow_path_bytes);
  auto r = sb.cli({"run", path, "--run-id", "long-path"});
  INFO(r);
  CHECK(r.exit_code == 0);
}

TEST_CASE("a missing workflow file is refused with INVALID_WORKFLOW naming the file",
          "[system][workflow]") {
  check_refused(
      [](const sandbox& sb) {
        return std::vector<std::string>{"run", sb.file("does-not-exist.json")};
      },
      {"INVALID_WORKFLOW", {"does-not-exist.json"}});
}

TEST_CASE("a workflow file that is not JSON is refused with INVALID_WORKFLOW naming the file",
          "[system][workflow]") {
  check_refused(
      [](const sandbox& sb) {
        return std::vector<std::string>{"run", sb.write("broken.json", std::string{"{\"name\": "})};
      },
      {"INVALID_WORKFLOW", {"broken.json", "JSON"}});
}

// ----------------------------------------------------------------- input

TEST_CASE("input that is not JSON is refused with INVALID_INPUT", "[system][input]") {
  check_refused(run_good({"--input", "{not json"}), {"INVALID_INPUT", {"JSON"}});
}

TEST_CASE("input that is not a JSON object is refused with INVALID_INPUT", "[system][input]") {
  for (std::string text : {"[1, 2]", "\"text\"", "42", "null"}) {
    INFO("input " << text);
    check_refused(run_good({"--input", text}), {"INVALID_INPUT", {"object"}});
  }
}

TEST_CASE("a task id of exactly the node id limit is accepted", "[system][workflow]") {
  sandbox sb;
  std::string id(smithers::util::max_node_id_length, 'n');
  id.replace(0, 4, "a-b_");
  json wf = {{"name", "long-id"}, {"root", {{"task", id}, {"value", {{"ok", true}}}}}};
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "long-id"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out_json()["outputs"][id] == json{{"ok", true}});
}

TEST_CASE("input that is not valid UTF-8 is refused with INVALID_INPUT", "[system][input]") {
  check_refused(run_with_input_file("{\"s\": \"\xff\xfe\"}"), {"INVALID_INPUT", {"input"}});
}

TEST_CASE("a workflow file that is not valid UTF-8 is refused with INVALID_WORKFLOW",
          "[system][workflow]") {
  check_refused(
      [](const sandbox& sb) {
        return std::vector<std::string>{
            "run", sb.write("latin1.json", std::string{"{\"name\": \"\xff\"}"})};
      },
      {"INVALID_WORKFLOW", {"latin1.json"}});
}

TEST_CASE("errors under --format json print bytes that are not UTF-8 as JSON, without crashing",
          "[system][args]") {
  sandbox sb;
  seed_run(sb);
  const std::string bad = "bo\xffgus";
  struct probe {
    std::vector<std::string> args;
    std::string code;
  };
  for (const auto& p :
       {probe{{"ps", "--status", bad}, "INVALID_ARGUMENT"},
        probe{{"inspect", bad}, "RUN_NOT_FOUND"}, probe{{"logs", bad}, "RUN_NOT_FOUND"}}) {
    INFO("smithers --format json " << p.args[0]);
    auto r = sb.cli_json(p.args);
    INFO(r);
    CHECK(r.exit_code == 4);
    if (r.exit_code == 4) CHECK(r.out_json()["error"]["code"] == p.code);
  }
  CHECK(sb.runs().size() == 1);
}

TEST_CASE("an --input @file that does not exist is refused with INVALID_INPUT naming it",
          "[system][input]") {
  check_refused(
      [](const sandbox& sb) {
        return std::vector<std::string>{"run", sb.write("wf.json", good_workflow()), "--input",
                                        "@" + sb.file("no-such-input.json")};
      },
      {"INVALID_INPUT", {"no-such-input.json"}});
}

TEST_CASE("input from stdin is read with --input -", "[system][input]") {
  sandbox sb;
  command_options opts;
  opts.stdin_data = R"({"from": "stdin"})";
  auto r = sb.cli_json({"run", sb.write("wf.json", good_workflow()), "--input", "-"}, opts);
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out_json()["run"]["input"] == json{{"from", "stdin"}});
}

TEST_CASE("input of more than max_input_bytes is refused with INVALID_INPUT", "[system][input]") {
  // Many strings, each within the string limit, adding up to over the size limit.
  json big = json::object();
  std::size_t piece = limits::max_input_string_bytes / 2;
  for (std::size_t i = 0; big.dump().size() <= limits::max_input_bytes; ++i)
    big["k" + std::to_string(i)] = std::string(piece, 'x');
  REQUIRE(big.dump().size() > limits::max_input_bytes);

  SECTION("from a file") {
    check_refused(run_with_input_file(big.dump()),
                  {"INVALID_INPUT", {"$", std::to_string(limits::max_input_bytes)}});
  }
  SECTION("from stdin") {
    refusal want{"INVALID_INPUT", {"$", std::to_string(limits::max_input_bytes)}};
    want.opts.stdin_data = big.dump();
    check_refused(run_good({"--input", "-"}), want);
  }
}

TEST_CASE("input just under max_input_bytes is accepted", "[system][input]") {
  json big = json::object();
  std::size_t piece = limits::max_input_string_bytes / 2;
  for (std::size_t i = 0; big.dump().size() + piece + 16 <= limits::max_input_bytes; ++i)
    big["k" + std::to_string(i)] = std::string(piece, 'x');
  // top up to exactly the limit
  std::size_t room = limits::max_input_bytes - big.dump().size();
  REQUIRE(room > 8);
  big["z"] = "";
  std::size_t fill = limits::max_input_bytes - big.dump().size();
  big["z"] = std::string(fill, 'y');
  REQUIRE(big.dump().size() == limits::max_input_bytes);
  check_input_accepted(big);
}

TEST_CASE("input nesting of max_input_depth is accepted and one more level is refused",
          "[system][input]") {
  check_input_accepted(nested(limits::max_input_depth));
  check_refused(run_with_input_file(nested(limits::max_input_depth + 1).dump()),
                {"INVALID_INPUT", {"$.d", "depth", std::to_string(limits::max_input_depth)}});
}

TEST_CASE("an input array of max_input_array_items is accepted and one more item is refused",
          "[system][input]") {
  check_input_accepted(array_of(limits::max_input_array_items));
  check_refused(run_with_input_file(array_of(limits::max_input_array_items + 1).dump()),
                {"INVALID_INPUT",
                 {"$.items", std::to_string(limits::max_input_array_items + 1),
                  std::to_string(limits::max_input_array_items)}});
}

TEST_CASE("an input string of max_input_string_bytes is accepted and one more byte is refused",
          "[system][input]") {
  check_input_accepted(string_of(limits::max_input_string_bytes));
  check_refused(run_with_input_file(string_of(limits::max_input_string_bytes + 1).dump()),
                {"INVALID_INPUT",
                 {"$.s", std::to_string(limits::max_input_string_bytes + 1),
                  std::to_string(limits::max_input_string_bytes)}});
}

TEST_CASE("input failing the workflow's input schema is refused with INVALID_INPUT naming $.repo",
          "[system][input]") {
  auto with_input = [](std::string input) -> args_fn {
    return [input](const sandbox& sb) {
      return std::vector<std::string>{"run", sb.write("wf.json", repo_workflow()), "--input",
                                      input};
    };
  };
  check_refused(with_input(R"({"repo": 5})"), {"INVALID_INPUT", {"$.repo"}});
  check_refused(with_input(R"({"repo": ""})"), {"INVALID_INPUT", {"$.repo"}});
  check_refused(with_input(R"({"other": "x"})"), {"INVALID_INPUT", {"repo"}});

  sandbox sb;
  auto ok =
      sb.cli({"run", sb.write("wf.json", repo_workflow()), "--input", R"({"repo": "smithers"})"});
  INFO(ok);
  CHECK(ok.exit_code == 0);
}

// ------------------------------------------------------------- arguments

TEST_CASE("run --max-concurrency 0, -1, empty, hex or huge is refused with INVALID_ARGUMENT",
          "[system][args]") {
  for (std::string n : {"0", "-1", "", "0x10", "1e3", "99999999999999999999", "1000000000001"}) {
    INFO("--max-concurrency " << n);
    check_refused(run_good({"--max-concurrency", n}),
                  {"INVALID_ARGUMENT", {"--max-concurrency", "from 1 to 1000000000000", n}});
  }
  for (std::string f : {"", "-1", "x", "0x1"}) {
    INFO("--frame " << f);
    check_refused(
        [f](const sandbox&) { return std::vector<std::string>{"fork", "any", "--frame", f}; },
        {"INVALID_ARGUMENT", {"--frame must be an integer from 0"}});
  }
  sandbox sb;
  auto ok = sb.cli({"run", sb.write("wf.json", good_workflow()), "--max-concurrency", "1"});
  INFO(ok);
  CHECK(ok.exit_code == 0);
}

TEST_CASE("an unknown command-line option is refused with INVALID_ARGUMENT", "[system][args]") {
  check_refused(run_good({"--bogus-option"}), {"INVALID_ARGUMENT", {"--bogus-option"}});
  check_refused(
      [](const sandbox& sb) {
        return std::vector<std::string>{"--bogus-global", "run",
                                        sb.write("wf.json", good_workflow())};
      },
      {"INVALID_ARGUMENT", {"--bogus-global"}});
}

TEST_CASE("an unknown subcommand is refused with INVALID_ARGUMENT naming it", "[system][args]") {
  check_refused([](const sandbox&) { return std::vector<std::string>{"frobnicate"}; },
                {"INVALID_ARGUMENT", {"frobnicate"}});
}

TEST_CASE("a missing required argument is refused with INVALID_ARGUMENT", "[system][args]") {
  check_refused([](const sandbox&) { return std::vector<std::string>{"run"}; },
                {"INVALID_ARGUMENT", {"workflow"}});
  check_refused([](const sandbox&) { return std::vector<std::string>{"inspect"}; },
                {"INVALID_ARGUMENT", {"run_id"}});
}

// ------------------------------------------------------- workflow files

namespace {

struct workflow_case {
  const char* what;
  json doc;
  std::vector<std::string> fragments; // in the message: the JSON path and the culprit
};

std::vector<workflow_case> bad_workflows() {
  auto wrap = [](json root) { return json{{"name", "bad"}, {"root", std::move(root)}}; };
  auto seq = [&](json a, json b) { return wrap(json{{"sequence", json::array({a, b})}}); };
  json ok_a = {{"task", "a"}, {"value", {{"ok", true}}}};
  std::vector<workflow_case> cases;

  cases.push_back(
      {"unknown node kind", seq(ok_a, json{{"stage", json::array()}}), {"root.sequence[1]"}});
  cases.push_back(
      {"two kinds in one node",
       seq(ok_a, json{{"task", "b"}, {"value", json::object()}, {"sequence", json::array()}}),
       {"root.sequence[1]", "task", "sequence"}});
  cases.push_back({"duplicate task ids", seq(ok_a, ok_a), {"root.sequence[1].task", "\"a\""}});
  cases.push_back({"a task id with a character outside [A-Za-z0-9_-]",
                   seq(ok_a, json{{"task", "has.dot"}, {"value", json::object()}}),
                   {"root.sequence[1].task", "has.dot"}});
  cases.push_back(
      {"a task id one character over the limit",
       seq(ok_a, json{{"task", std::string(smithers::util::max_node_id_length + 1, 'n')},
                      {"value", json::object()}}),
       {"root.sequence[1].task"}});
  cases.push_back({"an empty task id",
                   seq(ok_a, json{{"task", ""}, {"value", json::object()}}),
                   {"root.sequence[1].task"}});
  cases.push_back({"unknown output key",
                   seq(ok_a, json{{"task", "b"}, {"value", json::object()}, {"output", "nope"}}),
                   {"root.sequence[1].output", "nope"}});
  cases.push_back(
      {"needs naming no node",
       seq(ok_a, json{{"task", "b"}, {"value", json::object()}, {"needs", json::array({"ghost"})}}),
       {"root.sequence[1].needs[0]", "ghost"}});
  cases.push_back(
      {"a needs cycle",
       wrap(json{
           {"parallel",
            json::array(
                {json{{"task", "x"}, {"value", json::object()}, {"needs", json::array({"y"})}},
                 json{{"task", "y"}, {"value", json::object()}, {"needs", json::array({"x"})}}})}}),
       {"root.parallel[", "cycle"}});
  cases.push_back({"bad predicate in skip_if",
                   seq(ok_a, json{{"task", "b"},
                                  {"value", json::object()},
                                  {"skip_if", {{"output", "a.ok"}, {"equalz", true}}}}),
                   {"root.sequence[1].skip_if"}});
  cases.push_back({"retries -1",
                   seq(ok_a, json{{"task", "b"}, {"value", json::object()}, {"retries", -1}}),
                   {"root.sequence[1].retries"}});
  cases.push_back(
      {"timeout_ms 0",
       seq(ok_a, json{{"task", "b"}, {"run", json::array({"true"})}, {"timeout_ms", 0}}),
       {"root.sequence[1].timeout_ms"}});
  cases.push_back(
      {"max_concurrency 0 in a group",
       seq(ok_a, json{{"parallel", json::array({json{{"task", "b"}, {"value", json::object()}}})},
                      {"max_concurrency", 0}}),
       {"root.sequence[1].max_concurrency"}});
  {
    json doc = wrap(ok_a);
    doc["max_concurrency"] = 0;
    cases.push_back({"max_concurrency 0 at top level", doc, {"max_concurrency", "positive"}});
  }
  cases.push_back({"unknown task key",
                   seq(ok_a, json{{"task", "b"}, {"value", json::object()}, {"colour", "red"}}),
                   {"root.sequence[1].colour", "colour"}});
  cases.push_back({"template with an unclosed {{",
                   seq(ok_a, json{{"task", "b"}, {"run", json::array({"echo", "{{input.x"})}}),
                   {"root.sequence[1].run[1]"}});
  cases.push_back({"template naming outputs of an unknown node",
                   seq(ok_a, json{{"task", "b"}, {"run", "echo {{outputs.ghost.x}}"}}),
                   {"root.sequence[1].run", "ghost"}});
  cases.push_back({"approval without a title",
                   seq(ok_a, json{{"approval", "l"}}),
                   {"root.sequence[1]", "title"}});
  cases.push_back({"timer until without a zone",
                   seq(ok_a, json{{"timer", "t"}, {"until", "2030-01-01T00:00:00"}}),
                   {"root.sequence[1].until", "ISO-8601"}});
  cases.push_back({"signal with a bad name",
                   seq(ok_a, json{{"signal", "s"}, {"name", "a b"}}),
                   {"root.sequence[1].name", "signal name"}});
  cases.push_back({"loop whose until reads no task",
                   seq(ok_a, json{{"loop", "l"},
                                  {"body", {{"task", "c"}, {"value", json::object()}}},
                                  {"until", {{"output", "ghost.done"}, {"equals", true}}}}),
                   {"root.sequence[1].until", "ghost"}});
  cases.push_back({"loop with on_max_reached neither fail nor return-last",
                   seq(ok_a, json{{"loop", "l"},
                                  {"body", {{"task", "c"}, {"value", json::object()}}},
                                  {"on_max_reached", "retry"}}),
                   {"root.sequence[1].on_max_reached", "return-last"}});
  cases.push_back({"loop with continue_as_new_every 0",
                   seq(ok_a, json{{"loop", "l"},
                                  {"body", {{"task", "c"}, {"value", json::object()}}},
                                  {"continue_as_new_every", 0}}),
                   {"root.sequence[1].continue_as_new_every", "positive"}});
  cases.push_back({"loop with max_iterations 0",
                   seq(ok_a, json{{"loop", "l"},
                                  {"body", {{"task", "c"}, {"value", json::object()}}},
                                  {"max_iterations", 0}}),
                   {"root.sequence[1].max_iterations", "positive"}});
  cases.push_back({"direct on a command task",
                   seq(ok_a, json{{"task", "b"}, {"run", {"echo", "{}"}}, {"direct", true}}),
                   {"root.sequence[1].direct", "only compute tasks are called directly"}});
  cases.push_back({"direct that is not a boolean",
                   seq(ok_a, json{{"task", "b"}, {"compute", "noop"}, {"direct", 1}}),
                   {"root.sequence[1].direct", "boolean"}});
  cases.push_back({"unknown compute name",
                   seq(ok_a, json{{"task", "b"}, {"compute", "no_such_function"}}),
                   {"root.sequence[1].compute", "no_such_function"}});
  return cases;
}

} // namespace

TEST_CASE("run refuses each invalid workflow file with INVALID_WORKFLOW and its JSON path",
          "[system][workflow]") {
  for (const auto& c : bad_workflows()) {
    DYNAMIC_SECTION(c.what) {
      check_refused(
          [&](const sandbox& sb) {
            return std::vector<std::string>{"run", sb.write("bad.json", c.doc)};
          },
          {"INVALID_WORKFLOW", c.fragments});
    }
  }
}

TEST_CASE("validate reports the same problems as run, exit 4", "[system][workflow]") {
  for (const auto& c : bad_workflows()) {
    DYNAMIC_SECTION(c.what) {
      check_refused(
          [&](const sandbox& sb) {
            return std::vector<std::string>{"validate", sb.write("bad.json", c.doc)};
          },
          {"INVALID_WORKFLOW", c.fragments});
    }
  }
}

TEST_CASE("graph refuses an invalid workflow file too", "[system][workflow]") {
  for (const auto& c : bad_workflows()) {
    // Which compute functions exist is a question for running, not for
    // drawing the plan.
    if (std::string{c.what} == "unknown compute name") continue;
    DYNAMIC_SECTION(c.what) {
      sandbox sb;
      auto r = sb.cli({"graph", sb.write("bad.json", c.doc)});
      check_text_refusal(r, {"INVALID_WORKFLOW", c.fragments});
    }
  }
}

TEST_CASE("validate says ok for a good workflow file and writes nothing", "[system][workflow]") {
  sandbox sb;
  auto wf = sb.write("good.json", good_workflow());
  auto r = sb.cli({"validate", wf});
  INFO(r);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.out, "ok"));
  auto j = sb.cli_json({"validate", wf});
  INFO(j);
  CHECK(j.exit_code == 0);
  CHECK(j.out_json()["valid"] == true);
  CHECK_FALSE(any_db_file(sb));

  auto example = sb.cli({"validate", source_dir() + "/examples/release-notes.json"});
  INFO(example);
  CHECK(example.exit_code == 0);
}

TEST_CASE("graph prints the plan as a tree, and as a digraph with --format dot",
          "[system][workflow]") {
  sandbox sb;
  auto wf = sb.write("wf.json", json::parse(R"({
    "name": "shape",
    "root": {"sequence": [
      {"task": "first", "value": {"ok": true}},
      {"parallel": [
        {"task": "left", "run": ["true"]},
        {"task": "right", "compute": "noop"}
      ], "max_concurrency": 2},
      {"task": "last", "value": {}, "needs": ["left"]}
    ]}
  })"));

  auto text = sb.cli({"graph", wf});
  INFO(text);
  REQUIRE(text.exit_code == 0);
  CHECK(contains(text.out, "shape"));
  CHECK(contains(text.out, "sequence"));
  CHECK(contains(text.out, "parallel"));
  for (const char* id : {"first", "left", "right", "last"})
    CHECK(contains(text.out, id));
  // the tree keeps document order
  CHECK(text.out.find("first") < text.out.find("left"));
  CHECK(text.out.find("left") < text.out.find("right"));
  CHECK(text.out.find("right") < text.out.find("last"));

  {
    auto dot = sb.cli({"graph", wf, "--format", "dot"});
    INFO(dot);
    REQUIRE(dot.exit_code == 0);
    CHECK(dot.out.rfind("digraph", 0) == 0);
    CHECK(contains(dot.out, "\"first\" -> \"left\""));
    CHECK(contains(dot.out, "\"first\" -> \"right\""));
    CHECK(contains(dot.out, "\"left\" -> \"last\""));
    CHECK(contains(dot.out, "}"));
    // Graphviz reads it, when it is installed
    if (file_exists("/usr/bin/dot")) {
      command_options opts;
      opts.stdin_data = dot.out;
      auto gv = run_command({"dot", "-Tplain"}, opts);
      INFO(gv);
      CHECK(gv.exit_code == 0);
      // labels break lines with DOT's \n escape, not a literal backslash
      CHECK_FALSE(contains(dot.out, "\\\\n"));
    }
  }
  CHECK_FALSE(any_db_file(sb));
}
