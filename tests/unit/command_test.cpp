#include <catch2/catch.hpp>

#include "executors/command.hpp"

#include <smithers/limits.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iterator>
#include <string>
#include <vector>

using namespace smithers;
using namespace smithers::executors;
using namespace std::chrono_literals;

namespace {

command_spec sh(const std::string& script) {
  command_spec spec;
  spec.argv = {"/bin/sh", "-c", script};
  spec.run_id = "run-1";
  spec.node_id = "build";
  spec.iteration = 2;
  spec.attempt = 3;
  return spec;
}

struct heartbeat_log {
  std::vector<json> data; // heartbeat markers
  std::size_t plain_lines = 0;
  heartbeat_sink sink() {
    return [this](const json& d, bool has_data) {
      if (has_data)
        data.push_back(d);
      else
        ++plain_lines;
    };
  }
};

} // namespace

TEST_CASE("heartbeat lines") {
  SECTION("markers") {
    CHECK(parse_heartbeat_line("::heartbeat") == json(nullptr));
    CHECK(parse_heartbeat_line("  ::heartbeat \t\r") == json(nullptr));
    CHECK(parse_heartbeat_line("::heartbeat {\"step\": 2}") == json{{"step", 2}});
    CHECK(parse_heartbeat_line("::heartbeat\t[1, 2]  ") == json::array({1, 2}));
    CHECK(parse_heartbeat_line("\t::heartbeat \"text\"") == json("text"));
    CHECK(parse_heartbeat_line("::heartbeat 42") == json(42));
    CHECK(parse_heartbeat_line("::heartbeat null") == json(nullptr));
  }
  SECTION("not markers") {
    CHECK_FALSE(parse_heartbeat_line(""));
    CHECK_FALSE(parse_heartbeat_line("heartbeat"));
    CHECK_FALSE(parse_heartbeat_line("::heartbeats"));
    CHECK_FALSE(parse_heartbeat_line("::heartbeat{\"a\":1}"));
    CHECK_FALSE(parse_heartbeat_line("echo ::heartbeat {}"));
    CHECK_FALSE(parse_heartbeat_line("progress ::heartbeat"));
    CHECK_FALSE(parse_heartbeat_line(":: heartbeat"));
  }
  SECTION("bad JSON after the marker") {
    for (const char* line :
         {"::heartbeat {bad", "::heartbeat {\"a\":1} trailing", "::heartbeat NaN",
          "::heartbeat 1e999", "::heartbeat {\"a\": \"\xff\"}"}) {
      INFO(line);
      try {
        parse_heartbeat_line(line);
        FAIL("no error");
      } catch (const smithers_error& e) {
        CHECK(e.code() == errc::heartbeat_payload_not_json);
        CHECK_NOTHROW(e.err().to_json().dump());
      }
    }
  }
}

