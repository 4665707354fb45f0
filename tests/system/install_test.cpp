// The installed package works for a host program: install this build to a
// temporary prefix, build examples/embedding against it with
// find_package(smithers_actors), run it, and check what it wrote.
#include <catch2/catch.hpp>

#include "store/database.hpp"
#include "store/reader.hpp"
#include "support/temp_dir.hpp"
#include "util/subprocess.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using smithers::util::run_subprocess;
using smithers::util::subprocess_request;
using smithers::util::subprocess_result;

namespace {

using test_support::temp_dir;

// The build directory this test binary belongs to: <build>/tests/system_tests.
fs::path build_dir() {
  return fs::canonical("/proc/self/exe").parent_path().parent_path();
}

// A cache entry of the build, e.g. "SMITHERS_SANITIZE" -> "ON" ("" if absent).
std::string cache_value(const fs::path& build, const std::string& name) {
  std::ifstream in(build / "CMakeCache.txt");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + ":", 0) == 0 && line.find('=') != std::string::npos)
      return line.substr(line.find('=') + 1);
  return "";
}

bool in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
  return false;
}

subprocess_result run(std::vector<std::string> argv, std::chrono::milliseconds timeout,
                      const fs::path& tmp) {
  subprocess_request req;
  req.argv = std::move(argv);
  req.timeout = timeout;
  // ccache: paths under the temp dir count as relative, so a rerun hits the cache.
  req.extra_env["CCACHE_BASEDIR"] = tmp.string();
  return run_subprocess(req);
}

std::string describe(const std::vector<std::string>& argv, const subprocess_result& r) {
  std::string s = "$";
  for (const auto& a : argv)
    s += " " + a;
  s += "\nexit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") +
       (r.spawn_error.empty() ? "" : " spawn error: " + r.spawn_error) + "\n--- stdout\n" + r.out +
       "\n--- stderr\n" + r.err;
  return s;
}

// Runs a command; fails the test (showing its output) unless it exits 0.
subprocess_result run_ok(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const fs::path& tmp) {
  auto r = run(argv, timeout, tmp);
  INFO(describe(argv, r));
  REQUIRE(r.exited);
  REQUIRE(r.exit_code == 0);
  return r;
}

} // namespace

TEST_CASE("the embedding example builds against the installed package and runs", "[install]") {
  const std::string cmake = SMITHERS_CMAKE_COMMAND;
  const fs::path source = fs::path(SMITHERS_SOURCE_DIR) / "examples" / "embedding";
  const fs::path build = build_dir();
  INFO("build dir " << build.string());
  REQUIRE(fs::exists(build / "CMakeCache.txt"));
  REQUIRE(fs::exists(source / "CMakeLists.txt"));

  temp_dir dir;
  const fs::path tmp_path = dir.path();
  const fs::path prefix = tmp_path / "prefix";
  const fs::path example_build = tmp_path / "build";
  const fs::path db = tmp_path / "runs.db";

  run_ok({cmake, "--install", build.string(), "--prefix", prefix.string()}, 300s, tmp_path);
  REQUIRE(fs::exists(prefix / "include" / "smithers" / "engine.hpp"));

  std::vector<std::string> configure{cmake,
                                     "-S",
                                     source.string(),
                                     "-B",
                                     example_build.string(),
                                     "-DCMAKE_PREFIX_PATH=" + prefix.string()};
  if (in_path("ninja")) configure.insert(configure.end(), {"-G", "Ninja"});
  if (in_path("ccache")) configure.push_back("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache");
  // The exported target does not carry the sanitizer flags of a
  // SMITHERS_SANITIZE build, but its objects need the sanitizer runtimes.
  if (cache_value(build, "SMITHERS_SANITIZE") == "ON")
    configure.insert(configure.end(), {"-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined",
                                       "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"});
  run_ok(configure, 300s, tmp_path);
  run_ok({cmake, "--build", example_build.string()}, 900s, tmp_path);

  auto out = run_ok({(example_build / "embedding").string(), db.string()}, 120s, tmp_path).out;
  INFO(out);
  CHECK(out.find("sum = 30") != std::string::npos);
  CHECK(out.find("smithers_error: INVALID_RUN_ID") != std::string::npos);
  CHECK(out.find("\nok\n") != std::string::npos);

  // The runs it printed ("run <id>: finished") are finished in the database.
  std::vector<std::string> ids;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("run ", 0) == 0 && line.find(": ") != std::string::npos)
      ids.push_back(line.substr(4, line.find(": ") - 4));
  REQUIRE(ids.size() == 2);

  auto database =
      smithers::store::database::open(db.string(), smithers::store::open_mode::read_only);
  smithers::store::reader reader(database);
  CHECK(reader.runs().size() == 2);
  for (const auto& id : ids) {
    auto row = reader.run(id);
    INFO("run " << id);
    REQUIRE(row);
    CHECK(row->status == "finished");
    CHECK(row->workflow_name == "sum-of-squares");
  }
}
