#include <catch2/catch.hpp>

#include "expr/predicate.hpp"
#include "util/json_bounds.hpp"

#include <string>
#include <vector>

using namespace smithers::spec;
using smithers::json;

namespace {

const json input = json::parse(R"({"dry_run": true, "n": 5, "name": "x", "none": null,
  "tags": ["a", "b"], "nested": {"deep": {"v": 2.5}}})");

const std::unordered_map<std::string, json> outputs = {
    {"check", json::parse(R"({"ok": true, "score": 7, "label": "green", "items": [{"id": 1}]})")},
    {"empty", json::object()},
};

bool eval(const char* predicate) {
  return evaluate(json::parse(predicate), input, outputs);
}

json nested_not(std::size_t levels) {
  json p = {{"input", "n"}, {"exists", true}};
  for (std::size_t i = 1; i < levels; ++i)
    p = json{{"not", p}};
  return p;
}

} // namespace

TEST_CASE("check_predicate accepts every operator and combinator") {
  auto p =
      GENERATE(R"({"output": "check.ok", "equals": true})",
               R"({"output": "check.ok", "not_equals": {"a": [1]}})",
               R"({"input": "dry_run", "exists": false})", R"({"output": "check.score", "gt": 1})",
               R"({"output": "check.score", "gte": 1.5})", R"({"output": "check.score", "lt": -1})",
               R"({"output": "check.score", "lte": 0})",
               R"({"output": "check.label", "in": ["green", 1, null]})",
               R"({"output": "check", "exists": true})", R"({"input": "tags.0", "equals": "a"})",
               R"({"all": [{"input": "n", "gt": 1},
                                {"not": {"input": "x", "exists": true}}]})",
               R"({"any": [{"input": "n", "gt": 1}]})");
  INFO(p);
  CHECK(check_predicate(json::parse(p), "root.skip_if").empty());
}

TEST_CASE("check_predicate reports each problem with its path") {
  struct case_t {
    const char* predicate;
    problems expected;
  };
  const std::string ops = "equals, not_equals, exists, gt, gte, lt, lte or in";
  const std::string kinds = R"("output", "input", "all", "any" or "not")";
  const std::vector<case_t> cases = {
      {R"(true)", {{"p", "predicate must be an object, got true"}}},
      {R"({})", {{"p", "predicate needs one of " + kinds}}},
      {R"({"equals": 1})", {{"p", "predicate needs one of " + kinds}}},
      {R"({"output": "a.b", "input": "c", "equals": 1})",
       {{"p", R"(predicate has both "input" and "output"; use exactly one of )" + kinds}}},
      {R"({"all": [], "any": []})",
       {{"p", R"(predicate has both "all" and "any"; use exactly one of )" + kinds}}},
      {R"({"output": "check.ok"})", {{"p", "predicate needs an operator: " + ops}}},
      {R"({"output": "check.ok", "eq": 1})",
       {{"p.eq", R"(unknown operator "eq" (expected )" + ops + ")"},
        {"p", "predicate needs an operator: " + ops}}},
      {R"({"output": "check.ok", "equals": 1, "gt": 0})",
       {{"p", R"(predicate has more than one operator ("equals", "gt"); )"
              R"(combine separate predicates with "all")"}}},
      {R"({"output": "check.n", "gt": "3"})", {{"p.gt", R"(must be a number, got "3")"}}},
      {R"({"output": "check.n", "gte": null})", {{"p.gte", "must be a number, got null"}}},
      {R"({"output": "check.n", "lt": [1]})", {{"p.lt", "must be a number, got [1]"}}},
      {R"({"output": "check.n", "lte": true})", {{"p.lte", "must be a number, got true"}}},
      {R"({"output": "check.n", "in": "abc"})",
       {{"p.in", R"(must be an array of values, got "abc")"}}},
      {R"({"output": "check.n", "exists": 1})", {{"p.exists", "must be true or false, got 1"}}},
      {R"({"output": 3, "equals": 1})",
       {{"p.output", R"(must be a dotted path "<node_id>.<field>...", got 3)"}}},
      {R"({"output": "", "equals": 1})",
       {{"p.output", R"(must be a dotted path "<node_id>.<field>...", got "")"}}},
      {R"({"input": "", "equals": 1})",
       {{"p.input", R"(must be a dotted path "<field>.<field>...", got "")"}}},
      {R"({"output": "a..b", "equals": 1})", {{"p.output", R"(path "a..b" has an empty segment)"}}},
      {R"({"input": ".a", "equals": 1})", {{"p.input", R"(path ".a" has an empty segment)"}}},
      {R"({"input": "a.", "equals": 1})", {{"p.input", R"(path "a." has an empty segment)"}}},
      {R"({"all": []})", {{"p.all", "must not be empty"}}},
      {R"({"any": {}})", {{"p.any", "must be an array of predicates, got {}"}}},
      {R"({"not": []})", {{"p.not", "predicate must be an object, got []"}}},
      {R"({"all": [{"input": "n", "gt": 1}], "label": "x"})",
       {{"p.label", R"(unknown key "label"; "all" takes no other keys)"}}},
      {R"({"not": {"input": "n", "exists": true}, "equals": 1})",
       {{"p.equals", R"(unknown key "equals"; "not" takes no other keys)"}}},
      {R"({"any": [{"input": "n", "gt": 1}, {"output": "c.x", "gt": "1"},
                 {"not": {"all": [{"input": "x", "bad": 1, "equals": 2}]}}]})",
       {{"p.any[1].gt", R"(must be a number, got "1")"},
        {"p.any[2].not.all[0].bad", R"(unknown operator "bad" (expected )" + ops + ")"}}},
  };
  for (const auto& c : cases) {
    INFO(c.predicate);
    CHECK(check_predicate(json::parse(c.predicate), "p") == c.expected);
  }
}

