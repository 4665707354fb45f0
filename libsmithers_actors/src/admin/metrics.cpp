#include <smithers/metrics.hpp>

#include <smithers/admin.hpp>
#include <smithers/status.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <string_view>
#include <unordered_map>

namespace smithers {

namespace {

// ---- the text format ------------------------------------------------------

// The shortest form that reads back exactly, never the locale's: plain
// for 1e-4 <= |v| < 1e21 ("0.0001", "2.5", "300"; an `le` label is matched
// as text, and Prometheus' own clients write these so), else "1e-05".
void put_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[400]; // fixed notation of a double below 1e21 needs < 350
  double a = std::fabs(v);
  auto fmt =
      a == 0 || (a >= 1e-4 && a < 1e21) ? std::chars_format::fixed : std::chars_format::scientific;
  auto r = std::to_chars(buf, buf + sizeof buf, v, fmt);
  out.append(buf, r.ptr);
}

void put_number(std::string& out, std::uint64_t v) {
  out += std::to_string(v);
}
void put_number(std::string& out, std::int64_t v) {
  out += std::to_string(v);
}

// A label value: backslash, double quote and newline escaped.
void put_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

using labels = std::vector<std::pair<const char*, std::string_view>>;

void put_labels(std::string& out, const labels& ls) {
  if (ls.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : ls) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    put_label_value(out, v);
    out += '"';
  }
  out += '}';
}

