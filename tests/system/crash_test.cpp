// Crash safety through the smithers binary (docs/reference.md#states, the durability contract,
// and §3, `smithers resume`): runs killed with SIGKILL at random moments are
// resumed to exactly one output per node; backoffs survive a kill; a kill
// during a burst of commits loses nothing; two resumers race and exactly one
// wins; resume refuses what it must; SIGTERM leaves a run resumable. Also:
// what a kill during the creation of the database leaves must not block the
// commands; the task processes of a killed owner must not outlive the
// resume; a task's process must not start before its attempt is recorded.
//
// Randomness (the kill delays) comes from one seed per test case, printed on
// failure; SMITHERS_CRASH_SEED=N replays those delays (timing still varies).
// With SMITHERS_CRASH_KEEP=1, a trial whose invariants break keeps its
// database, workflow and side-effect file in /tmp/smithers-crash-kept-* (the
// path is printed). SMITHERS_CRASH_VERBOSE=1 prints what each trial did.
#include "system/cli_support.hpp"
#include "system/store_support.hpp"

#include "store/database.hpp"
#include "store/reader.hpp"

#include <smithers/node_key.hpp>

#include <sqlite3.h>

#include <csignal>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>

using namespace smithers::system_test;
using smithers::json;
namespace store = smithers::store;

