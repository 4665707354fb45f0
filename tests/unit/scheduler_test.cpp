// Scheduler decisions, table-driven: a tree, limits and task outcomes in; the
// batches of tasks started (each batch = one take_runnable after completing
// the previous batch) and the run outcome out.
#include <catch2/catch.hpp>

#include "scheduler/scheduler.hpp"

#include <map>

using namespace smithers;
using namespace smithers::sched;

namespace {

node t(const std::string& id, std::vector<std::string> needs = {}) {
  auto n = value_task(id, json::object());
  n.needs(std::move(needs));
  return n;
}

node t_cof(const std::string& id) {
  auto n = value_task(id, json::object());
  n.continue_on_fail();
  return n;
}

struct run_trace {
  std::vector<std::vector<std::string>> batches;
  outcome result;
  std::vector<std::string> skipped;
};

// Starts everything runnable, completes it all (failing the ids in `fail`),
// and repeats until nothing starts.
run_trace drive(const node& root, std::int64_t run_max, std::set<std::string> fail = {}) {
  plan p = compile(root);
  scheduler s(p, run_max);
  run_trace tr;
  for (int guard = 0; guard < 1000; ++guard) {
    auto batch = s.take_runnable();
    for (auto sk : s.take_auto_skipped())
      tr.skipped.push_back(p.keys[sk].id);
    if (batch.empty()) break;
    std::vector<std::string> ids;
    for (auto i : batch)
      ids.push_back(p.keys[i].id);
    tr.batches.push_back(ids);
    for (auto i : batch)
      s.complete(i, fail.count(p.keys[i].id) ? node_state::failed : node_state::finished);
  }
  for (auto sk : s.take_auto_skipped())
    tr.skipped.push_back(p.keys[sk].id);
  tr.result = s.status();
  return tr;
}

using batches = std::vector<std::vector<std::string>>;

} // namespace

TEST_CASE("scheduler orders sequences, parallels, needs and limits") {
  struct row {
    const char* name;
    node root;
    std::int64_t run_max;
    std::set<std::string> fail;
    batches expected;
    outcome result;
  };
  std::vector<row> rows{
      {"empty sequence finishes at once", sequence({}), 0, {}, {}, outcome::finished},
      {"sequence runs one at a time",
       sequence({t("a"), t("b"), t("c")}),
       0,
       {},
       {{"a"}, {"b"}, {"c"}},
       outcome::finished},
      {"parallel runs together",
       parallel({t("a"), t("b"), t("c")}),
       0,
       {},
       {{"a", "b", "c"}},
       outcome::finished},
      {"group limit caps a parallel",
       parallel({t("a"), t("b"), t("c")}, 2),
       0,
       {},
       {{"a", "b"}, {"c"}},
       outcome::finished},
      {"run limit caps everything",
       parallel({t("a"), t("b"), t("c")}),
       1,
       {},
       {{"a"}, {"b"}, {"c"}},
       outcome::finished},
      {"needs wait inside a parallel",
       parallel({t("a", {"b"}), t("b"), t("c")}),
       0,
       {},
       {{"b", "c"}, {"a"}},
       outcome::finished},
      {"sequence of parallels",
       sequence({parallel({t("a"), t("b")}), parallel({t("c"), t("d")})}),
       0,
       {},
       {{"a", "b"}, {"c", "d"}},
       outcome::finished},
      {"parallel of sequences interleaves",
       parallel({sequence({t("a1"), t("a2")}), sequence({t("b1"), t("b2")})}),
       0,
       {},
       {{"a1", "b1"}, {"a2", "b2"}},
       outcome::finished},
      {"nested group limit inside a wider one",
       parallel({parallel({t("a"), t("b"), t("c")}, 1), t("d")}, 3),
       0,
       {},
       {{"a", "d"}, {"b"}, {"c"}},
       outcome::finished},
      {"failure stops new starts and fails the run",
       sequence({t("a"), t("b")}),
       0,
       {"a"},
       {{"a"}},
       outcome::failed},
      {"failure in a parallel lets in-flight siblings end",
       parallel({t("a"), t("b")}, 1),
       0,
       {"a"},
       {{"a"}},
       outcome::failed},
      {"continue_on_fail lets the sequence go on",
       sequence({t_cof("a"), t("b")}),
       0,
       {"a"},
       {{"a"}, {"b"}},
       outcome::finished},
  };
  for (auto& r : rows) {
    SECTION(r.name) {
      auto tr = drive(r.root, r.run_max, r.fail);
      CHECK(tr.batches == r.expected);
      CHECK(tr.result == r.result);
    }
  }
}

TEST_CASE("a need that fails with continue_on_fail skips its dependents transitively") {
  auto tr =
      drive(sequence({t_cof("a"), parallel({t("b", {"a"}), t("c", {"b"}), t("d")})}), 0, {"a"});
  CHECK(tr.batches == batches{{"a"}, {"d"}});
  CHECK(tr.skipped == std::vector<std::string>{"b", "c"});
  CHECK(tr.result == outcome::finished);
}

TEST_CASE("a need placed later in a sequence can never be met: the run is stuck") {
  plan p = compile(sequence({t("a", {"b"}), t("b")}));
  scheduler s(p, 0);
  CHECK(s.take_runnable().empty());
  CHECK(s.status() == outcome::stuck);
  auto blocked = s.blocked_tasks();
  REQUIRE(blocked.size() == 1);
  CHECK(p.keys[blocked[0]].id == "a");
}

