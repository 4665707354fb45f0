#include <catch2/catch.hpp>

#include "util/json_bounds.hpp"

#include <smithers/limits.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace smithers::util;
using smithers::json;
namespace errc = smithers::errc;
namespace limits = smithers::limits;

namespace {

// An object whose containers nest exactly `depth` levels: {"a": {"a": ... {"leaf": 1}}}.
json nested_objects(std::size_t depth) {
  json j = {{"leaf", 1}};
  for (std::size_t i = 1; i < depth; ++i)
    j = json{{"a", std::move(j)}};
  return j;
}

// The input {"a": [[...[1]...]]}: one object plus `arrays` nested arrays.
json nested_arrays(std::size_t arrays) {
  json j = json::array({1});
  for (std::size_t i = 1; i < arrays; ++i)
    j = json::array({std::move(j)});
  return json{{"a", std::move(j)}};
}

// Arbitrarily deep without recursion or quadratic copies.
json deep_arrays(std::size_t depth) {
  json j = 1;
  for (std::size_t i = 0; i < depth; ++i) {
    json a = json::array();
    a.push_back(std::move(j));
    j = std::move(a);
  }
  return j;
}

std::string dollar_path(const char* seg, std::size_t n) {
  std::string p = "$";
  for (std::size_t i = 0; i < n; ++i)
    p += seg;
  return p;
}

// An object that serializes to exactly `size` bytes, every string within the
// string limit. Members are "kNNNNN" (fixed width) to keep the arithmetic exact.
json input_of_size(std::size_t size) {
  const std::size_t chunk = 60000;
  json j = json::object();
  std::size_t now = 2; // {}
  std::size_t i = 10000;
  // ,"kNNNNN":"" costs 12 bytes; the first member has no comma
  auto add = [&](std::size_t len) {
    now += (j.empty() ? 11 : 12) + len;
    j["k" + std::to_string(i++)] = std::string(len, 'x');
  };
  while (now + 12 + chunk <= size)
    add(chunk);
  std::size_t rest = size - now;
  if (rest >= 12)
    add(rest - (j.empty() ? 11 : 12));
  else
    j.back().get_ref<std::string&>().append(rest, 'x');
  REQUIRE(j.dump().size() == size);
  return j;
}

} // namespace

TEST_CASE("input must be a JSON object") {
  struct case_t {
    json value;
    const char* message;
  };
  const std::vector<case_t> cases = {
      {json::array(), "input must be a JSON object, got array"},
      {"s", "input must be a JSON object, got string"},
      {3, "input must be a JSON object, got number"},
      {nullptr, "input must be a JSON object, got null"},
      {true, "input must be a JSON object, got boolean"},
  };
  for (const auto& c : cases) {
    auto e = check_input_bounds(c.value);
    REQUIRE(e);
    CHECK(e->code == errc::invalid_input);
    CHECK(e->message == c.message);
  }
  CHECK_FALSE(check_input_bounds(json::object()));
  CHECK_FALSE(check_input_bounds(json::parse(R"({"repo": "r", "n": [1, {"a": null}]})")));
}

TEST_CASE("input nesting: the top-level object is depth 1, 32 levels pass, 33 do not") {
  CHECK(limits::max_input_depth == 32);
  CHECK_FALSE(check_input_bounds(nested_objects(31)));
  CHECK_FALSE(check_input_bounds(nested_objects(32)));
  auto e = check_input_bounds(nested_objects(33));
  REQUIRE(e);
  CHECK(e->code == errc::invalid_input);
  // the container at depth 33 is 32 keys below the top
  std::string path = dollar_path(".a", 32);
  CHECK(e->message == "input " + path + ": nesting depth 33 exceeds the limit of 32");
  CHECK(e->details == json{{"path", path}, {"limit", 32}, {"actual", 33}});
}

TEST_CASE("input nesting counts arrays like objects and scalars add no depth") {
  CHECK_FALSE(check_input_bounds(nested_arrays(30)));
  CHECK_FALSE(check_input_bounds(nested_arrays(31))); // 1 object + 31 arrays = 32
  auto e = check_input_bounds(nested_arrays(32));
  REQUIRE(e);
  CHECK(e->message == "input $.a" + dollar_path("[0]", 31).substr(1) +
                          ": nesting depth 33 exceeds the limit of 32");
}

TEST_CASE("input nesting far beyond the limit is refused without recursion") {
  json input = json::object();
  input["a"] = deep_arrays(200000); // moved: copying would recurse
  auto e = check_input_bounds(input);
  REQUIRE(e);
  CHECK_THAT(e->message, Catch::Contains("nesting depth 33 exceeds the limit of 32"));
}

