#include "util/subprocess.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <set>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace smithers::util {
namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds tick{50};
// After the leader exits (and its group was killed) a writer that escaped the
// group (setsid) could hold our pipes open forever; drain at most this long.
constexpr milliseconds drain_after_exit{1000};
constexpr std::size_t read_chunk = 64 * 1024;
constexpr const char* default_path = "/usr/local/bin:/usr/bin:/bin";

std::string errno_text(int e) {
  return std::generic_category().message(e);
}

class fd_guard {
public:
  fd_guard() = default;
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }
  bool open() const { return fd_ >= 0; }
  void set(int fd) {
    reset();
    fd_ = fd;
  }

private:
  int fd_ = -1;
};

// Both ends close-on-exec from birth (pipe2), so a fork/exec on another
// thread never inherits them. Ends are kept above 2: the child's dup2(fd, fd)
// would be a no-op that leaves FD_CLOEXEC set (possible when the host closed
// its own stdio).
int make_pipe(fd_guard& rd, fd_guard& wr) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return errno;
  rd.set(fds[0]);
  wr.set(fds[1]);
  for (fd_guard* g : {&rd, &wr}) {
    if (g->get() > 2) continue;
    int moved = ::fcntl(g->get(), F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return errno;
    g->set(moved);
  }
  return 0;
}

int set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return errno;
  return 0;
}

// Writing to a pipe whose reader is gone raises SIGPIPE at the writing
// thread. A library must not change the process-wide disposition, so for the
// duration of a run we block SIGPIPE in this thread only; after a write fails
// with EPIPE we consume the (thread-directed) pending SIGPIPE with a zero
// sigtimedwait, unless one was already pending before we started, which is
// not ours to swallow. The old mask is restored on exit.
class sigpipe_guard {
public:
  sigpipe_guard() {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    if (::sigpending(&pending) == 0) was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    ::pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_mask_);
  }
  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;
  ~sigpipe_guard() { ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr); }

  void consume_after_epipe() {
    if (was_pending_) return;
    timespec zero{0, 0};
    while (::sigtimedwait(&pipe_set_, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }

private:
  sigset_t pipe_set_;
  sigset_t old_mask_;
  bool was_pending_ = false;
};

// The process groups of children not yet reaped, for kill_all_process_groups.
// A pid leaves the set before it is reaped, so a kill through the set can
// never reach a recycled pid.
std::mutex live_groups_mtx;
std::set<pid_t>& live_groups() {
  static std::set<pid_t> groups;
  return groups;
}

// Kills and reaps the child if we leave early (an exception from on_line), so
// no process or zombie outlives run_subprocess.
class child_guard {
public:
  explicit child_guard(pid_t pid) : pid_(pid) {
    std::lock_guard<std::mutex> lk(live_groups_mtx);
    live_groups().insert(pid_);
  }
  child_guard(const child_guard&) = delete;
  child_guard& operator=(const child_guard&) = delete;
  ~child_guard() {
    if (pid_ <= 0 || reaped_) return;
    signal_group(SIGKILL);
    forget();
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }

  // The group, and the leader directly in case it left the group. Safe from
  // pid reuse: we call this only while the leader is not yet reaped, so its
  // pid (and therefore the group id) cannot have been recycled.
  void signal_group(int sig) const {
    ::kill(-pid_, sig);
    ::kill(pid_, sig);
  }

  // Non-reaping check (WNOWAIT): the zombie keeps the pid reserved until
  // reap() so that a final group kill cannot hit an unrelated process.
  bool has_exited() const {
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
      return errno == ECHILD; // someone else reaped it: treat as gone
    return info.si_pid == pid_;
  }

  int reap() {
    forget();
    int status = 0;
    pid_t r;
    while ((r = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return r == pid_ ? status : -1;
  }

private:
  void forget() {
    std::lock_guard<std::mutex> lk(live_groups_mtx);
    live_groups().erase(pid_);
  }

  pid_t pid_;
  bool reaped_ = false;
};

std::string_view env_name(std::string_view kv) {
  return kv.substr(0, kv.find('='));
}

std::vector<std::string> build_env(const subprocess_request& req) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    std::string name(env_name(kv));
    if (req.extra_env.count(name) ||
        std::find(req.remove_env.begin(), req.remove_env.end(), name) != req.remove_env.end())
      continue;
    env.emplace_back(kv);
  }
  for (const auto& [k, v] : req.extra_env)
    env.push_back(k + "=" + v);
  return env;
}

// The PATH the child will see: extra_env wins over the parent's.
std::string child_path(const subprocess_request& req) {
  if (auto it = req.extra_env.find("PATH"); it != req.extra_env.end()) return it->second;
  if (std::find(req.remove_env.begin(), req.remove_env.end(), "PATH") != req.remove_env.end())
    return default_path;
  const char* p = ::getenv("PATH");
  return p ? p : default_path;
}

// execvp's lookup, done in the parent against the child's PATH (so an
// overridden PATH is honoured) and without execvp's allocations in a child.
// A name with a '/' is used as is: relative to the child's cwd, as in a shell.
std::string resolve_program(const std::string& name, const subprocess_request& req, int& err) {
  err = 0;
  if (name.empty()) {
    err = ENOENT;
    return {};
  }
  if (name.find('/') != std::string::npos) return name;
  std::string path = child_path(req);
  bool saw_eacces = false;
  std::size_t pos = 0;
  while (true) {
    std::size_t colon = path.find(':', pos);
    std::string dir =
        path.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    if (dir.empty()) dir = ".";
    if (dir[0] != '/' && !req.cwd.empty()) dir = req.cwd + "/" + dir;
    std::string candidate = dir + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::faccessat(AT_FDCWD, candidate.c_str(), X_OK, AT_EACCESS) == 0) return candidate;
      saw_eacces = true;
    }
    if (colon == std::string::npos) break;
    pos = colon + 1;
  }
  err = saw_eacces ? EACCES : ENOENT;
  return {};
}

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

