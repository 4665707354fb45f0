#include <catch2/catch.hpp>

#include "schema/schema.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

using namespace smithers::spec;
using smithers::json;

namespace {

// "path: message; ..." makes failures readable in Catch output.
std::string text(const problems& ps) {
  return join(ps);
}

json nested_items_schema(std::size_t levels) {
  json s = {{"type", "string"}};
  for (std::size_t i = 1; i < levels; ++i)
    s = json{{"type", "array"}, {"items", s}};
  return s;
}

} // namespace

// ------------------------------------------------------------------ check_schema

TEST_CASE("check_schema accepts schemas that use every supported keyword") {
  json s = json::parse(R"({
    "title": "count", "description": "how many", "$comment": "c",
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object", "required": ["n", "tags"], "additionalProperties": false,
    "properties": {
      "n": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1, "examples": [1, 2]},
      "ratio": {"type": ["number", "null"], "minimum": -0.5, "maximum": 0.5},
      "tags": {"type": "array", "minItems": 1, "maxItems": 3,
               "items": {"type": "string", "minLength": 1.0, "maxLength": 4}},
      "mode": {"enum": ["a", "b", 1, null]},
      "kind": {"const": "x"},
      "any": {}
    }
  })");
  CHECK(text(check_schema(s, "outputs.count")) == "");
}

TEST_CASE("check_schema accepts equal lower and upper bounds") {
  json s = {{"minimum", 3},   {"maximum", 3.0}, {"minLength", 2},
            {"maxLength", 2}, {"minItems", 0},  {"maxItems", 0}};
  CHECK(check_schema(s, "s").empty());
}

TEST_CASE("check_schema reports each problem with the path of the offending keyword") {
  struct case_t {
    const char* schema;
    problem expected;
  };
  const std::vector<case_t> cases = {
      {R"("string")", {"outputs.x", "schema must be an object, got string"}},
      {R"({"type": "strng"})",
       {"outputs.x.type",
        "unknown type \"strng\" (expected object, array, string, number, integer, boolean or "
        "null)"}},
      {R"({"type": "Integer"})",
       {"outputs.x.type",
        "unknown type \"Integer\" (expected object, array, string, number, integer, boolean or "
        "null)"}},
      {R"({"type": 5})",
       {"outputs.x.type", "must be a type name or an array of type names, got 5"}},
      {R"({"type": []})", {"outputs.x.type", "must not be an empty array"}},
      {R"({"type": ["string", 3]})", {"outputs.x.type[1]", "must be a type name, got 3"}},
      {R"({"type": ["string", "string"]})", {"outputs.x.type[1]", "duplicate type \"string\""}},
      {R"({"properties": []})", {"outputs.x.properties", "must be an object of schemas, got []"}},
      {R"({"properties": {"n": {"type": "int"}}})",
       {"outputs.x.properties.n.type",
        "unknown type \"int\" (expected object, array, string, number, integer, boolean or null)"}},
      {R"({"properties": {"n": 3}})",
       {"outputs.x.properties.n", "schema must be an object, got number"}},
      {R"({"required": "n"})",
       {"outputs.x.required", "must be an array of property names, got \"n\""}},
      {R"({"required": ["n", 1]})",
       {"outputs.x.required[1]", "must be a property name (string), got 1"}},
      {R"({"required": ["n", "n"]})",
       {"outputs.x.required[1]", "duplicate required property \"n\""}},
      {R"({"additionalProperties": {}})",
       {"outputs.x.additionalProperties",
        "must be true or false (schemas are not supported here), got {}"}},
      {R"({"items": [{}]})",
       {"outputs.x.items", "must be a schema object (tuple arrays are not supported)"}},
      {R"({"items": {"type": "x"}})",
       {"outputs.x.items.type",
        "unknown type \"x\" (expected object, array, string, number, integer, boolean or null)"}},
      {R"({"enum": "a"})", {"outputs.x.enum", "must be an array of values, got \"a\""}},
      {R"({"enum": []})", {"outputs.x.enum", "must not be empty (no value would be valid)"}},
      {R"({"minimum": "3"})", {"outputs.x.minimum", "must be a number, got \"3\""}},
      {R"({"maximum": null})", {"outputs.x.maximum", "must be a number, got null"}},
      {R"({"minLength": -1})", {"outputs.x.minLength", "must be a non-negative integer, got -1"}},
      {R"({"maxLength": 1.5})", {"outputs.x.maxLength", "must be a non-negative integer, got 1.5"}},
      {R"({"minItems": "1"})", {"outputs.x.minItems", "must be a non-negative integer, got \"1\""}},
      {R"({"maxItems": true})", {"outputs.x.maxItems", "must be a non-negative integer, got true"}},
      {R"({"minLength": 3, "maxLength": 2})",
       {"outputs.x.minLength", "minLength 3 is greater than maxLength 2"}},
      {R"({"minItems": 3, "maxItems": 2})",
       {"outputs.x.minItems", "minItems 3 is greater than maxItems 2"}},
      {R"({"minimum": 5, "maximum": 1.5})",
       {"outputs.x.minimum", "minimum 5 is greater than maximum 1.5"}},
      {R"({"required": ["a"], "additionalProperties": false})",
       {"outputs.x.required[0]", "required property \"a\" is not in properties and "
                                 "additionalProperties is false, so no object can be valid"}},
      {R"({"title": 3})", {"outputs.x.title", "must be a string, got 3"}},
      {R"({"examples": 3})", {"outputs.x.examples", "must be an array, got 3"}},
  };
  for (const auto& c : cases) {
    INFO(c.schema);
    auto ps = check_schema(json::parse(c.schema), "outputs.x");
    REQUIRE(ps.size() == 1);
    CHECK(ps[0] == c.expected);
  }
}

