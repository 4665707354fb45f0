// Waiting through the CLI, as a user runs it (docs/waiting.md): approval
// nodes and `needs_approval` gates decided by `smithers approve` / `deny`,
// timers that survive a kill of their owner, signals delivered before,
// while and after a node waits, SIGNAL_TIMEOUT, exit code 3 and the
// continuation by `resume` and `supervise --once`, retrying failed and
// cancelled runs, refused decisions that write nothing, and the walk-through
// of examples/gated-deploy.json.
#include "system/cli_support.hpp"
#include "system/store_support.hpp"

#include "store/database.hpp"
#include "store/reader.hpp"

#include <sqlite3.h>

#include <csignal>
#include <future>
#include <optional>
#include <set>

using namespace smithers::system_test;
using smithers::json;
namespace store = smithers::store;

namespace {

// ------------------------------------------------- the store, read directly

std::string db_status(const sandbox& sb, const std::string& run_id) {
  auto r = db_run(sb.db(), run_id);
  return r ? r->status : std::string("(no run)");
}

/// Every row of a query, each row's columns joined by '|' (NULL as "NULL").
std::vector<std::string> sql_rows(const std::string& db, const std::string& sql) {
  std::vector<std::string> rows;
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(h);
    throw std::runtime_error("cannot open " + db);
  }
  sqlite3_busy_timeout(h, 10000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(h);
    sqlite3_close(h);
    throw std::runtime_error("cannot prepare " + sql + ": " + msg);
  }
  while (sqlite3_step(st) == SQLITE_ROW) {
    std::string row;
    for (int c = 0; c < sqlite3_column_count(st); ++c) {
      auto* t = sqlite3_column_text(st, c);
      row += (c ? "|" : "") + (t ? std::string(reinterpret_cast<const char*>(t)) : "NULL");
    }
    rows.push_back(row);
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
  return rows;
}

/// Everything a refused command must leave as it was: every run's events,
/// the inbox, the waits and the runs rows.
struct store_state {
  std::map<std::string, std::size_t> events; // per run
  std::vector<std::string> inbox, waits, runs;
  bool operator==(const store_state& o) const {
    return events == o.events && inbox == o.inbox && waits == o.waits && runs == o.runs;
  }
};

std::ostream& operator<<(std::ostream& os, const store_state& s) {
  for (const auto& [run, n] : s.events)
    os << "run " << run << ": " << n << " events\n";
  for (const auto& r : s.inbox)
    os << "inbox " << r << "\n";
  for (const auto& r : s.waits)
    os << "waits " << r << "\n";
  for (const auto& r : s.runs)
    os << "runs " << r << "\n";
  return os;
}

store_state snapshot(const sandbox& sb) {
  store_state s;
  for (const auto& run : sql_rows(sb.db(), "SELECT run_id FROM runs ORDER BY run_id"))
    s.events[run] = db_events(sb.db(), run).size();
  s.inbox = sql_rows(sb.db(), "SELECT * FROM inbox ORDER BY id");
  s.waits = sql_rows(sb.db(), "SELECT * FROM waits ORDER BY run_id, node_id, iteration");
  s.runs = sql_rows(sb.db(), "SELECT * FROM runs ORDER BY run_id");
  return s;
}

// ------------------------------------------------------------------ events

/// The position of the first event of `type` (for `node`), or -1.
long index_of(const std::vector<json>& events, const std::string& type,
              const std::string& node = "") {
  for (std::size_t i = 0; i < events.size(); ++i)
    if (events[i].value("type", "") == type &&
        (node.empty() || events[i].value("node_id", "") == node))
      return static_cast<long>(i);
  return -1;
}

std::vector<json> status_changes(const std::vector<json>& events, const std::string& status) {
  std::vector<json> out;
  for (const auto& e : of_type(events, "RunStatusChanged"))
    if (e.value("status", "") == status) out.push_back(e);
  return out;
}

// --------------------------------------------------------------- workflows

/// `sh -c SCRIPT` as a command task's run.
json sh(const std::string& script) {
  return json::array({"sh", "-c", script});
}

/// A command task that appends a line to `file` each time it runs and
/// outputs `output`.
json counted_task(const std::string& id, const std::string& file, const json& output) {
  return {{"task", id}, {"run", sh("echo ran >> '" + file + "'; echo '" + output.dump() + "'")}};
}

/// How many times a counted task ran.
int runs_of(const std::string& file) {
  return file_exists(file) ? count_lines(read_file(file), "ran") : 0;
}

std::string prefix(const sandbox& sb) {
  return "smithers --db " + sb.db() + " ";
}

std::vector<int> attempt_numbers(const json& inspected, const std::string& node) {
  std::vector<int> out;
  for (const auto& a : attempts_of(inspected, node))
    out.push_back(a["attempt"].get<int>());
  std::sort(out.begin(), out.end());
  return out;
}

json attempt_no(const json& inspected, const std::string& node, int n) {
  for (const auto& a : attempts_of(inspected, node))
    if (a["attempt"] == n) return a;
  FAIL("no attempt " << n << " of " << node << " in " << inspected["attempts"].dump(2));
  return json();
}

} // namespace