bool has_nul(const std::string& s) {
  return s.find('\0') != std::string::npos;
}

// For messages: a NUL shown as \0, so it cannot cut the message.
std::string shown(const std::string& s) {
  std::string out;
  for (char c : s)
    out += c == '\0' ? std::string("\\0") : std::string(1, c);
  return quoted(out);
}

// execve ends every string at its first NUL: a cut argument could name
// another file ("dir\0/cache" would be "dir"). The last line of defence:
// nothing is started.
std::string nul_problem(const subprocess_request& req) {
  const std::string what = "cannot execute " + shown(req.argv[0]) + ": ";
  for (std::size_t k = 0; k < req.argv.size(); ++k)
    if (has_nul(req.argv[k]))
      return what + "argument " + std::to_string(k) + " contains a NUL byte";
  for (const auto& [name, value] : req.extra_env)
    if (has_nul(name) || has_nul(value))
      return what + "environment variable " + shown(name) + " contains a NUL byte";
  if (has_nul(req.cwd)) return what + "directory " + shown(req.cwd) + " contains a NUL byte";
  return {};
}

// Spawns with posix_spawn (glibc: clone+exec, exec errors reported back as
// the return value). The child leads a new process group, starts with an
// empty signal mask and default dispositions for the signals our protocol
// relies on (an ignored SIGPIPE/SIGTERM/SIGCHLD would otherwise be inherited).
int spawn(const subprocess_request& req, const std::string& program, int in_fd, int out_fd,
          int err_fd, pid_t& pid) {
  std::vector<std::string> env = build_env(req);
  std::vector<char*> argv_ptrs, env_ptrs;
  for (const auto& a : req.argv)
    argv_ptrs.push_back(const_cast<char*>(a.c_str()));
  argv_ptrs.push_back(nullptr);
  for (auto& e : env)
    env_ptrs.push_back(e.data());
  env_ptrs.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  if (int rc = ::posix_spawn_file_actions_init(&actions)) return rc;
  if (int rc = ::posix_spawnattr_init(&attr)) {
    ::posix_spawn_file_actions_destroy(&actions);
    return rc;
  }
  int rc = 0;
  auto step = [&rc](int r) {
    if (rc == 0) rc = r;
  };
  step(::posix_spawn_file_actions_adddup2(&actions, in_fd, 0));
  step(::posix_spawn_file_actions_adddup2(&actions, out_fd, 1));
  step(::posix_spawn_file_actions_adddup2(&actions, err_fd, 2));
  if (!req.cwd.empty()) step(::posix_spawn_file_actions_addchdir_np(&actions, req.cwd.c_str()));
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGXFSZ, SIGTERM, SIGCHLD})
    sigaddset(&defaults, sig);
  step(::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                             POSIX_SPAWN_SETSIGDEF));
  step(::posix_spawnattr_setpgroup(&attr, 0));
  step(::posix_spawnattr_setsigmask(&attr, &none));
  step(::posix_spawnattr_setsigdefault(&attr, &defaults));
  if (rc == 0)
    rc = ::posix_spawn(&pid, program.c_str(), &actions, &attr, argv_ptrs.data(), env_ptrs.data());
  ::posix_spawnattr_destroy(&attr);
  ::posix_spawn_file_actions_destroy(&actions);
  return rc;
}

