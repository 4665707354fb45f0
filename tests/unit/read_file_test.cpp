#include <catch2/catch.hpp>

#include "support/temp_dir.hpp"
#include "util/read_file.hpp"

#include <chrono>
#include <fstream>

#include <sys/stat.h>
#include <unistd.h>

using smithers::util::read_regular_file;

TEST_CASE("read_regular_file reads regular files within the bound, and nothing else",
          "[read_file]") {
  test_support::temp_dir dir;
  auto file = dir.file("a.json");
  std::ofstream(file) << "{\"a\": 1}";
  auto ok = read_regular_file(file, 100);
  CHECK(ok.error.empty());
  CHECK(ok.text == "{\"a\": 1}");

  auto big = read_regular_file(file, 5);
  CHECK(big.too_large);
  CHECK(big.text.empty());

  CHECK(read_regular_file(dir.path(), 100).error == "it is a directory");
  CHECK(read_regular_file("/dev/zero", 100).error == "it is a character device");
  CHECK(read_regular_file(dir.file("missing"), 100).error == "No such file or directory");

  // A FIFO nobody writes to: refused at once, never waited on.
  auto fifo = dir.file("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto started = std::chrono::steady_clock::now();
  CHECK(read_regular_file(fifo, 100).error == "it is a FIFO");
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));

  auto loop = dir.file("loop");
  REQUIRE(::symlink(loop.c_str(), loop.c_str()) == 0);
  CHECK(read_regular_file(loop, 100).error == "Too many levels of symbolic links");
}
