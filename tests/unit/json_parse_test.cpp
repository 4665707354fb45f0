// util::parse_json: the bounded parser for JSON text from outside. Deep
// values are refused while parsing, so a hostile text never becomes a DOM
// that a recursive copy, compare or dump could overflow the stack on.
#include <catch2/catch.hpp>

#include "util/json_parse.hpp"

#include <smithers/errors.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

using namespace smithers::util;
using smithers::json;
namespace errc = smithers::errc;

namespace {

std::string repeat(std::string_view s, std::size_t n) {
  std::string r;
  r.reserve(s.size() * n);
  for (std::size_t i = 0; i < n; ++i)
    r += s;
  return r;
}

// {"a":{"a":...{"leaf":1}...}}: `depth` nested objects.
std::string objects(std::size_t depth) {
  return repeat(R"({"a":)", depth - 1) + R"({"leaf":1})" + repeat("}", depth - 1);
}

// [[...[1]...]]: `depth` nested arrays.
std::string arrays(std::size_t depth) {
  return repeat("[", depth) + "1" + repeat("]", depth);
}

// {"a":[{"a":[...]}]}: objects and arrays alternating, `depth` in all.
std::string mixed(std::size_t depth) {
  std::string open, close;
  for (std::size_t i = 0; i < depth; ++i) {
    open += i % 2 == 0 ? R"({"a":)" : "[";
    close.insert(0, i % 2 == 0 ? "}" : "]");
  }
  // the innermost container holds a scalar, not an unfinished member
  if (depth % 2 == 1) {
    open.resize(open.size() - 5);
    open += "{";
  }
  return open + close;
}

std::string paths(std::string_view seg, std::size_t n) {
  return "$" + repeat(seg, n);
}

json_parse_error parse_fails(std::string_view text, json_parse_limits lim) {
  json_parse_error e;
  auto v = parse_json(text, lim, &e);
  INFO(text.substr(0, 200));
  CHECK_FALSE(v);
  return e;
}

bool is_ascii(const std::string& s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) return false;
  return true;
}

} // namespace

TEST_CASE("the text helpers nest as their names say", "[json_parse]") {
  CHECK(objects(3) == R"({"a":{"a":{"leaf":1}}})");
  CHECK(arrays(2) == "[[1]]");
  CHECK(mixed(1) == "{}");
  CHECK(mixed(2) == R"({"a":[]})");
  CHECK(mixed(3) == R"({"a":[{}]})");
  CHECK(mixed(4) == R"({"a":[{"a":[]}]})");
}

TEST_CASE("depth: the top-level container is depth 1; at the limit passes, one more does not",
          "[json_parse]") {
  struct case_t {
    std::string text;
    std::size_t max_depth;
    bool ok;
    std::string path; // of the container that is one too deep
  };
  const std::vector<case_t> cases = {
      {objects(31), 32, true, ""},
      {objects(32), 32, true, ""},
      {objects(33), 32, false, paths(".a", 32)},
      {arrays(31), 32, true, ""},
      {arrays(32), 32, true, ""},
      {arrays(33), 32, false, paths("[0]", 32)},
      {mixed(32), 32, true, ""},
      {mixed(33), 32, false, paths(".a[0]", 16)},
      {mixed(34), 32, false, paths(".a[0]", 16)},
      {arrays(1), 1, true, ""},
      {arrays(2), 1, false, "$[0]"},
      {R"({"a":1,"b":[2]})", 1, false, "$.b"},
      // siblings do not add depth; the path counts the siblings before
      {R"([[1],[2],[[3]]])", 3, true, ""},
      {R"([[1],[2],[[3]]])", 2, false, "$[2][0]"},
      {R"({"x":[],"y":{"z":[0,{}]}})", 4, true, ""},
      {R"({"x":[],"y":{"z":[0,{}]}})", 3, false, "$.y.z[1]"},
      {R"({"x":[],"y":{"z":[0,{}]}})", 2, false, "$.y.z"},
      // scalars only
      {"7", 0, true, ""},
      {"[]", 0, false, "$"},
      {"  {}", 0, false, "$"},
  };
  for (const auto& c : cases) {
    INFO(c.text << " max_depth " << c.max_depth);
    json_parse_error e;
    auto v = parse_json(c.text, {c.max_depth}, &e);
    if (c.ok) {
      CHECK(v);
      if (v) CHECK(*v == json::parse(c.text));
      continue;
    }
    REQUIRE_FALSE(v);
    CHECK(e.what == json_problem::depth);
    CHECK(e.path == c.path);
    CHECK(e.limit == c.max_depth);
    CHECK(e.actual == c.max_depth + 1);
    CHECK(e.message == "nesting depth " + std::to_string(c.max_depth + 1) +
                           " exceeds the limit of " + std::to_string(c.max_depth));
    // the byte is the bracket that opens the container
    REQUIRE(e.byte < c.text.size());
    CHECK((c.text[e.byte] == '[' || c.text[e.byte] == '{'));
  }
}

