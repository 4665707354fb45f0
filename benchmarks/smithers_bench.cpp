// Scheduler throughput benchmarks: `./dev bench` (docs/benchmarks.md).
//
// Our own small harness rather than Google Benchmark: each case is one
// large run whose figures (tasks/s, per-task latency percentiles, peak RSS,
// database bytes per task) come from the run itself, and each case runs in a
// fresh child process so peak RSS belongs to that case alone.
//
//   smithers_bench                     every case, a table, results JSON
//   smithers_bench --filter fanout     cases whose name contains "fanout"
//   smithers_bench --repeat 3          three passes over the cases, medians of 3
//   smithers_bench --json out.json     where the JSON goes (default bench-results.json)
//   smithers_bench --case NAME         one case in this process (used by the parent;
//                                      --no-floor skips the case's floor)
//   smithers_bench --instructions      each case under cachegrind: instructions per
//                                      task and their scaling (deterministic; see
//                                      docs/benchmarks.md, "Counted in instructions")
//   smithers_bench --check             each case once with 20 tasks, no figures: does
//                                      every case still run? (the test bench_cases_run)
//   smithers_bench --tasks N           each case with N tasks instead of its own
#include <smithers/engine.hpp>

#include "util/thread_pool.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using namespace smithers;
using clock_type = std::chrono::steady_clock;

namespace {

struct bench_case {
  std::string name;
  std::string shape; // fanout | chain | loop (one task per iteration) | foreach | start
  std::string kind;  // static | compute | command | agent | remote
  int n;
  std::string db;   // file (synchronous=NORMAL) | full (synchronous=FULL) | memory
  bool cli = false; // through the smithers binary with a generated JSON file
  int every = 0;    // loop: continue as new every this many iterations (0: never)
  int workers = 0;  // worker processes (`smithers worker`) the tasks run on
};

std::vector<bench_case> all_cases() {
  std::vector<bench_case> out;
  for (const char* db : {"file", "memory"})
    for (const char* kind : {"static", "compute"}) {
      for (int n : {1000, 10000, 100000})
        out.push_back({std::string{"fanout/"} + kind + "/" + std::to_string(n) + "/" + db, "fanout",
                       kind, n, db});
      for (int n : {1000, 10000, 100000})
        out.push_back({std::string{"chain/"} + kind + "/" + std::to_string(n) + "/" + db, "chain",
                       kind, n, db});
    }
  for (const char* kind : {"static", "compute"}) {
    for (int n : {1000, 10000})
      out.push_back({std::string{"loop/"} + kind + "/" + std::to_string(n) + "/file", "loop", kind,
                     n, "file"});
    out.push_back({std::string{"foreach/"} + kind + "/10000/file", "foreach", kind, 10000, "file"});
  }
  out.push_back({"loop/static/10000/memory", "loop", "static", 10000, "memory"});
  // Direct compute tasks: the callable called by the run, no pool hand-off.
  for (int n : {10000, 100000})
    out.push_back({"fanout/direct/" + std::to_string(n) + "/file", "fanout", "direct", n, "file"});
  for (int n : {1000, 10000, 100000})
    out.push_back({"chain/direct/" + std::to_string(n) + "/file", "chain", "direct", n, "file"});
  // Real attempts: a process per task (`echo {}`: `true` prints no output,
  // which fails a command task), and an agent stand-in (a
  // shell that reads the prompt and answers with a fenced JSON block).
  for (int n : {1000, 10000, 100000})
    out.push_back(
        {"fanout/command/" + std::to_string(n) + "/file", "fanout", "command", n, "file"});
  for (int n : {1000, 10000})
    out.push_back({"chain/command/" + std::to_string(n) + "/file", "chain", "command", n, "file"});
  for (int n : {1000, 10000})
    out.push_back({"fanout/agent/" + std::to_string(n) + "/file", "fanout", "agent", n, "file"});
  out.push_back({"chain/agent/1000/file", "chain", "agent", 1000, "file"});
  // synchronous=FULL: an fsync per commit.
  out.push_back({"fanout/compute/10000/full", "fanout", "compute", 10000, "full"});
  for (int n : {1000, 10000})
    out.push_back({"chain/compute/" + std::to_string(n) + "/full", "chain", "compute", n, "full"});
  out.push_back({"chain/static/10000/full", "chain", "static", 10000, "full"});
  out.push_back({"fanout/command/10000/full", "fanout", "command", 10000, "full"});
  // The CLI from process start to its first task's process running.
  // A fresh database file (created, schema and all), and one that exists.
  out.push_back({"cli/start", "start", "command", 1, "file", true});
  out.push_back({"cli/start/existing", "start", "command", 1, "existing", true});
  for (int n : {10000, 100000})
    out.push_back({"cli/fanout/static/" + std::to_string(n), "fanout", "static", n, "file", true});
  out.push_back({"cli/chain/static/10000", "chain", "static", 10000, "file", true});
  out.push_back({"cli/fanout/compute/10000", "fanout", "compute", 10000, "file", true});
  out.push_back({"cli/chain/compute/10000", "chain", "compute", 10000, "file", true});
  out.push_back({"cli/chain/direct/10000", "chain", "direct", 10000, "file", true});
  out.push_back({"cli/loop/static/10000", "loop", "static", 10000, "file", true});
  // A chain of 100 runs of 100 iterations: `smithers run` follows it.
  out.push_back({"cli/loop/static/10000/can100", "loop", "static", 10000, "file", true, 100});
  out.push_back({"cli/foreach/static/10000", "foreach", "static", 10000, "file", true});
  // Compute tasks by name ("noop") on local worker processes.
  for (int w : {1, 2})
    out.push_back({"workers/fanout/noop/10000/w" + std::to_string(w), "fanout", "remote", 10000,
                   "file", false, 0, w});
  return out;
}

long peak_rss_kb_self() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// A fresh directory; mkdtemp replaces the trailing X's with a unique name.
std::string temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "smithers-bench-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::uintmax_t db_bytes(const std::string& path) {
  std::uintmax_t total = 0;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    auto s = std::filesystem::file_size(path + suffix, ec);
    if (!ec) total += s;
  }
  return total;
}