namespace {

using attempt_key = std::pair<std::string, std::int64_t>; // node id, attempt

bool verbose() {
  const char* v = std::getenv("SMITHERS_CRASH_VERBOSE");
  return v && *v && std::string(v) != "0";
}

// --------------------------------------------------------- the store, read directly

/// A stored row's node as inspect and frames name it: "id", "id@N".
template <class Row> std::string key_of(const Row& r) {
  return to_string(smithers::node_key{r.node_id, r.iteration});
}

std::set<attempt_key> in_progress(const std::string& db, const std::string& run_id) {
  std::set<attempt_key> out;
  for (const auto& a : db_attempts(db, run_id))
    if (a.state == "in-progress") out.emplace(key_of(a), a.attempt);
  return out;
}

std::size_t count_events(const std::vector<store::event_row>& events, const std::string& type) {
  return static_cast<std::size_t>(std::count_if(
      events.begin(), events.end(), [&](const store::event_row& e) { return e.type == type; }));
}

std::optional<store::attempt_row> find_attempt(const std::vector<store::attempt_row>& attempts,
                                               const std::string& node, std::int64_t attempt) {
  for (const auto& a : attempts)
    if (key_of(a) == node && a.attempt == attempt) return a;
  return std::nullopt;
}

// ------------------------------------------------------------------ helpers

/// With SMITHERS_CRASH_KEEP=1, copies what a failed trial left (database,
/// workflow, side-effect file) to a directory that outlives the test; returns
/// what to print.
std::string keep_evidence(const sandbox& sb, const std::string& tag) {
  const char* keep = std::getenv("SMITHERS_CRASH_KEEP");
  if (!keep || !*keep || std::string(keep) == "0")
    return "(nowhere: set SMITHERS_CRASH_KEEP=1 to keep the database of a failed trial)";
  std::string dir = "/tmp/smithers-crash-kept-" + tag + "-" + std::to_string(::getpid()) + "-" +
                    std::to_string(wall_ms());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  for (const auto& entry : std::filesystem::directory_iterator(sb.dir().path(), ec))
    std::filesystem::copy(entry.path(), dir + "/" + entry.path().filename().string(),
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::overwrite_existing,
                          ec);
  return dir;
}

std::string describe(const std::set<attempt_key>& keys) {
  std::string s;
  for (const auto& [node, attempt] : keys)
    s += (s.empty() ? "" : " ") + node + "#" + std::to_string(attempt);
  return s.empty() ? "(none)" : s;
}

/// A command's result with long outputs cut (the winner of a run prints
/// every output).
std::string brief(const command_result& r, std::size_t at_most = 800) {
  auto cut = [&](const std::string& s) {
    return s.size() <= at_most
               ? s
               : s.substr(0, at_most) + "... (" + std::to_string(s.size()) + " bytes)";
  };
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") +
         "\n--- stdout\n" + cut(r.out) + "\n--- stderr\n" + cut(r.err);
}

/// SIGKILL, then reap (so the owner pid is gone at once).
command_result kill9(child_process& p) {
  p.signal(SIGKILL);
  return p.wait();
}

/// Waits for two commands on two threads (neither may block the other on a
/// full pipe).
std::pair<command_result, command_result> wait_both(child_process& a, child_process& b) {
  auto fa = std::async(std::launch::async, [&] { return a.wait(); });
  auto fb = std::async(std::launch::async, [&] { return b.wait(); });
  return {fa.get(), fb.get()};
}

// ---------------------------------------------------------------- workflows

/// A command task that appends its node id to `side` (the side effect), then
/// sleeps a little and outputs {"node": <id>, "ok": true}.
json side_effect_task(const std::string& id, const std::string& side, const char* sleep_s) {
  return {{"task", id},
          {"run", json::array({"sh", "-c",
                               "echo {{node_id}} >> '" + side + "'; sleep " + sleep_s +
                                   "; echo '{\"node\":\"{{node_id}}\",\"ok\":true}'"})}};
}

/// 202 command tasks: head; 8 parallel sequences of 20; a parallel group of
/// 40 with max_concurrency 8; tail.
json big_workflow(const std::string& side) {
  const char* s = "0.03";
  json lanes = json::array();
  for (int lane = 0; lane < 8; ++lane) {
    json seq = json::array();
    for (int i = 0; i < 20; ++i)
      seq.push_back(
          side_effect_task("s" + std::to_string(lane) + "_" + std::to_string(i), side, s));
    lanes.push_back({{"sequence", seq}});
  }
  json wide = json::array();
  for (int i = 0; i < 40; ++i)
    wide.push_back(side_effect_task("p" + std::to_string(i), side, s));
  return {{"name", "crash-big"},
          {"root",
           {{"sequence", json::array({side_effect_task("head", side, s),
                                      {{"parallel", lanes}},
                                      {{"parallel", wide}, {"max_concurrency", 8}},
                                      side_effect_task("tail", side, s)})}}}};
}

std::vector<std::string> big_workflow_nodes() {
  std::vector<std::string> ids{"head"};
  for (int lane = 0; lane < 8; ++lane)
    for (int i = 0; i < 20; ++i)
      ids.push_back("s" + std::to_string(lane) + "_" + std::to_string(i));
  for (int i = 0; i < 40; ++i)
    ids.push_back("p" + std::to_string(i));
  ids.push_back("tail");
  return ids;
}

/// Branches decided by outputs of commands that may be in flight at a kill:
/// head; 6 lanes in parallel, each a command `a<lane>` and a branch on its
/// output — even lanes take `then` (a sequence of 4), odd lanes `else` (one
/// task); tail. A resume must decide each branch as the run did.
json branch_workflow(const std::string& side) {
  const char* s = "0.03";
  json lanes = json::array();
  for (int lane = 0; lane < 6; ++lane) {
    std::string l = std::to_string(lane);
    json then_seq = json::array();
    for (int i = 0; i < 4; ++i)
      then_seq.push_back(side_effect_task("t" + l + "_" + std::to_string(i), side, s));
    lanes.push_back(
        {{"sequence",
          json::array({side_effect_task("a" + l, side, s),
                       {{"branch", "b" + l},
                        {"if", {{"output", "a" + l + ".ok"}, {"equals", lane % 2 == 0}}},
                        {"then", {{"sequence", then_seq}}},
                        {"else", side_effect_task("e" + l, side, s)}}})}});
  }
  return {{"name", "crash-branch"},
          {"root",
           {{"sequence", json::array({side_effect_task("head", side, s), {{"parallel", lanes}},
                                      side_effect_task("tail", side, s)})}}}};
}

std::vector<std::string> branch_workflow_nodes() {
  std::vector<std::string> ids{"head", "tail"};
  for (int lane = 0; lane < 6; ++lane) {
    std::string l = std::to_string(lane);
    ids.push_back("a" + l);
    if (lane % 2 == 0)
      for (int i = 0; i < 4; ++i)
        ids.push_back("t" + l + "_" + std::to_string(i));
    else
      ids.push_back("e" + l);
  }
  return ids;
}

/// A command task inside loops: appends its key ("id", "id@N", "id@1@0")
/// to `side`, sleeps a little and outputs {"node": <key>, "i": iteration}.
json loop_task(const std::string& id, const std::string& side, const char* sleep_s) {
  return {{"task", id},
          {"run", json::array({"sh", "-c",
                               "k=$1; case $k in *@*) k=\"$k@$2\";; *) [ \"$2\" = 0 ] || "
                               "k=\"$k@$2\";; esac; echo \"$k\" >> '" +
                                   side + "'; sleep " + sleep_s +
                                   "; printf '{\"node\":\"%s\",\"i\":%s}' \"$k\" \"$2\"",
                               "sh", "{{node_id}}", "{{iteration}}"})}};
}

/// Loops whose iterations are in flight at a kill: head; in parallel three
/// loops of two tasks each until the second reports iteration 5 (6
/// iterations), and a loop of 3 iterations holding a task and an inner loop
/// of 2; tail reads iteration 3 of one loop. A resume must go on in the
/// iteration each loop was in.
json loop_workflow(const std::string& side) {
  const char* s = "0.02";
  json lanes = json::array();
  for (int lane = 0; lane < 3; ++lane) {
    std::string l = std::to_string(lane);
    lanes.push_back({{"loop", "l" + l},
                     {"max_iterations", 10},
                     {"on_max_reached", "fail"},
                     {"until", {{"output", "b" + l + ".i"}, {"gte", 5}}},
                     {"body", {{"sequence", json::array({loop_task("a" + l, side, s),
                                                         loop_task("b" + l, side, s)})}}}});
  }
  lanes.push_back({{"loop", "outer"},
                   {"max_iterations", 3},
                   {"body", {{"sequence", json::array({loop_task("c", side, s),
                                                       {{"loop", "inner"},
                                                        {"max_iterations", 2},
                                                        {"body", loop_task("d", side, s)}}})}}}});
  json tail = side_effect_task("tail", side, s);
  tail["run"][2] = tail["run"][2].get<std::string>() + " # {{outputs.b0@3.node}}";
  return {{"name", "crash-loop"},
          {"root", {{"sequence", json::array({side_effect_task("head", side, s),
                                              {{"parallel", lanes}}, tail})}}}};
}

std::vector<std::string> loop_workflow_nodes() {
  std::vector<std::string> ids{"head", "tail"};
  for (int lane = 0; lane < 3; ++lane)
    for (int i = 0; i < 6; ++i)
      for (const char* t : {"a", "b"})
        ids.push_back(to_string(smithers::node_key{t + std::to_string(lane), i}));
  for (int o = 0; o < 3; ++o) {
    ids.push_back(to_string(smithers::node_key{"c", o}));
    for (int i = 0; i < 2; ++i)
      ids.push_back(to_string(smithers::node_key{"d@" + std::to_string(o), i}));
  }
  return ids;
}

json burst_workflow(int n) {
  json kids = json::array();
  for (int i = 0; i < n; ++i)
    kids.push_back({{"task", "v" + std::to_string(i)}, {"value", {{"i", i}}}});
  return {{"name", "crash-burst"}, {"root", {{"parallel", kids}, {"max_concurrency", 64}}}};
}

// ------------------------------------------------------------------- checks

/// The invariants every crashed-and-resumed run must hold; returns the
/// problems found (empty: all good).
std::vector<std::string> check_resumed_run(const sandbox& sb, const std::string& run_id,
                                           const std::vector<std::string>& nodes,
                                           const std::set<attempt_key>& killed_in_flight,
                                           const std::string& side_file,
                                           const json* reference_outputs) {
  std::vector<std::string> problems;
  auto bad = [&](std::string p) { problems.push_back(std::move(p)); };
  auto r = sb.cli_json({"inspect", run_id});
  if (r.exit_code != 0) {
    bad("inspect failed: exit " + std::to_string(r.exit_code) + " " + r.err + r.out);
    return problems;
  }
  json j = json::parse(r.out);
  if (j["run"]["status"] != "finished")
    bad("run status is " + j["run"]["status"].dump() + ", not finished; error " +
        j["run"]["error"].dump());

  std::set<std::string> want(nodes.begin(), nodes.end());
  std::map<std::string, json> node_rows;
  for (const auto& n : j["nodes"])
    node_rows[to_string(smithers::node_key{n["node_id"].get<std::string>(),
                                           n["iteration"].get<std::int64_t>()})] = n;
  if (node_rows.size() != want.size())
    bad(std::to_string(node_rows.size()) + " nodes, want " + std::to_string(want.size()));
  for (const auto& id : want) {
    auto it = node_rows.find(id);
    if (it == node_rows.end())
      bad("node " + id + " is missing");
    else if (it->second["state"] != "finished")
      bad("node " + id + " is " + it->second["state"].dump());
  }

  const json& outs = j["outputs"];
  if (outs.size() != want.size())
    bad(std::to_string(outs.size()) + " outputs, want " + std::to_string(want.size()));
  for (const auto& id : want)
    if (!outs.contains(id)) bad("no output for " + id);
  if (reference_outputs && outs != *reference_outputs)
    bad("outputs differ from those of an uninterrupted run");

  // Attempts: none in flight; exactly one finished per node; every attempt
  // in flight at a kill is now cancelled.
  auto attempts = db_attempts(sb.db(), run_id);
  std::map<std::string, int> finished, rows;
  for (const auto& a : attempts) {
    ++rows[key_of(a)];
    if (a.state == "in-progress")
      bad("attempt " + key_of(a) + "#" + std::to_string(a.attempt) + " is still in-progress");
    if (a.state == "finished") ++finished[key_of(a)];
  }
  for (const auto& id : want)
    if (finished[id] != 1)
      bad("node " + id + " has " + std::to_string(finished[id]) + " finished attempts");
  for (const auto& [node, attempt] : killed_in_flight) {
    auto a = find_attempt(attempts, node, attempt);
    if (!a)
      bad("attempt " + node + "#" + std::to_string(attempt) +
          " (in flight at a kill) is gone from the store");
    else if (a->state != "cancelled")
      bad("attempt " + node + "#" + std::to_string(attempt) + " (in flight at a kill) is " +
          a->state + ", not cancelled");
  }

  // Side effects: every node ran at least once; a node ran again only for an
  // attempt that was in flight at a kill; and every execution has its
  // attempt row (an execution the store does not know of was started before
  // its attempt was durable).
  if (!side_file.empty()) {
    auto lines = line_counts(side_file);
    std::map<std::string, int> killed_per_node;
    for (const auto& k : killed_in_flight)
      ++killed_per_node[k.first];
    long total = 0;
    for (const auto& [id, n] : lines) {
      total += n;
      if (!want.count(id)) bad("the side-effect file names an unknown node: " + id);
    }
    for (const auto& id : want) {
      int n = lines.count(id) ? lines[id] : 0;
      if (n < 1) bad("node " + id + " never ran (no side effect)");
      if (n - 1 > killed_per_node[id])
        bad("node " + id + " ran " + std::to_string(n) + " times but only " +
            std::to_string(killed_per_node[id]) + " of its attempts were in flight at a kill");
      if (n > rows[id])
        bad("node " + id + " ran " + std::to_string(n) + " times but has only " +
            std::to_string(rows[id]) + " attempt rows (an execution without a durable attempt)");
    }
    long reexec = total - static_cast<long>(want.size());
    if (reexec > static_cast<long>(killed_in_flight.size()))
      bad(std::to_string(reexec) + " re-executions in all, but only " +
          std::to_string(killed_in_flight.size()) + " attempts were in flight at the kills");
  }
  return problems;
}

std::string join_lines(const std::vector<std::string>& v, std::size_t at_most = 40) {
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < at_most; ++i)
    s += "  " + v[i] + "\n";
  if (v.size() > at_most) s += "  ... and " + std::to_string(v.size() - at_most) + " more\n";
  return s;
}

