// The cache key of a cached task's attempt (attempt_builder::build sets
// job->cache_key): what it covers, and — with `by` — what it does not.
// Agent tasks: the entry of the chain an attempt asks, and their requests.
#include "core/attempt_builder.hpp"

#include <smithers/errors.hpp>
#include <smithers/limits.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <optional>
#include <set>

using namespace smithers;

namespace {

json noop(task_context&) {
  return json::object();
}

/// Everything an attempt is built from, each part changeable by a row.
struct setup {
  std::string wf_name = "wf";
  std::map<std::string, json> output_schemas{{"report", {{"type", "object"}}}};
  std::string run_id = "r1";
  json input = {{"x", "ex"}, {"y", "why"}};
  std::unordered_map<std::string, json> outputs{{"b", {{"sha", "abc"}, {"n", 1}}},
                                                {"other", {{"k", 1}}}};
  std::string base_cwd = "/base";
  json checkpoint; // null: none
  node_key key{"a", 0};
  std::int64_t attempt = 1;
  std::set<std::string> disabled_agents;
  std::shared_ptr<task_spec> spec;

  explicit setup(const node& n) : spec(std::make_shared<task_spec>(*n.task)) {}

  std::shared_ptr<executors::task_job> job() const {
    auto wf = std::make_shared<workflow>();
    wf->name = wf_name;
    wf->output_schemas = output_schemas;
    auto computes = std::make_shared<core::compute_registry>();
    (*computes)["f"] = noop;
    (*computes)["g"] = noop;
    core::attempt_builder b(wf, computes);
    auto in_ptr = std::make_shared<const json>(input);
    core::attempt_inputs in;
    in.run_id = &run_id;
    in.input = &in_ptr;
    in.outputs = &outputs;
    in.checkpoint = checkpoint.is_null() ? nullptr : &checkpoint;
    in.base_cwd = &base_cwd;
    in.output_at = [](std::string_view, std::int64_t) -> const json* { return nullptr; };
    in.disabled_agents = &disabled_agents;
    return b.build(key, attempt, spec, in);
  }

  std::string cache_key() const { return job()->cache_key; }
};

bool is_hex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

struct change {
  const char* name;
  std::function<void(setup&)> apply;
  bool changes_key;
};

void check_changes(const node& base, const std::vector<change>& rows) {
  setup s0(base);
  const std::string k0 = s0.cache_key();
  REQUIRE(is_hex64(k0));
  CHECK(setup(base).cache_key() == k0); // same inputs, same key
  for (const auto& r : rows) {
    SECTION(r.name) {
      setup s(base);
      r.apply(s);
      std::string k = s.cache_key();
      CHECK(is_hex64(k));
      if (r.changes_key)
        CHECK(k != k0);
      else
        CHECK(k == k0);
    }
  }
}

} // namespace

TEST_CASE("cache key: 64 hex digits, the same for the same work, none without cache") {
  node cached = command_task("a", {"echo", "{{input.x}}"}).needs({"b"}).cache();
  setup s(cached);
  auto j1 = s.job();
  auto j2 = s.job();
  CHECK(is_hex64(j1->cache_key));
  CHECK(j1->cache_key == j2->cache_key);
  // build() and cache_key() agree.
  auto wf = std::make_shared<workflow>();
  wf->name = s.wf_name;
  core::attempt_builder b(wf, std::make_shared<core::compute_registry>());
  CHECK(b.cache_key(s.key, *s.spec, j1->request, "") == j1->cache_key);
  // Tasks without cache have no key.
  setup plain(command_task("a", {"echo", "{{input.x}}"}).needs({"b"}));
  CHECK(plain.job()->cache_key.empty());
  setup compute(compute_task("a", "f"));
  CHECK(compute.job()->cache_key.empty());
  // A value task has nothing to run, and no key even if a C++ tree gave it
  // cache (validation refuses that tree).
  setup value(value_task("a", json::object()).cache());
  CHECK(value.job()->cache_key.empty());
}

