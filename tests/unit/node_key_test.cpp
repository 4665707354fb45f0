// Node keys as frames, messages and logs spell them: "id" or "id@N".
#include <catch2/catch.hpp>

#include <smithers/node_key.hpp>

using namespace smithers;

TEST_CASE("a node key's text names it back") {
  const node_key keys[] = {{"a", 0},       {"build-1", 3}, {"x_y", 999999999999999},
                           {"fix@2", 0},   {"fix@2", 5},   {"fix@0@3", 0}};
  for (const auto& k : keys) {
    CAPTURE(to_string(k));
    auto back = node_key_from_string(to_string(k));
    REQUIRE(back);
    CHECK(*back == k);
  }
  CHECK(to_string(node_key{"a", 0}) == "a");
  CHECK(to_string(node_key{"a", 7}) == "a@7");
  // Inside nested loops the outer iterations are in the id; the node's own
  // iteration is always written, 0 included.
  CHECK(to_string(node_key{"fix@2", 0}) == "fix@2@0");
  CHECK(base_id("fix@2@0") == "fix");
  CHECK(base_id("fix") == "fix");
}

TEST_CASE("text no node key has is refused") {
  for (const char* bad : {"", "@1", "a@", "a@0", "a@01", "a@1@01", "a@-1", "a@1x", "a@1234567890123456"}) {
    CAPTURE(bad);
    CHECK_FALSE(node_key_from_string(bad));
  }
}