TEST_CASE("initial states resume a run where it stood") {
  plan p = compile(sequence({t("a"), parallel({t("b"), t("c"), t("d")}), t("e")}));
  scheduler s(p, 0,
              {node_state::finished, node_state::finished, node_state::in_progress,
               node_state::pending, node_state::pending});
  CHECK(s.in_flight() == 1);
  auto first = s.take_runnable();
  REQUIRE(first.size() == 1);
  CHECK(p.keys[first[0]].id == "d");
  s.complete(first[0], node_state::finished);
  CHECK(s.take_runnable().empty()); // c still in flight
  s.complete(p.find_id("c"), node_state::finished);
  auto last = s.take_runnable();
  REQUIRE(last.size() == 1);
  CHECK(p.keys[last[0]].id == "e");
  s.complete(last[0], node_state::finished);
  CHECK(s.status() == outcome::finished);
  CHECK(s.count(node_state::finished) == 5);
}

TEST_CASE("a deferred task holds no slot and runs again after release") {
  plan p = compile(parallel({t("a"), t("b")}, 1));
  scheduler s(p, 0);
  auto first = s.take_runnable();
  REQUIRE(first.size() == 1);
  CHECK(p.keys[first[0]].id == "a");
  s.defer(first[0]);
  CHECK(s.status() == outcome::running);
  auto second = s.take_runnable();
  REQUIRE(second.size() == 1);
  CHECK(p.keys[second[0]].id == "b");
  s.complete(second[0], node_state::finished);
  CHECK(s.take_runnable().empty()); // a waits for its retry
  s.release(first[0]);
  auto third = s.take_runnable();
  REQUIRE(third.size() == 1);
  CHECK(p.keys[third[0]].id == "a");
  s.complete(third[0], node_state::finished);
  CHECK(s.status() == outcome::finished);
}

TEST_CASE("skip marks a pending task done without running it") {
  plan p = compile(sequence({t("a"), t("b", {"a"}), t("c")}));
  scheduler s(p, 0);
  s.skip(p.find_id("a"));
  auto skipped = s.take_auto_skipped();
  REQUIRE(skipped.size() == 1);
  CHECK(p.keys[skipped[0]].id == "b");
  auto next = s.take_runnable();
  REQUIRE(next.size() == 1);
  CHECK(p.keys[next[0]].id == "c");
}

TEST_CASE("a wide fan-out starts exactly the group limit each time") {
  std::vector<node> kids;
  for (int i = 0; i < 10000; ++i)
    kids.push_back(t("t" + std::to_string(i)));
  plan p = compile(parallel(std::move(kids), 16));
  scheduler s(p, 0);
  std::size_t done = 0;
  std::vector<sched::index> flying = s.take_runnable();
  CHECK(flying.size() == 16);
  while (!flying.empty()) {
    s.complete(flying.back(), node_state::finished);
    flying.pop_back();
    ++done;
    auto more = s.take_runnable();
    CHECK(more.size() <= 1);
    flying.insert(flying.end(), more.begin(), more.end());
    REQUIRE(s.in_flight() <= 16);
  }
  CHECK(done == 10000);
  CHECK(s.status() == outcome::finished);
}

TEST_CASE("an undecided branch is never done: what follows it waits, and alone it is stuck") {
  node waiting;
  waiting.kind = node_kind::branch; // as render leaves an undecided branch: no children
  waiting.id = "gate";
  node root = sequence({value_task("a", json::object()), waiting, value_task("b", json::object())});
  auto p = compile(root);
  scheduler s(p, 0);
  auto first = s.take_runnable();
  REQUIRE(first.size() == 1);
  CHECK(p.keys[first[0]].id == "a");
  s.complete(first[0], node_state::finished);
  CHECK(s.take_runnable().empty()); // b waits behind the branch
  CHECK(s.status() == outcome::stuck);

  // In a parallel group the siblings run; the group is not done.
  node par = parallel({waiting, value_task("c", json::object())});
  auto pp = compile(par);
  scheduler sp(pp, 0);
  auto run = sp.take_runnable();
  REQUIRE(run.size() == 1);
  sp.complete(run[0], node_state::finished);
  CHECK(sp.status() == outcome::stuck);
}

TEST_CASE("a loop whose body is done waits for the run core; once ended, it is done") {
  // What render gives: the loop at its iteration, with the body inside.
  auto rendered = [](bool done) {
    node l = loop("l", sequence({t("a"), t("b", {"a"})}), nullptr);
    l.done = done;
    return sequence({l, t("after")});
  };
  for (bool done : {false, true}) {
    CAPTURE(done);
    node root = rendered(done);
    plan p = compile(root);
    REQUIRE(p.loops.size() == 1);
    CHECK(p.in_loop == std::vector<char>{1, 1, 0});
    scheduler s(p, 0);
    auto first = s.take_runnable();
    REQUIRE(first.size() == 1);
    s.complete(first[0], node_state::finished);
    auto second = s.take_runnable();
    REQUIRE(second.size() == 1);
    s.complete(second[0], node_state::finished);
    if (!done) {
      // The iteration is over, the loop is not: nothing after it starts,
      // and the run is not stuck while the core decides.
      CHECK(s.take_loops_ready() == std::vector<sched::index>{0});
      CHECK(s.take_runnable().empty());
      CHECK(s.status() == outcome::stuck); // once taken, nothing more can happen here
    } else {
      CHECK(s.take_loops_ready().empty());
      auto after = s.take_runnable();
      REQUIRE(after.size() == 1);
      CHECK(p.keys[static_cast<std::size_t>(after[0])].id == "after");
    }
  }
  // A body found done when the scheduler is made (a resume between the
  // body's last commit and the loop's) is reported at once.
  node root = rendered(false);
  plan p = compile(root);
  scheduler s(p, 0, {node_state::finished, node_state::finished, node_state::pending});
  CHECK(s.status() == outcome::running);
  CHECK(s.take_loops_ready() == std::vector<sched::index>{0});
}