TEST_CASE("cache key without by: what the task runs on changes it, nothing else does") {
  node base = command_task("a", {"echo", "{{input.x}}"})
                  .needs({"b"})
                  .env("E", "e1")
                  .output_schema({{"type", "object"}})
                  .cache({"", "v1"});
  std::vector<change> rows{
      {"version", [](setup& s) { s.spec->cache->version = "v2"; }, true},
      {"version from none", [](setup& s) { s.spec->cache->version = ""; }, true},
      {"output schema",
       [](setup& s) {
         s.spec->output_schema = {{"type", "object"}, {"required", {"n"}}};
       },
       true},
      {"argv",
       [](setup& s) {
         s.spec->argv = {"echo", "{{input.x}}", "more"};
       },
       true},
      {"argv through its template", [](setup& s) { s.input["x"] = "other"; }, true},
      {"env", [](setup& s) { s.spec->env["E"] = "e2"; }, true},
      {"another env variable", [](setup& s) { s.spec->env["F"] = "f"; }, true},
      {"the task's cwd", [](setup& s) { s.spec->cwd = "sub"; }, true},
      {"the run's cwd", [](setup& s) { s.base_cwd = "/elsewhere"; }, true},
      {"a part of the input no template reads", [](setup& s) { s.input["y"] = "other"; }, true},
      {"a needed output", [](setup& s) { s.outputs["b"]["n"] = 2; }, true},
      {"the workflow's name", [](setup& s) { s.wf_name = "wf2"; }, true},
      {"the node id", [](setup& s) { s.key.id = "a2"; }, true},
      {"a shell script instead of the same argv",
       [](setup& s) {
         s.spec->use_shell = true;
         s.spec->shell = "echo {{input.x}}";
         s.spec->argv.clear();
       },
       true},
      // What is not the work: the same key, so later attempts and runs reuse it.
      {"the attempt number", [](setup& s) { s.attempt = 3; }, false},
      {"the run id", [](setup& s) { s.run_id = "r2"; }, false},
      {"an output the task neither needs nor reads",
       [](setup& s) {
         s.outputs["other"] = {{"k", 2}};
       },
       false},
      {"the previous attempt's checkpoint",
       [](setup& s) {
         s.checkpoint = {{"step", 4}};
       },
       false},
      {"retries and timeouts",
       [](setup& s) {
         s.spec->retries = 4;
         s.spec->timeout_ms = 99;
         s.spec->heartbeat_timeout_ms = 50;
       },
       false},
      {"the label", [](setup& s) { s.spec->label = "L"; }, false},
  };
  check_changes(base, rows);
}

TEST_CASE("cache key without by, compute tasks: the function's name and the input count") {
  node base = compute_task("a", "f").needs({"b"}).output("report").cache();
  std::vector<change> rows{
      {"the compute function", [](setup& s) { s.spec->compute_name = "g"; }, true},
      {"the input", [](setup& s) { s.input["y"] = "other"; }, true},
      {"a needed output", [](setup& s) { s.outputs["b"]["sha"] = "def"; }, true},
      {"the content of the named output schema",
       [](setup& s) {
         s.output_schemas["report"] = {{"type", "object"}, {"required", {"n"}}};
       },
       true},
      {"no output schema", [](setup& s) { s.spec->output.clear(); }, true},
      {"the version", [](setup& s) { s.spec->cache->version = "2"; }, true},
      {"another name for the same schema",
       [](setup& s) {
         s.output_schemas["copy"] = s.output_schemas["report"];
         s.spec->output = "copy";
       },
       false},
      {"the run id", [](setup& s) { s.run_id = "r9"; }, false},
      {"an output it does not need", [](setup& s) { s.outputs["other"] = json::object(); }, false},
  };
  check_changes(base, rows);
}