TEST_CASE("input arrays: 512 items pass, 513 do not") {
  CHECK(limits::max_input_array_items == 512);
  auto n = GENERATE(std::size_t{0}, std::size_t{511}, std::size_t{512}, std::size_t{513});
  json input = {{"a", {{"b", {0, 0, 0, json(std::vector<int>(n, 7))}}}}};
  auto e = check_input_bounds(input);
  if (n <= 512) {
    CHECK_FALSE(e);
  } else {
    REQUIRE(e);
    CHECK(e->code == errc::invalid_input);
    CHECK(e->message == "input $.a.b[3]: array of 513 items exceeds the limit of 512 items");
    CHECK(e->details == json{{"path", "$.a.b[3]"}, {"limit", 512}, {"actual", 513}});
  }
}

TEST_CASE("input strings: 64 KiB pass, one byte more does not") {
  CHECK(limits::max_input_string_bytes == 65536);
  auto n = GENERATE(std::size_t{65535}, std::size_t{65536}, std::size_t{65537});
  json input = {{"list", {"x", std::string(n, 's')}}};
  auto e = check_input_bounds(input);
  if (n <= 65536) {
    CHECK_FALSE(e);
  } else {
    REQUIRE(e);
    CHECK(e->message == "input $.list[1]: string of 65537 bytes exceeds the limit of 65536 bytes");
  }
}

TEST_CASE("input string limits count bytes, not characters") {
  std::string euros;
  for (int i = 0; i < 21846; ++i) // 21846 x 3 bytes = 65538 bytes
    euros += "\xe2\x82\xac";
  auto e = check_input_bounds(json{{"s", euros}});
  REQUIRE(e);
  CHECK(e->message == "input $.s: string of 65538 bytes exceeds the limit of 65536 bytes");
}

TEST_CASE("input object keys are strings too and are limited the same way") {
  auto n = GENERATE(std::size_t{65535}, std::size_t{65536}, std::size_t{65537});
  json input = {{"o", {{std::string(n, 'k'), 1}}}};
  auto e = check_input_bounds(input);
  if (n <= 65536) {
    CHECK_FALSE(e);
  } else {
    REQUIRE(e);
    // reported at the object: the key itself is too long to print
    CHECK(e->message == "input $.o: object key of 65537 bytes exceeds the limit of 65536 bytes");
  }
}

TEST_CASE("input size: 1 MiB serialized passes, one byte more does not") {
  CHECK(limits::max_input_bytes == 1048576);
  auto n = GENERATE(std::size_t{1048575}, std::size_t{1048576}, std::size_t{1048577});
  auto e = check_input_bounds(input_of_size(n));
  if (n <= 1048576) {
    CHECK_FALSE(e);
  } else {
    REQUIRE(e);
    CHECK(e->code == errc::invalid_input);
    CHECK(e->message ==
          "input $: serialized size exceeds the limit of 1048576 bytes (at least 1048577 bytes)");
    CHECK(e->details == json{{"path", "$"}, {"limit", 1048576}, {"actual_at_least", 1048577}});
  }
}

TEST_CASE("input size is measured exactly when numbers make the quick estimate low") {
  // 512 nine-digit numbers: 5121 bytes serialized, but only ~1 KiB estimated
  json row = json(std::vector<int>(512, 123456789));
  const std::size_t member = 1 + 6 + 1 + row.dump().size(); // ,"rNNN":[...]
  json input = json::object();
  std::size_t now = 1; // "{}" minus the first member's comma
  for (std::size_t i = 100; now + 2 * member < limits::max_input_bytes; ++i) {
    input["r" + std::to_string(i)] = row;
    now += member;
  }
  auto n = GENERATE(std::size_t{1048576}, std::size_t{1048577});
  input["pad"] = std::string(n - now - 9, 'p'); // ,"pad":"" is 9 bytes
  REQUIRE(input.dump().size() == n);
  auto e = check_input_bounds(input);
  if (n == 1048576) {
    CHECK_FALSE(e);
  } else {
    REQUIRE(e);
    CHECK(e->message ==
          "input $: serialized size exceeds the limit of 1048576 bytes (at least 1048577 bytes)");
  }
}

