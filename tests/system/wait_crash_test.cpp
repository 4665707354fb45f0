// Crash safety of waits through the smithers binary (docs/waiting.md): the
// owner of a run is killed with SIGKILL while it waits on a timer, and while
// a decision arrives for it; `smithers resume` must then finish the run with
// the timer fired exactly once, the decision taken exactly once (never
// lost), and no node run twice unless its attempt was in flight at the kill.
//
// Randomness (the kill delays) comes from one seed per test case, printed on
// failure; SMITHERS_CRASH_SEED=N replays those delays (timing still varies).
#include "system/cli_support.hpp"
#include "system/store_support.hpp"

#include "store/database.hpp"
#include "store/reader.hpp"

#include <csignal>
#include <future>
#include <optional>
#include <random>
#include <set>

using namespace smithers::system_test;
using smithers::json;
namespace store = smithers::store;

namespace {

constexpr int trials = 20;

// ------------------------------------------------- the store, read directly

std::vector<json> events_of(const std::vector<store::event_row>& events, const std::string& type,
                            const std::string& node = "") {
  std::vector<json> out;
  for (const auto& e : events)
    if (e.type == type && (node.empty() || e.payload.value("node_id", "") == node))
      out.push_back(e.payload);
  return out;
}

/// Attempts in progress (node id -> count), e.g. at a kill.
std::map<std::string, int> in_progress(const std::string& db, const std::string& run_id) {
  std::map<std::string, int> out;
  for (const auto& a : db_attempts(db, run_id))
    if (a.state == "in-progress") ++out[a.node_id];
  return out;
}

/// SIGKILL, then reap (so the owner pid is gone at once).
command_result kill9(child_process& p) {
  p.signal(SIGKILL);
  return p.wait();
}

/// A command task that appends its id to `side`, then outputs {"node": id}.
json side_effect_task(const std::string& id, const std::string& side) {
  return {{"task", id},
          {"run", json::array({"sh", "-c",
                               "echo " + id + " >> '" + side + "'; sleep 0.02; echo '{\"node\":\"" +
                                   id + "\"}'"})}};
}

std::string join_lines(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& l : v)
    s += "  " + l + "\n";
  return s;
}

/// Resumes the run until it is finished (at most `rounds` resumes); each
/// resume must end with exit 0. Returns the problems seen.
void resume_to_end(const sandbox& sb, const std::string& run_id, std::vector<std::string>& bad,
                   int rounds = 4) {
  for (int round = 0; round < rounds; ++round) {
    auto row = db_run(sb.db(), run_id);
    if (!row) {
      bad.push_back("the run row is gone");
      return;
    }
    if (row->status == "finished") return;
    auto r = sb.cli({"resume", run_id});
    if (r.exit_code != 0)
      bad.push_back("resume (round " + std::to_string(round) + ", status was " + row->status +
                    ") exited " + std::to_string(r.exit_code) +
                    (r.timed_out ? " (timed out)" : "") + ": " + r.out + r.err);
  }
  auto row = db_run(sb.db(), run_id);
  if (!row || row->status != "finished")
    bad.push_back("not finished after " + std::to_string(rounds) +
                  " resumes: " + (row ? row->status : std::string("no run")));
}

/// Each of `nodes` has exactly one finished attempt; none is in progress.
void check_attempts(const std::string& db, const std::string& run_id,
                    const std::vector<std::string>& nodes, std::vector<std::string>& bad) {
  std::map<std::string, int> finished;
  for (const auto& a : db_attempts(db, run_id)) {
    if (a.state == "finished") ++finished[a.node_id];
    if (a.state == "in-progress")
      bad.push_back("attempt " + a.node_id + "#" + std::to_string(a.attempt) +
                    " is still in progress");
  }
  for (const auto& n : nodes)
    if (finished[n] != 1)
      bad.push_back("node " + n + " has " + std::to_string(finished[n]) + " finished attempts");
}

