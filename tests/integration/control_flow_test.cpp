// Control flow in a real engine (actor system, SQLite file): what runs, what
// is stored, and what a resume decides again.
#include <catch2/catch.hpp>

#include "store/reader.hpp"
#include "support/engine_config.hpp"
#include "support/event_recorder.hpp"
#include "support/eventually.hpp"
#include "support/temp_dir.hpp"

#include <smithers/engine.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace smithers;
using namespace std::chrono_literals;
using test_support::config_in;
using test_support::eventually;

namespace {

std::set<std::string> stored_nodes(const engine& eng, const std::string& run_id) {
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  std::set<std::string> ids;
  for (const auto& n : store::reader{db}.nodes(run_id))
    ids.insert(n.node_id + ":" + n.state);
  return ids;
}

} // namespace

TEST_CASE("a branch runs the side its predicate chose, and only that side") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<int> deploys{0}, reports{0};
  auto make = [&](bool ok) {
    workflow wf;
    wf.root = sequence(
        {compute_task("check", [ok](task_context&) { return json{{"ok", ok}}; }),
         branch("ship", {{"output", "check.ok"}, {"equals", true}},
                compute_task("deploy",
                             [&](task_context&) {
                               ++deploys;
                               return json::object();
                             }),
                compute_task("report", [&](task_context& ctx) {
                  ++reports;
                  return json{{"saw", ctx.input()}};
                }))});
    return wf;
  };
  auto yes = eng.run(make(true), {});
  REQUIRE(yes.status == run_status::finished);
  CHECK(deploys == 1);
  CHECK(reports == 0);
  CHECK(stored_nodes(eng, yes.run_id) == std::set<std::string>{"check:finished", "deploy:finished"});

  auto no = eng.run(make(false), {});
  REQUIRE(no.status == run_status::finished);
  CHECK(deploys == 1);
  CHECK(reports == 1);
  CHECK(stored_nodes(eng, no.run_id) == std::set<std::string>{"check:finished", "report:finished"});
}

TEST_CASE("a branch on the input is decided at once; one inside a parallel waits for what it reads") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = parallel(
      {branch("mode", {{"input", "fast"}, {"equals", true}}, value_task("quick", {{"q", 1}}),
              value_task("slow", {{"s", 1}})),
       branch("after", {{"output", "late.v"}, {"equals", 2}}, value_task("two", {{"t", 2}})),
       sequence({value_task("early", json::object()), value_task("late", {{"v", 2}})})});
  run_options opts;
  opts.input = {{"fast", true}};
  auto res = eng.run(wf, opts);
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.count("quick") == 1);
  CHECK(res.outputs.count("slow") == 0);
  CHECK(res.outputs.at("two") == json{{"t", 2}});
}

TEST_CASE("a branch that can never be decided fails the run with INVALID_WORKFLOW") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence({value_task("a", {{"go", true}}),
                      branch("first", {{"output", "a.go"}, {"equals", true}},
                             value_task("b", json::object()), value_task("ghost", {{"ok", true}})),
                      branch("second", {{"output", "ghost.ok"}, {"equals", true}},
                             value_task("c", json::object()))});
  auto res = eng.run(wf, {});
  REQUIRE(res.status == run_status::failed);
  REQUIRE(res.err);
  CHECK(res.err->code == std::string{errc::invalid_workflow});
  CHECK(res.err->details["undecided_nodes"] == json::array({"second"}));
}