TEST_CASE("input size: far too large inputs are refused without serializing them") {
  json input = input_of_size(3 * 1048576);
  auto e = check_input_bounds(input);
  REQUIRE(e);
  CHECK_THAT(e->message,
             Catch::StartsWith("input $: serialized size exceeds the limit of 1048576 bytes "
                               "(at least "));
  CHECK(e->details["actual_at_least"].get<std::size_t>() > 1048576);
  CHECK(e->details["actual_at_least"].get<std::size_t>() <= input.dump().size());
}

TEST_CASE("input with non-finite numbers or bad UTF-8 (built in C++) is refused") {
  struct case_t {
    json input;
    const char* message;
  };
  const std::vector<case_t> cases = {
      {{{"a", {1, std::nan("")}}},
       "input $.a[1]: number is not finite (NaN and Infinity are not JSON)"},
      {{{"x", std::numeric_limits<double>::infinity()}},
       "input $.x: number is not finite (NaN and Infinity are not JSON)"},
      {{{"s", "ok\xff"}}, "input $.s: string is not valid UTF-8"},
      {{{"o", {{"k\xc0\xaf", 1}}}}, "input $.o: object key is not valid UTF-8"},
  };
  for (const auto& c : cases) {
    auto e = check_input_bounds(c.input);
    REQUIRE(e);
    CHECK(e->code == errc::invalid_input);
    CHECK(e->message == c.message);
  }
}

TEST_CASE("input paths quote keys that are not identifiers") {
  json input = {{"a b", {{"0", {{"ok-key", std::string(65537, 'x')}}}}}};
  auto e = check_input_bounds(input);
  REQUIRE(e);
  CHECK(e->details["path"] == R"($["a b"]["0"].ok-key)");
}

TEST_CASE("heartbeat data may be any finite JSON") {
  auto data = GENERATE(json(nullptr), json(1), json(-2.5), json("s"), json::array({1, "a"}),
                       json{{"step", 3}, {"done", {1, 2}}});
  CHECK_FALSE(check_heartbeat_data(data));
}

TEST_CASE("heartbeat data with a non-finite number is not JSON-serializable") {
  struct case_t {
    json data;
    const char* message;
  };
  const std::vector<case_t> cases = {
      {std::nan(""), "heartbeat data $: number is not finite (NaN and Infinity are not JSON)"},
      {{{"a", {1, -std::numeric_limits<double>::infinity()}}},
       "heartbeat data $.a[1]: number is not finite (NaN and Infinity are not JSON)"},
      {{{"s", "\xed\xa0\x80"}}, "heartbeat data $.s: string is not valid UTF-8"}, // a surrogate
  };
  for (const auto& c : cases) {
    auto e = check_heartbeat_data(c.data);
    REQUIRE(e);
    CHECK(e->code == errc::heartbeat_payload_not_json);
    CHECK(e->message == c.message);
  }
}

TEST_CASE("heartbeat data: 1,000,000 bytes serialized pass, one byte more does not") {
  CHECK(limits::max_heartbeat_bytes == 1000000);
  auto n = GENERATE(std::size_t{999999}, std::size_t{1000000}, std::size_t{1000001});
  json data = std::string(n - 2, 'h'); // plus two quotes
  REQUIRE(data.dump().size() == n);
  auto e = check_heartbeat_data(data);
  if (n <= 1000000) {
    CHECK_FALSE(e);
  } else {
    REQUIRE(e);
    CHECK(e->code == errc::heartbeat_payload_too_large);
    CHECK(e->message == "heartbeat data $: serialized size exceeds the limit of 1000000 bytes "
                        "(at least 1000001 bytes)");
  }
}

TEST_CASE("heartbeat data nesting: 512 levels pass, 513 do not, far deeper does not crash") {
  CHECK_FALSE(check_heartbeat_data(deep_arrays(max_heartbeat_depth)));
  auto e = check_heartbeat_data(deep_arrays(max_heartbeat_depth + 1));
  REQUIRE(e);
  CHECK(e->code == errc::heartbeat_payload_too_large);
  CHECK_THAT(e->message, Catch::EndsWith(": nesting depth 513 exceeds the limit of 512"));
  auto deep = check_heartbeat_data(deep_arrays(500000));
  REQUIRE(deep);
  CHECK(deep->code == errc::heartbeat_payload_too_large);
}