// ------------------------------------------------------------------ 1
TEST_CASE("an approval approved from another command finishes the run", "[system][wait]") {
  sandbox sb;
  auto wf = sb.write(
      "wf.json",
      json{{"name", "approve-me"},
           {"root",
            {{"sequence",
              json::array(
                  {{{"approval", "ok"}, {"title", "Ship it?"}, {"summary", "all checks passed"}},
                   {{"task", "after"},
                    {"needs", {"ok"}},
                    {"run", sh("echo '{\"ran\": true}'")}}})}}}});
  auto r = sb.cli({"run", wf, "--run-id", "r"});
  INFO(r);
  REQUIRE(r.exit_code == 3);
  CHECK(contains(r.out, "run r waiting-approval"));
  CHECK(contains(r.out, "ok waits for approval: Ship it?"));
  CHECK(contains(r.out, prefix(sb) + "approve r --node ok"));
  CHECK(contains(r.out, prefix(sb) + "deny r --node ok"));
  CHECK(contains(r.out, prefix(sb) + "resume r"));

  // Released: nobody owns it while it waits.
  auto row = db_run(sb.db(), "r");
  REQUIRE(row);
  CHECK(row->status == "waiting-approval");
  CHECK(row->owner_id == "");

  auto j = sb.inspect("r");
  REQUIRE(j["waiting"].size() == 1);
  auto w = j["waiting"][0];
  CHECK(w["node_id"] == "ok");
  CHECK(w["iteration"] == 0);
  CHECK(w["kind"] == "approval");
  CHECK(w["gate"] == false);
  CHECK(w["title"] == "Ship it?");
  CHECK(w["summary"] == "all checks passed");
  CHECK(w["deadline_ms"].is_null());
  CHECK(j["resume"] == prefix(sb) + "resume r");
  REQUIRE(j["continue_with"].size() == 1);
  CHECK(j["continue_with"][0] ==
        json::array({prefix(sb) + "approve r --node ok", prefix(sb) + "deny r --node ok"}));
  CHECK(node_of(j, "ok")["state"] == "waiting-approval");
  CHECK(node_of(j, "after")["state"] == "pending");
  CHECK(j["inbox"].empty());

  auto ps = sb.cli_json({"ps", "--status", "waiting-approval"});
  INFO(ps);
  REQUIRE(ps.exit_code == 0);
  REQUIRE(ps.out_json().size() == 1);
  CHECK(ps.out_json()[0]["run_id"] == "r");

  // Resuming before anyone decided changes nothing.
  auto before = snapshot(sb);
  auto early = sb.cli({"resume", "r"});
  INFO(early);
  CHECK(early.exit_code == 3);
  CHECK(contains(early.out, "still waiting-approval"));
  CHECK(contains(early.out, prefix(sb) + "approve r --node ok"));
  CHECK(snapshot(sb) == before);

  auto a =
      sb.cli({"approve", "r", "--node", "ok", "--by", "alice", "--note", "release window open"});
  INFO(a);
  REQUIRE(a.exit_code == 0);
  CHECK(contains(a.out, "approval recorded for run r (node ok)"));
  CHECK(contains(a.out, "no process drives the run"));
  j = sb.inspect("r");
  REQUIRE(j["inbox"].size() == 1);
  CHECK(j["inbox"][0]["kind"] == "approval");
  CHECK(j["inbox"][0]["node_id"] == "ok");
  CHECK(j["run"]["status"] == "waiting-approval"); // nobody took it yet

  auto res = sb.cli({"resume", "r"});
  INFO(res);
  REQUIRE(res.exit_code == 0);
  CHECK(contains(res.out, "run r finished"));

  j = sb.inspect("r");
  CHECK(j["run"]["status"] == "finished");
  auto out = j["outputs"]["ok"];
  CHECK(out["approved"] == true);
  CHECK(out["by"] == "alice");
  CHECK(out["note"] == "release window open");
  CHECK(out["decided_ms"].is_number_integer());
  CHECK(j["outputs"]["after"] == json{{"ran", true}});
  CHECK(j["inbox"].empty());
  CHECK(j["waiting"].empty());
  REQUIRE(attempts_of(j, "ok").size() == 1);
  CHECK(attempts_of(j, "ok")[0]["state"] == "finished");
  CHECK(attempts_of(j, "after").size() == 1);

  auto ev = sb.events("r");
  auto requested = of_type(ev, "ApprovalRequested", "ok");
  REQUIRE(requested.size() == 1);
  CHECK(requested[0]["title"] == "Ship it?");
  CHECK(requested[0]["summary"] == "all checks passed");
  CHECK(requested[0]["gate"] == false);
  CHECK(requested[0]["on_deny"] == "fail");
  auto decided = of_type(ev, "ApprovalDecided", "ok");
  REQUIRE(decided.size() == 1);
  CHECK(decided[0]["approved"] == true);
  CHECK(decided[0]["by"] == "alice");
  CHECK(decided[0]["note"] == "release window open");
  auto started = of_type(ev, "NodeStarted", "ok");
  REQUIRE(started.size() == 1);
  CHECK(started[0]["waits_for"] == "approval");
  CHECK(status_changes(ev, "waiting-approval").size() == 1);
  auto resumed = of_type(ev, "RunResumed");
  REQUIRE(resumed.size() == 1); // the early resume wrote nothing
  CHECK(resumed[0]["previous_status"] == "waiting-approval");
  CHECK(resumed[0]["retry"] == false);
  auto running = status_changes(ev, "running");
  REQUIRE_FALSE(running.empty());
  CHECK(running.back()["previous"] == "waiting-approval");
  CHECK(index_of(ev, "ApprovalRequested") < index_of(ev, "RunResumed"));
  CHECK(index_of(ev, "RunResumed") < index_of(ev, "ApprovalDecided"));
  CHECK(index_of(ev, "ApprovalDecided") < index_of(ev, "NodeStarted", "after"));
  CHECK(of_type(ev, "RunFinished").size() == 1);

  // Finished: nothing left to resume.
  auto again = sb.cli({"resume", "r"});
  INFO(again);
  CHECK(again.exit_code == 4);
  CHECK(contains(again.err, "RUN_NOT_RESUMABLE"));
}

// ------------------------------------------------------------------ 2
TEST_CASE("a denied approval fails continues or skips as on_deny says", "[system][wait]") {
  sandbox sb;
  auto marker = sb.file("after.txt");
  auto workflow = [&](const std::string& on_deny) {
    return json{
        {"name", "deny-" + on_deny},
        {"root",
         {{"sequence", json::array({{{"approval", "ok"}, {"title", "Go?"}, {"on_deny", on_deny}},
                                    [&] {
                                      auto t = counted_task("after", marker, {{"after", true}});
                                      t["needs"] = {"ok"};
                                      return t;
                                    }(),
                                    {{"task", "last"}, {"value", {{"last", true}}}}})}}}};
  };

  SECTION("fail: the node fails with APPROVAL_DENIED and so does the run") {
    auto wf = sb.write("wf.json", workflow("fail"));
    auto r = sb.cli({"run", wf, "--run-id", "r"});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    auto d = sb.cli_json({"deny", "r", "--node", "ok", "--by", "bob", "--note", "not today"});
    INFO(d);
    REQUIRE(d.exit_code == 0);
    auto dj = d.out_json();
    CHECK(dj["recorded"] == "denial");
    CHECK(dj["run_id"] == "r");
    CHECK(dj["node_id"] == "ok");
    CHECK(dj["needs_resume"] == true);
    CHECK(dj["continue_with"] == prefix(sb) + "resume r");

    auto res = sb.cli({"resume", "r"});
    INFO(res);
    CHECK(res.exit_code == 1);
    CHECK(contains(res.out + res.err, "run r failed"));
    auto j = sb.inspect("r");
    CHECK(j["run"]["status"] == "failed");
    CHECK(j["run"]["error"]["code"] == "TASK_FAILED");
    CHECK(j["run"]["error"]["details"]["failed_nodes"] == json::array({"ok"}));
    CHECK(node_of(j, "ok")["state"] == "failed");
    auto att = attempts_of(j, "ok");
    REQUIRE(att.size() == 1);
    CHECK(att[0]["state"] == "failed");
    CHECK(att[0]["error"]["code"] == "APPROVAL_DENIED");
    CHECK_FALSE(j["outputs"].contains("last"));
    CHECK(runs_of(marker) == 0);
    auto ev = sb.events("r");
    auto decided = of_type(ev, "ApprovalDecided", "ok");
    REQUIRE(decided.size() == 1);
    CHECK(decided[0]["approved"] == false);
    CHECK(decided[0]["by"] == "bob");
    auto failed = of_type(ev, "NodeFailed", "ok");
    REQUIRE(failed.size() == 1);
    CHECK(failed[0]["error"]["code"] == "APPROVAL_DENIED");
    CHECK(failed[0]["will_retry"] == false);
  }

  SECTION("continue: the node finishes with approved false and the run goes on") {
    auto wf = sb.write("wf.json", workflow("continue"));
    auto r = sb.cli({"run", wf, "--run-id", "r"});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    auto d = sb.cli({"deny", "r", "--node", "ok", "--by", "bob", "--note", "not today"});
    INFO(d);
    REQUIRE(d.exit_code == 0);
    CHECK(contains(d.out, "denial recorded for run r (node ok)"));
    auto res = sb.cli({"resume", "r"});
    INFO(res);
    REQUIRE(res.exit_code == 0);
    auto j = sb.inspect("r");
    CHECK(j["run"]["status"] == "finished");
    CHECK(node_of(j, "ok")["state"] == "finished");
    CHECK(j["outputs"]["ok"]["approved"] == false);
    CHECK(j["outputs"]["ok"]["by"] == "bob");
    CHECK(j["outputs"]["ok"]["note"] == "not today");
    CHECK(j["outputs"]["after"] == json{{"after", true}});
    CHECK(j["outputs"]["last"] == json{{"last", true}});
    CHECK(runs_of(marker) == 1);
  }

  SECTION("skip: the node and the tasks that need it are skipped") {
    auto wf = sb.write("wf.json", workflow("skip"));
    auto r = sb.cli({"run", wf, "--run-id", "r"});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    auto d = sb.cli({"deny", "r", "--node", "ok"});
    INFO(d);
    REQUIRE(d.exit_code == 0);
    command_options o;
    o.timeout = std::chrono::seconds(60);
    auto res = sb.cli({"resume", "r"}, o);
    INFO(res);
    REQUIRE_FALSE(res.timed_out);
    REQUIRE(res.exit_code == 0);
    auto j = sb.inspect("r");
    CHECK(j["run"]["status"] == "finished");
    CHECK(node_of(j, "ok")["state"] == "skipped");
    CHECK(node_of(j, "after")["state"] == "skipped");
    CHECK(node_of(j, "last")["state"] == "finished");
    CHECK_FALSE(j["outputs"].contains("ok"));
    CHECK_FALSE(j["outputs"].contains("after"));
    CHECK(runs_of(marker) == 0);
    auto ev = sb.events("r");
    auto skipped = of_type(ev, "NodeSkipped", "ok");
    REQUIRE(skipped.size() == 1);
    CHECK(skipped[0]["reason"] == "approval denied");
    CHECK(of_type(ev, "NodeSkipped", "after").size() == 1);
  }
}

