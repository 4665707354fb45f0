// smithers::metrics (smithers/metrics.hpp): counters, histograms and gauges
// from event sequences shaped as the run core emits them, the text format
// checked line by line (support/exposition.hpp), and the database's figures
// from a real file.
#include <catch2/catch.hpp>

#include "store/database.hpp"
#include "store/writer.hpp"
#include "support/exposition.hpp"
#include "support/temp_dir.hpp"

#include <smithers/admin.hpp>
#include <smithers/metrics.hpp>

#include <thread>

using namespace smithers;
using test_support::exposition;
using test_support::parse_exposition;

namespace {

// One run's events, numbered as the engine numbers them.
struct run_feed {
  metrics& m;
  std::string run_id;
  std::int64_t seq = 0;

  void operator()(std::int64_t at, const char* type, json fields = json::object()) {
    event e;
    e.type = type;
    e.run_id = run_id;
    e.seq = seq++;
    e.timestamp_ms = at;
    e.fields = std::move(fields);
    m.observe(e);
  }

  // A node event: node_id and iteration first (emit_node), then `more`.
  void node(std::int64_t at, const char* type, const std::string& id, json more = json::object(),
            std::int64_t iteration = 0) {
    json f = {{"node_id", id}, {"iteration", iteration}};
    if (more.is_object()) f.update(more);
    (*this)(at, type, std::move(f));
  }

  void started(std::int64_t at, const std::string& id, std::int64_t attempt = 1) {
    node(at, event_type::node_started, id, {{"attempt", attempt}});
  }
  void finished(std::int64_t at, const std::string& id, std::int64_t attempt = 1,
                std::int64_t duration_ms = 0) {
    node(at, event_type::node_finished, id,
         {{"attempt", attempt}, {"duration_ms", duration_ms}, {"output", json::object()}});
  }
  void failed(std::int64_t at, const std::string& id, std::int64_t attempt, bool will_retry,
              const char* code = errc::task_failed) {
    json err = {{"code", code}, {"message", "it failed"}};
    node(at, event_type::node_failed, id,
         {{"attempt", attempt}, {"error", err}, {"will_retry", will_retry}});
    if (will_retry)
      node(at, event_type::node_retrying, id,
           {{"attempt", attempt},
            {"next_attempt", attempt + 1},
            {"delay_ms", 10},
            {"retry_at_ms", at + 10},
            {"error", err},
            {"redispatch", false},
            {"next_agent", false}});
  }
};

exposition scrape(const metrics& m) {
  std::string text = m.text();
  INFO(text);
  return parse_exposition(text);
}

std::string le(const std::string& family, const std::string& bound) {
  return family + "_bucket{le=\"" + bound + "\"}";
}

} // namespace

TEST_CASE("metrics: every unlabelled series is there from the start, at 0", "[metrics]") {
  metrics m;
  auto x = scrape(m);
  for (const char* name :
       {"smithers_tasks_started_total", "smithers_tasks_finished_total",
        "smithers_tasks_failed_total", "smithers_tasks_retried_total",
        "smithers_tasks_cancelled_total", "smithers_cache_hits_total", "smithers_tasks_in_flight",
        "smithers_workers_connected", "smithers_attempt_duration_seconds_count",
        "smithers_queue_wait_seconds_count", "smithers_commit_batch_size_count",
        "smithers_commit_latency_seconds_count"}) {
    INFO(name);
    CHECK(x.at(name) == 0);
  }
  CHECK(x.types.at("smithers_runs_started_total") == "counter");
  CHECK(x.types.at("smithers_tasks_in_flight") == "gauge");
  CHECK(x.types.at("smithers_attempt_duration_seconds") == "histogram");
  // Labelled families are declared, without samples yet.
  for (const char* name : {"smithers_runs_started_total", "smithers_runs_finished_total",
                           "smithers_runs_failed_total", "smithers_runs_cancelled_total"}) {
    INFO(name);
    CHECK(x.help.count(name) == 1);
    for (const auto& [series, v] : x.samples)
      CHECK(series.rfind(std::string(name) + "{", 0) != 0);
  }
  // Every bound, and +Inf.
  CHECK(x.at(le("smithers_attempt_duration_seconds", "0.001")) == 0);
  CHECK(x.at(le("smithers_attempt_duration_seconds", "300")) == 0);
  CHECK(x.at(le("smithers_attempt_duration_seconds", "+Inf")) == 0);
  CHECK(x.at(le("smithers_commit_batch_size", "1024")) == 0);
  // 8 counters and gauges; 4 histograms of 15, 15, 11, 16 bounds, each
  // with +Inf, _sum and _count.
  CHECK(x.samples.size() == 8 + 18 + 18 + 14 + 19);
}

