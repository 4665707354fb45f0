// How runs behave as seen through the smithers binary: ordering by needs,
// skip_if, concurrency limits, timeouts, heartbeats, signals, and where the
// database lives.
#include "system/cli_support.hpp"

#include <csignal>
#include <map>
#include <optional>
#include <set>

using namespace smithers::system_test;
using smithers::json;

namespace {

// The largest number of tasks in flight at once, replayed from the events.
int max_in_flight(const std::vector<json>& events) {
  int now = 0, most = 0;
  for (const auto& e : events) {
    const auto& t = e["type"];
    if (t == "NodeStarted")
      most = std::max(most, ++now);
    else if (t == "NodeFinished" || t == "NodeFailed" || t == "NodeRetrying" ||
             t == "NodeCancelled")
      --now;
  }
  return most;
}

std::int64_t seq_of(const std::vector<json>& events, const std::string& type,
                    const std::string& node) {
  for (const auto& e : events)
    if (e["type"] == type && e.value("node_id", std::string{}) == node)
      return e["seq"].get<std::int64_t>();
  return -1;
}

json sleepy_parallel(int tasks, const char* sleep_s, std::optional<int> group_max) {
  json kids = json::array();
  for (int i = 0; i < tasks; ++i)
    kids.push_back({{"task", "t" + std::to_string(i)},
                    {"run", std::string{"sleep "} + sleep_s + "; echo '{}'"}});
  json group = {{"parallel", kids}};
  if (group_max) group["max_concurrency"] = *group_max;
  return {{"name", "sleepy"}, {"root", group}};
}

// Kills a leftover process a test made a task start, so a failing test
// leaves nothing running.
void reap_leftover(pid_t pid) {
  if (pid > 0 && process_alive(pid)) ::kill(pid, SIGKILL);
}

} // namespace

