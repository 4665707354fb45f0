// Node keys as frames, messages and logs spell them: "id" or "id@N".
#include <catch2/catch.hpp>

#include <smithers/node_key.hpp>

using namespace smithers;

TEST_CASE("a node key's text names it back") {
  const node_key keys[] = {{"a", 0}, {"build-1", 3}, {"x_y", 999999999999999}};
  for (const auto& k : keys) {
    CAPTURE(to_string(k));
    auto back = node_key_from_string(to_string(k));
    REQUIRE(back);
    CHECK(*back == k);
  }
  CHECK(to_string(node_key{"a", 0}) == "a");
  CHECK(to_string(node_key{"a", 7}) == "a@7");
}

TEST_CASE("text no node key has is refused") {
  for (const char* bad : {"", "@1", "a@", "a@0", "a@01", "a@-1", "a@1x", "a@1234567890123456"}) {
    CAPTURE(bad);
    CHECK_FALSE(node_key_from_string(bad));
  }
}
