// core::recover: a stored run's rows -> the state its resume starts
// from. Table-driven: each case lists node and attempt rows and what the
// recovered state must hold.
#include <catch2/catch.hpp>

#include "core/recovery.hpp"
#include "core/recovery.hpp"
#include "core/run_validation.hpp"

#include <smithers/errors.hpp>

#include <map>
#include <optional>
#include <set>

using namespace smithers;

namespace {

store::node_row node_row(const std::string& id, const std::string& state) {
  store::node_row n;
  n.run_id = "r";
  n.node_id = id;
  n.state = state;
  return n;
}

store::attempt_row attempt(const std::string& id, std::int64_t k, const std::string& state,
                           json meta = json::object(), json heartbeat = nullptr) {
  store::attempt_row a;
  a.run_id = "r";
  a.node_id = id;
  a.attempt = k;
  a.state = state;
  a.meta = std::move(meta);
  a.heartbeat = std::move(heartbeat);
  return a;
}

store::output_row output(const std::string& id, json value) {
  return store::output_row{"r", id, 0, std::move(value)};
}

struct recovery_case {
  const char* name;
  std::vector<store::node_row> nodes;
  std::vector<store::attempt_row> attempts;
  std::vector<store::output_row> outputs;
  std::map<std::string, node_state> states;
  std::map<std::string, std::int64_t> attempt_counts;
  std::vector<std::pair<std::string, std::int64_t>> orphaned;
  std::size_t orphan_groups = 0;
  std::map<std::string, std::int64_t> retry_at_ms;
  std::map<std::string, json> checkpoints;
  std::map<std::string, json> outputs_after;
};

template <class K, class V> std::map<K, V> sorted(const std::unordered_map<K, V>& m) {
  return {m.begin(), m.end()};
}

// By node id: every row here is of iteration 0.
template <class V> std::map<std::string, V> sorted(const core::key_map<V>& m) {
  std::map<std::string, V> out;
  for (const auto& [k, v] : m) {
    CHECK(k.iteration == 0);
    out.emplace(k.id, v);
  }
  return out;
}

// What recover_run returned before the run core keyed nodes by (id, iteration).
struct recovered {
  core::resume_state st;
  std::vector<json> orphan_groups;
  std::vector<std::pair<std::string, std::int64_t>> orphaned;
};

recovered recover_run(const std::vector<store::node_row>& nodes,
                      const std::vector<store::attempt_row>& attempts,
                      std::vector<store::output_row> outputs) {
  auto rec = core::recover(nodes, attempts, outputs);
  recovered r{std::move(rec.state), std::move(rec.orphan_groups), {}};
  for (const auto& a : r.st.orphaned)
    r.orphaned.emplace_back(a.node.id, a.attempt);
  return r;
}

} // namespace

