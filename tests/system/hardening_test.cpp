// What a hostile trial of the CLI broke, each as a user or an attacker would
// meet it: deep and huge JSON, in-memory databases, SIGHUP and a second
// Ctrl-C, cancelling and taking over runs whose owner is dead or alive, runs
// resumed from elsewhere, inert forks, `logs -f` on a dead owner, and what
// text output shows. Every test failed before the fix it covers.
#include "system/cli_support.hpp"

#include "store/database.hpp"
#include "store/reader.hpp"

#include <csignal>
#include <set>
#include <sys/stat.h>

using namespace smithers::system_test;
using smithers::json;

namespace {

// Waits until `path` holds a pid; 0 after the limit.
pid_t wait_for_pid(const std::string& path,
                   std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  pid_t pid = 0;
  eventually([&] { return (pid = pid_from_file(path)) != 0; }, limit);
  return pid;
}

// Whether the run's attempt in flight has its process group recorded (what
// lets a later process end the commands a dead owner left behind).
bool process_group_recorded(const sandbox& sb, const std::string& run_id) {
  auto db = smithers::store::database::open_existing(sb.db());
  if (!db) return false;
  for (const auto& a : smithers::store::reader{*db}.attempts(run_id))
    if (a.state == "in-progress" && a.meta.contains("pgid")) return true;
  return false;
}

// A run started in the background, waited until its first command runs (it
// writes its pid to `pid_file`) and is recorded, then killed with SIGKILL: a
// dead owner.
void start_and_kill(const sandbox& sb, const std::string& wf, const std::string& run_id,
                    const std::string& pid_file, command_options opts = {}) {
  auto proc = sb.start({"run", wf, "--run-id", run_id}, std::move(opts));
  REQUIRE(wait_for_pid(pid_file) != 0);
  REQUIRE(eventually([&] { return process_group_recorded(sb, run_id); }));
  proc->signal(SIGKILL);
  auto r = proc->wait();
  REQUIRE(r.exit_code == 128 + SIGKILL);
}

json one_task(const std::string& run) {
  return json{{"name", "one"}, {"root", {{"task", "t"}, {"run", run}}}};
}

std::string status_of(const sandbox& sb, const std::string& run_id) {
  return sb.inspect(run_id)["run"]["status"].get<std::string>();
}

} // namespace

// ------------------------------------------------------------- deep and huge JSON

TEST_CASE("a command printing JSON nested 100,000 deep fails its attempt, and nothing crashes",
          "[system][hardening][json]") {
  sandbox sb;
  auto wf = sb.write(
      "deep.json",
      json{{"name", "deep"},
           {"root",
            {{"sequence",
              {{{"task", "deep"},
                {"run", "i=0; while [ $i -lt 100000 ]; do printf '{\"a\":'; i=$((i+1)); done; "
                        "printf 1; i=0; while [ $i -lt 100000 ]; do printf '}'; i=$((i+1)); done"}},
               {{"task", "after"}, {"value", json::object()}}}}}}});
  auto r = sb.cli_json({"run", wf, "--run-id", "deep"});
  INFO(r);
  REQUIRE(r.exit_code == 1); // failed, not killed by a signal
  auto j = r.out_json();
  CHECK(j["run"]["status"] == "failed");
  auto attempts = attempts_of(j, "deep");
  REQUIRE(attempts.size() == 1); // INVALID_OUTPUT is not retried
  CHECK(attempts[0]["error"]["code"] == "INVALID_OUTPUT");
  CHECK(contains(attempts[0]["error"]["message"].get<std::string>(),
                 "nesting depth 129 exceeds the limit of 128"));
  // Everything that reads the run afterwards works.
  CHECK(sb.cli({"inspect", "deep"}).exit_code == 0);
  CHECK(sb.cli({"logs", "deep"}).exit_code == 0);
  CHECK(sb.cli({"timeline", "deep"}).exit_code == 0);
}