TEST_CASE("metrics: a run with a retried task", "[metrics]") {
  metrics m;
  run_feed r{m, "r1"};
  r(1000, event_type::run_started, {{"workflow", "build"}, {"input", json::object()}});
  r.node(1000, event_type::node_pending, "a");
  r.node(1000, event_type::node_pending, "b");
  r(1000, event_type::frame_committed, {{"frame_no", 0}});
  r.started(1100, "a"); // waited 0.1 s
  r.node(1101, event_type::node_output, "a",
         {{"attempt", 1}, {"stream", "stdout"}, {"text", "x\n"}});
  r.finished(1103, "a", 1, 3);  // 3 ms
  r.started(1200, "b");         // waited 0.2 s
  r.failed(1250, "b", 1, true); // 50 ms, retried
  r.started(1500, "b", 2);      // no NodePending before it: no queue wait

  auto mid = scrape(m);
  CHECK(mid.at("smithers_tasks_in_flight") == 1);
  CHECK(mid.at("smithers_tasks_started_total") == 3);
  CHECK(mid.at("smithers_runs_started_total{workflow=\"build\"}") == 1);
  // A workflow's run series exist once it has started a run.
  CHECK(mid.at("smithers_runs_failed_total{workflow=\"build\"}") == 0);

  r.finished(3000, "b", 2, 1500); // 1.5 s
  r(3000, event_type::run_status_changed, {{"status", "finished"}});
  r(3000, event_type::run_finished, {{"duration_ms", 2000}});

  auto x = scrape(m);
  CHECK(x.at("smithers_runs_finished_total{workflow=\"build\"}") == 1);
  CHECK(x.at("smithers_runs_failed_total{workflow=\"build\"}") == 0);
  CHECK(x.at("smithers_tasks_started_total") == 3);
  CHECK(x.at("smithers_tasks_finished_total") == 2);
  CHECK(x.at("smithers_tasks_failed_total") == 1);
  CHECK(x.at("smithers_tasks_retried_total") == 1);
  CHECK(x.at("smithers_tasks_cancelled_total") == 0);
  CHECK(x.at("smithers_tasks_in_flight") == 0);

  // 0.003, 0.05 (a bound: "less than or equal"), 1.5: cumulative buckets.
  const std::string d = "smithers_attempt_duration_seconds";
  CHECK(x.at(le(d, "0.001")) == 0);
  CHECK(x.at(le(d, "0.005")) == 1);
  CHECK(x.at(le(d, "0.025")) == 1);
  CHECK(x.at(le(d, "0.05")) == 2);
  CHECK(x.at(le(d, "1")) == 2);
  CHECK(x.at(le(d, "2.5")) == 3);
  CHECK(x.at(le(d, "+Inf")) == 3);
  CHECK(x.at(d + "_count") == 3);
  CHECK(x.at(d + "_sum") == Approx(1.553));

  const std::string q = "smithers_queue_wait_seconds";
  CHECK(x.at(le(q, "0.05")) == 0);
  CHECK(x.at(le(q, "0.1")) == 1);
  CHECK(x.at(le(q, "0.25")) == 2);
  CHECK(x.at(q + "_count") == 2);
  CHECK(x.at(q + "_sum") == Approx(0.3));
}