TEST_CASE("recover_run turns a run's rows into the state its resume starts from") {
  const std::vector<recovery_case> cases = {
      {"nothing stored", {}, {}, {}, {}, {}, {}, 0, {}, {}, {}},
      {"finished nodes keep their state and output",
       {node_row("a", "finished"), node_row("b", "pending")},
       {attempt("a", 1, "finished")},
       {output("a", {{"x", 1}})},
       {{"a", node_state::finished}, {"b", node_state::pending}},
       {{"a", 1}},
       {},
       0,
       {},
       {},
       {{"a", {{"x", 1}}}}},
      {"in-progress and cancelled nodes run again",
       {node_row("a", "in-progress"), node_row("b", "cancelled"), node_row("c", "failed"),
        node_row("d", "skipped")},
       {attempt("b", 1, "cancelled"), attempt("c", 1, "failed")},
       {},
       {{"a", node_state::pending},
        {"b", node_state::pending},
        {"c", node_state::failed},
        {"d", node_state::skipped}},
       {{"b", 1}, {"c", 1}},
       {},
       0,
       {},
       {},
       {}},
      {"an unknown node state is pending",
       {node_row("a", "no-such-state")},
       {},
       {},
       {{"a", node_state::pending}},
       {},
       {},
       0,
       {},
       {},
       {}},
      {"attempts left in progress are orphaned; those with a process group are listed",
       {node_row("a", "in-progress"), node_row("b", "in-progress")},
       {attempt("a", 1, "failed"), attempt("a", 2, "in-progress", {{"pgid", 42}}),
        attempt("b", 1, "in-progress")},
       {},
       {{"a", node_state::pending}, {"b", node_state::pending}},
       {{"a", 2}, {"b", 1}},
       {{"a", 2}, {"b", 1}},
       1,
       {},
       {},
       {}},
      {"the attempt count is the highest attempt, whatever the order",
       {node_row("a", "pending")},
       {attempt("a", 3, "failed"), attempt("a", 1, "failed")},
       {},
       {{"a", node_state::pending}},
       {{"a", 3}},
       {},
       0,
       {},
       {},
       {}},
      {"a pending node whose last attempt failed waits for its backoff",
       {node_row("a", "pending"), node_row("b", "failed"), node_row("c", "pending")},
       {attempt("a", 1, "failed", {{"retry_at_ms", 1000}}),
        attempt("a", 2, "failed", {{"retry_at_ms", 5000}}),
        attempt("b", 1, "failed", {{"retry_at_ms", 7000}}),
        attempt("c", 1, "failed", {{"retry_at_ms", 9000}}), attempt("c", 2, "in-progress")},
       {},
       {{"a", node_state::pending}, {"b", node_state::failed}, {"c", node_state::pending}},
       {{"a", 2}, {"b", 1}, {"c", 2}},
       {{"c", 2}},
       0,
       {{"a", 5000}},
       {},
       {}},
      {"a failed attempt without retry_at_ms has no backoff",
       {node_row("a", "pending")},
       {attempt("a", 1, "failed", {{"pgid", 7}})},
       {},
       {{"a", node_state::pending}},
       {{"a", 1}},
       {},
       0,
       {},
       {},
       {}},
      {"attempts of a node without a row count as pending",
       {},
       {attempt("a", 1, "failed", {{"retry_at_ms", 2000}})},
       {},
       {{"a", node_state::pending}},
       {{"a", 1}},
       {},
       0,
       {{"a", 2000}},
       {},
       {}},
      {"the checkpoint is the last heartbeat data recorded",
       {node_row("a", "in-progress"), node_row("b", "pending")},
       {attempt("a", 1, "failed", json::object(), {{"offset", 10}}),
        attempt("a", 2, "failed", json::object(), {{"offset", 20}}),
        attempt("a", 3, "in-progress"), attempt("b", 1, "failed", json::object(), nullptr)},
       {},
       {{"a", node_state::pending}, {"b", node_state::pending}},
       {{"a", 3}, {"b", 1}},
       {{"a", 3}},
       0,
       {},
       {{"a", {{"offset", 20}}}},
       {}},
  };
  for (const auto& c : cases) {
    SECTION(c.name) {
      auto rr = recover_run(c.nodes, c.attempts, c.outputs);
      const auto& r = rr.st;
      CHECK(sorted(r.states) == c.states);
      CHECK(sorted(r.attempts) == c.attempt_counts);
      CHECK(rr.orphaned == c.orphaned);
      CHECK(rr.orphan_groups.size() == c.orphan_groups);
      CHECK(sorted(r.retry_at_ms) == c.retry_at_ms);
      CHECK(sorted(r.checkpoints) == c.checkpoints);
      CHECK(sorted(r.outputs) == c.outputs_after);
    }
  }
}

TEST_CASE("an orphaned attempt's process group comes with its meta") {
  auto r = recover_run({node_row("a", "in-progress")},
                       {attempt("a", 1, "in-progress",
                                {{"pgid", 42}, {"pgid_start", 7}, {"host", "h"}})},
                       {});
  REQUIRE(r.orphan_groups.size() == 1);
  CHECK(r.orphan_groups[0].at("pgid") == 42);
  CHECK(r.orphan_groups[0].at("host") == "h");
}