TEST_CASE("an output over the limit fails its attempt; --max-output-bytes raises the limit",
          "[system][hardening][json]") {
  sandbox sb;
  // {"s": "xxx...x"}: 5 MiB of text, over the 4 MiB default.
  auto wf =
      sb.write("big.json", one_task("printf '{\"s\": \"'; head -c 5242880 /dev/zero | tr '\\0' x; "
                                    "printf '\"}'"));
  auto r = sb.cli_json({"run", wf, "--run-id", "big"});
  INFO(r);
  REQUIRE(r.exit_code == 1);
  auto attempts = attempts_of(r.out_json(), "t");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0]["error"]["code"] == "INVALID_OUTPUT");
  CHECK(contains(attempts[0]["error"]["message"].get<std::string>(),
                 "exceeds the limit of 4194304 bytes"));

  auto raised = sb.cli_json({"run", wf, "--run-id", "raised", "--max-output-bytes", "6000000"});
  INFO(raised);
  CHECK(raised.exit_code == 0);
  CHECK(raised.out_json()["run"]["config"]["max_output_bytes"] == 6000000);

  auto bad = sb.cli({"run", wf, "--max-output-bytes", "0"});
  CHECK(bad.exit_code == 4);
  CHECK(contains(bad.err, "INVALID_ARGUMENT"));
}

TEST_CASE("a command flooding stdout is stopped with INVALID_OUTPUT", "[system][hardening][json]") {
  sandbox sb;
  auto marker = sb.file("went-on");
  // 4 x 1 MB of stdout allowed with a 1 MB output limit; `yes` never ends.
  auto wf = sb.write("flood.json", one_task("yes; touch " + marker));
  auto r = sb.cli_json({"run", wf, "--run-id", "flood", "--max-output-bytes", "1000000"});
  INFO(r);
  REQUIRE(r.exit_code == 1);
  auto attempts = attempts_of(r.out_json(), "t");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0]["error"]["code"] == "INVALID_OUTPUT");
  CHECK(contains(attempts[0]["error"]["message"].get<std::string>(),
                 "more than 4000000 bytes on stdout"));
  CHECK_FALSE(file_exists(marker));
}

TEST_CASE("input and workflow files: deep, duplicate keys, numbers out of range",
          "[system][hardening][json]") {
  std::string deep_input = "{\"a\":";
  for (int i = 0; i < 100000; ++i)
    deep_input += "[";
  check_refused(
      [&](const sandbox& sb) {
        return std::vector<std::string>{"run", sb.write("wf.json", good_workflow()), "--input",
                                        deep_input};
      },
      {"INVALID_INPUT", {"$.a", "nesting depth 33 exceeds the limit of 32"}});
  check_refused(
      [](const sandbox& sb) {
        return std::vector<std::string>{"run", sb.write("wf.json", good_workflow()), "--input",
                                        R"({"n": 1e400})"};
      },
      {"INVALID_INPUT", {"$.n", "1e400 is out of range"}});
  check_refused(
      [](const sandbox& sb) {
        return std::vector<std::string>{"run", sb.write("wf.json", good_workflow()), "--input",
                                        R"({"dry_run": false, "dry_run": true})"};
      },
      {"INVALID_INPUT", {"duplicate key \"dry_run\""}});
  std::string deep_wf = R"({"name": "d", "root": )";
  for (int i = 0; i < 20000; ++i)
    deep_wf += R"({"sequence": [)";
  for (const char* command : {"validate", "graph", "run"})
    check_refused(
        [&](const sandbox& sb) {
          return std::vector<std::string>{command, sb.write("deep.json", deep_wf)};
        },
        {"INVALID_WORKFLOW", {"deep.json", "nesting depth 129 exceeds the limit of 128"}});
  check_refused(
      [](const sandbox& sb) {
        return std::vector<std::string>{
            "validate",
            sb.write("wf.json", std::string{R"({"name": "x", "root": {"task": "a", "value": {},
                                                 "retries": 2, "retries": 0}})"})};
      },
      {"INVALID_WORKFLOW", {"root.retries", "duplicate key \"retries\""}});
  check_refused(
      [](const sandbox& sb) {
        return std::vector<std::string>{
            "run", sb.write("wf.json", std::string{R"({"name": "x", "root": {"task": "a",
                                                 "value": {}, "timeout_ms": 1e400}})"})};
      },
      {"INVALID_WORKFLOW", {"root.timeout_ms", "out of range"}});
}