TEST_CASE("check_schema names unsupported JSON Schema keywords") {
  auto kw = GENERATE("pattern", "format", "oneOf", "anyOf", "$ref", "propertyNames", "typo");
  auto ps = check_schema(json{{kw, "x"}}, "outputs.x");
  REQUIRE(ps.size() == 1);
  CHECK(ps[0].path == std::string("outputs.x.") + kw);
  CHECK_THAT(ps[0].message, Catch::StartsWith(std::string("unknown or unsupported keyword \"") +
                                              kw + "\" (supported: type, properties"));
}

TEST_CASE("check_schema reports every problem, nested ones included") {
  json s = json::parse(R"({"type": "object", "properties": {
    "count": {"type": "object", "properties": {"n": {"type": "integr"}}},
    "list": {"items": {"minLength": -2}}
  }, "requird": ["n"]})");
  auto ps = check_schema(s, "outputs");
  REQUIRE(ps.size() == 3);
  CHECK(ps[0].path == "outputs.properties.count.properties.n.type");
  CHECK(ps[1].path == "outputs.properties.list.items.minLength");
  CHECK(ps[2].path == "outputs.requird");
}

TEST_CASE("check_schema paths start at the given base") {
  json s = {{"properties", {{"n", {{"type", "int"}}}}}};
  CHECK(check_schema(s, "outputs.count")[0].path == "outputs.count.properties.n.type");
  CHECK(check_schema(s, "")[0].path == "properties.n.type");
}

TEST_CASE("check_schema bounds schema nesting at max_schema_depth") {
  CHECK(check_schema(nested_items_schema(max_schema_depth - 1), "s").empty());
  CHECK(check_schema(nested_items_schema(max_schema_depth), "s").empty());
  auto ps = check_schema(nested_items_schema(max_schema_depth + 1), "s");
  REQUIRE(ps.size() == 1);
  std::string path = "s";
  for (std::size_t i = 0; i < max_schema_depth; ++i)
    path += ".items";
  CHECK(ps[0] == problem{path, "schema nests deeper than 64 levels"});
}

// ---------------------------------------------------------------------- validate

TEST_CASE("validate matches each type name the way JSON Schema does") {
  struct case_t {
    const char* type;
    json value;
    bool ok;
  };
  const std::vector<case_t> cases = {
      {"object", json::object(), true},
      {"object", json::array(), false},
      {"array", json::array(), true},
      {"array", json::object(), false},
      {"string", "", true},
      {"string", 1, false},
      {"number", 1, true},
      {"number", 1.5, true},
      {"number", -7, true},
      {"number", "1", false},
      {"integer", 3, true},
      {"integer", -3, true},
      {"integer", 3.0, true}, // no fractional part: an integer, as in JSON Schema
      {"integer", 1e300, true},
      {"integer", 3.5, false},
      {"integer", -0.25, false},
      {"integer", "3", false},
      {"integer", std::numeric_limits<std::uint64_t>::max(), true},
      {"integer", std::numeric_limits<double>::infinity(), false},
      {"boolean", true, true},
      {"boolean", 0, false},
      {"null", nullptr, true},
      {"null", false, false},
  };
  for (const auto& c : cases) {
    INFO(c.type << " " << c.value.dump());
    CHECK(validate(json{{"type", c.type}}, c.value).empty() == c.ok);
  }
}

