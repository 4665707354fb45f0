#include <catch2/catch.hpp>

#include "expr/template.hpp"

#include <map>
#include <string>
#include <vector>

using namespace smithers::spec;
using smithers::json;
using smithers::smithers_error;
namespace errc = smithers::errc;

namespace {

struct fixture {
  json input = json::parse(R"({"repo": "r", "n": 3, "ratio": 2.5, "flag": true, "none": null,
    "obj": {"a": [1, 2]}, "s": "it's", "list": ["x", "y"], "0": "zero-key"})");
  std::unordered_map<std::string, json> outputs = {
      {"count", json::parse(R"({"n": 3, "items": [{"name": "a"}, {"name": "b c"}]})")},
      {"my-node", json::parse(R"({"ok": true})")},
  };
  json locals = json::parse(R"({"item": {"id": "i1", "n": 7}, "file": "a b.txt"})");

  template_scope scope() const {
    template_scope s;
    s.input = &input;
    s.outputs = &outputs;
    s.run_id = "run-1";
    s.node_id = "b";
    s.iteration = 2;
    s.attempt = 3;
    s.locals = &locals;
    return s;
  }
};

// The error a failing expansion throws.
smithers::error expand_error(const std::string& text, const template_scope& scope) {
  try {
    expand(text, scope);
  } catch (const smithers_error& e) {
    return e.err();
  }
  FAIL("expected expand(\"" << text << "\") to throw");
  return {};
}

} // namespace