TEST_CASE("metrics: cache hits, value tasks, skips and failures for good", "[metrics]") {
  metrics m;
  run_feed r{m, "r1"};
  r(0, event_type::run_started, {{"workflow", "wf"}});
  for (const char* id : {"hit", "val", "skip", "bad"})
    r.node(0, event_type::node_pending, id);
  // A cache hit: started, hit and finished in one batch; no duration.
  r.started(10, "hit");
  r.node(10, event_type::cache_hit, "hit", {{"attempt", 1}, {"key", std::string(64, 'a')}});
  r.node(10, event_type::node_finished, "hit",
         {{"attempt", 1}, {"duration_ms", 0}, {"cached", true}, {"output", json::object()}});
  // A value task: a real attempt of 0 s.
  r.started(20, "val");
  r.finished(20, "val");
  r.node(30, event_type::node_skipped, "skip", {{"reason", "skip_if matched"}});
  r.started(40, "bad");
  r.failed(45, "bad", 1, false);
  r(50, event_type::run_failed, {{"error", {{"code", "TASK_FAILED"}, {"message", "bad"}}}});

  auto x = scrape(m);
  CHECK(x.at("smithers_cache_hits_total") == 1);
  CHECK(x.at("smithers_tasks_started_total") == 3);
  CHECK(x.at("smithers_tasks_finished_total") == 2);
  CHECK(x.at("smithers_tasks_failed_total") == 1);
  CHECK(x.at("smithers_tasks_retried_total") == 0);
  CHECK(x.at("smithers_attempt_duration_seconds_count") == 2); // val (0 s) and bad (5 ms)
  CHECK(x.at(le("smithers_attempt_duration_seconds", "0.001")) == 1);
  CHECK(x.at("smithers_queue_wait_seconds_count") == 3);
  CHECK(x.at("smithers_runs_failed_total{workflow=\"wf\"}") == 1);
  CHECK(x.at("smithers_tasks_in_flight") == 0);
}

TEST_CASE("metrics: approvals, timers and signals are waits, not tasks", "[metrics]") {
  metrics m;
  run_feed r{m, "r1"};
  r(0, event_type::run_started, {{"workflow", "wf"}});
  r.node(0, event_type::node_pending, "ok");
  r.node(0, event_type::node_pending, "gated");
  // An approval node waits, is approved, finishes.
  r.node(10, event_type::node_started, "ok", {{"attempt", 1}, {"waits_for", "approval"}});
  r.node(10, event_type::approval_requested, "ok", {{"title", "t"}, {"gate", false}});
  CHECK(scrape(m).at("smithers_tasks_in_flight") == 0);
  r.node(5000, event_type::approval_decided, "ok", {{"approved", true}, {"gate", false}});
  r.finished(5000, "ok", 1, 4990);
  // A gated task: no NodeStarted while it waits; approved, its task starts
  // (the wait for a person is no queue wait).
  r.node(10, event_type::approval_requested, "gated", {{"title", "t"}, {"gate", true}});
  r.node(6000, event_type::approval_decided, "gated", {{"approved", true}, {"gate", true}});
  r.started(6000, "gated");
  r.finished(6100, "gated", 1, 100);
  // A signal that began waiting in another process and times out here.
  r.failed(7000, "sig", 1, true, errc::signal_timeout);
  // A timer resumed here: TimerFired, then its NodeFinished.
  r.node(8000, event_type::timer_fired, "t", {{"deadline_ms", 8000}, {"fired_ms", 8000}});
  r.finished(8000, "t", 1, 60000);

  auto x = scrape(m);
  CHECK(x.at("smithers_tasks_started_total") == 1);
  CHECK(x.at("smithers_tasks_finished_total") == 1);
  CHECK(x.at("smithers_tasks_failed_total") == 0);
  CHECK(x.at("smithers_tasks_retried_total") == 0);
  CHECK(x.at("smithers_attempt_duration_seconds_count") == 1);
  CHECK(x.at("smithers_attempt_duration_seconds_sum") == Approx(0.1));
  CHECK(x.at("smithers_queue_wait_seconds_count") == 0);
  CHECK(x.at("smithers_tasks_in_flight") == 0);
}