TEST_CASE("depth: the byte is the bracket that opens the first too-deep container",
          "[json_parse]") {
  auto e = parse_fails(R"({"a": [1, {"b": [[]]}], "c": [[[]]]})", {3});
  CHECK(e.path == "$.a[1].b");
  CHECK(e.byte == 16);
}

TEST_CASE("depth: a million levels are refused after the limit's worth of text", "[json_parse]") {
  const std::size_t n = 1000000;
  struct case_t {
    std::string text;
    std::string path;
    std::size_t byte; // of the 33rd bracket
  };
  const std::vector<case_t> cases = {
      {repeat("[", n), paths("[0]", 32), 32},
      {arrays(n), paths("[0]", 32), 32},
      {repeat(R"({"a":)", n), paths(".a", 32), 32 * 5},
      {repeat(R"({"a":)", n) + "1" + repeat("}", n), paths(".a", 32), 32 * 5},
      {repeat(R"([{"a":)", n / 2), paths("[0].a", 16), 16 * 6},
  };
  for (const auto& c : cases) {
    auto e = parse_fails(c.text, {32});
    CHECK(e.what == json_problem::depth);
    CHECK(e.actual == 33);
    CHECK(e.path == c.path);
    CHECK(e.byte == c.byte);
  }
}

TEST_CASE("duplicate keys are refused at the member's path", "[json_parse]") {
  const std::string long_key(100, 'k');
  struct case_t {
    std::string text;
    std::string path;
    std::string message;
    std::size_t byte; // the repeated key's opening quote
  };
  const std::vector<case_t> cases = {
      {R"({"a":1,"a":2})", "$.a", R"(duplicate key "a")", 7},
      {R"({"a":1,"b":2,"a":3})", "$.a", R"(duplicate key "a")", 13},
      {R"({"a":{"b":1},"a":2})", "$.a", R"(duplicate key "a")", 13},
      {R"({"x":{"y":[],"y":{}}})", "$.x.y", R"(duplicate key "y")", 13},
      {R"([{}, {"k":1, "k":1}])", "$[1].k", R"(duplicate key "k")", 13},
      {R"({"l":[0,[{"a b":1,"a b":2}]]})", R"($.l[1][0]["a b"])", R"(duplicate key "a b")", 18},
      {R"({"":1,"":2})", R"($[""])", R"(duplicate key "")", 6},
      // escapes are decoded first: "\u0061" is "a"
      {R"({"\u0061":1,"a":2})", "$.a", R"(duplicate key "a")", 12},
      {R"({"q\"\\":1 , "q\"\\" :2})", R"($["q\"\\"])", R"(duplicate key "q\"\\")", 13},
      {"{\"" + long_key + "\":1,\"" + long_key + "\":2}", "$[\"" + std::string(64, 'k') + "...\"]",
       "duplicate key \"" + std::string(64, 'k') + "...\"", 106},
      {"{\"caf\xc3\xa9\":1,\"caf\xc3\xa9\":2}", "$[\"caf\xc3\xa9\"]",
       "duplicate key \"caf\xc3\xa9\"", 11},
  };
  for (const auto& c : cases) {
    auto e = parse_fails(c.text, {8});
    CHECK(e.what == json_problem::duplicate_key);
    CHECK(e.path == c.path);
    CHECK(e.message == c.message);
    CHECK(e.byte == c.byte);
  }
}

