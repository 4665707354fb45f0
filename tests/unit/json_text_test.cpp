// util::json_text must be nlohmann's dump() byte for byte (the store and
// the event stream compare and hash these texts), including its errors.
#include <catch2/catch.hpp>

#include "util/json_text.hpp"

#include <functional>
#include <limits>
#include <random>
#include <string>

using smithers::json;
using smithers::util::json_text;

TEST_CASE("json_text writes what dump() writes") {
  const json cases[] = {
      nullptr,
      true,
      false,
      0,
      -1,
      42,
      std::numeric_limits<std::int64_t>::min(),
      std::numeric_limits<std::int64_t>::max(),
      std::numeric_limits<std::uint64_t>::max(),
      1.0,
      -0.0,
      3.14159,
      1e300,
      2.5e-8,
      "",
      "plain text",
      "with \"quotes\" and \\ backslash",
      "tab\tnewline\ncr\rbell\x07 nul-free control \x1f",
      "del \x7f",
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
      "/slash/",
      json::object(),
      json::array(),
      json{{"b", 1}, {"a", "x"}, {"c", {1, 2.5, nullptr, "s"}}},
      json{{"node_id", "t1"}, {"iteration", 0}, {"attempt", 1}},
      json{{"ke\"y", {{"n\xc3\xa9sted", json::object()}, {"empty", json::array()}}}},
      json::array({json::array({json::array()}), json::object({{"", ""}})}),
      json::binary({1, 2, 3}),
  };
  for (const auto& v : cases) {
    INFO(v.dump());
    CHECK(json_text(v) == v.dump());
    CHECK(json_text(v, json::error_handler_t::replace) ==
          v.dump(-1, ' ', false, json::error_handler_t::replace));
  }
}

TEST_CASE("json_text matches dump() on random documents") {
  std::mt19937 rng(12345);
  const std::string alphabet = std::string("abcXYZ09 _-./\"\\\t\n") + "\x01\x7f" + "\xc3\xa9";
  auto random_string = [&] {
    std::string s;
    int n = static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
      std::size_t at = rng() % alphabet.size();
      if (static_cast<unsigned char>(alphabet[at]) == 0xc3) // keep UTF-8 whole
        s += "\xc3\xa9";
      else if (static_cast<unsigned char>(alphabet[at]) != 0xa9)
        s += alphabet[at];
    }
    return s;
  };
  std::function<json(int)> random_json = [&](int depth) -> json {
    switch (rng() % (depth > 3 ? 6 : 8)) {
    case 0:
      return nullptr;
    case 1:
      return rng() % 2 == 0;
    case 2:
      return static_cast<std::int64_t>(rng()) - (1LL << 31);
    case 3:
      return static_cast<double>(rng()) / 7.0;
    case 4:
      return random_string();
    case 5:
      return static_cast<std::uint64_t>(rng()) << 20;
    case 6: {
      json o = json::object();
      for (int i = static_cast<int>(rng() % 5); i > 0; --i)
        o[random_string()] = random_json(depth + 1);
      return o;
    }
    default: {
      json a = json::array();
      for (int i = static_cast<int>(rng() % 5); i > 0; --i)
        a.push_back(random_json(depth + 1));
      return a;
    }
    }
  };
  for (int i = 0; i < 2000; ++i) {
    json v = random_json(0);
    INFO(v.dump());
    REQUIRE(json_text(v) == v.dump());
  }
}

TEST_CASE("json_text keeps dump()'s handling of ill-formed UTF-8") {
  json bad = {{"k", std::string("bad \xff byte")}};
  CHECK_THROWS_AS(json_text(bad), json::type_error);
  CHECK(json_text(bad, json::error_handler_t::replace) ==
        bad.dump(-1, ' ', false, json::error_handler_t::replace));
  json bad_key = {{std::string("\xfe"), 1}};
  CHECK_THROWS_AS(json_text(bad_key), json::type_error);
}

// Strings are checked eight bytes at a time: every byte that must be escaped
// (or handed to nlohmann) is found at every position of a word and of the tail.
TEST_CASE("json_text finds a special byte anywhere in a string") {
  std::vector<unsigned char> specials;
  for (int c = 0; c < 0x20; ++c)
    specials.push_back(static_cast<unsigned char>(c));
  for (unsigned char c : {'"', '\\', '\x7f', '\x80', '\xc3', '\xff'})
    specials.push_back(c);
  for (std::size_t len : {1, 7, 8, 9, 16, 19}) {
    std::string base(len, 'a');
    CHECK(json_text(json(base)) == json(base).dump());
    for (std::size_t pos = 0; pos < len; ++pos)
      for (unsigned char c : specials) {
        std::string s = base;
        s[pos] = static_cast<char>(c);
        CAPTURE(len, pos, int(c));
        auto replace = json::error_handler_t::replace;
        CHECK(json_text(json(s), replace) == json(s).dump(-1, ' ', false, replace));
      }
  }
  // Bytes just inside the plain range stay as they are.
  std::string edge = std::string(" ~!#[]") + "\x20\x7e" + "abcdefgh";
  CHECK(json_text(json(edge)) == json(edge).dump());
}