TEST_CASE("supervise survives a run that cannot be resumed and goes on with the others",
          "[system][hardening][supervise]") {
  sandbox sb;
  auto pid_a = sb.file("a.pid"), pid_b = sb.file("b.pid");
  auto wf_for = [&](const std::string& name, const std::string& pid_file) {
    return sb.write(
        name + ".json",
        json{{"name", name},
             {"root",
              {{"sequence",
                {{{"task", "first"}, {"value", {{"v", 1}}}},
                 {{"task", "wait"},
                  {"needs", {"first"}},
                  {"run", "if [ -f " + pid_file + " ]; then echo '{}'; else echo $$ > " + pid_file +
                              "; sleep 60; fi"}}}}}}});
  };
  start_and_kill(sb, wf_for("poisoned", pid_a), "poisoned", pid_a);
  start_and_kill(sb, wf_for("healthy", pid_b), "healthy", pid_b);
  // What an older smithers could leave behind: an output nested far deeper
  // than anything can copy without overflowing the stack.
  std::string deep;
  for (int i = 0; i < 100000; ++i)
    deep += "[";
  for (int i = 0; i < 100000; ++i)
    deep += "]";
  auto sql = sb.write("poison.sql", "UPDATE attempts SET output_json = '{\"v\": " + deep +
                                        "}' WHERE run_id = 'poisoned' AND node_id = 'first';\n");
  auto r = run_command({"sh", "-c", "sqlite3 '" + sb.db() + "' < '" + sql + "'"});
  REQUIRE(r.exit_code == 0);

  auto sup = sb.cli({"supervise", "--once", "--stale-after", "1s"});
  INFO(sup);
  CHECK(sup.exit_code == 0);
  CHECK(contains(sup.out, "skipped run poisoned"));
  CHECK(contains(sup.out, "run healthy finished"));
  CHECK(status_of(sb, "healthy") == "finished");
  // The poisoned run is reported, not crashed on.
  auto ins = sb.cli({"inspect", "poisoned"});
  CHECK(ins.exit_code == 1);
  CHECK(contains(ins.err, "DB_ERROR"));
}

// ------------------------------------------------------------- --db

TEST_CASE("an empty or in-memory database path is refused before anything runs",
          "[system][hardening]") {
  sandbox sb;
  auto wf = sb.write("wf.json", good_workflow());
  auto marker = sb.file("ran");
  auto touching = sb.write("touch.json", one_task("touch " + marker + "; echo '{}'"));
  for (const std::string db : {"", ":memory:", "file::memory:?cache=shared"}) {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"run", touching}, {"ps"}, {"supervise", "--once"}, {"inspect", "x"}}) {
      std::vector<std::string> full{"--db", db};
      full.insert(full.end(), args.begin(), args.end());
      command_options opts;
      opts.cwd = sb.dir().path();
      auto r = run_smithers(full, opts);
      INFO("--db '" << db << "' " << args[0] << "\n" << r);
      CHECK(r.exit_code == 4);
      CHECK(contains(r.err, "error: INVALID_ARGUMENT: --db"));
    }
  }
  CHECK_FALSE(file_exists(marker));
  // Nothing was created in the working directory either.
  std::set<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(sb.dir().path()))
    files.insert(e.path().filename().string());
  CHECK(files == std::set<std::string>{"wf.json", "touch.json"});
  // SMITHERS_DB is held to the same rule.
  command_options env;
  env.unset_env = {};
  env.env["SMITHERS_DB"] = ":memory:";
  env.cwd = sb.dir().path();
  auto r = run_smithers({"run", touching}, env);
  CHECK(r.exit_code == 4);
  CHECK_FALSE(file_exists(marker));
}

// ------------------------------------------------------------- signals

TEST_CASE("SIGHUP interrupts a run like SIGTERM: attempts recorded, no orphan, resumable",
          "[system][hardening][signals]") {
  sandbox sb;
  auto pid_file = sb.file("pid");
  auto wf = sb.write("hup.json", one_task("if [ -f " + pid_file +
                                          " ]; then echo '{\"again\": true}'; else "
                                          "sleep 60 & echo $! > " +
                                          pid_file + "; wait; fi"));
  auto proc = sb.start({"run", wf, "--run-id", "hup"});
  pid_t child = wait_for_pid(pid_file);
  REQUIRE(child != 0);
  proc->signal(SIGHUP);
  auto r = proc->wait();
  INFO(r);
  CHECK(r.exit_code == 128 + SIGHUP);
  CHECK(contains(r.err, "interrupted by SIGHUP"));
  CHECK(eventually([&] { return !process_alive(child); }, std::chrono::seconds(10)));
  auto j = sb.inspect("hup");
  CHECK(j["run"]["status"] == "running");
  auto attempts = attempts_of(j, "t");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0]["state"] == "cancelled");
  CHECK(node_of(j, "t")["state"] == "pending");
  auto resumed = sb.cli({"resume", "hup"});
  INFO(resumed);
  CHECK(resumed.exit_code == 0);
}