/// One kill of the story of a trial, for the failure report.
struct kill_record {
  std::string what; // "run" or "resume"
  int delay_ms = 0;
  int exit_code = 0;
  std::set<attempt_key> in_flight;
};

std::string describe(const std::vector<kill_record>& kills) {
  std::string s;
  for (const auto& k : kills)
    s += "  kill -9 of `" + k.what + "` after " + std::to_string(k.delay_ms) + " ms -> exit " +
         std::to_string(k.exit_code) + "; in flight: " + describe(k.in_flight) + "\n";
  return s.empty() ? "  (no kill landed)\n" : s;
}

/// Drives a run to its end through kills: starts `run`, kills it after a
/// random delay, then resumes (killing up to `max_resume_kills` resumes after
/// random delays too) until a resume finishes it. Returns the kills; the run
/// is finished afterwards unless a REQUIRE failed.
struct crash_story {
  std::vector<kill_record> kills;
  std::set<attempt_key> in_flight; // every attempt in flight at some kill
  int resumes = 0;                 // resumes that ran to their end (exit 0)
  int interrupted_resumes = 0;     // resumes killed before they ended
  bool finished_before_first_kill = false;
};

crash_story crash_and_resume(const sandbox& sb, const std::string& wf_path,
                             const std::string& run_id, std::mt19937_64& rng, int kill_lo,
                             int kill_hi, int max_resume_kills, int resume_kill_lo,
                             int resume_kill_hi) {
  crash_story story;
  // The first `run`. A kill that lands before the run row exists: start
  // again on a fresh database (what such a kill leaves of the file has a
  // test case of its own).
  for (int tries = 0;; ++tries) {
    // A slow start (a loaded box, a sanitizer build) can outlast the kill
    // window: each miss doubles it, so the run row is reached in the end.
    REQUIRE(tries < 10);
    if (tries > 0) {
      kill_lo *= 2;
      kill_hi *= 2;
    }
    if (tries > 0) {
      std::error_code ec;
      for (const char* f :
           {"smithers.db", "smithers.db-wal", "smithers.db-shm", "smithers.db-journal", "side.txt"})
        std::filesystem::remove(sb.file(f), ec);
    }
    auto proc = sb.start({"run", wf_path, "--run-id", run_id});
    int delay = uniform(rng, kill_lo, kill_hi);
    sleep_ms(delay);
    auto r = kill9(*proc);
    if (r.exit_code == 0) {
      story.finished_before_first_kill = true;
      return story;
    }
    INFO("run " << brief(r));
    REQUIRE(r.exit_code == 128 + SIGKILL);
    kill_record k{"run", delay, r.exit_code, in_progress(sb.db(), run_id)};
    story.in_flight.insert(k.in_flight.begin(), k.in_flight.end());
    story.kills.push_back(k);
    if (db_run(sb.db(), run_id)) break;
  }
  // Resumes until one finishes the run.
  for (int round = 0;; ++round) {
    REQUIRE(round < 10);
    auto run = db_run(sb.db(), run_id);
    REQUIRE(run);
    if (run->status == "finished") return story;
    INFO("kills so far:\n" << describe(story.kills));
    REQUIRE(run->status == "running");
    if (story.interrupted_resumes < max_resume_kills) {
      auto proc = sb.start({"resume", run_id});
      int delay = uniform(rng, resume_kill_lo, resume_kill_hi);
      sleep_ms(delay);
      auto r = kill9(*proc);
      if (r.exit_code == 0) {
        ++story.resumes;
        continue;
      }
      INFO("resume " << brief(r));
      REQUIRE(r.exit_code == 128 + SIGKILL);
      ++story.interrupted_resumes;
      kill_record k{"resume", delay, r.exit_code, in_progress(sb.db(), run_id)};
      story.in_flight.insert(k.in_flight.begin(), k.in_flight.end());
      story.kills.push_back(k);
      continue;
    }
    auto r = sb.cli({"resume", run_id});
    INFO("resume " << brief(r));
    REQUIRE(r.exit_code == 0);
    ++story.resumes;
  }
}

/// The outputs of an uninterrupted run of `make(side file)`, which must run
/// exactly `nodes`, each once (one line each in the side file).
json uninterrupted_outputs(json (*make)(const std::string&), const std::vector<std::string>& nodes) {
  sandbox ref;
  auto side = ref.file("side.txt");
  auto r = ref.cli({"run", ref.write("wf.json", make(side)), "--run-id", "ref"});
  INFO(brief(r));
  REQUIRE(r.exit_code == 0);
  json reference = ref.inspect("ref")["outputs"];
  REQUIRE(reference.size() == nodes.size());
  auto lines = line_counts(side);
  REQUIRE(lines.size() == nodes.size());
  for (const auto& [id, n] : lines)
    REQUIRE(n == 1);
  return reference;
}

/// What a crash test asks of its trials: the workflow, the nodes it must
/// run, the kill windows (ms), and checks of its own for each trial
/// (`extra` appends problems).
struct crash_trials {
  const char* name;
  json (*make)(const std::string& side);
  std::vector<std::string> nodes;
  int trials;
  int kill_lo, kill_hi;               // the first `run`
  int resume_kill_lo, resume_kill_hi; // odd trials also kill their first resume
  std::function<void(const sandbox&, const std::string& run_id, const crash_story&,
                     std::vector<std::string>& problems)>
      extra;
};

