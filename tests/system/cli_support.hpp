// Helpers for the system tests: a temp dir per test and a way to run the real
// smithers binary (or any command) with stdin, capturing stdout, stderr and
// the exit code, killed after a generous timeout.
#pragma once

#include <catch2/catch.hpp>

#include "support/eventually.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <smithers/errors.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <poll.h>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace smithers::system_test {

using smithers::json;

/// The shared test directory plus helpers to fill it.
class temp_dir : public test_support::temp_dir {
public:
  /// Writes `content` to `name` (inside the dir) and returns its path.
  std::string write(const std::string& name, const std::string& content) const {
    auto p = file(name);
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    REQUIRE(out.good());
    out << content;
    out.close();
    REQUIRE(out.good());
    return p;
  }
  std::string write(const std::string& name, const json& content) const {
    return write(name, content.dump(2));
  }

  /// Writes an executable script and returns its path.
  std::string write_script(const std::string& name, const std::string& body) const {
    auto p = write(name, body);
    REQUIRE(::chmod(p.c_str(), 0755) == 0);
    return p;
  }

  bool exists(const std::string& name) const { return ::access(file(name).c_str(), F_OK) == 0; }
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

/// How many lines of `text` are exactly `line`.
inline int count_lines(const std::string& text, const std::string& line) {
  int n = 0;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l))
    n += l == line ? 1 : 0;
  return n;
}

inline bool file_exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

struct command_result {
  int exit_code = -1; // the exit status, or 128 + signal
  bool timed_out = false;
  std::string out;
  std::string err;

  /// stdout parsed as one JSON document (fails the test when it is not).
  json out_json() const {
    try {
      return json::parse(out);
    } catch (const std::exception& e) {
      FAIL("stdout is not JSON (" << e.what() << "):\n" << out << "\nstderr:\n" << err);
    }
    return json();
  }

  /// stdout parsed as NDJSON: one JSON value per non-empty line.
  std::vector<json> out_ndjson() const {
    std::vector<json> lines;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      try {
        lines.push_back(json::parse(line));
      } catch (const std::exception& e) {
        FAIL("a line of stdout is not JSON (" << e.what() << "): " << line);
      }
    }
    return lines;
  }
};

inline std::ostream& operator<<(std::ostream& os, const command_result& r) {
  return os << "exit " << r.exit_code << (r.timed_out ? " (timed out)" : "") << "\n--- stdout\n"
            << r.out << "\n--- stderr\n"
            << r.err;
}

struct command_options {
  std::string stdin_data;
  std::string cwd;
  std::map<std::string, std::string> env; // added / overridden
  std::vector<std::string> unset_env = {"SMITHERS_DB"};
  std::chrono::milliseconds timeout{120000};
};

