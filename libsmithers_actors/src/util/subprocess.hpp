// Run a child process in its own process group, feed its stdin, read its
// stdout/stderr line by line, and end the whole group on cancel or deadline
// (SIGTERM, then SIGKILL after a grace period). POSIX only; blocking: call it
// from a thread that may block (never from a CAF worker).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace smithers::util {

struct subprocess_request {
  std::vector<std::string> argv;                // argv[0] is looked up in PATH
  std::map<std::string, std::string> extra_env; // added to (overriding) the parent's environment
  std::vector<std::string> remove_env;          // names dropped from the parent's environment
  std::string cwd;                              // empty: inherit
  std::string stdin_data;                       // written, then stdin is closed
  std::shared_ptr<std::atomic<bool>> cancel;    // set -> end the process group
  /// Set (typically from on_line) to end the process group for a reason of
  /// the caller's own; reported as `stopped` rather than `cancelled`.
  std::shared_ptr<std::atomic<bool>> stop;
  std::optional<std::chrono::milliseconds> timeout;
  std::chrono::milliseconds kill_grace{2000}; // SIGTERM -> SIGKILL
  /// Stdout kept at most (0: all of it), dropped lines not counted: more in
  /// complete lines, or one line longer than this, ends the process group,
  /// as `stop` does, with stdout_overflow set; the line cut at the bound is
  /// never delivered to on_line. Memory stays below twice the bound.
  std::size_t max_stdout_bytes = 0;
  /// Called for every complete line (without its end: '\n', '\r' or
  /// "\r\n") on stdout (is_stderr=false) or stderr, on the calling thread,
  /// as it arrives. A final unterminated line is delivered at EOF. Stderr lines longer than max_stderr_line_bytes are
  /// delivered in pieces of that size (stdout lines are never split).
  std::function<void(const std::string& line, bool is_stderr)> on_line;
  /// Stdout lines for which this returns true (heartbeat markers) are left
  /// out of `out`, with their line end, and do not count toward
  /// max_stdout_bytes. Called after on_line, on the calling thread.
  std::function<bool(const std::string& line)> drop_stdout_line;
  /// Called once the child runs, with its pid (= its process group id).
  std::function<void(std::int64_t pid)> on_start;
};

struct subprocess_result {
  int exit_code = -1;  // valid when exited
  int term_signal = 0; // signal that ended it, or 0
  bool exited = false;
  bool cancelled = false;  // ended because `cancel` was set
  bool timed_out = false;  // ended because `timeout` passed
  bool stopped = false;    // ended because `stop` was set
  bool stdout_overflow = false; // ended because stdout passed max_stdout_bytes
  std::string spawn_error; // non-empty: could not start (exec failed, bad cwd...)
  int spawn_errno = 0;     // the exec's errno when it failed (E2BIG: too much to pass)
  std::string out;         // all of stdout (up to max_stdout_bytes)
  std::string err;         // all of stderr (capped at the last 64 KiB)
  std::int64_t pid = 0;
};

/// Bounds on what run_subprocess keeps in memory for stderr.
inline constexpr std::size_t max_stderr_kept_bytes = 64 * 1024;
inline constexpr std::size_t max_stderr_line_bytes = 4 * 1024 * 1024;

/// Never throws for process problems (they land in spawn_error / exit
/// fields); an exception thrown by on_line kills the group, reaps the child
/// and propagates.
subprocess_result run_subprocess(const subprocess_request& req);

/// SIGKILLs the process group of every child run_subprocess has started and
/// not reaped yet, in any thread: for a process that must exit now (a second
/// Ctrl-C) without leaving children behind, even ones that ignore SIGTERM.
void kill_all_process_groups();

} // namespace smithers::util