TEST_CASE("validate reports type mismatches as expected/got") {
  struct case_t {
    json type;
    json value;
    const char* message;
  };
  const std::vector<case_t> cases = {
      {"integer", "3", "expected integer, got string"},
      {"integer", 2.5, "expected integer, got number"},
      {"string", 3, "expected string, got integer"},
      {"string", 3.0, "expected string, got integer"},
      {"object", json::array(), "expected object, got array"},
      {"array", nullptr, "expected array, got null"},
      {"null", true, "expected null, got boolean"},
      {json{"string", "null"}, 1, "expected string or null, got integer"},
      {json{"string", "integer", "null"}, false, "expected string, integer or null, got boolean"},
  };
  for (const auto& c : cases) {
    INFO(c.type.dump() << " " << c.value.dump());
    auto ps = validate(json{{"type", c.type}}, c.value);
    REQUIRE(ps.size() == 1);
    CHECK(ps[0] == problem{"$", c.message});
  }
}

TEST_CASE("validate accepts a value that matches any type in a list") {
  json s = {{"type", {"string", "null"}}};
  CHECK(validate(s, "x").empty());
  CHECK(validate(s, nullptr).empty());
}

TEST_CASE("validate reports missing required properties and additional properties") {
  json s = json::parse(R"({"type": "object", "required": ["n", "m"],
    "properties": {"n": {"type": "integer"}, "m": {}}, "additionalProperties": false})");
  CHECK(validate(s, json{{"n", 1}, {"m", nullptr}}).empty());
  CHECK(validate(s, json{{"m", 1}}) == problems{{"$", "missing required property \"n\""}});
  CHECK(validate(s, json{{"n", 1}, {"m", 1}, {"x", 1}}) ==
        problems{{"$", "additional property \"x\" is not allowed"}});
  CHECK(validate(s, json::object()) == problems{{"$", "missing required property \"n\""},
                                                {"$", "missing required property \"m\""}});
}

TEST_CASE("validate allows additional properties unless told otherwise") {
  json s = {{"type", "object"}, {"properties", {{"n", {{"type", "integer"}}}}}};
  CHECK(validate(s, json{{"n", 1}, {"x", "anything"}}).empty());
  s["additionalProperties"] = true;
  CHECK(validate(s, json{{"n", 1}, {"x", "anything"}}).empty());
}

TEST_CASE("validate names nested problems with JSON paths") {
  json s = json::parse(R"({"type": "object", "properties": {
    "items": {"type": "array", "items": {"type": "object", "required": ["name"],
              "properties": {"name": {"type": "string"}}}},
    "meta": {"properties": {"a b": {"type": "string"}, "0": {"type": "string"}}}
  }})");
  json v = json::parse(R"({"items": [{"name": "a"}, {"name": "b"}, {"name": 3}, {}],
                           "meta": {"a b": 1, "0": 2}})");
  CHECK(validate(s, v) == problems{
                              {"$.items[2].name", "expected string, got integer"},
                              {"$.items[3]", "missing required property \"name\""},
                              {"$.meta[\"0\"]", "expected string, got integer"},
                              {"$.meta[\"a b\"]", "expected string, got integer"},
                          });
}

TEST_CASE("validate paths start at the given root") {
  json s = {{"properties", {{"n", {{"type", "integer"}}}}}};
  CHECK(validate(s, json{{"n", "x"}}, "outputs.count") ==
        problems{{"outputs.count.n", "expected integer, got string"}});
}