/// Side effects: each command node ran at least once, and again only for an
/// attempt that was in flight at the kill.
void check_side_effects(const std::string& side, const std::vector<std::string>& commands,
                        const std::map<std::string, int>& in_flight,
                        std::vector<std::string>& bad) {
  auto lines = line_counts(side);
  for (const auto& n : commands) {
    int ran = lines.count(n) ? lines.at(n) : 0;
    int killed = in_flight.count(n) ? in_flight.at(n) : 0;
    if (ran < 1) bad.push_back("node " + n + " never ran");
    if (ran - 1 > killed)
      bad.push_back("node " + n + " ran " + std::to_string(ran) + " times; " +
                    std::to_string(killed) + " of its attempts were in flight at the kill");
  }
}

} // namespace

TEST_CASE("a kill -9 of run while it waits on a timer: the timer fires exactly once",
          "[crash][wait]") {
  auto seed = test_seed();
  INFO("SMITHERS_CRASH_SEED=" << seed);
  std::mt19937_64 rng(seed);
  int killed_waiting = 0, missed = 0;
  for (int trial = 0; trial < trials; ++trial) {
    sandbox sb;
    auto side = sb.file("side.txt");
    auto wf =
        sb.write("wf.json", json{{"name", "crash-timer"},
                                 {"root",
                                  {{"sequence", json::array({side_effect_task("head", side),
                                                             {{"timer", "t"}, {"duration_ms", 400}},
                                                             side_effect_task("tail", side)})}}}});
    auto proc = sb.start({"run", wf, "--run-id", "r"});
    // Most trials kill within 600 ms of the run's first commit, whenever a
    // loaded machine (or a sanitizer build) gets there; one in four within
    // 600 ms of the start, which may be before the run exists.
    if (uniform(rng, 0, 3) > 0) eventually([&] { return db_run(sb.db(), "r").has_value(); });
    int delay = uniform(rng, 0, 600);
    sleep_ms(delay);
    auto status_at_kill = db_run(sb.db(), "r");
    auto killed = kill9(*proc);
    auto in_flight = in_progress(sb.db(), "r");
    INFO("trial " << trial << ": kill after " << delay << " ms; run "
                  << (status_at_kill ? status_at_kill->status : "(none)") << "; exit "
                  << killed.exit_code);
    if (killed.exit_code != 0) REQUIRE(killed.exit_code == 128 + SIGKILL);
    if (!db_run(sb.db(), "r")) {
      ++missed; // killed before the run existed: nothing to resume
      continue;
    }
    if (status_at_kill && status_at_kill->status == "waiting-timer") ++killed_waiting;

    std::vector<std::string> bad;
    if (killed.exit_code != 0) resume_to_end(sb, "r", bad);

    auto run = db_run(sb.db(), "r");
    if (!run || run->status != "finished") bad.push_back("the run did not finish");
    check_attempts(sb.db(), "r", {"head", "t", "tail"}, bad);
    int timer_attempts = 0;
    for (const auto& a : db_attempts(sb.db(), "r"))
      if (a.node_id == "t") ++timer_attempts;
    if (timer_attempts != 1)
      bad.push_back("the timer has " + std::to_string(timer_attempts) + " attempts");
    auto events = db_events(sb.db(), "r");
    auto fired = events_of(events, "TimerFired", "t");
    auto scheduled = events_of(events, "TimerScheduled", "t");
    if (fired.size() != 1) bad.push_back(std::to_string(fired.size()) + " TimerFired events");
    if (scheduled.empty()) bad.push_back("no TimerScheduled event");
    for (const auto& s : scheduled)
      if (!fired.empty() && s["deadline_ms"] != fired[0]["deadline_ms"])
        bad.push_back("TimerScheduled deadline " + s["deadline_ms"].dump() +
                      " differs from the fired one " + fired[0]["deadline_ms"].dump());
    if (!fired.empty() &&
        fired[0]["fired_ms"].get<std::int64_t>() < fired[0]["deadline_ms"].get<std::int64_t>())
      bad.push_back("fired before its deadline: " + fired[0].dump());
    for (const auto& n : {"head", "tail"})
      if (events_of(events, "NodeFinished", n).size() != 1)
        bad.push_back(std::string("node ") + n + " finished " +
                      std::to_string(events_of(events, "NodeFinished", n).size()) + " times");
    check_side_effects(side, {"head", "tail"}, in_flight, bad);
    INFO("problems:\n" << join_lines(bad));
    CHECK(bad.empty());
  }
  INFO("killed while waiting-timer: " << killed_waiting << ", missed: " << missed);
  // The kill window covers the wait: most trials must land in it.
  CHECK(killed_waiting >= 1);
  CHECK(missed < trials / 2);
}