// ------------------------------------------------------------------ 3
TEST_CASE("a needs_approval gate holds the task before its first attempt", "[system][wait]") {
  sandbox sb;
  auto marker = sb.file("deployed.txt");
  auto workflow = [&](const json& gate) {
    auto deploy = counted_task("deploy", marker, {{"deployed", true}});
    deploy["needs_approval"] = gate;
    return json{
        {"name", "gated"},
        {"root",
         {{"sequence", json::array({{{"task", "prep"}, {"value", {{"ready", true}}}}, deploy})}}}};
  };

  SECTION("approved: runs once after the decision") {
    auto wf = sb.write("wf.json",
                       workflow({{"title", "Deploy now?"}, {"summary", "replaces production"}}));
    auto r = sb.cli({"run", wf, "--run-id", "g"});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    CHECK(contains(r.out, "deploy waits for approval before it runs: Deploy now?"));
    CHECK(runs_of(marker) == 0);
    auto j = sb.inspect("g");
    CHECK(node_of(j, "deploy")["state"] == "waiting-approval");
    CHECK(node_of(j, "deploy")["attempts"] == 0);
    CHECK(attempts_of(j, "deploy").empty());
    CHECK(node_of(j, "prep")["state"] == "finished");
    REQUIRE(j["waiting"].size() == 1);
    CHECK(j["waiting"][0]["gate"] == true);
    CHECK(j["waiting"][0]["kind"] == "approval");
    CHECK(j["waiting"][0]["title"] == "Deploy now?");
    auto ev = sb.events("g");
    CHECK(of_type(ev, "NodeStarted", "deploy").empty());
    auto requested = of_type(ev, "ApprovalRequested", "deploy");
    REQUIRE(requested.size() == 1);
    CHECK(requested[0]["gate"] == true);

    // A resume with nothing decided does not start it either.
    auto early = sb.cli({"resume", "g"});
    INFO(early);
    CHECK(early.exit_code == 3);
    CHECK(runs_of(marker) == 0);

    auto a = sb.cli({"approve", "g", "--node", "deploy", "--by", "carol"});
    INFO(a);
    REQUIRE(a.exit_code == 0);
    CHECK(runs_of(marker) == 0);
    auto res = sb.cli({"resume", "g"});
    INFO(res);
    REQUIRE(res.exit_code == 0);
    CHECK(runs_of(marker) == 1);
    j = sb.inspect("g");
    CHECK(j["run"]["status"] == "finished");
    CHECK(j["outputs"]["deploy"] == json{{"deployed", true}});
    REQUIRE(attempts_of(j, "deploy").size() == 1);
    CHECK(attempts_of(j, "deploy")[0]["attempt"] == 1);
    CHECK(attempts_of(j, "deploy")[0]["state"] == "finished");
    ev = sb.events("g");
    auto started = of_type(ev, "NodeStarted", "deploy");
    REQUIRE(started.size() == 1);
    CHECK_FALSE(started[0].contains("waits_for"));
    auto decided = of_type(ev, "ApprovalDecided", "deploy");
    REQUIRE(decided.size() == 1);
    CHECK(decided[0]["gate"] == true);
    CHECK(decided[0]["by"] == "carol");
    CHECK(index_of(ev, "ApprovalDecided", "deploy") < index_of(ev, "NodeStarted", "deploy"));
  }

  SECTION("true, denied: fails without running; a retry asks again") {
    auto wf = sb.write("wf.json", workflow(true));
    auto r = sb.cli({"run", wf, "--run-id", "g"});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    auto d = sb.cli({"deny", "g", "--node", "deploy"});
    INFO(d);
    REQUIRE(d.exit_code == 0);
    auto res = sb.cli({"resume", "g"});
    INFO(res);
    CHECK(res.exit_code == 1);
    CHECK(runs_of(marker) == 0);
    auto j = sb.inspect("g");
    CHECK(j["run"]["status"] == "failed");
    CHECK(node_of(j, "deploy")["state"] == "failed");
    for (const auto& a : attempts_of(j, "deploy"))
      CHECK(a["error"]["code"] == "APPROVAL_DENIED");

    auto retry = sb.cli({"resume", "g"});
    INFO(retry);
    REQUIRE(retry.exit_code == 3); // asks anew
    CHECK(contains(retry.out, "deploy waits for approval"));
    CHECK(db_status(sb, "g") == "waiting-approval");
    CHECK(runs_of(marker) == 0);
    auto a = sb.cli({"approve", "g", "--node", "deploy"});
    INFO(a);
    REQUIRE(a.exit_code == 0);
    auto fin = sb.cli({"resume", "g"});
    INFO(fin);
    REQUIRE(fin.exit_code == 0);
    CHECK(runs_of(marker) == 1);
    CHECK(sb.inspect("g")["outputs"]["deploy"] == json{{"deployed", true}});
  }

  SECTION("on_deny skip: denied, the task is skipped and never runs") {
    auto wf = sb.write("wf.json", workflow({{"title", "Deploy?"}, {"on_deny", "skip"}}));
    auto r = sb.cli({"run", wf, "--run-id", "g"});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    auto d = sb.cli({"deny", "g", "--node", "deploy"});
    INFO(d);
    REQUIRE(d.exit_code == 0);
    auto res = sb.cli({"resume", "g"});
    INFO(res);
    REQUIRE(res.exit_code == 0);
    auto j = sb.inspect("g");
    CHECK(j["run"]["status"] == "finished");
    CHECK(node_of(j, "deploy")["state"] == "skipped");
    CHECK(attempts_of(j, "deploy").empty());
    CHECK(runs_of(marker) == 0);
  }
}

// ------------------------------------------------------------------ 4
TEST_CASE("a timer survives a kill -9 of its owner and fires on resume at its deadline",
          "[system][wait]") {
  sandbox sb;
  auto wf =
      sb.write("wf.json",
               json{{"name", "timer"},
                    {"root",
                     {{"sequence", json::array({{{"timer", "cool"}, {"duration_ms", 2000}},
                                                {{"task", "after"}, {"value", {{"ok", 1}}}}})}}}});
  auto proc = sb.start({"run", wf, "--run-id", "t"});
  bool waiting = eventually([&] { return db_status(sb, "t") == "waiting-timer"; },
                            std::chrono::seconds(20), std::chrono::milliseconds(20));
  if (!waiting) {
    proc->signal(SIGKILL);
    INFO(proc->wait());
    FAIL("the run never became waiting-timer: " << db_status(sb, "t"));
  }
  // The owner keeps a run that waits on a timer.
  auto row = db_run(sb.db(), "t");
  REQUIRE(row);
  CHECK(row->owner_id != "");
  proc->signal(SIGKILL);
  auto killed = proc->wait();
  INFO(killed);
  REQUIRE(killed.exit_code == 128 + SIGKILL);

  std::int64_t deadline = 0;
  {
    auto ev = sb.events("t");
    auto scheduled = of_type(ev, "TimerScheduled", "cool");
    REQUIRE(scheduled.size() == 1);
    deadline = scheduled[0]["deadline_ms"].get<std::int64_t>();
    CHECK(scheduled[0]["delay_ms"] == 2000);
    CHECK(of_type(ev, "TimerFired").empty());
    auto j = sb.inspect("t");
    REQUIRE(j["waiting"].size() == 1);
    CHECK(j["waiting"][0]["kind"] == "timer");
    CHECK(j["waiting"][0]["deadline_ms"] == deadline);
  }

  auto res = sb.cli({"resume", "t"});
  auto ended = wall_ms();
  INFO(res);
  REQUIRE(res.exit_code == 0);
  CHECK(ended >= deadline);

  auto j = sb.inspect("t");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["outputs"]["cool"]["deadline_ms"] == deadline);
  CHECK(j["outputs"]["cool"]["fired_ms"].get<std::int64_t>() >= deadline);
  REQUIRE(attempts_of(j, "cool").size() == 1);
  CHECK(attempts_of(j, "cool")[0]["state"] == "finished");
  auto ev = sb.events("t");
  auto fired = of_type(ev, "TimerFired", "cool");
  REQUIRE(fired.size() == 1);
  CHECK(fired[0]["deadline_ms"] == deadline);
  CHECK(fired[0]["fired_ms"].get<std::int64_t>() >= deadline);
  for (const auto& s : of_type(ev, "TimerScheduled", "cool"))
    CHECK(s["deadline_ms"] == deadline); // a resume does not restart the timer
  CHECK(status_changes(ev, "waiting-timer").size() >= 1);
}