/// Runs the trials: each kills and resumes a run of the workflow until it
/// finishes, then checks it ended as an uninterrupted run did
/// (check_resumed_run) and passes `extra`. Most trials must really have
/// been interrupted, or the test proves little.
void run_crash_trials(const crash_trials& c) {
  const auto seed = test_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed << " (SMITHERS_CRASH_SEED=" << seed << " replays it)");
  json reference = uninterrupted_outputs(c.make, c.nodes);
  int interrupted = 0;
  for (int trial = 0; trial < c.trials; ++trial) {
    sandbox sb;
    INFO("trial " << trial << " of seed " << seed << ", db " << sb.db());
    auto side = sb.file("side.txt");
    auto wf_path = sb.write("wf.json", c.make(side));
    std::string run_id = std::string{c.name} + "-" + std::to_string(trial);
    auto story = crash_and_resume(sb, wf_path, run_id, rng, c.kill_lo, c.kill_hi, trial % 2,
                                  c.resume_kill_lo, c.resume_kill_hi);
    if (!story.finished_before_first_kill) ++interrupted;
    auto problems = check_resumed_run(sb, run_id, c.nodes, story.in_flight, side, &reference);
    if (c.extra) c.extra(sb, run_id, story, problems);
    if (verbose())
      std::cerr << "[crash] " << c.name << " trial " << trial << " seed " << seed
                << (story.finished_before_first_kill ? " (finished before the kill)" : "") << ": "
                << story.kills.size() << " kills, " << story.in_flight.size()
                << " attempts in flight at kills\n"
                << describe(story.kills);
    std::string kept = problems.empty() ? "" : keep_evidence(sb, c.name);
    INFO("kills:\n"
         << describe(story.kills) << "problems:\n"
         << join_lines(problems) << "evidence kept in " << kept);
    CHECK(problems.empty());
  }
  INFO("seed " << seed);
  CHECK(interrupted >= c.trials - 2);
}

} // namespace

TEST_CASE("a 200-task workflow killed with SIGKILL at random moments resumes to exactly one "
          "output per node",
          "[crash]") {
  auto nodes = big_workflow_nodes();
  REQUIRE(nodes.size() >= 200);
  run_crash_trials(
      {"big", big_workflow, std::move(nodes), 5, 50, 600, 50, 400,
       [](const sandbox& sb, const std::string& run_id, const crash_story& story,
          std::vector<std::string>& problems) {
         // A resume killed before its claim writes nothing; one killed after
         // may have written its RunResumed: between the completed and all.
         std::size_t resumed = count_events(db_events(sb.db(), run_id), "RunResumed");
         if (resumed < static_cast<std::size_t>(story.resumes) ||
             resumed > static_cast<std::size_t>(story.resumes + story.interrupted_resumes))
           problems.push_back(std::to_string(resumed) + " RunResumed events for " +
                              std::to_string(story.resumes) + " completed and " +
                              std::to_string(story.interrupted_resumes) + " killed resumes");
       }});
}

TEST_CASE("a kill during a retry backoff neither skips nor restarts the backoff", "[crash]") {
  // The first attempt fails (exit 3) and leaves a marker; the second finds it
  // and succeeds. The backoff is 3000 ms without jitter.
  auto flaky_workflow = [](const sandbox& sb) {
    auto marker = sb.file("marker");
    auto side = sb.file("side.txt");
    std::string script = "echo x >> '" + side + "'; if [ -e '" + marker +
                         "' ]; then echo '{\"ok\": true}'; else touch '" + marker +
                         "'; echo first attempt fails >&2; exit 3; fi";
    return json{
        {"name", "crash-backoff"},
        {"root",
         {{"sequence",
           json::array({{{"task", "flaky"},
                         {"run", json::array({"sh", "-c", script})},
                         {"retries", 1},
                         {"retry", {{"initial_ms", 3000}, {"backoff", 1.0}, {"jitter", 0}}}},
                        {{"task", "after"}, {"value", {{"done", true}}}}})}}}};
  };
  const std::int64_t backoff = 3000;

  // Waits for attempt 1 of flaky to be recorded failed; returns it.
  auto failed_attempt = [](const sandbox& sb, const std::string& run_id) {
    std::optional<store::attempt_row> a1;
    REQUIRE(eventually(
        [&] {
          a1 = find_attempt(db_attempts(sb.db(), run_id), "flaky", 1);
          return a1 && a1->state == "failed";
        },
        std::chrono::seconds(30)));
    return *a1;
  };

  SECTION("resumed at once, the second attempt starts at the recorded retry time") {
    sandbox sb;
    INFO("db " << sb.db());
    auto wf = sb.write("wf.json", flaky_workflow(sb));
    auto proc = sb.start({"run", wf, "--run-id", "backoff"});
    auto a1 = failed_attempt(sb, "backoff");
    REQUIRE(a1.finished_ms);
    REQUIRE(a1.meta.contains("retry_at_ms"));
    const std::int64_t retry_at = a1.meta["retry_at_ms"].get<std::int64_t>();
    INFO("attempt 1 finished at " << *a1.finished_ms << ", retry_at_ms " << retry_at);
    CHECK(retry_at == *a1.finished_ms + backoff);

    // Kill half-way through the backoff, resume at once.
    sleep_ms(*a1.finished_ms + backoff / 2 - wall_ms());
    const std::int64_t kill_ms = wall_ms();
    auto killed = kill9(*proc);
    INFO("run " << killed);
    REQUIRE(killed.exit_code == 128 + SIGKILL);
    CHECK(in_progress(sb.db(), "backoff").empty());
    const std::int64_t resume_ms = wall_ms();
    REQUIRE(resume_ms < retry_at); // else the test proves nothing
    auto r = sb.cli({"resume", "backoff"});
    INFO("resume " << r);
    REQUIRE(r.exit_code == 0);

    auto attempts = db_attempts(sb.db(), "backoff");
    auto a2 = find_attempt(attempts, "flaky", 2);
    REQUIRE(a2);
    INFO("kill at " << kill_ms << ", resume at " << resume_ms << ", attempt 2 started at "
                    << a2->started_ms << " (" << a2->started_ms - retry_at
                    << " ms after retry_at_ms)");
    CHECK(find_attempt(attempts, "flaky", 1)->state == "failed"); // not rewritten
    CHECK(a2->state == "finished");
    // Not skipped: no earlier than the recorded time.
    CHECK(a2->started_ms >= retry_at);
    // Not restarted from the resume (that would be >= resume_ms + 3000, at
    // least 1500 ms late): it starts close to the recorded time.
    CHECK(a2->started_ms - retry_at < 1000);
    CHECK(a2->started_ms < resume_ms + backoff);
    CHECK(sb.inspect("backoff")["run"]["status"] == "finished");
    CHECK(line_counts(sb.file("side.txt"))["x"] == 2);
    auto events = db_events(sb.db(), "backoff");
    CHECK(count_events(events, "RunResumed") == 1);
  }

  SECTION("resumed after the retry time passed, the second attempt starts at once") {
    sandbox sb;
    INFO("db " << sb.db());
    auto wf = sb.write("wf.json", flaky_workflow(sb));
    auto proc = sb.start({"run", wf, "--run-id", "late"});
    auto a1 = failed_attempt(sb, "late");
    const std::int64_t retry_at = a1.meta.value("retry_at_ms", std::int64_t{0});
    REQUIRE(retry_at > 0);
    sleep_ms(300);
    auto killed = kill9(*proc);
    INFO("run " << killed);
    REQUIRE(killed.exit_code == 128 + SIGKILL);
    sleep_ms(retry_at + 200 - wall_ms()); // the backoff is over while no one drives the run
    const std::int64_t resume_ms = wall_ms();
    auto r = sb.cli({"resume", "late"});
    INFO("resume " << r);
    REQUIRE(r.exit_code == 0);
    auto a2 = find_attempt(db_attempts(sb.db(), "late"), "flaky", 2);
    REQUIRE(a2);
    INFO("resume at " << resume_ms << ", attempt 2 started at " << a2->started_ms);
    CHECK(a2->started_ms >= retry_at);
    CHECK(a2->started_ms - resume_ms < 1500); // not a fresh 3000 ms wait
    CHECK(sb.inspect("late")["run"]["status"] == "finished");
  }
}

