// A fresh directory under $TMPDIR (or /tmp) per test, removed afterwards.
// Its path is canonical, so it compares equal to what a child's getcwd()
// reports. The one helper of every test binary.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <unistd.h>

namespace test_support {

class temp_dir {
public:
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    // mkdtemp replaces the trailing X's with a unique name.
    std::string tmpl = std::string{base && *base ? base : "/tmp"} + "/smithers-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = std::filesystem::canonical(tmpl).string();
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name = "smithers.db") const { return path_ + "/" + name; }

private:
  std::string path_;
};

} // namespace test_support