TEST_CASE("cache key with by: only what by reads, and the fixed parts, change it") {
  node base = command_task("a", {"echo", "{{input.y}}"})
                  .needs({"b"})
                  .env("E", "e1")
                  .cache({"{{input.x}}", "v1"});
  std::vector<change> rows{
      {"what by reads", [](setup& s) { s.input["x"] = "changed"; }, true},
      {"the version", [](setup& s) { s.spec->cache->version = "v2"; }, true},
      {"the output schema",
       [](setup& s) {
         s.spec->output_schema = {{"type", "object"}};
       },
       true},
      {"the workflow's name", [](setup& s) { s.wf_name = "wf2"; }, true},
      {"the node id", [](setup& s) { s.key.id = "a2"; }, true},
      {"by itself, to the same value", [](setup& s) { s.spec->cache->by = "ex"; }, false},
      {"the input outside what by reads", [](setup& s) { s.input["y"] = "other"; }, false},
      {"argv", [](setup& s) { s.spec->argv = {"false"}; }, false},
      {"env", [](setup& s) { s.spec->env["E"] = "e2"; }, false},
      {"the task's cwd", [](setup& s) { s.spec->cwd = "sub"; }, false},
      {"the run's cwd", [](setup& s) { s.base_cwd = "/elsewhere"; }, false},
      {"a needed output", [](setup& s) { s.outputs["b"]["n"] = 2; }, false},
      {"the attempt number", [](setup& s) { s.attempt = 2; }, false},
      {"the run id", [](setup& s) { s.run_id = "r2"; }, false},
  };
  check_changes(base, rows);
}

TEST_CASE("cache key with by reading an output: that field and nothing else of it") {
  node base = compute_task("a", "f").needs({"b"}).cache({"{{outputs.b.sha}}", ""});
  std::vector<change> rows{
      {"the field by reads", [](setup& s) { s.outputs["b"]["sha"] = "def"; }, true},
      {"another field of the same output", [](setup& s) { s.outputs["b"]["n"] = 7; }, false},
      {"the input",
       [](setup& s) {
         s.input = {{"z", 1}};
       },
       false},
      {"the compute function", [](setup& s) { s.spec->compute_name = "g"; }, false},
  };
  check_changes(base, rows);
}

TEST_CASE("cache key: by and the default never share a key") {
  // A `by` whose value is the text the default hashes is still another key:
  // the default is an object, a by value a string.
  node dflt = compute_task("a", "f").cache();
  node by_const = compute_task("a", "f").cache({"constant", ""});
  node by_other = compute_task("a", "f").cache({"other", ""});
  std::string k_default = setup(dflt).cache_key();
  std::string k_const = setup(by_const).cache_key();
  CHECK(k_default != k_const);
  CHECK(k_const != setup(by_other).cache_key());
  // A by without templates keys every run alike.
  setup s(by_const);
  s.input = {{"x", "whatever"}};
  s.outputs.clear();
  CHECK(s.cache_key() == k_const);
}

TEST_CASE("cache key: a by that cannot be expanded fails the build like any template") {
  setup s(command_task("a", {"true"}).cache({"{{outputs.ghost.sha}}", ""}));
  CHECK_THROWS_AS(s.job(), smithers_error);
}

// Paths are bytes: a run directory need not be UTF-8. Were ill-formed
// bytes replaced (U+FFFD) on the way to the key, directories that differ
// only there would share a key (and one run would reuse the other's output).
TEST_CASE("cache key: run directories that differ only in non-UTF-8 bytes get different keys") {
  node base = command_task("a", {"ls"}).cache();
  setup s1(base), s2(base);
  s1.base_cwd = "/w/\xff";
  s2.base_cwd = "/w/\xfe";
  CHECK(s1.job()->request.cwd != s2.job()->request.cwd);
  CHECK(s1.cache_key() != s2.cache_key());
}

// A task receives its loop iteration (task_context::iteration(),
// SMITHERS_ITERATION), but without `by` the key has the node id only: in a
// loop, iteration 1 of a cached body task hits iteration 0's entry and
// never runs, so a body whose work depends on the iteration keeps
// returning its first output (a loop `until` on it can never hold).
TEST_CASE("cache key without by: the loop iteration a task receives is part of it") {
  for (node n : {compute_task("a", "f").cache(), command_task("a", {"./step.sh"}).cache()}) {
    CAPTURE(to_string(n.task->kind));
    setup s0(n), s1(n);
    s1.key.iteration = 1;
    CHECK(s0.cache_key() != s1.cache_key());
  }
}

