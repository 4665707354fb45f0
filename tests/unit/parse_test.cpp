// Workflow files: what parses, and every kind of problem with its JSON path.
#include <catch2/catch.hpp>

#include "format/parse.hpp"
#include "format/validate.hpp"
#include "support/temp_dir.hpp"
#include "util/ids.hpp"
#include "workflow/render.hpp"

#include <smithers/limits.hpp>

#include <fstream>
#include <map>
#include <set>

using namespace smithers;
using namespace smithers::spec;

namespace {

json wf_with(json root) {
  return {{"name", "t"}, {"root", std::move(root)}};
}

json task(const std::string& id) {
  return {{"task", id}, {"value", json::object()}};
}

} // namespace

TEST_CASE("a workflow with every supported kind and option parses") {
  json doc = R"({
    "name": "full",
    "max_concurrency": 4,
    "input": {"type": "object", "properties": {"repo": {"type": "string"}}},
    "outputs": {"count": {"type": "object", "required": ["n"],
                          "properties": {"n": {"type": "integer"}}}},
    "root": {"sequence": [
      {"task": "count", "run": ["sh", "-c", "echo '{\"n\": 3}'"], "output": "count"},
      {"parallel": [
        {"task": "a", "value": {"ok": true}, "label": "static"},
        {"task": "b", "run": "./b.sh {{outputs.count.n}}", "retries": 2,
         "retry": {"initial_ms": 200, "backoff": 2.0, "max_ms": 5000, "jitter": 0.1},
         "timeout_ms": 1000, "heartbeat_timeout_ms": 500, "env": {"N": "{{outputs.count.n}}"},
         "cwd": "/tmp", "continue_on_fail": true,
         "skip_if": {"input": "dry_run", "equals": true}},
        {"task": "c", "compute": "noop", "needs": ["a"],
         "output_schema": {"type": "object"}}
      ], "max_concurrency": 2}
    ]}
  })"_json;
  auto res = parse_workflow(doc);
  INFO(join(res.errors));
  REQUIRE(res.wf);
  const workflow& wf = *res.wf;
  CHECK(wf.name == "full");
  CHECK(wf.max_concurrency == 4);
  CHECK(wf.output_schemas.count("count") == 1);
  REQUIRE(wf.root.kind == node_kind::sequence);
  REQUIRE(wf.root.children.size() == 2);
  const node& count = wf.root.children[0];
  CHECK(count.id == "count");
  CHECK(count.task->kind == task_kind::command);
  CHECK_FALSE(count.task->use_shell);
  CHECK(count.task->argv.size() == 3);
  const node& group = wf.root.children[1];
  CHECK(group.kind == node_kind::parallel);
  CHECK(group.max_concurrency == 2);
  const task_spec& b = *group.children[1].task;
  CHECK(b.use_shell);
  CHECK(b.retries == 2);
  REQUIRE(b.retry);
  CHECK(b.retry->initial_ms == 200);
  CHECK(b.retry->jitter == Approx(0.1));
  CHECK(b.timeout_ms == 1000);
  CHECK(b.heartbeat_timeout_ms == 500);
  CHECK(b.env.at("N") == "{{outputs.count.n}}");
  CHECK(b.continue_on_fail);
  CHECK(b.skip_if.is_object());
  const task_spec& c = *group.children[2].task;
  CHECK(c.kind == task_kind::compute);
  CHECK(c.compute_name == "noop");
  CHECK(c.needs == std::vector<std::string>{"a"});
  CHECK(res.hash.size() == 64);
}

TEST_CASE("the canonical tree and its hash depend only on the workflow") {
  auto a = parse_workflow(wf_with({{"sequence", {task("x"), task("y")}}}));
  auto b = parse_workflow(wf_with({{"sequence", {task("x"), task("y")}}}));
  auto c = parse_workflow(wf_with({{"sequence", {task("y"), task("x")}}}));
  REQUIRE(a.wf);
  REQUIRE(b.wf);
  REQUIRE(c.wf);
  render_context ctx;
  auto ra = render(std::make_shared<const workflow>(*a.wf), ctx);
  auto rb = render(std::make_shared<const workflow>(*b.wf), ctx);
  auto rc = render(std::make_shared<const workflow>(*c.wf), ctx);
  CHECK(ra.hash == rb.hash);
  CHECK(ra.hash != rc.hash);
  CHECK(json::parse(*ra.canonical)["sequence"][0]["task"] == "x");
}