TEST_CASE("check_predicate paths start at the given base") {
  auto ps =
      check_predicate(json::parse(R"({"output": "a.b", "gt": "x"})"), "root.sequence[0].skip_if");
  REQUIRE(ps.size() == 1);
  CHECK(ps[0].path == "root.sequence[0].skip_if.gt");
}

// Found by the predicate fuzz target: a long value in a message was cut in
// the middle of a UTF-8 sequence, and the problem no longer serialized.
TEST_CASE("check_predicate cuts long values in messages at a character boundary") {
  std::string accents;
  for (int i = 0; i < 60; ++i)
    accents += "\xc3\xa9"; // e-acute
  auto ps = check_predicate(json{{"output", json::array({accents})}, {"exists", true}}, "p");
  REQUIRE(ps.size() == 1);
  CHECK(smithers::util::is_valid_utf8(ps[0].message));
  CHECK(ps[0].message.size() < 200);
  CHECK(ps[0].message.find("...") != std::string::npos);
  CHECK_NOTHROW(json(ps[0].message).dump());
}

TEST_CASE("check_predicate bounds nesting at max_predicate_depth") {
  CHECK(check_predicate(nested_not(max_predicate_depth), "p").empty());
  auto ps = check_predicate(nested_not(max_predicate_depth + 1), "p");
  REQUIRE(ps.size() == 1);
  CHECK_THAT(ps[0].message, Catch::Equals("predicate nests deeper than 64 levels"));
}

TEST_CASE("evaluate applies each operator to present values") {
  struct case_t {
    const char* predicate;
    bool expected;
  };
  const std::vector<case_t> cases = {
      {R"({"output": "check.ok", "equals": true})", true},
      {R"({"output": "check.ok", "equals": false})", false},
      {R"({"output": "check.ok", "equals": "true"})", false},
      {R"({"output": "check.score", "equals": 7.0})", true}, // 7 and 7.0 are the same number
      {R"({"output": "check.items", "equals": [{"id": 1}]})", true},
      {R"({"output": "check.label", "not_equals": "red"})", true},
      {R"({"output": "check.label", "not_equals": "green"})", false},
      {R"({"output": "check.score", "gt": 6})", true},
      {R"({"output": "check.score", "gt": 7})", false},
      {R"({"output": "check.score", "gte": 7})", true},
      {R"({"output": "check.score", "gte": 7.5})", false},
      {R"({"output": "check.score", "lt": 7.5})", true},
      {R"({"output": "check.score", "lt": 7})", false},
      {R"({"output": "check.score", "lte": 7})", true},
      {R"({"output": "check.score", "lte": 6.99})", false},
      {R"({"output": "check.label", "in": ["red", "green"]})", true},
      {R"({"output": "check.label", "in": ["red"]})", false},
      {R"({"output": "check.label", "in": []})", false},
      {R"({"output": "check.items.0.id", "equals": 1})", true},
      {R"({"output": "check", "exists": true})", true},
      {R"({"output": "empty", "equals": {}})", true},
      {R"({"input": "dry_run", "equals": true})", true},
      {R"({"input": "nested.deep.v", "gt": 2})", true},
      {R"({"input": "tags.1", "equals": "b"})", true},
      {R"({"input": "name", "exists": true})", true},
      {R"({"input": "none", "exists": true})", true}, // a present null exists
      {R"({"input": "none", "equals": null})", true},
      {R"({"input": "name", "exists": false})", false},
  };
  for (const auto& c : cases) {
    INFO(c.predicate);
    CHECK(eval(c.predicate) == c.expected);
  }
}