TEST_CASE("a finished or continued run is not resumable; a failed, cancelled or waiting one is") {
  store::run_row run;
  run.run_id = "r1";
  const std::pair<const char*, const char*> refused[] = {
      {"finished", "run \"r1\" has finished: there is nothing to resume"},
      {"continued",
       "run \"r1\" continued as a new run (see `smithers inspect r1`): resume that one"}};
  for (const auto& [s, message] : refused) {
    run.status = s;
    try {
      core::refuse_ended(run);
      FAIL("no error for status " << s);
    } catch (const smithers_error& e) {
      CHECK(e.code() == errc::run_not_resumable);
      CHECK(e.err().message == message);
    }
  }
  for (const char* s : {"running", "created", "failed", "cancelled", "waiting-approval",
                        "waiting-event", "waiting-timer"}) {
    run.status = s;
    CHECK_NOTHROW(core::refuse_ended(run));
  }
}

TEST_CASE("a retry runs failed and cancelled nodes again with a fresh retry budget") {
  std::vector<store::node_row> nodes = {{"r", "a", 0, "finished", 1, "", "", 0},
                                        {"r", "b", 0, "failed", 3, "", "", 0},
                                        {"r", "c", 0, "cancelled", 0, "", "", 0}};
  std::vector<store::attempt_row> attempts;
  for (std::int64_t n = 1; n <= 3; ++n) {
    store::attempt_row a;
    a.run_id = "r";
    a.node_id = "b";
    a.attempt = n;
    a.state = "failed";
    attempts.push_back(a);
  }
  std::vector<store::output_row> outputs;
  std::vector<store::loop_row> loops = {{"r", "l", 4, "failed", 0}};
  SECTION("without retry, failed stays failed and a failed loop is done") {
    auto rec = core::recover(nodes, attempts, outputs, loops, false);
    CHECK(rec.state.states.at(node_key{"b", 0}) == node_state::failed);
    CHECK(rec.state.states.at(node_key{"c", 0}) == node_state::pending);
    CHECK(rec.state.loops.at("l").done);
    CHECK(rec.state.retry_base.empty());
  }
  SECTION("with retry, both run again, numbered on, and the loop runs again") {
    auto rec = core::recover(nodes, attempts, outputs, loops, true);
    CHECK(rec.state.states.at(node_key{"a", 0}) == node_state::finished);
    CHECK(rec.state.states.at(node_key{"b", 0}) == node_state::pending);
    CHECK(rec.state.states.at(node_key{"c", 0}) == node_state::pending);
    CHECK(rec.state.attempts.at(node_key{"b", 0}) == 3);
    CHECK(rec.state.retry_base.at(node_key{"b", 0}) == 3);
    CHECK(rec.state.retried.size() == 2);
    CHECK_FALSE(rec.state.loops.at("l").done);
    CHECK(rec.state.failed_loops == std::vector<std::string>{"l"});
  }
}

TEST_CASE("a resume with another workflow or git revision is refused unless forced") {
  store::run_row run;
  run.run_id = "r1";
  run.workflow_hash = "h1";
  run.vcs_revision = "v1";
  CHECK_NOTHROW(core::check_same_workflow(run, "h1", "v1", false));
  struct mismatch {
    std::string hash, revision, message;
    std::size_t changed;
  };
  for (const auto& m : std::vector<mismatch>{
           {"h2", "v1", "changed: workflow hash", 1},
           {"h1", "v2", "changed: git revision v1 -> v2", 1},
           {"h1", "", "changed: git revision v1 -> none", 1},
           {"h2", "v2", "changed: workflow hash, git revision v1 -> v2", 2},
       }) {
    try {
      core::check_same_workflow(run, m.hash, m.revision, false);
      FAIL("no error for " << m.hash << " " << m.revision);
    } catch (const smithers_error& e) {
      CHECK(e.code() == errc::resume_metadata_mismatch);
      CHECK(e.err().message.find(m.message) != std::string::npos);
      CHECK(e.err().details.at("changed").size() == m.changed);
    }
    CHECK_NOTHROW(core::check_same_workflow(run, m.hash, m.revision, true));
  }
  // A run started outside git does not compare revisions.
  run.vcs_revision.clear();
  CHECK_NOTHROW(core::check_same_workflow(run, "h1", "v9", false));
}

