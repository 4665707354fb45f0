#include <catch2/catch.hpp>

#include "schema/problem.hpp"

using namespace smithers::spec;

TEST_CASE("problems join into one message with their paths") {
  CHECK(join({}) == "");
  CHECK(join({{"a.b", "bad"}}) == "a.b: bad");
  CHECK(join({{"a", "x"}, {"", "y"}}) == "a: x; y");
  CHECK(index_path(child_path("root", "sequence"), 2) == "root.sequence[2]");
  CHECK(child_path("", "root") == "root");
}
