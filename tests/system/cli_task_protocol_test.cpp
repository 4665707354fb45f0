// The command-task protocol (docs/workflow-format.md, "Command tasks") as a task sees it when
// the smithers binary runs it: stdin context, environment, templates, output
// extraction, output schemas, retries and continue_on_fail.
#include "system/cli_support.hpp"

#include <set>

using namespace smithers::system_test;
using smithers::json;

namespace {

// Records what the task was given: stdin, argument count and each argument,
// and the protocol environment, into files named after the node.
const char* probe_script = R"(#!/bin/sh
dir="$1"; shift
cat > "$dir/stdin-$SMITHERS_NODE_ID.json"
echo "$#" > "$dir/argc-$SMITHERS_NODE_ID.txt"
i=1
for a in "$@"; do
  printf '%s' "$a" > "$dir/arg$i-$SMITHERS_NODE_ID.txt"
  i=$((i+1))
done
{
  echo "SMITHERS_RUN_ID=$SMITHERS_RUN_ID"
  echo "SMITHERS_NODE_ID=$SMITHERS_NODE_ID"
  echo "SMITHERS_ITERATION=$SMITHERS_ITERATION"
  echo "SMITHERS_ATTEMPT=$SMITHERS_ATTEMPT"
  echo "SMITHERS_LAST_HEARTBEAT=${SMITHERS_LAST_HEARTBEAT-unset}"
  echo "GREETING=$GREETING"
} > "$dir/env-$SMITHERS_NODE_ID.txt"
echo '{"probed": true}'
)";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

std::vector<json> events_of_type(const std::vector<json>& events, const std::string& type) {
  std::vector<json> out;
  for (const auto& e : events)
    if (e["type"] == type) out.push_back(e);
  return out;
}

// A value full of shell metacharacters; must reach the task unchanged.
std::string nasty_value(const sandbox& sb) {
  return "x'; touch " + sb.file("pwned1") + "; echo 'y $(touch " + sb.file("pwned2") + ") `touch " +
         sb.file("pwned3") + "` \"q\" * $HOME \\ end";
}

} // namespace

TEST_CASE("a command task gets its context on stdin and in SMITHERS_* variables",
          "[system][protocol]") {
  sandbox sb;
  auto probe = sb.dir().write_script("probe.sh", probe_script);
  json wf = {{"name", "protocol"},
             {"root",
              {{"sequence",
                {{{"task", "a"}, {"value", {{"field", "from a"}}}},
                 {{"task", "probe"},
                  {"needs", json::array({"a"})},
                  {"run", {probe, sb.dir().path()}},
                  {"env", {{"GREETING", "{{input.greeting}}"}}}}}}}}};
  json input = {{"greeting", "hello there"}, {"nested", {{"list", {1, 2, 3}}}}};
  auto r = sb.cli_json(
      {"run", sb.write("wf.json", wf), "--run-id", "proto-run", "--input", input.dump()});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out_json()["outputs"]["probe"] == json{{"probed", true}});

  auto stdin_text = read_file(sb.file("stdin-probe.json"));
  INFO("stdin: " << stdin_text);
  auto ctx = json::parse(stdin_text);
  CHECK(ctx["run_id"] == "proto-run");
  CHECK(ctx["node_id"] == "probe");
  CHECK(ctx["iteration"] == 0);
  CHECK(ctx["attempt"] == 1);
  CHECK(ctx["input"] == input);
  CHECK(ctx["needs"] == json{{"a", {{"field", "from a"}}}});
  CHECK(ctx.contains("last_heartbeat"));
  CHECK(ctx["last_heartbeat"].is_null());

  auto env = lines_of(read_file(sb.file("env-probe.txt")));
  CHECK(env == std::vector<std::string>{"SMITHERS_RUN_ID=proto-run", "SMITHERS_NODE_ID=probe",
                                        "SMITHERS_ITERATION=0", "SMITHERS_ATTEMPT=1",
                                        "SMITHERS_LAST_HEARTBEAT=unset", "GREETING=hello there"});
}