TEST_CASE("every workflow-file problem is reported with its JSON path") {
  struct row {
    const char* name;
    json doc;
    std::string path;
    std::string message_part;
  };
  std::vector<row> rows{
      {"not an object", json::array(), "", "must be a JSON object"},
      {"no root", {{"name", "x"}}, "root", "needs a root node"},
      {"unknown top-level key", {{"root", task("a")}, {"rooot", 1}}, "rooot", "unknown top-level"},
      {"unknown node kind", wf_with({{"sequence", {{{"stage", "a"}}}}}), "root.sequence[0]",
       "node has no kind"},
      {"two kinds in one node", wf_with({{"sequence", json::array()}, {"parallel", json::array()}}),
       "root", "more than one kind"},
      {"approval without a title", wf_with({{"approval", "ok"}}), "root",
       "an approval needs \"title\""},
      {"approval with a bad on_deny",
       wf_with({{"approval", "ok"}, {"title", "t"}, {"on_deny", "maybe"}}), "root.on_deny",
       "\"fail\", \"continue\" or \"skip\""},
      {"approval with a task key", wf_with({{"approval", "ok"}, {"title", "t"}, {"run", "true"}}),
       "root.run", "unknown key \"run\" in an approval node"},
      {"timer without a duration or until", wf_with({{"timer", "t"}}), "root",
       "one of \"duration_ms\" or \"until\""},
      {"timer with both",
       wf_with({{"timer", "t"}, {"duration_ms", 5}, {"until", "2030-01-01T00:00:00Z"}}), "root",
       "one of \"duration_ms\" or \"until\""},
      {"timer until without a zone", wf_with({{"timer", "t"}, {"until", "2030-01-01T00:00:00"}}),
       "root.until", "ISO-8601"},
      {"timer until not a time", wf_with({{"timer", "t"}, {"until", "tomorrow"}}), "root.until",
       "ISO-8601"},
      {"timer with retries", wf_with({{"timer", "t"}, {"duration_ms", 5}, {"retries", 2}}),
       "root.retries", "unknown key \"retries\" in a timer node"},
      {"signal without a name", wf_with({{"signal", "s"}}), "root", "a signal needs \"name\""},
      {"timer with a zero duration", wf_with({{"timer", "t"}, {"duration_ms", 0}}),
       "root.duration_ms", "must be a positive integer"},
      {"signal name with a space", wf_with({{"signal", "s"}, {"name", "ci done"}}), "root.name",
       "letters, digits"},
      {"signal name of 129 bytes", wf_with({{"signal", "s"}, {"name", std::string(129, 'n')}}),
       "root.name", "1 to 128 bytes"},
      {"signal timeout of zero", wf_with({{"signal", "s"}, {"name", "n"}, {"timeout_ms", 0}}),
       "root.timeout_ms", "must be a positive integer"},
      {"signal name not a string", wf_with({{"signal", "s"}, {"name", 3}}), "root.name",
       "must be a string"},
      {"gate that continues",
       wf_with({{"task", "a"},
                {"value", json::object()},
                {"needs_approval", {{"on_deny", "continue"}}}}),
       "root.needs_approval.on_deny", "a gate cannot continue"},
      {"gate with an unknown key",
       wf_with({{"task", "a"}, {"value", json::object()}, {"needs_approval", {{"who", "me"}}}}),
       "root.needs_approval.who", "unknown key"},
      {"gate not a boolean or object",
       wf_with({{"task", "a"}, {"value", json::object()}, {"needs_approval", "yes"}}),
       "root.needs_approval", "true, false or an object"},
      {"cache a string", wf_with({{"task", "a"}, {"run", "true"}, {"cache", "yes"}}), "root.cache",
       "true, false or an object"},
      {"cache a number", wf_with({{"task", "a"}, {"run", "true"}, {"cache", 1}}), "root.cache",
       "true, false or an object"},
      {"cache null", wf_with({{"task", "a"}, {"run", "true"}, {"cache", nullptr}}), "root.cache",
       "true, false or an object"},
      {"cache with an unknown key",
       wf_with({{"task", "a"}, {"run", "true"}, {"cache", {{"ttl", 60}}}}), "root.cache.ttl",
       "unknown key \"ttl\" in cache (by, version)"},
      {"cache with an unknown key beside by",
       wf_with({{"task", "a"}, {"run", "true"}, {"cache", {{"by", "x"}, {"key", "y"}}}}),
       "root.cache.key", "unknown key \"key\" in cache (by, version)"},
      {"cache by not a string", wf_with({{"task", "a"}, {"run", "true"}, {"cache", {{"by", 3}}}}),
       "root.cache.by", "must be a string"},
      {"cache by an array", wf_with({{"task", "a"}, {"compute", "f"}, {"cache", {{"by", {"x"}}}}}),
       "root.cache.by", "must be a string"},
      {"cache version not a string",
       wf_with({{"task", "a"}, {"run", "true"}, {"cache", {{"version", 2}}}}), "root.cache.version",
       "must be a string"},
      {"cache on a value task",
       wf_with({{"task", "a"}, {"value", json::object()}, {"cache", true}}), "root.cache",
       "only command, compute and agent tasks are cached"},
      {"cache object on a value task",
       wf_with({{"task", "a"}, {"value", json::object()}, {"cache", {{"version", "v"}}}}),
       "root.cache",
       "only command, compute and agent tasks are cached (a value has nothing to run)"},
      {"cache on an approval", wf_with({{"approval", "ok"}, {"title", "t"}, {"cache", true}}),
       "root.cache", "unknown key \"cache\" in an approval node"},
      {"cache on a timer", wf_with({{"timer", "t"}, {"duration_ms", 5}, {"cache", true}}),
       "root.cache", "unknown key \"cache\" in a timer node"},
      {"cache on a signal", wf_with({{"signal", "s"}, {"name", "n"}, {"cache", true}}),
       "root.cache", "unknown key \"cache\" in a signal node"},
      {"cache on a group", wf_with({{"sequence", {task("a")}}, {"cache", true}}), "root.cache",
       "unknown key \"cache\" in a sequence node"},
      {"loop without a body", wf_with({{"loop", "l"}}), "root", "a loop needs \"body\""},
      {"loop with an unknown key", wf_with({{"loop", "l"}, {"body", task("a")}, {"whilst", 1}}),
       "root.whilst", "unknown key"},
      {"loop on_max_reached not fail or return-last",
       wf_with({{"loop", "l"}, {"body", task("a")}, {"on_max_reached", "explode"}}),
       "root.on_max_reached", "\"fail\" or \"return-last\""},
      {"loop max_iterations not an integer",
       wf_with({{"loop", "l"}, {"body", task("a")}, {"max_iterations", "many"}}),
       "root.max_iterations", "integer"},
      {"loop max_iterations zero",
       wf_with({{"loop", "l"}, {"body", task("a")}, {"max_iterations", 0}}), "root.max_iterations",
       "positive integer"},
      {"loop max_iterations beyond the limit",
       wf_with({{"loop", "l"}, {"body", task("a")}, {"max_iterations", 2000000000}}),
       "root.max_iterations", "at most 1000000000"},
      {"loop until not a predicate",
       wf_with({{"loop", "l"}, {"body", task("a")}, {"until", {{"output", "a.ok"}, {"near", 1}}}}),
       "root.until", ""},
      {"loop until reading an unknown node",
       wf_with({{"loop", "l"},
                {"body", task("a")},
                {"until", {{"output", "ghost.ok"}, {"equals", true}}}}),
       "root.until", "ghost"},
      {"loop id not an id", wf_with({{"loop", "a b"}, {"body", task("a")}}), "root.loop",
       "must be 1-128 characters"},
      {"loop id shared with a task", wf_with({{"loop", "a"}, {"body", task("a")}}), "root.loop",
       "also a task id"},
      {"continue_as_new_every zero",
       wf_with({{"loop", "l"}, {"body", task("a")}, {"continue_as_new_every", 0}}),
       "root.continue_as_new_every", "positive integer"},
      {"continue_as_new_every not an integer",
       wf_with({{"loop", "l"}, {"body", task("a")}, {"continue_as_new_every", "often"}}),
       "root.continue_as_new_every", "integer"},
      {"a task reading a loop's task from beside the loop",
       wf_with({{"parallel",
                 {{{"task", "early"}, {"value", json::object()}, {"needs", {"inner"}}},
                  {{"loop", "l"}, {"body", task("inner")}}}}}),
       "root.parallel[0].needs[0]", "inside loop \"l\""},
      {"a loop's id inside a for_each without a template",
       wf_with(
           {{"for_each", "each"},
            {"items", "input.xs"},
            {"as", "x"},
            {"body", {{"loop", "l"}, {"body", {{"task", "t-{{x}}"}, {"value", json::object()}}}}}}),
       "root.body.loop", "must use {{x...}}"},
      {"group children not an array", wf_with({{"parallel", task("a")}}), "root.parallel",
       "must be an array"},
      {"unknown key in a group", wf_with({{"sequence", json::array()}, {"max_concurrency", 2}}),
       "root.max_concurrency", "unknown key"},
      {"group max_concurrency zero", wf_with({{"parallel", {task("a")}}, {"max_concurrency", 0}}),
       "root.max_concurrency", "positive integer"},
      {"top-level max_concurrency negative",
       {{"max_concurrency", -2}, {"root", task("a")}},
       "max_concurrency",
       "positive integer"},
      {"task without body", wf_with({{"task", "a"}}), "root", "one of run, value, compute"},
      {"task with two bodies", wf_with({{"task", "a"}, {"value", json::object()}, {"run", "x"}}),
       "root", "more than one"},
      {"task id with a dot", wf_with(task("a.b")), "root.task", "[A-Za-z0-9_-]"},
      {"task id empty", wf_with(task("")), "root.task", "must be 1-"},
      {"duplicate ids", wf_with({{"parallel", {task("a"), task("a")}}}), "root.parallel[1].task",
       "duplicate task id \"a\""},
      {"unknown task key", wf_with({{"task", "a"}, {"value", json::object()}, {"retires", 1}}),
       "root.retires", "unknown key"},
      {"value not an object", wf_with({{"task", "a"}, {"value", 3}}), "root.value",
       "must be a JSON object"},
      {"run of a number", wf_with({{"task", "a"}, {"run", 3}}), "root.run", "string (shell)"},
      {"run argv with a number", wf_with({{"task", "a"}, {"run", {"echo", 3}}}), "root.run[1]",
       "must be a string"},
      {"empty argv", wf_with({{"task", "a"}, {"run", json::array()}}), "root.run",
       "at least one element"},
      {"unknown output key",
       wf_with({{"task", "a"}, {"value", json::object()}, {"output", "nope"}}), "root.output",
       "unknown output key \"nope\""},
      {"bad output schema",
       wf_with({{"task", "a"}, {"value", json::object()}, {"output_schema", {{"type", "strin"}}}}),
       "root.output_schema", ""},
      {"needs naming no node",
       wf_with({{"parallel",
                 {task("a"), {{"task", "b"}, {"value", json::object()}, {"needs", {"ghost"}}}}}}),
       "root.parallel[1].needs[0]", "\"ghost\""},
      {"needs listing a task twice",
       wf_with({{"parallel",
                 {task("a"),
                  task("b"),
                  {{"task", "c"}, {"value", json::object()}, {"needs", {"a", "b", "a"}}}}}}),
       "root.parallel[2].needs[2]", "\"a\" is listed twice"},
      {"a long needs list naming a task twice", // checked with a set past 8 entries
       wf_with({{"parallel",
                 {task("a"),
                  task("b"),
                  {{"task", "c"},
                   {"value", json::object()},
                   {"needs", {"a", "b", "a", "b", "a", "b", "a", "b", "a", "b"}}}}}}),
       "root.parallel[2].needs[2]", "\"a\" is listed twice"},
      {"duplicate ids deep in the tree, with the first one's path",
       wf_with({{"sequence", {json{{"parallel", {task("x"), task("a")}}}, task("a")}}}),
       "root.sequence[1].task", "(also at root.sequence[0].parallel[1])"},
      {"needs itself", wf_with({{"task", "a"}, {"value", json::object()}, {"needs", {"a"}}}),
       "root.needs[0]", "cannot need itself"},
      {"needs cycle",
       wf_with({{"parallel",
                 {{{"task", "a"}, {"value", json::object()}, {"needs", {"b"}}},
                  {{"task", "b"}, {"value", json::object()}, {"needs", {"a"}}}}}}),
       "root.parallel", "cycle"},
      {"needs a task later in its sequence",
       wf_with({{"sequence",
                 {{{"task", "early"}, {"value", json::object()}, {"needs", {"late"}}},
                  json{{"parallel", {task("late")}}}}}}),
       "root.sequence[0].needs[0]", "comes after it in a sequence"},
      {"retries negative", wf_with({{"task", "a"}, {"value", json::object()}, {"retries", -1}}),
       "root.retries", ">= 0"},
      {"retries not an integer",
       wf_with({{"task", "a"}, {"value", json::object()}, {"retries", 1.5}}), "root.retries",
       "must be an integer"},
      // Found by the workflow fuzz target: casting 3e33 to int64 was undefined.
      {"max_concurrency far beyond int64 (a double)",
       wf_with({{"parallel", {task("a")}}, {"max_concurrency", 3e33}}), "root.max_concurrency",
       "must be an integer between 0 and 1000000000000, got 3e+33"},
      {"retries below int64's minimum",
       wf_with({{"task", "a"}, {"value", json::object()}, {"retries", -1e300}}), "root.retries",
       "must be an integer between 0 and"},
      {"timeout beyond int64 (an unsigned)",
       wf_with({{"task", "a"}, {"value", json::object()}, {"timeout_ms", 18446744073709551615ULL}}),
       "root.timeout_ms", "must be an integer between 0 and"},
      {"timeout zero", wf_with({{"task", "a"}, {"value", json::object()}, {"timeout_ms", 0}}),
       "root.timeout_ms", "positive integer"},
      {"heartbeat timeout negative",
       wf_with({{"task", "a"}, {"value", json::object()}, {"heartbeat_timeout_ms", -5}}),
       "root.heartbeat_timeout_ms", "positive integer"},
      {"retry backoff below one",
       wf_with({{"task", "a"}, {"value", json::object()}, {"retry", {{"backoff", 0.5}}}}),
       "root.retry.backoff", "from 1 to 1000"},
      {"retry unknown key",
       wf_with({{"task", "a"}, {"value", json::object()}, {"retry", {{"delay", 5}}}}),
       "root.retry.delay", "unknown key"},
      {"bad predicate",
       wf_with({{"task", "a"},
                {"value", json::object()},
                {"skip_if", {{"input", "x"}, {"matches", 1}}}}),
       "root.skip_if", ""},
      {"predicate naming an unknown node",
       wf_with({{"task", "a"},
                {"value", json::object()},
                {"skip_if", {{"output", "ghost.ok"}, {"equals", true}}}}),
       "root.skip_if", "\"ghost\""},
      {"unclosed template", wf_with({{"task", "a"}, {"run", "echo {{input.x"}}), "root.run", ""},
      {"template naming an unknown node",
       wf_with({{"task", "a"}, {"run", {"echo", "{{outputs.ghost.n}}"}}}), "root.run[1]",
       "\"ghost\""},
      {"env template naming an unknown node",
       wf_with({{"task", "a"}, {"run", "true"}, {"env", {{"X", "{{outputs.ghost}}"}}}}),
       "root.env.X", "\"ghost\""},
      {"env value not a string", wf_with({{"task", "a"}, {"run", "true"}, {"env", {{"X", 1}}}}),
       "root.env.X", "must be a string"},
      {"agent without prompt",
       wf_with({{"task", "a"}, {"agent", {{"id", "c"}, {"command", {"c"}}}}}), "root",
       "an agent task needs \"prompt\""},
      {"prompt without agent", wf_with({{"task", "a"}, {"run", {"true"}}, {"prompt", "x"}}), "root",
       "\"prompt\" belongs to agent tasks"},
      {"agent without command", wf_with({{"task", "a"}, {"agent", {{"id", "c"}}}, {"prompt", "p"}}),
       "root.agent", "an agent needs \"command\""},
      {"agent command not an array",
       wf_with(
           {{"task", "a"}, {"agent", {{"id", "c"}, {"command", "claude -p"}}}, {"prompt", "p"}}),
       "root.agent.command", "an array of strings"},
      {"agent unknown key",
       wf_with({{"task", "a"},
                {"agent", {{"id", "c"}, {"command", {"c"}}, {"temperature", 1}}},
                {"prompt", "p"}}),
       "root.agent.temperature", "unknown key \"temperature\" in an agent"},
      {"agent bad id",
       wf_with({{"task", "a"}, {"agent", {{"id", "a b"}, {"command", {"c"}}}}, {"prompt", "p"}}),
       "root.agent.id", "an agent id is 1-128 characters"},
      {"agent empty program",
       wf_with(
           {{"task", "a"}, {"agent", {{"id", "c"}, {"command", json::array()}}}, {"prompt", "p"}}),
       "root.agent.command", "needs a program"},
      {"agent command with a template",
       wf_with({{"task", "a"},
                {"agent", {{"id", "c"}, {"command", {"c", "--x={{input.x}}"}}}},
                {"prompt", "p"}}),
       "root.agent.command[1]", "takes {{prompt}} and {{model}} only, not {{input.x}}"},
      {"agent prompt in a shell script",
       wf_with({{"task", "a"},
                {"agent", {{"id", "c"}, {"command", {"sh", "-c", "claude -p {{prompt}}"}}}},
                {"prompt", "p"}}),
       "root.agent.command[2]", "a shell script cannot take {{prompt}}"},
      {"agent chain entry not an object",
       wf_with({{"task", "a"},
                {"agent", {{{"id", "c"}, {"command", {"c"}}}, "codex"}},
                {"prompt", "p"}}),
       "root.agent[1]", "an object (id, command, model, env)"},
      {"agent chain empty", wf_with({{"task", "a"}, {"agent", json::array()}, {"prompt", "p"}}),
       "root.agent", "at least one agent"},
      {"agent prompt unclosed template",
       wf_with(
           {{"task", "a"}, {"agent", {{"id", "c"}, {"command", {"c"}}}}, {"prompt", "x {{input"}}),
       "root.prompt", "unclosed"},
      {"worktree on a compute task",
       wf_with({{"task", "a"}, {"compute", "f"}, {"worktree", {{"path", "p"}}}}), "root.worktree",
       "only command and agent tasks run in a worktree"},
      {"worktree without path",
       wf_with({{"task", "a"}, {"run", {"true"}}, {"worktree", json::object()}}), "root.worktree",
       "a worktree needs \"path\""},
      {"worktree unknown key",
       wf_with({{"task", "a"}, {"run", {"true"}}, {"worktree", {{"path", "p"}, {"remove", true}}}}),
       "root.worktree.remove", "unknown key \"remove\" in worktree"},
      {"worktree base that is an option",
       wf_with(
           {{"task", "a"}, {"run", {"true"}}, {"worktree", {{"path", "p"}, {"base", "--orphan"}}}}),
       "root.worktree.base", "must be a git ref"},
      {"worktree not an object", wf_with({{"task", "a"}, {"run", {"true"}}, {"worktree", "wt"}}),
       "root.worktree", "an object (path, branch, base)"},
      {"empty compute name", wf_with({{"task", "a"}, {"compute", ""}}), "root.compute",
       "must not be empty"},
      {"input schema with an unknown keyword",
       {{"input", {{"typ", "object"}}}, {"root", task("a")}},
       "input",
       ""},
      // Certain before any run: refused at validation, not at run time.
      {"a value its own output_schema refuses",
       wf_with({{"task", "a"},
                {"value", {{"n", "three"}}},
                {"output_schema",
                 {{"type", "object"}, {"properties", {{"n", {{"type", "integer"}}}}}}}}),
       "root.value", "($.n: expected integer, got string)"},
      {"a value its named output schema refuses",
       {{"outputs", {{"count", {{"type", "object"}, {"required", {"n"}}}}}},
        {"root", {{"task", "a"}, {"value", json::object()}, {"output", "count"}}}},
       "root.value",
       "output schema \"count\""},
      {"an output_schema that is not for objects",
       wf_with({{"task", "a"}, {"run", "true"}, {"output_schema", {{"type", "array"}}}}),
       "root.output_schema.type", "must be \"object\""},
      {"a named output schema that is not for objects",
       {{"outputs", {{"list", {{"type", {"string", "null"}}}}}}, {"root", task("a")}},
       "outputs.list.type",
       "must be \"object\""},
      {"a template reading a task later in its sequence",
       wf_with({{"sequence",
                 {{{"task", "early"}, {"run", "echo {{outputs.late.n}}"}},
                  json{{"parallel", {task("late")}}}}}}),
       "root.sequence[0].run", "reads the output of \"late\", which comes after it"},
      {"an argv template reading a task in a later branch of a sequence",
       wf_with({{"sequence",
                 {json{{"parallel", {{{"task", "early"}, {"run", {"echo", "{{outputs.late}}"}}}}}},
                  json{{"sequence", {task("x"), task("late")}}}}}}),
       "root.sequence[0].parallel[0].run[1]", "comes after it"},
      {"an env template reading a later task",
       wf_with({{"sequence",
                 {{{"task", "early"}, {"run", "true"}, {"env", {{"N", "{{outputs.late.n}}"}}}},
                  task("late")}}}),
       "root.sequence[0].env.N", "comes after it"},
      {"branch without then",
       wf_with({{"branch", "b"}, {"if", {{"input", "x"}, {"exists", true}}}}), "root",
       "needs \"then\""},
      {"branch without if", wf_with({{"branch", "b"}, {"then", task("a")}}), "root",
       "needs \"if\""},
      {"unknown key in a branch",
       wf_with({{"branch", "b"},
                {"if", {{"input", "x"}, {"exists", true}}},
                {"then", task("a")},
                {"otherwise", task("c")}}),
       "root.otherwise", "unknown key"},
      {"branch id not a string",
       wf_with({{"branch", 3}, {"if", {{"input", "x"}, {"exists", true}}}, {"then", task("a")}}),
       "root.branch", "must be a string"},
      {"branch id that is also a task id",
       wf_with({{"branch", "a"}, {"if", {{"input", "x"}, {"exists", true}}}, {"then", task("a")}}),
       "root.branch", "also a task id"},
      {"branch predicate malformed",
       wf_with(
           {{"branch", "b"}, {"if", {{"output", "a.ok"}, {"equal", true}}}, {"then", task("a")}}),
       "root.if", ""},
      {"branch predicate reading no task",
       wf_with({{"branch", "b"},
                {"if", {{"output", "ghost.ok"}, {"equals", true}}},
                {"then", task("a")}}),
       "root.if", "which is no task"},
      {"bad node in a branch's else",
       wf_with({{"branch", "b"},
                {"if", {{"input", "x"}, {"exists", true}}},
                {"then", task("a")},
                {"else", {{"task", "c"}}}}),
       "root.else", "one of run, value, compute"},
      {"a task beside a branch needing a task inside it",
       wf_with({{"parallel",
                 {{{"branch", "b"},
                   {"if", {{"input", "x"}, {"exists", true}}},
                   {"then", task("inner")}},
                  {{"task", "beside"}, {"value", json::object()}, {"needs", {"inner"}}}}}}),
       "root.parallel[1].needs[0]", "is inside branch \"b\""},
      {"for_each without items",
       wf_with({{"for_each", "fe"}, {"as", "f"}, {"body", task("t-{{f_index}}")}}), "root",
       "needs \"items\""},
      {"for_each without body", wf_with({{"for_each", "fe"}, {"as", "f"}, {"items", "input.x"}}),
       "root", "needs \"body\""},
      {"for_each items not a path",
       wf_with(
           {{"for_each", "fe"}, {"as", "f"}, {"items", "files"}, {"body", task("t-{{f_index}}")}}),
       "root.items", "starting with"},
      {"for_each items reading no task",
       wf_with({{"for_each", "fe"},
                {"as", "f"},
                {"items", "outputs.ghost.files"},
                {"body", task("t-{{f_index}}")}}),
       "root.items", "which is no task"},
      {"for_each as a built-in root",
       wf_with({{"for_each", "fe"},
                {"as", "input"},
                {"items", "input.x"},
                {"body", task("t-{{input_index}}")}}),
       "root.as", "other than input"},
      {"for_each body id without a template",
       wf_with({{"for_each", "fe"}, {"as", "f"}, {"items", "input.x"}, {"body", task("same")}}),
       "root.body.task", "must use {{f...}}"},
      {"for_each body template naming another variable",
       wf_with({{"for_each", "fe"}, {"as", "f"}, {"items", "input.x"}, {"body", task("t-{{g}}")}}),
       "root.body.task", ""},
      {"unknown key in a for_each",
       wf_with({{"for_each", "fe"},
                {"as", "f"},
                {"items", "input.x"},
                {"over", 1},
                {"body", task("t-{{f_index}}")}}),
       "root.over", "unknown key"},
      {"a skip_if reading a later task",
       wf_with({{"sequence",
                 {{{"task", "early"},
                   {"value", json::object()},
                   {"skip_if", {{"output", "late.ok"}, {"equals", true}}}},
                  task("late")}}}),
       "root.sequence[0].skip_if", "comes after it"},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      auto res = parse_workflow(r.doc);
      CHECK_FALSE(res.wf);
      REQUIRE_FALSE(res.errors.empty());
      bool found = false;
      for (const auto& p : res.errors)
        if (p.path.rfind(r.path, 0) == 0 && p.message.find(r.message_part) != std::string::npos)
          found = true;
      INFO("problems: " << join(res.errors));
      CHECK(found);
    }
  }
}

