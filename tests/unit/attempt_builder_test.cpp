// The cache key of a cached task's attempt (attempt_builder::build sets
// job->cache_key): what it covers, and — with `by` — what it does not.
#include "core/attempt_builder.hpp"

#include <smithers/errors.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>

using namespace smithers;

namespace {

json noop(task_context&) {
  return json::object();
}

/// Everything an attempt is built from, each part changeable by a row.
struct setup {
  std::string wf_name = "wf";
  std::map<std::string, json> output_schemas{{"report", {{"type", "object"}}}};
  std::string run_id = "r1";
  json input = {{"x", "ex"}, {"y", "why"}};
  std::unordered_map<std::string, json> outputs{{"b", {{"sha", "abc"}, {"n", 1}}},
                                                {"other", {{"k", 1}}}};
  std::string base_cwd = "/base";
  json checkpoint; // null: none
  node_key key{"a", 0};
  std::int64_t attempt = 1;
  std::shared_ptr<task_spec> spec;

  explicit setup(const node& n) : spec(std::make_shared<task_spec>(*n.task)) {}

  std::shared_ptr<executors::task_job> job() const {
    auto wf = std::make_shared<workflow>();
    wf->name = wf_name;
    wf->output_schemas = output_schemas;
    auto computes = std::make_shared<core::compute_registry>();
    (*computes)["f"] = noop;
    (*computes)["g"] = noop;
    core::attempt_builder b(wf, computes);
    auto in_ptr = std::make_shared<const json>(input);
    core::attempt_inputs in;
    in.run_id = &run_id;
    in.input = &in_ptr;
    in.outputs = &outputs;
    in.checkpoint = checkpoint.is_null() ? nullptr : &checkpoint;
    in.base_cwd = &base_cwd;
    in.output_at = [](std::string_view, std::int64_t) -> const json* { return nullptr; };
    return b.build(key, attempt, spec, in);
  }

  std::string cache_key() const { return job()->cache_key; }
};

bool is_hex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

struct change {
  const char* name;
  std::function<void(setup&)> apply;
  bool changes_key;
};

void check_changes(const node& base, const std::vector<change>& rows) {
  setup s0(base);
  const std::string k0 = s0.cache_key();
  REQUIRE(is_hex64(k0));
  CHECK(setup(base).cache_key() == k0); // same inputs, same key
  for (const auto& r : rows) {
    SECTION(r.name) {
      setup s(base);
      r.apply(s);
      std::string k = s.cache_key();
      CHECK(is_hex64(k));
      if (r.changes_key)
        CHECK(k != k0);
      else
        CHECK(k == k0);
    }
  }
}

} // namespace

TEST_CASE("cache key: 64 hex digits, the same for the same work, none without cache") {
  node cached = command_task("a", {"echo", "{{input.x}}"}).needs({"b"}).cache();
  setup s(cached);
  auto j1 = s.job();
  auto j2 = s.job();
  CHECK(is_hex64(j1->cache_key));
  CHECK(j1->cache_key == j2->cache_key);
  // build() and cache_key() agree.
  auto wf = std::make_shared<workflow>();
  wf->name = s.wf_name;
  core::attempt_builder b(wf, std::make_shared<core::compute_registry>());
  CHECK(b.cache_key(s.key, *s.spec, j1->request, "") == j1->cache_key);
  // Tasks without cache have no key.
  setup plain(command_task("a", {"echo", "{{input.x}}"}).needs({"b"}));
  CHECK(plain.job()->cache_key.empty());
  setup compute(compute_task("a", "f"));
  CHECK(compute.job()->cache_key.empty());
  // A value task has nothing to run, and no key even if a C++ tree gave it
  // cache (validation refuses that tree).
  setup value(value_task("a", json::object()).cache());
  CHECK(value.job()->cache_key.empty());
}