// -- agent tasks --------------------------------------------------------------

namespace {

agent_spec agent(std::string id, std::vector<std::string> command = {"claude", "-p"},
                 std::string model = "", std::map<std::string, std::string> env = {}) {
  return agent_spec{std::move(id), std::move(command), std::move(model), std::move(env)};
}

std::vector<agent_spec> chain_of(const std::vector<std::string>& ids) {
  std::vector<agent_spec> out;
  for (const auto& id : ids)
    out.push_back(agent(id));
  return out;
}

/// A chain of two agents, a prompt and an env reading the input and b's output.
node two_agents() {
  return agent_task("a",
                    {agent("a1", {"claude", "-p", "{{prompt}}", "--model", "{{model}}"}, "opus",
                           {{"K", "v {{input.x}}"}}),
                     agent("a2", {"tools/agent"}, "", {})},
                    "Fix {{input.x}} at {{outputs.b.sha}} (attempt {{attempt}})")
      .needs({"b"})
      .env("E", "{{input.y}}-{{outputs.b.n}}");
}

} // namespace

TEST_CASE("attempt_builder::pick_agent: min(attempt, size) - 1, else the nearest usable") {
  using ids = std::vector<std::string>;
  using set = std::set<std::string>;
  const std::optional<std::size_t> none;
  struct row {
    const char* name;
    ids chain;
    std::int64_t attempt;
    std::optional<set> disabled; // nullopt: no set at all (nullptr)
    std::optional<std::size_t> expected;
  };
  const std::vector<row> rows = {
      {"attempt 1 asks the first", {"a1", "a2", "a3"}, 1, set{}, 0},
      {"attempt 1, no set", {"a1", "a2"}, 1, std::nullopt, 0},
      {"attempt 2 asks the second", {"a1", "a2", "a3"}, 2, set{}, 1},
      {"attempt 3 asks the third", {"a1", "a2", "a3"}, 3, set{}, 2},
      {"attempt 5 with 2 agents asks the last", {"a1", "a2"}, 5, set{}, 1},
      {"attempt 5 with 2 agents, no set", {"a1", "a2"}, 5, std::nullopt, 1},
      {"one agent, any attempt", {"solo"}, 9, set{}, 0},
      {"attempt 0 is taken as 1", {"a1", "a2"}, 0, set{}, 0},
      {"a negative attempt is taken as 1", {"a1", "a2"}, -4, set{}, 0},
      {"disabled first: the next", {"a1", "a2"}, 1, set{"a1"}, 1},
      {"disabled first two: the third", {"a1", "a2", "a3"}, 1, set{"a1", "a2"}, 2},
      {"disabled middle: the one after it first", {"a1", "a2", "a3"}, 2, set{"a2"}, 2},
      {"disabled last, attempt beyond: the one before", {"a1", "a2"}, 5, set{"a2"}, 0},
      {"disabled last two, attempt beyond: the first", {"a1", "a2", "a3"}, 7, set{"a2", "a3"}, 0},
      {"disabled last, attempt at it: the one before", {"a1", "a2", "a3"}, 3, set{"a3"}, 1},
      {"disabled ids of other chains change nothing", {"a1", "a2"}, 1, set{"x", "y"}, 0},
      {"all disabled", {"a1", "a2"}, 1, set{"a1", "a2"}, none},
      {"all disabled, attempt beyond", {"a1", "a2"}, 4, set{"a1", "a2"}, none},
      {"the only one disabled", {"solo"}, 1, set{"solo"}, none},
      {"empty chain", {}, 1, set{}, none},
      {"empty chain, no set", {}, 1, std::nullopt, none},
  };
  for (const auto& r : rows) {
    CAPTURE(r.name);
    auto chain = chain_of(r.chain);
    const std::set<std::string>* disabled = r.disabled ? &*r.disabled : nullptr;
    CHECK(core::attempt_builder::pick_agent(chain, r.attempt, disabled) == r.expected);
  }
}

