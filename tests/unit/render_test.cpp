// The canonical text of a tree is what the tree's hash is taken of: it must
// be exactly what dump() gives for the tree built as a JSON object (the form
// of every earlier version), for every option a task can carry.
#include <catch2/catch.hpp>

#include "workflow/render.hpp"

#include <random>
#include <unordered_set>

using namespace smithers;

namespace {

// The tree as a JSON object, built the way render did before it wrote the
// text directly: the oracle for canonical_text.
json reference(const node& n) {
  if (n.is_task() && n.task) {
    const task_spec& t = *n.task;
    json j = {{"task", n.id}, {"type", to_string(t.kind)}};
    switch (t.kind) {
    case task_kind::value:
      j["value"] = t.value;
      break;
    case task_kind::command:
      if (t.use_shell)
        j["run"] = t.shell;
      else
        j["run"] = t.argv;
      break;
    case task_kind::compute:
      j["compute"] = t.compute ? std::string{"<inline>"} : t.compute_name;
      break;
    case task_kind::approval:
      break;
    case task_kind::timer:
      if (t.duration_ms) j["duration_ms"] = *t.duration_ms;
      if (t.until_ms) j["until"] = *t.until_ms;
      break;
    case task_kind::signal:
      j["signal"] = t.signal_name;
      break;
    case task_kind::agent:
      j["agent"] = json::array();
      for (const auto& a : t.agents)
        j["agent"].push_back(
            {{"id", a.id}, {"command", a.command}, {"model", a.model}, {"env", a.env}});
      j["prompt"] = t.prompt;
      break;
    }
    if (t.worktree)
      j["worktree"] = {
          {"path", t.worktree->path}, {"branch", t.worktree->branch}, {"base", t.worktree->base}};
    if (t.approval)
      j["approval"] = {{"title", t.approval->title},
                       {"summary", t.approval->summary},
                       {"on_deny", to_string(t.approval->on_deny)}};
    if (t.cache) j["cache"] = {{"by", t.cache->by}, {"version", t.cache->version}};
    if (!t.needs.empty()) j["needs"] = t.needs;
    if (!t.output.empty()) j["output"] = t.output;
    if (!t.output_schema.is_null()) j["output_schema"] = t.output_schema;
    if (t.retries) j["retries"] = t.retries;
    if (t.retry)
      j["retry"] = {{"initial_ms", t.retry->initial_ms},
                    {"backoff", t.retry->backoff},
                    {"max_ms", t.retry->max_ms},
                    {"jitter", t.retry->jitter}};
    if (t.timeout_ms) j["timeout_ms"] = *t.timeout_ms;
    if (t.heartbeat_timeout_ms) j["heartbeat_timeout_ms"] = *t.heartbeat_timeout_ms;
    if (!t.skip_if.is_null()) j["skip_if"] = t.skip_if;
    if (t.continue_on_fail) j["continue_on_fail"] = true;
    if (!t.label.empty()) j["label"] = t.label;
    if (!t.env.empty()) j["env"] = t.env;
    if (!t.cwd.empty()) j["cwd"] = t.cwd;
    return j;
  }
  json kids = json::array();
  for (const auto& c : n.children)
    kids.push_back(reference(c));
  json j = {{to_string(n.kind), std::move(kids)}};
  if (n.max_concurrency) j["max_concurrency"] = *n.max_concurrency;
  return j;
}

node every_option(const std::string& id) {
  node n = shell_task(id, "echo \"{{input.x}}\" | tr a-z A-Z\n");
  n.needs({"a", "b-2"})
      .retries(3)
      .retry(retry_policy{250, 1.5, 9000, 0.25})
      .timeout_ms(5000)
      .heartbeat_timeout_ms(700)
      .output("report")
      .label("Build \xc3\xa9t\xc3\xa9 \"quoted\"")
      .env("B", "{{outputs.a.x}}")
      .env("A", "plain")
      .cwd("/tmp/w d")
      .continue_on_fail(true)
      .skip_if(json{{"eq", {"$input.mode", "dry"}}});
  return n;
}

} // namespace