TEST_CASE("a second Ctrl-C ends every child at once, one that ignores SIGTERM too",
          "[system][hardening][signals]") {
  sandbox sb;
  auto pid_file = sb.file("pid");
  auto wf = sb.write("stubborn.json",
                     one_task("trap '' TERM; sleep 60 & echo $! > " + pid_file + "; wait; wait"));
  auto proc = sb.start({"run", wf, "--run-id", "stubborn"});
  pid_t child = wait_for_pid(pid_file);
  REQUIRE(child != 0);
  proc->signal(SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  proc->signal(SIGINT);
  auto r = proc->wait();
  INFO(r);
  CHECK(r.exit_code == 130);
  // Gone at once: well before the 2 s SIGTERM -> SIGKILL grace of the first.
  CHECK(eventually([&] { return !process_alive(child); }, std::chrono::milliseconds(1000)));
}

// ------------------------------------------------------------- cancel

TEST_CASE("cancel of a run whose owner is dead ends it cancelled, processes and all",
          "[system][hardening][cancel]") {
  sandbox sb;
  auto pid_file = sb.file("pid");
  auto wf =
      sb.write("slow.json",
               json{{"name", "slow"},
                    {"root",
                     {{"sequence",
                       {{{"task", "slow"}, {"run", "sleep 60 & echo $! > " + pid_file + "; wait"}},
                        {{"task", "after"}, {"value", json::object()}}}}}}});
  start_and_kill(sb, wf, "orphan", pid_file);
  pid_t child = pid_from_file(pid_file);
  REQUIRE(process_alive(child)); // left behind by the dead owner

  auto r = sb.cli({"cancel", "orphan"});
  INFO(r);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.out, "run orphan cancelled"));
  CHECK(contains(r.out, "is gone"));
  CHECK(contains(r.out, "1 attempt(s) it left in flight"));
  CHECK(eventually([&] { return !process_alive(child); }, std::chrono::seconds(10)));
  auto j = sb.inspect("orphan");
  CHECK(j["run"]["status"] == "cancelled");
  CHECK(j["run"]["error"]["code"] == "RUN_CANCELLED");
  auto attempts = attempts_of(j, "slow");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts[0]["state"] == "cancelled");
  CHECK(node_of(j, "slow")["state"] == "cancelled");
  CHECK(node_of(j, "after")["state"] == "cancelled");
  auto events = sb.events("orphan");
  REQUIRE_FALSE(events.empty());
  CHECK(events.back()["type"] == "RunCancelled");
  // A second cancel says it has ended (`resume` would retry it: a test of
  // its own, in wait_test.cpp).
  auto again = sb.cli({"cancel", "orphan"});
  CHECK(again.exit_code == 4);
  CHECK(contains(again.err, "has already ended (cancelled)"));
}

TEST_CASE("resume honours a cancel requested while the owner was stopped, before starting anything",
          "[system][hardening][cancel]") {
  sandbox sb;
  auto pid_file = sb.file("pid");
  auto starts = sb.file("starts");
  auto wf = sb.write("slow.json", one_task("echo start >> " + starts + "; sleep 60 & echo $! > " +
                                           pid_file + "; wait"));
  auto proc = sb.start({"run", wf, "--run-id", "stopped"});
  REQUIRE(wait_for_pid(pid_file) != 0);
  proc->signal(SIGSTOP); // alive, but it will never act on the request
  auto c = sb.cli({"cancel", "stopped"});
  INFO(c);
  CHECK(c.exit_code == 0);
  CHECK(contains(c.out, "requested"));
  CHECK(contains(c.out, "has not stopped it yet"));
  proc->signal(SIGKILL);
  proc->wait();

  auto r = sb.cli({"resume", "stopped"});
  INFO(r);
  CHECK(r.exit_code == 2);
  CHECK(status_of(sb, "stopped") == "cancelled");
  CHECK(read_file(starts) == "start\n"); // no new attempt ran
  CHECK(attempts_of(sb.inspect("stopped"), "t").size() == 1);
}

// ------------------------------------------------------------- handover