TEST_CASE("agent task build: the picked agent, the prompt and env expanded") {
  setup s(two_agents());
  s.base_cwd = "/base";
  auto j = s.job();
  const auto& req = j->request;
  CHECK(req.kind == task_kind::agent);
  CHECK(req.key == node_key{"a", 0});
  CHECK(req.attempt == 1);
  CHECK(req.cwd == "/base");
  CHECK(req.argv.empty());
  CHECK(j->compute == nullptr);
  // Attempt 1 asks the first agent, its command, model and env as written:
  // {{prompt}} and {{model}} are the executor's, its env is literal.
  CHECK(req.agent.id == "a1");
  CHECK(req.agent.command ==
        std::vector<std::string>{"claude", "-p", "{{prompt}}", "--model", "{{model}}"});
  CHECK(req.agent.model == "opus");
  CHECK(req.agent.env == std::map<std::string, std::string>{{"K", "v {{input.x}}"}});
  // The prompt's templates are filled (the contract is appended later).
  CHECK(req.prompt == "Fix ex at abc (attempt 1)");
  // The task's env is expanded.
  CHECK(req.env == std::map<std::string, std::string>{{"E", "why-1"}});
  CHECK(req.needs == json{{"b", {{"sha", "abc"}, {"n", 1}}}});
  CHECK(req.worktree_path.empty());
  CHECK(j->cache_key.empty()); // not cached

  SECTION("attempt 2 asks the second; a relative program is under the run's directory") {
    s.attempt = 2;
    auto j2 = s.job();
    CHECK(j2->request.agent.id == "a2");
    CHECK(j2->request.agent.command == std::vector<std::string>{"/base/tools/agent"});
    CHECK(j2->request.agent.model.empty());
    CHECK(j2->request.prompt == "Fix ex at abc (attempt 2)");
    // The spec keeps what was written.
    CHECK(s.spec->agents[1].command == std::vector<std::string>{"tools/agent"});
  }
  SECTION("a disabled first agent: attempt 1 asks the second") {
    s.disabled_agents = {"a1"};
    CHECK(s.job()->request.agent.id == "a2");
  }
  SECTION("the task's cwd does not move the program; it is under the run's directory") {
    s.spec->cwd = "sub";
    s.attempt = 2;
    auto j2 = s.job();
    CHECK(j2->request.cwd == "/base/sub");
    CHECK(j2->request.agent.command[0] == "/base/tools/agent");
  }
}

TEST_CASE("agent task build: which programs are resolved against the run's directory") {
  struct row {
    std::string program;
    std::string base_cwd;
    std::string expected;
  };
  const std::vector<row> rows = {
      {"claude", "/base", "claude"}, // found on PATH
      {"tools/agent", "/base", "/base/tools/agent"},
      {"./agent", "/base", "/base/./agent"},
      {"../bin/agent", "/w/run", "/w/run/../bin/agent"},
      {"/abs/x", "/base", "/abs/x"},
      {"/abs/x", "", "/abs/x"},
      {"tools/agent", "", "tools/agent"}, // no run directory: as written
  };
  for (const auto& r : rows) {
    CAPTURE(r.program, r.base_cwd);
    setup s(agent_task("a", {agent("x", {r.program, "--flag", "rel/arg"})}, "p"));
    s.base_cwd = r.base_cwd;
    auto req = s.job()->request;
    CHECK(req.agent.command == std::vector<std::string>{r.expected, "--flag", "rel/arg"});
  }
}

TEST_CASE("agent task build: every agent disabled fails the attempt AGENT_AUTH_FAILED") {
  setup s(two_agents());
  s.disabled_agents = {"a1", "a2", "unrelated"};
  for (std::int64_t attempt : {1, 2, 3}) {
    CAPTURE(attempt);
    s.attempt = attempt;
    try {
      s.job();
      FAIL("no error");
    } catch (const smithers_error& e) {
      CHECK(e.code() == std::string{errc::agent_auth_failed});
      CHECK(e.err().details["agents"] == json::array({"a1", "a2"}));
      CHECK_FALSE(e.err().details.contains("agent")); // no one agent to disable
      CHECK(e.err().message.find("\"a\"") != std::string::npos);
    }
  }
  // One left is enough.
  s.disabled_agents = {"a2"};
  s.attempt = 2;
  CHECK(s.job()->request.agent.id == "a1");
}

