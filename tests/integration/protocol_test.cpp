// The task protocol's request crosses a process boundary (remote workers):
// it must survive CAF's serialization whole, and a peer's bad data must be
// refused, not trusted.
#include "actors/protocol.hpp"

#include <catch2/catch.hpp>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

using namespace smithers;
using executors::task_request;

namespace {

struct wire {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};

  std::vector<char> save(task_request req) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    REQUIRE_FALSE(sink(req));
    return buf;
  }

  caf::error load(const std::vector<char>& buf, task_request& out) {
    caf::binary_deserializer source{sys, buf};
    return source(out);
  }
};

} // namespace

TEST_CASE("a task request survives serialization whole") {
  wire w;
  task_request req;
  req.run_id = "run-1";
  req.key = {"build", 3};
  req.attempt = 2;
  req.kind = task_kind::command;
  req.argv = {"/bin/sh", "-c", "echo \"$SMITHERS_TEMPLATE_0\""};
  req.env = {{"SMITHERS_TEMPLATE_0", "a b\nc"}, {"X", ""}};
  req.cwd = "/tmp/w";
  req.input = std::make_shared<const json>(json{{"files", {"a.c", "b.c"}}, {"n", 1.5}});
  req.needs = {{"plan", {{"steps", 3}}}};
  req.last_heartbeat = {{"line", 41}};
  req.output_schema = std::make_shared<const json>(json{{"type", "object"}});
  req.timeout_ms = 5000;
  req.max_output_bytes = 1234;
  task_request back;
  REQUIRE_FALSE(w.load(w.save(req), back));
  CHECK(back.run_id == "run-1");
  CHECK(back.key == node_key{"build", 3});
  CHECK(back.attempt == 2);
  CHECK(back.kind == task_kind::command);
  CHECK(back.argv == req.argv);
  CHECK(back.env == req.env);
  CHECK(back.cwd == "/tmp/w");
  REQUIRE(back.input);
  CHECK(*back.input == *req.input);
  CHECK(back.needs == req.needs);
  CHECK(back.last_heartbeat == req.last_heartbeat);
  REQUIRE(back.output_schema);
  CHECK(*back.output_schema == *req.output_schema);
  CHECK(back.timeout_ms == std::optional<std::int64_t>{5000});
  CHECK_FALSE(back.heartbeat_timeout_ms);
  CHECK(back.max_output_bytes == 1234);

  SECTION("absent parts stay absent") {
    task_request bare;
    bare.kind = task_kind::value;
    bare.value = {{"v", 1}};
    task_request b2;
    REQUIRE_FALSE(w.load(w.save(bare), b2));
    CHECK(b2.kind == task_kind::value);
    CHECK(b2.value == json{{"v", 1}});
    CHECK_FALSE(b2.input);
    CHECK_FALSE(b2.output_schema);
    CHECK_FALSE(b2.timeout_ms);
  }
}

TEST_CASE("a task request with JSON nested too deep is refused on arrival") {
  wire w;
  task_request req;
  json deep = json::object();
  for (std::size_t i = 0; i < limits::max_stored_json_depth + 10; ++i)
    deep = json{{"d", std::move(deep)}};
  req.needs = {{"x", std::move(deep)}};
  auto buf = w.save(req);
  task_request back;
  auto err = w.load(buf, back);
  REQUIRE(err);
  CHECK(caf::to_string(err).find("nesting depth") != std::string::npos);
}

TEST_CASE("a task request with an unknown task kind is refused on arrival") {
  wire w;
  task_request req;
  req.kind = static_cast<task_kind>(7);
  task_request back;
  auto err = w.load(w.save(req), back);
  REQUIRE(err);
  CHECK(caf::to_string(err).find("task kind") != std::string::npos);
}