TEST_CASE("output extraction") {
  SECTION("the whole stdout as one object") {
    CHECK(extract_output("{\"a\": 1}") == json{{"a", 1}});
    CHECK(extract_output("\n  {\"a\": {\"b\": [1, {\"c\": 2}]}}\n\n") ==
          json::parse(R"({"a": {"b": [1, {"c": 2}]}})"));
  }
  SECTION("a fenced json block is preferred over trailing braces") {
    auto text = "Here is the result:\n```json\n{\"ok\": true}\n```\nNote: {\"ok\": false}\n";
    CHECK(extract_output(text) == json{{"ok", true}});
  }
  SECTION("the last fenced json block wins") {
    auto text = "```json\n{\"v\": 1}\n```\nthen\n```json\n{\"v\": 2}\n```\n";
    CHECK(extract_output(text) == json{{"v", 2}});
  }
  SECTION("fenced blocks that are not objects are skipped") {
    auto text = "```json\n{\"v\": 1}\n```\n```json\n[1, 2]\n```\n```json\n{broken\n```";
    CHECK(extract_output(text) == json{{"v", 1}});
  }
  SECTION("other fence languages do not confuse pairing") {
    auto text = "```python\nprint({'x': 1})\n```\n```JSON\n{\"v\": 3}\n```\n";
    CHECK(extract_output(text) == json{{"v", 3}});
    CHECK(extract_output("inline ```json {\"v\": 4}``` done") == json{{"v", 4}});
  }
  SECTION("the last balanced object in prose") {
    CHECK(extract_output("first {\"a\": 1} then {\"b\": 2} end") == json{{"b", 2}});
    CHECK(extract_output("log line\n{\"a\": {\"b\": 1}}\ntrailing words") ==
          json{{"a", {{"b", 1}}}});
    CHECK(extract_output("result {\"a\": 1} and a stray {not json}") == json{{"a", 1}});
  }
  SECTION("braces and quotes inside strings") {
    CHECK(extract_output(R"(x {"s": "}{ \" }", "t": "{"} y)") ==
          json{{"s", "}{ \" }"}, {"t", "{"}});
    CHECK(extract_output("Use { to open. Result: {\"a\": 1}") == json{{"a", 1}});
    CHECK(extract_output("it's \"quoted { here\nresult {\"a\": 2}") == json{{"a", 2}});
  }
  SECTION("no object") {
    CHECK_FALSE(extract_output(""));
    CHECK_FALSE(extract_output("   \n"));
    CHECK_FALSE(extract_output("hello world"));
    CHECK_FALSE(extract_output("{not json}"));
    CHECK_FALSE(extract_output("{\"a\": 1"));
    CHECK_FALSE(extract_output("}{"));
  }
  SECTION("arrays and other values are not objects") {
    CHECK_FALSE(extract_output("[1, 2, 3]"));
    CHECK_FALSE(extract_output("[{\"a\": 1}]")); // one JSON value, not an object
    CHECK_FALSE(extract_output("\"{\\\"a\\\": 1}\""));
    CHECK_FALSE(extract_output("42"));
    CHECK_FALSE(extract_output("```json\n[1]\n```"));
  }
  SECTION("large outputs stay fast") {
    std::string big = "noise ";
    for (int i = 0; i < 200000; ++i)
      big += "{x";
    big += "\n{\"done\": true}\n";
    auto started = std::chrono::steady_clock::now();
    CHECK(extract_output(big) == json{{"done", true}});
    std::string nested(300000, '{');
    nested += std::string(300000, '}');
    CHECK_FALSE(extract_output(nested));
    std::string huge = "{\"items\": [";
    for (int i = 0; i < 100000; ++i)
      huge += std::string(i ? "," : "") + "{\"i\": " + std::to_string(i) + "}";
    huge += "]}";
    CHECK(extract_output("prefix\n" + huge + "\n")->at("items").size() == 100000);
    CHECK(std::chrono::steady_clock::now() - started < 30s);
  }
}

TEST_CASE("run_command passes the context on stdin") {
  auto spec = sh("cat");
  spec.input = {{"repo", "x"}};
  spec.needs = {{"count", {{"n", 3}}}};
  spec.last_heartbeat = {{"step", 7}};
  auto out = run_command(spec, nullptr);
  REQUIRE_FALSE(out.failure);
  REQUIRE(out.output);
  CHECK(*out.output == json{{"run_id", "run-1"},
                            {"node_id", "build"},
                            {"iteration", 2},
                            {"attempt", 3},
                            {"input", {{"repo", "x"}}},
                            {"needs", {{"count", {{"n", 3}}}}},
                            {"last_heartbeat", {{"step", 7}}}});

  // One line, readable with `read`.
  auto line = run_command(sh("read -r ctx; printf '{\"len\": %d}' ${#ctx}"), nullptr);
  REQUIRE(line.output);
  CHECK(line.output->at("len").get<int>() > 10);
}