TEST_CASE("keys that differ, or repeat in different objects, are not duplicates", "[json_parse]") {
  const char* texts[] = {
      R"({"a":1,"A":2,"a ":3," a":4})",
      R"([{"a":1},{"a":1}])",
      R"({"a":{"a":{"a":1}}})",
      R"({"a":[{"a":1,"b":{"a":2}}],"b":{"a":3}})",
  };
  for (const char* t : texts) {
    INFO(t);
    auto v = parse_json(t, {8}, nullptr);
    REQUIRE(v);
    CHECK(*v == json::parse(t));
  }
}

TEST_CASE("numbers that overflow a double are refused at their path", "[json_parse]") {
  struct case_t {
    std::string text;
    std::string path;
    std::string message;
    std::size_t byte; // the number's first byte
  };
  const std::string digits = "1" + std::string(400, '0');
  const std::vector<case_t> cases = {
      {"1e400", "$", "number 1e400 is out of range", 0},
      {" -1e400 ", "$", "number -1e400 is out of range", 1},
      {"[1.8e308]", "$[0]", "number 1.8e308 is out of range", 1},
      {"[1, 2.5, 1E+999]", "$[2]", "number 1E+999 is out of range", 9},
      {R"({"a":{"b":[0,-1e400]}})", "$.a.b[1]", "number -1e400 is out of range", 13},
      {R"({"a":{},"b":1e400})", "$.b", "number 1e400 is out of range", 12},
      {"[" + digits + "]", "$[0]", "number " + digits.substr(0, 40) + "... is out of range", 1},
  };
  for (const auto& c : cases) {
    auto e = parse_fails(c.text, {8});
    CHECK(e.what == json_problem::not_finite);
    CHECK(e.path == c.path);
    CHECK(e.message == c.message);
    CHECK(e.byte == c.byte);
  }
}

TEST_CASE("numbers at the edges: underflow is 0, big integers become doubles", "[json_parse]") {
  struct case_t {
    const char* text;
    json expected;
  };
  const std::vector<case_t> cases = {
      {"1e-400", 0.0},
      {"-1e-400", -0.0},
      {"1.7976931348623157e308", std::numeric_limits<double>::max()},
      {"4.9e-324", std::numeric_limits<double>::denorm_min()},
      {"18446744073709551615", std::numeric_limits<std::uint64_t>::max()},
      {"-9223372036854775808", std::numeric_limits<std::int64_t>::min()},
      {"184467440737095516160", 184467440737095516160.0},
      {"-9223372036854775809", -9223372036854775809.0},
      {"-0", 0},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    auto v = parse_json(c.text, {1}, nullptr);
    REQUIRE(v);
    CHECK(v->type() == c.expected.type());
    CHECK(v->dump() == c.expected.dump());
  }
}

TEST_CASE("max_bytes: a text of the limit is parsed, one byte more is refused unread",
          "[json_parse]") {
  const std::string text = R"({"k": [1, 2, 3]})"; // 16 bytes
  REQUIRE(text.size() == 16);
  CHECK(parse_json(text, {4, 16}, nullptr));
  CHECK(parse_json(text, {4, 0}, nullptr)); // 0: unbounded
  auto e = parse_fails(text, {4, 15});
  CHECK(e.what == json_problem::too_large);
  CHECK(e.path == "$");
  CHECK(e.limit == 15);
  CHECK(e.actual == 16);
  CHECK(e.message == "text of 16 bytes exceeds the limit of 15 bytes");
  // refused before parsing: the size, not the syntax, is the problem
  CHECK(parse_fails("[[[[[[[[[[[[", {2, 4}).what == json_problem::too_large);
}

