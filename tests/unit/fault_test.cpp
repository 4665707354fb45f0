// Fault points (util/fault.hpp): schedules, counting, and what each action
// does. The points themselves are in the store; tests/system/fault_test.cpp
// drives whole runs through them.
#include "util/fault.hpp"

#include <smithers/errors.hpp>

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

using namespace smithers;
using util::arm_faults;
using util::fault_point;

namespace {

// The code of the error a point throws, "" when it does not.
std::string hit(std::string_view name) {
  try {
    fault_point(name);
  } catch (const smithers_error& e) {
    return e.code() + ": " + e.err().message;
  }
  return "";
}

struct disarm {
  ~disarm() { arm_faults(""); }
};

} // namespace

TEST_CASE("a rule fires at the K-th hit of its point, once", "[fault]") {
  disarm guard;
  arm_faults("store.commit#2=fail");
  CHECK(util::faults_armed());
  CHECK(hit("store.commit").empty());
  CHECK(hit("store.begin").empty()); // another point: not counted
  CHECK(hit("store.commit") == "DB_ERROR: write failed (fault injected at store.commit)");
  CHECK(hit("store.commit").empty());
}

TEST_CASE("prefixes, every point, and the actions' messages", "[fault]") {
  disarm guard;
  arm_faults("store.write.*#2=busy,*#4=full");
  CHECK(hit("store.write.insert_attempt").empty());
  CHECK(hit("store.begin").empty());
  CHECK(hit("store.write.finish_attempt") ==
        "DB_ERROR: database is locked (fault injected at store.write.finish_attempt)");
  CHECK(hit("store.commit") ==
        "DB_ERROR: database or disk is full (fault injected at store.commit)");
  arm_faults("");
  CHECK(!util::faults_armed());
  CHECK(hit("store.commit").empty());
}

TEST_CASE("an exit fault ends the process with its own code", "[fault]") {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    arm_faults("store.committed#1=exit");
    fault_point("store.committed");
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == util::fault_exit_code);
}

TEST_CASE("bad schedules are refused", "[fault]") {
  disarm guard;
  for (const char* bad : {"store.commit", "store.commit#0=fail", "store.commit#x=fail", "#1=fail",
                          "store.commit#1=explode", "store.commit#1"}) {
    INFO(bad);
    try {
      arm_faults(bad);
      FAIL("accepted");
    } catch (const smithers_error& e) {
      CHECK(e.code() == errc::invalid_argument);
    }
  }
  CHECK(!util::faults_armed());
}