namespace {

/// An attempt row of `id` at `iteration`, re-dispatched for free (a worker
/// was lost) or not, as run_core's finish command writes its meta.
store::attempt_row lost_row(const std::string& id, std::int64_t iteration, std::int64_t k,
                            bool redispatch, const std::string& state = "failed") {
  store::attempt_row a = attempt(id, k, state, {{"retry_at_ms", 1000 + k}});
  a.iteration = iteration;
  if (redispatch) {
    a.meta["redispatch"] = true;
    a.error = {{"code", errc::worker_lost}, {"message", "lost"}};
  } else {
    a.error = {{"code", errc::task_failed}, {"message", "boom"}};
  }
  return a;
}

/// By node key as text ("a", "loop@1"): rows here may be of any iteration.
std::map<std::string, std::int64_t> by_key(const core::key_map<std::int64_t>& m) {
  std::map<std::string, std::int64_t> out;
  for (const auto& [k, v] : m)
    out.emplace(to_string(k), v);
  return out;
}

} // namespace

TEST_CASE("recover: free re-dispatches do not count against retries; the last run of them is the "
          "streak") {
  const bool R = true;  // meta "redispatch": true (WORKER_LOST, run again for free)
  const bool N = false; // any other attempt
  struct row {
    const char* name;
    std::vector<store::attempt_row> attempts;
    bool retry;
    std::map<std::string, std::int64_t> retry_base;
    std::map<std::string, std::int64_t> lost_streak;
  };
  auto plain = [](const std::string& id, std::int64_t k, json meta) {
    return attempt(id, k, "failed", std::move(meta));
  };
  const std::vector<row> rows = {
      {"no attempts", {}, false, {}, {}},
      {"no free attempts: nothing",
       {lost_row("a", 0, 1, N), lost_row("a", 0, 2, N)},
       false,
       {},
       {}},
      {"one free attempt", {lost_row("a", 0, 1, R)}, false, {{"a", 1}}, {{"a", 1}}},
      {"three in a row, the last attempts",
       {lost_row("a", 0, 1, R), lost_row("a", 0, 2, R), lost_row("a", 0, 3, R)},
       false,
       {{"a", 3}},
       {{"a", 3}}},
      {"an attempt that was not free ends the streak, not the count",
       {lost_row("a", 0, 1, R), lost_row("a", 0, 2, R), lost_row("a", 0, 3, N),
        lost_row("a", 0, 4, R)},
       false,
       {{"a", 3}},
       {{"a", 1}}},
      {"a last attempt that was not free: no streak",
       {lost_row("a", 0, 1, R), lost_row("a", 0, 2, R), lost_row("a", 0, 3, N)},
       false,
       {{"a", 2}},
       {}},
      {"an attempt left in progress after free ones ends the streak",
       {lost_row("a", 0, 1, R), lost_row("a", 0, 2, R),
        attempt("a", 3, "in-progress", {{"pgid", 9}})},
       false,
       {{"a", 2}},
       {}},
      {"a finished attempt after free ones",
       {lost_row("a", 0, 1, R), attempt("a", 2, "finished")},
       false,
       {{"a", 1}},
       {}},
      {"the first attempt not free, the rest free",
       {lost_row("a", 0, 1, N), lost_row("a", 0, 2, R), lost_row("a", 0, 3, R)},
       false,
       {{"a", 2}},
       {{"a", 2}}},
      {"each node has its own count and streak",
       {lost_row("a", 0, 1, R), lost_row("a", 0, 2, N), lost_row("b", 0, 1, R),
        lost_row("b", 0, 2, R), lost_row("c", 0, 1, N)},
       false,
       {{"a", 1}, {"b", 2}},
       {{"b", 2}}},
      {"each iteration of a node has its own",
       {lost_row("loop", 0, 1, R), lost_row("loop", 0, 2, R), lost_row("loop", 0, 3, N),
        lost_row("loop", 1, 1, R), lost_row("loop", 2, 1, N), lost_row("loop", 2, 2, R)},
       false,
       {{"loop", 2}, {"loop@1", 1}, {"loop@2", 1}},
       {{"loop@1", 1}, {"loop@2", 1}}},
      {"meta that does not say redispatch true is not free",
       {plain("a", 1, {{"redispatch", false}}), plain("a", 2, nullptr),
        plain("a", 3, json::array()), plain("a", 4, json::object()),
        plain("a", 5, {{"retry_at_ms", 5}})},
       false,
       {},
       {}},
      {"a retry: the base is every attempt so far, free or not, and no streak",
       {lost_row("a", 0, 1, R), lost_row("a", 0, 2, R), lost_row("a", 0, 3, N),
        lost_row("a", 0, 4, R), lost_row("b", 0, 1, R)},
       true,
       {{"a", 4}, {"b", 1}},
       {}},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      std::vector<store::output_row> outputs;
      auto rec = core::recover({}, r.attempts, outputs, {}, r.retry);
      CHECK(by_key(rec.state.retry_base) == r.retry_base);
      CHECK(by_key(rec.state.lost_streak) == r.lost_streak);
    }
  }
}