// Accumulates one output stream and cuts it into lines for on_line.
class line_splitter {
public:
  line_splitter(const subprocess_request& req, subprocess_result& res, bool is_stderr)
      : req_(req), res_(res), is_stderr_(is_stderr) {}

  void feed(const char* data, std::size_t n) {
    if (!is_stderr_) {
      if (res_.stdout_overflow) return; // the caller is stopping the process
      // stdout: lines are cut straight out of res.out, no second copy; a
      // line the caller drops (a heartbeat) leaves it and counts for nothing.
      std::size_t scan = res_.out.size();
      res_.out.append(data, n);
      std::size_t nl;
      while ((nl = next_end(res_.out, scan)) != std::string::npos) {
        if (!req_.on_line && !req_.drop_stdout_line) {
          scan = res_.out.size();
          break;
        }
        bool dropped = deliver(res_.out, line_start_, nl);
        if (dropped) {
          res_.out.erase(line_start_, nl + 1 - line_start_);
          scan = line_start_;
        } else {
          line_start_ = scan = nl + 1;
        }
      }
      if (!req_.on_line && !req_.drop_stdout_line) line_start_ = res_.out.size();
      // Past the bound — complete lines kept, or one line still coming that
      // is longer than the bound by itself (it may yet be dropped while it is
      // shorter) — the caller stops the process. What is kept is cut at the
      // bound, and a line cut there is never delivered.
      const std::size_t max = req_.max_stdout_bytes;
      if (max != 0 && (line_start_ > max || res_.out.size() - line_start_ > max)) {
        res_.out.resize(std::min(res_.out.size(), max));
        res_.stdout_overflow = true;
      }
      return;
    }
    res_.err.append(data, n);
    // Trim in big steps so the cost stays linear in what was read.
    if (res_.err.size() > 2 * max_stderr_kept_bytes)
      res_.err.erase(0, res_.err.size() - max_stderr_kept_bytes);
    if (!req_.on_line) return;
    std::size_t scan = partial_.size(), start = 0, nl;
    partial_.append(data, n);
    while ((nl = next_end(partial_, scan)) != std::string::npos) {
      deliver(partial_, start, nl);
      start = scan = nl + 1;
    }
    partial_.erase(0, start);
    while (partial_.size() >= max_stderr_line_bytes) {
      req_.on_line(partial_.substr(0, max_stderr_line_bytes), true);
      partial_.erase(0, max_stderr_line_bytes);
    }
  }

  // EOF (or giving up on the stream): deliver an unterminated last line.
  void finish() {
    if (finished_) return;
    finished_ = true;
    if (!req_.on_line) return;
    if (!is_stderr_) {
      if (res_.stdout_overflow || line_start_ >= res_.out.size()) return;
      std::string last = res_.out.substr(line_start_);
      req_.on_line(last, false);
      if (req_.drop_stdout_line && req_.drop_stdout_line(last)) res_.out.resize(line_start_);
      line_start_ = res_.out.size();
    } else if (!partial_.empty()) {
      std::string last;
      last.swap(partial_);
      req_.on_line(last, true);
    }
  }

private:
  // A line ends at '\n' or '\r' (progress bars redraw with '\r' alone);
  // "\r\n" is one end, even when the two arrive in different reads.
  static std::size_t next_end(const std::string& s, std::size_t from) {
    return s.find_first_of("\r\n", from);
  }

