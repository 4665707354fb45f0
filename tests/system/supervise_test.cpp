// supervise and time travel on crashed runs: two supervisors take a dead
// owner's run exactly once; timeline and fork work on a run killed mid-way.
#include <catch2/catch.hpp>

#include "cli_support.hpp"

#include <csignal>
#include <thread>

using namespace smithers;
using namespace smithers::system_test;

namespace {

json slow_chain(const std::string& side) {
  json steps = json::array();
  for (int i = 0; i < 6; ++i) {
    std::string id = "s" + std::to_string(i);
    steps.push_back({{"task", id},
                     {"run", "echo " + id + " >> " + side + "; sleep 0.2; echo '{\"" + id +
                                 "\": " + std::to_string(i) + "}'"}});
  }
  return {{"name", "slow-chain"}, {"root", {{"sequence", steps}}}};
}

// Starts a run, waits until `started` tasks have started, kills it with SIGKILL.
void run_and_kill(const sandbox& sb, const std::string& wf, const std::string& run_id,
                  const std::string& side, std::size_t started) {
  auto proc = sb.start({"run", wf, "--run-id", run_id});
  REQUIRE(eventually(
      [&] {
        std::istringstream in(read_file(side));
        std::size_t n = 0;
        std::string l;
        while (std::getline(in, l))
          ++n;
        return n >= started;
      },
      std::chrono::seconds(30)));
  proc->signal(SIGKILL);
  proc->wait();
}

} // namespace

TEST_CASE("two supervisors at once resume a dead owner's run exactly once", "[system][supervise]") {
  sandbox sb;
  auto side = sb.file("side");
  auto wf = sb.write("wf.json", slow_chain(side));
  run_and_kill(sb, wf, "orphan", side, 2);
  auto a = sb.start({"supervise", "--once"});
  auto b = sb.start({"supervise", "--once"});
  auto ra = a->wait();
  auto rb = b->wait();
  INFO(ra);
  INFO(rb);
  CHECK(ra.exit_code == 0);
  CHECK(rb.exit_code == 0);
  auto j = sb.inspect("orphan");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["outputs"].size() == 6);
  std::size_t resumed = 0;
  for (const auto& e : sb.cli_json({"logs", "orphan"}).out_ndjson())
    resumed += e["type"] == "RunResumed" ? 1 : 0;
  CHECK(resumed == 1);
  // The one who lost says so (or found the run already taken).
  bool a_took = ra.out.find("resumed run orphan") != std::string::npos;
  bool b_took = rb.out.find("resumed run orphan") != std::string::npos;
  CHECK(a_took != b_took);
}

TEST_CASE("timeline and fork work on a run that was killed mid-way", "[system][supervise]") {
  sandbox sb;
  auto side = sb.file("side");
  auto wf = sb.write("wf.json", slow_chain(side));
  run_and_kill(sb, wf, "crashed", side, 3);
  auto tl = sb.cli_json({"timeline", "crashed"});
  INFO(tl);
  REQUIRE(tl.exit_code == 0);
  auto frames = tl.out_json()["frames"];
  REQUIRE(frames.size() >= 2);
  std::int64_t last = frames.back()["frame_no"];
  auto fork =
      sb.cli({"fork", "crashed", "--frame", std::to_string(last), "--run-id", "saved", "--run"});
  INFO(fork);
  REQUIRE(fork.exit_code == 0);
  auto j = sb.inspect("saved");
  CHECK(j["run"]["status"] == "finished");
  CHECK(j["outputs"].size() == 6);
  CHECK(j["run"]["status"] == "finished");
  auto parent = sb.cli_json({"timeline", "crashed"}).out_json();
  REQUIRE(parent["forks"].size() == 1);
  CHECK(parent["forks"][0]["run_id"] == "saved");
}