TEST_CASE("resume --force while the owner lives is a handover: one driver at a time",
          "[system][hardening][handover]") {
  sandbox sb;
  auto starts = sb.file("starts");
  auto wf = sb.write("handover.json",
                     json{{"name", "handover"},
                          {"root",
                           {{"sequence",
                             {{{"task", "first"}, {"value", {{"v", 1}}}},
                              {{"task", "work"},
                               {"run", "echo $$ >> " + starts + "; n=$(wc -l < " + starts +
                                           "); if [ $n -gt 1 ]; then echo '{\"by\": 2}'; else "
                                           "sleep 60; fi"}},
                              {{"task", "last"}, {"value", json::object()}}}}}}});
  auto owner = sb.start({"run", wf, "--run-id", "taken"});
  REQUIRE(eventually([&] { return file_exists(starts); }));
  pid_t first_worker = pid_from_file(starts);

  auto r = sb.cli({"resume", "taken", "--force"});
  INFO(r);
  auto old = owner->wait();
  INFO(old);
  CHECK(r.exit_code == 0);
  CHECK(old.exit_code == 1);
  CHECK(contains(old.err, "was handed over to another process"));
  CHECK_FALSE(contains(old.err, "DB_ERROR"));
  CHECK_FALSE(contains(r.err, "DB_ERROR"));
  CHECK_FALSE(process_alive(first_worker));
  auto j = sb.inspect("taken");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["outputs"]["work"] == json{{"by", 2}});
  auto work = attempts_of(j, "work");
  REQUIRE(work.size() == 2);
  CHECK(work[0]["state"] == "cancelled");
  CHECK(work[1]["state"] == "finished");
  CHECK(attempts_of(j, "first").size() == 1); // finished work is not redone
  bool handed_over = false;
  for (const auto& e : sb.events("taken"))
    if (e["type"] == "RunResumed") handed_over = e["handover"] == true;
  CHECK(handed_over);
}

// ------------------------------------------------------------- working directory

TEST_CASE("a run resumed from another directory runs its commands where it started",
          "[system][hardening][cwd]") {
  sandbox sb;
  auto home = sb.file("project");
  std::filesystem::create_directories(home + "/sub");
  auto elsewhere = sb.file("elsewhere");
  std::filesystem::create_directories(elsewhere);
  sb.dir().write_script("project/tool.sh", "#!/bin/sh\necho '{\"tool\": true}'\n");
  auto pid_file = sb.file("pid");
  auto wf = sb.write(
      "project/wf.json",
      json{{"name", "cwd"},
           {"root",
            {{"sequence",
              {{{"task", "slow"},
                {"run", "if [ -f once ]; then echo '{}'; else touch once; echo $$ > " + pid_file +
                            "; sleep 60; fi"}},
               {{"task", "tool"}, {"run", {"./tool.sh"}}},
               {{"task", "where"}, {"cwd", "sub"}, {"run", "pwd > where.txt; echo '{}'"}}}}}}});
  command_options in_home;
  in_home.cwd = home;
  start_and_kill(sb, wf, "moved", pid_file, in_home);

  command_options in_elsewhere;
  in_elsewhere.cwd = elsewhere;
  auto r = sb.cli({"resume", "moved"}, in_elsewhere);
  INFO(r);
  CHECK(r.exit_code == 0);
  CHECK(file_exists(home + "/once"));
  CHECK_FALSE(file_exists(elsewhere + "/once"));
  CHECK(read_file(home + "/sub/where.txt") ==
        std::filesystem::canonical(home + "/sub").string() + "\n");
  CHECK(sb.inspect("moved")["outputs"]["tool"] == json{{"tool", true}});
  CHECK(sb.inspect("moved")["run"]["cwd"] == std::filesystem::canonical(home).string());
}

// ------------------------------------------------------------- fork

TEST_CASE("a fork without --run is inert: created, left alone by supervise, started by resume",
          "[system][hardening][fork]") {
  sandbox sb;
  auto marker = sb.file("ran");
  auto wf = sb.write("wf.json", one_task("echo x >> " + marker + "; echo '{}'"));
  REQUIRE(sb.cli({"run", wf, "--run-id", "parent"}).exit_code == 0);
  auto f = sb.cli_json({"fork", "parent", "--frame", "0", "--run-id", "child"});
  INFO(f);
  REQUIRE(f.exit_code == 0);
  CHECK(f.out_json()["status"] == "created");
  CHECK(status_of(sb, "child") == "created");
  auto ps = sb.cli({"ps"});
  CHECK(contains(ps.out, "child"));
  CHECK(contains(ps.out, "created"));
  CHECK(sb.cli_json({"ps", "--status", "created"}).out_json().size() == 1);

  auto sup = sb.cli({"supervise", "--once", "--stale-after", "1ms"});
  INFO(sup);
  CHECK(sup.exit_code == 0);
  CHECK_FALSE(contains(sup.out, "child"));
  CHECK(status_of(sb, "child") == "created");
  CHECK(read_file(marker) == "x\n");

  auto r = sb.cli({"resume", "child"});
  INFO(r);
  CHECK(r.exit_code == 0);
  CHECK(status_of(sb, "child") == "finished");
  CHECK(read_file(marker) == "x\nx\n");
}