TEST_CASE("a task with a true skip_if is skipped and the run finishes", "[system][engine]") {
  sandbox sb;
  auto wf = sb.write("wf.json", json::parse(R"({
    "name": "skipping",
    "input": {"type": "object", "properties": {"dry_run": {"type": "boolean"}}},
    "root": {"sequence": [
      {"task": "check", "value": {"ok": true}},
      {"task": "by_output", "skip_if": {"output": "check.ok", "equals": true},
       "run": ["sh", "-c", "touch by_output.ran; echo '{}'"]},
      {"task": "by_input", "skip_if": {"input": "dry_run", "equals": true},
       "run": ["sh", "-c", "touch by_input.ran; echo '{}'"]},
      {"task": "not_skipped", "skip_if": {"output": "check.ok", "equals": false},
       "value": {"ran": true}}
    ]}
  })"));
  auto r = sb.cli_json({"run", wf, "--run-id", "skip", "--input", R"({"dry_run": true})"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("skip");
  CHECK(j["run"]["status"] == "finished");
  CHECK(node_of(j, "by_output")["state"] == "skipped");
  CHECK(node_of(j, "by_input")["state"] == "skipped");
  CHECK(node_of(j, "not_skipped")["state"] == "finished");
  CHECK_FALSE(sb.dir().exists("by_output.ran"));
  CHECK_FALSE(sb.dir().exists("by_input.ran"));
  CHECK_FALSE(j["outputs"].contains("by_output"));
  CHECK(attempts_of(j, "by_output").empty());

  auto events = sb.events("skip");
  CHECK(seq_of(events, "NodeSkipped", "by_output") >= 0);
  CHECK(seq_of(events, "NodeSkipped", "by_input") >= 0);
  CHECK(seq_of(events, "NodeStarted", "by_output") == -1);
}

TEST_CASE("a task in a parallel group waits for the sibling it needs", "[system][engine]") {
  sandbox sb;
  auto wf = sb.write("wf.json", json::parse(R"({
    "name": "needs-in-parallel",
    "root": {"parallel": [
      {"task": "reader", "needs": ["writer"], "run": ["cat"]},
      {"task": "writer", "run": "sleep 0.5; echo '{\"v\": 42}'"}
    ]}
  })"));
  auto r = sb.cli_json({"run", wf, "--run-id", "pn"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("pn");
  CHECK(j["outputs"]["reader"]["needs"]["writer"] == json{{"v", 42}});
  auto events = sb.events("pn");
  CHECK(seq_of(events, "NodeFinished", "writer") < seq_of(events, "NodeStarted", "reader"));
}

TEST_CASE("a task that needs a later task of its sequence is refused before any run is created",
          "[system][engine]") {
  // The sequence runs `early` first, but `early` needs `late`'s output: this
  // can never run, and is visible in the file alone.
  json doc = json::parse(R"({
    "name": "backwards",
    "root": {"sequence": [
      {"task": "early", "needs": ["late"], "run": ["cat"]},
      {"task": "late", "value": {"x": 1}}
    ]}
  })");
  check_refused(
      [&](const sandbox& sb) {
        return std::vector<std::string>{"run", sb.write("wf.json", doc)};
      },
      {"INVALID_WORKFLOW", {"early", "late"}});
}

TEST_CASE("a parallel group's max_concurrency bounds the tasks in flight", "[system][engine]") {
  sandbox sb;
  auto wf = sb.write("wf.json", sleepy_parallel(4, "1", 2));
  auto r = sb.cli_json({"run", wf, "--run-id", "mc"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto events = sb.events("mc");
  CHECK(max_in_flight(events) <= 2);
  CHECK(max_in_flight(events) >= 2); // it does run them side by side
}

TEST_CASE("run --max-concurrency 1 runs a parallel group one task at a time", "[system][engine]") {
  sandbox sb;
  auto wf = sb.write("wf.json", sleepy_parallel(3, "0.3", std::nullopt));
  auto r = sb.cli_json({"run", wf, "--run-id", "one", "--max-concurrency", "1"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(max_in_flight(sb.events("one")) == 1);
  CHECK(r.out_json()["run"]["config"]["max_concurrency"] == 1);
}

TEST_CASE("a task over its timeout_ms fails with TASK_TIMEOUT and its processes are ended",
          "[system][engine]") {
  sandbox sb;
  auto bgpid = sb.file("bg.pid");
  json wf = {{"name", "slowpoke"},
             {"root",
              {{"task", "slow"},
               {"timeout_ms", 300},
               {"run", "sleep 60 & echo $! > " + bgpid + "; wait"}}}};
  auto started = std::chrono::steady_clock::now();
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "to"});
  auto took = std::chrono::steady_clock::now() - started;
  INFO(r);
  pid_t bg = pid_from_file(bgpid);
  CHECK(r.exit_code == 1);
  CHECK(took < std::chrono::seconds(45)); // nowhere near the 60 s sleep
  auto j = sb.inspect("to");
  auto attempts = attempts_of(j, "slow");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0]["error"]["code"] == "TASK_TIMEOUT");
  REQUIRE(bg > 0);
  CHECK(eventually([&] { return !process_alive(bg); }, std::chrono::seconds(15)));
  reap_leftover(bg);
}

namespace {

// Runs one command task printing `script`'s lines and returns its inspect.
json run_beating_task(const sandbox& sb, const std::string& script) {
  json wf = {{"name", "beats"}, {"root", {{"task", "worker"}, {"run", script}}}};
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "hb"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  return sb.inspect("hb");
}

int data_heartbeat_events(const sandbox& sb) {
  int with_data = 0;
  for (const auto& e : sb.events("hb"))
    if (e["type"] == "TaskHeartbeat" && e["has_data"] == true) ++with_data;
  return with_data;
}

} // namespace

TEST_CASE("heartbeat lines are recorded on the attempt and are not part of the output",
          "[system][engine]") {
  sandbox sb;
  auto j = run_beating_task(sb, "echo '::heartbeat {\"done\": 1}'; echo 'working'; "
                                "echo '::heartbeat {\"done\": 2}'; echo '{\"result\": \"ok\"}'");
  INFO(j.dump(2));
  CHECK(j["outputs"]["worker"] == json{{"result", "ok"}});
  auto attempts = attempts_of(j, "worker");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0]["heartbeat_ms"].is_number_integer());
  CHECK(attempts[0]["heartbeat_bytes"] == json{{"done", 2}}.dump().size());
  CHECK(data_heartbeat_events(sb) >= 1);
}

TEST_CASE("a checkpoint sent right after a bare ::heartbeat is kept", "[system][engine]") {
  // A bare "::heartbeat" is liveness only; the checkpoint that follows it
  // must still be recorded.
  sandbox sb;
  auto j = run_beating_task(sb, "echo '::heartbeat'; echo '::heartbeat {\"done\": 1}'; "
                                "echo '{\"result\": \"ok\"}'");
  INFO(j.dump(2));
  auto attempts = attempts_of(j, "worker");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0]["heartbeat_bytes"] == json{{"done", 1}}.dump().size());
  CHECK(data_heartbeat_events(sb) >= 1);
}