TEST_CASE("a timer until an ISO-8601 time with a zone fires at that instant", "[system][wait]") {
  sandbox sb;
  // Two seconds from now, in a +01:00 zone, whole seconds.
  std::int64_t target = (wall_ms() / 1000 + 2) * 1000;
  std::time_t secs = static_cast<std::time_t>(target / 1000 + 3600);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+01:00", &tm);
  auto wf = sb.write("wf.json", json{{"name", "until"},
                                     {"root", {{"timer", "launch"}, {"until", std::string(buf)}}}});
  auto r = sb.cli_json({"run", wf, "--run-id", "u"});
  auto ended = wall_ms();
  INFO(buf << "\n" << r);
  REQUIRE(r.exit_code == 0);
  auto j = r.out_json();
  CHECK(j["outputs"]["launch"]["deadline_ms"] == target);
  CHECK(j["outputs"]["launch"]["fired_ms"].get<std::int64_t>() >= target);
  CHECK(ended >= target);

  // Without a zone: refused when the file is validated.
  auto bad =
      sb.write("bad.json", json{{"root", {{"timer", "launch"}, {"until", "2030-01-01T10:00:00"}}}});
  auto v = sb.cli({"run", bad, "--run-id", "bad"});
  INFO(v);
  CHECK(v.exit_code == 4);
  CHECK(contains(v.err, "until"));
}

// ------------------------------------------------------------------ 5
TEST_CASE("signals delivered before while and after a node waits", "[system][wait]") {
  sandbox sb;

  SECTION("before the node mounts: stored, then taken by the live owner") {
    auto wf =
        sb.write("wf.json", json{{"name", "sig-early"},
                                 {"root",
                                  {{"sequence", json::array({
                                                    {{"timer", "hold"}, {"duration_ms", 1500}},
                                                    {{"signal", "s"}, {"name", "go"}},
                                                })}}}});
    auto proc = sb.start({"run", wf, "--run-id", "e"});
    REQUIRE(eventually([&] { return db_run(sb.db(), "e").has_value(); }, std::chrono::seconds(20),
                       std::chrono::milliseconds(10)));
    auto s = sb.cli({"signal", "e", "go", "--data", R"({"early": true})"});
    INFO(s);
    REQUIRE(s.exit_code == 0);
    CHECK(contains(s.out, "signal \"go\" recorded for run e"));
    auto r = proc->wait();
    INFO(r);
    REQUIRE(r.exit_code == 0); // never released: its signal was there when it waited
    auto j = sb.inspect("e");
    CHECK(j["run"]["status"] == "finished");
    CHECK(j["outputs"]["s"] == json{{"early", true}});
    auto ev = sb.events("e");
    CHECK(status_changes(ev, "waiting-event").empty());
    CHECK(of_type(ev, "RunResumed").empty());
    auto got = of_type(ev, "SignalReceived", "s");
    REQUIRE(got.size() == 1);
    CHECK(got[0]["name"] == "go");
    // The signal was recorded before the node waited: before the timer fired.
    auto inbox = sql_rows(sb.db(), "SELECT created_ms, consumed_by FROM inbox WHERE run_id = 'e'");
    REQUIRE(inbox.size() == 1);
    auto fired = of_type(ev, "TimerFired", "hold");
    REQUIRE(fired.size() == 1);
    CHECK(std::stoll(inbox[0].substr(0, inbox[0].find('|'))) <
          fired[0]["fired_ms"].get<std::int64_t>());
    CHECK(inbox[0].substr(inbox[0].find('|') + 1) == "s");
    CHECK(index_of(ev, "TimerFired") < index_of(ev, "SignalReceived"));
  }

  SECTION("while released: exit 3, signal, resume") {
    auto wf = sb.write("wf.json", json{{"name", "sig-released"},
                                       {"root", {{"signal", "s"}, {"name", "ci-done"}}}});
    auto r = sb.cli({"run", wf, "--run-id", "w"});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    CHECK(contains(r.out, "run w waiting-event"));
    CHECK(contains(r.out, "s waits for signal \"ci-done\""));
    CHECK(contains(r.out, prefix(sb) + "signal w ci-done --data '{}'"));
    auto row = db_run(sb.db(), "w");
    REQUIRE(row);
    CHECK(row->status == "waiting-event");
    CHECK(row->owner_id == "");
    auto j = sb.inspect("w");
    REQUIRE(j["waiting"].size() == 1);
    CHECK(j["waiting"][0]["kind"] == "signal");
    CHECK(j["waiting"][0]["name"] == "ci-done");

    auto s = sb.cli_json({"signal", "w", "ci-done", "--data", R"({"status": "green"})"});
    INFO(s);
    REQUIRE(s.exit_code == 0);
    CHECK(s.out_json()["needs_resume"] == true);
    CHECK_FALSE(s.out_json().contains("node_id"));
    j = sb.inspect("w");
    REQUIRE(j["inbox"].size() == 1);
    CHECK(j["inbox"][0]["kind"] == "signal");
    CHECK(j["inbox"][0]["name"] == "ci-done");
    CHECK(j["inbox"][0]["data"] == json{{"status", "green"}});

    auto res = sb.cli({"resume", "w"});
    INFO(res);
    REQUIRE(res.exit_code == 0);
    j = sb.inspect("w");
    CHECK(j["run"]["status"] == "finished");
    CHECK(j["outputs"]["s"] == json{{"status", "green"}});
    CHECK(j["inbox"].empty());
    auto ev = sb.events("w");
    CHECK(of_type(ev, "SignalReceived", "s").size() == 1);
    CHECK(of_type(ev, "NodeStarted", "s").at(0)["waits_for"] == "signal");
    CHECK(status_changes(ev, "waiting-event").size() == 1);
  }

  SECTION("to a live owner: resume --wait takes it") {
    auto wf =
        sb.write("wf.json", json{{"name", "sig-live"},
                                 {"root",
                                  {{"sequence", json::array({
                                                    {{"signal", "s"}, {"name", "go"}},
                                                    {{"task", "after"}, {"value", {{"a", 1}}}},
                                                })}}}});
    auto r = sb.cli({"run", wf, "--run-id", "l"});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    auto owner = sb.start({"resume", "l", "--wait"});
    REQUIRE(eventually([&] {
      auto row = db_run(sb.db(), "l");
      return row && row->owner_id != "";
    }));
    // Still waiting, now owned.
    CHECK(db_status(sb, "l") == "waiting-event");
    auto s = sb.cli({"signal", "l", "go", "--data", "[1, 2, 3]"});
    INFO(s);
    REQUIRE(s.exit_code == 0);
    CHECK(contains(s.out, "the process driving the run takes it"));
    auto res = owner->wait();
    INFO(res);
    REQUIRE(res.exit_code == 0);
    CHECK(contains(res.out, "run l finished"));
    auto j = sb.inspect("l");
    CHECK(j["run"]["status"] == "finished");
    CHECK(j["outputs"]["s"] == json::array({1, 2, 3}));
    CHECK(of_type(sb.events("l"), "RunResumed").size() == 1);
  }

  SECTION("an owner interrupted while it waits lets go: the signal is kept for resume") {
    auto wf =
        sb.write("wf.json", json{{"name", "sig-int"},
                                 {"root",
                                  {{"sequence", json::array({
                                                    {{"signal", "s"}, {"name", "go"}},
                                                    {{"task", "after"}, {"value", {{"a", 1}}}},
                                                })}}}});
    REQUIRE(sb.cli({"run", wf, "--run-id", "i"}).exit_code == 3);
    auto owner = sb.start({"resume", "i", "--wait"});
    // Claimed (the claim sets `running`) and waiting again: an interrupt
    // before that stops a running run, which keeps its owner until resumed.
    REQUIRE(eventually([&] {
      auto row = db_run(sb.db(), "i");
      return row && row->owner_id != "" && row->status == "waiting-event";
    }));
    owner->signal(SIGINT);
    auto stopped = owner->wait();
    INFO(stopped);
    CHECK(stopped.exit_code == 130);
    auto row = db_run(sb.db(), "i");
    REQUIRE(row);
    CHECK(row->owner_id.empty()); // released, not left to a dead owner
    CHECK(row->status == "waiting-event");
    auto before = sb.events("i").size();
    auto idle = sb.cli({"resume", "i"}); // nothing arrived: nothing written
    CHECK(idle.exit_code == 3);
    CHECK(sb.events("i").size() == before);
    auto s = sb.cli({"signal", "i", "go"});
    INFO(s);
    REQUIRE(s.exit_code == 0);
    CHECK(contains(s.out, "no process drives the run"));
    auto res = sb.cli({"resume", "i"});
    INFO(res);
    CHECK(res.exit_code == 0);
    CHECK(sb.inspect("i")["outputs"]["s"] == json::object());
  }

  SECTION("two signals of one name go to two nodes oldest first") {
    auto wf = sb.write("wf.json", json{{"name", "sig-order"},
                                       {"root",
                                        {{"sequence", json::array({
                                                          {{"signal", "a"}, {"name", "go"}},
                                                          {{"signal", "b"}, {"name", "go"}},
                                                          {{"signal", "c"}, {"name", "go"}},
                                                      })}}}});
    auto r = sb.cli({"run", wf, "--run-id", "o"});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    auto s1 = sb.cli({"signal", "o", "go", "--data", R"({"n": 1})"});
    INFO(s1);
    REQUIRE(s1.exit_code == 0);
    auto s2 = sb.cli(
        {"signal", "o", "go", "--data", "@" + sb.write("two.json", std::string(R"({"n": 2})"))});
    INFO(s2);
    REQUIRE(s2.exit_code == 0);
    command_options in;
    in.stdin_data = R"({"n": 3})";
    auto s3 = sb.cli({"signal", "o", "go", "--data", "-"}, in);
    INFO(s3);
    REQUIRE(s3.exit_code == 0);
    // A signal of another name is taken by nobody.
    auto other = sb.cli({"signal", "o", "stray"});
    INFO(other);
    REQUIRE(other.exit_code == 0);

    auto res = sb.cli({"resume", "o"});
    INFO(res);
    REQUIRE(res.exit_code == 0);
    auto j = sb.inspect("o");
    CHECK(j["run"]["status"] == "finished");
    CHECK(j["outputs"]["a"] == json{{"n", 1}});
    CHECK(j["outputs"]["b"] == json{{"n", 2}});
    CHECK(j["outputs"]["c"] == json{{"n", 3}});
    REQUIRE(j["inbox"].size() == 1);
    CHECK(j["inbox"][0]["name"] == "stray");
    CHECK(j["inbox"][0]["data"] == json::object());
    auto text = sb.cli({"inspect", "o"});
    CHECK(contains(text.out, "ARRIVED, NOT YET TAKEN"));
  }
}