TEST_CASE("files that cannot be read or are not JSON are refused with a clear message") {
  auto missing = load_workflow_file("/nonexistent/wf.json");
  CHECK_FALSE(missing.wf);
  REQUIRE(missing.errors.size() == 1);
  CHECK(missing.errors[0].message.find("cannot read") != std::string::npos);
  auto long_path = load_workflow_file(std::string(limits::max_workflow_path_bytes + 1, 'a'));
  REQUIRE(long_path.errors.size() == 1);
  CHECK(long_path.errors[0].message.find("limit") != std::string::npos);
}

TEST_CASE("workflow files: too deep, duplicate keys, numbers out of range, directories") {
  test_support::temp_dir dir;
  auto load_text = [&](const std::string& text) {
    auto path = dir.file("wf.json");
    std::ofstream(path, std::ios::binary) << text;
    return load_workflow_file(path);
  };
  struct row {
    const char* name;
    std::string text;
    std::string path;
    std::string message_part;
  };
  std::string deep = R"({"name": "d", "root": )";
  for (int i = 0; i < 5000; ++i)
    deep += R"({"sequence": [)";
  deep += R"({"task": "a", "value": {}})";
  for (int i = 0; i < 5000; ++i)
    deep += "]}";
  deep += "}";
  std::vector<row> rows{
      {"nested thousands of levels", deep, "root.sequence[0].sequence[0]", "nesting depth 129"},
      {"a duplicate key", R"({"name": "a", "root": {"task": "x", "value": {}, "value": {"b": 1}}})",
       "root.value", "duplicate key \"value\""},
      {"a duplicate top-level key", R"({"name": "a", "name": "b", "root": {"task": "x", "value": {}}})",
       "name", "duplicate key"},
      {"a number that overflows", R"({"name": "a", "max_concurrency": 1e400, "root": {"task": "x", "value": {}}})",
       "max_concurrency", "1e400 is out of range"},
      {"a number that overflows in a value", R"({"name": "a", "root": {"task": "x", "value": {"n": -1e999}}})",
       "root.value.n", "out of range"},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      auto res = load_text(r.text);
      CHECK_FALSE(res.wf);
      REQUIRE(res.errors.size() == 1);
      INFO(res.errors[0].path << ": " << res.errors[0].message);
      CHECK(res.errors[0].path.rfind(r.path, 0) == 0);
      CHECK(res.errors[0].message.find(r.message_part) != std::string::npos);
    }
  }
  SECTION("nesting at the limit parses") {
    // Each sequence level is two JSON levels; the document and the task's
    // value add two more.
    std::string ok = R"({"name": "d", "root": )";
    const int levels = (static_cast<int>(limits::max_workflow_depth) - 3) / 2;
    for (int i = 0; i < levels; ++i)
      ok += R"({"sequence": [)";
    ok += R"({"task": "a", "value": {}})";
    for (int i = 0; i < levels; ++i)
      ok += "]}";
    ok += "}";
    auto res = load_text(ok);
    INFO(join(res.errors));
    CHECK(res.wf);
  }
  SECTION("a directory") {
    auto res = load_workflow_file(dir.path());
    REQUIRE(res.errors.size() == 1);
    CHECK(res.errors[0].message.find("is a directory") != std::string::npos);
  }
  SECTION("a deep document built in C++") {
    json doc = task("a");
    for (int i = 0; i < 3000; ++i)
      doc = json{{"sequence", json::array({std::move(doc)})}};
    auto res = parse_workflow(json{{"name", "d"}, {"root", std::move(doc)}});
    CHECK_FALSE(res.wf);
    REQUIRE(res.errors.size() == 1);
    CHECK(res.errors[0].message.find("nesting depth") != std::string::npos);
  }
}