TEST_CASE("syntax errors say what, at which byte, line and column", "[json_parse]") {
  struct case_t {
    std::string text;
    std::size_t byte;
    std::string path;
    std::string message;
  };
  const std::vector<case_t> cases = {
      {"", 0, "$",
       "syntax error while parsing value at byte 0 (line 1, column 1): unexpected end of input; "
       "expected '[', '{', or a literal"},
      {"  \n ", 4, "$",
       "syntax error while parsing value at byte 4 (line 2, column 2): unexpected end of input; "
       "expected '[', '{', or a literal"},
      {"[1,2", 4, "$",
       "syntax error while parsing array at byte 4 (line 1, column 5): unexpected end of input; "
       "expected ']'"},
      {"[1] x", 4, "$",
       "syntax error while parsing value at byte 4 (line 1, column 5): invalid literal; expected "
       "end of input"},
      {"{}{}", 2, "$",
       "syntax error while parsing value at byte 2 (line 1, column 3): unexpected '{'; expected "
       "end of input"},
      {R"({"a":1,})", 7, "$",
       "syntax error while parsing object key at byte 7 (line 1, column 8): unexpected '}'; "
       "expected string literal"},
      {"{\n  \"a\": {\"b\": tru}\n}", 18, "$.a.b",
       "syntax error while parsing value at byte 18 (line 2, column 17): invalid literal"},
      {R"({"a" 1})", 5, "$.a",
       "syntax error while parsing object separator at byte 5 (line 1, column 6): unexpected "
       "number literal; expected ':'"},
      {"[1, [2, x]]", 8, "$[1]",
       "syntax error while parsing value at byte 8 (line 1, column 9): invalid literal"},
      {"[\"abc", 5, "$",
       "syntax error while parsing value at byte 5 (line 1, column 6): invalid string: missing "
       "closing quote"},
      {"[\"ok\xff\"]", 4, "$",
       "syntax error while parsing value at byte 4 (line 1, column 5): invalid string: "
       "ill-formed UTF-8 byte"},
      {"{\"k\xc0\xaf\":1}", 3, "$",
       "syntax error while parsing object key at byte 3 (line 1, column 4): invalid string: "
       "ill-formed UTF-8 byte; expected string literal"},
      {R"(["\ud800"])", 8, "$",
       "syntax error while parsing value at byte 8 (line 1, column 9): invalid string: surrogate "
       "U+D800..U+DBFF must be followed by U+DC00..U+DFFF"},
      {"[NaN]", 1, "$",
       "syntax error while parsing value at byte 1 (line 1, column 2): invalid literal"},
      {"[1,]", 3, "$",
       "syntax error while parsing value at byte 3 (line 1, column 4): unexpected ']'; expected "
       "'[', '{', or a literal"},
      {"// c\n1", 0, "$",
       "syntax error while parsing value at byte 0 (line 1, column 1): invalid literal"},
      {"\"a\tb\"", 2, "$",
       "syntax error while parsing value at byte 2 (line 1, column 3): invalid string: control "
       "character U+0009 (HT) must be escaped to \\u0009 or \\t"},
  };
  for (const auto& c : cases) {
    auto e = parse_fails(c.text, {8});
    CHECK(e.what == json_problem::syntax);
    CHECK(e.byte == c.byte);
    CHECK(e.path == c.path);
    CHECK(e.message == c.message);
  }
}

TEST_CASE("a NUL byte anywhere is a syntax error at its byte", "[json_parse]") {
  using namespace std::string_literals;
  struct case_t {
    std::string text;
    std::size_t byte;
    std::string where;
  };
  const std::vector<case_t> cases = {
      {"[1]\0"s, 3, "at byte 3 (line 1, column 4)"}, // nlohmann alone accepts these two
      {"[1]\0junk"s, 3, "at byte 3 (line 1, column 4)"},
      {"\0"s, 0, "at byte 0 (line 1, column 1)"},
      {"[1,\0]"s, 3, "at byte 3 (line 1, column 4)"},
      {"{\"a\":\n\"x\0y\"}"s, 8, "at byte 8 (line 2, column 3)"},
  };
  for (const auto& c : cases) {
    auto e = parse_fails(c.text, {8});
    CHECK(e.what == json_problem::syntax);
    CHECK(e.byte == c.byte);
    CHECK(e.path == "$");
    CHECK(e.message == "syntax error " + c.where + ": unexpected NUL byte");
  }
}

TEST_CASE("syntax error messages never echo the text", "[json_parse]") {
  const std::string texts[] = {
      "[\"" + std::string(100000, 's') + "\xff\"]",
      "\"" + std::string(100000, 's'),
      "{\"" + std::string(5000, 'k') + "\xed\xa0\x80\":1}",
      "[1, \xe2\x82\xac]",
      "tru\x01",
  };
  for (const auto& t : texts) {
    auto e = parse_fails(t, {8});
    CHECK(e.what == json_problem::syntax);
    INFO(e.message);
    CHECK(e.message.size() < 200);
    CHECK(is_ascii(e.message));
    CHECK(e.message.find("last read") == std::string::npos);
  }
}