TEST_CASE("metrics: a cancel ends attempts in flight and never-reached nodes", "[metrics]") {
  metrics m;
  run_feed r{m, "r1"};
  r(0, event_type::run_started, {{"workflow", "wf"}});
  r.node(0, event_type::node_pending, "a");
  r.node(0, event_type::node_pending, "b");
  r.started(100, "a");
  CHECK(scrape(m).at("smithers_tasks_in_flight") == 1);
  json why = {{"code", "RUN_CANCELLED"}, {"message", "by request"}};
  r.node(600, event_type::node_cancelled, "a",
         {{"attempt", 1}, {"reason", "cancelled"}, {"error", why}});
  r.node(600, event_type::node_cancelled, "b", {{"reason", "cancelled"}});
  // An attempt a dead owner left in flight, cancelled at a resume: it was
  // not started here.
  r.node(600, event_type::node_cancelled, "orphan",
         {{"attempt", 1}, {"reason", "interrupted"}, {"error", why}});
  r(600, event_type::run_cancelled, {{"error", why}});

  auto x = scrape(m);
  CHECK(x.at("smithers_tasks_cancelled_total") == 1);
  CHECK(x.at("smithers_tasks_in_flight") == 0);
  CHECK(x.at("smithers_attempt_duration_seconds_count") == 1);
  CHECK(x.at(le("smithers_attempt_duration_seconds", "0.5")) == 1);
  CHECK(x.at("smithers_runs_cancelled_total{workflow=\"wf\"}") == 1);
}

TEST_CASE("metrics: the same node in two runs and two iterations", "[metrics]") {
  metrics m;
  run_feed r1{m, "r1"};
  run_feed r2{m, "r2"};
  r1(0, event_type::run_started, {{"workflow", "one"}});
  r2(0, event_type::run_started, {{"workflow", "two"}});
  r1.node(0, event_type::node_pending, "x", {}, 0);
  r1.node(0, event_type::node_pending, "x", {}, 1);
  r2.node(0, event_type::node_pending, "x");
  r1.node(100, event_type::node_started, "x", {{"attempt", 1}}, 1);
  r2.started(300, "x");
  CHECK(scrape(m).at("smithers_tasks_in_flight") == 2);
  r2.finished(310, "x");
  r1.node(150, event_type::node_finished, "x", {{"attempt", 1}, {"output", json::object()}}, 1);
  auto x = scrape(m);
  CHECK(x.at("smithers_queue_wait_seconds_sum") == Approx(0.4));
  CHECK(x.at("smithers_attempt_duration_seconds_sum") == Approx(0.06));
  CHECK(x.at("smithers_tasks_in_flight") == 0);
  CHECK(x.at("smithers_runs_started_total{workflow=\"one\"}") == 1);
  CHECK(x.at("smithers_runs_started_total{workflow=\"two\"}") == 1);
}

TEST_CASE("metrics: continue-as-new and resumes keep the workflow label", "[metrics]") {
  metrics m;
  run_feed p{m, "loop-run"};
  p(0, event_type::run_started, {{"workflow", "long"}});
  p.node(0, event_type::node_pending, "never"); // left pending: it runs in the successor
  p(10, event_type::run_continued_as_new, {{"next_run_id", "loop-run~1"}, {"carried_nodes", 1}});
  p(10, event_type::run_status_changed, {{"status", "continued"}});
  run_feed s{m, "loop-run~1"};
  s.seq = 2;
  s(20, event_type::run_resumed, {{"by", "me"}, {"previous_owner", ""}});
  s(30, event_type::run_finished, {{"duration_ms", 10}});
  // A run resumed here that did not start here: named by note_run.
  m.note_run("old", "nightly");
  run_feed o{m, "old"};
  o.seq = 40;
  o(40, event_type::run_resumed, {{"by", "me"}});
  o(50, event_type::run_failed, {{"error", {{"code", "TASK_FAILED"}}}});
  // Nobody named this one.
  run_feed u{m, "unknown"};
  u(60, event_type::run_resumed, {{"by", "me"}});

  auto x = scrape(m);
  CHECK(x.at("smithers_runs_started_total{workflow=\"long\"}") == 1);
  CHECK(x.at("smithers_runs_continued_total{workflow=\"long\"}") == 1);
  CHECK(x.at("smithers_runs_resumed_total{workflow=\"long\"}") == 1);
  CHECK(x.at("smithers_runs_finished_total{workflow=\"long\"}") == 1);
  CHECK(x.at("smithers_runs_resumed_total{workflow=\"nightly\"}") == 1);
  CHECK(x.at("smithers_runs_failed_total{workflow=\"nightly\"}") == 1);
  CHECK(x.at("smithers_runs_resumed_total{workflow=\"\"}") == 1);
}