// The agent stand-in: reads the prompt from stdin, answers with a fenced
// JSON block (docs/agents.md).
const std::vector<std::string>& agent_argv() {
  static const std::vector<std::string> argv = {
      "/bin/sh", "-c", "cat >/dev/null; printf '```json\\n{\"ok\": true}\\n```\\n'"};
  return argv;
}

node make_task(const bench_case& c, int i) {
  std::string id = "t" + std::to_string(i);
  if (c.kind == "static") return value_task(id, {{"i", i}});
  if (c.kind == "remote") return compute_task(id, std::string{"noop"});
  if (c.kind == "command") return command_task(id, {"echo", "{}"});
  if (c.kind == "agent")
    return agent_task(id, {agent_spec{"stand-in", agent_argv(), "", {}}}, "Say ok.");
  node t = compute_task(id, [i](task_context&) { return json{{"i", i}}; });
  if (c.kind == "direct") t.direct(); // called by the run itself, no pool hand-off
  return t;
}

json make_json_workflow(const bench_case& c) {
  if (c.shape == "loop") {
    json l = {{"loop", "l"}, {"max_iterations", c.n}, {"body", {{"task", "t"}, {"value", {{"i", 0}}}}}};
    if (c.every) l["continue_as_new_every"] = c.every;
    return {{"name", c.name}, {"root", l}};
  }
  if (c.shape == "foreach") {
    json items = json::array();
    for (int i = 0; i < c.n; ++i)
      items.push_back(i);
    return {{"name", c.name},
            {"max_concurrency", 1000},
            {"input", {{"type", "object"}}},
            {"root", {{"sequence",
                       {{{"task", "list"}, {"value", {{"items", items}}}},
                        {{"for_each", "each"}, {"items", "outputs.list.items"}, {"as", "x"},
                         {"max_concurrency", 16},
                         {"body", {{"task", "t{{x}}"}, {"value", {{"i", 0}}}}}}}}}}};
  }
  if (c.shape == "start") {
    // One task: the stamp program writes the time it runs at.
    return {{"name", c.name},
            {"root", {{"task", "stamp"}, {"run", {SMITHERS_STAMP_BIN, "{{input.file}}"}}}}};
  }
  json kids = json::array();
  for (int i = 0; i < c.n; ++i) {
    json t = {{"task", "t" + std::to_string(i)}};
    if (c.kind == "static")
      t["value"] = {{"i", i}};
    else
      t["compute"] = "noop";
    if (c.kind == "direct") t["direct"] = true;
    kids.push_back(std::move(t));
  }
  json root = c.shape == "fanout" ? json{{"parallel", kids}, {"max_concurrency", 16}}
                                  : json{{"sequence", kids}};
  return {{"name", c.name}, {"max_concurrency", 1000}, {"root", root}};
}

// `smithers worker` processes on free loopback ports, ended with the case.
class worker_processes {
public:
  worker_processes(int n, int slots) {
    for (int i = 0; i < n; ++i) {
      int port = free_port();
      std::string listen = "127.0.0.1:" + std::to_string(port), s = std::to_string(slots);
      std::string bin = SMITHERS_BIN;
      pid_t pid = fork();
      if (pid == 0) {
        int devnull = ::open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(bin.c_str(), bin.c_str(), "worker", "--listen", listen.c_str(), "--slots", s.c_str(),
              static_cast<char*>(nullptr));
        _exit(127);
      }
      pids_.push_back(pid);
      addrs_.push_back(listen);
      for (int tries = 0; tries < 500 && !listening(port); ++tries)
        ::usleep(10000);
    }
  }
  ~worker_processes() {
    for (pid_t p : pids_)
      ::kill(p, SIGTERM);
    for (pid_t p : pids_)
      ::waitpid(p, nullptr, 0);
  }
  const std::vector<std::string>& addresses() const { return addrs_; }

private:
  static int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
  }
  static bool listening(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  }
  std::vector<pid_t> pids_;
  std::vector<std::string> addrs_;
};

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::size_t k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