TEST_CASE("an interrupted run resumes inside the side its branch chose, deciding it the same way") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::mutex mtx;
  std::map<std::string, int> calls;
  std::atomic<bool> hold{true};
  auto count = [&](const std::string& id) {
    std::lock_guard<std::mutex> lk(mtx);
    return ++calls[id];
  };
  auto wf = std::make_shared<workflow>();
  wf->root = sequence(
      {compute_task("check", [&](task_context&) {
         count("check");
         return json{{"ok", false}};
       }).continue_on_fail(),
       branch("ship", {{"output", "check.ok"}, {"equals", true}},
              compute_task("deploy", [&](task_context&) {
                count("deploy");
                return json::object();
              }),
              sequence({compute_task("report", [&](task_context&) {
                          count("report");
                          return json{{"r", 1}};
                        }),
                        compute_task("slow", [&](task_context& ctx) -> json {
                          count("slow");
                          while (hold && !ctx.cancelled())
                            std::this_thread::sleep_for(2ms);
                          if (ctx.cancelled()) throw std::runtime_error("stopped");
                          return {{"slow", true}};
                        })}))});
  test_support::event_recorder recorder;
  run_options opts;
  opts.on_event = recorder.handler();
  auto h = eng.start(wf, opts);
  REQUIRE(eventually(
      [&] {
        std::lock_guard<std::mutex> lk(mtx);
        return calls["slow"] == 1;
      },
      10s, 5ms));
  eng.interrupt("test interrupt");
  REQUIRE(h.wait_for(10s));
  REQUIRE(h.wait().status == run_status::running);
  hold = false;
  resume_options ro;
  ro.on_event = opts.on_event;
  auto res = eng.resume(wf, h.run_id(), ro).wait();
  REQUIRE(res.status == run_status::finished);
  std::lock_guard<std::mutex> lk(mtx);
  CHECK(calls["check"] == 1);
  CHECK(calls["report"] == 1);
  CHECK(calls["slow"] == 2);
  CHECK(calls["deploy"] == 0);
  CHECK(res.outputs.at("slow") == json{{"slow", true}});
  // Nothing of the chosen side was cancelled as unmounted on the way.
  for (const auto& e : recorder.of_type("NodeCancelled"))
    CHECK(e.fields["reason"] != "unmounted");
}

TEST_CASE("for_each fans out over a task's output; a branch chooses whether it runs at all") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  workflow wf;
  wf.root = sequence(
      {value_task("list", {{"items", {3, 4, 5}}, {"go", true}}),
       branch("maybe", {{"output", "list.go"}, {"equals", true}},
              for_each("each", "outputs.list.items", "n",
                       shell_task("sq-{{n_index}}",
                                  "n={{n}}; case $n in ''|*[!0-9]*) exit 2;; esac; "
                                  "echo \"{\\\"sq\\\": $((n * n))}\""))),
       compute_task("sum", [](task_context& ctx) { return json{{"seen", ctx.needs().size()}}; })
           .needs({"list"})});
  auto res = eng.run(wf, {});
  INFO((res.err ? res.err->to_json().dump() : std::string{}));
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.at("sq-0") == json{{"sq", 9}});
  CHECK(res.outputs.at("sq-1") == json{{"sq", 16}});
  CHECK(res.outputs.at("sq-2") == json{{"sq", 25}});
  CHECK(stored_nodes(eng, res.run_id) ==
        std::set<std::string>{"list:finished", "sq-0:finished", "sq-1:finished", "sq-2:finished",
                              "sum:finished"});
}

namespace {

std::set<std::string> stored_keys(const engine& eng, const std::string& run_id) {
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  std::set<std::string> ids;
  for (const auto& n : store::reader{db}.nodes(run_id))
    ids.insert(to_string(node_key{n.node_id, n.iteration}) + ":" + n.state);
  return ids;
}

std::map<std::string, std::string> stored_loops(const engine& eng, const std::string& run_id) {
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  std::map<std::string, std::string> out;
  for (const auto& l : store::reader{db}.loops(run_id))
    out[l.loop_id] = l.state + "@" + std::to_string(l.iteration);
  return out;
}

// "implement, review until approved": review approves the third draft.
workflow review_loop(std::int64_t max, bool fail_on_max, std::int64_t approve_at) {
  loop_options o;
  o.max_iterations = max;
  o.fail_on_max = fail_on_max;
  workflow wf;
  wf.root = sequence(
      {loop("revise",
            sequence({compute_task("implement",
                                   [](task_context& ctx) { return json{{"draft", ctx.iteration()}}; }),
                      compute_task("review",
                                   [approve_at](task_context& ctx) {
                                     auto draft = ctx.need("implement")["draft"].get<std::int64_t>();
                                     return json{{"approved", draft >= approve_at}};
                                   })
                          .needs({"implement"})}),
            {{"output", "review.approved"}, {"equals", true}}, o),
       command_task("ship", {"printf", R"({"draft": {{outputs.implement.draft}}, "first": {{outputs.review@0.approved}}})"})
           .needs({"review"})});
  return wf;
}

} // namespace