// ------------------------------------------------------------------ 6
TEST_CASE("a signal that does not come in time fails with SIGNAL_TIMEOUT", "[system][wait]") {
  sandbox sb;
  SECTION("no retries") {
    auto wf =
        sb.write("wf.json", json{{"name", "sig-timeout"},
                                 {"root", {{"signal", "s"}, {"name", "go"}, {"timeout_ms", 300}}}});
    auto r = sb.cli({"run", wf, "--run-id", "to"});
    INFO(r);
    REQUIRE(r.exit_code == 1); // kept in the foreground, not released (3)
    auto j = sb.inspect("to");
    CHECK(j["run"]["status"] == "failed");
    CHECK(j["run"]["error"]["code"] == "TASK_FAILED");
    CHECK(node_of(j, "s")["state"] == "failed");
    auto att = attempts_of(j, "s");
    REQUIRE(att.size() == 1);
    CHECK(att[0]["state"] == "failed");
    CHECK(att[0]["error"]["code"] == "SIGNAL_TIMEOUT");
    CHECK(att[0]["duration_ms"].get<std::int64_t>() >= 300);
    CHECK(status_changes(sb.events("to"), "waiting-event").size() >= 1);
  }
  SECTION("retries 1: two attempts, both time out") {
    auto wf = sb.write("wf.json", json{{"name", "sig-timeout"},
                                       {"root",
                                        {{"signal", "s"},
                                         {"name", "go"},
                                         {"timeout_ms", 300},
                                         {"retries", 1},
                                         {"retry", {{"initial_ms", 100}}}}}});
    auto r = sb.cli({"run", wf, "--run-id", "to"});
    INFO(r);
    REQUIRE(r.exit_code == 1);
    auto j = sb.inspect("to");
    CHECK(j["run"]["status"] == "failed");
    CHECK(attempt_numbers(j, "s") == std::vector<int>{1, 2});
    for (const auto& a : attempts_of(j, "s")) {
      CHECK(a["state"] == "failed");
      CHECK(a["error"]["code"] == "SIGNAL_TIMEOUT");
    }
    auto ev = sb.events("to");
    auto failed = of_type(ev, "NodeFailed", "s");
    REQUIRE(failed.size() == 2);
    CHECK(failed[0]["will_retry"] == true);
    CHECK(failed[1]["will_retry"] == false);
    CHECK(of_type(ev, "NodeRetrying", "s").size() == 1);
  }
}

// ------------------------------------------------------------------ 7
TEST_CASE("supervise --once continues a released run once its decision came", "[system][wait]") {
  sandbox sb;
  auto wf = sb.write("wf.json", json{{"name", "sup"},
                                     {"root",
                                      {{"sequence", json::array({
                                                        {{"approval", "ok"}, {"title", "OK?"}},
                                                        {{"task", "after"}, {"value", {{"x", 1}}}},
                                                    })}}}});
  auto r1 = sb.cli_json({"run", wf, "--run-id", "ready"});
  INFO(r1);
  REQUIRE(r1.exit_code == 3);
  auto j1 = r1.out_json();
  CHECK(j1["run"]["status"] == "waiting-approval");
  CHECK(j1["resume"] == prefix(sb) + "resume ready");
  REQUIRE(j1["continue_with"].size() == 1);
  auto r2 = sb.cli({"run", wf, "--run-id", "idle"});
  INFO(r2);
  REQUIRE(r2.exit_code == 3);

  auto a = sb.cli({"approve", "ready", "--node", "ok"});
  INFO(a);
  REQUIRE(a.exit_code == 0);
  auto idle_before = db_events(sb.db(), "idle").size();

  auto s = sb.cli({"supervise", "--once", "--interval", "1s"});
  INFO(s);
  REQUIRE(s.exit_code == 0);
  CHECK(contains(s.out, "resumed run ready"));
  CHECK_FALSE(contains(s.out, "idle"));
  CHECK(db_status(sb, "ready") == "finished");
  CHECK(sb.inspect("ready")["outputs"]["ok"]["approved"] == true);
  CHECK(of_type(sb.events("ready"), "RunResumed").size() == 1);
  // The run with nothing arrived stays as it was.
  auto idle = db_run(sb.db(), "idle");
  REQUIRE(idle);
  CHECK(idle->status == "waiting-approval");
  CHECK(idle->owner_id == "");
  CHECK(db_events(sb.db(), "idle").size() == idle_before);
  CHECK(of_type(sb.events("idle"), "RunResumed").empty());

  // Once more: nothing to do for either.
  auto ready_events = db_events(sb.db(), "ready").size();
  auto s2 = sb.cli({"supervise", "--once", "--interval", "1s"});
  INFO(s2);
  REQUIRE(s2.exit_code == 0);
  CHECK_FALSE(contains(s2.out, "resumed run"));
  CHECK(db_events(sb.db(), "ready").size() == ready_events);
  CHECK(db_events(sb.db(), "idle").size() == idle_before);
  CHECK(db_status(sb, "idle") == "waiting-approval");

  // A run held by a live owner: supervise leaves it to that owner, even with
  // its decision arrived.
  auto owner = sb.start({"resume", "idle", "--wait"});
  REQUIRE(eventually([&] {
    auto row = db_run(sb.db(), "idle");
    return row && row->owner_id != "";
  }));
  auto owner_id = db_run(sb.db(), "idle")->owner_id;
  auto a2 = sb.cli({"approve", "idle", "--node", "ok"});
  INFO(a2);
  REQUIRE(a2.exit_code == 0);
  CHECK(contains(a2.out, "the process driving the run takes it"));
  auto s3 = sb.cli({"supervise", "--once", "--interval", "1s"});
  INFO(s3);
  CHECK(s3.exit_code == 0);
  CHECK_FALSE(contains(s3.out, "resumed run idle"));
  auto res = owner->wait();
  INFO(res);
  REQUIRE(res.exit_code == 0);
  CHECK(db_status(sb, "idle") == "finished");
  auto resumed = of_type(sb.events("idle"), "RunResumed");
  REQUIRE(resumed.size() == 1);
  CHECK(resumed[0]["by"] == owner_id);
}

