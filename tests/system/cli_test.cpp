// The smithers binary end to end, as a user runs it: run, inspect, logs, ps,
// following a live run, unknown run ids.
#include "system/cli_support.hpp"

#include "store/database.hpp"
#include "store/reader.hpp"

#include <set>
#include <sys/stat.h>

using namespace smithers::system_test;
using smithers::json;

namespace {

// A sequence with a static task, a parallel group of a command (argv), a
// command (shell string), a static value and a compute, and a task that
// needs three of them and echoes its stdin context back as its output.
json basic_workflow() {
  return json::parse(R"({
    "name": "system-basic",
    "max_concurrency": 3,
    "outputs": {"kind": {"type": "object", "required": ["kind"],
                         "properties": {"kind": {"type": "string"}}}},
    "root": {"sequence": [
      {"task": "start", "value": {"msg": "hello"}},
      {"parallel": [
        {"task": "argv_task", "run": ["sh", "-c", "echo '{\"kind\": \"argv\"}'"],
         "output": "kind"},
        {"task": "shell_task", "run": "echo '{\"kind\": \"shell\"}'", "output": "kind"},
        {"task": "static_task", "value": {"kind": "static"}},
        {"task": "compute_task", "compute": "noop"},
        {"task": "direct_task", "compute": "noop", "direct": true}
      ], "max_concurrency": 2},
      {"task": "join", "needs": ["start", "argv_task", "shell_task"], "run": ["cat"]}
    ]}
  })");
}

const std::vector<std::string> basic_nodes = {
    "start", "argv_task", "shell_task", "static_task", "compute_task", "direct_task", "join"};

json failing_workflow() {
  return json::parse(R"({
    "name": "system-failing",
    "root": {"task": "broken", "run": ["sh", "-c", "echo nope >&2; exit 3"]}
  })");
}

std::set<std::string> run_ids(const std::vector<json>& runs) {
  std::set<std::string> ids;
  for (const auto& r : runs)
    ids.insert(r.at("run_id").get<std::string>());
  return ids;
}

} // namespace

