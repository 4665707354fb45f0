// Run a child process in its own process group, feed its stdin, read its
// stdout/stderr line by line, and end the whole group on cancel or deadline
// (SIGTERM, then SIGKILL after a grace period). POSIX only; blocking: call it
// from a thread that may block (never from a CAF worker).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace smithers::util {

struct subprocess_request {
  std::vector<std::string> argv;                 // argv[0] is looked up in PATH
  std::map<std::string, std::string> extra_env;  // added to (overriding) the parent's environment
  std::string cwd;                               // empty: inherit
  std::string stdin_data;                        // written, then stdin is closed
  std::shared_ptr<std::atomic<bool>> cancel;     // set -> end the process group
  std::optional<std::chrono::milliseconds> timeout;
  std::chrono::milliseconds kill_grace{2000};    // SIGTERM -> SIGKILL
  /// Called for every complete line (without '\n') on stdout (is_stderr=false)
  /// or stderr, on the calling thread, as it arrives.
  std::function<void(const std::string& line, bool is_stderr)> on_line;
};

struct subprocess_result {
  int exit_code = -1;          // valid when exited
  int term_signal = 0;         // signal that ended it, or 0
  bool exited = false;
  bool cancelled = false;      // ended because `cancel` was set
  bool timed_out = false;      // ended because `timeout` passed
  std::string spawn_error;     // non-empty: could not start (exec failed, bad cwd...)
  std::string out;             // all of stdout
  std::string err;             // all of stderr (capped at the last 64 KiB)
  std::int64_t pid = 0;
};

subprocess_result run_subprocess(const subprocess_request& req);

} // namespace smithers::util