TEST_CASE("a loop runs its body until `until` holds; each iteration is stored by (id, iteration)") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  test_support::event_recorder recorder;
  run_options opts;
  opts.on_event = recorder.handler();
  auto res = eng.run(review_loop(5, true, 2), opts);
  INFO((res.err ? res.err->to_json().dump() : std::string{}));
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.at("ship") == json{{"draft", 2}, {"first", false}});
  CHECK(stored_keys(eng, res.run_id) ==
        std::set<std::string>{"implement:finished", "review:finished", "implement@1:finished",
                              "review@1:finished", "implement@2:finished", "review@2:finished",
                              "ship:finished"});
  CHECK(stored_loops(eng, res.run_id) == std::map<std::string, std::string>{{"revise", "finished@2"}});
  CHECK(recorder.of_type("LoopIterationStarted").size() == 3);
  auto fin = recorder.of_type("LoopFinished");
  REQUIRE(fin.size() == 1);
  CHECK(fin[0].fields["reason"] == "until");
  CHECK(fin[0].fields["iterations"] == 3);
}

TEST_CASE("max_iterations: on_max_reached fail is LOOP_MAX_REACHED, return-last goes on") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  auto failed = eng.run(review_loop(2, true, 10), {});
  REQUIRE(failed.status == run_status::failed);
  REQUIRE(failed.err);
  CHECK(failed.err->code == errc::loop_max_reached);
  CHECK(failed.err->details["loop_id"] == "revise");
  CHECK(stored_loops(eng, failed.run_id) == std::map<std::string, std::string>{{"revise", "failed@1"}});
  CHECK(stored_keys(eng, failed.run_id).count("ship:cancelled"));

  auto last = eng.run(review_loop(2, false, 10), {});
  REQUIRE(last.status == run_status::finished);
  CHECK(last.outputs.at("ship") == json{{"draft", 1}, {"first", false}});
  CHECK(stored_loops(eng, last.run_id) == std::map<std::string, std::string>{{"revise", "finished@1"}});
}

TEST_CASE("nesting: a for_each inside a loop inside a branch, and a loop inside a loop") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  loop_options two;
  two.max_iterations = 2;
  workflow wf;
  wf.root = sequence(
      {branch("go", {{"input", "go"}, {"equals", true}},
              loop("rounds",
                   sequence({for_each("each", "input.files", "f",
                                      command_task("p-{{f}}", {"printf", R"({"f": "{{f}}", "round": {{iteration}}})"})),
                             loop("inner", command_task("q", {"printf", R"({"q": {{iteration}}})"}), nullptr,
                                  two)}),
                   nullptr, two)),
       value_task("end", json::object())});
  run_options opts;
  opts.input = {{"go", true}, {"files", {"a", "b"}}};
  auto res = eng.run(wf, opts);
  INFO((res.err ? res.err->to_json().dump() : std::string{}));
  REQUIRE(res.status == run_status::finished);
  CHECK(res.outputs.at("p-b") == json{{"f", "b"}, {"round", 1}});
  CHECK(stored_keys(eng, res.run_id) ==
        std::set<std::string>{"p-a:finished", "p-b:finished", "p-a@1:finished", "p-b@1:finished",
                              "q@0@0:finished", "q@0@1:finished", "q@1@0:finished",
                              "q@1@1:finished", "end:finished"});
  CHECK(stored_loops(eng, res.run_id) ==
        std::map<std::string, std::string>{{"rounds", "finished@1"},
                                           {"inner@0", "finished@1"},
                                           {"inner@1", "finished@1"}});
}