TEST_CASE("validate checks minimum and maximum at, below and above the bound") {
  struct case_t {
    json schema;
    json value;
    const char* message; // nullptr: valid
  };
  const std::vector<case_t> cases = {
      {{{"minimum", 3}}, 2, "must be >= 3"},
      {{{"minimum", 3}}, 3, nullptr},
      {{{"minimum", 3}}, 4, nullptr},
      {{{"minimum", 3}}, 2.999, "must be >= 3"},
      {{{"minimum", 3}}, 3.0, nullptr},
      {{{"minimum", -1.5}}, -1.6, "must be >= -1.5"},
      {{{"minimum", -1.5}}, -1.5, nullptr},
      {{{"minimum", -1.5}}, -1, nullptr},
      {{{"maximum", 10}}, 9, nullptr},
      {{{"maximum", 10}}, 10, nullptr},
      {{{"maximum", 10}}, 11, "must be <= 10"},
      {{{"maximum", 10}}, 10.0001, "must be <= 10"},
      {{{"maximum", 0.5}}, 0.5, nullptr},
      {{{"maximum", 0.5}}, 1, "must be <= 0.5"},
      // exact at the edges of 64-bit integers, where doubles round
      {{{"maximum", 9007199254740992}}, 9007199254740993, "must be <= 9007199254740992"},
      {{{"maximum", std::numeric_limits<std::uint64_t>::max()}},
       std::numeric_limits<std::uint64_t>::max(),
       nullptr},
      {{{"minimum", 0}}, std::numeric_limits<std::int64_t>::min(), "must be >= 0"},
      // bounds only constrain numbers
      {{{"minimum", 3}}, "abc", nullptr},
  };
  for (const auto& c : cases) {
    INFO(c.schema.dump() << " " << c.value.dump());
    auto ps = validate(c.schema, c.value);
    if (c.message)
      CHECK(ps == problems{{"$", c.message}});
    else
      CHECK(ps.empty());
  }
}

TEST_CASE("validate counts string length in Unicode code points") {
  struct case_t {
    json schema;
    const char* value;
    const char* message;
  };
  const std::vector<case_t> cases = {
      {{{"maxLength", 4}}, "abc", nullptr},
      {{{"maxLength", 4}}, "abcd", nullptr},
      {{{"maxLength", 4}}, "abcde", "length 5 exceeds maxLength 4"},
      {{{"minLength", 3}}, "ab", "length 2 is below minLength 3"},
      {{{"minLength", 3}}, "abc", nullptr},
      {{{"minLength", 3}}, "abcd", nullptr},
      {{{"maxLength", 0}}, "", nullptr},
      {{{"maxLength", 0}}, "a", "length 1 exceeds maxLength 0"},
      // 2-, 3- and 4-byte sequences each count as one character
      {{{"maxLength", 5}}, "h\xc3\xa9llo", nullptr},     // héllo: 6 bytes
      {{{"maxLength", 1}}, "\xe2\x82\xac", nullptr},     // €: 3 bytes
      {{{"maxLength", 1}}, "\xf0\x9f\x98\x80", nullptr}, // 😀: 4 bytes
      {{{"minLength", 2}}, "\xf0\x9f\x98\x80", "length 1 is below minLength 2"},
      {{{"maxLength", 2.0}}, "abc", "length 3 exceeds maxLength 2.0"},
  };
  for (const auto& c : cases) {
    INFO(c.schema.dump() << " " << c.value);
    auto ps = validate(c.schema, json(c.value));
    if (c.message)
      CHECK(ps == problems{{"$", c.message}});
    else
      CHECK(ps.empty());
  }
}

TEST_CASE("validate checks minItems and maxItems at, below and above the bound") {
  json s = {{"minItems", 2}, {"maxItems", 3}};
  CHECK(validate(s, json{1}) == problems{{"$", "item count 1 is below minItems 2"}});
  CHECK(validate(s, json{1, 2}).empty());
  CHECK(validate(s, json{1, 2, 3}).empty());
  CHECK(validate(s, json{1, 2, 3, 4}) == problems{{"$", "item count 4 exceeds maxItems 3"}});
  CHECK(validate(s, "not an array").empty());
}

TEST_CASE("validate checks enum and const by JSON equality") {
  json e = {{"enum", {"a", 1, nullptr}}};
  CHECK(validate(e, "a").empty());
  CHECK(validate(e, 1.0).empty()); // 1 and 1.0 are the same JSON number
  CHECK(validate(e, nullptr).empty());
  CHECK(validate(e, "b") == problems{{"$", "value is not one of the enum values [\"a\",1,null]"}});
  CHECK(validate(e, json{{"a", 1}}).size() == 1);

  json c = {{"const", {{"k", {1, 2}}}}};
  CHECK(validate(c, json{{"k", {1, 2}}}).empty());
  CHECK(validate(c, json{{"k", {2, 1}}}) ==
        problems{{"$", "value must equal the const value {\"k\":[1,2]}"}});
}

TEST_CASE("validate shortens long enum lists in messages") {
  json values = json::array();
  for (int i = 0; i < 100; ++i)
    values.push_back("value-" + std::to_string(i));
  auto ps = validate(json{{"enum", values}}, "nope");
  REQUIRE(ps.size() == 1);
  CHECK(ps[0].message.size() < 200);
  CHECK_THAT(ps[0].message, Catch::EndsWith("..."));
}