// HELP and TYPE come before a family's samples (help texts here hold no
// backslash or newline, which would need escaping).
void put_family(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

template <class V>
void put_sample(std::string& out, std::string_view name, const labels& ls, V value) {
  out += name;
  put_labels(out, ls);
  out += ' ';
  put_number(out, value);
  out += '\n';
}

template <class V>
void put_single(std::string& out, const char* name, const char* type, const char* help, V value) {
  put_family(out, name, type, help);
  put_sample(out, name, {}, value);
}

// `cumulative[i]`: observations <= bounds[i]; `count`: all (+Inf).
template <class C>
void put_histogram(std::string& out, const char* name, const char* help,
                   const std::vector<double>& bounds, const std::vector<C>& cumulative, C count,
                   double sum) {
  put_family(out, name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  std::string le;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    le.clear();
    put_number(le, bounds[i]);
    put_sample(out, bucket, {{"le", le}}, i < cumulative.size() ? cumulative[i] : C{});
  }
  put_sample(out, bucket, {{"le", "+Inf"}}, count);
  put_sample(out, std::string(name) + "_sum", {}, sum);
  put_sample(out, std::string(name) + "_count", {}, count);
}

// ---- what is counted --------------------------------------------------------

struct histogram {
  const std::vector<double>* bounds;
  std::vector<std::uint64_t> buckets; // per bucket, not cumulative; the last is +Inf
  double sum = 0;
  std::uint64_t count = 0;

  explicit histogram(const std::vector<double>& b) : bounds(&b), buckets(b.size() + 1, 0) {}

  void observe(double v) {
    // The first bound >= v: buckets are "less than or equal".
    auto i = std::lower_bound(bounds->begin(), bounds->end(), v) - bounds->begin();
    ++buckets[static_cast<std::size_t>(i)];
    sum += v;
    ++count;
  }

  void put(std::string& out, const char* name, const char* help) const {
    std::vector<std::uint64_t> cumulative;
    std::uint64_t running = 0;
    for (std::size_t i = 0; i < bounds->size(); ++i)
      cumulative.push_back(running += buckets[i]);
    put_histogram(out, name, help, *bounds, cumulative, count, sum);
  }
};

double seconds_between(std::int64_t from_ms, std::int64_t to_ms) {
  return to_ms > from_ms ? static_cast<double>(to_ms - from_ms) / 1000.0 : 0.0;
}

// The events metrics look at; everything else (lines, heartbeats, frames)
// is dropped before the lock.
enum class kind {
  none,
  run_started,
  run_resumed,
  run_finished,
  run_failed,
  run_cancelled,
  run_continued,
  node_pending,
  node_started,
  node_finished,
  node_failed,
  node_retrying,
  node_cancelled,
  node_skipped,
  cache_hit,
  wait_resolved, // ApprovalDecided, TimerFired, SignalReceived: a wait ends next
  worker_joined,
  worker_lost,
};

kind classify(const std::string& type) {
  static const std::pair<const char*, kind> known[] = {
      {event_type::node_pending, kind::node_pending},
      {event_type::node_started, kind::node_started},
      {event_type::node_finished, kind::node_finished},
      {event_type::node_failed, kind::node_failed},
      {event_type::node_retrying, kind::node_retrying},
      {event_type::node_cancelled, kind::node_cancelled},
      {event_type::node_skipped, kind::node_skipped},
      {event_type::cache_hit, kind::cache_hit},
      {event_type::run_started, kind::run_started},
      {event_type::run_resumed, kind::run_resumed},
      {event_type::run_finished, kind::run_finished},
      {event_type::run_failed, kind::run_failed},
      {event_type::run_cancelled, kind::run_cancelled},
      {event_type::run_continued_as_new, kind::run_continued},
      {event_type::approval_decided, kind::wait_resolved},
      {event_type::timer_fired, kind::wait_resolved},
      {event_type::signal_received, kind::wait_resolved},
      {event_type::worker_joined, kind::worker_joined},
      {event_type::worker_lost, kind::worker_lost},
  };
  for (const auto& [name, k] : known)
    if (type == name) return k;
  return kind::none;
}

std::string text_field(const json& f, const char* key) {
  auto it = f.find(key);
  return it != f.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::int64_t int_field(const json& f, const char* key) {
  auto it = f.find(key);
  return it != f.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

// A failure that ends a wait, not a task: a signal's timeout, a denial.
bool wait_error(const json& f) {
  auto it = f.find("error");
  if (it == f.end() || !it->is_object()) return false;
  std::string code = text_field(*it, "code");
  return code == errc::signal_timeout || code == errc::approval_denied;
}

struct run_counts {
  std::uint64_t started = 0, resumed = 0, finished = 0, failed = 0, cancelled = 0, continued = 0;
};

// What is known of a run: the workflow label its series get, and how many
// node entries it holds (so that its end drops them without a scan when
// there are none, the usual case).
struct run_entry {
  std::string workflow;
  std::uint64_t no = 0;
  std::size_t nodes = 0;
  std::list<std::string>::iterator order; // in runs_by_use
};

struct node_ref {
  std::uint64_t run = 0; // run_entry::no: runs are interned
  std::string node_id;
  std::int64_t iteration = 0;
  bool operator==(const node_ref& o) const {
    return run == o.run && iteration == o.iteration && node_id == o.node_id;
  }
};

struct node_ref_hash {
  std::size_t operator()(const node_ref& r) const {
    std::size_t h = std::hash<std::string>{}(r.node_id);
    h ^= std::hash<std::uint64_t>{}(r.run) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= std::hash<std::int64_t>{}(r.iteration) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
  }
};

enum class phase {
  pending, // NodePending seen, not started: its start observes the queue wait
  live,    // an attempt in flight
  wait,    // an approval, timer or signal: not a task
};

struct node_entry {
  phase ph = phase::pending;
  std::int64_t at_ms = 0;
  bool cached = false; // a cache hit: no duration
  run_entry* run = nullptr;
  std::list<node_ref>::iterator order; // in nodes_by_age
};

// The database's figures, as run_store::stats() gives them.
struct db_figures {
  std::map<std::string, std::map<std::string, std::int64_t>> runs; // workflow -> status -> n
  std::map<std::string, std::int64_t> attempts;                    // state -> n
  std::vector<std::int64_t> cumulative;
  std::int64_t count = 0;
  double sum = 0;
};

db_figures figures_from(const json& j) {
  db_figures f;
  for (const auto& r : j.at("runs"))
    f.runs[r.at("workflow").get<std::string>()][r.at("status").get<std::string>()] +=
        r.at("count").get<std::int64_t>();
  for (const auto& [state, n] : j.at("attempts").items())
    f.attempts[state] = n.get<std::int64_t>();
  const auto& h = j.at("attempt_duration_seconds");
  f.cumulative = h.at("cumulative").get<std::vector<std::int64_t>>();
  f.count = h.at("count").get<std::int64_t>();
  f.sum = h.at("sum").get<double>();
  return f;
}

} // namespace

// ---- metrics ----------------------------------------------------------------

const std::vector<double>& metrics::duration_bounds() {
  static const std::vector<double> b{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                     1,     2.5,   5,    10,    30,   60,  300};
  return b;
}

const std::vector<double>& metrics::commit_latency_bounds() {
  // Commits usually take well under a millisecond (WAL, no sync): finer
  // than the other durations at the low end.
  static const std::vector<double> b{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
  return b;
}

const std::vector<double>& metrics::batch_bounds() {
  static const std::vector<double> b{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  return b;
}

struct metrics::impl {
  mutable std::mutex mu; // everything below up to db_mu
  std::map<std::string, run_counts> by_workflow;
  std::uint64_t tasks_started = 0, tasks_finished = 0, tasks_failed = 0, tasks_retried = 0,
                tasks_cancelled = 0, cache_hits = 0;
  std::size_t in_flight = 0; // node entries in phase live
  std::set<std::string> workers;
  histogram attempt_duration{duration_bounds()};
  histogram queue_wait{duration_bounds()};
  histogram commit_batch{batch_bounds()};
  histogram commit_latency{commit_latency_bounds()};

  std::unordered_map<std::string, run_entry> runs;
  std::list<std::string> runs_by_use; // least recently seen first
  std::uint64_t next_run_no = 1;
  std::unordered_map<node_ref, node_entry, node_ref_hash> nodes;
  std::list<node_ref> nodes_by_age; // oldest first

  // The database's figures; its own lock, so that a slow read never holds
  // up observe() on an engine thread. Scrapes meanwhile wait for that read.
  mutable std::mutex db_mu;
  mutable bool db_have = false;
  mutable db_figures db;
  mutable std::chrono::steady_clock::time_point db_read_at;
  mutable std::chrono::steady_clock::duration db_ttl{};
  mutable const run_store* db_source = nullptr;
  mutable std::uint64_t db_errors = 0;

  // -- runs

  // The label of a workflow, within max_workflows values.
  std::string label_for(const std::string& workflow) {
    if (by_workflow.count(workflow) || by_workflow.size() < max_workflows) {
      by_workflow[workflow]; // its series exist from now on, at 0
      return workflow;
    }
    by_workflow["_other"];
    return "_other";
  }

  run_entry* find_run(const std::string& run_id) {
    auto it = runs.find(run_id);
    if (it == runs.end()) return nullptr;
    runs_by_use.splice(runs_by_use.end(), runs_by_use, it->second.order);
    return &it->second;
  }

  // The run, entered when unknown (with `workflow`, or "" when that is
  // null); a known run takes `workflow` when given.
  run_entry& touch_run(const std::string& run_id, const std::string* workflow = nullptr) {
    if (auto* r = find_run(run_id)) {
      if (workflow) r->workflow = label_for(*workflow);
      return *r;
    }
    if (runs.size() >= max_runs) forget_run(runs.at(runs_by_use.front()));
    auto& r = runs[run_id];
    r.no = next_run_no++;
    r.workflow = label_for(workflow ? *workflow : std::string());
    r.order = runs_by_use.insert(runs_by_use.end(), run_id);
    return r;
  }

  // A run ended (or is dropped): its workflow and its node entries go.
  void forget_run(run_entry& r) {
    if (r.nodes > 0)
      for (auto it = nodes_by_age.begin(); it != nodes_by_age.end() && r.nodes > 0;) {
        auto next = std::next(it);
        if (it->run == r.no) erase_node(nodes.find(*it));
        it = next;
      }
    std::string id = *r.order;
    runs_by_use.erase(r.order);
    runs.erase(id);
  }

  run_counts& counts_of(const run_entry* r) { return by_workflow[r ? r->workflow : label_for("")]; }

  // -- nodes

  using node_it = std::unordered_map<node_ref, node_entry, node_ref_hash>::iterator;

  node_ref ref_of(const run_entry& r, const json& f) const {
    return {r.no, text_field(f, "node_id"), int_field(f, "iteration")};
  }

  node_it find_node(const std::string& run_id, const json& f) {
    auto* r = find_run(run_id);
    if (!r || r->nodes == 0) return nodes.end();
    return nodes.find(ref_of(*r, f));
  }

  void erase_node(node_it it) {
    if (it == nodes.end()) return;
    if (it->second.ph == phase::live) --in_flight;
    --it->second.run->nodes;
    nodes_by_age.erase(it->second.order);
    nodes.erase(it);
  }

  // Enters the node (or moves it) into phase `ph` as of `at_ms`: the newest
  // entry. Past the cap the oldest entry is dropped, counted in nothing.
  node_entry& put_node(run_entry& r, node_ref key, phase ph, std::int64_t at_ms) {
    auto it = nodes.find(key);
    if (it == nodes.end()) {
      if (nodes.size() >= max_node_entries) erase_node(nodes.find(nodes_by_age.front()));
      auto order = nodes_by_age.insert(nodes_by_age.end(), key);
      it = nodes.emplace(std::move(key), node_entry{}).first;
      it->second.order = order;
      it->second.run = &r;
      ++r.nodes;
    } else {
      if (it->second.ph == phase::live) --in_flight;
      nodes_by_age.splice(nodes_by_age.end(), nodes_by_age, it->second.order);
    }
    auto& e = it->second;
    e.ph = ph;
    e.at_ms = at_ms;
    e.cached = false;
    if (ph == phase::live) ++in_flight;
    return e;
  }

  // An attempt ended (finished, failed, cancelled): its duration, when its
  // start was seen here.
  void end_attempt(node_it it, std::int64_t at_ms) {
    if (it == nodes.end()) return;
    if (it->second.ph == phase::live && !it->second.cached)
      attempt_duration.observe(seconds_between(it->second.at_ms, at_ms));
    erase_node(it);
  }

  bool is(node_it it, phase ph) const { return it != nodes.end() && it->second.ph == ph; }

  // -- events

  void apply(kind k, const event& ev) {
    const json& f = ev.fields;
    const std::int64_t at = ev.timestamp_ms;
    switch (k) {
    case kind::run_started: {
      std::string workflow = text_field(f, "workflow");
      ++by_workflow[touch_run(ev.run_id, &workflow).workflow].started;
      break;
    }
    case kind::run_resumed:
      ++by_workflow[touch_run(ev.run_id).workflow].resumed;
      break;
    case kind::run_finished:
    case kind::run_failed:
    case kind::run_cancelled:
    case kind::run_continued: {
      auto* r = find_run(ev.run_id);
      auto& c = counts_of(r);
      if (k == kind::run_finished) ++c.finished;
      if (k == kind::run_failed) ++c.failed;
      if (k == kind::run_cancelled) ++c.cancelled;
      if (k == kind::run_continued) {
        ++c.continued;
        // The successor runs the same workflow; its RunStarted is written
        // by this run's last commit and never published.
        std::string next = text_field(f, "next_run_id");
        if (!next.empty() && r) {
          std::string workflow = r->workflow; // a label already: label_for keeps it
          touch_run(next, &workflow);         // evicts the least recent run, not r
        }
      }
      if (r) forget_run(*r);
      break;
    }
    case kind::node_pending: {
      auto& r = touch_run(ev.run_id);
      put_node(r, ref_of(r, f), phase::pending, at);
      break;
    }
    case kind::node_started: {
      auto& r = touch_run(ev.run_id);
      node_ref key = ref_of(r, f);
      if (f.contains("waits_for")) {
        put_node(r, std::move(key), phase::wait, at);
        break;
      }
      ++tasks_started;
      auto it = nodes.find(key);
      if (is(it, phase::pending)) queue_wait.observe(seconds_between(it->second.at_ms, at));
      put_node(r, std::move(key), phase::live, at);
      break;
    }
    case kind::cache_hit: {
      ++cache_hits;
      auto it = find_node(ev.run_id, f);
      if (is(it, phase::live)) it->second.cached = true;
      break;
    }
    case kind::node_finished:
    case kind::node_failed:
    case kind::node_retrying:
    case kind::node_cancelled: {
      auto it = find_node(ev.run_id, f);
      bool of_wait = is(it, phase::wait) ||
                     ((k == kind::node_failed || k == kind::node_retrying) && wait_error(f));
      if (of_wait) {
        if (k != kind::node_retrying) erase_node(it);
        break;
      }
      if (k == kind::node_finished) ++tasks_finished;
      if (k == kind::node_failed) ++tasks_failed;
      if (k == kind::node_retrying) ++tasks_retried;
      if (k == kind::node_cancelled && is(it, phase::live)) ++tasks_cancelled;
      if (k == kind::node_finished && f.value("cached", false) && is(it, phase::live))
        it->second.cached = true;
      end_attempt(it, at); // a pending node cancelled or finished: dropped
      break;
    }
    case kind::node_skipped:
      erase_node(find_node(ev.run_id, f));
      break;
    case kind::wait_resolved: {
      // The node's end that follows is a wait's (or, for an approved gate,
      // its task starts after it, without a queue wait).
      auto& r = touch_run(ev.run_id);
      node_ref key = ref_of(r, f);
      auto it = nodes.find(key);
      if (!is(it, phase::wait)) put_node(r, std::move(key), phase::wait, at);
      break;
    }
    case kind::worker_joined:
      workers.insert(text_field(f, "worker"));
      break;
    case kind::worker_lost:
      workers.erase(text_field(f, "worker"));
      break;
    case kind::none:
      break;
    }
  }

  // -- output

  void put_process(std::string& out) const {
    struct run_family {
      const char* name;
      const char* help;
      std::uint64_t run_counts::*field;
    };
    static const run_family run_families[] = {
        {"smithers_runs_started_total", "Runs started by this process (RunStarted).",
         &run_counts::started},
        {"smithers_runs_resumed_total",
         "Runs this process resumed, a fork or a continue-as-new successor it started included "
         "(RunResumed).",
         &run_counts::resumed},
        {"smithers_runs_finished_total", "Runs this process drove that finished (RunFinished).",
         &run_counts::finished},
        {"smithers_runs_failed_total", "Runs this process drove that failed (RunFailed).",
         &run_counts::failed},
        {"smithers_runs_cancelled_total",
         "Runs this process drove that were cancelled "
         "(RunCancelled).",
         &run_counts::cancelled},
        {"smithers_runs_continued_total",
         "Runs this process drove that continued as new (RunContinuedAsNew).",
         &run_counts::continued},
    };
    for (const auto& fam : run_families) {
      put_family(out, fam.name, "counter", fam.help);
      for (const auto& [workflow, c] : by_workflow)
        put_sample(out, fam.name, {{"workflow", workflow}}, c.*fam.field);
    }
    put_single(out, "smithers_tasks_started_total", "counter",
               "Task attempts started by this process's runs (NodeStarted; approvals, timers and "
               "signals are not tasks).",
               tasks_started);
    put_single(out, "smithers_tasks_finished_total", "counter",
               "Task attempts that finished with an output (NodeFinished), cache hits included.",
               tasks_finished);
    put_single(out, "smithers_tasks_failed_total", "counter",
               "Task attempts that failed (NodeFailed), retried or not.", tasks_failed);
    put_single(out, "smithers_tasks_retried_total", "counter",
               "Failed task attempts that are retried (NodeRetrying).", tasks_retried);
    put_single(out, "smithers_tasks_cancelled_total", "counter",
               "Task attempts started here that were stopped: cancel, interrupt, unmount "
               "(NodeCancelled).",
               tasks_cancelled);
    put_single(out, "smithers_cache_hits_total", "counter",
               "Task attempts answered from the task cache (CacheHit).", cache_hits);
    put_single(out, "smithers_tasks_in_flight", "gauge", "Task attempts started and not ended yet.",
               static_cast<std::uint64_t>(in_flight));
    put_single(out, "smithers_workers_connected", "gauge",
               "Workers connected, as this process's runs last heard (WorkerJoined, WorkerLost).",
               static_cast<std::uint64_t>(workers.size()));
    attempt_duration.put(out, "smithers_attempt_duration_seconds",
                         "How long task attempts ran, from NodeStarted to their end (finished, "
                         "failed or cancelled); cache hits left out.");
    queue_wait.put(out, "smithers_queue_wait_seconds",
                   "From a node's NodePending to its first NodeStarted.");
    commit_batch.put(out, "smithers_commit_batch_size",
                     "Store commands per committed transaction of the persistence actor.");
    commit_latency.put(out, "smithers_commit_latency_seconds",
                       "How long each transaction of the persistence actor took to commit.");
  }
};

void put_database(std::string& out, const db_figures& f, std::uint64_t errors) {
  put_family(out, "smithers_db_runs", "gauge",
             "Runs in the database by workflow and status, whoever drives them.");
  for (const auto& [workflow, by_status] : f.runs) {
    // Every status of a workflow that has runs: a status emptied shows 0.
    std::map<std::string, std::int64_t> all = by_status;
    for (auto s = static_cast<int>(run_status::created);
         s <= static_cast<int>(run_status::continued); ++s)
      all.emplace(to_string(static_cast<run_status>(s)), 0);
    for (const auto& [status, n] : all)
      put_sample(out, "smithers_db_runs", {{"workflow", workflow}, {"status", status}}, n);
  }
  std::map<std::string, std::int64_t> attempts = f.attempts;
  for (const char* s : {attempt_state::in_progress, attempt_state::finished, attempt_state::failed,
                        attempt_state::cancelled})
    attempts.emplace(s, 0);
  put_family(out, "smithers_db_attempts", "gauge", "Attempts in the database by state.");
  for (const auto& [state, n] : attempts)
    put_sample(out, "smithers_db_attempts", {{"state", state}}, n);
  put_single(out, "smithers_db_tasks_in_flight", "gauge",
             "Attempts in the database in state in-progress (a dead owner's stay so until a "
             "resume or cancel).",
             attempts[attempt_state::in_progress]);
  put_histogram(out, "smithers_db_attempt_duration_seconds",
                "How long the database's finished and failed attempts ran (cached ones and waits "
                "left out).",
                metrics::duration_bounds(), f.cumulative, f.count, f.sum);
  put_single(out, "smithers_db_read_errors_total", "counter",
             "Reads of the database's figures that failed (the last figures read are shown).",
             errors);
}

metrics::metrics() : impl_(std::make_unique<impl>()) {}
metrics::~metrics() = default;

void metrics::observe(const event& ev) {
  kind k = classify(ev.type);
  if (k == kind::none) return;
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->apply(k, ev);
}

void metrics::note_run(const std::string& run_id, const std::string& workflow) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->touch_run(run_id, &workflow);
}

void metrics::observe_commit(std::size_t batch_commands, std::chrono::microseconds latency) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->commit_batch.observe(static_cast<double>(batch_commands));
  impl_->commit_latency.observe(static_cast<double>(latency.count()) / 1e6);
}

std::string metrics::text() const {
  std::string out;
  out.reserve(8192);
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->put_process(out);
  return out;
}

std::string metrics::text(const run_store& store) const {
  return text() + database_text(store);
}

std::string metrics::database_text(const run_store& store) const {
  std::string out;
  std::lock_guard<std::mutex> lock(impl_->db_mu);
  auto& im = *impl_;
  auto now = std::chrono::steady_clock::now();
  bool fresh = im.db_source == &store && now - im.db_read_at < im.db_ttl;
  if (!fresh) {
    try {
      im.db = figures_from(store.stats());
      im.db_have = true;
    } catch (const std::exception&) {
      ++im.db_errors; // a failed read is not retried before the ttl either
    }
    auto end = std::chrono::steady_clock::now();
    im.db_source = &store;
    im.db_read_at = end;
    im.db_ttl = std::max<std::chrono::steady_clock::duration>(store_ttl, 10 * (end - now));
  }
  if (!im.db_have) im.db.cumulative.assign(duration_bounds().size(), 0);
  put_database(out, im.db, im.db_errors);
  return out;
}

} // namespace smithers