TEST_CASE("a kill during a commit burst loses nothing", "[crash]") {
  const auto seed = test_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed << " (SMITHERS_CRASH_SEED=" << seed << " replays it)");
  const int n = 2000;
  std::vector<std::string> nodes;
  json reference = json::object();
  for (int i = 0; i < n; ++i) {
    nodes.push_back("v" + std::to_string(i));
    reference["v" + std::to_string(i)] = {{"i", i}};
  }
  const int trials = 3;
  int interrupted = 0;
  for (int trial = 0; trial < trials; ++trial) {
    sandbox sb;
    INFO("trial " << trial << " of seed " << seed << ", db " << sb.db());
    auto wf = sb.write("wf.json", burst_workflow(n));
    std::string run_id = "burst-" + std::to_string(trial);
    auto story = crash_and_resume(sb, wf, run_id, rng, 20, 200, 0, 0, 0);
    if (!story.finished_before_first_kill) ++interrupted;
    auto problems = check_resumed_run(sb, run_id, nodes, story.in_flight, "", &reference);
    if (verbose())
      std::cerr << "[crash] burst trial " << trial << " seed " << seed
                << (story.finished_before_first_kill ? " (finished before the kill)" : "") << ": "
                << story.in_flight.size() << " attempts in flight at the kill, "
                << db_attempts(sb.db(), run_id).size() << " attempt rows\n"
                << describe(story.kills);
    std::string kept = problems.empty() ? "" : keep_evidence(sb, "burst");
    INFO("kills:\n"
         << describe(story.kills) << "problems:\n"
         << join_lines(problems) << "evidence kept in " << kept);
    CHECK(problems.empty());
  }
  if (verbose())
    std::cerr << "[crash] burst: " << interrupted << " of " << trials << " trials interrupted\n";
}

TEST_CASE("two resumers at once: exactly one wins", "[crash]") {
  const auto seed = test_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed << " (SMITHERS_CRASH_SEED=" << seed << " replays it)");
  const auto nodes = big_workflow_nodes();
  const int trials = 3;
  for (int trial = 0; trial < trials; ++trial) {
    sandbox sb;
    INFO("trial " << trial << " of seed " << seed << ", db " << sb.db());
    auto side = sb.file("side.txt");
    auto wf = sb.write("wf.json", big_workflow(side));
    std::string run_id = "race-" + std::to_string(trial);

    // Kill mid-way (again if the run had not started or had already ended).
    std::set<attempt_key> in_flight;
    for (int tries = 0;; ++tries) {
      REQUIRE(tries < 5);
      if (tries > 0) {
        std::error_code ec;
        for (const char* f : {"smithers.db", "smithers.db-wal", "smithers.db-shm",
                              "smithers.db-journal", "side.txt"})
          std::filesystem::remove(sb.file(f), ec);
      }
      auto proc = sb.start({"run", wf, "--run-id", run_id});
      // Timed from the run's first commit, whenever a loaded machine (or a
      // sanitizer build) gets there: from the start, 5 tries missed it.
      eventually([&] { return db_run(sb.db(), run_id).has_value(); }, std::chrono::seconds(20));
      sleep_ms(uniform(rng, 120, 420));
      auto r = kill9(*proc);
      auto run = db_run(sb.db(), run_id);
      if (r.exit_code == 128 + SIGKILL && run && run->status == "running") {
        in_flight = in_progress(sb.db(), run_id);
        break;
      }
    }
    const auto events_before = db_events(sb.db(), run_id).size();

    auto a = sb.start({"resume", run_id});
    auto b = sb.start({"resume", run_id});
    auto [ra, rb] = wait_both(*a, *b);
    INFO("first resumer " << brief(ra) << "\nsecond resumer " << brief(rb));
    CHECK_FALSE(ra.timed_out);
    CHECK_FALSE(rb.timed_out);
    const command_result& winner = ra.exit_code == 0 ? ra : rb;
    const command_result& loser = ra.exit_code == 0 ? rb : ra;
    CHECK(((ra.exit_code == 0) != (rb.exit_code == 0))); // exactly one wins
    CHECK(winner.exit_code == 0);
    CHECK(loser.exit_code == 4);
    const std::string said = loser.err + loser.out;
    // The refusal's own code, not wrapped in another (e.g. DB_ERROR).
    CHECK((contains(said, "error: RUN_RESUME_CLAIM_FAILED: ") ||
           contains(said, "error: RUN_OWNER_ALIVE: ") ||
           contains(said, "error: RUN_NOT_RESUMABLE: ")));
    if (verbose())
      std::cerr << "[crash] race trial " << trial << ": exits " << ra.exit_code << "/"
                << rb.exit_code << ", loser said: " << said.substr(0, 200) << "\n";

    auto events = sb.events(run_id);
    int resumed = 0;
    for (const auto& e : events)
      if (e["type"] == "RunResumed") ++resumed;
    CHECK(resumed == 1);
    CHECK(events.size() > events_before);
    auto problems = check_resumed_run(sb, run_id, nodes, in_flight, side, nullptr);
    std::string kept = problems.empty() ? "" : keep_evidence(sb, "race");
    INFO("in flight at the kill: " << describe(in_flight) << "\nproblems:\n"
                                   << join_lines(problems) << "evidence kept in " << kept);
    CHECK(problems.empty());
  }
}