// ---- Floors: the same work with no engine, measured in the same process
// just before the engine's run, so both see the same machine.

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// N calls of the task's function through the engine's own blocking pool,
// `width` in flight (the group's max_concurrency; 1 for a chain), the
// submitter either sleeping until a call returns (a hand-off each way) or
// spinning on a counter (a hand-off to the pool only, but a core busy):
// whichever is faster here is the floor (on 2 cores: sleeping for a
// fan-out, spinning for a chain).
double pool_floor_once(int n, int width, bool spin) {
  util::thread_pool pool(64);
  std::mutex mtx;
  std::condition_variable cv;
  std::atomic<int> done{0};
  std::vector<json> outputs(static_cast<std::size_t>(n));
  auto t0 = clock_type::now();
  int submitted = 0;
  while (done.load(std::memory_order_acquire) < n) {
    while (submitted < n && submitted - done.load(std::memory_order_acquire) < width) {
      int i = submitted++;
      pool.submit([&, i] {
        outputs[static_cast<std::size_t>(i)] = json{{"i", i}};
        if (spin) {
          done.fetch_add(1, std::memory_order_release);
          return;
        }
        std::lock_guard<std::mutex> lk(mtx);
        done.fetch_add(1, std::memory_order_release);
        cv.notify_one();
      });
    }
    if (!spin) {
      std::unique_lock<std::mutex> lk(mtx);
      int seen = submitted;
      cv.wait(lk, [&] { return seen - done.load() < width || done.load() >= n; });
    }
  }
  return seconds_since(t0);
}

double pool_floor(int n, int width) {
  return std::min(pool_floor_once(n, width, false), pool_floor_once(n, width, true));
}

// N processes of `argv` (posix_spawn + waitpid), `width` alive at a time,
// stdin and stdout on /dev/null.
double spawn_floor(const std::vector<std::string>& args, int n, int width) {
  std::vector<char*> argv;
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  auto t0 = clock_type::now();
  int alive = 0, started = 0;
  while (started < n || alive > 0) {
    while (started < n && alive < width) {
      pid_t pid;
      if (posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0)
        throw std::runtime_error("posix_spawn failed");
      ++started;
      ++alive;
    }
    int status;
    if (::waitpid(-1, &status, 0) > 0) --alive;
  }
  posix_spawn_file_actions_destroy(&fa);
  return seconds_since(t0);
}

// N durable commits, one after the other (a chain commits once per step):
// one small row each, WAL, synchronous NORMAL or FULL, as the engine's file.
double commit_floor(const std::string& dir, int n, bool full) {
  sqlite3* db = nullptr;
  std::string path = dir + "/floor.db";
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) throw std::runtime_error("sqlite open");
  sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
  sqlite3_exec(db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", nullptr, nullptr,
               nullptr);
  sqlite3_exec(db, "CREATE TABLE t(i INTEGER PRIMARY KEY, v TEXT)", nullptr, nullptr, nullptr);
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?, '{\"i\":0}')", -1, &ins, nullptr);
  auto t0 = clock_type::now();
  for (int i = 0; i < n; ++i) {
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    sqlite3_bind_int(ins, 1, i);
    sqlite3_step(ins);
    sqlite3_reset(ins);
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  double secs = seconds_since(t0);
  sqlite3_finalize(ins);
  sqlite3_close(db);
  for (const char* suffix : {"", "-wal", "-shm"})
    std::filesystem::remove(path + suffix);
  return secs;
}

// The floor of a case: its tasks' work with no engine (a fan-out), plus a
// durable commit per step (a chain: each step's output must be durable
// before the next starts). Absent (0) where the work is nothing (a value
// fan-out) or not comparable (workers, loops, for_each).
json floor_of(const bench_case& c, const std::string& dir) {
  if (c.workers > 0 || c.db == "memory" || (c.shape != "fanout" && c.shape != "chain"))
    return nullptr;
  bool chain = c.shape == "chain";
  int width = chain ? 1 : 16;
  json f = json::object();
  double work = 0;
  if (c.kind == "compute") {
    work = pool_floor(c.n, width);
    f["what"] = chain ? "pool round trip + commit per step" : "pool calls, 16 in flight";
  } else if (c.kind == "command") {
    work = spawn_floor({"echo", "{}"}, c.n, width);
    f["what"] = chain ? "spawn+wait + commit per step" : "spawn+wait, 16 alive";
  } else if (c.kind == "agent") {
    work = spawn_floor(agent_argv(), c.n, width);
    f["what"] = chain ? "stand-in spawn+wait + commit per step" : "stand-in spawn+wait, 16 alive";
  } else if (chain) {
    f["what"] = "commit per step";
  } else {
    return nullptr;
  }
  f["work_seconds"] = work;
  double commits = chain ? commit_floor(dir, c.n, c.db == "full") : 0;
  if (chain) f["commit_seconds"] = commits;
  f["seconds"] = work + commits;
  return f;
}

struct cpu_mark {
  double self_s, children_s;
  static double of(int who) {
    struct rusage ru {};
    getrusage(who, &ru);
    auto secs = [](const timeval& tv) { return double(tv.tv_sec) + double(tv.tv_usec) / 1e6; };
    return secs(ru.ru_utime) + secs(ru.ru_stime);
  }
  static cpu_mark now() { return {of(RUSAGE_SELF), of(RUSAGE_CHILDREN)}; }
};

std::int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2; // an even count: the middle two's mean
}

// Starts of `smithers run` per cli/start run (run_start_case).
constexpr int start_samples = 11;

std::int64_t read_stamp(const std::string& path) {
  std::ifstream in(path);
  std::int64_t ns = 0;
  in >> ns;
  return ns;
}

