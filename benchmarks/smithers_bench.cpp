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
//   smithers_bench --case NAME         one case in this process (used by the parent)
#include <smithers/engine.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <chrono>
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
  std::string shape; // fanout | chain | loop (one task per iteration) | foreach
  std::string kind;  // static | compute
  int n;
  std::string db;   // file | memory
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
      for (int n : {1000, 10000})
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
  for (int n : {10000, 100000})
    out.push_back({"cli/fanout/static/" + std::to_string(n), "fanout", "static", n, "file", true});
  out.push_back({"cli/chain/static/10000", "chain", "static", 10000, "file", true});
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

node make_task(const bench_case& c, int i) {
  std::string id = "t" + std::to_string(i);
  if (c.kind == "static") return value_task(id, {{"i", i}});
  if (c.kind == "remote") return compute_task(id, std::string{"noop"});
  return compute_task(id, [i](task_context&) { return json{{"i", i}}; });
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
  json kids = json::array();
  for (int i = 0; i < c.n; ++i)
    kids.push_back({{"task", "t" + std::to_string(i)}, {"value", {{"i", i}}}});
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

// Runs one case in this process and prints its figures as one JSON line.
int run_case(const bench_case& c) {
  std::string dir = temp_dir();
  std::string db = c.db == "file" ? dir + "/bench.db" : ":memory:";
  json result = {{"case", c.name}, {"n", c.n}};
  if (c.cli) {
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
    result["seconds"] = secs;
    result["tasks_per_s"] = c.n / secs;
    result["peak_rss_mb"] = static_cast<double>(ru.ru_maxrss) / 1024.0;
    result["db_bytes_per_task"] = static_cast<double>(db_bytes(db)) / c.n;
  } else {
    engine_config cfg;
    cfg.db_path = db;
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
      } else if (e.type == "NodeStarted") {
        ready_at[task_no(e)] = boundary;
      } else if (e.type == "NodeFinished") {
        double ready = ready_at[task_no(e)];
        if (ready >= 0) latencies.push_back(since_start() - ready);
      }
    };
    auto t0 = clock_type::now();
    auto res = eng->run(wf, opts);
    double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
    result["ok"] = res.status == run_status::finished && res.outputs.size() == outputs;
    result["seconds"] = secs;
    result["tasks_per_s"] = c.n / secs;
    result["latency_p50_ms"] = percentile(latencies, 0.50);
    result["latency_p99_ms"] = percentile(latencies, 0.99);
    result["peak_rss_mb"] = static_cast<double>(peak_rss_kb_self()) / 1024.0;
    // The database as it stays: the engine closes it (checkpointing the WAL
    // into it) before it is measured.
    eng.reset();
    if (c.db == "file") result["db_bytes_per_task"] = static_cast<double>(db_bytes(db)) / c.n;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::cout << result.dump() << std::endl;
  return result["ok"].get<bool>() ? 0 : 1;
}

// Runs a case in a child process (fresh RSS) and parses its JSON line.
json run_child(const std::string& self, const bench_case& c) {
  std::string cmd = "'" + self + "' --case '" + c.name + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {{"case", c.name}, {"ok", false}};
  std::string out;
  char buf[4096];
  while (fgets(buf, sizeof buf, p))
    out += buf;
  int rc = pclose(p);
  try {
    auto pos = out.rfind('{');
    json j = json::parse(out.substr(pos));
    if (rc != 0) j["ok"] = false;
    return j;
  } catch (...) {
    return {{"case", c.name}, {"ok", false}, {"output", out}};
  }
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2; // an even count: the middle two's mean
}

} // namespace

int main(int argc, char** argv) {
  std::string filter, one, json_out = "bench-results.json";
  int repeat = 1;
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
    else {
      std::cerr << "usage: smithers_bench [--filter TEXT] [--repeat N] [--json FILE]\n";
      return 4;
    }
  }
  auto cases = all_cases();
  if (!one.empty()) {
    for (const auto& c : cases)
      if (c.name == one) return run_case(c);
    std::cerr << "no case " << one << "\n";
    return 4;
  }
  std::string self = std::filesystem::canonical("/proc/self/exe").string();
  std::vector<const bench_case*> chosen;
  for (const auto& c : cases)
    if (filter.empty() || c.name.find(filter) != std::string::npos) chosen.push_back(&c);
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
  std::printf("%-28s %10s %12s %9s %9s %10s %10s\n", "case", "seconds", "tasks/s", "p50 ms",
              "p99 ms", "peak MB", "DB B/task");
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
                {"runs", runs[i]}};
    std::printf("%-28s %10.3f %12.0f %9.2f %9.2f %10.1f %10.0f%s\n", c.name.c_str(),
                row["seconds"].get<double>(), row["tasks_per_s"].get<double>(),
                row["latency_p50_ms"].get<double>(), row["latency_p99_ms"].get<double>(),
                row["peak_rss_mb"].get<double>(), row["db_bytes_per_task"].get<double>(),
                ok ? "" : "  FAILED");
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
  for (const char* fam : {"fanout/static", "fanout/compute"})
    for (const char* db : {"file", "memory"}) {
      std::string family = std::string{fam} + "/" + db;
      const auto* small = runs_of(std::string{fam} + "/10000/" + db);
      const auto* large = runs_of(std::string{fam} + "/100000/" + db);
      if (!small || !large) continue;
      std::vector<double> per_pass;
      for (std::size_t r = 0; r < small->size() && r < large->size(); ++r) {
        double a = (*small)[r].value("seconds", 0.0), b = (*large)[r].value("seconds", 0.0);
        if (a > 0 && b > 0) per_pass.push_back(b / a);
      }
      double a = seconds_of(std::string{fam} + "/10000/" + db);
      double b = seconds_of(std::string{fam} + "/100000/" + db);
      if (per_pass.empty() || a <= 0) continue;
      scaling[family] = {{"median_of_pass_ratios", median(per_pass)},
                         {"pass_ratios", per_pass},
                         {"ratio_of_medians", b / a}};
      std::printf("scaling %-20s time(100k)/time(10k) = %.2f (passes:", family.c_str(),
                  median(per_pass));
      for (double x : per_pass)
        std::printf(" %.2f", x);
      std::printf("; ratio of medians %.2f)\n", b / a);
    }
  std::ofstream(json_out) << json{{"results", all}, {"scaling", scaling}}.dump(2) << "\n";
  std::printf("results written to %s\n", json_out.c_str());
  bool ok = std::all_of(all.begin(), all.end(), [](const json& j) { return j["ok"].get<bool>(); });
  return ok ? 0 : 1;
}