TEST_CASE("the canonical text is dump() of the tree as a JSON object") {
  node schema_task = compute_task("s", "registered");
  schema_task.output_schema(
      json{{"type", "object"}, {"properties", {{"n", {{"type", "number"}, {"minimum", 0.5}}}}}});
  const node cases[] = {
      value_task("v", json::object()),
      value_task("v", json{{"z", 1}, {"a", {1.25, "x\ty", nullptr, false}}, {"m", json::object()}}),
      command_task("c", {"git", "log", "--format=%H \"x\""}),
      command_task("c", {}),
      shell_task("sh", ""),
      compute_task("f", [](task_context&) { return json::object(); }),
      compute_task("g", "named_fn"),
      schema_task,
      every_option("all"),
      sequence({}),
      parallel({}),
      parallel({value_task("a", json::object()), every_option("b")}, 16),
      sequence({parallel({value_task("a", json::object())}, 2),
                sequence({compute_task("b", "f").retries(1), command_task("c", {"true"})}),
                parallel({})}),
      approval("ok", "Ship \"it\"?", "why", deny_action::skip),
      approval("ok", "T").needs({"a"}).label("L"),
      timer("t", 2000),
      timer_until("t", 1893495600000),
      signal("s", "ci-done", 500).retries(2),
      signal("s", "x"),
      command_task("gated", {"true"}).needs_approval("Go?", deny_action::skip),
      value_task("gated", json::object()).needs_approval(),
      command_task("cached", {"true"}).cache(),
      compute_task("cached", "f").cache({"{{outputs.a.sha}}", "v\"2"}).needs({"a"}),
      every_option("all").cache({"{{input.x}}", ""}).needs_approval("Go?"),
      agent_task("a", {{"claude", {"claude", "-p", "{{prompt}}"}, "opus", {{"K", "v"}}}},
                 "Plan {{input.goal}}"),
      agent_task("a", {{"x", {"x"}, "", {}}, {"y.1", {"y", "--model", "{{model}}"}, "m", {}}}, "")
          .worktree({"wt/{{node_id}}", "", "main"})
          .cache(),
      command_task("w", {"true"}).worktree({"p", "b/{{input.x}}", ""}),
  };
  for (const auto& n : cases) {
    CAPTURE(reference(n).dump());
    CHECK(canonical_text(n) == reference(n).dump());
    CHECK(canonical_tree(n) == reference(n));
  }
}

TEST_CASE("the canonical text is pinned: hashes of stored trees stay valid") {
  node n = parallel({value_task("a", json{{"k", "v"}}), compute_task("b", "f").needs({"a"})}, 4);
  CHECK(canonical_text(n) ==
        R"({"max_concurrency":4,"parallel":[{"task":"a","type":"value","value":{"k":"v"}},)"
        R"({"compute":"f","needs":["a"],"task":"b","type":"compute"}]})");
}

TEST_CASE("the canonical text of a cached task is pinned") {
  CHECK(canonical_text(command_task("c", {"x"}).cache({"{{input.k}}", "v2"})) ==
        R"({"cache":{"by":"{{input.k}}","version":"v2"},"run":["x"],"task":"c","type":"command"})");
  CHECK(canonical_text(compute_task("c", "f").cache()) ==
        R"({"cache":{"by":"","version":""},"compute":"f","task":"c","type":"compute"})");
  // A quote or a backslash in them is escaped as dump() escapes it.
  node odd = shell_task("s", "true").cache({"\"{{input.k}}\\", "v\n1"});
  CHECK(canonical_text(odd) == reference(odd).dump());
}