/// Throws when a system call failed. (No Catch assertions in child_process:
/// it may run on other threads, and Catch2 v2 assertions are not thread-safe.)
inline void check_sys(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

/// A started command: argv[0] (looked up in PATH) in its own process group,
/// stdin fed with stdin_data and then closed, stdout and stderr captured by
/// wait(). A command still running at the timeout (counted from the start)
/// is killed with its whole process group and reported with timed_out. Not
/// waited for: killed on destruction. Safe to use from several threads.
class child_process {
public:
  child_process(const std::vector<std::string>& argv, command_options opts)
      : opts_(std::move(opts)) {
    if (argv.empty()) throw std::invalid_argument("child_process: empty argv");
    // Everything the child needs is prepared before fork: only async-signal-
    // safe calls happen between fork and exec.
    std::vector<char*> cargv;
    for (const auto& a : argv)
      cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);

    std::vector<std::string> env_storage;
    for (char** e = environ; e && *e; ++e) {
      std::string kv = *e;
      auto name = kv.substr(0, kv.find('='));
      bool drop = opts_.env.count(name) > 0;
      for (const auto& u : opts_.unset_env)
        drop = drop || u == name;
      if (!drop) env_storage.push_back(std::move(kv));
    }
    for (const auto& [k, v] : opts_.env)
      env_storage.push_back(k + "=" + v);
    std::vector<char*> cenv;
    for (auto& kv : env_storage)
      cenv.push_back(kv.data());
    cenv.push_back(nullptr);

    // A child that exits without reading its stdin must not kill us.
    static const bool sigpipe_ignored = [] {
      std::signal(SIGPIPE, SIG_IGN);
      return true;
    }();
    (void)sigpipe_ignored;
    // O_CLOEXEC: children started concurrently from other threads must not
    // inherit our pipe ends (they would hold them open).
    int in_pipe[2], out_pipe[2], err_pipe[2];
    check_sys(::pipe2(in_pipe, O_CLOEXEC) == 0, "pipe2");
    check_sys(::pipe2(out_pipe, O_CLOEXEC) == 0, "pipe2");
    check_sys(::pipe2(err_pipe, O_CLOEXEC) == 0, "pipe2");

    deadline_ = std::chrono::steady_clock::now() + opts_.timeout;
    pid_ = ::fork();
    check_sys(pid_ >= 0, "fork");
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::signal(SIGPIPE, SIG_DFL); // ignored signals would stay ignored across exec
      ::dup2(in_pipe[0], STDIN_FILENO);
      ::dup2(out_pipe[1], STDOUT_FILENO);
      ::dup2(err_pipe[1], STDERR_FILENO);
      if (!opts_.cwd.empty() && ::chdir(opts_.cwd.c_str()) != 0) ::_exit(126);
      ::execvpe(cargv[0], cargv.data(), cenv.data());
      ::_exit(127);
    }
    ::setpgid(pid_, pid_); // also from the parent, so a kill cannot race
    ::close(in_pipe[0]);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    in_fd_ = in_pipe[1];
    out_fd_ = out_pipe[0];
    err_fd_ = err_pipe[0];
    if (opts_.stdin_data.empty()) {
      ::close(in_fd_);
      in_fd_ = -1;
    } else {
      ::fcntl(in_fd_, F_SETFL, ::fcntl(in_fd_, F_GETFL) | O_NONBLOCK);
    }
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  ~child_process() {
    if (!waited_) {
      ::kill(-pid_, SIGKILL);
      try {
        wait();
      } catch (...) {
      }
    }
  }

  pid_t pid() const { return pid_; }

  /// Sends a signal to the process itself (not its group).
  void signal(int sig) const { ::kill(pid_, sig); }

  /// Reads stdout until it holds `needle` or `limit` passes (what was read
  /// stays in wait()'s result); whether it came. For a server's first line.
  bool await_output(const std::string& needle, std::chrono::milliseconds limit) {
    auto until = std::chrono::steady_clock::now() + limit;
    char buf[4096];
    while (out_fd_ >= 0 && res_.out.find(needle) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      until - std::chrono::steady_clock::now())
                      .count();
      if (left <= 0) break;
      pollfd p{out_fd_, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(left));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      ssize_t r = ::read(out_fd_, buf, sizeof buf);
      if (r > 0) {
        res_.out.append(buf, static_cast<std::size_t>(r));
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        ::close(out_fd_);
        out_fd_ = -1;
      }
    }
    return res_.out.find(needle) != std::string::npos;
  }

  /// What stdout held so far (await_output).
  const std::string& output_so_far() const { return res_.out; }

  /// Collects the output until the process ends (or the timeout).
  command_result wait() {
    if (waited_) return res_;
    waited_ = true;
    char buf[65536];
    std::size_t written = 0;
    while (out_fd_ >= 0 || err_fd_ >= 0) {
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline_ && !res_.timed_out) {
        res_.timed_out = true;
        ::kill(-pid_, SIGKILL);
      }
      std::vector<pollfd> fds;
      if (out_fd_ >= 0) fds.push_back({out_fd_, POLLIN, 0});
      if (err_fd_ >= 0) fds.push_back({err_fd_, POLLIN, 0});
      if (in_fd_ >= 0) fds.push_back({in_fd_, POLLOUT, 0});
      long long left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - now).count();
      int wait_ms = static_cast<int>(std::min<long long>(1000, std::max<long long>(1, left)));
      int n = ::poll(fds.data(), fds.size(), res_.timed_out ? 1000 : wait_ms);
      if (n < 0 && errno == EINTR) continue;
      check_sys(n >= 0, "poll");
      for (const auto& p : fds) {
        if (!p.revents) continue;
        if (p.fd == in_fd_) {
          ssize_t w =
              ::write(in_fd_, opts_.stdin_data.data() + written, opts_.stdin_data.size() - written);
          if (w > 0) written += static_cast<std::size_t>(w);
          if (w < 0 && errno != EAGAIN && errno != EINTR)
            written = opts_.stdin_data.size(); // EPIPE: the child stopped reading
          if (written >= opts_.stdin_data.size()) {
            ::close(in_fd_);
            in_fd_ = -1;
          }
          continue;
        }
        ssize_t r = ::read(p.fd, buf, sizeof buf);
        if (r > 0) {
          (p.fd == out_fd_ ? res_.out : res_.err).append(buf, static_cast<std::size_t>(r));
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          ::close(p.fd);
          (p.fd == out_fd_ ? out_fd_ : err_fd_) = -1;
        }
      }
      // A grandchild that keeps the pipes open after a timeout kill: give up.
      if (res_.timed_out && std::chrono::steady_clock::now() > deadline_ + std::chrono::seconds(5))
        break;
    }
    for (int* fd : {&in_fd_, &out_fd_, &err_fd_}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }

    int status = 0;
    for (;;) {
      pid_t w = ::waitpid(pid_, &status, res_.timed_out ? 0 : WNOHANG);
      if (w == pid_) break;
      if (w < 0 && errno != EINTR) break;
      if (w == 0) {
        if (std::chrono::steady_clock::now() >= deadline_) {
          res_.timed_out = true;
          ::kill(-pid_, SIGKILL);
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      }
    }
    if (WIFEXITED(status))
      res_.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
      res_.exit_code = 128 + WTERMSIG(status);
    return res_;
  }