TEST_CASE("metrics: label values are escaped", "[metrics]") {
  metrics m;
  run_feed r{m, "r1"};
  const std::string name = "say \"hi\"\\\nnow {}=,";
  r(0, event_type::run_started, {{"workflow", name}});
  std::string text = m.text();
  CHECK(text.find("workflow=\"say \\\"hi\\\"\\\\\\nnow {}=,\"") != std::string::npos);
  auto x = parse_exposition(text);
  CHECK(x.at("smithers_runs_started_total{workflow=\"" + name + "\"}") == 1);
}

TEST_CASE("metrics: workers, as the runs hear of them", "[metrics]") {
  metrics m;
  run_feed r1{m, "r1"};
  run_feed r2{m, "r2"};
  json w1 = {
      {"worker", "h1:7000"}, {"host", "h1"}, {"pid", 1}, {"slots", 4}, {"computes", json::array()}};
  json w2 = w1;
  w2["worker"] = "h2:7000";
  // Every run gets a WorkerJoined per connected worker: one worker each.
  r1(0, event_type::worker_joined, w1);
  r2(0, event_type::worker_joined, w1);
  r1(0, event_type::worker_joined, w2);
  CHECK(scrape(m).at("smithers_workers_connected") == 2);
  json lost = w1;
  lost["reason"] = "connection closed";
  lost["attempts_lost"] = 0;
  r1(5, event_type::worker_lost, lost);
  r2(5, event_type::worker_lost, lost);
  CHECK(scrape(m).at("smithers_workers_connected") == 1);
  r2(9, event_type::worker_joined, w1);
  CHECK(scrape(m).at("smithers_workers_connected") == 2);
}

TEST_CASE("metrics: commits", "[metrics]") {
  metrics m;
  m.observe_commit(1, std::chrono::microseconds(80));
  m.observe_commit(3, std::chrono::microseconds(250));
  m.observe_commit(5000, std::chrono::milliseconds(20));
  auto x = scrape(m);
  const std::string b = "smithers_commit_batch_size";
  CHECK(x.at(le(b, "1")) == 1);
  CHECK(x.at(le(b, "2")) == 1);
  CHECK(x.at(le(b, "4")) == 2);
  CHECK(x.at(le(b, "1024")) == 2);
  CHECK(x.at(le(b, "+Inf")) == 3);
  CHECK(x.at(b + "_sum") == 5004);
  const std::string l = "smithers_commit_latency_seconds";
  CHECK(x.at(le(l, "0.0001")) == 1);
  CHECK(x.at(le(l, "0.00025")) == 2);
  CHECK(x.at(le(l, "0.01")) == 2);
  CHECK(x.at(le(l, "0.025")) == 3);
  CHECK(x.at(l + "_sum") == Approx(0.02033));
}

TEST_CASE("metrics: bookkeeping is bounded", "[metrics]") {
  metrics m;
  run_feed r{m, "big"};
  r(0, event_type::run_started, {{"workflow", "fan"}});
  const std::size_t n = metrics::max_node_entries + 10;
  for (std::size_t i = 0; i < n; ++i)
    r.node(0, event_type::node_pending, "t" + std::to_string(i));
  // The oldest entries were dropped: t0's start finds no NodePending.
  r.started(100, "t0");
  r.started(100, "t" + std::to_string(n - 1));
  auto x = scrape(m);
  CHECK(x.at("smithers_queue_wait_seconds_count") == 1);
  CHECK(x.at("smithers_tasks_in_flight") == 2);
  // The run's end drops what it left (a continue-as-new leaves nodes
  // pending): a later run reusing the ids starts afresh.
  r(200, event_type::run_continued_as_new, {{"next_run_id", "big~1"}});
  CHECK(scrape(m).at("smithers_tasks_in_flight") == 0);

  // Runs that never end (interrupted) are dropped past max_runs.
  for (std::size_t i = 0; i < metrics::max_runs + 5; ++i) {
    run_feed ri{m, "run" + std::to_string(i)};
    ri.node(0, event_type::node_pending, "a");
    ri.started(1, "a");
  }
  CHECK(scrape(m).at("smithers_tasks_in_flight") == metrics::max_runs);
}

