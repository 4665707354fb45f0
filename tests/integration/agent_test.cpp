// Agent tasks in an embedded engine (docs/agents.md), with the scripted
// stand-in tests/fixtures/agents/fake-agent: events as a host sees them and
// the attempts recorded. (That a disabled agent stays disabled across a
// crash is recovery's, tested in tests/unit/recovery_test.cpp.)
#include <catch2/catch.hpp>

#include "store/reader.hpp"
#include "support/engine_config.hpp"
#include "support/event_recorder.hpp"
#include "support/temp_dir.hpp"

#include <smithers/engine.hpp>

#include <fstream>

using namespace smithers;

namespace {

agent_spec fake(const std::string& id, const std::string& mode, const std::string& log) {
  return {id,
          {std::string{SMITHERS_SOURCE_DIR} + "/tests/fixtures/agents/fake-agent", "--mode", mode},
          "",
          {{"FAKE_AGENT_LOG", log}, {"FAKE_AGENT_ANSWER", R"({"verdict": "ship"})"}}};
}

int prompts_in(const std::string& log) {
  std::ifstream in(log);
  int n = 0;
  for (std::string line; std::getline(in, line);)
    n += line == "----- end of prompt -----";
  return n;
}

} // namespace

TEST_CASE("an embedded agent chain: auth failure, follow-up, streamed output, recorded attempts") {
  test_support::temp_dir dir;
  engine eng{test_support::config_in(dir)};
  std::string log1 = dir.file("a1.log"), log2 = dir.file("a2.log");
  json schema = {{"type", "object"}, {"required", {"verdict"}}};
  workflow wf;
  wf.name = "agents";
  wf.root =
      agent_task("review", {fake("claude", "auth", log1), fake("codex", "fix-on-follow-up", log2)},
                 "Review {{input.what}}.")
          .output_schema(schema);
  test_support::event_recorder rec;
  run_options opts;
  opts.on_event = rec.handler();
  opts.input = {{"what", "the patch"}};
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.at("review") == json{{"verdict", "ship"}});
  CHECK(prompts_in(log1) == 1);
  CHECK(prompts_in(log2) == 2); // the question and one follow-up

  // Output lines come as they are printed, before the attempt's end.
  auto types = rec.types();
  auto first_output = std::find(types.begin(), types.end(), "NodeOutput");
  auto finished = std::find(types.begin(), types.end(), "NodeFinished");
  REQUIRE(first_output != types.end());
  REQUIRE(finished != types.end());
  CHECK(first_output < finished);
  REQUIRE(rec.of_type("AgentRetry").size() == 1);
  CHECK(rec.of_type("AgentRetry")[0].fields["agent"] == "codex");
  CHECK(rec.of_type("AgentRetry")[0].fields["attempt"] == 2);
  CHECK(rec.of_type("NodeFinished")[0].fields["output"] == json{{"verdict", "ship"}});

  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  auto attempts = store::reader{db}.attempts(res.run_id);
  REQUIRE(attempts.size() == 2);
  CHECK(attempts[0].error["code"] == "AGENT_AUTH_FAILED");
  CHECK(attempts[0].meta["agent"]["id"] == "claude");
  CHECK(attempts[0].meta["next_agent"] == true);
  CHECK(attempts[1].meta["agent"]["id"] == "codex");
  CHECK(attempts[1].meta["agent"]["follow_ups"] == 1);
  CHECK(attempts[1].meta.contains("pgid")); // merged, not replaced
}