TEST_CASE("run of a sequence with a parallel group, command, static and compute tasks finishes",
          "[system][run]") {
  sandbox sb;
  auto wf = sb.write("basic.json", basic_workflow());

  auto r = sb.cli_json({"run", wf, "--run-id", "basic-1"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto doc = r.out_json();
  CHECK(doc["run"]["run_id"] == "basic-1");
  CHECK(doc["run"]["status"] == "finished");

  SECTION("inspect shows every node finished after one attempt, with its output") {
    auto j = sb.inspect("basic-1");
    CHECK(j["run"]["status"] == "finished");
    CHECK(j["run"]["workflow"] == "system-basic");
    CHECK(j["run"]["error"].is_null());
    REQUIRE(j["nodes"].size() == basic_nodes.size());
    for (const auto& id : basic_nodes) {
      INFO("node " << id);
      auto n = node_of(j, id);
      CHECK(n["state"] == "finished");
      CHECK(n["attempts"] == 1);
      auto attempts = attempts_of(j, id);
      REQUIRE(attempts.size() == 1);
      CHECK(attempts[0]["attempt"] == 1);
      CHECK(attempts[0]["state"] == "finished");
      CHECK(attempts[0]["error"].is_null());
      CHECK(j["outputs"].contains(id));
    }
    const auto& outs = j["outputs"];
    CHECK(outs["start"] == json{{"msg", "hello"}});
    CHECK(outs["argv_task"] == json{{"kind", "argv"}});
    CHECK(outs["shell_task"] == json{{"kind", "shell"}});
    CHECK(outs["static_task"] == json{{"kind", "static"}});
    CHECK(outs["compute_task"] == json::object());
    CHECK(outs["direct_task"] == json::object()); // called by the run itself
    // join's output is the stdin context it was given
    const auto& join = outs["join"];
    CHECK(join["run_id"] == "basic-1");
    CHECK(join["node_id"] == "join");
    CHECK(join["needs"]["start"] == json{{"msg", "hello"}});
    CHECK(join["needs"]["argv_task"] == json{{"kind", "argv"}});
    CHECK(join["needs"]["shell_task"] == json{{"kind", "shell"}});
    CHECK_FALSE(join["needs"].contains("static_task"));
  }

  SECTION("text inspect names the run, its status and every node") {
    auto t = sb.cli({"inspect", "basic-1"});
    INFO(t);
    REQUIRE(t.exit_code == 0);
    CHECK(contains(t.out, "basic-1"));
    CHECK(contains(t.out, "finished"));
    for (const auto& id : basic_nodes)
      CHECK(contains(t.out, id));
  }

  SECTION("logs --format json prints NDJSON events from RunStarted to RunFinished") {
    auto events = sb.events("basic-1");
    REQUIRE(events.size() >= 2 + basic_nodes.size());
    for (std::size_t i = 0; i < events.size(); ++i) {
      INFO("event " << i << ": " << events[i].dump());
      CHECK(events[i]["seq"] == static_cast<std::int64_t>(i));
      CHECK(events[i]["run_id"] == "basic-1");
      CHECK(events[i]["type"].is_string());
      CHECK(events[i]["timestamp_ms"].is_number_integer());
    }
    CHECK(events.front()["type"] == "RunStarted");
    CHECK(events.back()["type"] == "RunFinished");
    std::set<std::string> finished;
    for (const auto& e : events)
      if (e["type"] == "NodeFinished") finished.insert(e["node_id"].get<std::string>());
    CHECK(finished == std::set<std::string>(basic_nodes.begin(), basic_nodes.end()));
  }

  SECTION("text logs print one line per event, in order") {
    auto events = sb.events("basic-1");
    auto t = sb.cli({"logs", "basic-1"});
    INFO(t);
    REQUIRE(t.exit_code == 0);
    std::vector<std::string> lines;
    std::istringstream in(t.out);
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) lines.push_back(line);
    REQUIRE(lines.size() == events.size());
    CHECK(contains(lines.front(), "RunStarted"));
    CHECK(contains(lines.back(), "RunFinished"));
    for (std::size_t i = 0; i < lines.size(); ++i)
      CHECK(contains(lines[i], events[i]["type"].get<std::string>()));
  }

  SECTION("the events in the database are the ones logs prints") {
    auto db = smithers::store::database::open(sb.db(), smithers::store::open_mode::read_only);
    smithers::store::reader rd{db};
    auto rows = rd.events("basic-1");
    auto events = sb.events("basic-1");
    REQUIRE(rows.size() == events.size());
    for (std::size_t i = 0; i < rows.size(); ++i)
      CHECK(rows[i].payload == events[i]);
    auto run = rd.run("basic-1");
    REQUIRE(run);
    CHECK(run->status == "finished");
  }

  SECTION("ps lists the run, and --status filters it") {
    auto failed =
        sb.cli_json({"run", sb.write("failing.json", failing_workflow()), "--run-id", "failing-1"});
    INFO(failed);
    REQUIRE(failed.exit_code == 1);

    auto all = sb.runs();
    CHECK(run_ids(all) == std::set<std::string>{"basic-1", "failing-1"});

    auto text = sb.cli({"ps"});
    INFO(text);
    REQUIRE(text.exit_code == 0);
    CHECK(contains(text.out, "basic-1"));
    CHECK(contains(text.out, "failing-1"));

    auto fin = sb.cli_json({"ps", "--status", "finished"});
    INFO(fin);
    REQUIRE(fin.exit_code == 0);
    auto fin_list = fin.out_json();
    REQUIRE(fin_list.is_array());
    CHECK(run_ids({fin_list.begin(), fin_list.end()}) == std::set<std::string>{"basic-1"});

    auto fail = sb.cli_json({"ps", "--status", "failed"});
    INFO(fail);
    REQUIRE(fail.exit_code == 0);
    auto fail_list = fail.out_json();
    REQUIRE(fail_list.is_array());
    CHECK(run_ids({fail_list.begin(), fail_list.end()}) == std::set<std::string>{"failing-1"});
    CHECK(fail_list[0]["status"] == "failed");

    auto text_fin = sb.cli({"ps", "--status", "finished"});
    REQUIRE(text_fin.exit_code == 0);
    CHECK(contains(text_fin.out, "basic-1"));
    CHECK_FALSE(contains(text_fin.out, "failing-1"));
  }
}

TEST_CASE("text run prints the run id, its status and the outputs", "[system][run]") {
  sandbox sb;
  auto r = sb.cli({"run", sb.write("basic.json", basic_workflow()), "--run-id", "text-run"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.out, "text-run"));
  CHECK(contains(r.out, "finished"));
  CHECK(contains(r.out, "argv_task"));
  CHECK(contains(r.out, "\"kind\":\"argv\""));
}

TEST_CASE("run without --run-id generates an id that ps and inspect know", "[system][run]") {
  sandbox sb;
  auto r = sb.cli_json({"run", sb.write("basic.json", basic_workflow())});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto id = sb.run_id_of(r);
  CHECK_FALSE(id.empty());
  CHECK(run_ids(sb.runs()) == std::set<std::string>{id});
  CHECK(sb.inspect(id)["run"]["status"] == "finished");
}

TEST_CASE("a failing run exits 1 and records the error on the run", "[system][run]") {
  sandbox sb;
  auto r = sb.cli({"run", sb.write("failing.json", failing_workflow()), "--run-id", "f"});
  INFO(r);
  CHECK(r.exit_code == 1);
  CHECK(contains(r.out, "failed"));
  auto j = sb.inspect("f");
  CHECK(j["run"]["status"] == "failed");
  CHECK(j["run"]["error"].is_object());
  CHECK(node_of(j, "broken")["state"] == "failed");
  auto events = sb.events("f");
  REQUIRE_FALSE(events.empty());
  CHECK(events.front()["type"] == "RunStarted");
  CHECK(events.back()["type"] == "RunFailed");
}

TEST_CASE("ps --status with an unknown status is refused with INVALID_ARGUMENT", "[system][ps]") {
  sandbox sb;
  REQUIRE(sb.cli({"run", sb.write("basic.json", basic_workflow())}).exit_code == 0);
  auto r = sb.cli({"ps", "--status", "bogus"});
  INFO(r);
  CHECK(r.exit_code == 4);
  CHECK(contains(r.err, "INVALID_ARGUMENT"));
  CHECK(contains(r.err, "bogus"));

  auto j = sb.cli_json({"ps", "--status", "bogus"});
  INFO(j);
  CHECK(j.exit_code == 4);
  CHECK(j.out_json()["error"]["code"] == "INVALID_ARGUMENT");
}

TEST_CASE("ps in a directory without a database lists no runs and creates nothing",
          "[system][ps]") {
  sandbox sb;
  auto r = sb.cli_json({"ps"});
  INFO(r);
  CHECK(r.exit_code == 0);
  if (r.exit_code == 0) CHECK(r.out_json() == json::array());
  CHECK_FALSE(sb.db_exists());
}

namespace {

// What a file looks like from outside: whether it exists, its size and its
// modification time. Equal before and after means nobody wrote it.
std::string file_state(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "absent";
  return std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

} // namespace

TEST_CASE("the release-notes example from the repository runs to finished", "[system][run]") {
  sandbox sb;
  // The README's first command (`./dev run examples/release-notes.json`)
  // leaves ./smithers.db in the checkout: this test must pass with or
  // without it, and must not touch it.
  std::vector<std::string> checkout_db;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"})
    checkout_db.push_back(file_state(source_dir() + "/smithers.db" + suffix));
  command_options opts;
  opts.cwd = source_dir();
  auto r = sb.cli_json({"run", "./examples/release-notes.json", "--run-id", "release", "--input",
                        R"({"repo": "smithers"})"},
                       opts);
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = r.out_json();
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["outputs"]["count"] == json{{"n", 3}});
  CHECK(j["outputs"]["lines"] == json{{"lines", 3}});
  CHECK(j["outputs"]["summary"] == json{{"summary", "Release notes has 3 changes"}});
  for (const auto& n : j["nodes"]) {
    INFO(n.dump());
    CHECK(n["state"] == "finished");
  }
  // nothing was written into the source tree's database (--db is the sandbox's)
  std::size_t i = 0;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"})
    CHECK(file_state(source_dir() + "/smithers.db" + suffix) == checkout_db[i++]);
}

TEST_CASE("logs -f follows a live run through RunFinished and exits by itself", "[system][logs]") {
  sandbox sb;
  auto wf = sb.write("slow.json", json::parse(R"({
    "name": "slow",
    "root": {"sequence": [
      {"task": "first", "value": {"a": 1}},
      {"task": "nap", "run": "sleep 2; echo '{\"slept\": true}'"},
      {"task": "last", "value": {"b": 2}}
    ]}
  })"));

  auto runner = sb.start({"run", wf, "--run-id", "live"});

  // Wait until the run exists, then follow it from another process.
  bool seen = eventually(
      [&] {
        return sb.db_exists() && sb.cli({"inspect", "live"}).exit_code == 0;
      },
      std::chrono::seconds(60));
  bool live_when_followed = process_alive(runner->pid());
  command_result follow;
  if (seen) {
    command_options opts;
    opts.timeout = std::chrono::seconds(90);
    follow = sb.cli_json({"logs", "live", "-f"}, opts);
  }
  auto run_result = runner->wait();

  INFO(run_result);
  REQUIRE(seen);
  REQUIRE(run_result.exit_code == 0);
  INFO("followed while the run was live: " << live_when_followed);
  INFO(follow);
  REQUIRE_FALSE(follow.timed_out);
  REQUIRE(follow.exit_code == 0);
  auto events = follow.out_ndjson();
  REQUIRE_FALSE(events.empty());
  for (std::size_t i = 0; i < events.size(); ++i)
    CHECK(events[i]["seq"] == static_cast<std::int64_t>(i));
  CHECK(events.front()["type"] == "RunStarted");
  CHECK(events.back()["type"] == "RunFinished");
  // the stream is complete: the same events as a plain `logs` afterwards
  CHECK(events == sb.events("live"));
}

TEST_CASE("logs -f on a run that already ended prints its events and exits", "[system][logs]") {
  sandbox sb;
  REQUIRE(sb.cli({"run", sb.write("basic.json", basic_workflow()), "--run-id", "done"}).exit_code ==
          0);
  command_options opts;
  opts.timeout = std::chrono::seconds(60);
  auto r = sb.cli_json({"logs", "-f", "done"}, opts);
  INFO(r);
  REQUIRE_FALSE(r.timed_out);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out_ndjson() == sb.events("done"));
}