TEST_CASE("run_command sets the SMITHERS_* environment") {
  auto script = "printf '{\"r\":\"%s\",\"n\":\"%s\",\"i\":\"%s\",\"a\":\"%s\",\"h\":\"%s\","
                "\"x\":\"%s\"}' \"$SMITHERS_RUN_ID\" \"$SMITHERS_NODE_ID\" "
                "\"$SMITHERS_ITERATION\" \"$SMITHERS_ATTEMPT\" "
                "\"${SMITHERS_LAST_HEARTBEAT-unset}\" \"$EXTRA\"";
  ::setenv("SMITHERS_LAST_HEARTBEAT", "{\"stale\":1}", 1); // from an enclosing task
  auto spec = sh(script);
  spec.env = {{"EXTRA", "task env"}, {"SMITHERS_RUN_ID", "spoofed"}};
  auto none = run_command(spec, nullptr);
  REQUIRE(none.output);
  CHECK(*none.output == json{{"r", "run-1"},
                             {"n", "build"},
                             {"i", "2"},
                             {"a", "3"},
                             {"h", "unset"},
                             {"x", "task env"}});
  ::unsetenv("SMITHERS_LAST_HEARTBEAT");

  spec = sh("printf '{\"h\": %s}' \"$SMITHERS_LAST_HEARTBEAT\"");
  spec.last_heartbeat = {{"step", 4}, {"note", "a b"}};
  auto with = run_command(spec, nullptr);
  REQUIRE(with.output);
  CHECK(with.output->at("h") == spec.last_heartbeat);
}

TEST_CASE("run_command records heartbeats and keeps them out of the output") {
  auto spec = sh("echo '::heartbeat {\"step\": 1}'; echo '::heartbeat' >&2; echo working;"
                 "echo '{\"ok\": true}';"
                 "echo '  ::heartbeat {\"x\": {\"y\": 2}}'; echo warn >&2");
  heartbeat_log log;
  auto out = run_command(spec, log.sink());
  REQUIRE_FALSE(out.failure);
  REQUIRE(out.output);
  CHECK(*out.output == json{{"ok", true}});
  // The bare marker is on stderr, so its order against stdout is not fixed.
  std::vector<json> with_data;
  std::copy_if(log.data.begin(), log.data.end(), std::back_inserter(with_data),
               [](const json& d) { return !d.is_null(); });
  CHECK(with_data == std::vector<json>{{{"step", 1}}, {{"x", {{"y", 2}}}}});
  CHECK(log.data.size() == 3);
  CHECK(log.plain_lines == 3); // working, {"ok": true}, warn
}