// ------------------------------------------------------------- logs -f

TEST_CASE("logs -f notices that the process driving the run died, and says so",
          "[system][hardening][logs]") {
  sandbox sb;
  auto pid_file = sb.file("pid");
  auto wf = sb.write("slow.json", one_task("echo $$ > " + pid_file + "; sleep 60"));
  auto owner = sb.start({"run", wf, "--run-id", "dies"});
  REQUIRE(wait_for_pid(pid_file) != 0);
  auto follower = sb.start({"logs", "dies", "-f"});
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  owner->signal(SIGKILL);
  owner->wait();
  auto started = std::chrono::steady_clock::now();
  auto r = follower->wait();
  INFO(r);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "lost the process driving it"));
  CHECK(contains(r.err, "smithers resume dies"));
  CHECK(contains(r.out, "NodeStarted"));
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(20));
}

TEST_CASE("logs -f waits for a run that does not exist yet", "[system][hardening][logs]") {
  sandbox sb;
  auto wf = sb.write("wf.json", one_task("sleep 1; echo '{}'"));
  auto follower = sb.start({"logs", "-f", "later"});
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  auto r = sb.cli({"run", wf, "--run-id", "later"});
  REQUIRE(r.exit_code == 0);
  auto f = follower->wait();
  INFO(f);
  CHECK(f.exit_code == 0);
  CHECK(contains(f.out, "RunStarted"));
  CHECK(contains(f.out, "RunFinished"));
  // An id that never appears is still RUN_NOT_FOUND once the wait is over.
  auto missing = sb.cli({"logs", "never"});
  CHECK(missing.exit_code == 4);
  CHECK(contains(missing.err, "RUN_NOT_FOUND"));
}

// ------------------------------------------------------------- text output

TEST_CASE("text output escapes control characters and shows errors in full",
          "[system][hardening][text]") {
  sandbox sb;
  auto wf = sb.write(
      "evil.json",
      json{{"name", "evil\u001b]0;pwned\u0007name"},
           {"root",
            {{"sequence",
              {{{"task", "fails"},
                {"label", "label \u001b[2J cleared"},
                {"run", "echo 'some progress'; printf 'boom \\033[31mred\\n' >&2; exit 3"}}}}}}});
  auto r = sb.cli({"run", wf, "--run-id", "evil"});
  INFO(r);
  CHECK(r.exit_code == 1);
  for (const auto& cmd : std::vector<std::vector<std::string>>{
           {"ps"}, {"inspect", "evil"}, {"logs", "evil"}, {"timeline", "evil"}}) {
    auto out = sb.cli(cmd);
    INFO(cmd[0] << "\n" << out);
    CHECK(out.exit_code == 0);
    CHECK(out.out.find('\x1b') == std::string::npos);
    CHECK(out.out.find('\x07') == std::string::npos);
  }
  auto ins = sb.cli({"inspect", "evil"});
  CHECK(contains(ins.out, "evil\\x1b]0;pwned\\x07name"));
  CHECK(contains(ins.out, "\"label \\x1b[2J cleared\"")); // the node's label
  CHECK(contains(ins.out, "exit_code: 3"));               // the attempt's error details
  CHECK(contains(ins.out, "| boom \\x1b[31mred"));        // the stderr tail
  CHECK(contains(ins.out, "TASK_FAILED: command exited with code 3"));
}

TEST_CASE("ps keeps its columns aligned for long run ids", "[system][hardening][text]") {
  sandbox sb;
  auto wf = sb.write("wf.json", good_workflow());
  std::string long_id(120, 'x');
  REQUIRE(sb.cli({"run", wf, "--run-id", long_id}).exit_code == 0);
  REQUIRE(sb.cli({"run", wf, "--run-id", "short"}).exit_code == 0);
  auto ps = sb.cli({"ps"});
  std::istringstream in(ps.out);
  std::string line;
  std::vector<std::size_t> status_at;
  while (std::getline(in, line)) {
    auto p = line.find(line.rfind("STATUS") != std::string::npos ? "STATUS" : "finished");
    REQUIRE(p != std::string::npos);
    status_at.push_back(p);
  }
  REQUIRE(status_at.size() == 3);
  CHECK(status_at[0] == status_at[1]);
  CHECK(status_at[1] == status_at[2]);
  CHECK(status_at[0] > 120);
}