TEST_CASE("agent task build: a prompt over max_prompt_bytes once expanded is INVALID_ARGUMENT") {
  const std::size_t max = limits::max_prompt_bytes;
  setup s(agent_task("a", {agent("x")}, "P{{input.big}}Q"));
  SECTION("at the limit") {
    s.input["big"] = std::string(max - 2, 'b');
    auto req = s.job()->request;
    CHECK(req.prompt.size() == max);
    CHECK(req.prompt.front() == 'P');
    CHECK(req.prompt.back() == 'Q');
  }
  for (std::size_t over : {std::size_t{1}, std::size_t{1000}}) {
    SECTION("over it by " + std::to_string(over)) {
      s.input["big"] = std::string(max - 2 + over, 'b');
      try {
        s.job();
        FAIL("no error");
      } catch (const smithers_error& e) {
        CHECK(e.code() == std::string{errc::invalid_argument});
        CHECK(e.err().details["limit"] == max);
      }
    }
  }
  SECTION("over it only after the last template") {
    s.spec->prompt = "{{input.big}}" + std::string(10, 't');
    s.input["big"] = std::string(max - 9, 'b');
    CHECK_THROWS_AS(s.job(), smithers_error);
    s.input["big"] = std::string(max - 10, 'b');
    CHECK(s.job()->request.prompt.size() == max);
  }
  SECTION("a template that cannot be expanded fails the build") {
    s.spec->prompt = "{{outputs.ghost.x}}";
    CHECK_THROWS_AS(s.job(), smithers_error);
  }
}

TEST_CASE("worktree: path and branch expanded, base copied, branch smithers/<id> by default") {
  struct row {
    const char* name;
    node n;
    worktree_spec w;
    std::string path, branch, base;
  };
  const std::vector<row> rows = {
      {"templates",
       two_agents(),
       {"wt/{{input.x}}-{{outputs.b.sha}}", "feat/{{input.y}}", "main"},
       "wt/ex-abc",
       "feat/why",
       "main"},
      {"default branch, no base", two_agents(), {"/tmp/wt", "", ""}, "/tmp/wt", "smithers/a", ""},
      {"a command task",
       command_task("a", {"make"}),
       {"wt", "", "origin/dev"},
       "wt",
       "smithers/a",
       "origin/dev"},
      {"a plain branch",
       command_task("a", {"make"}).needs({"b"}),
       {"wt", "topic", "v1.2"},
       "wt",
       "topic",
       "v1.2"},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      node n = r.n;
      n.worktree(r.w);
      setup s(n);
      auto req = s.job()->request;
      CHECK(req.worktree_path == r.path);
      CHECK(req.worktree_branch == r.branch);
      CHECK(req.worktree_base == r.base);
    }
  }
  SECTION("the default branch names the node id of the key") {
    setup s(command_task("a", {"make"}).worktree({"wt", "", ""}));
    s.key = node_key{"fix@2", 3};
    CHECK(s.job()->request.worktree_branch == "smithers/fix@2");
  }
  SECTION("a worktree path that expands to nothing fails the build: WORKTREE_CREATE_FAILED") {
    setup s(command_task("a", {"make"}).worktree({"{{input.empty}}", "", ""}));
    s.input["empty"] = "";
    try {
      s.job();
      FAIL("no error");
    } catch (const smithers_error& e) {
      CHECK(e.code() == std::string{errc::worktree_create_failed});
      CHECK(e.err().details["path"] == "{{input.empty}}");
    }
  }
  SECTION("a worktree path that cannot be expanded fails the build") {
    setup s(command_task("a", {"make"}).worktree({"{{outputs.ghost.p}}", "", ""}));
    CHECK_THROWS_AS(s.job(), smithers_error);
  }
}