TEST_CASE("resume refuses what it must", "[crash]") {
  // Each refusal exits 4, names its code and writes nothing.
  // owner_alive: the owner still beats the run's heartbeat, so only what a
  // resume would change (owner, status, events) is compared.
  auto check_refusal = [](const sandbox& sb, const std::vector<std::string>& args,
                          const std::string& run_id, const std::string& code,
                          bool owner_alive = false) {
    auto before = db_events(sb.db(), run_id);
    auto run_before = db_run(sb.db(), run_id);
    auto r = sb.cli(args);
    INFO(r);
    CHECK_FALSE(r.timed_out);
    CHECK(r.exit_code == 4);
    CHECK(contains(r.err, "error: " + code + ": "));
    auto after = db_events(sb.db(), run_id);
    CHECK(after.size() == before.size());
    auto run_after = db_run(sb.db(), run_id);
    REQUIRE(run_before.has_value() == run_after.has_value());
    if (run_before) {
      CHECK(run_after->status == run_before->status);
      CHECK(run_after->owner_id == run_before->owner_id);
      CHECK(run_after->owner_pid == run_before->owner_pid);
      if (!owner_alive) {
        CHECK(run_after->heartbeat_ms == run_before->heartbeat_ms);
        CHECK(run_after->updated_ms == run_before->updated_ms);
      }
    }
    // The same refusal in JSON.
    auto rj = sb.cli_json(args);
    INFO(rj);
    CHECK(rj.exit_code == 4);
    CHECK(rj.out_json()["error"]["code"] == code);
    CHECK(db_events(sb.db(), run_id).size() == before.size());
  };

  SECTION("RUN_NOT_FOUND for an unknown run id") {
    sandbox sb;
    seed_run(sb);
    check_refusal(sb, {"resume", "no-such-run"}, "seed", "RUN_NOT_FOUND");
  }

  SECTION("RUN_NOT_FOUND when there is no database at all, and none is created") {
    sandbox sb;
    auto r = sb.cli({"resume", "no-such-run"});
    INFO(r);
    CHECK(r.exit_code == 4);
    CHECK(contains(r.err, "error: RUN_NOT_FOUND: "));
    CHECK_FALSE(any_db_file(sb));
  }

  SECTION("RUN_NOT_RESUMABLE for a finished run (a failed one is retried: wait_test.cpp)") {
    sandbox sb;
    seed_run(sb);
    check_refusal(sb, {"resume", "seed"}, "seed", "RUN_NOT_RESUMABLE");
  }

  SECTION("RUN_OWNER_ALIVE while the owner is alive") {
    sandbox sb;
    auto pidfile = sb.file("task.pid");
    json wf = {{"name", "long"},
               {"root", {{"task", "long"}, {"run", "echo $$ > '" + pidfile + "'; exec sleep 30"}}}};
    auto owner = sb.start({"run", sb.write("wf.json", wf), "--run-id", "alive"});
    REQUIRE(eventually([&] { return pid_from_file(pidfile) > 0; }, std::chrono::seconds(30)));
    pid_t task = pid_from_file(pidfile);
    REQUIRE(eventually([&] { return !in_progress(sb.db(), "alive").empty(); },
                       std::chrono::seconds(10)));
    check_refusal(sb, {"resume", "alive"}, "alive", "RUN_OWNER_ALIVE", true);
    CHECK(process_alive(owner->pid())); // the refusal left the owner alone
    kill9(*owner);
    if (task > 0 && process_alive(task)) ::kill(task, SIGKILL);
  }

  SECTION("RESUME_METADATA_MISMATCH when the workflow changed after the kill; --force goes on") {
    sandbox sb;
    auto side = sb.file("side.txt");
    auto marker = sb.file("a.started");
    json wf = {{"name", "changes"},
               {"root",
                {{"sequence", json::array({{{"task", "a"},
                                            {"run", "touch '" + marker + "'; echo a >> '" + side +
                                                        "'; sleep 1; echo '{}'"}},
                                           {{"task", "b"}, {"value", {{"b", 1}}}}})}}}};
    auto path = sb.write("wf.json", wf);
    auto proc = sb.start({"run", path, "--run-id", "changed"});
    REQUIRE(eventually([&] { return file_exists(marker); }, std::chrono::seconds(30)));
    REQUIRE(eventually([&] { return !in_progress(sb.db(), "changed").empty(); },
                       std::chrono::seconds(10)));
    auto killed = kill9(*proc);
    REQUIRE(killed.exit_code == 128 + SIGKILL);

    wf["root"]["sequence"][1]["value"]["b"] = 2; // the file changes
    sb.write("wf.json", wf);
    check_refusal(sb, {"resume", "changed"}, "changed", "RESUME_METADATA_MISMATCH");
    // Another file with other content, named explicitly: refused the same.
    auto other = sb.write("other.json", wf);
    check_refusal(sb, {"resume", "changed", "--workflow", other}, "changed",
                  "RESUME_METADATA_MISMATCH");
    CHECK(in_progress(sb.db(), "changed").size() == 1); // the refusals cancelled nothing

    auto r = sb.cli({"resume", "changed", "--force"});
    INFO(r);
    CHECK(r.exit_code == 0);
    auto j = sb.inspect("changed");
    CHECK(j["run"]["status"] == "finished");
    CHECK(j["outputs"]["b"] == json{{"b", 2}});
    CHECK(attempts_of(j, "a").size() == 2);
    auto events = db_events(sb.db(), "changed");
    REQUIRE(count_events(events, "RunResumed") == 1);
    for (const auto& e : events)
      if (e.type == "RunResumed") CHECK(e.payload["forced"] == true);
  }
}

TEST_CASE("SIGTERM leaves a run resumable and resume finishes it", "[crash]") {
  sandbox sb;
  INFO("db " << sb.db());
  auto side = sb.file("side.txt");
  auto task = [&](const std::string& id, const std::string& sleep_s) {
    return json{{"task", id},
                {"run", "echo " + id + " >> '" + side + "'; sleep " + sleep_s + "; echo '{\"" + id +
                            "\": true}'"}};
  };
  json wf = {
      {"name", "sigterm"},
      {"root",
       {{"sequence", json::array({task("a", "0"),
                                  {{"parallel", json::array({task("slow", "2"), task("p1", "0"),
                                                             task("p2", "0")})}},
                                  task("z", "0")})}}}};
  auto proc = sb.start({"run", sb.write("wf.json", wf), "--run-id", "term"});
  // Wait until `slow` runs and its siblings have finished.
  REQUIRE(eventually(
      [&] {
        auto lines = line_counts(side);
        auto attempts = db_attempts(sb.db(), "term");
        auto slow = find_attempt(attempts, "slow", 1);
        auto p1 = find_attempt(attempts, "p1", 1), p2 = find_attempt(attempts, "p2", 1);
        return lines["slow"] == 1 && slow && slow->state == "in-progress" && p1 &&
               p1->state == "finished" && p2 && p2->state == "finished";
      },
      std::chrono::seconds(30)));
  proc->signal(SIGTERM);
  auto r = proc->wait();
  INFO("run " << r);
  CHECK_FALSE(r.timed_out);
  REQUIRE(r.exit_code == 143);

  auto j = sb.inspect("term");
  CHECK(j["run"]["status"] == "running");
  auto slow1 = find_attempt(db_attempts(sb.db(), "term"), "slow", 1);
  REQUIRE(slow1);
  CHECK(slow1->state == "cancelled");
  CHECK(node_of(j, "slow")["state"] != "finished");
  CHECK(node_of(j, "z")["state"] == "pending");
  CHECK(in_progress(sb.db(), "term").empty());

  auto res = sb.cli({"resume", "term"});
  INFO("resume " << res);
  REQUIRE(res.exit_code == 0);
  j = sb.inspect("term");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["outputs"].size() == 5);
  auto lines = line_counts(side);
  CHECK(lines["a"] == 1);
  CHECK(lines["slow"] == 2);
  CHECK(lines["p1"] == 1);
  CHECK(lines["p2"] == 1);
  CHECK(lines["z"] == 1);
  CHECK(attempts_of(j, "slow").size() == 2);
  auto events = db_events(sb.db(), "term");
  REQUIRE(count_events(events, "RunResumed") == 1);
  for (const auto& e : events)
    if (e.type == "RunResumed")
      CHECK(e.payload["orphaned_attempts"] == 0); // the interrupt recorded its attempt
}