TEST_CASE("the canonical text matches dump() on random trees") {
  std::mt19937 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  std::function<node(int, int&)> make = [&](int depth, int& next_id) -> node {
    if (depth == 0 || pick(3) == 0) {
      std::string id = "t" + std::to_string(next_id++);
      node t = pick(3) == 0   ? value_task(id, json{{"i", next_id}})
               : pick(2) == 0 ? compute_task(id, "f")
                              : command_task(id, {"echo", id});
      if (pick(2)) t.retries(pick(4));
      if (pick(3) == 0) t.timeout_ms(1 + pick(1000));
      if (pick(4) == 0) t.label("L" + id);
      if (pick(4) == 0) t.retry(retry_policy{1 + pick(100), 1.0 + pick(10) / 4.0, 1000, 0.1});
      if (t.task->kind != task_kind::value && pick(3) == 0)
        t.cache({pick(2) ? "{{input.k" + id + "}}" : "", pick(2) ? "v" + id : ""});
      return t;
    }
    std::vector<node> kids;
    int k = pick(5);
    for (int i = 0; i < k; ++i)
      kids.push_back(make(depth - 1, next_id));
    if (pick(2)) return sequence(std::move(kids));
    return parallel(std::move(kids),
                    pick(2) ? std::optional<std::int64_t>(1 + pick(32)) : std::nullopt);
  };
  for (int round = 0; round < 200; ++round) {
    int next_id = 0;
    node n = make(4, next_id);
    REQUIRE(canonical_text(n) == reference(n).dump());
  }
}

TEST_CASE("ill-formed UTF-8 in the tree is refused, as dump() refuses it") {
  node n = value_task("v", json::object());
  n.label("bad \xff byte");
  CHECK_THROWS_AS(reference(n).dump(), json::type_error);
  CHECK_THROWS_AS(canonical_text(n), json::type_error);
}

namespace {

struct branch_case {
  const char* name;
  std::unordered_map<std::string, json> outputs;
  std::unordered_set<node_key, node_key_hash> ended;
  bool with_else;
  std::vector<std::string> mounted; // task ids of the rendered tree, in order
  bool undecided;
};

void task_ids(const node& n, std::vector<std::string>& out) {
  if (n.is_task()) {
    out.push_back(n.id);
    return;
  }
  for (const auto& c : n.children)
    task_ids(c, out);
}

} // namespace

TEST_CASE("render decides a branch on committed outputs, and waits while what it reads runs") {
  const json cond = {{"output", "check.ok"}, {"equals", true}};
  const branch_case cases[] = {
      {"undecided while check runs", {}, {}, true, {"check"}, true},
      {"then when it holds", {{"check", {{"ok", true}}}}, {{"check", 0}}, true, {"check", "deploy"}, false},
      {"else when it does not", {{"check", {{"ok", false}}}}, {{"check", 0}}, true, {"check", "report"}, false},
      {"nothing without an else", {{"check", {{"ok", false}}}}, {{"check", 0}}, false, {"check"}, false},
      {"ended without output reads as missing", {}, {{"check", 0}}, true, {"check", "report"}, false},
  };
  for (const auto& c : cases) {
    SECTION(c.name) {
      auto wf = std::make_shared<workflow>();
      wf->root = sequence({value_task("check", json::object()),
                           c.with_else ? branch("ship", cond, value_task("deploy", json::object()),
                                                value_task("report", json::object()))
                                       : branch("ship", cond, value_task("deploy", json::object()))});
      json input = json::object();
      render_context rc{"r", &input, &c.outputs, &c.ended};
      auto r = render(wf, rc);
      CHECK(r.control);
      std::vector<std::string> ids;
      task_ids(*r.root, ids);
      CHECK(ids == c.mounted);
      CHECK(r.undecided == (c.undecided ? std::vector<std::string>{"ship"} : std::vector<std::string>{}));
      // The source keeps the branch, for validation and `graph`.
      CHECK(r.source->children.at(1).kind == node_kind::branch);
      // What runs has no decided control flow left; an undecided branch
      // stays, childless, so that the scheduler waits for it.
      const node& placed = r.root->children.at(1);
      CHECK(placed.kind == (c.undecided ? node_kind::branch : node_kind::sequence));
      if (c.undecided) CHECK(placed.children.empty());
    }
  }
}