TEST_CASE("run ids: 1 to 256 characters of [A-Za-z0-9._:~-], '~' not first") {
  using util::check_run_id;
  CHECK_FALSE(check_run_id("a"));
  CHECK_FALSE(check_run_id("run-1.2:3_x"));
  CHECK_FALSE(check_run_id("run~12")); // a continue-as-new successor
  // ...which a user cannot take for a new run.
  auto taken = util::check_new_run_id("run~12");
  REQUIRE(taken);
  CHECK(taken->message.find("continue-as-new") != std::string::npos);
  CHECK_FALSE(util::check_new_run_id("run-12"));
  auto tilde = check_run_id("~run");
  REQUIRE(tilde);
  CHECK(tilde->message.find("starts with '~'") != std::string::npos);
  CHECK_FALSE(check_run_id(std::string(limits::max_run_id_length - 1, 'r')));
  CHECK_FALSE(check_run_id(std::string(limits::max_run_id_length, 'r')));
  auto too_long = check_run_id(std::string(limits::max_run_id_length + 1, 'r'));
  REQUIRE(too_long);
  CHECK(too_long->code == "INVALID_RUN_ID");
  CHECK(too_long->message.find("257") != std::string::npos);
  auto empty = check_run_id("");
  REQUIRE(empty);
  CHECK(empty->code == "INVALID_RUN_ID");
  for (const char* bad : {"a b", "a/b", "ä", "a\nb", "a$"}) {
    auto e = check_run_id(bad);
    REQUIRE(e);
    CHECK(e->code == "INVALID_RUN_ID");
  }
  CHECK_FALSE(check_run_id(util::new_run_id()));
}