TEST_CASE("valid documents parse as json::parse parses them", "[json_parse]") {
  const std::string corpus[] = {
      "{}",
      "[]",
      "\"\"",
      "null",
      "true",
      "false",
      "0",
      "-0.0",
      "-12",
      "1.5",
      "-2.5e-3",
      "1E3",
      "6.02214076e23",
      "9223372036854775807",
      "18446744073709551615",
      "184467440737095516160",
      "-9223372036854775809",
      "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
      R"("\u00e9\u20ac\ud83d\ude00 \" \\ \/ \b\f\n\r\t \u0000")",
      R"({"\u00e9": "key with an escape"})",
      " \t\r\n [ 1 , { \"a\" : [ ] } ] \n",
      "\xef\xbb\xbf{\"bom\": true}",
      R"({"b":1,"a":2,"c":{"z":[1,2,{"y":null}],"x":{}}})",
      R"([[], {}, [[]], [{}], {"a": {}}, "", 0, false])",
      R"({"name":"run","input":{"n":-3,"list":[1.25,"two",null,true],"nested":{"deep":{"er":[[1],[2]]}}}})",
  };
  for (const auto& t : corpus) {
    INFO(t);
    json_parse_error e;
    auto v = parse_json(t, {8}, &e);
    INFO(e.message);
    REQUIRE(v);
    json expected = json::parse(t);
    CHECK(*v == expected);
    CHECK(v->dump() == expected.dump()); // also types: -0.0, big integers
  }
}

TEST_CASE("a larger document parses as json::parse parses it", "[json_parse]") {
  json doc = json::array();
  for (int i = 0; i < 2000; ++i)
    doc.push_back({{"id", i},
                   {"name", "item-" + std::to_string(i)},
                   {"score", i * 0.25 - 100},
                   {"tags", {"a", i % 2 == 0, nullptr}},
                   {"sub", {{"k", {{"v", i}}}}}});
  const std::string text = doc.dump(2);
  auto v = parse_json(text, {4}, nullptr);
  REQUIRE(v);
  CHECK(*v == doc);
}

TEST_CASE("err may be null; text may be a null view", "[json_parse]") {
  CHECK(parse_fails(std::string_view{}, {4}).byte == 0);
  CHECK_FALSE(parse_json("[", {4}, nullptr));
  CHECK_FALSE(parse_json("[[]]", {1}, nullptr));
  CHECK_FALSE(parse_json("[]", {4, 1}, nullptr));
}

TEST_CASE("to_error names the code, the path and the problem", "[json_parse]") {
  struct case_t {
    std::string text;
    json_parse_limits lim;
    std::string message;
    json details;
  };
  const std::vector<case_t> cases = {
      {R"({"a":[[1]]})",
       {2},
       "input $.a[0]: nesting depth 3 exceeds the limit of 2",
       {{"path", "$.a[0]"}, {"limit", 2}, {"actual", 3}}},
      {R"({"a b":1,"a b":2})",
       {2},
       R"(input $["a b"]: duplicate key "a b")",
       {{"path", R"($["a b"])"}}},
      {R"({"n":[1e400]})", {2}, "input $.n[0]: number 1e400 is out of range", {{"path", "$.n[0]"}}},
      {"[1",
       {2},
       "input $: syntax error while parsing array at byte 2 (line 1, column 3): "
       "unexpected end of input; expected ']'",
       {{"path", "$"}, {"byte", 2}}},
      {"[1, 2]",
       {2, 5},
       "input $: text of 6 bytes exceeds the limit of 5 bytes",
       {{"path", "$"}, {"limit", 5}, {"actual", 6}}},
  };
  for (const auto& c : cases) {
    auto e = parse_fails(c.text, c.lim);
    auto err = to_error(e, errc::invalid_input, "input");
    CHECK(err.code == errc::invalid_input);
    CHECK(err.message == c.message);
    CHECK(err.details == c.details);
  }
  auto e = parse_fails("{", {2});
  CHECK(to_error(e, errc::invalid_workflow, "workflow file").message ==
        "workflow file $: syntax error while parsing object key at byte 1 (line 1, column 2): "
        "unexpected end of input; expected string literal");
}