TEST_CASE("a live run waiting on a timer takes a decision from another process", "[system][wait]") {
  sandbox sb;
  auto wf = sb.write(
      "wf.json",
      json{{"name", "live"},
           {"root",
            {{"parallel",
              json::array(
                  {{{"timer", "t"}, {"duration_ms", 4000}},
                   {{"sequence", json::array({{{"approval", "ok"}, {"title", "OK?"}},
                                              {{"task", "after"}, {"value", {{"a", 1}}}}})}}})}}}});
  auto proc = sb.start({"run", wf, "--run-id", "live"});
  bool waiting = eventually([&] { return db_status(sb, "live") == "waiting-approval"; },
                            std::chrono::seconds(20), std::chrono::milliseconds(20));
  if (!waiting) {
    proc->signal(SIGKILL);
    INFO(proc->wait());
    FAIL("the run never became waiting-approval: " << db_status(sb, "live"));
  }
  // The timer keeps the run with its owner: not released.
  CHECK(db_run(sb.db(), "live")->owner_id != "");
  auto a = sb.cli_json({"approve", "live", "--node", "ok", "--by", "dana"});
  INFO(a);
  REQUIRE(a.exit_code == 0);
  CHECK(a.out_json()["needs_resume"] == false);
  CHECK_FALSE(a.out_json().contains("continue_with"));
  auto r = proc->wait();
  INFO(r);
  REQUIRE(r.exit_code == 0);
  auto j = sb.inspect("live");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["outputs"]["ok"]["by"] == "dana");
  CHECK(j["outputs"]["after"] == json{{"a", 1}});
  auto ev = sb.events("live");
  CHECK(of_type(ev, "RunResumed").empty()); // one process all along
  // Taken while the timer still waited (4 s is far beyond the 500 ms poll).
  CHECK(index_of(ev, "ApprovalDecided") < index_of(ev, "TimerFired"));
  CHECK(index_of(ev, "NodeFinished", "after") < index_of(ev, "TimerFired"));
}

TEST_CASE("resume and supervise at once drive a ready waiting run exactly once", "[system][wait]") {
  sandbox sb;
  auto wf = sb.write("wf.json", json{{"name", "race"},
                                     {"root",
                                      {{"sequence", json::array({
                                                        {{"approval", "ok"}, {"title", "OK?"}},
                                                        {{"task", "after"}, {"value", {{"a", 1}}}},
                                                    })}}}});
  for (int i = 0; i < 4; ++i) {
    std::string id = "both-" + std::to_string(i);
    INFO("round " << i);
    auto r = sb.cli({"run", wf, "--run-id", id});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    auto a = sb.cli({"approve", id, "--node", "ok"});
    INFO(a);
    REQUIRE(a.exit_code == 0);
    auto p = sb.start({"resume", id});
    auto q = sb.start({"supervise", "--once", "--interval", "1s"});
    auto fp = std::async(std::launch::async, [&] { return p->wait(); });
    auto fq = std::async(std::launch::async, [&] { return q->wait(); });
    auto rp = fp.get();
    auto rq = fq.get();
    INFO("resume: " << rp << "\nsupervise: " << rq);
    CHECK(rq.exit_code == 0);
    CHECK((rp.exit_code == 0 || rp.exit_code == 4));
    CHECK(db_status(sb, id) == "finished");
    auto ev = sb.events(id);
    CHECK(of_type(ev, "RunResumed").size() == 1);
    CHECK(of_type(ev, "ApprovalDecided").size() == 1);
    CHECK(of_type(ev, "NodeStarted", "after").size() == 1);
    CHECK(of_type(ev, "RunFinished").size() == 1);
  }
}

// ------------------------------------------------------------------ 8
TEST_CASE("resume retries a failed run without re-running finished nodes", "[system][wait]") {
  sandbox sb;
  auto first = sb.file("first.txt");
  auto marker = sb.file("marker");
  auto wf = sb.write(
      "wf.json",
      json{{"name", "retry"},
           {"root",
            {{"sequence",
              json::array(
                  {counted_task("first", first, {{"first", 1}}),
                   {{"task", "flaky"},
                    {"retries", 1},
                    {"retry", {{"initial_ms", 50}}},
                    {"run", sh("test -e '" + marker +
                               "' && echo '{\"ok\": true}' || { echo not yet >&2; exit 1; }")}},
                   {{"task", "last"}, {"needs", {"flaky"}}, {"value", {{"done", true}}}}})}}}});
  auto r = sb.cli({"run", wf, "--run-id", "f"});
  INFO(r);
  REQUIRE(r.exit_code == 1);
  auto j = sb.inspect("f");
  CHECK(j["run"]["status"] == "failed");
  CHECK(attempt_numbers(j, "flaky") == std::vector<int>{1, 2});

  // Still failing: a fresh budget of two attempts, numbered on.
  auto again = sb.cli({"resume", "f"});
  INFO(again);
  REQUIRE(again.exit_code == 1);
  j = sb.inspect("f");
  CHECK(attempt_numbers(j, "flaky") == std::vector<int>{1, 2, 3, 4});
  CHECK(runs_of(first) == 1);

  sb.write("marker", std::string("x"));
  auto res = sb.cli({"resume", "f"});
  INFO(res);
  REQUIRE(res.exit_code == 0);
  j = sb.inspect("f");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["run"]["error"].is_null());
  CHECK(j["outputs"]["last"] == json{{"done", true}});
  CHECK(j["outputs"]["first"] == json{{"first", 1}});
  CHECK(runs_of(first) == 1);
  REQUIRE(attempts_of(j, "first").size() == 1);
  CHECK(node_of(j, "first")["attempts"] == 1);
  CHECK(attempt_numbers(j, "flaky") == std::vector<int>{1, 2, 3, 4, 5});
  for (int n = 1; n <= 4; ++n)
    CHECK(attempt_no(j, "flaky", n)["state"] == "failed");
  CHECK(attempt_no(j, "flaky", 5)["state"] == "finished");
  auto ev = sb.events("f");
  CHECK(of_type(ev, "NodeStarted", "first").size() == 1);
  auto resumed = of_type(ev, "RunResumed");
  REQUIRE(resumed.size() == 2);
  for (const auto& e : resumed) {
    CHECK(e["retry"] == true);
    CHECK(e["previous_status"] == "failed");
  }

  auto done = sb.cli({"resume", "f"});
  INFO(done);
  CHECK(done.exit_code == 4);
  CHECK(contains(done.err, "RUN_NOT_RESUMABLE"));
}