TEST_CASE("recover: a redispatch flag that is not a boolean is not free, and does not throw") {
  // Like a retry_at_ms that is not a number (ignored above), a stored meta
  // the engine did not write this way is tolerated.
  for (json flag : {json(1), json("yes"), json(nullptr), json::object()}) {
    CAPTURE(flag.dump());
    std::vector<store::attempt_row> attempts{attempt("a", 1, "failed", {{"redispatch", flag}})};
    std::vector<store::output_row> outputs;
    core::recovered_run rec;
    CHECK_NOTHROW(rec = core::recover({}, attempts, outputs));
    CHECK(rec.state.retry_base.empty());
    CHECK(rec.state.lost_streak.empty());
  }
}

// -- agent tasks: disabled agents and free moves along the chain -------------

namespace {

/// A failed attempt of `id` whose error is `err` and meta `meta`.
store::attempt_row agent_row(const std::string& id, std::int64_t k, json err,
                             json meta = json::object(), std::int64_t iteration = 0) {
  store::attempt_row a = attempt(id, k, "failed", std::move(meta));
  a.iteration = iteration;
  a.error = std::move(err);
  return a;
}

json auth_error(json details) {
  return {{"code", errc::agent_auth_failed}, {"message", "no"}, {"details", std::move(details)}};
}

/// An attempt that asked `agent` and failed with `code`, as the engine
/// records it: the agent in the meta (from its start, merged with the
/// executor's) and in the error's details.
store::attempt_row asked(const std::string& id, std::int64_t k, const std::string& agent,
                         const char* code = errc::agent_auth_failed, std::int64_t iteration = 0) {
  return agent_row(id, k, {{"code", code}, {"message", "m"}, {"details", {{"agent", agent}}}},
                   {{"agent", {{"id", agent}, {"follow_ups", 0}}}}, iteration);
}

} // namespace