TEST_CASE("node ids: 1 to 128 characters of [A-Za-z0-9_-]") {
  CHECK(util::valid_node_id("a"));
  CHECK(util::valid_node_id(std::string(util::max_node_id_length, 'n')));
  CHECK_FALSE(util::valid_node_id(std::string(util::max_node_id_length + 1, 'n')));
  CHECK_FALSE(util::valid_node_id(""));
  CHECK_FALSE(util::valid_node_id("a.b"));
  CHECK_FALSE(util::valid_node_id("a b"));
}

TEST_CASE("a branch parses with its then and else, and shows in the canonical tree") {
  json doc = wf_with({{"sequence",
                       {task("check"),
                        {{"branch", "ship"},
                         {"if", {{"output", "check.ok"}, {"equals", true}}},
                         {"then", task("deploy")},
                         {"else", task("report")}}}}});
  auto res = parse_workflow(doc);
  INFO(join(res.errors));
  REQUIRE(res.wf);
  const node& b = res.wf->root.children.at(1);
  CHECK(b.kind == node_kind::branch);
  CHECK(b.id == "ship");
  CHECK(b.condition == json{{"output", "check.ok"}, {"equals", true}});
  REQUIRE(b.children.size() == 2);
  CHECK(b.children[0].id == "deploy");
  CHECK(b.children[1].id == "report");
  json canon = canonical_tree(res.wf->root);
  CHECK(canon["sequence"][1]["branch"] == "ship");
  CHECK(canon["sequence"][1]["then"]["task"] == "deploy");
  CHECK(canon["sequence"][1]["else"]["task"] == "report");
}