private:
  command_options opts_;
  std::chrono::steady_clock::time_point deadline_;
  pid_t pid_ = -1;
  int in_fd_ = -1, out_fd_ = -1, err_fd_ = -1;
  bool waited_ = false;
  command_result res_;
};

/// Runs a command to its end (see child_process).
inline command_result run_command(const std::vector<std::string>& argv,
                                  const command_options& opts = {}) {
  return child_process(argv, opts).wait();
}

inline const std::string& smithers_bin() {
  static const std::string bin = SMITHERS_BIN;
  return bin;
}

inline std::string source_dir() {
  return SMITHERS_SOURCE_DIR;
}

inline std::vector<std::string> smithers_argv(const std::vector<std::string>& args) {
  std::vector<std::string> argv{smithers_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

/// Runs `smithers ARGS...` (the binary under test).
inline command_result run_smithers(const std::vector<std::string>& args,
                                   const command_options& opts = {}) {
  return run_command(smithers_argv(args), opts);
}

/// A test's own world: a temp dir with a database path in it. `cli(...)`
/// runs smithers with `--db <dir>/smithers.db` and the dir as cwd.
class sandbox {
public:
  const temp_dir& dir() const { return dir_; }
  std::string db() const { return dir_.file("smithers.db"); }
  bool db_exists() const { return file_exists(db()); }

  std::string write(const std::string& name, const std::string& content) const {
    return dir_.write(name, content);
  }
  std::string write(const std::string& name, const json& content) const {
    return dir_.write(name, content);
  }
  std::string file(const std::string& name) const { return dir_.file(name); }

  command_result cli(const std::vector<std::string>& args, command_options opts = {}) const {
    if (opts.cwd.empty()) opts.cwd = dir_.path();
    return run_smithers(with_db(args), opts);
  }

  /// Starts smithers in the background (same arguments as cli).
  std::unique_ptr<child_process> start(const std::vector<std::string>& args,
                                       command_options opts = {}) const {
    if (opts.cwd.empty()) opts.cwd = dir_.path();
    return std::make_unique<child_process>(smithers_argv(with_db(args)), std::move(opts));
  }

  /// `--format json` variant.
  command_result cli_json(const std::vector<std::string>& args, command_options opts = {}) const {
    std::vector<std::string> full{"--format", "json"};
    full.insert(full.end(), args.begin(), args.end());
    return cli(full, std::move(opts));
  }

  /// The run id in the output of `--format json run`.
  std::string run_id_of(const command_result& r) const {
    auto j = r.out_json();
    REQUIRE(j.contains("run"));
    return j["run"]["run_id"].get<std::string>();
  }

  /// The runs in the database (via `ps --format json`); empty when there is
  /// no database.
  std::vector<json> runs() const {
    if (!db_exists()) return {};
    auto r = cli_json({"ps"});
    INFO(r);
    REQUIRE(r.exit_code == 0);
    auto j = r.out_json();
    REQUIRE(j.is_array());
    return std::vector<json>(j.begin(), j.end());
  }

  json inspect(const std::string& run_id) const {
    auto r = cli_json({"inspect", run_id});
    INFO(r);
    REQUIRE(r.exit_code == 0);
    return r.out_json();
  }

  std::vector<json> events(const std::string& run_id) const {
    auto r = cli_json({"logs", run_id});
    INFO(r);
    REQUIRE(r.exit_code == 0);
    return r.out_ndjson();
  }

private:
  std::vector<std::string> with_db(const std::vector<std::string>& args) const {
    std::vector<std::string> full{"--db", db()};
    full.insert(full.end(), args.begin(), args.end());
    return full;
  }

  temp_dir dir_;
};

/// The attempts of one node in an `inspect --format json` document.
inline std::vector<json> attempts_of(const json& inspected, const std::string& node_id) {
  std::vector<json> out;
  for (const auto& a : inspected.at("attempts"))
    if (a.at("node_id") == node_id) out.push_back(a);
  return out;
}

/// The node entry of one node in an `inspect --format json` document.
/// The events of `type` (of `node`, when given) in a `logs --format json` stream.
inline std::vector<json> of_type(const std::vector<json>& events, const std::string& type,
                                 const std::string& node = "") {
  std::vector<json> out;
  for (const auto& e : events)
    if (e.value("type", "") == type && (node.empty() || e.value("node_id", "") == node))
      out.push_back(e);
  return out;
}

inline json node_of(const json& inspected, const std::string& node_id) {
  for (const auto& n : inspected.at("nodes"))
    if (n.at("node_id") == node_id) return n;
  FAIL("no node \"" << node_id << "\" in " << inspected.dump(2));
  return json();
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ------------------------------------------------------------- refusals
// Bad input must be refused with its code and a message naming the culprit,
// exit code 4, and no trace (docs/workflow-format.md#limits).

/// A small workflow that finishes: a static task and a command that needs it.
inline json good_workflow() {
  return json::parse(R"({
    "name": "good",
    "root": {"sequence": [
      {"task": "a", "value": {"ok": true}},
      {"task": "b", "run": ["sh", "-c", "echo '{\"b\": 1}'"], "needs": ["a"]}
    ]}
  })");
}

using args_fn = std::function<std::vector<std::string>(const sandbox&)>;

struct refusal {
  std::string code;
  std::vector<std::string> fragments; // each must appear in the message
  command_options opts = {};
};

inline void check_text_refusal(const command_result& r, const refusal& want) {
  INFO(r);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 4);
  CHECK(contains(r.err, "error: " + want.code + ": "));
  for (const auto& f : want.fragments) {
    INFO("message fragment: " << f);
    CHECK(contains(r.err, f));
  }
  CHECK(r.out.empty());
}

inline void check_json_refusal(const command_result& r, const refusal& want) {
  INFO(r);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 4);
  auto doc = r.out_json();
  REQUIRE(doc.contains("error"));
  CHECK(doc["error"]["code"] == want.code);
  auto message = doc["error"].value("message", std::string{});
  for (const auto& f : want.fragments) {
    INFO("message fragment: " << f);
    CHECK(contains(message, f));
  }
}