TEST_CASE("an interrupted loop resumes in its iteration without re-running that iteration's finished nodes") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::mutex mtx;
  std::map<std::string, int> calls; // by key
  std::atomic<bool> hold{true};
  auto count = [&](task_context& ctx) {
    std::lock_guard<std::mutex> lk(mtx);
    return ++calls[to_string(node_key{ctx.node_id(), ctx.iteration()})];
  };
  loop_options five;
  five.max_iterations = 5;
  auto wf = std::make_shared<workflow>();
  wf->root = loop("l",
                  sequence({compute_task("a", [&](task_context& ctx) {
                              count(ctx);
                              return json{{"i", ctx.iteration()}};
                            }),
                            compute_task("b", [&](task_context& ctx) -> json {
                              count(ctx);
                              // Iteration 2 holds until the engine goes away.
                              while (ctx.iteration() == 2 && hold && !ctx.cancelled())
                                std::this_thread::sleep_for(2ms);
                              if (ctx.cancelled()) throw std::runtime_error("stopped");
                              return {{"i", ctx.iteration()}};
                            })}),
                  {{"output", "b.i"}, {"gte", 3}}, five);
  auto h = eng.start(wf, {});
  REQUIRE(eventually(
      [&] {
        std::lock_guard<std::mutex> lk(mtx);
        return calls["b@2"] == 1;
      },
      10s, 5ms));
  eng.interrupt("test interrupt");
  REQUIRE(h.wait_for(10s));
  REQUIRE(h.wait().status == run_status::running);
  CHECK(stored_loops(eng, h.run_id()) == std::map<std::string, std::string>{{"l", "running@2"}});
  hold = false;
  auto res = eng.resume(wf, h.run_id(), {}).wait();
  REQUIRE(res.status == run_status::finished);
  std::lock_guard<std::mutex> lk(mtx);
  CHECK(calls == std::map<std::string, int>{{"a", 1}, {"b", 1}, {"a@1", 1}, {"b@1", 1},
                                            {"a@2", 1}, {"b@2", 2}, {"a@3", 1}, {"b@3", 1}});
  CHECK(stored_loops(eng, h.run_id()) == std::map<std::string, std::string>{{"l", "finished@3"}});
}

TEST_CASE("continue-as-new: a run ends `continued`, its successor goes on with the carried state") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::mutex mtx;
  std::map<std::string, int> calls;
  auto count = [&](task_context& ctx) {
    std::lock_guard<std::mutex> lk(mtx);
    ++calls[to_string(node_key{ctx.node_id(), ctx.iteration()})];
  };
  loop_options o;
  o.max_iterations = 20;
  o.continue_as_new_every = 3;
  auto wf = std::make_shared<workflow>();
  wf->root = sequence({compute_task("setup",
                                    [&](task_context& ctx) {
                                      count(ctx);
                                      return json{{"ok", true}};
                                    }),
                       loop("l", compute_task("step",
                                              [&](task_context& ctx) {
                                                count(ctx);
                                                return json{{"i", ctx.iteration()}};
                                              }),
                            {{"output", "step.i"}, {"gte", 7}}, o),
                       command_task("after", {"printf", R"({"last": {{outputs.step.i}}})"})
                           .needs({"step", "setup"})});
  run_options opts;
  opts.run_id = "chain";
  auto res = eng.start(wf, opts).wait();
  std::vector<std::string> chain{std::string{res.run_id}};
  while (res.status == run_status::continued) {
    REQUIRE(chain.size() < 10);
    chain.push_back(res.continued_as);
    res = eng.resume(wf, res.continued_as, {}).wait();
  }
  INFO((res.err ? res.err->to_json().dump() : std::string{}));
  REQUIRE(res.status == run_status::finished);
  CHECK(chain == std::vector<std::string>{"chain", "chain~1", "chain~2"});
  CHECK(res.outputs.at("after") == json{{"last", 7}});
  {
    // setup ran once in the whole chain, each iteration once.
    std::lock_guard<std::mutex> lk(mtx);
    CHECK(calls["setup"] == 1);
    for (int i = 0; i < 8; ++i)
      CHECK(calls[to_string(node_key{"step", i})] == 1);
  }
  // Each run holds its own iterations only (and what it carried); what it
  // never reached stays pending there and runs in its successor.
  auto db = store::database::open(eng.config().db_path, store::open_mode::read_only);
  store::reader rd{db};
  CHECK(rd.run("chain")->status == "continued");
  CHECK(rd.run("chain~1")->parent_run_id == "chain");
  CHECK(rd.run("chain~2")->config["continued_from"] == "chain~1");
  CHECK(stored_keys(eng, "chain~1") ==
        std::set<std::string>{"setup:finished", "step@2:finished", "step@3:finished",
                              "step@4:finished", "step@5:finished", "after:pending"});
  CHECK(stored_loops(eng, "chain") == std::map<std::string, std::string>{{"l", "continued@2"}});
  CHECK(stored_loops(eng, "chain~2") == std::map<std::string, std::string>{{"l", "finished@7"}});
  auto events = rd.events("chain");
  REQUIRE(events.size() >= 2);
  bool announced = false;
  for (const auto& e : events)
    if (e.type == "RunContinuedAsNew") announced = e.payload["next_run_id"] == "chain~1";
  CHECK(announced);
  CHECK(rd.events("chain~1").front().type == "RunStarted");
}