TEST_CASE("cache key without by: what the task runs on changes it, nothing else does") {
  node base = command_task("a", {"echo", "{{input.x}}"})
                  .needs({"b"})
                  .env("E", "e1")
                  .output_schema({{"type", "object"}})
                  .cache({"", "v1"});
  std::vector<change> rows{
      {"version", [](setup& s) { s.spec->cache->version = "v2"; }, true},
      {"version from none", [](setup& s) { s.spec->cache->version = ""; }, true},
      {"output schema",
       [](setup& s) {
         s.spec->output_schema = {{"type", "object"}, {"required", {"n"}}};
       },
       true},
      {"argv",
       [](setup& s) {
         s.spec->argv = {"echo", "{{input.x}}", "more"};
       },
       true},
      {"argv through its template", [](setup& s) { s.input["x"] = "other"; }, true},
      {"env", [](setup& s) { s.spec->env["E"] = "e2"; }, true},
      {"another env variable", [](setup& s) { s.spec->env["F"] = "f"; }, true},
      {"the task's cwd", [](setup& s) { s.spec->cwd = "sub"; }, true},
      {"the run's cwd", [](setup& s) { s.base_cwd = "/elsewhere"; }, true},
      {"a part of the input no template reads", [](setup& s) { s.input["y"] = "other"; }, true},
      {"a needed output", [](setup& s) { s.outputs["b"]["n"] = 2; }, true},
      {"the workflow's name", [](setup& s) { s.wf_name = "wf2"; }, true},
      {"the node id", [](setup& s) { s.key.id = "a2"; }, true},
      {"a shell script instead of the same argv",
       [](setup& s) {
         s.spec->use_shell = true;
         s.spec->shell = "echo {{input.x}}";
         s.spec->argv.clear();
       },
       true},
      // What is not the work: the same key, so later attempts and runs reuse it.
      {"the attempt number", [](setup& s) { s.attempt = 3; }, false},
      {"the run id", [](setup& s) { s.run_id = "r2"; }, false},
      {"an output the task neither needs nor reads",
       [](setup& s) {
         s.outputs["other"] = {{"k", 2}};
       },
       false},
      {"the previous attempt's checkpoint",
       [](setup& s) {
         s.checkpoint = {{"step", 4}};
       },
       false},
      {"retries and timeouts",
       [](setup& s) {
         s.spec->retries = 4;
         s.spec->timeout_ms = 99;
         s.spec->heartbeat_timeout_ms = 50;
       },
       false},
      {"the label", [](setup& s) { s.spec->label = "L"; }, false},
  };
  check_changes(base, rows);
}

TEST_CASE("cache key without by, compute tasks: the function's name and the input count") {
  node base = compute_task("a", "f").needs({"b"}).output("report").cache();
  std::vector<change> rows{
      {"the compute function", [](setup& s) { s.spec->compute_name = "g"; }, true},
      {"the input", [](setup& s) { s.input["y"] = "other"; }, true},
      {"a needed output", [](setup& s) { s.outputs["b"]["sha"] = "def"; }, true},
      {"the content of the named output schema",
       [](setup& s) {
         s.output_schemas["report"] = {{"type", "object"}, {"required", {"n"}}};
       },
       true},
      {"no output schema", [](setup& s) { s.spec->output.clear(); }, true},
      {"the version", [](setup& s) { s.spec->cache->version = "2"; }, true},
      {"another name for the same schema",
       [](setup& s) {
         s.output_schemas["copy"] = s.output_schemas["report"];
         s.spec->output = "copy";
       },
       false},
      {"the run id", [](setup& s) { s.run_id = "r9"; }, false},
      {"an output it does not need", [](setup& s) { s.outputs["other"] = json::object(); }, false},
  };
  check_changes(base, rows);
}