TEST_CASE("evaluate treats missing values as absent, never as an error") {
  struct case_t {
    const char* predicate;
    bool expected;
  };
  const std::vector<case_t> cases = {
      // missing key, missing node, index out of range, path through a scalar
      {R"({"input": "nope", "equals": null})", false},
      {R"({"output": "ghost.ok", "equals": true})", false},
      {R"({"output": "ghost", "exists": true})", false},
      {R"({"output": "check.items.5.id", "equals": 1})", false},
      {R"({"input": "name.x", "equals": "x"})", false},
      {R"({"input": "nope", "exists": false})", true},
      {R"({"input": "nope", "exists": true})", false},
      {R"({"input": "nope", "gt": 0})", false},
      {R"({"input": "nope", "gte": 0})", false},
      {R"({"input": "nope", "lt": 0})", false},
      {R"({"input": "nope", "lte": 0})", false},
      {R"({"input": "nope", "in": [null]})", false},
      // nothing equals a missing value, so it is "not equal" to anything
      {R"({"input": "nope", "not_equals": 1})", true},
      {R"({"output": "ghost.x", "not_equals": null})", true},
  };
  for (const auto& c : cases) {
    INFO(c.predicate);
    CHECK(eval(c.predicate) == c.expected);
  }
}

TEST_CASE("evaluate compares only numbers with gt, gte, lt and lte") {
  auto op = GENERATE("gt", "gte", "lt", "lte");
  // a string, a boolean and null compared with a number: all false
  for (const char* field : {"name", "dry_run", "none"}) {
    json p = {{"input", field}, {op, 0}};
    INFO(p.dump());
    CHECK_FALSE(evaluate(p, input, outputs));
  }
}

TEST_CASE("evaluate combines predicates with all, any and not") {
  const char* t = R"({"input": "dry_run", "equals": true})";
  const char* f = R"({"input": "dry_run", "equals": false})";
  auto wrap = [](const char* kind, std::vector<const char*> ps) {
    std::string s = std::string("{\"") + kind + "\": [";
    for (std::size_t i = 0; i < ps.size(); ++i)
      s += (i ? "," : "") + std::string(ps[i]);
    return s + "]}";
  };
  CHECK(eval(wrap("all", {t, t}).c_str()));
  CHECK_FALSE(eval(wrap("all", {t, f}).c_str()));
  CHECK(eval(wrap("any", {f, t}).c_str()));
  CHECK_FALSE(eval(wrap("any", {f, f}).c_str()));
  CHECK_FALSE(eval((std::string(R"({"not": )") + t + "}").c_str()));
  CHECK(eval((std::string(R"({"not": )") + f + "}").c_str()));
  CHECK(eval(R"({"all": [{"any": [{"input": "n", "gt": 10}, {"input": "n", "lt": 6}]},
                         {"not": {"output": "check.label", "in": ["red"]}}]})"));
}

TEST_CASE("not inverts the result for missing values too") {
  CHECK(eval(R"({"not": {"output": "ghost.x", "exists": true}})"));
  CHECK_FALSE(eval(R"({"not": {"output": "ghost.x", "not_equals": 1}})"));
}

TEST_CASE("predicate_output_refs lists node ids of output paths once, in order") {
  json p = json::parse(R"({"all": [
    {"output": "check.ok", "equals": true},
    {"any": [{"input": "check", "exists": true}, {"output": "lint", "exists": true}]},
    {"not": {"output": "check.score", "gt": 1}}
  ]})");
  CHECK(predicate_output_refs(p) == std::vector<std::string>{"check", "lint"});
  CHECK(predicate_output_refs(json::parse(R"({"input": "a", "exists": true})")).empty());
  CHECK(predicate_output_refs(json("garbage")).empty());
}