TEST_CASE("a database a kill left without its schema does not block run, resume or ps", "[crash]") {
  // `run` creates the database file, then migrates it in one transaction. A
  // kill -9 between the two leaves a WAL database with user_version 0 (seen
  // in about 1 of 30 kills 10-100 ms after the start of a run on a fresh
  // database). That file is made here directly, the same way.
  auto leave_unmigrated_db = [](const sandbox& sb) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(sb.db().c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    REQUIRE(sb.db_exists());
  };

  // A kill inside the first transaction on a new file (the switch to WAL)
  // leaves the file in rollback mode with a hot journal (seen in about 1 of
  // 25 kills 20-200 ms after the start of a run on a fresh database). Made
  // here by a child that dies with SIGKILL in the middle of a transaction
  // big enough to spill to the file.
  auto leave_hot_journal = [](const sandbox& sb) {
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      sqlite3* db = nullptr;
      if (sqlite3_open(sb.db().c_str(), &db) != SQLITE_OK) ::_exit(1);
      sqlite3_exec(db, "PRAGMA cache_size=2; BEGIN; CREATE TABLE t(x);", nullptr, nullptr, nullptr);
      for (int i = 0; i < 200; ++i)
        sqlite3_exec(db, "INSERT INTO t VALUES (randomblob(4000))", nullptr, nullptr, nullptr);
      ::raise(SIGKILL);
      ::_exit(2);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(file_exists(sb.db() + "-journal"));
  };

  SECTION("with a hot journal, resume says RUN_NOT_FOUND and run --run-id creates the run") {
    sandbox sb;
    leave_hot_journal(sb);
    auto r = sb.cli({"resume", "after-crash"});
    INFO(r);
    CHECK(r.exit_code == 4);
    CHECK(contains(r.err, "error: RUN_NOT_FOUND: "));
    auto ps = sb.cli_json({"ps"});
    INFO(ps);
    CHECK(ps.exit_code == 0);
    auto run = sb.cli({"run", sb.write("wf.json", good_workflow()), "--run-id", "after-crash"});
    INFO(run);
    CHECK(run.exit_code == 0);
  }

  SECTION("run --run-id creates the run") {
    sandbox sb;
    leave_unmigrated_db(sb);
    auto r = sb.cli({"run", sb.write("wf.json", good_workflow()), "--run-id", "after-crash"});
    INFO(r);
    CHECK(r.exit_code == 0);
  }
  SECTION("resume says RUN_NOT_FOUND") {
    sandbox sb;
    leave_unmigrated_db(sb);
    auto r = sb.cli({"resume", "after-crash"});
    INFO(r);
    CHECK(r.exit_code == 4);
    CHECK(contains(r.err, "error: RUN_NOT_FOUND: "));
  }
  SECTION("ps lists no runs") {
    sandbox sb;
    leave_unmigrated_db(sb);
    auto r = sb.cli_json({"ps"});
    INFO(r);
    CHECK(r.exit_code == 0);
    CHECK(r.out_json() == json::array());
  }
}

TEST_CASE("the task processes of an owner killed with SIGKILL do not outlive its resume",
          "[crash]") {
  // No child process outlives its attempt (docs/operations.md). The resume records the
  // dead owner's attempt cancelled and runs the node again, so the process
  // of that attempt must be gone by then, or two executions of one node
  // overlap (and the old one may still write its side effects).
  sandbox sb;
  INFO("db " << sb.db());
  auto pidfile = sb.file("task.pid");
  auto marker = sb.file("marker");
  auto side = sb.file("side.txt");
  std::string script = "echo run >> '" + side + "'; if [ -e '" + marker +
                       "' ]; then echo '{\"second\": true}'; else touch '" + marker +
                       "'; echo $$ > '" + pidfile + "'; exec sleep 30; fi";
  json wf = {{"name", "orphan"}, {"root", {{"task", "long"}, {"run", script}}}};
  auto proc = sb.start({"run", sb.write("wf.json", wf), "--run-id", "orphan"});
  REQUIRE(eventually([&] { return pid_from_file(pidfile) > 0; }, std::chrono::seconds(30)));
  pid_t task = pid_from_file(pidfile);
  REQUIRE(eventually([&] { return !in_progress(sb.db(), "orphan").empty(); },
                     std::chrono::seconds(10)));
  auto killed = kill9(*proc);
  REQUIRE(killed.exit_code == 128 + SIGKILL);

  auto r = sb.cli({"resume", "orphan"});
  INFO(r);
  CHECK(r.exit_code == 0);
  CHECK(find_attempt(db_attempts(sb.db(), "orphan"), "long", 1)->state == "cancelled");
  INFO("task pid " << task);
  CHECK(eventually([&] { return !process_alive(task); }, std::chrono::seconds(5)));
  if (process_alive(task)) ::kill(task, SIGKILL);
}

TEST_CASE("a task process never starts before its attempt is recorded", "[crash]") {
  // Write-ahead: the in-progress attempt row must be committed before the
  // task's process runs, or a crash at that moment loses the record of an
  // execution (its side effects happened; the store says the node never
  // started; resume runs it again under the same attempt number). Here each
  // task kills the owner (its parent) as the first thing it does after its
  // side effect: at that moment its attempt must be in the store.
  const int trials = 20;
  int unrecorded_trials = 0;
  std::string report;
  for (int trial = 0; trial < trials; ++trial) {
    sandbox sb;
    auto side = sb.file("side.txt");
    json kids = json::array();
    for (int i = 0; i < 64; ++i)
      kids.push_back(
          {{"task", "t" + std::to_string(i)},
           {"run", json::array({"sh", "-c",
                                "echo {{node_id}} >> '" + side + "'; kill -9 $PPID; echo '{}'"})}});
    json wf = {{"name", "write-ahead"},
               {"max_concurrency", 64},
               {"root",
                {{"sequence", json::array({{{"task", "first"}, {"value", {{"ok", true}}}},
                                           {{"parallel", kids}, {"max_concurrency", 64}}})}}}};
    auto r = sb.cli({"run", sb.write("wf.json", wf), "--run-id", "wa"});
    REQUIRE(r.exit_code == 128 + SIGKILL);
    sleep_ms(200); // the other task processes of the dead owner finish their echo
    auto attempts = db_attempts(sb.db(), "wa");
    std::set<std::string> recorded;
    for (const auto& a : attempts)
      recorded.insert(a.node_id);
    std::vector<std::string> unrecorded;
    for (const auto& [node, n] : line_counts(side))
      if (!recorded.count(node)) unrecorded.push_back(node);
    if (!unrecorded.empty()) {
      ++unrecorded_trials;
      report += "  trial " + std::to_string(trial) + ": " + std::to_string(unrecorded.size()) +
                " of " + std::to_string(line_counts(side).size()) +
                " task processes ran without an attempt row (" + std::to_string(attempts.size()) +
                " rows), e.g. " + unrecorded.front() + "\n";
    }
  }
  INFO("trials where a task ran before its attempt was recorded:\n" << report);
  CHECK(unrecorded_trials == 0);
}