TEST_CASE("argv templates fill exactly one argument each, spaces and quotes included",
          "[system][protocol]") {
  sandbox sb;
  auto probe = sb.dir().write_script("probe.sh", probe_script);
  const std::string field = "it's a \"quoted\" value with  two spaces and $HOME";
  json wf = {{"name", "argv-templates"},
             {"root",
              {{"sequence",
                {{{"task", "a"}, {"value", {{"field", field}, {"n", 42}}}},
                 {{"task", "args"},
                  {"needs", json::array({"a"})},
                  {"run",
                   {probe, sb.dir().path(), "{{input.x}}", "pre {{outputs.a.field}} post",
                    "{{outputs.a.n}}", "{{input.empty}}", "{{run_id}}/{{node_id}}"}}}}}}}};
  json input = {{"x", "two  words and 'single' quotes; echo hi"}, {"empty", ""}};
  auto r = sb.cli_json(
      {"run", sb.write("wf.json", wf), "--run-id", "argv-run", "--input", input.dump()});
  INFO(r);
  REQUIRE(r.exit_code == 0);

  CHECK(read_file(sb.file("argc-args.txt")) == "5\n");
  CHECK(read_file(sb.file("arg1-args.txt")) == input["x"].get<std::string>());
  CHECK(read_file(sb.file("arg2-args.txt")) == "pre " + field + " post");
  CHECK(read_file(sb.file("arg3-args.txt")) == "42");
  CHECK(read_file(sb.file("arg4-args.txt")) == "");
  CHECK(read_file(sb.file("arg5-args.txt")) == "argv-run/args");
}

TEST_CASE("shell-string templates are shell-quoted so values stay literal", "[system][protocol]") {
  sandbox sb;
  auto nasty = nasty_value(sb);
  json wf = {
      {"name", "shell-templates"},
      {"root",
       {{"sequence",
         {{{"task", "a"}, {"value", {{"field", nasty}}}},
          {{"task", "sh"},
           {"needs", json::array({"a"})},
           {"run", "printf '%s' {{input.danger}} > " + sb.file("from-input.txt") +
                       " && printf '%s' {{outputs.a.field}} > " + sb.file("from-output.txt") +
                       " && printf '%s' pre{{input.spaced}}post > " + sb.file("joined.txt") +
                       " && echo '{\"done\": true}'"}}}}}}};
  json input = {{"danger", nasty}, {"spaced", " a  b "}};
  auto r = sb.cli_json(
      {"run", sb.write("wf.json", wf), "--run-id", "shell-run", "--input", input.dump()});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out_json()["outputs"]["sh"] == json{{"done", true}});
  CHECK(read_file(sb.file("from-input.txt")) == nasty);
  CHECK(read_file(sb.file("from-output.txt")) == nasty);
  CHECK(read_file(sb.file("joined.txt")) == "pre a  b post");
  CHECK_FALSE(sb.dir().exists("pwned1"));
  CHECK_FALSE(sb.dir().exists("pwned2"));
  CHECK_FALSE(sb.dir().exists("pwned3"));
}

TEST_CASE("the output is taken from the last fenced json block when stdout has prose",
          "[system][protocol]") {
  sandbox sb;
  json wf = {{"name", "fenced"},
             {"root",
              {{"task", "talker"},
               {"run",
                {"sh", "-c",
                 "echo 'Thinking about it {not json}...'; "
                 "echo '```json'; echo '{\"from\": \"first fence\"}'; echo '```'; "
                 "echo 'Better:'; "
                 "echo '```json'; echo '{\"from\": \"last fence\", \"n\": [1, 2]}'; "
                 "echo '```'; "
                 "echo 'and a stray {\"from\": \"brace\"} afterwards'"}}}}};
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "fenced"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(sb.inspect("fenced")["outputs"]["talker"] == json{{"from", "last fence"}, {"n", {1, 2}}});
}

TEST_CASE("the output is the last balanced object when there is no fence", "[system][protocol]") {
  sandbox sb;
  json wf = {{"name", "braces"},
             {"root",
              {{"task", "talker"},
               {"run", "echo 'first {\"a\": 1} then'; echo '::heartbeat {\"step\": 1}'; "
                       "echo 'result: {\"a\": 2, \"b\": {\"c\": 3}} done'"}}}};
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "braces"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(sb.inspect("braces")["outputs"]["talker"] == json{{"a", 2}, {"b", {{"c", 3}}}});
}