TEST_CASE("engine::continue_as_new continues a run on demand, after what is in flight") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<bool> hold{true};
  std::atomic<int> first_runs{0}, second_runs{0};
  auto wf = std::make_shared<workflow>();
  wf->root = sequence(
      {compute_task("first",
                    [&](task_context& ctx) -> json {
                      ++first_runs;
                      while (hold && !ctx.cancelled())
                        std::this_thread::sleep_for(2ms);
                      return {{"done", true}};
                    }),
       compute_task("second", [&](task_context&) {
         ++second_runs;
         return json{{"two", 2}};
       })});
  auto h = eng.start(wf, {});
  REQUIRE(eventually([&] { return first_runs == 1; }, 10s, 5ms));
  CHECK(eng.continue_as_new(h.run_id()));
  CHECK_FALSE(eng.continue_as_new("no-such-run"));
  std::this_thread::sleep_for(50ms);
  hold = false; // the attempt in flight finishes, in this run
  auto res = h.wait();
  REQUIRE(res.status == run_status::continued);
  CHECK(second_runs == 0);
  auto next = eng.resume(wf, res.continued_as, {}).wait();
  REQUIRE(next.status == run_status::finished);
  CHECK(first_runs == 1);
  CHECK(second_runs == 1);
  CHECK(next.outputs.at("first") == json{{"done", true}});
}

TEST_CASE("a branch a re-render switches stops what it unmounts; what comes back is not run again") {
  test_support::temp_dir dir;
  engine eng{config_in(dir)};
  std::atomic<int> fast_runs{0}, slow_runs{0}, other_runs{0};
  std::atomic<bool> slow_started{false}, release_slow{false};
  auto wf = std::make_shared<workflow>();
  // The build function's predicate holds before phase1 has finished and
  // after phase2 has: `then` (fast, slow) is mounted, then `else` (other),
  // then `then` again.
  wf->build = [&](const render_context& ctx) {
    bool then_side = !ctx.output("phase1") || ctx.output("phase2");
    json cond = then_side ? json{{"input", "flag"}, {"exists", false}}
                          : json{{"input", "flag"}, {"exists", true}};
    return parallel(
        {sequence({compute_task("phase1",
                                [&](task_context&) {
                                  // fast has finished, slow runs.
                                  while (!(fast_runs == 1 && slow_started))
                                    std::this_thread::sleep_for(2ms);
                                  return json{{"p", 1}};
                                }),
                   compute_task("phase2",
                                [&](task_context&) {
                                  while (other_runs == 0)
                                    std::this_thread::sleep_for(2ms);
                                  release_slow = true;
                                  return json{{"p", 2}};
                                })}),
         branch("side", cond,
                sequence({compute_task("fast",
                                       [&](task_context&) {
                                         ++fast_runs;
                                         return json{{"fast", true}};
                                       }),
                          compute_task("slow",
                                       [&](task_context& c) -> json {
                                         ++slow_runs;
                                         slow_started = true;
                                         while (!release_slow && !c.cancelled())
                                           std::this_thread::sleep_for(2ms);
                                         if (c.cancelled()) throw std::runtime_error("stopped");
                                         return {{"slow", true}};
                                       })}),
                compute_task("other", [&](task_context&) {
                  ++other_runs;
                  return json{{"other", true}};
                }))});
  };
  test_support::event_recorder recorder;
  run_options opts;
  opts.on_event = recorder.handler();
  auto h = eng.start(wf, opts);
  // It hung here when a node came back while its dropped attempt was being
  // stopped: a second attempt was recorded but never ran.
  REQUIRE(h.wait_for(30s));
  auto res = h.wait();
  INFO((res.err ? res.err->to_json().dump() : std::string{}));
  REQUIRE(res.status == run_status::finished);
  CHECK(fast_runs == 1);  // came back finished: not run again
  CHECK(slow_runs == 2);  // stopped when unmounted, run again when back
  CHECK(other_runs == 1);
  int unmounted = 0;
  for (const auto& e : recorder.of_type("NodeCancelled"))
    if (e.fields["node_id"] == "slow" && e.fields["reason"] == "unmounted") ++unmounted;
  CHECK(unmounted == 1);
  CHECK(res.outputs.at("slow") == json{{"slow", true}});
}