TEST_CASE("a heartbeat that is not JSON fails the attempt without retries", "[system][engine]") {
  sandbox sb;
  json wf = json::parse(R"({
    "name": "bad-beat",
    "root": {"task": "t", "retries": 2, "retry": {"initial_ms": 10, "max_ms": 20},
             "run": "echo '::heartbeat {broken'; echo '{}'"}
  })");
  auto r = sb.cli_json({"run", sb.write("wf.json", wf), "--run-id", "bb"});
  INFO(r);
  CHECK(r.exit_code == 1);
  auto attempts = attempts_of(sb.inspect("bb"), "t");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0]["error"]["code"] == "HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE");
}

TEST_CASE("a task runs in its cwd with its env templates filled in", "[system][engine]") {
  sandbox sb;
  REQUIRE(::mkdir(sb.file("work").c_str(), 0755) == 0);
  json wf = {{"name", "cwd-env"},
             {"root",
              {{"task", "where"},
               {"cwd", sb.file("work")},
               {"env", {{"WHO", "{{input.who}}"}, {"PLAIN", "plain value"}}},
               {"run", "printf '%s|%s' \"$WHO\" \"$PLAIN\" > here.txt; echo '{}'"}}}};
  auto r = sb.cli_json(
      {"run", sb.write("wf.json", wf), "--run-id", "cwd", "--input", R"({"who": "it's me"})"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(read_file(sb.file("work/here.txt")) == "it's me|plain value");
}

TEST_CASE("SIGTERM and SIGINT stop smithers with 128+signal, keep the run resumable and end "
          "its tasks",
          "[system][engine][signals]") {
  for (int sig : {SIGTERM, SIGINT}) {
    DYNAMIC_SECTION((sig == SIGTERM ? "SIGTERM" : "SIGINT")) {
      sandbox sb;
      auto pidfile = sb.file("task.pid");
      json wf = {{"name", "interrupted"},
                 {"root", {{"task", "long"}, {"run", "echo $$ > " + pidfile + "; exec sleep 60"}}}};
      auto proc = sb.start({"run", sb.write("wf.json", wf), "--run-id", "sig"});
      REQUIRE(eventually([&] { return pid_from_file(pidfile) > 0; }, std::chrono::seconds(60)));
      pid_t task = pid_from_file(pidfile);
      REQUIRE(eventually([&] { return process_alive(task); }, std::chrono::seconds(5)));

      proc->signal(sig);
      auto r = proc->wait();
      INFO(r);
      CHECK_FALSE(r.timed_out);
      CHECK(r.exit_code == 128 + sig);

      auto j = sb.inspect("sig");
      CHECK(j["run"]["status"] == "running"); // not failed: resume can pick it up
      CHECK(node_of(j, "long")["state"] != "finished");

      // No task process outlives its attempt, even when smithers is stopped.
      CHECK(eventually([&] { return !process_alive(task); }, std::chrono::seconds(15)));
      reap_leftover(task);
    }
  }
}

TEST_CASE("the database is ./smithers.db by default, or $SMITHERS_DB", "[system][db]") {
  sandbox sb;
  auto wf = sb.write("wf.json", good_workflow());

  command_options in_dir;
  in_dir.cwd = sb.dir().path();
  auto r = run_smithers({"run", wf, "--run-id", "default-db"}, in_dir);
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(file_exists(sb.file("smithers.db")));

  command_options with_env;
  with_env.cwd = sb.dir().path();
  with_env.env["SMITHERS_DB"] = sb.file("from-env.db");
  auto e = run_smithers({"run", wf, "--run-id", "env-db"}, with_env);
  INFO(e);
  REQUIRE(e.exit_code == 0);
  CHECK(file_exists(sb.file("from-env.db")));

  auto ps_env = run_smithers({"--format", "json", "ps"}, with_env);
  INFO(ps_env);
  REQUIRE(ps_env.exit_code == 0);
  auto runs = ps_env.out_json();
  REQUIRE(runs.size() == 1);
  CHECK(runs[0]["run_id"] == "env-db");

  // --db wins over $SMITHERS_DB
  auto ps_flag = run_smithers({"--db", sb.file("smithers.db"), "--format", "json", "ps"}, with_env);
  INFO(ps_flag);
  REQUIRE(ps_flag.exit_code == 0);
  auto flag_runs = ps_flag.out_json();
  REQUIRE(flag_runs.size() == 1);
  CHECK(flag_runs[0]["run_id"] == "default-db");
}

TEST_CASE("smithers --help and --version exit 0 and say what smithers is", "[system][args]") {
  auto help = run_smithers({"--help"});
  INFO(help);
  CHECK(help.exit_code == 0);
  for (const char* cmd : {"run", "ps", "inspect", "logs", "validate", "graph"})
    CHECK(contains(help.out, cmd));
  auto version = run_smithers({"--version"});
  INFO(version);
  CHECK(version.exit_code == 0);
  CHECK(contains(version.out, "smithers"));
}