TEST_CASE("recover: agents whose credentials failed stay disabled on a resume, not on a retry") {
  using set = std::set<std::string>;
  struct row {
    const char* name;
    std::vector<store::attempt_row> attempts;
    set disabled; // on a plain resume; a retry disables none
  };
  const std::vector<row> rows = {
      {"no attempts", {}, {}},
      {"one auth failure", {asked("a", 1, "x")}, {"x"}},
      {"auth failures of several nodes and iterations",
       {asked("a", 1, "x"), asked("a", 2, "y"), asked("b", 1, "x"),
        asked("loop", 1, "z", errc::agent_auth_failed, 3)},
       {"x", "y", "z"}},
      {"other failures of agents",
       {asked("a", 1, "x", errc::task_failed), asked("a", 2, "y", errc::invalid_output),
        asked("a", 3, "z", errc::task_timeout)},
       {}},
      {"a finished attempt of an agent",
       {attempt("a", 1, "finished", {{"agent", {{"id", "x"}}}})},
       {}},
      {"every agent disabled before the attempt: it asked none",
       {agent_row("a", 1, auth_error({{"agents", {"x", "y"}}}))},
       {}},
      {"an auth failure that names no agent", {agent_row("a", 1, auth_error(json::object()))}, {}},
      {"an agent id that is not a string",
       {agent_row("a", 1, auth_error({{"agent", 7}}), {{"agent", {{"id", 7}}}})},
       {}},
      {"details and meta of another shape",
       {agent_row("a", 1, auth_error("x"), {{"agent", "x"}}),
        agent_row("a", 2, {{"code", errc::agent_auth_failed}, {"message", "m"}}, nullptr)},
       {}},
      {"an error that is not an object",
       {agent_row("a", 1, "AGENT_AUTH_FAILED", {{"agent", {{"id", "x"}}}}),
        agent_row("a", 2, nullptr, {{"agent", {{"id", "y"}}}})},
       {}},
      {"an auth failure among other attempts",
       {lost_row("a", 0, 1, false), asked("a", 2, "x"), attempt("a", 3, "finished")},
       {"x"}},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      std::vector<store::output_row> outputs;
      core::recovered_run rec;
      REQUIRE_NOTHROW(rec = core::recover({}, r.attempts, outputs, {}, false));
      CHECK(rec.state.disabled_agents == r.disabled);
      std::vector<store::output_row> outputs2;
      REQUIRE_NOTHROW(rec = core::recover({}, r.attempts, outputs2, {}, true));
      CHECK(rec.state.disabled_agents.empty());
    }
  }
}

TEST_CASE("recover: attempts that moved an agent chain on do not count against retries") {
  const json auth = auth_error({{"agent", "x"}});
  const json next = {{"retry_at_ms", 5}, {"next_agent", true}};
  struct row {
    const char* name;
    std::vector<store::attempt_row> attempts;
    bool retry;
    std::map<std::string, std::int64_t> retry_base;
    std::map<std::string, std::int64_t> lost_streak;
  };
  const std::vector<row> rows = {
      {"one move on", {agent_row("a", 1, auth, next)}, false, {{"a", 1}}, {}},
      {"two, then a failure that counts",
       {agent_row("a", 1, auth, next), agent_row("a", 2, auth, next),
        agent_row("a", 3, {{"code", errc::task_failed}}, {{"retry_at_ms", 9}})},
       false,
       {{"a", 2}},
       {}},
      {"an auth failure that moved nothing on (no agent left) counts",
       {agent_row("a", 1, auth, next), agent_row("a", 2, auth, json::object())},
       false,
       {{"a", 1}},
       {}},
      {"with free re-dispatches: both kinds add up; a move on ends the WORKER_LOST streak",
       {lost_row("a", 0, 1, true), agent_row("a", 2, auth, next), lost_row("a", 0, 3, true)},
       false,
       {{"a", 3}},
       {{"a", 1}}},
      {"a move on after WORKER_LOSTs: no streak",
       {lost_row("a", 0, 1, true), lost_row("a", 0, 2, true), agent_row("a", 3, auth, next)},
       false,
       {{"a", 3}},
       {}},
      {"per node and iteration",
       {agent_row("a", 1, auth, next), agent_row("loop", 1, auth, next, 2),
        agent_row("loop", 2, auth, next, 2), agent_row("b", 1, auth, json::object())},
       false,
       {{"a", 1}, {"loop@2", 2}},
       {}},
      {"next_agent that is not true is not free",
       {agent_row("a", 1, auth, {{"next_agent", false}}),
        agent_row("a", 2, auth, {{"next_agent", 1}}),
        agent_row("a", 3, auth, {{"next_agent", "true"}}), agent_row("a", 4, auth, nullptr),
        agent_row("a", 5, auth, json::array({"next_agent"}))},
       false,
       {},
       {}},
      {"a retry: the base is every attempt so far",
       {agent_row("a", 1, auth, next), agent_row("a", 2, auth, json::object())},
       true,
       {{"a", 2}},
       {}},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      std::vector<store::output_row> outputs;
      auto rec = core::recover({}, r.attempts, outputs, {}, r.retry);
      CHECK(by_key(rec.state.retry_base) == r.retry_base);
      CHECK(by_key(rec.state.lost_streak) == r.lost_streak);
    }
  }
}
