// smithers cancel from another process: the driving `smithers run` notices
// the durable request, ends its tasks' processes, records the attempts
// cancelled and exits 2.
#include <catch2/catch.hpp>

#include "cli_support.hpp"

#include <csignal>

using namespace smithers;
using namespace smithers::system_test;

TEST_CASE("smithers cancel from another process ends the run cancelled with no process left",
          "[system][cancel]") {
  sandbox sb;
  auto pidfile = sb.file("task.pid");
  json wf = {{"name", "cancellable"},
             {"root",
              {{"sequence",
                {{{"task", "long"}, {"run", "echo $$ > " + pidfile + "; exec sleep 60"}},
                 {{"task", "after"}, {"value", json::object()}}}}}}};
  auto proc = sb.start({"run", sb.write("wf.json", wf), "--run-id", "c1"});
  REQUIRE(eventually([&] { return pid_from_file(pidfile) > 0; }, std::chrono::seconds(60)));
  pid_t task = pid_from_file(pidfile);

  auto t0 = std::chrono::steady_clock::now();
  auto cancel = sb.cli({"cancel", "c1"});
  INFO(cancel);
  REQUIRE(cancel.exit_code == 0);
  auto r = proc->wait();
  INFO(r);
  CHECK(r.exit_code == 2);
  // Noticed within 500 ms, stopped within the kill grace; generous bound.
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(8));
  CHECK_FALSE(process_alive(task));

  auto j = sb.inspect("c1");
  CHECK(j["run"]["status"] == "cancelled");
  CHECK(j["run"]["error"]["code"] == "RUN_CANCELLED");
  REQUIRE(j["attempts"].size() == 1);
  CHECK(j["attempts"][0]["state"] == "cancelled");
  auto events = sb.cli_json({"logs", "c1"}).out_ndjson();
  REQUIRE_FALSE(events.empty());
  CHECK(events.back()["type"] == "RunCancelled");

  // A run that has ended cannot be cancelled; an unknown one is not found.
  auto again = sb.cli({"cancel", "c1"});
  CHECK(again.exit_code == 4);
  CHECK(again.err.find("INVALID_ARGUMENT") != std::string::npos);
  auto unknown = sb.cli({"cancel", "nope"});
  CHECK(unknown.exit_code == 4);
  CHECK(unknown.err.find("RUN_NOT_FOUND") != std::string::npos);
}