TEST_CASE("append_path_key uses dots for identifiers and quoted brackets otherwise") {
  struct case_t {
    std::string key;
    const char* expected;
  };
  const std::vector<case_t> cases = {
      {"name", "$.name"},     {"_x-1", "$._x-1"}, {"a b", R"($["a b"])"},
      {"0", R"($["0"])"},     {"", R"($[""])"},   {"q\"uote", R"($["q\"uote"])"},
      {"a.b", R"($["a.b"])"},
  };
  for (const auto& c : cases) {
    std::string p = "$";
    append_path_key(p, c.key);
    CHECK(p == c.expected);
  }
  std::string p = "$";
  append_path_key(p, std::string(64, 'k'));
  CHECK(p == "$." + std::string(64, 'k'));
  p = "$";
  append_path_key(p, std::string(65, 'k'));
  CHECK(p == "$[\"" + std::string(64, 'k') + "...\"]");
  // cut on a character boundary: 63 ASCII bytes then a 2-byte character
  p = "$";
  append_path_key(p, std::string(63, 'k') + "\xc3\xa9\xc3\xa9");
  CHECK(p == "$[\"" + std::string(63, 'k') + "...\"]");
  p = "$";
  append_path_index(p, 12);
  CHECK(p == "$[12]");
}

TEST_CASE("is_valid_utf8 accepts well-formed UTF-8 only") {
  struct case_t {
    const char* bytes;
    bool ok;
  };
  const std::vector<case_t> cases = {
      {"", true},
      {"plain ascii, longer than eight bytes", true},
      {"h\xc3\xa9llo", true},
      {"\xe2\x82\xac", true},
      {"\xf0\x9f\x98\x80", true},
      {"\xf4\x8f\xbf\xbf", true}, // U+10FFFF
      {"\xef\xbf\xbf", true},     // U+FFFF
      {"\xff", false},
      {"\x80", false},             // lone continuation byte
      {"\xc3", false},             // truncated
      {"abcdefgh\xe2\x82", false}, // truncated after the fast path
      {"\xc0\xaf", false},         // overlong '/'
      {"\xe0\x80\xaf", false},     // overlong
      {"\xf0\x80\x80\xaf", false}, // overlong
      {"\xed\xa0\x80", false},     // surrogate U+D800
      {"\xf4\x90\x80\x80", false}, // above U+10FFFF
      {"\xe2\x28\xa1", false},     // bad continuation
  };
  for (const auto& c : cases) {
    INFO(json(c.bytes).dump(-1, ' ', true, json::error_handler_t::replace));
    CHECK(is_valid_utf8(c.bytes) == c.ok);
  }
}

TEST_CASE("output bounds: depth, size, non-finite numbers, any JSON type") {
  CHECK_FALSE(check_output_bounds(nested_objects(limits::max_output_depth), 1 << 20));
  auto deep = check_output_bounds(nested_objects(limits::max_output_depth + 1), 1 << 20);
  REQUIRE(deep);
  CHECK(deep->code == errc::invalid_output);
  CHECK(deep->message == "output " + dollar_path(".a", limits::max_output_depth) +
                             ": nesting depth 129 exceeds the limit of 128");
  // Far deeper than any stack: refused without recursion.
  auto very = check_output_bounds(deep_arrays(1000000), 1 << 20);
  REQUIRE(very);
  CHECK(very->details["actual"] == limits::max_output_depth + 1);
  auto big = check_output_bounds(json{{"s", std::string(100, 'x')}}, 50);
  REQUIRE(big);
  CHECK(big->message.find("exceeds the limit of 50 bytes") != std::string::npos);
  CHECK_FALSE(check_output_bounds(json{{"s", std::string(100, 'x')}}, 200));
  // Escapes count: 100 control bytes serialize to 600.
  json escaped{{"s", std::string(100, '\x01')}};
  REQUIRE(escaped.dump().size() == 608);
  CHECK(check_output_bounds(escaped, 607));
  CHECK_FALSE(check_output_bounds(escaped, 608));
  auto inf = check_output_bounds(json{{"x", std::numeric_limits<double>::infinity()}}, 1 << 20);
  REQUIRE(inf);
  CHECK(inf->details["path"] == "$.x");
  CHECK_FALSE(check_output_bounds(json::array({1, 2}), 100)); // the type is checked elsewhere
}

TEST_CASE("check_depth reports only nesting, with the code and the name asked for") {
  CHECK_FALSE(check_depth(deep_arrays(50), 50, errc::invalid_workflow, "workflow"));
  auto e = check_depth(deep_arrays(51), 50, errc::invalid_workflow, "workflow");
  REQUIRE(e);
  CHECK(e->code == errc::invalid_workflow);
  CHECK(e->message.rfind("workflow $[0]", 0) == 0);
  // A non-finite number is no nesting problem.
  CHECK_FALSE(check_depth(json{{"x", std::nan("")}}, 5, errc::invalid_workflow, "workflow"));
}