TEST_CASE("resume retries a cancelled waiting run which waits again", "[system][wait]") {
  sandbox sb;
  auto first = sb.file("first.txt");
  auto after = sb.file("after.txt");
  auto wf =
      sb.write("wf.json", json{{"name", "cancelled"},
                               {"root",
                                {{"sequence", json::array({
                                                  counted_task("first", first, {{"first", 1}}),
                                                  {{"approval", "ok"}, {"title", "OK?"}},
                                                  counted_task("after", after, {{"after", 1}}),
                                              })}}}});
  auto r = sb.cli({"run", wf, "--run-id", "c"});
  INFO(r);
  REQUIRE(r.exit_code == 3);
  auto c = sb.cli({"cancel", "c"});
  INFO(c);
  REQUIRE(c.exit_code == 0);
  CHECK(db_status(sb, "c") == "cancelled");
  // A cancelled run takes no decision.
  auto refused = sb.cli({"approve", "c", "--node", "ok"});
  INFO(refused);
  CHECK(refused.exit_code == 4);

  auto res = sb.cli({"resume", "c"});
  INFO(res);
  REQUIRE(res.exit_code == 3);
  CHECK(contains(res.out, "ok waits for approval: OK?"));
  CHECK(db_status(sb, "c") == "waiting-approval");
  auto ev = sb.events("c");
  auto resumed = of_type(ev, "RunResumed");
  REQUIRE(resumed.size() == 1);
  CHECK(resumed[0]["retry"] == true);
  CHECK(resumed[0]["previous_status"] == "cancelled");
  CHECK(of_type(ev, "ApprovalRequested", "ok").size() == 2);

  auto a = sb.cli({"approve", "c", "--node", "ok"});
  INFO(a);
  REQUIRE(a.exit_code == 0);
  auto fin = sb.cli({"resume", "c"});
  INFO(fin);
  REQUIRE(fin.exit_code == 0);
  auto j = sb.inspect("c");
  CHECK(j["run"]["status"] == "finished");
  CHECK(runs_of(first) == 1);
  CHECK(runs_of(after) == 1);
  CHECK(attempts_of(j, "first").size() == 1);
  CHECK(j["outputs"]["ok"]["approved"] == true);
}

TEST_CASE("a decision not taken before a cancel is void: the retried run asks again",
          "[system][wait]") {
  sandbox sb;
  auto marker = sb.file("deployed");
  auto wf = sb.write("wf.json", json{{"name", "gate-cancel"},
                                     {"root",
                                      {{"task", "deploy"},
                                       {"needs_approval", true},
                                       {"run", "touch " + marker + "; echo '{}'"}}}});
  REQUIRE(sb.cli({"run", wf, "--run-id", "g"}).exit_code == 3);
  REQUIRE(sb.cli({"approve", "g", "--node", "deploy"}).exit_code == 0);
  REQUIRE(sb.cli({"cancel", "g"}).exit_code == 0);
  auto res = sb.cli({"resume", "g"});
  INFO(res);
  CHECK(res.exit_code == 3); // waits for a new decision
  CHECK_FALSE(file_exists(marker));
  CHECK(sql_rows(sb.db(), "SELECT consumed_by FROM inbox WHERE run_id = 'g'") ==
        std::vector<std::string>{"cancelled"});
  REQUIRE(sb.cli({"approve", "g", "--node", "deploy"}).exit_code == 0);
  CHECK(sb.cli({"resume", "g"}).exit_code == 0);
  CHECK(file_exists(marker));
}

// ------------------------------------------------------------------ 9
namespace {

struct bad_decision {
  std::string what;
  std::vector<std::string> args;
  std::string code;
  std::vector<std::string> fragments;
};

void check_refusals(const sandbox& sb, const std::vector<bad_decision>& cases) {
  for (const auto& c : cases) {
    INFO("case: " << c.what);
    refusal want{c.code, c.fragments};
    auto before = snapshot(sb);
    check_text_refusal(sb.cli(c.args), want);
    CHECK(snapshot(sb) == before);
    check_json_refusal(sb.cli_json(c.args), want);
    CHECK(snapshot(sb) == before);
  }
}

} // namespace

TEST_CASE("bad decisions and signals are refused with exit 4 and write nothing", "[system][wait]") {
  sandbox sb;
  seed_run(sb); // "seed", finished
  auto wf = sb.write(
      "wf.json",
      json{{"name", "refuse"},
           {"root",
            {{"sequence",
              json::array({{{"parallel", json::array({{{"approval", "ok"}, {"title", "OK?"}},
                                                      {{"task", "t"}, {"value", json::object()}},
                                                      {{"signal", "sig"}, {"name", "go"}}})}},
                           {{"approval", "later"}, {"title", "Later?"}}})}}}});
  auto r = sb.cli({"run", wf, "--run-id", "r"});
  INFO(r);
  REQUIRE(r.exit_code == 3);
  auto e = sb.cli({"run", wf, "--run-id", "ended"});
  INFO(e);
  REQUIRE(e.exit_code == 3);
  auto c = sb.cli({"cancel", "ended"});
  INFO(c);
  REQUIRE(c.exit_code == 0);

  std::string long_by(300, 'x');
  check_refusals(
      sb,
      {
          {"a node not mounted yet",
           {"approve", "r", "--node", "later"},
           "INVALID_ARGUMENT",
           {"\"later\"", "not waiting for approval"}},
          {"a task",
           {"approve", "r", "--node", "t"},
           "INVALID_ARGUMENT",
           {"\"t\"", "not waiting for approval"}},
          {"a signal node",
           {"deny", "r", "--node", "sig"},
           "INVALID_ARGUMENT",
           {"\"sig\"", "waiting-event"}},
          {"an unknown node", {"approve", "r", "--node", "nope"}, "INVALID_ARGUMENT", {"\"nope\""}},
          {"an iteration that does not wait",
           {"approve", "r", "--node", "ok", "--iteration", "1"},
           "INVALID_ARGUMENT",
           {"iteration 1"}},
          {"an unknown run", {"approve", "nope", "--node", "ok"}, "RUN_NOT_FOUND", {"nope"}},
          {"a signal to an unknown run", {"signal", "nope", "go"}, "RUN_NOT_FOUND", {"nope"}},
          {"a bad signal name", {"signal", "r", "a b"}, "INVALID_ARGUMENT", {"a b"}},
          {"signal data that is not JSON",
           {"signal", "r", "go", "--data", "{not json"},
           "INVALID_INPUT",
           {"--data"}},
          {"a --by too long",
           {"approve", "r", "--node", "ok", "--by", long_by},
           "INVALID_ARGUMENT",
           {"--by"}},
          {"a --note that is not UTF-8",
           {"approve", "r", "--node", "ok", "--note", "bad \xff byte"},
           "INVALID_ARGUMENT",
           {"--note is not valid UTF-8"}},
          {"a --by that is not UTF-8",
           {"deny", "r", "--node", "ok", "--by", "\xfe"},
           "INVALID_ARGUMENT",
           {"--by is not valid UTF-8"}},
          {"a cancelled run", {"approve", "ended", "--node", "ok"}, "INVALID_ARGUMENT", {}},
          {"a signal to a cancelled run", {"signal", "ended", "go"}, "INVALID_ARGUMENT", {}},
          {"a finished run", {"deny", "seed", "--node", "a"}, "INVALID_ARGUMENT", {}},
          {"a signal to a finished run", {"signal", "seed", "go"}, "INVALID_ARGUMENT", {}},
      });

  auto a = sb.cli({"approve", "r", "--node", "ok", "--by", "alice"});
  INFO(a);
  REQUIRE(a.exit_code == 0);
  check_refusals(sb, {
                         {"a second approval before resume",
                          {"approve", "r", "--node", "ok", "--by", "bob"},
                          "INVALID_ARGUMENT",
                          {"already has a decision"}},
                         {"a denial after an approval before resume",
                          {"deny", "r", "--node", "ok"},
                          "INVALID_ARGUMENT",
                          {"already has a decision"}},
                     });

  // Resume takes the approval; the run then waits for its signal.
  auto res = sb.cli({"resume", "r"});
  INFO(res);
  REQUIRE(res.exit_code == 3);
  CHECK(db_status(sb, "r") == "waiting-event");
  check_refusals(
      sb,
      {
          {"a second approval after resume",
           {"approve", "r", "--node", "ok"},
           "INVALID_ARGUMENT",
           {"\"ok\""}},
          {"a denial after resume", {"deny", "r", "--node", "ok"}, "INVALID_ARGUMENT", {"\"ok\""}},
      });
  auto j = sb.inspect("r");
  CHECK(j["outputs"]["ok"]["by"] == "alice");
  CHECK(j["outputs"]["ok"]["approved"] == true);
}