TEST_CASE("a for_each parses; templates in its body may name its variables") {
  json doc = wf_with({{"sequence",
                       {{{"task", "list"}, {"value", {{"files", {"a.c", "b.c"}}}}},
                        {{"for_each", "per-file"},
                         {"items", "outputs.list.files"},
                         {"as", "file"},
                         {"max_concurrency", 2},
                         {"body",
                          {{"task", "lint-{{file_index}}"},
                           {"run", {"echo", "{{file}}", "{{outputs.list.files.0}}"}}}}}}}});
  auto res = parse_workflow(doc);
  INFO(join(res.errors));
  REQUIRE(res.wf);
  const node& fe = res.wf->root.children.at(1);
  CHECK(fe.kind == node_kind::for_each);
  CHECK(fe.items == "outputs.list.files");
  CHECK(fe.item_name == "file");
  CHECK(fe.max_concurrency == std::optional<std::int64_t>{2});
  json canon = canonical_tree(res.wf->root);
  CHECK(canon["sequence"][1]["for_each"] == "per-file");
  CHECK(canon["sequence"][1]["body"]["task"] == "lint-{{file_index}}");
}

TEST_CASE("a task after a branch in a sequence may read what the branch mounted") {
  json doc = wf_with({{"sequence",
                       {{{"branch", "b"},
                         {"if", {{"input", "x"}, {"exists", true}}},
                         {"then", task("inner")}},
                        {{"task", "after"},
                         {"run", {"echo", "{{outputs.inner}}"}},
                         {"needs", {"inner"}}}}}});
  auto res = parse_workflow(doc);
  INFO(join(res.errors));
  CHECK(res.wf);
}