TEST_CASE("metrics: workflow label values are bounded", "[metrics]") {
  metrics m;
  for (std::size_t i = 0; i < metrics::max_workflows + 3; ++i) {
    run_feed r{m, "r" + std::to_string(i)};
    r(0, event_type::run_started, {{"workflow", "wf" + std::to_string(i)}});
  }
  auto x = scrape(m);
  CHECK(x.at("smithers_runs_started_total{workflow=\"_other\"}") == 3);
  CHECK(x.at("smithers_runs_started_total{workflow=\"wf0\"}") == 1);
  CHECK_FALSE(x.has("smithers_runs_started_total{workflow=\"wf" +
                    std::to_string(metrics::max_workflows) + "\"}"));
}

TEST_CASE("metrics: observe and text from several threads", "[metrics]") {
  metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&m, t] {
      run_feed r{m, "r" + std::to_string(t)};
      r(0, event_type::run_started, {{"workflow", "wf"}});
      for (int i = 0; i < 500; ++i) {
        std::string id = "n" + std::to_string(i);
        r.node(i, event_type::node_pending, id);
        r.started(i + 1, id);
        r.finished(i + 2, id);
        m.observe_commit(2, std::chrono::microseconds(100));
      }
      r(600, event_type::run_finished, {{"duration_ms", 600}});
    });
  for (int i = 0; i < 50; ++i)
    parse_exposition(m.text());
  for (auto& t : threads)
    t.join();
  auto x = scrape(m);
  CHECK(x.at("smithers_tasks_finished_total") == 2000);
  CHECK(x.at("smithers_runs_finished_total{workflow=\"wf\"}") == 4);
  CHECK(x.at("smithers_commit_batch_size_count") == 2000);
  CHECK(x.at("smithers_tasks_in_flight") == 0);
}

// ---- the database's figures ---------------------------------------------------

namespace {

store::attempt_row attempt(const std::string& run, const std::string& node, const char* state,
                           std::int64_t started, std::optional<std::int64_t> finished,
                           bool cached = false) {
  store::attempt_row a;
  a.run_id = run;
  a.node_id = node;
  a.state = state;
  a.started_ms = started;
  a.finished_ms = finished;
  a.cached = cached;
  return a;
}

store::run_row run(const std::string& id, const std::string& workflow, const char* status) {
  store::run_row r;
  r.run_id = id;
  r.workflow_name = workflow;
  r.status = status;
  r.created_ms = r.updated_ms = 1000;
  return r;
}

// r1 (build, finished): a 3 ms, b 1.5 s, c cached; r2 (build, running): d
// in flight, e failed after 50 ms, f cancelled, an approval that waited
// 99 s and a gate denied after 10 s; r3 ("odd \"name\"", failed).
void seed(const std::string& path) {
  auto db = store::database::open(path);
  store::writer w(db);
  auto deny = attempt("r2", "gate", "failed", 1000, 11000);
  deny.error = {{"code", "APPROVAL_DENIED"}, {"message", "no"}};
  store::wait_row approval;
  approval.run_id = "r2";
  approval.key = {"ok", 0};
  approval.kind = "approval";
  approval.state = "approved";
  approval.since_ms = approval.updated_ms = 1000;
  store::wait_row gate = approval;
  gate.key = {"gate", 0};
  gate.kind = "gate";
  gate.state = "denied";
  // A gate's approved task: its own attempts are timed.
  store::wait_row gate2 = gate;
  gate2.key = {"gated", 0};
  gate2.state = "approved";
  w.apply({store::insert_run{run("r1", "build", "finished")},
           store::insert_run{run("r2", "build", "running")},
           store::insert_run{run("r3", "odd \"name\"", "failed")},
           store::insert_attempt{attempt("r1", "a", "finished", 1000, 1003)},
           store::insert_attempt{attempt("r1", "b", "finished", 1000, 2500)},
           store::insert_attempt{attempt("r1", "c", "finished", 1000, 1000, true)},
           store::insert_attempt{attempt("r2", "d", "in-progress", 1000, std::nullopt)},
           store::insert_attempt{attempt("r2", "e", "failed", 1000, 1050)},
           store::insert_attempt{attempt("r2", "f", "cancelled", 1000, 1200)},
           store::insert_attempt{attempt("r2", "ok", "finished", 1000, 100000)},
           store::insert_attempt{deny},
           store::insert_attempt{attempt("r2", "gated", "finished", 1000, 1020)},
           store::upsert_wait{approval}, store::upsert_wait{gate}, store::upsert_wait{gate2}});
}

} // namespace