TEST_CASE("timeline shows which nodes each frame changed", "[system][hardening][text]") {
  sandbox sb;
  REQUIRE(sb.cli({"run", sb.write("wf.json", good_workflow()), "--run-id", "tl"}).exit_code == 0);
  auto t = sb.cli({"timeline", "tl"});
  INFO(t);
  CHECK(contains(t.out, "a:finished b:pending"));
  CHECK(contains(t.out, "b:finished"));
  auto j = sb.cli_json({"timeline", "tl"}).out_json();
  bool a_finished = false;
  for (const auto& f : j["frames"])
    a_finished = a_finished || f["changed"].value("a", "") == "finished";
  CHECK(a_finished);
}

TEST_CASE("validate checks the input schema itself, and an input given with --input",
          "[system][hardening][validate]") {
  sandbox sb;
  auto wf = sb.write("wf.json", json{{"name", "needs-input"},
                                     {"input",
                                      {{"type", "object"},
                                       {"required", {"repo"}},
                                       {"properties", {{"repo", {{"type", "string"}}}}}}},
                                     {"root", {{"task", "a"}, {"value", json::object()}}}});
  auto plain = sb.cli({"validate", wf});
  INFO(plain);
  CHECK(plain.exit_code == 0);
  auto good = sb.cli({"validate", wf, "--input", R"({"repo": "x"})"});
  INFO(good);
  CHECK(good.exit_code == 0);
  CHECK(contains(good.out, "input ok"));
  auto bad = sb.cli({"validate", wf, "--input", "{}"});
  INFO(bad);
  CHECK(bad.exit_code == 4);
  CHECK(contains(bad.err, "INVALID_INPUT"));
  CHECK(contains(bad.err, "repo"));
  CHECK_FALSE(sb.db_exists());
}

// ------------------------------------------------------------- second trial

TEST_CASE("SIGQUIT and the other fatal signals interrupt a run like SIGTERM, children and all",
          "[system][hardening][signals]") {
  for (int sig : {SIGQUIT, SIGUSR1, SIGALRM}) {
    INFO("signal " << sig);
    sandbox sb;
    auto pid_file = sb.file("pid");
    auto wf = sb.write("quit.json", one_task("sleep 60 & echo $! > " + pid_file + "; wait"));
    auto proc = sb.start({"run", wf, "--run-id", "quit"});
    pid_t child = wait_for_pid(pid_file);
    REQUIRE(child != 0);
    proc->signal(sig);
    auto r = proc->wait();
    INFO(r);
    CHECK(r.exit_code == 128 + sig);
    CHECK(eventually([&] { return !process_alive(child); }, std::chrono::seconds(10)));
    CHECK(attempts_of(sb.inspect("quit"), "t").at(0)["state"] == "cancelled");
  }
}

TEST_CASE("a database whose tables are gone is DB_ERROR at once, not a hang",
          "[system][hardening][db]") {
  sandbox sb;
  auto wf = sb.write("wf.json", good_workflow());
  auto made = run_command({"sqlite3", sb.db(), "PRAGMA user_version = 6; CREATE TABLE t (x);"});
  REQUIRE(made.exit_code == 0);
  command_options opts;
  opts.timeout = std::chrono::seconds(60);
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"run", wf}, {"ps"}, {"supervise", "--once"}}) {
    auto r = sb.cli(args, opts);
    INFO(args[0] << "\n" << r);
    CHECK_FALSE(r.timed_out);
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "DB_ERROR"));
    CHECK(contains(r.err, "is damaged"));
    CHECK(r.out.empty());
  }
}

TEST_CASE("a workflow file that is a FIFO is refused at once; supervise goes on with the others",
          "[system][hardening][supervise]") {
  sandbox sb;
  auto fifo = sb.file("fifo.json");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  command_options opts;
  opts.timeout = std::chrono::seconds(60);
  auto v = sb.cli({"validate", fifo}, opts);
  INFO(v);
  CHECK_FALSE(v.timed_out);
  CHECK(v.exit_code == 4);
  CHECK(contains(v.err, "it is a FIFO"));

  // A crashed run whose file became a FIFO, and a healthy crashed run.
  auto pid_a = sb.file("a.pid"), pid_b = sb.file("b.pid");
  auto slow = [&](const std::string& pid_file) {
    return one_task("if [ -f " + pid_file + " ]; then echo '{}'; else echo $$ > " + pid_file +
                    "; sleep 60; fi");
  };
  auto wf_a = sb.write("a.json", slow(pid_a));
  auto wf_b = sb.write("b.json", slow(pid_b));
  start_and_kill(sb, wf_a, "gone-file", pid_a);
  start_and_kill(sb, wf_b, "healthy", pid_b);
  std::filesystem::remove(wf_a);
  REQUIRE(::mkfifo(wf_a.c_str(), 0600) == 0);
  auto sup = sb.cli({"supervise", "--once"}, opts);
  INFO(sup);
  CHECK_FALSE(sup.timed_out);
  CHECK(contains(sup.out, "skipped run gone-file"));
  CHECK(contains(sup.out, "run healthy finished"));
}