TEST_CASE("a kill -9 of resume --wait around an approve: the decision is taken exactly once",
          "[crash][wait]") {
  auto seed = test_seed();
  INFO("SMITHERS_CRASH_SEED=" << seed);
  std::mt19937_64 rng(seed);
  int kill_before_approve = 0, kill_after_approve = 0, finished_by_owner = 0;
  for (int trial = 0; trial < trials; ++trial) {
    sandbox sb;
    auto side = sb.file("side.txt");
    auto wf = sb.write("wf.json", json{{"name", "crash-approve"},
                                       {"root",
                                        {{"sequence", json::array({
                                                          {{"approval", "ok"}, {"title", "OK?"}},
                                                          side_effect_task("after", side),
                                                      })}}}});
    auto r = sb.cli({"run", wf, "--run-id", "r"});
    INFO("trial " << trial << "\n" << r);
    REQUIRE(r.exit_code == 3);

    int approve_at = uniform(rng, 0, 500);
    int kill_at = uniform(rng, 0, 700);
    INFO("approve after " << approve_at << " ms, kill after " << kill_at << " ms");
    (approve_at <= kill_at ? kill_after_approve : kill_before_approve)++;
    auto owner = sb.start({"resume", "r", "--wait"});
    auto t0 = std::chrono::steady_clock::now();
    // No Catch assertions on this thread.
    auto approving = std::async(std::launch::async, [&] {
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(approve_at));
      return sb.cli({"approve", "r", "--node", "ok", "--by", "alice"});
    });
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(kill_at));
    auto killed = kill9(*owner);
    auto in_flight = in_progress(sb.db(), "r");
    auto approved = approving.get();
    INFO("owner: " << killed << "\napprove: " << approved);
    REQUIRE(approved.exit_code == 0);
    if (killed.exit_code == 0)
      ++finished_by_owner;
    else
      CHECK(killed.exit_code == 128 + SIGKILL);

    std::vector<std::string> bad;
    resume_to_end(sb, "r", bad);
    check_attempts(sb.db(), "r", {"ok", "after"}, bad);
    auto events = db_events(sb.db(), "r");
    auto decided = events_of(events, "ApprovalDecided", "ok");
    if (decided.size() != 1)
      bad.push_back(std::to_string(decided.size()) + " ApprovalDecided events");
    auto j = sb.inspect("r");
    if (j["outputs"]["ok"]["approved"] != true || j["outputs"]["ok"]["by"] != "alice")
      bad.push_back("the approval's output is " + j["outputs"]["ok"].dump());
    if (!j["inbox"].empty()) bad.push_back("inbox entries not taken: " + j["inbox"].dump());
    if (events_of(events, "NodeFinished", "after").size() != 1)
      bad.push_back("after finished " +
                    std::to_string(events_of(events, "NodeFinished", "after").size()) + " times");
    check_side_effects(side, {"after"}, in_flight, bad);
    INFO("problems:\n" << join_lines(bad));
    CHECK(bad.empty());
  }
  INFO("kills before the approve: " << kill_before_approve << ", after: " << kill_after_approve
                                    << ", finished by the owner: " << finished_by_owner);
  CHECK(kill_before_approve + kill_after_approve == trials);
}