TEST_CASE("expand substitutes every root: strings verbatim, other values as compact JSON") {
  fixture f;
  struct case_t {
    const char* text;
    const char* expected;
  };
  const std::vector<case_t> cases = {
      {"no templates here", "no templates here"},
      {"", ""},
      {"{{input.repo}}", "r"},
      {"{{ input.repo }}", "r"},
      {"{{\tinput.repo\n}}", "r"},
      {"x{{input.n}}y", "x3y"},
      {"{{input.n}}{{input.n}}", "33"},
      {"{{input.ratio}}", "2.5"},
      {"{{input.flag}} {{input.none}}", "true null"},
      {"{{input.obj}}", R"({"a":[1,2]})"},
      {"{{input.obj.a}}", "[1,2]"},
      {"{{input.obj.a.1}}", "2"},
      {"{{input.0}}", "zero-key"}, // a digit segment on an object is a key
      {"{{input.list.0}}-{{input.list.1}}", "x-y"},
      {"{{outputs.count.n}}", "3"},
      {"{{outputs.count.items.1.name}}", "b c"},
      {"{{outputs.count}}", R"({"items":[{"name":"a"},{"name":"b c"}],"n":3})"},
      {"{{outputs.my-node.ok}}", "true"},
      {"{{iteration}}/{{attempt}}", "2/3"},
      {"{{run_id}}:{{node_id}}", "run-1:b"},
      {"{{item.id}}", "i1"},
      {"{{item}}", R"({"id":"i1","n":7})"},
      {"{{file}}", "a b.txt"},
      {"}} and { are literal", "}} and { are literal"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    CHECK(expand(c.text, f.scope()) == c.expected);
  }
}

TEST_CASE("expand substitutes the whole input") {
  fixture f;
  CHECK(expand("{{input}}", f.scope()) == f.input.dump());
}

TEST_CASE("a for_each variable shadows a built-in root of the same name") {
  fixture f;
  json locals = {{"input", "the item"}};
  auto s = f.scope();
  s.locals = &locals;
  CHECK(expand("{{input}}", s) == "the item");
}

TEST_CASE("a missing value is an error naming the template, never an empty string") {
  fixture f;
  struct case_t {
    const char* text;
    const char* message;
  };
  const std::vector<case_t> cases = {
      {"{{input.nope}}", R"(template "{{input.nope}}": "input" has no key "nope")"},
      {"a {{ input.obj.b }} b", R"(template "{{input.obj.b}}": "input.obj" has no key "b")"},
      {"{{input.obj.a.2}}",
       R"(template "{{input.obj.a.2}}": "input.obj.a" has 2 items, no index 2)"},
      {"{{input.obj.a.99999999999999999999999}}",
       R"(template "{{input.obj.a.99999999999999999999999}}": )"
       R"("input.obj.a" has 2 items, no index 99999999999999999999999)"},
      {"{{input.obj.a.x}}",
       R"(template "{{input.obj.a.x}}": "input.obj.a" is an array; "x" is not an index)"},
      {"{{input.repo.x}}",
       R"(template "{{input.repo.x}}": "input.repo" is a string and has no "x")"},
      {"{{input.none.x}}", R"(template "{{input.none.x}}": "input.none" is null and has no "x")"},
      {"{{outputs.other.n}}", R"(template "{{outputs.other.n}}": node "other" has no output)"},
      {"{{outputs.count.missing}}",
       R"(template "{{outputs.count.missing}}": "outputs.count" has no key "missing")"},
      {"{{outputs.count.items.0.name.x}}",
       R"(template "{{outputs.count.items.0.name.x}}": )"
       R"("outputs.count.items.0.name" is a string and has no "x")"},
      {"{{item.nope}}", R"(template "{{item.nope}}": "item" has no key "nope")"},
      {"{{other.x}}", R"(template "{{other.x}}": "other" is not defined here)"},
      {"{{iteration.x}}", R"(template "{{iteration.x}}": "iteration" has no fields)"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    auto e = expand_error(c.text, f.scope());
    CHECK(e.code == errc::template_missing_value);
    CHECK(e.message == c.message);
  }
}

TEST_CASE("a missing output map, input or locals is a missing value") {
  template_scope empty;
  auto e = expand_error("{{outputs.count.n}}", empty);
  CHECK(e.code == errc::template_missing_value);
  CHECK(e.message == R"(template "{{outputs.count.n}}": node "count" has no output)");
  CHECK(e.details == json{{"template", "{{outputs.count.n}}"}});

  CHECK(expand_error("{{input.a}}", empty).message ==
        R"(template "{{input.a}}": there is no input)");
  CHECK(expand_error("{{item.id}}", empty).message ==
        R"(template "{{item.id}}": "item" is not defined here)");
  // the built-ins without data still expand
  CHECK(expand("{{iteration}} {{attempt}} [{{run_id}}]", empty) == "0 1 []");
}

TEST_CASE("expand rejects malformed templates as an invalid workflow") {
  fixture f;
  auto text =
      GENERATE("{{input.a", "x {{}}", "{{ }}", "{{input..a}}", "{{input.a b}}", "{{outputs}}");
  INFO(text);
  CHECK(expand_error(text, f.scope()).code == errc::invalid_workflow);
}

TEST_CASE("check_template reports syntax problems and unknown roots at the given path") {
  struct case_t {
    const char* text;
    std::vector<std::string> locals;
    std::vector<std::string> messages; // all at path "root.run"
  };
  const std::string hint = " (paths are dotted names, e.g. {{input.repo}})";
  const std::string roots = "(expected input, outputs, iteration, run_id, node_id, attempt";
  const std::vector<case_t> cases = {
      {"plain text", {}, {}},
      {"{{input.a}} {{outputs.x.y}} {{iteration}} {{run_id}} {{node_id}} {{attempt}}", {}, {}},
      {"{{input}} {{ outputs.x }}", {}, {}},
      {"{{item.a}}", {"item"}, {}},
      {"echo {{input.a", {}, {R"(unclosed "{{" at offset 5)"}},
      {"{{input.a}} {{", {}, {R"(unclosed "{{" at offset 12)"}},
      {"a {{}}", {}, {R"(empty template "{{}}")"}},
      {"{{  }}", {}, {R"(empty template "{{}}")"}},
      {"{{input..a}}", {}, {R"(template "{{input..a}}" has an empty path segment)"}},
      {"{{input.a.}}", {}, {R"(template "{{input.a.}}" has an empty path segment)"}},
      {"{{.a}}", {}, {R"(template "{{.a}}" has an empty path segment)"}},
      {"{{input.a b}}",
       {},
       {R"(template "{{input.a b}}" contains an invalid character ' ')" + hint}},
      {"{{{input.a}}}",
       {},
       {R"(template "{{{input.a}}" contains an invalid character '{')" + hint}},
      {"{{outputs}}", {}, {R"(template "{{outputs}}" needs a node id: {{outputs.<node_id>...}})"}},
      {"{{attempt.n}}", {}, {R"(template "{{attempt.n}}": "attempt" has no fields)"}},
      {"{{foo.bar}}", {}, {R"(unknown name "foo" in template "{{foo.bar}}" )" + roots + ")"}},
      {"{{item.a}}",
       {"file"},
       {R"(unknown name "item" in template "{{item.a}}" )" + roots + ", file)"}},
      {"{{foo}} {{input.a}} {{}}",
       {},
       {R"(unknown name "foo" in template "{{foo}}" )" + roots + ")", R"(empty template "{{}}")"}},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    problems expected;
    for (const auto& m : c.messages)
      expected.push_back({"root.run", m});
    CHECK(check_template(c.text, "root.run", c.locals) == expected);
  }
}

TEST_CASE("template_output_refs lists each referenced node id once, in order") {
  CHECK(template_output_refs("{{outputs.b.x}} {{input.c}} {{ outputs.a }} {{outputs.b.y}}") ==
        std::vector<std::string>{"b", "a"});
  CHECK(template_output_refs("no refs {{input.a}}").empty());
  // malformed templates refer to nothing
  CHECK(template_output_refs("{{outputs}} {{outputs..a}} {{outputs.z").empty());
}

TEST_CASE("has_template detects an opening mark") {
  CHECK(has_template("a {{b}}"));
  CHECK(has_template("{{"));
  CHECK_FALSE(has_template("a { b } }}"));
  CHECK_FALSE(has_template(""));
}

TEST_CASE("find_path follows dotted keys and array indexes") {
  json doc = json::parse(R"({"a": {"b": [10, {"c": "x"}]}, "5": "five", "e": null})");
  struct case_t {
    const char* path;
    const json* expected; // nullptr: missing
  };
  const std::vector<case_t> cases = {
      {"", &doc},
      {"a.b.0", &doc["a"]["b"][0]},
      {"a.b.1.c", &doc["a"]["b"][1]["c"]},
      {"5", &doc["5"]},
      {"e", &doc["e"]},
      {"a.b.2", nullptr},
      {"a.b.x", nullptr},
      {"a.b.-1", nullptr},
      {"a.c", nullptr},
      {"e.x", nullptr},
      {"a..b", nullptr},
      {"a.", nullptr},
      {".a", nullptr},
      {"a.b.0.x", nullptr},
      {"a.b.184467440737095516160", nullptr},
  };
  for (const auto& c : cases) {
    INFO(c.path);
    CHECK(find_path(doc, c.path) == c.expected);
  }
}

TEST_CASE("outputs.X@N reads iteration N through the scope; a malformed N is refused") {
  json input = json::object();
  std::unordered_map<std::string, json> latest{{"review", {{"ok", true}, {"n", 3}}}};
  std::map<std::int64_t, json> history{{0, {{"ok", false}, {"n", 0}}}, {3, latest["review"]}};
  template_scope scope;
  scope.input = &input;
  scope.outputs = &latest;
  scope.output_at = [&](std::string_view id, std::int64_t n) -> const json* {
    if (id != "review") return nullptr;
    auto it = history.find(n);
    return it == history.end() ? nullptr : &it->second;
  };
  CHECK(expand("{{outputs.review.n}} {{outputs.review@0.n}} {{outputs.review@3.ok}}", scope) ==
        "3 0 true");
  try {
    expand("{{outputs.review@1.n}}", scope);
    FAIL("expected TEMPLATE_MISSING_VALUE");
  } catch (const smithers_error& e) {
    CHECK(e.err().code == errc::template_missing_value);
    CHECK_THAT(e.err().message, Catch::Contains("no output in iteration 1"));
  }
  for (const char* bad : {"{{outputs.review@x.n}}", "{{outputs.review@.n}}", "{{outputs.@1.n}}"}) {
    CAPTURE(bad);
    CHECK_FALSE(check_template(bad, "p").empty());
  }
  CHECK(check_template("{{outputs.review@12.n}}", "p").empty());
  CHECK(template_output_refs("{{outputs.review@2.n}}") == std::vector<std::string>{"review"});
}

TEST_CASE(
    "an agent's command: only {{prompt}} and {{model}}, and a value never becomes an option") {
  CHECK_FALSE(agent_command_template("claude"));
  CHECK_FALSE(agent_command_template("--model={{model}}"));
  CHECK_FALSE(agent_command_template("{{ prompt }}"));
  CHECK(agent_command_template("{{input.x}}") == std::optional<std::string>{"input.x"});
  CHECK(agent_command_template("a {{") == std::optional<std::string>{"(unclosed)"});
  struct row {
    const char* arg;
    const char* prompt;
    const char* model;
    const char* want;
    bool used;
  };
  const row rows[] = {
      {"{{prompt}}", "fix the bug", "m", "fix the bug", true},
      {"--model={{model}}", "p", "opus", "--model=opus", false},
      {"{{model}}", "p", "", "", false},
      {"x{{prompt}}y{{prompt}}", "p", "", "xpyp", true},
      {"{{prompt}}", "--dangerously-skip-permissions", "", " --dangerously-skip-permissions", true},
      {"{{model}}", "-rf", "-x", " -x", false},
      {"-p{{prompt}}", "-q", "", "-p-q", true}, // already an option: left as written
      {"{{other}}", "p", "m", "{{other}}", false},
  };
  for (const auto& r : rows) {
    INFO(r.arg);
    bool used = false;
    CHECK(fill_agent_argument(r.arg, r.prompt, r.model, used) == r.want);
    CHECK(used == r.used);
  }
}