TEST_CASE("approval, timer, signal and needs_approval parse, and show in the canonical tree") {
  json doc =
      wf_with({{"sequence",
                {{{"task", "build"},
                  {"value", json::object()},
                  {"needs_approval", {{"title", "Build?"}, {"on_deny", "skip"}}}},
                 {{"approval", "ship"},
                  {"title", "Ship?"},
                  {"summary", "s"},
                  {"on_deny", "continue"},
                  {"needs", {"build"}},
                  {"label", "L"}},
                 {{"timer", "cool"}, {"duration_ms", 2000}},
                 {{"timer", "noon"}, {"until", "2030-01-01T12:00:00+01:00"}},
                 {{"signal", "ci"}, {"name", "ci-done"}, {"timeout_ms", 500}, {"retries", 2}},
                 {{"task", "plain"}, {"value", json::object()}, {"needs_approval", true}}}}});
  auto res = parse_workflow(doc);
  INFO(join(res.errors));
  REQUIRE(res.wf);
  const auto& kids = res.wf->root.children;
  REQUIRE(kids.size() == 6);
  const task_spec& gate = *kids[0].task;
  CHECK(gate.kind == task_kind::value);
  REQUIRE(gate.approval);
  CHECK(gate.approval->title == "Build?");
  CHECK(gate.approval->on_deny == deny_action::skip);
  const task_spec& ship = *kids[1].task;
  CHECK(ship.kind == task_kind::approval);
  CHECK(ship.approval->on_deny == deny_action::proceed);
  CHECK(ship.approval->summary == "s");
  CHECK(ship.needs == std::vector<std::string>{"build"});
  CHECK(kids[2].task->kind == task_kind::timer);
  CHECK(kids[2].task->duration_ms == 2000);
  CHECK(kids[3].task->until_ms == 1893495600000); // 11:00 UTC
  CHECK(kids[4].task->kind == task_kind::signal);
  CHECK(kids[4].task->signal_name == "ci-done");
  CHECK(kids[4].task->timeout_ms == 500);
  CHECK(kids[4].task->retries == 2);
  REQUIRE(kids[5].task->approval);
  CHECK(kids[5].task->approval->title.empty());
  json canon = canonical_tree(res.wf->root);
  CHECK(canon["sequence"][0]["approval"]["on_deny"] == "skip");
  CHECK(canon["sequence"][1]["type"] == "approval");
  CHECK(canon["sequence"][1]["approval"]["title"] == "Ship?");
  CHECK(canon["sequence"][2]["duration_ms"] == 2000);
  CHECK(canon["sequence"][3]["until"] == 1893495600000);
  CHECK(canon["sequence"][4]["signal"] == "ci-done");
  // A different title is a different tree (the hash a resume compares).
  json other = doc;
  other["root"]["sequence"][1]["title"] = "Ship now?";
  CHECK(parse_workflow(other).hash != res.hash);
}

TEST_CASE("cache parses: true, false, {}, by, version, both; the canonical tree shows it") {
  struct row {
    const char* name;
    json task; // the root task, cache included
    bool cached;
    std::string by;
    std::string version;
  };
  auto cmd = [](json cache) {
    return json{{"task", "a"}, {"run", {"echo", "{{input.x}}"}}, {"cache", std::move(cache)}};
  };
  const row rows[] = {
      {"true", cmd(true), true, "", ""},
      {"false", cmd(false), false, "", ""},
      {"an empty object", cmd(json::object()), true, "", ""},
      {"by", cmd({{"by", "{{input.x}}"}}), true, "{{input.x}}", ""},
      {"version", cmd({{"version", "v2"}}), true, "", "v2"},
      {"by and version", cmd({{"by", "{{input.x}}-{{input.y}}"}, {"version", "v2"}}), true,
       "{{input.x}}-{{input.y}}", "v2"},
      {"empty by and version", cmd({{"by", ""}, {"version", ""}}), true, "", ""},
      {"by without a template", cmd({{"by", "constant"}}), true, "constant", ""},
      {"on a shell command", {{"task", "a"}, {"run", "echo hi"}, {"cache", true}}, true, "", ""},
      {"on a compute task",
       {{"task", "a"}, {"compute", "f"}, {"cache", {{"by", "{{input.x}}"}, {"version", "1"}}}},
       true,
       "{{input.x}}",
       "1"},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      auto res = parse_workflow(wf_with(r.task));
      INFO(join(res.errors));
      REQUIRE(res.wf);
      const task_spec& t = *res.wf->root.task;
      json canon = canonical_tree(res.wf->root);
      if (!r.cached) {
        CHECK_FALSE(t.cache);
        CHECK_FALSE(canon.contains("cache"));
        continue;
      }
      REQUIRE(t.cache);
      CHECK(t.cache->by == r.by);
      CHECK(t.cache->version == r.version);
      CHECK(canon["cache"] == json{{"by", r.by}, {"version", r.version}});
    }
  }
}

TEST_CASE("cache: the canonical tree and the workflow hash cover it") {
  // The tree's hash (render: what frames and resumes compare) and the
  // document's (parse: a run's workflow_hash from a file).
  struct hashes {
    std::string tree, doc;
  };
  auto hash_of = [](const json* cache) {
    json t = {{"task", "a"}, {"run", {"echo", "x"}}};
    if (cache) t["cache"] = *cache;
    auto res = parse_workflow(wf_with(t));
    INFO(join(res.errors));
    REQUIRE(res.wf);
    render_context ctx;
    auto r = render(std::make_shared<const workflow>(*res.wf), ctx);
    REQUIRE(r.hash.size() == 64);
    REQUIRE(res.hash.size() == 64);
    return hashes{r.hash, res.hash};
  };
  const json off = false, on = true, empty = json::object(), blank = {{"by", ""}, {"version", ""}},
             v1 = {{"version", "v1"}}, v2 = {{"version", "v2"}}, by_x = {{"by", "{{input.x}}"}},
             by_y = {{"by", "{{input.y}}"}}, by_x_v1 = {{"by", "{{input.x}}"}, {"version", "v1"}};
  hashes none = hash_of(nullptr);
  hashes cached = hash_of(&on);
  // Spellings of the same thing are the same tree...
  CHECK(hash_of(&off).tree == none.tree);
  CHECK(hash_of(&empty).tree == cached.tree);
  CHECK(hash_of(&blank).tree == cached.tree);
  // ...and every difference is a different tree and a different document.
  std::map<std::string, hashes> distinct{{"none", none},
                                         {"true", cached},
                                         {"v1", hash_of(&v1)},
                                         {"v2", hash_of(&v2)},
                                         {"by x", hash_of(&by_x)},
                                         {"by y", hash_of(&by_y)},
                                         {"by x v1", hash_of(&by_x_v1)}};
  std::set<std::string> trees, docs;
  for (const auto& [name, h] : distinct) {
    INFO(name);
    CHECK(trees.insert(h.tree).second);
    CHECK(docs.insert(h.doc).second);
  }
}