TEST_CASE("a decided branch changes the tree's hash; a tree without control flow is shared") {
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({value_task("check", json::object()),
                       branch("ship", {{"output", "check.ok"}, {"equals", true}},
                              value_task("deploy", json::object()))});
  json input = json::object();
  std::unordered_map<std::string, json> none, outs{{"check", {{"ok", true}}}};
  std::unordered_set<node_key, node_key_hash> ended{node_key{"check", 0}};
  auto before = render(wf, render_context{"r", &input, &none, nullptr});
  auto after = render(wf, render_context{"r", &input, &outs, &ended});
  CHECK(before.hash != after.hash);

  auto plain = std::make_shared<workflow>();
  plain->root = sequence({value_task("a", json::object())});
  auto r = render(plain, render_context{"r", &input, &none, nullptr});
  CHECK_FALSE(r.control);
  CHECK(r.root.get() == &plain->root);
  CHECK(r.source == r.root);
}

namespace {

std::shared_ptr<workflow> fan_out_workflow(std::string items) {
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({value_task("list", json::object()),
                       for_each("each", std::move(items), "f",
                                command_task("t-{{f.name}}", {"echo", "{{f.size}}"})
                                    .needs({"list"}))});
  return wf;
}

} // namespace

TEST_CASE("render fans a for_each out over its items, each task with the item's id and locals") {
  json input = {{"files", {{{"name", "a"}, {"size", 1}}, {{"name", "b"}, {"size", 2}}}}};
  std::unordered_map<std::string, json> none;
  auto r = render(fan_out_workflow("input.files"), render_context{"r", &input, &none, nullptr});
  const node& group = r.root->children.at(1);
  CHECK(group.kind == node_kind::parallel);
  REQUIRE(group.children.size() == 2);
  CHECK(group.children[0].id == "t-a");
  CHECK(group.children[1].id == "t-b");
  CHECK(group.children[1].task->locals == json{{"f", {{"name", "b"}, {"size", 2}}}, {"f_index", 1}});
  // Templates stay for the attempt (a script's values never splice in).
  CHECK(group.children[1].task->argv == std::vector<std::string>{"echo", "{{f.size}}"});
  CHECK(r.undecided.empty());
}

TEST_CASE("a for_each over an output waits for its node, then fans out") {
  json input = json::object();
  std::unordered_map<std::string, json> outs{{"list", {{"files", {{{"name", "x"}}}}}}};
  std::unordered_set<node_key, node_key_hash> ended{node_key{"list", 0}};
  auto wf = fan_out_workflow("outputs.list.files");
  auto before = render(wf, render_context{"r", &input, &outs, nullptr});
  CHECK(before.undecided == std::vector<std::string>{"each"});
  CHECK(before.root->children.at(1).kind == node_kind::for_each);
  CHECK(before.root->children.at(1).children.empty());
  auto after = render(wf, render_context{"r", &input, &outs, &ended});
  REQUIRE(after.root->children.at(1).children.size() == 1);
  CHECK(after.root->children.at(1).children[0].id == "t-x");
}

TEST_CASE("a for_each refuses items that are missing, not an array, or give bad or equal ids") {
  struct row {
    const char* name;
    json input;
    std::string message;
  };
  const row rows[] = {
      {"missing", json::object(), "does not exist"},
      {"not an array", {{"files", {{"name", "a"}}}}, "is not an array (object)"},
      {"equal ids", {{"files", {{{"name", "a"}}, {{"name", "a"}}}}}, "two nodes get the id \"t-a\""},
      {"bad id", {{"files", {{{"name", "a b"}}}}}, "gives \"t-a b\""},
      {"missing template value", {{"files", {{{"size", 1}}}}}, ""},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      std::unordered_map<std::string, json> none;
      try {
        render(fan_out_workflow("input.files"), render_context{"r", &r.input, &none, nullptr});
        FAIL("rendered");
      } catch (const smithers_error& e) {
        INFO(e.what());
        if (std::string{r.name} == "missing template value")
          CHECK(e.code() == errc::template_missing_value);
        else
          CHECK(e.code() == errc::invalid_input);
        CHECK(std::string{e.what()}.find(r.message) != std::string::npos);
      }
    }
  }
}