TEST_CASE("a task that exits 0 without any JSON object fails its attempt", "[system][protocol]") {
  sandbox sb;
  json wf = {{"name", "no-output"}, {"root", {{"task", "mute"}, {"run", "echo just words"}}}};
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "mute"});
  INFO(r);
  CHECK(r.exit_code == 1);
  auto j = sb.inspect("mute");
  CHECK(j["run"]["status"] == "failed");
  CHECK(node_of(j, "mute")["state"] == "failed");
  CHECK_FALSE(j["outputs"].contains("mute"));
}

TEST_CASE("output that violates its schema fails the run with INVALID_OUTPUT, without retries",
          "[system][protocol]") {
  sandbox sb;
  json wf = json::parse(R"({
    "name": "bad-output",
    "outputs": {"count": {"type": "object", "required": ["n"],
                          "properties": {"n": {"type": "integer"}}}},
    "root": {"parallel": [
      {"task": "inline", "run": ["sh", "-c", "echo '{\"n\": \"three\"}'"], "retries": 2,
       "retry": {"initial_ms": 10, "backoff": 1.0, "max_ms": 20},
       "output_schema": {"type": "object", "required": ["n"],
                         "properties": {"n": {"type": "integer"}}}},
      {"task": "keyed", "run": ["sh", "-c", "echo '{\"m\": 1}'"], "output": "count",
       "continue_on_fail": true}
    ]}
  })");
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "bad-out"});
  INFO(r);
  CHECK(r.exit_code == 1);
  auto j = sb.inspect("bad-out");
  CHECK(j["run"]["status"] == "failed");

  auto inline_attempts = attempts_of(j, "inline");
  REQUIRE(inline_attempts.size() == 1);
  CHECK(inline_attempts[0]["state"] == "failed");
  CHECK(inline_attempts[0]["error"]["code"] == "INVALID_OUTPUT");
  CHECK(contains(inline_attempts[0]["error"]["message"].get<std::string>(), "$.n"));
  CHECK(node_of(j, "inline")["state"] == "failed");
  CHECK_FALSE(j["outputs"].contains("inline"));

  auto keyed_attempts = attempts_of(j, "keyed");
  REQUIRE(keyed_attempts.size() == 1);
  CHECK(keyed_attempts[0]["error"]["code"] == "INVALID_OUTPUT");
  CHECK(contains(keyed_attempts[0]["error"].dump(), "n"));
  CHECK_FALSE(j["outputs"].contains("keyed"));

  CHECK(contains(j["run"]["error"].dump(), "inline"));
}

TEST_CASE("a task that keeps exiting non-zero is tried 1 + retries times, then fails the run",
          "[system][protocol]") {
  sandbox sb;
  json wf = json::parse(R"({
    "name": "always-fails",
    "root": {"sequence": [
      {"task": "fine", "value": {"ok": true}},
      {"task": "flaky", "run": ["sh", "-c", "echo 'boom on stderr' >&2; exit 3"],
       "retries": 2, "retry": {"initial_ms": 10, "backoff": 1.0, "max_ms": 20}},
      {"task": "never", "value": {"ran": true}}
    ]}
  })");
  auto r = sb.cli({"run", sb.write("wf.json", wf), "--run-id", "fails"});
  INFO(r);
  CHECK(r.exit_code == 1);
  CHECK(contains(r.out, "failed"));
  CHECK(contains(r.out, "flaky"));

  auto j = sb.inspect("fails");
  CHECK(j["run"]["status"] == "failed");
  CHECK(j["run"]["error"].is_object());
  CHECK(contains(j["run"]["error"].dump(), "flaky"));

  auto attempts = attempts_of(j, "flaky");
  REQUIRE(attempts.size() == 3);
  for (std::size_t i = 0; i < attempts.size(); ++i) {
    INFO("attempt " << attempts[i].dump());
    CHECK(attempts[i]["attempt"] == static_cast<std::int64_t>(i + 1));
    CHECK(attempts[i]["state"] == "failed");
    CHECK(attempts[i]["error"]["code"] == "TASK_FAILED");
    CHECK(contains(attempts[i]["error"].dump(), "boom on stderr"));
    CHECK(attempts[i]["error"]["details"]["exit_code"] == 3);
  }
  CHECK(node_of(j, "flaky")["state"] == "failed");
  CHECK(node_of(j, "flaky")["attempts"] == 3);
  CHECK(node_of(j, "fine")["state"] == "finished");
  CHECK_FALSE(j["outputs"].contains("never"));
  CHECK(attempts_of(j, "never").empty());

  auto events = sb.events("fails");
  // Every failed attempt has its NodeFailed; each retried one is followed
  // by NodeRetrying with the next attempt's number (SPEC §6).
  auto retrying = events_of_type(events, "NodeRetrying");
  REQUIRE(retrying.size() == 2);
  auto failed = events_of_type(events, "NodeFailed");
  REQUIRE(failed.size() == 3);
  for (std::size_t i = 0; i < failed.size(); ++i) {
    CHECK(failed[i]["node_id"] == "flaky");
    CHECK(failed[i]["attempt"] == static_cast<std::int64_t>(i + 1));
    CHECK(failed[i]["will_retry"] == (i < 2));
    CHECK(failed[i]["error"]["code"] == "TASK_FAILED");
  }
  for (std::size_t i = 0; i < retrying.size(); ++i) {
    CHECK(retrying[i]["next_attempt"] == static_cast<std::int64_t>(i + 2));
    CHECK(retrying[i]["seq"].get<std::int64_t>() == failed[i]["seq"].get<std::int64_t>() + 1);
  }
  CHECK(events.back()["type"] == "RunFailed");
}