TEST_CASE("run_command failures") {
  SECTION("non-zero exit, with the stderr tail") {
    auto out = run_command(
        sh("echo '{\"ignored\": 1}'; i=1; while [ $i -le 30 ]; do echo line$i >&2; i=$((i+1)); "
           "done; echo '::heartbeat' >&2; exit 3"),
        nullptr);
    REQUIRE(out.failure);
    CHECK_FALSE(out.output);
    CHECK(out.failure->code == errc::task_failed);
    CHECK(out.failure->message == "command exited with code 3");
    CHECK(out.failure->details["exit_code"] == 3);
    std::string tail;
    for (int i = 11; i <= 30; ++i)
      tail += (i > 11 ? "\n" : "") + std::string("line") + std::to_string(i);
    CHECK(out.failure->details["stderr_tail"] == tail);
  }
  SECTION("killed by a signal") {
    auto out = run_command(sh("kill -9 $$"), nullptr);
    REQUIRE(out.failure);
    CHECK(out.failure->code == errc::task_failed);
    CHECK(out.failure->message == "command was killed by signal 9 (SIGKILL)");
    CHECK(out.failure->details["signal"] == 9);
  }
  SECTION("no JSON object") {
    auto out = run_command(sh("echo hello; echo '[1, 2]'"), nullptr);
    REQUIRE(out.failure);
    CHECK(out.failure->code == errc::task_failed);
    CHECK(out.failure->message == "command printed no JSON object on stdout");
    CHECK(out.failure->details["stdout_tail"] == "hello\n[1, 2]");
  }
  SECTION("spawn error") {
    command_spec spec;
    spec.argv = {"nope-no-such-command-xyz"};
    auto out = run_command(spec, nullptr);
    REQUIRE(out.failure);
    CHECK(out.failure->code == errc::task_failed);
    CHECK(out.failure->message ==
          "cannot execute \"nope-no-such-command-xyz\": No such file or directory");
  }
  SECTION("invalid UTF-8 in stderr still gives a serializable error") {
    auto out = run_command(sh("printf 'bad \\377\\376 bytes\\n' >&2; exit 1"), nullptr);
    REQUIRE(out.failure);
    std::string tail = out.failure->details["stderr_tail"];
    CHECK(tail == "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
    CHECK_NOTHROW(out.failure->to_json().dump());
  }
}

TEST_CASE("run_command timeout and cancel") {
  SECTION("timeout") {
    auto spec = sh("sleep 100");
    spec.timeout = 500ms;
    auto started = std::chrono::steady_clock::now();
    auto out = run_command(spec, nullptr);
    CHECK(std::chrono::steady_clock::now() - started < 10s);
    REQUIRE(out.failure);
    CHECK(out.failure->code == errc::task_timeout);
    CHECK(out.failure->message == "command timed out after 500 ms");
    CHECK(out.timed_out);
    CHECK_FALSE(out.cancelled);
  }
  SECTION("cancel") {
    auto spec = sh("echo started; sleep 100");
    spec.cancel = std::make_shared<std::atomic<bool>>(false);
    auto out = run_command(spec, [&](const json&, bool) { spec.cancel->store(true); });
    REQUIRE(out.failure);
    CHECK(out.failure->code == errc::task_aborted);
    CHECK(out.failure->message == "command was cancelled");
    CHECK(out.cancelled);
  }
}

TEST_CASE("run_command fails fast on a bad heartbeat") {
  SECTION("not JSON") {
    auto started = std::chrono::steady_clock::now();
    heartbeat_log log;
    auto out = run_command(sh("echo '::heartbeat {oops'; sleep 100"), log.sink());
    CHECK(std::chrono::steady_clock::now() - started < 10s);
    REQUIRE(out.failure);
    CHECK(out.failure->code == errc::heartbeat_payload_not_json);
    CHECK_FALSE(out.cancelled);
    CHECK(log.data.empty());
  }
  SECTION("too large") {
    auto out = run_command(
        sh("printf '::heartbeat \"'; head -c 1100000 /dev/zero | tr '\\0' a; echo '\"'; "
           "sleep 100"),
        nullptr);
    REQUIRE(out.failure);
    CHECK(out.failure->code == errc::heartbeat_payload_too_large);
  }
}

TEST_CASE("output extraction refuses JSON the engine cannot take, never a part of it") {
  SECTION("too deep: the whole stdout") {
    std::string deep;
    for (int i = 0; i < 20000; ++i)
      deep += "{\"a\":";
    deep += "1";
    deep += std::string(20000, '}');
    auto found = find_output(deep);
    CHECK_FALSE(found.output);
    REQUIRE(found.refused);
    CHECK(found.refused->code == errc::invalid_output);
    CHECK(found.refused->message.find("nesting depth 129 exceeds the limit of 128") !=
          std::string::npos);
    CHECK(found.refused->details["path"].get<std::string>().rfind("$.a.a.a", 0) == 0);
  }
  SECTION("too deep inside prose: no inner object is taken instead") {
    std::string deep = "result: ";
    for (int i = 0; i < 200; ++i)
      deep += "{\"a\":";
    deep += "{\"small\": true}";
    deep += std::string(200, '}');
    deep += " done";
    auto found = find_output(deep);
    CHECK_FALSE(found.output);
    REQUIRE(found.refused);
    CHECK(found.refused->message.find("nesting depth") != std::string::npos);
  }
  SECTION("at the depth limit it is the output") {
    std::string ok;
    for (std::size_t i = 1; i < limits::max_output_depth; ++i)
      ok += "{\"a\":";
    ok += "{}";
    ok += std::string(limits::max_output_depth - 1, '}');
    CHECK(find_output(ok).output);
  }
  SECTION("a duplicate key, in a fenced block") {
    auto found = find_output("done\n```json\n{\"ok\": true, \"ok\": false}\n```\n");
    CHECK_FALSE(found.output);
    REQUIRE(found.refused);
    CHECK(found.refused->message.find("duplicate key \"ok\"") != std::string::npos);
  }
  SECTION("a number out of range") {
    auto found = find_output("{\"n\": 1e400}");
    REQUIRE(found.refused);
    CHECK(found.refused->details["path"] == "$.n");
  }
}

TEST_CASE("heartbeat payloads are parsed with bounds") {
  std::string deep = "::heartbeat ";
  for (int i = 0; i < 100000; ++i)
    deep += '[';
  try {
    parse_heartbeat_line(deep);
    FAIL("a 100,000-level payload was accepted");
  } catch (const smithers_error& e) {
    CHECK(e.code() == errc::heartbeat_payload_too_large);
    CHECK(e.err().message.find("nesting depth") != std::string::npos);
  }
  try {
    parse_heartbeat_line("::heartbeat {\"step\": 1, \"step\": 2}");
    FAIL("a payload with a duplicate key was accepted");
  } catch (const smithers_error& e) {
    CHECK(e.code() == errc::heartbeat_payload_not_json);
    CHECK(e.err().message.find("duplicate key") != std::string::npos);
  }
}

TEST_CASE("run_command stops a command whose stdout passes the bound") {
  auto started = std::chrono::steady_clock::now();
  auto spec = sh("head -c 3000000 /dev/zero | tr '\\0' x; sleep 100; echo '{}'");
  spec.max_stdout_bytes = 1000000;
  auto out = run_command(spec, nullptr);
  CHECK(std::chrono::steady_clock::now() - started < 30s); // stopped, not waited for
  REQUIRE(out.failure);
  CHECK(out.failure->code == errc::invalid_output);
  CHECK(out.failure->message.find("more than 1000000 bytes on stdout") != std::string::npos);
  auto below = sh("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo '{\"ok\": 1}'");
  below.max_stdout_bytes = 4000000;
  CHECK(run_command(below, nullptr).output == json{{"ok", 1}});
}

TEST_CASE("a carriage return ends a line: progress bars count as heartbeats") {
  heartbeat_log log;
  auto out =
      run_command(sh("printf '10%%\\r20%%\\r::heartbeat {\"p\": 30}\\r\\n40%%\\r'; echo '{}'"),
                  log.sink());
  REQUIRE(out.output);
  CHECK(log.data == std::vector<json>{json{{"p", 30}}});
  CHECK(log.plain_lines == 4); // 10%, 20%, 40%, {} — "\r\n" is one end
}

TEST_CASE("heartbeat lines on stdout are no part of what stdout may hold") {
  heartbeat_log log;
  // 1,000,000 heartbeat lines: 17 MB on stdout, against a bound of 1 MB.
  auto spec = sh("yes '::heartbeat {\"a\":1}' | head -n 1000000; echo '{\"ok\": 2}'");
  spec.max_stdout_bytes = 1000000;
  auto out = run_command(spec, log.sink());
  INFO((out.failure ? out.failure->what() : std::string{}));
  REQUIRE(out.output);
  CHECK(*out.output == json{{"ok", 2}});
  CHECK(log.data.size() == 1000000);
}

TEST_CASE("a checkpoint too large for the environment still reaches the next attempt on stdin") {
  auto spec = sh("cat > /dev/null; if [ -n \"${SMITHERS_LAST_HEARTBEAT+x}\" ]; then "
                 "echo '{\"env\": true}'; else echo '{\"env\": false}'; fi");
  spec.last_heartbeat = json{{"ck", std::string(200000, 'z')}};
  auto out = run_command(spec, nullptr);
  INFO((out.failure ? out.failure->what() : std::string{}));
  REQUIRE(out.output);
  CHECK(*out.output == json{{"env", false}});
  spec.last_heartbeat = json{{"ck", "small"}};
  auto small = run_command(spec, nullptr);
  REQUIRE(small.output);
  CHECK(*small.output == json{{"env", true}});
}

TEST_CASE("arguments and environment too large together are INVALID_ARGUMENT, not retried") {
  auto spec = sh("echo '{}'");
  for (int i = 0; i < 40; ++i)
    spec.env["BIG_" + std::to_string(i)] = std::string(100000, 'x'); // 4 MB > ARG_MAX
  auto out = run_command(spec, nullptr);
  REQUIRE(out.failure);
  CHECK(out.failure->code == errc::invalid_argument);
  CHECK(out.failure->message.find("larger than the system allows") != std::string::npos);
}

TEST_CASE("stdout that is not UTF-8 says so when no output is found") {
  auto out = run_command(sh("printf '{\"a\": \"\\377\"}'"), nullptr);
  REQUIRE(out.failure);
  CHECK(out.failure->message.find("not valid UTF-8") != std::string::npos);
}
