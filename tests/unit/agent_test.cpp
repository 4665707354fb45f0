// The pure parts of agent tasks (executors/agent.hpp): which words mean an
// agent's credentials failed, the contract appended to every prompt, and
// the prompt of a follow-up. Table-driven; no process is started.
#include "executors/agent.hpp"
#include "util/json_bounds.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <optional>
#include <string>
#include <vector>

using namespace smithers;
using executors::agent_contract;
using executors::agent_follow_up;
using executors::auth_failure_phrase;

namespace {

// The list in agent.cpp, in its order (the first one found wins).
const std::vector<std::string> phrases = {
    "invalid api key",
    "invalid_api_key",
    "incorrect api key",
    "api key not valid",
    "missing api key",
    "api key is missing",
    "no api key",
    "invalid x-api-key",
    "authentication_error",
    "authentication failed",
    "authentication required",
    "unauthenticated",
    "unauthorized",
    "not logged in",
    "please log in",
    "please login",
    "run /login",
    "login required",
    "invalid credentials",
    "token has expired",
    "token expired",
    "expired token",
};

// Every other letter upper-cased: "InVaLiD ApI KeY".
std::string mixed_case(const std::string& s) {
  std::string out = s;
  bool up = true;
  for (auto& c : out)
    if (std::isalpha(static_cast<unsigned char>(c))) {
      if (up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      up = !up;
    }
  return out;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

std::size_t count(const std::string& s, const std::string& part) {
  std::size_t n = 0;
  for (auto at = s.find(part); at != std::string::npos; at = s.find(part, at + 1))
    ++n;
  return n;
}

} // namespace

TEST_CASE("auth_failure_phrase: each phrase of the list, in any case, anywhere in the text") {
  for (const auto& p : phrases) {
    for (const std::string& text :
         {p, mixed_case(p), "Error: " + mixed_case(p) + ".", "line 1\nfatal: " + p + "\nline 3",
          std::string{"\x1b[31m"} + p + "\x1b[0m"}) {
      CAPTURE(p, text);
      CHECK(auth_failure_phrase(text) == std::optional<std::string>{p});
    }
  }
}

TEST_CASE("auth_failure_phrase: 401 as a number of its own; the list before it; else none") {
  struct row {
    const char* text;
    std::optional<std::string> phrase;
  };
  const std::optional<std::string> none;
  const std::vector<row> rows = {
      // 401 alone
      {"HTTP 401", "401"},
      {"401", "401"},
      {"error 401: go away", "401"},
      {"status=401", "401"},
      {"(401)", "401"},
      {"code 401\n", "401"},
      {"got 4010 items, then 401", "401"}, // a later one of its own
      // the list is searched first, whatever comes first in the text
      {"status: 401 Unauthorized", "unauthorized"},
      {"HTTP/1.1 401 UNAUTHORIZED", "unauthorized"},
      {"401 then: Token has expired", "token has expired"},
      {"Unauthorized, then invalid api key", "invalid api key"}, // the list's order
      {"expired token; token expired", "token expired"},
      {"please log in (not logged in)", "not logged in"},
      // 401 inside another number or word
      {"4010 items", none},
      {"port 14012", none},
      {"a401b", none},
      {"x401", none},
      {"401k plan", none},
      {"4401", none},
      {"40 1", none},
      // nothing of the kind
      {"", none},
      {"Compiling 42 files... done.", none},
      {"I have updated the README and the tests pass.", none},
      {"authentication works now", none},
      {"the api key is set", none},
      {"log in later", none},
      {"unauthoriz", none},
      {"token", none},
  };
  for (const auto& r : rows) {
    CAPTURE(r.text);
    CHECK(auth_failure_phrase(r.text) == r.phrase);
  }
}

TEST_CASE("agent_contract: a fenced json block; the schema when there is one") {
  SECTION("no schema") {
    std::string c = agent_contract(nullptr);
    CHECK(contains(c, "```json\n{ ... }\n```"));
    CHECK_FALSE(contains(c, "JSON Schema"));
    json null_schema; // null: none either
    CHECK(agent_contract(&null_schema) == c);
  }
  SECTION("a schema, pretty-printed with 2-space indent") {
    json schema = {
        {"type", "object"},
        {"required", {"summary"}},
        {"properties", {{"summary", {{"type", "string"}}}, {"n", {{"type", "integer"}}}}}};
    std::string c = agent_contract(&schema);
    CHECK(contains(c, "```json\n{ ... }\n```"));
    CHECK(contains(c, "JSON Schema"));
    const std::string pretty = schema.dump(2);
    CHECK(contains(pretty, "\n  \"properties\": {\n    \"n\": {")); // what 2 spaces look like
    CHECK(contains(c, "```json\n" + pretty + "\n```"));
    CHECK(c.rfind(agent_contract(nullptr), 0) == 0); // the format first, then the schema
  }
  SECTION("a schema with bytes that are not UTF-8 does not throw") {
    json schema = {{"type", "object"}, {"description", "bad \xff byte"}};
    std::string c;
    CHECK_NOTHROW(c = agent_contract(&schema));
    CHECK(util::is_valid_utf8(c));
    CHECK(contains(c, "JSON Schema"));
  }
}

TEST_CASE("agent_follow_up: the prompt, the problems, the previous answer quoted") {
  const std::string prompt = "Summarise the repository.\n\n---\ncontract here\n";
  const json problems = json::array({{{"path", "$.summary"}, {"message", "is required"}},
                                     {{"path", "$.n"}, {"message", "must be an integer"}},
                                     {{"message", "no path"}},
                                     "a plain string",
                                     42});
  const std::string answer = "Here it is:\n```json\n{\"n\": \"three\"}\n```";
  std::string s = agent_follow_up(prompt, problems, answer);
  CHECK(s.rfind(prompt, 0) == 0); // the original prompt first
  const auto problems_at = s.find("\nYour previous answer could not be used:\n");
  REQUIRE(problems_at != std::string::npos);
  CHECK(problems_at >= prompt.size());
  CHECK(contains(s, "Your previous answer could not be used:\n- $.summary: is required\n"
                    "- $.n: must be an integer\n- $: no path\n- a plain string\n\n"));
  CHECK_FALSE(contains(s, "42")); // neither object nor string: left out
  // A short answer is quoted whole, line by line.
  CHECK(contains(s, "(" + std::to_string(answer.size()) +
                        " bytes) was:\n"
                        "> Here it is:\n> ```json\n> {\"n\": \"three\"}\n> ```\n"));
  CHECK_FALSE(contains(s, "began:"));
  // And ends asking for a fenced block again.
  CHECK(contains(s.substr(s.size() - 200), "```json"));
  CHECK(util::is_valid_utf8(s));
}

TEST_CASE("agent_follow_up: no problems, an empty answer") {
  std::string s = agent_follow_up("P", json::array(), "");
  CHECK(s.rfind("P\n", 0) == 0);
  CHECK(contains(s, "could not be used:\n\n"));
  CHECK(contains(s, "(0 bytes) was:\n> \n"));
}

TEST_CASE("agent_follow_up: a long answer, its first and last 400 bytes only") {
  const std::string answer = std::string(500, 'F') + std::string(200, 'M') + std::string(500, 'B');
  std::string s =
      agent_follow_up("Summarise.", json::array({{{"path", "$"}, {"message", "bad"}}}), answer);
  CHECK(contains(s, "(1200 bytes) began:\n> " + std::string(400, 'F') + "\nand ended:\n> " +
                        std::string(400, 'B') + "\n"));
  CHECK_FALSE(contains(s, std::string(401, 'F')));
  CHECK_FALSE(contains(s, std::string(401, 'B')));
  CHECK_FALSE(contains(s, "MM"));
  CHECK_FALSE(contains(s, " was:\n"));
  // The bound: 800 bytes are quoted whole, 801 are not.
  CHECK(contains(agent_follow_up("p", json::array(), std::string(800, 'x')),
                 "was:\n> " + std::string(800, 'x') + "\n"));
  std::string cut = agent_follow_up("p", json::array(), std::string(801, 'x'));
  CHECK(contains(cut, "began:\n> " + std::string(400, 'x') + "\nand ended:\n> " +
                          std::string(400, 'x') + "\n"));
  CHECK_FALSE(contains(cut, std::string(401, 'x')));
  // Lines of a long answer are quoted each.
  std::string lines;
  for (int i = 0; i < 200; ++i)
    lines += "line " + std::to_string(i) + "\n";
  std::string q = agent_follow_up("p", json::array(), lines);
  CHECK(contains(q, "> line 0\n> line 1\n"));
  CHECK(contains(q, "> line 198\n> line 199\n"));
  CHECK_FALSE(contains(q, "line 100\n"));
}

TEST_CASE("agent_follow_up: never cuts a UTF-8 sequence") {
  // A character of each length, placed at every offset around either cut.
  const std::vector<std::string> chars = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
  for (const auto& c : chars) {
    const std::size_t len = c.size();
    // The front: 400 bytes, less the part of a character they would cut.
    for (std::size_t start = 400 - len - 1; start <= 401; ++start) {
      CAPTURE(len, start);
      std::string answer = std::string(start, 'a') + c + std::string(1000, 'b');
      const bool cut_inside = start < 400 && 400 < start + len;
      std::string expected = answer.substr(0, cut_inside ? start : 400);
      std::string s = agent_follow_up("p", json::array(), answer);
      CHECK(util::is_valid_utf8(s));
      CHECK(contains(s, "began:\n> " + expected + "\nand ended:\n"));
      CHECK(count(s, c) == (start + len <= 400 ? 1u : 0u));
    }
    // The back: the last 400 bytes, less the part of a character they would cut.
    for (std::size_t tail = 400 - len - 1; tail <= 401; ++tail) {
      CAPTURE(len, tail);
      std::string answer = std::string(1000, 'a') + c + std::string(tail, 'z');
      std::size_t from = answer.size() - 400;
      if (1000 < from && from < 1000 + len) from = 1000 + len;
      std::string expected = answer.substr(from);
      std::string s = agent_follow_up("p", json::array(), answer);
      CHECK(util::is_valid_utf8(s));
      CHECK(contains(s, "and ended:\n> " + expected + "\n\n"));
      CHECK(count(s, c) == (from <= 1000 ? 1u : 0u));
    }
  }
}

TEST_CASE("agent_follow_up: bytes that are not UTF-8 are replaced") {
  const std::string fffd = "\xef\xbf\xbd";
  struct row {
    const char* name;
    std::string answer;
    bool replacement_quoted; // else the cut leaves it out
  };
  const std::vector<row> rows = {
      {"short", "ok \xff\xfe bad \xc3", true},
      {"a lone continuation byte", "\x80", true},
      {"long, bad bytes at both ends",
       std::string("\xff") + std::string(600, 'a') + std::string(600, 'b') + "\xe2\x82", true},
      // U+FFFD is 3 bytes: the cut falls inside it and leaves it out.
      {"long, a bad byte right at the front cut",
       std::string(399, 'a') + "\xff" + std::string(1000, 'b'), false},
      {"long, a truncated sequence right at the back cut",
       std::string(1000, 'a') + "\xf0\x9f\x98" + std::string(399, 'z'), false},
  };
  for (const auto& r : rows) {
    SECTION(r.name) {
      std::string s = agent_follow_up("p", json::array({"x"}), r.answer);
      CHECK(util::is_valid_utf8(s));
      CHECK(contains(s, fffd) == r.replacement_quoted);
      // The size given is the answer's own.
      CHECK(contains(s, "(" + std::to_string(r.answer.size()) + " bytes)"));
    }
  }
}