TEST_CASE("a database path naming a directory or a URI is refused", "[system][hardening][db]") {
  sandbox sb;
  auto wf = sb.write("wf.json", good_workflow());
  for (const std::string& db :
       {sb.dir().path(), sb.file("x.db") + "/", "file:" + sb.file("x.db")}) {
    auto r = run_smithers({"--db", db, "run", wf});
    INFO(db << "\n" << r);
    CHECK(r.exit_code == 4);
    CHECK(contains(r.err, "INVALID_ARGUMENT"));
  }
  CHECK_FALSE(file_exists(sb.file("x.db")));
}

TEST_CASE("ps says how many runs it left out", "[system][hardening][text]") {
  sandbox sb;
  auto wf = sb.write("wf.json", good_workflow());
  for (const char* id : {"r1", "r2", "r3"})
    REQUIRE(sb.cli({"run", wf, "--run-id", id}).exit_code == 0);
  auto ps = sb.cli({"ps", "--limit", "2"});
  INFO(ps);
  CHECK(ps.exit_code == 0);
  CHECK(contains(ps.out, "r3"));
  CHECK(contains(ps.out, "r2"));
  CHECK_FALSE(contains(ps.out, "r1"));
  CHECK(contains(ps.err, "showing the newest 2 of 3 runs"));
  auto all = sb.cli_json({"ps", "--limit", "0"});
  CHECK(all.out_json().size() == 3);
  CHECK(all.err.empty());
}

TEST_CASE("output that cannot be written is an error, not a silent loss", "[system][hardening]") {
  sandbox sb;
  REQUIRE(sb.cli({"run", sb.write("wf.json", good_workflow()), "--run-id", "w"}).exit_code == 0);
  auto r = run_command(
      {"sh", "-c", "'" + smithers_bin() + "' --db '" + sb.db() + "' inspect w > /dev/full"});
  INFO(r);
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, "cannot write to standard output"));
}

TEST_CASE("a node in flight that a resumed workflow no longer has is not left in-progress",
          "[system][hardening][resume]") {
  sandbox sb;
  auto pid_file = sb.file("pid");
  auto wf = sb.write(
      "two.json", json{{"name", "two"},
                       {"root",
                        {{"parallel",
                          {{{"task", "a"}, {"value", json::object()}},
                           {{"task", "b"}, {"run", "echo $$ > " + pid_file + "; sleep 60"}}}}}}});
  start_and_kill(sb, wf, "dropped", pid_file);
  auto other = sb.write(
      "one.json", json{{"name", "two"},
                       {"root", {{"parallel", {{{"task", "a"}, {"value", json::object()}}}}}}});
  auto r = sb.cli({"resume", "dropped", "--force", "--workflow", other});
  INFO(r);
  CHECK(r.exit_code == 0);
  auto j = sb.inspect("dropped");
  CHECK(j["run"]["status"] == "finished");
  CHECK(node_of(j, "b")["state"] == "cancelled");
  CHECK(attempts_of(j, "b").at(0)["state"] == "cancelled");
}

TEST_CASE("validate refuses an input schema no input could pass", "[system][hardening][validate]") {
  check_refused(
      [](const sandbox& sb) {
        return std::vector<std::string>{
            "validate",
            sb.write("wf.json", json{{"name", "x"},
                                     {"input", {{"type", "string"}}},
                                     {"root", {{"task", "a"}, {"value", json::object()}}}})};
      },
      {"INVALID_WORKFLOW", {"input.type", "must be \"object\""}});
}

TEST_CASE("a fork of a run with a 256-character id gets an id that fits",
          "[system][hardening][fork]") {
  sandbox sb;
  std::string long_id(256, 'p');
  REQUIRE(sb.cli({"run", sb.write("wf.json", good_workflow()), "--run-id", long_id}).exit_code ==
          0);
  auto f = sb.cli_json({"fork", long_id, "--frame", "0"});
  INFO(f);
  REQUIRE(f.exit_code == 0);
  auto id = f.out_json()["run_id"].get<std::string>();
  CHECK(id.size() == 256);
  CHECK(id.find("-fork-") != std::string::npos);
}