TEST_CASE("inspect and logs of an unknown run id are refused with RUN_NOT_FOUND",
          "[system][query]") {
  sandbox sb;
  REQUIRE(
      sb.cli({"run", sb.write("basic.json", basic_workflow()), "--run-id", "known"}).exit_code ==
      0);
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"inspect", "nope"}, {"logs", "nope"}, {"logs", "-f", "nope"}}) {
    INFO("smithers " << cmd[0] << " " << cmd.back());
    auto t = sb.cli(cmd);
    INFO(t);
    CHECK_FALSE(t.timed_out);
    CHECK(t.exit_code == 4);
    CHECK(contains(t.err, "error: RUN_NOT_FOUND: "));
    CHECK(contains(t.err, "nope"));
    CHECK(t.out.empty());

    auto j = sb.cli_json(cmd);
    INFO(j);
    CHECK(j.exit_code == 4);
    auto doc = j.out_json();
    CHECK(doc["error"]["code"] == "RUN_NOT_FOUND");
    CHECK(contains(doc["error"]["message"].get<std::string>(), "nope"));
  }
  CHECK(sb.runs().size() == 1);
}

TEST_CASE("inspect of a run id without any database is RUN_NOT_FOUND and creates nothing",
          "[system][query]") {
  sandbox sb;
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"inspect", "nope"}, {"logs", "nope"}}) {
    auto r = sb.cli(cmd);
    INFO(r);
    CHECK(r.exit_code == 4);
    CHECK(contains(r.err, "RUN_NOT_FOUND"));
    CHECK_FALSE(sb.db_exists());
  }
}