inline bool any_db_file(const sandbox& sb) {
  return sb.db_exists() || file_exists(sb.db() + "-wal") || file_exists(sb.db() + "-shm") ||
         file_exists(sb.db() + "-journal");
}

// A run that finished, so the database exists before the bad command.
inline void seed_run(const sandbox& sb) {
  auto r = sb.cli({"run", sb.write("seed.json", good_workflow()), "--run-id", "seed"});
  INFO(r);
  REQUIRE(r.exit_code == 0);
  REQUIRE(sb.runs().size() == 1);
}

// Runs the command twice: in text mode where there is no database yet (none
// may appear), and in JSON mode next to an earlier run (no run row may
// appear).
inline void check_refused(const args_fn& make_args, const refusal& want) {
  {
    INFO("text mode, no database before");
    sandbox sb;
    auto args = make_args(sb);
    check_text_refusal(sb.cli(args, want.opts), want);
    CHECK_FALSE(any_db_file(sb));
  }
  {
    INFO("json mode, a database with one run before");
    sandbox sb;
    seed_run(sb);
    auto args = make_args(sb);
    check_json_refusal(sb.cli_json(args, want.opts), want);
    auto runs = sb.runs();
    REQUIRE(runs.size() == 1);
    CHECK(runs[0]["run_id"] == "seed");
  }
}

// ------------------------------------------------------------- processes

using test_support::eventually;
using test_support::pid_from_file;
using test_support::process_alive;

} // namespace smithers::system_test