namespace {

// The spec's worktree is shared and const: a row changes a copy.
template <class F> void edit_worktree(setup& s, F f) {
  worktree_spec w = *s.spec->worktree;
  f(w);
  s.spec->worktree = std::make_shared<const worktree_spec>(std::move(w));
}

} // namespace

TEST_CASE("cache key of an agent task: the whole chain, not the agent an attempt asks") {
  // The prompt of two_agents() reads {{attempt}}: here one that does not.
  node plain = two_agents().worktree({"wt/{{input.x}}", "", ""}).cache();
  plain.task->prompt = "Fix {{input.x}} at {{outputs.b.sha}}";
  {
    // Attempts 1 and 2 ask different agents, under one key.
    setup s1(plain), s2(plain);
    s2.attempt = 2;
    auto j1 = s1.job(), j2 = s2.job();
    REQUIRE(j1->request.agent.id == "a1");
    REQUIRE(j2->request.agent.id == "a2");
    CHECK(is_hex64(j1->cache_key));
    CHECK(j1->cache_key == j2->cache_key);
  }
  std::vector<change> rows{
      {"attempt 2, another agent", [](setup& s) { s.attempt = 2; }, false},
      {"attempt 7, the last agent", [](setup& s) { s.attempt = 7; }, false},
      {"the first agent disabled", [](setup& s) { s.disabled_agents = {"a1"}; }, false},
      {"the run id", [](setup& s) { s.run_id = "r2"; }, false},
      {"retries", [](setup& s) { s.spec->retries = 3; }, false},
      {"the prompt expanding differently", [](setup& s) { s.outputs["b"]["sha"] = "def"; }, true},
      {"the prompt template, to the same kind of text",
       [](setup& s) { s.spec->prompt = "Fix {{input.x}} at {{outputs.b.sha}}!"; }, true},
      {"another model in the chain", [](setup& s) { s.spec->agents[1].model = "other"; }, true},
      {"the first agent's model", [](setup& s) { s.spec->agents[0].model = "sonnet"; }, true},
      {"another agent command", [](setup& s) { s.spec->agents[1].command = {"tools/agent2"}; },
       true},
      {"an agent's env", [](setup& s) { s.spec->agents[0].env["K"] = "w"; }, true},
      {"an agent's id", [](setup& s) { s.spec->agents[1].id = "a3"; }, true},
      {"a third agent", [](setup& s) { s.spec->agents.push_back(agent("a3")); }, true},
      {"the chain's order", [](setup& s) { std::swap(s.spec->agents[0], s.spec->agents[1]); },
       true},
      {"the task's env", [](setup& s) { s.spec->env["E"] = "{{input.y}}"; }, true},
      {"the worktree path", [](setup& s) { edit_worktree(s, [](worktree_spec& w) { w.path = "wt2/{{input.x}}"; }); }, true},
      {"the worktree path through its template",
       [](setup& s) {
         edit_worktree(s, [](worktree_spec& w) { w.path = "wt/{{input.y}}"; }); // "wt/why", not "wt/ex"
       },
       true},
      {"the worktree branch", [](setup& s) { edit_worktree(s, [](worktree_spec& w) { w.branch = "topic"; }); }, true},
      {"the worktree base", [](setup& s) { edit_worktree(s, [](worktree_spec& w) { w.base = "dev"; }); }, true},
      {"no worktree", [](setup& s) { s.spec->worktree.reset(); }, true},
      {"the version", [](setup& s) { s.spec->cache->version = "2"; }, true},
  };
  check_changes(plain, rows);
}

TEST_CASE("cache key of an agent task: a prompt that reads {{attempt}} differs per attempt") {
  // Like a `by` reading {{attempt}}: it says every attempt is other work.
  setup s1(two_agents().cache()), s2(two_agents().cache());
  s2.attempt = 2;
  CHECK(s1.cache_key() != s2.cache_key());
}

TEST_CASE("cache key: an agent task and a command task never share a key") {
  setup ag(agent_task("a", {agent("x", {"echo"})}, "").cache());
  setup cmd(command_task("a", {"echo"}).cache());
  CHECK(ag.cache_key() != cmd.cache_key());
}