  // Hands a line to on_line; true when it is a stdout line the caller
  // drops (the '\n' of a dropped line's "\r\n" goes with it).
  bool deliver(const std::string& s, std::size_t begin, std::size_t end) {
    bool lf_after_cr = after_cr_ && begin == end && s[end] == '\n';
    after_cr_ = s[end] == '\r';
    if (lf_after_cr) return last_dropped_;
    std::string line = s.substr(begin, end - begin);
    if (req_.on_line) req_.on_line(line, is_stderr_);
    last_dropped_ = !is_stderr_ && req_.drop_stdout_line && req_.drop_stdout_line(line);
    return last_dropped_;
  }

  const subprocess_request& req_;
  subprocess_result& res_;
  bool is_stderr_;
  bool after_cr_ = false;     // the last line ended with '\r'
  bool last_dropped_ = false; // and it was dropped

  bool finished_ = false;
  std::size_t line_start_ = 0; // stdout: start of the current line in res.out
  std::string partial_;        // stderr: the current unterminated line
};

bool flag_set(const std::shared_ptr<std::atomic<bool>>& f) {
  return f && f->load(std::memory_order_acquire);
}

} // namespace

subprocess_result run_subprocess(const subprocess_request& req) {
  subprocess_result res;
  if (req.argv.empty()) {
    res.spawn_error = "cannot execute an empty command";
    return res;
  }
  const std::string& name = req.argv[0];
  if (res.spawn_error = nul_problem(req); !res.spawn_error.empty()) return res;
  if (!req.cwd.empty()) {
    struct stat st;
    int e = ::stat(req.cwd.c_str(), &st) != 0 ? errno : (S_ISDIR(st.st_mode) ? 0 : ENOTDIR);
    if (e) {
      res.spawn_error = "cannot change directory to " + quoted(req.cwd) + ": " + errno_text(e);
      return res;
    }
  }
  // Cancelled before it started: nothing to run, nothing to end.
  if (flag_set(req.cancel)) {
    res.cancelled = true;
    return res;
  }
  int err = 0;
  std::string program = resolve_program(name, req, err);
  if (err) {
    res.spawn_error = "cannot execute " + quoted(name) + ": " + errno_text(err);
    return res;
  }

  fd_guard in_r, in_w, out_r, out_w, err_r, err_w;
  if ((err = make_pipe(in_r, in_w)) || (err = make_pipe(out_r, out_w)) ||
      (err = make_pipe(err_r, err_w)) || (err = set_nonblocking(in_w.get())) ||
      (err = set_nonblocking(out_r.get())) || (err = set_nonblocking(err_r.get()))) {
    res.spawn_error = "cannot create pipes for " + quoted(name) + ": " + errno_text(err);
    return res;
  }

  sigpipe_guard no_sigpipe;
  pid_t pid = 0;
  if ((err = spawn(req, program, in_r.get(), out_w.get(), err_w.get(), pid))) {
    res.spawn_errno = err;
    res.spawn_error = "cannot execute " + quoted(name) + ": " + errno_text(err);
    return res;
  }
  child_guard child(pid);
  res.pid = pid;
  // Its exit as a poll event (Linux 5.3+): without it, the loop below
  // learns of the exit by sleeping 1 ms once the pipes have closed, which
  // was ~40% of a short command's attempt. Still ours and not reaped, so
  // the pid cannot have been reused.
  fd_guard exit_fd;
  exit_fd.set(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))); // -1: not watched
  if (req.on_start) req.on_start(pid);
  // Our copies of the child's ends must go, or we would never see EOF.
  in_r.reset();
  out_w.reset();
  err_w.reset();

  const auto started = clock_type::now();
  std::optional<clock_type::time_point> deadline;
  if (req.timeout) deadline = started + *req.timeout;

  line_splitter out_lines(req, res, false), err_lines(req, res, true);
  std::size_t in_off = 0;
  if (req.stdin_data.empty()) in_w.reset();

  enum class ending { none, stop, cancel, timeout } why = ending::none;
  // SIGTERM sent: escalate then. A flag beside a plain time_point, since
  // GCC 12 misreports an optional<time_point> as maybe-uninitialized.
  bool kill_pending = false;
  clock_type::time_point kill_at{};
  bool leader_done = false;
  clock_type::time_point drain_until{};
  milliseconds idle_wait{1};
  std::vector<char> buf(read_chunk);

  auto read_some = [&](fd_guard& fd, line_splitter& lines) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n > 0) {
      lines.feed(buf.data(), static_cast<std::size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      lines.finish();
      fd.reset();
    }
  };

  while (true) {
    const auto now = clock_type::now();
    if (leader_done && ((!out_r.open() && !err_r.open()) || now >= drain_until)) break;

    pollfd fds[4];
    nfds_t nfds = 0;
    int out_i = -1, err_i = -1, in_i = -1;
    if (out_r.open()) {
      out_i = static_cast<int>(nfds);
      fds[nfds++] = {out_r.get(), POLLIN, 0};
    }
    if (err_r.open()) {
      err_i = static_cast<int>(nfds);
      fds[nfds++] = {err_r.get(), POLLIN, 0};
    }
    if (in_w.open()) {
      in_i = static_cast<int>(nfds);
      fds[nfds++] = {in_w.get(), POLLOUT, 0};
    }
    const bool watch_exit = exit_fd.open() && !leader_done;
    if (watch_exit) fds[nfds++] = {exit_fd.get(), POLLIN, 0};
    // With no pipe left to watch we are only waiting for the exit: back off
    // from 1 ms so that a normal exit (pipes close just before the process
    // becomes a zombie) is noticed quickly.
    int wait_ms = static_cast<int>(tick.count());
    if (nfds == 0) {
      wait_ms = static_cast<int>(idle_wait.count());
      idle_wait = std::min(idle_wait * 2, tick);
    }
    int ready = ::poll(nfds ? fds : nullptr, nfds, wait_ms);
    if (ready > 0) {
      constexpr short in_events = POLLIN | POLLHUP | POLLERR;
      if (out_i >= 0 && (fds[out_i].revents & in_events)) read_some(out_r, out_lines);
      if (err_i >= 0 && (fds[err_i].revents & in_events)) read_some(err_r, err_lines);
      if (in_i >= 0 && (fds[in_i].revents & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n =
            ::write(in_w.get(), req.stdin_data.data() + in_off, req.stdin_data.size() - in_off);
        if (n > 0) {
          in_off += static_cast<std::size_t>(n);
          if (in_off == req.stdin_data.size()) in_w.reset(); // EOF for the child
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          // EPIPE: the child does not read its stdin. That is its choice.
          if (errno == EPIPE) no_sigpipe.consume_after_epipe();
          in_w.reset();
        }
      }
    }

    if (!leader_done && child.has_exited()) {
      // Grandchildren die with the attempt; the zombie leader still pins the
      // group id, so this cannot hit a recycled pid.
      child.signal_group(SIGKILL);
      int status = child.reap();
      if (status != -1 && WIFEXITED(status)) {
        res.exited = true;
        res.exit_code = WEXITSTATUS(status);
      } else if (status != -1 && WIFSIGNALED(status)) {
        res.term_signal = WTERMSIG(status);
      }
      leader_done = true;
      in_w.reset();
      drain_until = clock_type::now() + drain_after_exit;
      continue;
    }
    if (leader_done) continue;

    const auto later = clock_type::now();
    if (why == ending::none) {
      if (flag_set(req.stop) || res.stdout_overflow)
        why = ending::stop;
      else if (flag_set(req.cancel))
        why = ending::cancel;
      else if (deadline && later >= *deadline)
        why = ending::timeout;
      if (why != ending::none) {
        child.signal_group(SIGTERM);
        kill_at = later + req.kill_grace;
        kill_pending = true;
      }
    } else if (kill_pending && later >= kill_at) {
      child.signal_group(SIGKILL);
      kill_pending = false;
    }
  }

  out_lines.finish();
  err_lines.finish();
  if (res.err.size() > max_stderr_kept_bytes)
    res.err.erase(0, res.err.size() - max_stderr_kept_bytes);
  res.stopped = why == ending::stop && !res.stdout_overflow;
  res.cancelled = why == ending::cancel;
  res.timed_out = why == ending::timeout;
  return res;
}

void kill_all_process_groups() {
  std::lock_guard<std::mutex> lk(live_groups_mtx);
  for (pid_t pid : live_groups()) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
  }
}

} // namespace smithers::util