TEST_CASE("render keys a loop's body by its iteration, nested loops by both, from loop states") {
  auto wf = std::make_shared<workflow>();
  wf->root = loop("outer",
                  sequence({compute_task("check", "f"),
                            branch("b", {{"output", "check.ok"}, {"equals", true}},
                                   compute_task("yes", "f")),
                            loop("inner", compute_task("step", "f").needs({"check"}), nullptr)}),
                  nullptr);
  json input = json::object();
  std::unordered_map<std::string, json> outs{{"check", {{"ok", true}}}};
  // outer is in iteration 1; check ended only in iteration 0.
  std::unordered_set<node_key, node_key_hash> ended{node_key{"check", 0}};
  std::unordered_map<std::string, loop_state> loops{{"outer", {1, false}}, {"inner@1", {4, false}}};
  auto r = render(wf, render_context{"r", &input, &outs, &ended, &loops});
  std::vector<std::string> keys;
  std::vector<const node*> stack{r.root.get()};
  while (!stack.empty()) {
    const node* n = stack.back();
    stack.pop_back();
    if (n->is_task()) keys.push_back(to_string(node_key{n->id, n->iteration}));
    for (auto it = n->children.rbegin(); it != n->children.rend(); ++it)
      stack.push_back(&*it);
  }
  // The branch waits for this iteration's check, not the last one's.
  CHECK(keys == std::vector<std::string>{"check@1", "step@1@4"});
  CHECK(r.undecided == std::vector<std::string>{"b"});
  // A need inside the inner loop names the outer iteration's node.
  const node& inner = r.root->children.at(0).children.at(2);
  CHECK(inner.kind == node_kind::loop);
  CHECK(inner.id == "inner@1");
  CHECK(inner.iteration == 4);
  CHECK(inner.children.at(0).task->needs == std::vector<std::string>{"check"});

  // Once check@1 has ended the branch is decided; another iteration is
  // another tree.
  ended.insert(node_key{"check", 1});
  auto decided = render(wf, render_context{"r", &input, &outs, &ended, &loops});
  CHECK(decided.undecided.empty());
  loops["outer"] = {2, false};
  auto next = render(wf, render_context{"r", &input, &outs, &ended, &loops});
  CHECK(next.hash != decided.hash);
  CHECK(next.root->children.at(0).children.at(0).iteration == 2);
}

TEST_CASE("loops a for_each gives one id are refused, like tasks") {
  auto wf = std::make_shared<workflow>();
  wf->root = for_each("each", "input.files", "f",
                      loop("retry-{{f.kind}}",
                           value_task("t-{{f.name}}", json::object()), nullptr));
  json input = {{"files", {{{"name", "a"}, {"kind", "x"}}, {{"name", "b"}, {"kind", "x"}}}}};
  std::unordered_map<std::string, json> none;
  try {
    render(wf, render_context{"r", &input, &none, nullptr});
    FAIL("expected INVALID_INPUT");
  } catch (const smithers_error& e) {
    CHECK(e.err().code == errc::invalid_input);
    CHECK_THAT(e.err().message, Catch::Contains("two loops get the id \"retry-x\""));
  }
}

TEST_CASE("a task after nested loops needs and reads the inner node of the outer loop's iteration") {
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({loop("outer", loop("inner", compute_task("step", "f"), nullptr), nullptr),
                       command_task("after", {"echo", "{{outputs.step@0.v}}"}).needs({"step"})});
  json input = json::object();
  std::unordered_map<std::string, json> outs;
  std::unordered_map<std::string, loop_state> loops{{"outer", {3, true}}, {"inner@3", {1, true}}};
  auto r = render(wf, render_context{"r", &input, &outs, nullptr, &loops});
  const node& after = r.root->children.at(1);
  REQUIRE(after.is_task());
  // The plan resolves needs by id: "step@3" is the inner node of outer
  // iteration 3 (its current key is ("step@3", 1)).
  CHECK(after.task->needs == std::vector<std::string>{"step@3"});
  CHECK(after.task->output_ids == std::map<std::string, std::string>{{"step", "step@3"}});
}