TEST_CASE("a workflow of branches killed with SIGKILL at random moments resumes deciding each "
          "branch as the run did",
          "[crash]") {
  run_crash_trials({"branch", branch_workflow, branch_workflow_nodes(), 5, 30, 250, 30, 200,
                    [](const sandbox& sb, const std::string& run_id, const crash_story&,
                       std::vector<std::string>& problems) {
                      // Nothing of a chosen side was ever taken for unmounted.
                      for (const auto& e : db_events(sb.db(), run_id))
                        if (e.type == "NodeCancelled" &&
                            e.payload.value("reason", "") == "unmounted")
                          problems.push_back("NodeCancelled unmounted for " +
                                             e.payload.value("node_id", "?"));
                    }});
}

TEST_CASE("a workflow of loops killed with SIGKILL at random moments resumes each loop in its "
          "iteration, with one finished attempt per (node, iteration)",
          "[crash]") {
  run_crash_trials(
      {"loop", loop_workflow, loop_workflow_nodes(), 6, 30, 350, 30, 250,
       [](const sandbox& sb, const std::string& run_id, const crash_story&,
          std::vector<std::string>& problems) {
         // Every loop ended as in the uninterrupted run, each iteration
         // started once.
         auto loops = read_store<std::vector<store::loop_row>>(
             sb.db(), [&](const store::reader& rd) { return rd.loops(run_id); });
         std::map<std::string, std::string> got;
         for (const auto& l : loops)
           got[l.loop_id] = l.state + "@" + std::to_string(l.iteration);
         const std::map<std::string, std::string> want{
             {"l0", "finished@5"},      {"l1", "finished@5"},      {"l2", "finished@5"},
             {"outer", "finished@2"},   {"inner@0", "finished@1"}, {"inner@1", "finished@1"},
             {"inner@2", "finished@1"}};
         if (got != want) problems.push_back("loop states differ from an uninterrupted run's");
         std::map<std::string, int> started;
         for (const auto& e : db_events(sb.db(), run_id))
           if (e.type == "LoopIterationStarted")
             ++started[e.payload.value("loop_id", "?") + "#" +
                       std::to_string(e.payload.value("iteration", -1))];
         for (const auto& [k, n] : started)
           if (n != 1)
             problems.push_back("LoopIterationStarted " + k + " " + std::to_string(n) + " times");
         if (started.size() != 3 * 6 + 3 + 3 * 2)
           problems.push_back(std::to_string(started.size()) +
                              " loop iterations started, want 27");
       }});
}

namespace {

/// A loop of 12 iterations that continues as new every 3 (runs c, c~1, c~2,
/// c~3): each step appends its iteration to `side`.
json chain_crash_workflow(const std::string& side) {
  return {{"name", "crash-chain"},
          {"root",
           {{"sequence",
             json::array(
                 {side_effect_task("head", side, "0.02"),
                  {{"loop", "l"},
                   {"max_iterations", 12},
                   {"continue_as_new_every", 3},
                   {"body", loop_task("step", side, "0.03")}},
                  side_effect_task("tail", side, "0.02")})}}}};
}

/// The run of a chain that goes on: the first one not `continued`.
std::string chain_end(const sandbox& sb, const std::string& first) {
  std::string id = first;
  for (int n = 1; n < 100; ++n) {
    auto run = db_run(sb.db(), id);
    if (!run || run->status != "continued") return id;
    id = first + "~" + std::to_string(n);
  }
  return id;
}

} // namespace

TEST_CASE("a continue-as-new chain killed with SIGKILL at random moments goes on to its end, "
          "each iteration finished once",
          "[crash]") {
  const auto seed = test_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed << " (SMITHERS_CRASH_SEED=" << seed << " replays it)");
  const int trials = 4;
  int interrupted = 0;
  for (int trial = 0; trial < trials; ++trial) {
    sandbox sb;
    INFO("trial " << trial << ", db " << sb.db());
    auto side = sb.file("side.txt");
    auto wf = sb.write("wf.json", chain_crash_workflow(side));
    int kills = 0;
    auto proc = sb.start({"run", wf, "--run-id", "k"});
    sleep_ms(uniform(rng, 100, 500));
    if (kill9(*proc).exit_code == 0) {
      // Finished before the kill: nothing to check beyond the end.
    } else {
      ++kills;
      ++interrupted;
    }
    for (int round = 0; round < 12; ++round) {
      std::string last = chain_end(sb, "k");
      auto run = db_run(sb.db(), last);
      if (!run) break; // killed before the first row: start again below
      if (run->status == "finished") break;
      auto p = sb.start({"resume", last});
      if (round < 2) {
        sleep_ms(uniform(rng, 50, 300));
        if (kill9(*p).exit_code != 0) ++kills;
      } else {
        auto r = p->wait();
        INFO(brief(r));
        REQUIRE(r.exit_code == 0);
      }
    }
    if (!db_run(sb.db(), "k")) {
      REQUIRE(sb.cli({"run", wf, "--run-id", "k"}).exit_code == 0); // the kill came first
    }
    std::string last = chain_end(sb, "k");
    auto final_run = db_run(sb.db(), last);
    REQUIRE(final_run);
    INFO("kills " << kills << ", last run " << last);
    CHECK(final_run->status == "finished");
    CHECK(last == "k~3");
    // Every step ran; again only if it was in flight at a kill.
    auto lines = line_counts(side);
    CHECK(lines["head"] >= 1);
    CHECK(lines["tail"] >= 1);
    int reruns = lines["head"] - 1 + lines["tail"] - 1;
    for (int i = 0; i < 12; ++i) {
      std::string key = to_string(smithers::node_key{"step", i});
      CHECK(lines[key] >= 1);
      reruns += std::max(0, lines[key] - 1);
    }
    CHECK(reruns <= kills);
    // Exactly one attempt that ran and finished per (node, iteration) across
    // the chain: carried ones are marked cached.
    std::map<std::string, int> finished;
    for (const auto* id : {"k", "k~1", "k~2", "k~3"})
      for (const auto& a : db_attempts(sb.db(), id))
        if (a.state == "finished" && !a.cached) ++finished[key_of(a)];
    CHECK(finished.size() == 14);
    for (const auto& [key, n] : finished) {
      INFO(key);
      CHECK(n == 1);
    }
  }
  CHECK(interrupted >= trials - 2);
}