TEST_CASE("validate stops checking a value whose type is wrong") {
  json s = {{"type", "string"}, {"enum", {"a"}}, {"minLength", 3}};
  CHECK(validate(s, 5) == problems{{"$", "expected string, got integer"}});
}

TEST_CASE("validate reports every problem up to max_problems") {
  json s = {{"type", "array"}, {"items", {{"type", "integer"}}}};
  json v = json::array();
  for (int i = 0; i < 30; ++i)
    v.push_back("x");
  CHECK(validate(s, v).size() == 20); // the default
  CHECK(validate(s, v, "$", 5).size() == 5);
  CHECK(validate(s, v, "$", 100).size() == 30);
  CHECK(validate(s, v, "$", 5).back().path == "$[4]");
  // 0 would hide a failure: it counts as 1
  CHECK(validate(s, v, "$", 0).size() == 1);
}

TEST_CASE("validate accepts anything against the empty schema") {
  auto v = GENERATE(json(nullptr), json(1), json("s"), json::array({1}), json{{"a", 1}});
  CHECK(validate(json::object(), v).empty());
}

TEST_CASE("validate checks the workflow output schema (docs/workflow-format.md)") {
  json s = json::parse(R"({"type": "object", "required": ["n"],
                           "properties": {"n": {"type": "integer"}}})");
  CHECK(validate(s, json::parse(R"({"n": 3})")).empty());
  CHECK(validate(s, json::parse(R"({"n": "3"})")) ==
        problems{{"$.n", "expected integer, got string"}});
  CHECK(validate(s, json::parse(R"({"count": 3})")) ==
        problems{{"$", "missing required property \"n\""}});
}

// --------------------------------------------------------------- number helpers

TEST_CASE("compare_numbers compares mixed integer and double representations exactly") {
  const auto u64max = std::numeric_limits<std::uint64_t>::max();
  const auto i64min = std::numeric_limits<std::int64_t>::min();
  const auto i64max = std::numeric_limits<std::int64_t>::max();
  struct case_t {
    json a, b;
    int expected;
  };
  const std::vector<case_t> cases = {
      {1, 1.0, 0},
      {1, 2, -1},
      {2, 1, 1},
      {3, 3.5, -1},
      {4, 3.5, 1},
      {-3, -3.5, 1},
      {-2.5, -2, -1},
      {json(std::uint64_t{0}), -1, 1},
      {-1, json(std::uint64_t{0}), -1},
      {json(u64max), json(i64max), 1},
      {json(i64min), json(u64max), -1},
      {json(i64max), 9223372036854775808.0, -1},  // 2^63 as a double
      {json(u64max), 18446744073709551616.0, -1}, // 2^64 as a double
      {json(i64min), -9223372036854775808.0, 0},
      {json(9007199254740993), 9007199254740992.0, 1}, // 2^53 + 1 vs 2^53
      {0.1, 0.2, -1},
      {json(1), std::numeric_limits<double>::infinity(), -1},
      {json(1), -std::numeric_limits<double>::infinity(), 1},
  };
  for (const auto& c : cases) {
    INFO(c.a.dump() << " vs " << c.b.dump());
    auto r = compare_numbers(c.a, c.b);
    REQUIRE(r);
    CHECK(*r == c.expected);
    auto back = compare_numbers(c.b, c.a);
    REQUIRE(back);
    CHECK(*back == -c.expected);
  }
}

TEST_CASE("compare_numbers refuses non-numbers and NaN") {
  CHECK_FALSE(compare_numbers(json("1"), json(1)));
  CHECK_FALSE(compare_numbers(json(1), json(nullptr)));
  CHECK_FALSE(compare_numbers(json(std::nan("")), json(1)));
  CHECK_FALSE(compare_numbers(json(1.0), json(std::nan(""))));
}

TEST_CASE("is_integral and utf8_length") {
  CHECK(is_integral(json(3)));
  CHECK(is_integral(json(3.0)));
  CHECK(is_integral(json(-0.0)));
  CHECK_FALSE(is_integral(json(3.5)));
  CHECK_FALSE(is_integral(json(std::nan(""))));
  CHECK_FALSE(is_integral(json("3")));
  CHECK(utf8_length("") == 0);
  CHECK(utf8_length("abc") == 3);
  CHECK(utf8_length("h\xc3\xa9llo \xe2\x82\xac\xf0\x9f\x98\x80") == 8);
}