TEST_CASE("metrics: the database's runs, attempts and attempt durations", "[metrics]") {
  test_support::temp_dir dir;
  seed(dir.file());
  auto store = run_store::open_existing(dir.file());
  REQUIRE(store);

  json st = store->stats();
  CHECK(st["attempts"]["finished"] == 5);
  CHECK(st["attempt_duration_seconds"]["count"] == 4);

  metrics m;
  std::string text = m.text(*store);
  INFO(text);
  auto x = parse_exposition(text);
  // Process series too, at 0: this process drove nothing.
  CHECK(x.at("smithers_tasks_started_total") == 0);

  CHECK(x.types.at("smithers_db_runs") == "gauge");
  CHECK(x.at("smithers_db_runs{workflow=\"build\",status=\"finished\"}") == 1);
  CHECK(x.at("smithers_db_runs{workflow=\"build\",status=\"running\"}") == 1);
  CHECK(x.at("smithers_db_runs{workflow=\"build\",status=\"failed\"}") == 0);
  CHECK(x.at("smithers_db_runs{workflow=\"odd \"name\"\",status=\"failed\"}") == 1);
  CHECK(x.at("smithers_db_attempts{state=\"finished\"}") == 5);
  CHECK(x.at("smithers_db_attempts{state=\"failed\"}") == 2);
  CHECK(x.at("smithers_db_attempts{state=\"cancelled\"}") == 1);
  CHECK(x.at("smithers_db_attempts{state=\"in-progress\"}") == 1);
  CHECK(x.at("smithers_db_tasks_in_flight") == 1);
  // a 3 ms, gated 20 ms, e 50 ms, b 1.5 s: not the cached, cancelled,
  // in-flight or waiting ones.
  const std::string d = "smithers_db_attempt_duration_seconds";
  CHECK(x.at(le(d, "0.001")) == 0);
  CHECK(x.at(le(d, "0.005")) == 1);
  CHECK(x.at(le(d, "0.025")) == 2);
  CHECK(x.at(le(d, "0.05")) == 3);
  CHECK(x.at(le(d, "2.5")) == 4);
  CHECK(x.at(le(d, "300")) == 4);
  CHECK(x.at(d + "_count") == 4);
  CHECK(x.at(d + "_sum") == Approx(1.573));
  CHECK(x.at("smithers_db_read_errors_total") == 0);

  // Within the ttl a scrape reuses the figures; another store reads its own.
  {
    auto db = store::database::open(dir.file());
    store::writer w(db);
    w.apply({store::insert_run{run("r4", "build", "running")}});
  }
  CHECK(parse_exposition(m.text(*store))
            .at("smithers_db_runs{workflow=\"build\",status=\"running\"}") == 1);
  auto other = run_store::open_existing(dir.file());
  CHECK(parse_exposition(m.text(*other))
            .at("smithers_db_runs{workflow=\"build\",status=\"running\"}") == 2);
}

TEST_CASE("metrics: an empty database, and one that cannot be read", "[metrics]") {
  test_support::temp_dir dir;
  { store::database::open(dir.file()); }
  auto store = run_store::open_existing(dir.file());
  REQUIRE(store);
  metrics m;
  auto x = parse_exposition(m.text(*store));
  CHECK(x.help.count("smithers_db_runs") == 1);
  CHECK(x.at("smithers_db_tasks_in_flight") == 0);
  CHECK(x.at("smithers_db_attempt_duration_seconds_count") == 0);
  CHECK(x.at("smithers_db_attempts{state=\"finished\"}") == 0);

  // A table gone (a damaged file): the read fails, counted; the scrape
  // still answers.
  test_support::temp_dir dir2;
  seed(dir2.file());
  auto broken = run_store::open_existing(dir2.file());
  REQUIRE(broken);
  {
    auto db = store::database::open(dir2.file());
    db.exec("DROP TABLE waits");
  }
  metrics m2;
  auto y = parse_exposition(m2.text(*broken));
  CHECK(y.at("smithers_db_read_errors_total") == 1);
  CHECK(y.at("smithers_db_attempt_duration_seconds_count") == 0);
  CHECK(y.at("smithers_tasks_in_flight") == 0);
}