TEST_CASE("two deciders at once for one waiting node: exactly one wins", "[system][wait]") {
  sandbox sb;
  auto wf =
      sb.write("wf.json", json{{"name", "race"}, {"root", {{"approval", "ok"}, {"title", "OK?"}}}});
  // Even rounds: two approvals (alice, bob); odd rounds: alice approves and
  // bob denies. The run takes the winner's decision and no other.
  for (int i = 0; i < 6; ++i) {
    std::string id = "race-" + std::to_string(i);
    bool bob_denies = i % 2 == 1;
    INFO("round " << i << (bob_denies ? " (approve vs deny)" : " (approve vs approve)"));
    auto r = sb.cli({"run", wf, "--run-id", id});
    INFO(r);
    REQUIRE(r.exit_code == 3);
    auto p = sb.start({"approve", id, "--node", "ok", "--by", "alice"});
    auto q = sb.start({bob_denies ? "deny" : "approve", id, "--node", "ok", "--by", "bob"});
    auto fp = std::async(std::launch::async, [&] { return p->wait(); });
    auto fq = std::async(std::launch::async, [&] { return q->wait(); });
    auto rp = fp.get();
    auto rq = fq.get();
    INFO("alice: " << rp << "\nbob: " << rq);
    REQUIRE(((rp.exit_code == 0 && rq.exit_code == 4) || (rp.exit_code == 4 && rq.exit_code == 0)));
    const auto& loser = rp.exit_code == 4 ? rp : rq;
    CHECK(contains(loser.err, "error: INVALID_ARGUMENT: "));
    // The loser either saw the winner's decision or lost inside the
    // insert: either way in words for the user, not the store's.
    CHECK((contains(loser.err, "already has a decision") ||
           contains(loser.err, "another one came first")));
    CHECK_FALSE(contains(loser.err, "write failed"));
    CHECK(loser.out.empty());
    bool alice_won = rp.exit_code == 0;
    bool approved = alice_won || !bob_denies;
    auto rows = sql_rows(sb.db(), "SELECT kind, node_id FROM inbox WHERE run_id = '" + id + "'");
    CHECK(rows == std::vector<std::string>{"approval|ok"});

    auto res = sb.cli({"resume", id});
    INFO(res);
    CHECK(res.exit_code == (approved ? 0 : 1));
    auto j = sb.inspect(id);
    CHECK(j["run"]["status"] == (approved ? "finished" : "failed"));
    auto decided = of_type(sb.events(id), "ApprovalDecided", "ok");
    REQUIRE(decided.size() == 1);
    CHECK(decided[0]["approved"] == approved);
    CHECK(decided[0]["by"] == (alice_won ? "alice" : "bob"));
    if (approved) CHECK(j["outputs"]["ok"]["by"] == (alice_won ? "alice" : "bob"));
  }
}

// ------------------------------------------------------------------ 10
TEST_CASE("the gated-deploy example walks through approve timer and signal", "[system][wait]") {
  sandbox sb;
  auto wf = source_dir() + "/examples/gated-deploy.json";
  auto r = sb.cli({"run", wf, "--run-id", "gd"});
  INFO(r);
  REQUIRE(r.exit_code == 3);
  CHECK(contains(r.out, "run gd waiting-approval"));
  CHECK(
      contains(r.out, "deploy waits for approval before it runs: Deploy app-1.2.3 to production?"));
  CHECK(contains(r.out, prefix(sb) + "approve gd --node deploy"));
  CHECK(contains(r.out, prefix(sb) + "deny gd --node deploy"));
  CHECK(contains(r.out, prefix(sb) + "resume gd"));

  auto ps = sb.cli({"ps", "--status", "waiting-approval"});
  INFO(ps);
  REQUIRE(ps.exit_code == 0);
  CHECK(contains(ps.out, "gd"));
  CHECK(contains(ps.out, "waiting-approval"));
  auto ps_json = sb.cli_json({"ps", "--status", "waiting-approval"}).out_json();
  REQUIRE(ps_json.size() == 1);
  CHECK(ps_json[0]["run_id"] == "gd");
  CHECK(sb.cli_json({"ps", "--status", "finished"}).out_json().empty());
  auto text = sb.cli({"inspect", "gd"});
  INFO(text);
  REQUIRE(text.exit_code == 0);
  CHECK(contains(text.out, "WAITING"));
  CHECK(contains(text.out, prefix(sb) + "approve gd --node deploy"));
  CHECK(contains(text.out, "Deploy app-1.2.3 to production?"));

  auto early = sb.cli({"resume", "gd"});
  INFO(early);
  CHECK(early.exit_code == 3);
  CHECK(contains(early.out, "still waiting-approval"));

  auto a = sb.cli(
      {"approve", "gd", "--node", "deploy", "--by", "alice", "--note", "release window open"});
  INFO(a);
  REQUIRE(a.exit_code == 0);
  auto second = sb.cli({"approve", "gd", "--node", "deploy", "--by", "bob"});
  INFO(second);
  CHECK(second.exit_code == 4);
  CHECK(contains(second.err, "already has a decision (approved by alice)"));

  auto t0 = wall_ms();
  auto res = sb.cli({"resume", "gd"});
  auto took = wall_ms() - t0;
  INFO(res);
  REQUIRE(res.exit_code == 3);
  CHECK(took >= 2000); // the cool-down ran in the foreground
  CHECK(contains(res.out, "run gd waiting-event"));
  CHECK(contains(res.out, "ci waits for signal \"ci-done\""));
  CHECK(contains(res.out, prefix(sb) + "signal gd ci-done --data '{}'"));
  auto j = sb.inspect("gd");
  CHECK(j["run"]["status"] == "waiting-event");
  CHECK(j["outputs"]["deploy"] == json{{"deployed", "app-1.2.3.tar.gz"}});
  CHECK(node_of(j, "cool-down")["state"] == "finished");
  CHECK(node_of(j, "ci")["state"] == "waiting-event");

  auto s = sb.cli({"signal", "gd", "ci-done", "--data", R"({"status": "green"})"});
  INFO(s);
  REQUIRE(s.exit_code == 0);
  CHECK(contains(s.out, "signal \"ci-done\" recorded for run gd"));
  auto fin = sb.cli_json({"resume", "gd"});
  INFO(fin);
  REQUIRE(fin.exit_code == 0);
  j = sb.inspect("gd");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["outputs"]["announce"] == json{{"announced", true}});
  CHECK_FALSE(j["outputs"].contains("rollback"));
  CHECK(j["outputs"]["ci"] == json{{"status", "green"}});
  CHECK(j["outputs"]["build"] == json{{"artifact", "app-1.2.3.tar.gz"}});
  auto cool = j["outputs"]["cool-down"];
  CHECK(cool["fired_ms"].get<std::int64_t>() >= cool["deadline_ms"].get<std::int64_t>());
  for (const auto& n : {"build", "deploy", "cool-down", "ci", "announce"})
    CHECK(attempts_of(j, n).size() == 1);

  auto ev = sb.events("gd");
  for (const auto& type : {"ApprovalRequested", "ApprovalDecided", "TimerScheduled", "TimerFired",
                           "SignalReceived", "RunFinished"}) {
    INFO(type);
    CHECK(of_type(ev, type).size() == 1);
  }
  CHECK(of_type(ev, "RunResumed").size() == 2);
  CHECK(status_changes(ev, "waiting-approval").size() == 1);
  CHECK(status_changes(ev, "waiting-timer").size() >= 1);
  CHECK(status_changes(ev, "waiting-event").size() == 1);
  CHECK(index_of(ev, "ApprovalDecided") < index_of(ev, "TimerScheduled"));
  CHECK(index_of(ev, "TimerFired") < index_of(ev, "SignalReceived"));
}