// Process start -> the first task's process runs: `smithers run` of a one-
// task workflow whose command is the stamp program (benchmarks/stamp.c),
// which writes CLOCK_MONOTONIC (shared by all processes) to a file. Its
// floor: the stamp program spawned directly.
json run_start_case(const bench_case& c, const std::string& dir, const std::string& db) {
  std::string wf = dir + "/wf.json", stamp = dir + "/stamp";
  std::ofstream(wf) << make_json_workflow(c).dump();
  json input = {{"file", stamp}};
  std::string in_text = input.dump(), bin = SMITHERS_BIN;
  auto spawn_and_wait = [&](std::vector<const char*> argv) {
    argv.push_back(nullptr);
    std::int64_t t0 = monotonic_ns();
    pid_t pid = fork();
    if (pid == 0) {
      int devnull = ::open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      execv(argv[0], const_cast<char* const*>(argv.data()));
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::int64_t at = read_stamp(stamp);
    std::filesystem::remove(stamp);
    return ok && at > t0 ? double(at - t0) / 1e6 : -1.0;
  };
  auto run_once = [&] {
    return spawn_and_wait(
        {bin.c_str(), "--db", db.c_str(), "run", wf.c_str(), "--input", in_text.c_str()});
  };
  // One start is ~20 ms, and a VM's hiccup of a few ms moves it by a
  // quarter: the case is the median of start_samples starts (and of as
  // many floors), each on a new file or on the one file kept.
  std::vector<double> starts, floors;
  bool ok = true;
  // A database that exists already (as it mostly will): one run first.
  if (c.db == "existing") ok = run_once() > 0;
  double secs = 0; // the starts' whole processes, on average
  for (int i = 0; i < start_samples; ++i) {
    floors.push_back(spawn_and_wait({SMITHERS_STAMP_BIN, stamp.c_str()}));
    if (c.db != "existing")
      for (const char* suffix : {"", "-wal", "-shm"})
        std::filesystem::remove(db + suffix);
    auto t0 = clock_type::now();
    double ms = run_once();
    secs += seconds_since(t0) / start_samples;
    ok = ok && ms > 0 && floors.back() > 0;
    starts.push_back(ms);
  }
  double ms = median(starts), floor_ms = median(floors);
  return {{"case", c.name},
          {"n", 1},
          {"ok", ok},
          {"seconds", secs},
          {"start_ms", ms},
          {"start_ms_min", *std::min_element(starts.begin(), starts.end())},
          {"start_ms_max", *std::max_element(starts.begin(), starts.end())},
          {"floor", {{"what", "stamp spawned directly"}, {"seconds", floor_ms / 1e3}}},
          {"ratio", floor_ms > 0 ? ms / floor_ms : 0.0}};
}

// Runs one case in this process and prints its figures as one JSON line.
// Without its floor (`no_floor`): under cachegrind, the floor's
// instructions would be counted with the engine's.
int run_case(const bench_case& c, bool no_floor) {
  std::string dir = temp_dir();
  std::string db = c.db == "memory" ? ":memory:" : dir + "/bench.db";
  json result = {{"case", c.name}, {"n", c.n}};
  json floor = c.shape == "start" || no_floor ? json(nullptr) : floor_of(c, dir);
  if (c.shape == "start") {
    result = run_start_case(c, dir, db);
  } else if (c.cli) {
    std::string wf = dir + "/wf.json";
    std::ofstream(wf) << make_json_workflow(c).dump();
    std::string bin = SMITHERS_BIN;
    auto t0 = clock_type::now();
    pid_t pid = fork();
    if (pid == 0) {
      // Quiet: a chain's "continued as" lines would fill the table.
      int devnull = ::open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      execl(bin.c_str(), bin.c_str(), "--db", db.c_str(), "run", wf.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    struct rusage ru {};
    wait4(pid, &status, 0, &ru);
    double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    result["ok"] = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!result["ok"].get<bool>())
      result["exit_status"] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    double cpu = double(ru.ru_utime.tv_sec) + double(ru.ru_utime.tv_usec) / 1e6 +
                 double(ru.ru_stime.tv_sec) + double(ru.ru_stime.tv_usec) / 1e6;
    result["cpu_us_per_task"] = cpu * 1e6 / c.n;
    result["seconds"] = secs;
    result["tasks_per_s"] = c.n / secs;
    result["peak_rss_mb"] = static_cast<double>(ru.ru_maxrss) / 1024.0;
    result["db_bytes_per_task"] = static_cast<double>(db_bytes(db)) / c.n;
  } else {
    engine_config cfg;
    cfg.db_path = db;
    cfg.synchronous_full = c.db == "full";
    std::unique_ptr<worker_processes> workers;
    if (c.workers > 0) {
      workers = std::make_unique<worker_processes>(c.workers, 64);
      cfg.workers = workers->addresses();
    }
    auto eng = std::make_unique<engine>(cfg);
    workflow wf;
    wf.name = c.name;
    wf.max_concurrency = 1000;
    std::size_t outputs = static_cast<std::size_t>(c.n);
    if (c.shape == "loop") {
      // One task per iteration, N iterations (no `until`: return-last).
      node body = c.kind == "static" ? value_task("t", {{"i", 0}})
                                     : compute_task("t", [](task_context& ctx) {
                                         return json{{"i", ctx.iteration()}};
                                       });
      loop_options o;
      o.max_iterations = c.n;
      wf.root = loop("l", std::move(body), nullptr, o);
      outputs = 1; // the latest iteration's
    } else if (c.shape == "foreach") {
      // Dynamic fan-out: a task lists the items, the for_each runs a body each.
      json items = json::array();
      for (int i = 0; i < c.n; ++i)
        items.push_back(i);
      node body = c.kind == "static"
                      ? value_task("t{{x}}", {{"i", 0}})
                      : compute_task("t{{x}}", [](task_context&) { return json{{"i", 0}}; });
      wf.root = sequence({value_task("list", {{"items", std::move(items)}}),
                          for_each("each", "outputs.list.items", "x", std::move(body), 16)});
      outputs += 1; // and the list
    } else {
      std::vector<node> kids;
      kids.reserve(static_cast<std::size_t>(c.n));
      for (int i = 0; i < c.n; ++i)
        kids.push_back(make_task(c, i));
      // Through workers, tasks cross the wire: more of them in flight
      // (batched) hide the round trip.
      std::int64_t width = c.workers > 0 ? 256 : 16;
      wf.root = c.shape == "fanout" ? parallel(std::move(kids), width) : sequence(std::move(kids));
    }
    // Per-task latency, ready -> output committed, on a steady clock: a task
    // becomes ready when the commit before the batch that starts it lands
    // (the last FrameCommitted delivered before its NodeStarted; RunStarted
    // for the first batch), and its output is committed when its
    // NodeFinished is delivered. Flat arrays indexed by task number keep the
    // subscriber cheap: it runs on the run's own path.
    std::mutex mtx;
    std::vector<double> ready_at(static_cast<std::size_t>(c.n) + 1, -1.0);
    std::vector<double> latencies;
    latencies.reserve(static_cast<std::size_t>(c.n));
    double boundary = 0;
    // Where the run's time goes, by phase (ms since the call): RunStarted
    // delivered, the first and the last output committed.
    double started_at = -1, first_done = -1, last_done = -1;
    // The tasks phase in tenths: when each tenth of the outputs was in (ms
    // since the first). Whether a large run is slower per step from its
    // start (its size) or becomes so (its age: a growing file, a heap).
    std::vector<double> tenths;
    std::size_t done = 0;
    auto since_start = [t_origin = clock_type::now()] {
      return std::chrono::duration<double, std::milli>(clock_type::now() - t_origin).count();
    };
    // A task's number: "t<i>", or its iteration in a loop ("list" is the
    // for_each's extra task: not measured).
    bool by_iteration = c.shape == "loop";
    auto task_no = [by_iteration, n = c.n](const event& e) -> std::size_t {
      if (by_iteration) return e.fields["iteration"].get<std::size_t>();
      const auto& id = e.fields["node_id"].get_ref<const std::string&>();
      if (id.empty() || id[0] != 't') return static_cast<std::size_t>(n);
      return static_cast<std::size_t>(std::strtol(id.c_str() + 1, nullptr, 10)); // "t<i>"
    };
    run_options opts;
    opts.on_event = [&](const event& e) {
      std::lock_guard<std::mutex> lk(mtx);
      if (e.type == "FrameCommitted" || e.type == "RunStarted") {
        boundary = since_start();
        if (e.type == "RunStarted" && started_at < 0) started_at = boundary;
      } else if (e.type == "NodeStarted") {
        ready_at[task_no(e)] = boundary;
      } else if (e.type == "NodeFinished") {
        double now = since_start(), ready = ready_at[task_no(e)];
        if (ready >= 0) latencies.push_back(now - ready);
        if (first_done < 0) first_done = now;
        last_done = now;
        if (c.n >= 10 && ++done % static_cast<std::size_t>(c.n / 10) == 0 && tenths.size() < 10)
          tenths.push_back(now - first_done);
      }
    };
    auto cpu0 = cpu_mark::now();
    auto t0 = clock_type::now();
    auto res = eng->run(wf, opts);
    double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    double end_at = since_start();
    auto cpu1 = cpu_mark::now();
    // start: validation, render, compile, the run's row; first: the tree's
    // pending rows and events, the first batch; tasks: first output to
    // last; end: the end's commit and the result.
    if (started_at >= 0 && first_done >= started_at)
      result["phases_ms"] = {{"start", started_at},
                             {"first", first_done - started_at},
                             {"tasks", last_done - first_done},
                             {"end", end_at - last_done}};
    if (tenths.size() == 10) {
      // Per tenth, not cumulative.
      json t = json::array();
      for (std::size_t i = 0; i < tenths.size(); ++i)
        t.push_back(tenths[i] - (i ? tenths[i - 1] : 0.0));
      result["tenths_ms"] = t;
    }
    // Every thread of this process, and the task processes it reaped.
    result["cpu_us_per_task"] =
        (cpu1.self_s - cpu0.self_s + cpu1.children_s - cpu0.children_s) * 1e6 / c.n;
    result["ok"] = res.status == run_status::finished && res.outputs.size() == outputs;
    result["seconds"] = secs;
    result["tasks_per_s"] = c.n / secs;
    result["latency_p50_ms"] = percentile(latencies, 0.50);
    result["latency_p99_ms"] = percentile(latencies, 0.99);
    result["peak_rss_mb"] = static_cast<double>(peak_rss_kb_self()) / 1024.0;
    // The database as it stays: the engine closes it (checkpointing the WAL
    // into it) before it is measured.
    eng.reset();
    if (c.db != "memory") result["db_bytes_per_task"] = static_cast<double>(db_bytes(db)) / c.n;
  }
  if (!floor.is_null()) {
    result["floor"] = floor;
    result["ratio"] = result["seconds"].get<double>() / floor["seconds"].get<double>();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::cout << result.dump() << std::endl;
  return result["ok"].get<bool>() ? 0 : 1;
}

// Runs a case's command line and parses the case's JSON line.
json run_command(const std::string& cmd, const bench_case& c) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {{"case", c.name}, {"ok", false}};
  std::string out;
  char buf[4096];
  while (fgets(buf, sizeof buf, p))
    out += buf;
  int rc = pclose(p);
  try {
    auto pos = out.rfind("{\"case\""); // the last line: the case's figures
    json j = json::parse(out.substr(pos));
    if (rc != 0) j["ok"] = false;
    return j;
  } catch (...) {
    return {{"case", c.name}, {"ok", false}, {"output", out}};
  }
}

// --tasks N of the parent, passed on to its children (0: the cases' own).
int tasks_override = 0;

std::string case_args(const bench_case& c) {
  std::string a = " --case '" + c.name + "'";
  if (tasks_override > 0) a += " --tasks " + std::to_string(tasks_override);
  return a;
}

// Runs a case in a child process (fresh RSS) and parses its JSON line.
json run_child(const std::string& self, const bench_case& c) {
  return run_command("'" + self + "'" + case_args(c), c);
}

// --check: every chosen case once, small and without its floor, each in a
// child as in a measurement. A case that no longer runs (a generated
// workflow the CLI refuses, a function not registered) fails here, in the
// test suite, rather than as a FAILED row in the next measurement.
int check_cases(const std::string& self, const std::vector<const bench_case*>& chosen) {
  int failed = 0;
  for (const auto* c : chosen) {
    json j = run_command("'" + self + "'" + case_args(*c) + " --no-floor 2>&1", *c);
    bool ok = j.value("ok", false);
    std::printf("%-32s %s\n", c->name.c_str(), ok ? "ok" : "FAILED");
    if (!ok) {
      ++failed;
      std::printf("  %s\n", j.dump().c_str());
    }
  }
  std::printf("%zu cases, %d failed\n", chosen.size(), failed);
  return failed == 0 ? 0 : 1;
}

// Instruction counts. Wall time on a shared VM moves by half between
// passes a minute apart; the instructions a run executes barely move (a
// fan-out's to 0.01 % run after run, a chain's to ~1 %: its idle threads
// poll for as long as a step takes). A case runs in a child under cachegrind,
// without its floor, with no cache simulation (fast) and with
// --fair-sched, so a hand-off between threads does not wait for valgrind's
// time slice. Cases that start other processes count only this one's.
bool counts_instructions(const bench_case& c) {
  return !c.cli && c.shape != "start" && c.workers == 0;
}

json run_counted(const std::string& self, const bench_case& c) {
  std::string dir = temp_dir(), out = dir + "/cachegrind.out";
  json j = run_command("valgrind --tool=cachegrind --cache-sim=no --fair-sched=yes "
                       "--cachegrind-out-file='" +
                           out + "' '" + self + "'" + case_args(c) + " --no-floor 2>/dev/null",
                       c);
  // The file's `summary:` line holds the program's total of each event
  // (here only Ir, instructions executed).
  std::ifstream in(out);
  std::string line;
  double instructions = 0;
  while (std::getline(in, line))
    if (line.rfind("summary:", 0) == 0) instructions = std::strtod(line.c_str() + 8, nullptr);
  if (instructions <= 0) j["ok"] = false;
  j["instructions"] = instructions;
  j["instructions_per_task"] = instructions / c.n;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return j;
}

// `--instructions`: each chosen case once, its instructions per task, and
// time(100k) / time(10k) counted in instructions per family.
int count_instructions(const std::string& self, const std::vector<const bench_case*>& chosen,
                       const std::string& json_out) {
  if (std::system("valgrind --version >/dev/null 2>&1") != 0) {
    std::cerr << "--instructions needs valgrind (apt-get install valgrind)\n";
    return 4;
  }
  json all = json::array();
  std::printf("%-28s %14s %12s\n", "case", "instructions", "per task");
  for (const auto* c : chosen) {
    if (!counts_instructions(*c)) continue;
    json j = run_counted(self, *c);
    std::printf("%-28s %14.0f %12.0f%s\n", c->name.c_str(), j["instructions"].get<double>(),
                j["instructions_per_task"].get<double>(), j.value("ok", false) ? "" : "  FAILED");
    std::fflush(stdout);
    all.push_back(j);
  }
  auto count_of = [&](const std::string& name) {
    for (const auto& j : all)
      if (j["case"] == name) return j["instructions"].get<double>();
    return 0.0;
  };
  json scaling = json::object();
  for (const auto* c : chosen) {
    const std::string suffix = "/10000/" + c->db;
    auto at = c->name.find(suffix);
    if (at == std::string::npos || at + suffix.size() != c->name.size()) continue;
    std::string fam = c->name.substr(0, at);
    double a = count_of(c->name), b = count_of(fam + "/100000/" + c->db);
    if (a <= 0 || b <= 0) continue;
    scaling[fam + "/" + c->db] = b / a;
    std::printf("scaling %-22s instructions(100k)/instructions(10k) = %.2f\n",
                (fam + "/" + c->db).c_str(), b / a);
  }
  std::ofstream(json_out) << json{{"results", all}, {"scaling", scaling}}.dump(2) << "\n";
  std::printf("results written to %s\n", json_out.c_str());
  bool ok = std::all_of(all.begin(), all.end(), [](const json& j) { return j.value("ok", false); });
  return ok ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  std::string filter, one, json_out;
  int repeat = 1;
  bool no_floor = false, instructions = false, check = false;
  int tasks = 0; // --tasks; --check's default is 20
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(4);
      }
      return argv[++i];
    };
    if (a == "--filter")
      filter = next();
    else if (a == "--case")
      one = next();
    else if (a == "--repeat")
      repeat = std::max(1, std::stoi(next()));
    else if (a == "--json")
      json_out = next();
    else if (a == "--no-floor")
      no_floor = true;
    else if (a == "--instructions")
      instructions = true;
    else if (a == "--check")
      check = true;
    else if (a == "--tasks") {
      std::string v = next();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < 1 || n > 10000000) {
        std::cerr << "--tasks needs a whole number from 1 to 10000000, not \"" << v << "\"\n";
        return 4;
      }
      tasks = static_cast<int>(n);
    } else {
      std::cerr << "usage: smithers_bench [--filter TEXT] [--repeat N] [--json FILE] "
                   "[--instructions] [--check] [--tasks N] [--case NAME [--no-floor]]\n";
      return 4;
    }
  }
  auto cases = all_cases();
  if (check && tasks == 0) tasks = 20;
  tasks_override = tasks;
  if (tasks > 0)
    for (auto& c : cases)
      if (c.shape != "start") c.n = tasks; // a start case is one task whatever its size
  if (!one.empty()) {
    for (const auto& c : cases)
      if (c.name == one) return run_case(c, no_floor);
    std::cerr << "no case " << one << "\n";
    return 4;
  }
  std::string self = std::filesystem::canonical("/proc/self/exe").string();
  std::vector<const bench_case*> chosen;
  for (const auto& c : cases)
    if (filter.empty() || c.name.find(filter) != std::string::npos) chosen.push_back(&c);
  if (check) return check_cases(self, chosen);
  if (instructions && repeat > 1)
    std::fprintf(stderr, "--instructions: one pass (counts repeat to ~1 %%)\n");
  if (instructions)
    return count_instructions(self, chosen,
                              json_out.empty() ? "bench-instructions.json" : json_out);
  if (json_out.empty()) json_out = "bench-results.json";
  // Passes over the cases rather than one case N times in a row: this VM's
  // speed drifts within minutes, so each case's runs are spread over the
  // whole command, and the 10k and 100k runs of a pass (adjacent cases)
  // see the same machine for the scaling ratio.
  std::vector<std::vector<json>> runs(chosen.size());
  for (int r = 0; r < repeat; ++r) {
    if (repeat > 1) std::fprintf(stderr, "pass %d of %d\n", r + 1, repeat);
    for (std::size_t i = 0; i < chosen.size(); ++i)
      runs[i].push_back(run_child(self, *chosen[i]));
  }
  json all = json::array();
  std::printf("%-28s %8s %9s %8s %6s %7s %7s %8s %8s %9s\n", "case", "seconds", "tasks/s",
              "floor s", "ratio", "p50 ms", "p99 ms", "cpu us/t", "peak MB", "DB B/task");
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    const auto& c = *chosen[i];
    auto med = [&](const char* key) {
      std::vector<double> v;
      for (const auto& j : runs[i])
        if (j.contains(key)) v.push_back(j[key].get<double>());
      return median(v);
    };
    bool ok = std::all_of(runs[i].begin(), runs[i].end(),
                          [](const json& j) { return j.value("ok", false); });
    json row = {{"case", c.name},
                {"n", c.n},
                {"ok", ok},
                {"repeat", repeat},
                {"seconds", med("seconds")},
                {"tasks_per_s", med("tasks_per_s")},
                {"latency_p50_ms", med("latency_p50_ms")},
                {"latency_p99_ms", med("latency_p99_ms")},
                {"peak_rss_mb", med("peak_rss_mb")},
                {"db_bytes_per_task", med("db_bytes_per_task")},
                {"cpu_us_per_task", med("cpu_us_per_task")},
                {"runs", runs[i]}};
    // The floor and the ratio: medians of each run's own (measured just
    // before that run, on the same machine).
    std::vector<double> floors, ratios;
    for (const auto& j : runs[i])
      if (j.contains("floor") && j["floor"].is_object()) {
        floors.push_back(j["floor"]["seconds"].get<double>());
        ratios.push_back(j.value("ratio", 0.0));
      }
    if (!floors.empty()) {
      row["floor_seconds"] = median(floors);
      row["ratio"] = median(ratios);
      row["floor_what"] = runs[i].front()["floor"]["what"];
    }
    if (c.shape == "start") row["start_ms"] = med("start_ms");
    char floor_s[32] = "", ratio_s[32] = "";
    if (!floors.empty()) {
      std::snprintf(floor_s, sizeof floor_s, "%.3f", median(floors));
      std::snprintf(ratio_s, sizeof ratio_s, "%.2f", median(ratios));
    }
    std::printf("%-28s %8.3f %9.0f %8s %6s %7.2f %7.2f %8.1f %8.1f %9.0f%s\n", c.name.c_str(),
                row["seconds"].get<double>(), row["tasks_per_s"].get<double>(), floor_s, ratio_s,
                row["latency_p50_ms"].get<double>(), row["latency_p99_ms"].get<double>(),
                row["cpu_us_per_task"].get<double>(), row["peak_rss_mb"].get<double>(),
                row["db_bytes_per_task"].get<double>(), ok ? "" : "  FAILED");
    if (c.shape == "start")
      std::printf("  start to first task: %.2f ms (median of %d starts per run; the stamp "
                  "program alone: %.2f ms)\n",
                  row["start_ms"].get<double>(), start_samples,
                  row["floor_seconds"].get<double>() * 1e3);
    all.push_back(row);
  }
  // Scaling: time(100k) / time(10k) per fan-out family, as the median of
  // each pass's own ratio (its two runs ran one after the other) and as
  // the ratio of the two medians.
  json scaling = json::object();
  auto runs_of = [&](const std::string& name) -> const std::vector<json>* {
    for (std::size_t i = 0; i < chosen.size(); ++i)
      if (chosen[i]->name == name) return &runs[i];
    return nullptr;
  };
  auto seconds_of = [&](const std::string& name) {
    for (const auto& r : all)
      if (r["case"] == name) return r["seconds"].get<double>();
    return 0.0;
  };
  for (const char* fam : {"fanout/static", "fanout/compute", "fanout/direct", "fanout/command",
                          "chain/static", "chain/compute", "chain/direct"})
    for (const char* db : {"file", "memory"}) {
      std::string family = std::string{fam} + "/" + db;
      const auto* small = runs_of(std::string{fam} + "/10000/" + db);
      const auto* large = runs_of(std::string{fam} + "/100000/" + db);
      if (!small || !large) continue;
      // The floor's own ratio, where the case has one: the same work with
      // no engine grows too (a chain's commits go into a growing file), and
      // the engine's ratio reads against it.
      auto floor_seconds = [](const json& run) {
        const auto f = run.find("floor");
        return f != run.end() && f->is_object() ? f->value("seconds", 0.0) : 0.0;
      };
      std::vector<double> per_pass, floor_per_pass;
      // Which phase grows: each phase's own ratio, pass by pass.
      const char* phase_names[] = {"start", "first", "tasks", "end"};
      std::vector<double> phase_ratios[4];
      for (std::size_t r = 0; r < small->size() && r < large->size(); ++r) {
        double a = (*small)[r].value("seconds", 0.0), b = (*large)[r].value("seconds", 0.0);
        if (a > 0 && b > 0) per_pass.push_back(b / a);
        const auto ps = (*small)[r].find("phases_ms"), pl = (*large)[r].find("phases_ms");
        if (ps != (*small)[r].end() && pl != (*large)[r].end())
          for (int k = 0; k < 4; ++k) {
            double x = ps->value(phase_names[k], 0.0), y = pl->value(phase_names[k], 0.0);
            if (x > 0 && y > 0) phase_ratios[k].push_back(y / x);
          }
        double fa = floor_seconds((*small)[r]), fb = floor_seconds((*large)[r]);
        if (fa > 0 && fb > 0) floor_per_pass.push_back(fb / fa);
      }
      double a = seconds_of(std::string{fam} + "/10000/" + db);
      double b = seconds_of(std::string{fam} + "/100000/" + db);
      if (per_pass.empty() || a <= 0) continue;
      scaling[family] = {{"median_of_pass_ratios", median(per_pass)},
                         {"pass_ratios", per_pass},
                         {"ratio_of_medians", b / a}};
      if (!floor_per_pass.empty()) {
        scaling[family]["floor_median_of_pass_ratios"] = median(floor_per_pass);
        scaling[family]["floor_pass_ratios"] = floor_per_pass;
      }
      std::printf("scaling %-20s time(100k)/time(10k) = %.2f (passes:", family.c_str(),
                  median(per_pass));
      for (double x : per_pass)
        std::printf(" %.2f", x);
      std::printf("; ratio of medians %.2f", b / a);
      if (!floor_per_pass.empty()) std::printf("; floor %.2f", median(floor_per_pass));
      std::printf(")\n");
      if (!phase_ratios[0].empty()) {
        std::printf("        %-20s phases:", "");
        for (int k = 0; k < 4; ++k) {
          if (phase_ratios[k].empty()) continue;
          scaling[family]["phase_ratios"][phase_names[k]] = median(phase_ratios[k]);
          std::printf(" %s %.2f", phase_names[k], median(phase_ratios[k]));
        }
        std::printf("\n");
      }
    }
  std::ofstream(json_out) << json{{"results", all}, {"scaling", scaling}}.dump(2) << "\n";
  std::printf("results written to %s\n", json_out.c_str());
  bool ok = std::all_of(all.begin(), all.end(), [](const json& j) { return j["ok"].get<bool>(); });
  return ok ? 0 : 1;
}