TEST_CASE("cache in C++: node::cache sets it; only command, compute and agent tasks may have it") {
  node c = command_task("c", {"echo"}).cache({"{{input.k}}", "v3"});
  REQUIRE(c.task->cache);
  CHECK(c.task->cache->by == "{{input.k}}");
  CHECK(c.task->cache->version == "v3");
  node d = compute_task("d", "f").cache();
  REQUIRE(d.task->cache);
  CHECK(d.task->cache->by.empty());
  CHECK(d.task->cache->version.empty());
  struct row {
    const char* name;
    node n;
    std::string refusal; // "" when valid
  };
  std::vector<row> rows{
      {"a command", command_task("a", {"echo", "x"}).cache(), ""},
      {"a shell command", shell_task("a", "echo x").cache({"", "v"}), ""},
      {"a registered compute", compute_task("a", "f").cache(), ""},
      {"an inline compute", compute_task("a", [](task_context&) { return json::object(); }).cache(),
       ""},
      {"a value", value_task("a", json::object()).cache(),
       "only command, compute and agent tasks are cached (a value has nothing to run)"},
      {"an approval", approval("a", "Go?").cache(),
       "only command, compute and agent tasks are cached"},
      {"a timer", timer("a", 5).cache(), "only command, compute and agent tasks are cached"},
      {"a signal", signal("a", "go").cache(), "only command, compute and agent tasks are cached"},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      workflow wf;
      wf.root = r.n;
      auto ps = validate_tree(wf, wf.root);
      INFO(join(ps));
      if (r.refusal.empty()) {
        CHECK(ps.empty());
        continue;
      }
      bool found = false;
      for (const auto& p : ps)
        if (p.path == "root.cache" && p.message.find(r.refusal) != std::string::npos) found = true;
      CHECK(found);
    }
  }
}

// `by` is a template expanded when an attempt starts, like a command
// argument: its mistakes would otherwise surface only then, as the
// attempt's failure (TEMPLATE_MISSING_VALUE or INVALID_WORKFLOW).
TEST_CASE("cache: a `by` template is checked like the task's other templates") {
  struct row {
    const char* name;
    json doc;
    std::string path;
    std::string message_part;
  };
  std::vector<row> rows{
      {"an unclosed template",
       wf_with({{"task", "a"}, {"run", "true"}, {"cache", {{"by", "{{input.x"}}}}), "root.cache.by",
       ""},
      {"a template naming no task",
       wf_with({{"task", "a"}, {"run", "true"}, {"cache", {{"by", "{{outputs.ghost.sha}}"}}}}),
       "root.cache.by", "\"ghost\""},
      {"a template reading a task later in its sequence",
       wf_with({{"sequence",
                 {{{"task", "early"}, {"run", "true"}, {"cache", {{"by", "{{outputs.late.sha}}"}}}},
                  task("late")}}}),
       "root.sequence[0].cache.by", "comes after it"},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      auto res = parse_workflow(r.doc);
      INFO("problems: " << join(res.errors));
      CHECK_FALSE(res.wf);
      bool found = false;
      for (const auto& p : res.errors)
        if (p.path.rfind(r.path, 0) == 0 && p.message.find(r.message_part) != std::string::npos)
          found = true;
      CHECK(found);
    }
  }
}

TEST_CASE("direct: on compute tasks only, a boolean; the canonical tree and the hash cover it") {
  SECTION("a file's compute task parses with it, and the tree says so") {
    auto res = parse_workflow(wf_with({{"task", "c"}, {"compute", "noop"}, {"direct", true}}));
    INFO(join(res.errors));
    REQUIRE(res.wf);
    CHECK(res.wf->root.task->direct);
    render_context ctx;
    auto r = render(std::make_shared<const workflow>(*res.wf), ctx);
    CHECK(json::parse(*r.canonical)["direct"] == true);
    auto plain = parse_workflow(wf_with({{"task", "c"}, {"compute", "noop"}}));
    auto off = parse_workflow(wf_with({{"task", "c"}, {"compute", "noop"}, {"direct", false}}));
    REQUIRE(plain.wf);
    REQUIRE(off.wf);
    auto rp = render(std::make_shared<const workflow>(*plain.wf), ctx);
    auto ro = render(std::make_shared<const workflow>(*off.wf), ctx);
    CHECK_FALSE(json::parse(*rp.canonical).contains("direct"));
    CHECK(rp.hash == ro.hash); // false is the default, spelled out
    CHECK(rp.hash != r.hash);
    CHECK(plain.hash != res.hash);
  }
  struct row {
    const char* name;
    json doc;
    std::string path, message_part;
  };
  std::vector<row> rows{
      {"not a boolean", wf_with({{"task", "c"}, {"compute", "noop"}, {"direct", "yes"}}),
       "root.direct", "a boolean"},
      {"a command", wf_with({{"task", "c"}, {"run", {"echo", "{}"}}, {"direct", true}}),
       "root.direct", "only compute tasks are called directly (a command is not a function)"},
      {"a value", wf_with({{"task", "c"}, {"value", json::object()}, {"direct", true}}),
       "root.direct", "only compute tasks are called directly (a value"},
      {"a timer", wf_with({{"timer", "t"}, {"duration_ms", 5}, {"direct", true}}), "root.direct",
       "unknown key \"direct\" in a timer node"},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      auto res = parse_workflow(r.doc);
      CHECK_FALSE(res.wf);
      bool found = false;
      for (const auto& p : res.errors)
        if (p.path == r.path && p.message.find(r.message_part) != std::string::npos) found = true;
      INFO("problems: " << join(res.errors));
      CHECK(found);
    }
  }
  SECTION("in C++: node::direct sets it; validation refuses it on other kinds") {
    node c = compute_task("c", [](task_context&) { return json::object(); }).direct();
    CHECK(c.task->direct);
    workflow ok;
    ok.root = c;
    CHECK(validate_tree(ok, ok.root).empty());
    workflow bad;
    bad.root = shell_task("s", "echo {}").direct();
    auto ps = validate_tree(bad, bad.root);
    INFO(join(ps));
    REQUIRE(ps.size() == 1);
    CHECK(ps[0].path == "root.direct");
    CHECK(ps[0].message == "only compute tasks are called directly (a command is not a function)");
  }
}