TEST_CASE("a task that fails once and then succeeds finishes with two attempts",
          "[system][protocol]") {
  sandbox sb;
  auto marker = sb.file("marker");
  json wf = {
      {"name", "second-time-lucky"},
      {"root",
       {{"task", "lucky"},
        {"run", "if [ -e " + marker + " ]; then echo '{\"attempt\": '$SMITHERS_ATTEMPT'}'; " +
                    "else touch " + marker + "; echo 'first try fails' >&2; exit 1; fi"},
        {"retries", 1},
        {"retry", {{"initial_ms", 10}, {"backoff", 1.0}, {"max_ms", 20}}}}}};
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "lucky"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("lucky");
  CHECK(j["run"]["status"] == "finished");
  auto attempts = attempts_of(j, "lucky");
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0]["state"] == "failed");
  CHECK(attempts[0]["error"]["code"] == "TASK_FAILED");
  CHECK(attempts[1]["state"] == "finished");
  CHECK(attempts[1]["error"].is_null());
  CHECK(node_of(j, "lucky")["state"] == "finished");
  CHECK(node_of(j, "lucky")["attempts"] == 2);
  CHECK(j["outputs"]["lucky"] == json{{"attempt", 2}});
}

TEST_CASE("continue_on_fail lets the run finish past a failed task", "[system][protocol]") {
  sandbox sb;
  json wf = json::parse(R"({
    "name": "carry-on",
    "root": {"sequence": [
      {"task": "bad", "run": ["sh", "-c", "exit 7"], "continue_on_fail": true},
      {"task": "after", "value": {"x": 1}}
    ]}
  })");
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "carry"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("carry");
  CHECK(j["run"]["status"] == "finished");
  CHECK(node_of(j, "bad")["state"] == "failed");
  CHECK(node_of(j, "after")["state"] == "finished");
  CHECK(j["outputs"]["after"] == json{{"x", 1}});
  CHECK_FALSE(j["outputs"].contains("bad"));
  CHECK(sb.events("carry").back()["type"] == "RunFinished");
}

TEST_CASE("a template naming a missing input value fails the attempt with TEMPLATE_MISSING_VALUE",
          "[system][protocol]") {
  sandbox sb;
  json wf = {{"name", "missing"},
             {"root", {{"task", "t"}, {"run", {"echo", "{{input.not_there}}"}}}}};
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "missing"});
  INFO(r);
  CHECK(r.exit_code == 1);
  auto j = sb.inspect("missing");
  auto attempts = attempts_of(j, "t");
  REQUIRE_FALSE(attempts.empty());
  CHECK(attempts[0]["error"]["code"] == "TEMPLATE_MISSING_VALUE");
  CHECK(contains(attempts[0]["error"]["message"].get<std::string>(), "not_there"));
}