TEST_CASE("cache key with by: only what by reads, and the fixed parts, change it") {
  node base = command_task("a", {"echo", "{{input.y}}"})
                  .needs({"b"})
                  .env("E", "e1")
                  .cache({"{{input.x}}", "v1"});
  std::vector<change> rows{
      {"what by reads", [](setup& s) { s.input["x"] = "changed"; }, true},
      {"the version", [](setup& s) { s.spec->cache->version = "v2"; }, true},
      {"the output schema",
       [](setup& s) {
         s.spec->output_schema = {{"type", "object"}};
       },
       true},
      {"the workflow's name", [](setup& s) { s.wf_name = "wf2"; }, true},
      {"the node id", [](setup& s) { s.key.id = "a2"; }, true},
      {"by itself, to the same value", [](setup& s) { s.spec->cache->by = "ex"; }, false},
      {"the input outside what by reads", [](setup& s) { s.input["y"] = "other"; }, false},
      {"argv", [](setup& s) { s.spec->argv = {"false"}; }, false},
      {"env", [](setup& s) { s.spec->env["E"] = "e2"; }, false},
      {"the task's cwd", [](setup& s) { s.spec->cwd = "sub"; }, false},
      {"the run's cwd", [](setup& s) { s.base_cwd = "/elsewhere"; }, false},
      {"a needed output", [](setup& s) { s.outputs["b"]["n"] = 2; }, false},
      {"the attempt number", [](setup& s) { s.attempt = 2; }, false},
      {"the run id", [](setup& s) { s.run_id = "r2"; }, false},
  };
  check_changes(base, rows);
}

TEST_CASE("cache key with by reading an output: that field and nothing else of it") {
  node base = compute_task("a", "f").needs({"b"}).cache({"{{outputs.b.sha}}", ""});
  std::vector<change> rows{
      {"the field by reads", [](setup& s) { s.outputs["b"]["sha"] = "def"; }, true},
      {"another field of the same output", [](setup& s) { s.outputs["b"]["n"] = 7; }, false},
      {"the input",
       [](setup& s) {
         s.input = {{"z", 1}};
       },
       false},
      {"the compute function", [](setup& s) { s.spec->compute_name = "g"; }, false},
  };
  check_changes(base, rows);
}

TEST_CASE("cache key: by and the default never share a key") {
  // A `by` whose value is the text the default hashes is still another key:
  // the default is an object, a by value a string.
  node dflt = compute_task("a", "f").cache();
  node by_const = compute_task("a", "f").cache({"constant", ""});
  node by_other = compute_task("a", "f").cache({"other", ""});
  std::string k_default = setup(dflt).cache_key();
  std::string k_const = setup(by_const).cache_key();
  CHECK(k_default != k_const);
  CHECK(k_const != setup(by_other).cache_key());
  // A by without templates keys every run alike.
  setup s(by_const);
  s.input = {{"x", "whatever"}};
  s.outputs.clear();
  CHECK(s.cache_key() == k_const);
}

TEST_CASE("cache key: a by that cannot be expanded fails the build like any template") {
  setup s(command_task("a", {"true"}).cache({"{{outputs.ghost.sha}}", ""}));
  CHECK_THROWS_AS(s.job(), smithers_error);
}

// Paths are bytes: a run directory need not be UTF-8. Were ill-formed
// bytes replaced (U+FFFD) on the way to the key, directories that differ
// only there would share a key (and one run would reuse the other's output).
TEST_CASE("cache key: run directories that differ only in non-UTF-8 bytes get different keys") {
  node base = command_task("a", {"ls"}).cache();
  setup s1(base), s2(base);
  s1.base_cwd = "/w/\xff";
  s2.base_cwd = "/w/\xfe";
  CHECK(s1.job()->request.cwd != s2.job()->request.cwd);
  CHECK(s1.cache_key() != s2.cache_key());
}

// A task receives its loop iteration (task_context::iteration(),
// SMITHERS_ITERATION), but without `by` the key has the node id only: in a
// loop, iteration 1 of a cached body task hits iteration 0's entry and
// never runs, so a body whose work depends on the iteration keeps
// returning its first output (a loop `until` on it can never hold).
TEST_CASE("cache key without by: the loop iteration a task receives is part of it") {
  for (node n : {compute_task("a", "f").cache(), command_task("a", {"./step.sh"}).cache()}) {
    CAPTURE(to_string(n.task->kind));
    setup s0(n), s1(n);
    s1.key.iteration = 1;
    CHECK(s0.cache_key() != s1.cache_key());
  }
}
