#include "format/parse.hpp"

#include "format/validate.hpp"
#include "util/hash.hpp"
#include "util/iso_time.hpp"
#include "util/json_bounds.hpp"
#include "util/json_parse.hpp"
#include "util/read_file.hpp"

#include <smithers/limits.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace smithers::spec {

namespace {

constexpr const char* node_kinds[] = {"task",     "sequence", "parallel", "loop",  "branch",
                                      "for_each", "approval", "timer",    "signal"};

std::string type_name(const json& v) {
  switch (v.type()) {
  case json::value_t::null:
    return "null";
  case json::value_t::boolean:
    return "a boolean";
  case json::value_t::string:
    return "a string";
  case json::value_t::array:
    return "an array";
  case json::value_t::object:
    return "an object";
  default:
    return "a number";
  }
}

// "$.root.sequence[1]" as problems spell paths in a workflow: "root.sequence[1]".
std::string document_path(const std::string& dollar_path) {
  if (dollar_path.size() < 2) return "";
  return dollar_path.substr(dollar_path[1] == '.' ? 2 : 1);
}

struct parser {
  problems& out;

  bool expect(const json& v, json::value_t t, const std::string& path, const char* what) {
    bool ok = v.type() == t;
    if (t == json::value_t::number_integer) ok = v.is_number_integer();
    if (!ok) out.push_back({path, std::string{"must be "} + what + ", got " + type_name(v)});
    return ok;
  }

  std::optional<std::int64_t> integer(const json& v, const std::string& path) {
    // An integral value beyond int64 (an unsigned above its maximum, a
    // double like 3e33, whose cast would be undefined) is beyond every
    // integer option's range.
    constexpr double two_to_63 = 9223372036854775808.0;
    bool beyond = false;
    if (v.is_number_unsigned()) {
      auto u = v.get<std::uint64_t>();
      if (u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return static_cast<std::int64_t>(u);
      beyond = true;
    } else if (v.is_number_integer()) {
      return v.get<std::int64_t>();
    } else if (v.is_number_float()) {
      double d = v.get<double>();
      if (d == std::trunc(d)) { // integral (NaN is not; infinity counts as beyond)
        if (d >= -two_to_63 && d < two_to_63) return static_cast<std::int64_t>(d);
        beyond = true;
      }
    }
    if (beyond)
      out.push_back({path, "must be an integer between 0 and " +
                               std::to_string(limits::max_option_value) + ", got " +
                               v.dump(-1, ' ', false, json::error_handler_t::replace)});
    else
      out.push_back({path, "must be an integer, got " + type_name(v)});
    return std::nullopt;
  }

  std::optional<double> number(const json& v, const std::string& path) {
    if (v.is_number()) return v.get<double>();
    out.push_back({path, "must be a number, got " + type_name(v)});
    return std::nullopt;
  }

  std::optional<std::string> string(const json& v, const std::string& path) {
    if (v.is_string()) return v.get<std::string>();
    out.push_back({path, "must be a string, got " + type_name(v)});
    return std::nullopt;
  }

  std::optional<node> parse_node(const json& v, const std::string& path) {
    if (!v.is_object()) {
      out.push_back({path, "a node must be an object, got " + type_name(v)});
      return std::nullopt;
    }
    std::vector<std::string> kinds;
    for (const char* k : node_kinds)
      if (v.contains(k)) kinds.emplace_back(k);
    if (kinds.empty()) {
      out.push_back({path, "node has no kind: expected one of task, sequence, parallel, loop, "
                           "branch, for_each, approval, timer, signal"});
      return std::nullopt;
    }
    if (kinds.size() > 1) {
      out.push_back({path, "node has more than one kind: " + kinds[0] + " and " + kinds[1]});
      return std::nullopt;
    }
    const std::string& kind = kinds[0];
    if (kind == "task" || kind == "approval" || kind == "timer" || kind == "signal")
      return parse_task(v, path, kind);
    if (kind == "branch") return parse_branch(v, path);
    if (kind == "for_each") return parse_for_each(v, path);
    if (kind == "loop") return parse_loop(v, path);
    return parse_group(v, path, kind == "sequence" ? node_kind::sequence : node_kind::parallel);
  }

  std::optional<node> parse_group(const json& v, const std::string& path, node_kind kind) {
    const char* key = to_string(kind);
    node n;
    n.kind = kind;
    bool ok = true;
    for (const auto& [k, val] : v.items()) {
      if (k == key) continue;
      if (k == "max_concurrency" && kind == node_kind::parallel) {
        if (auto i = integer(val, child_path(path, k)))
          n.max_concurrency = *i;
        else
          ok = false;
        continue;
      }
      out.push_back({child_path(path, k), "unknown key \"" + k + "\" in a " + key + " node"});
      ok = false;
    }
    const json& kids = v.at(key);
    auto kids_path = child_path(path, key);
    if (!expect(kids, json::value_t::array, kids_path, "an array of nodes")) return std::nullopt;
    n.children.reserve(kids.size());
    for (std::size_t i = 0; i < kids.size(); ++i) {
      auto c = parse_node(kids[i], index_path(kids_path, i));
      if (c)
        n.children.push_back(std::move(*c));
      else
        ok = false;
    }
    if (!ok) return std::nullopt;
    return n;
  }

  // {"branch": "<id>", "if": {predicate}, "then": {node}, "else": {node}}
  std::optional<node> parse_branch(const json& v, const std::string& path) {
    node n;
    n.kind = node_kind::branch;
    bool ok = true;
    if (auto id = string(v.at("branch"), child_path(path, "branch")))
      n.id = *id;
    else
      ok = false;
    for (const auto& [k, val] : v.items())
      if (k != "branch" && k != "if" && k != "then" && k != "else") {
        out.push_back({child_path(path, k), "unknown key \"" + k + "\" in a branch node"});
        ok = false;
      }
    if (!v.contains("if")) {
      out.push_back({path, "a branch needs \"if\" (a predicate)"});
      ok = false;
    } else {
      n.condition = v.at("if"); // checked by validation, with its path
    }
    if (!v.contains("then")) {
      out.push_back({path, "a branch needs \"then\" (a node)"});
      return std::nullopt;
    }
    ok = parse_child(v.at("then"), child_path(path, "then"), n) && ok;
    if (v.contains("else")) ok = parse_child(v.at("else"), child_path(path, "else"), n) && ok;
    if (!ok) return std::nullopt;
    return n;
  }

  // {"for_each": "<id>", "items": "<path>", "as": "<name>", "body": {node},
  //  "max_concurrency": N}
  std::optional<node> parse_for_each(const json& v, const std::string& path) {
    node n;
    n.kind = node_kind::for_each;
    bool ok = true;
    if (auto id = string(v.at("for_each"), child_path(path, "for_each")))
      n.id = *id;
    else
      ok = false;
    for (const auto& [k, val] : v.items()) {
      if (k == "for_each" || k == "body") continue;
      auto p = child_path(path, k);
      if (k == "items") {
        if (auto t = string(val, p)) n.items = *t; else ok = false;
      } else if (k == "as") {
        if (auto t = string(val, p)) n.item_name = *t; else ok = false;
      } else if (k == "max_concurrency") {
        if (auto i = integer(val, p)) n.max_concurrency = *i; else ok = false;
      } else {
        out.push_back({p, "unknown key \"" + k + "\" in a for_each node"});
        ok = false;
      }
    }
    for (const char* required : {"items", "as", "body"})
      if (!v.contains(required)) {
        out.push_back({path, std::string{"a for_each needs \""} + required + "\""});
        ok = false;
      }
    if (v.contains("body")) ok = parse_child(v.at("body"), child_path(path, "body"), n) && ok;
    if (!ok) return std::nullopt;
    return n;
  }

  // Parses a child node into n.children; false (reported) when it fails.
  bool parse_child(const json& v, const std::string& path, node& n) {
    auto c = parse_node(v, path);
    if (c) n.children.push_back(std::move(*c));
    return c.has_value();
  }

  // {"loop": "<id>", "body": {node}, "until": {predicate}, "max_iterations": N,
  //  "on_max_reached": "fail" | "return-last", "continue_as_new_every": K}
  std::optional<node> parse_loop(const json& v, const std::string& path) {
    node n;
    n.kind = node_kind::loop;
    bool ok = true;
    if (auto id = string(v.at("loop"), child_path(path, "loop")))
      n.id = *id;
    else
      ok = false;
    for (const auto& [k, val] : v.items()) {
      if (k == "loop" || k == "body") continue;
      auto p = child_path(path, k);
      if (k == "until") {
        n.condition = val; // checked by validation, with its path
      } else if (k == "max_iterations") {
        if (auto i = integer(val, p)) n.max_iterations = *i; else ok = false;
      } else if (k == "continue_as_new_every") {
        if (auto i = integer(val, p)) n.continue_as_new_every = *i; else ok = false;
      } else if (k == "on_max_reached") {
        auto t = string(val, p);
        if (t && (*t == "fail" || *t == "return-last")) {
          n.fail_on_max = *t == "fail";
        } else {
          if (t) out.push_back({p, "must be \"fail\" or \"return-last\", got \"" + *t + "\""});
          ok = false;
        }
      } else {
        out.push_back({p, "unknown key \"" + k + "\" in a loop node"});
        ok = false;
      }
    }
    if (!v.contains("body")) {
      out.push_back({path, "a loop needs \"body\" (a node)"});
      return std::nullopt;
    }
    ok = parse_child(v.at("body"), child_path(path, "body"), n) && ok;
    if (!ok) return std::nullopt;
    return n;
  }

  // The options a wait node takes besides its own (docs/workflow-format.md).
  static bool wait_option(const std::string& kind, const std::string& k) {
    if (k == "needs" || k == "skip_if" || k == "label" || k == "continue_on_fail") return true;
    return kind == "signal" && (k == "timeout_ms" || k == "retries" || k == "retry");
  }

  // Parses {"approval"|"timer"|"signal": id, ...}'s own keys; false for
  // any other key (the caller goes on with the shared options).
  bool parse_wait_key(const std::string& kind, const std::string& k, const json& val,
                      const std::string& p, task_spec& spec, bool& ok) {
    if (kind == "approval" && (k == "title" || k == "summary")) {
      if (auto t = string(val, p))
        (k == "title" ? spec.approval->title : spec.approval->summary) = *t;
      else
        ok = false;
      return true;
    }
    if (kind == "approval" && k == "on_deny") {
      if (auto a = deny(val, p, true))
        spec.approval->on_deny = *a;
      else
        ok = false;
      return true;
    }
    if (kind == "timer" && k == "duration_ms") {
      if (auto i = integer(val, p))
        spec.duration_ms = *i;
      else
        ok = false;
      return true;
    }
    if (kind == "timer" && k == "until") {
      auto t = string(val, p);
      auto ms = t ? util::parse_iso_time(*t) : std::nullopt;
      if (ms) {
        spec.until_ms = *ms;
        spec.until_text = *t;
      } else {
        if (t)
          out.push_back({p, "must be an ISO-8601 time with a zone, like "
                            "\"2026-12-24T18:00:00Z\" or \"2026-12-24T19:00:00+01:00\""});
        ok = false;
      }
      return true;
    }
    if (kind == "signal" && k == "name") {
      if (auto t = string(val, p))
        spec.signal_name = *t;
      else
        ok = false;
      return true;
    }
    return false;
  }

  std::optional<deny_action> deny(const json& val, const std::string& p, bool allow_continue) {
    auto t = string(val, p);
    if (!t) return std::nullopt;
    if (*t == "fail") return deny_action::fail;
    if (*t == "skip") return deny_action::skip;
    if (*t == "continue" && allow_continue) return deny_action::proceed;
    out.push_back({p, std::string{"must be "} +
                          (allow_continue ? "\"fail\", \"continue\" or \"skip\""
                                          : "\"fail\" or \"skip\" (a gate cannot continue)") +
                          ", got \"" + *t + "\""});
    return std::nullopt;
  }

  // {"cache": true} or {"cache": {"by": "<template>", "version": "<text>"}}.
  bool parse_cache(const json& val, const std::string& p, task_spec& spec) {
    if (val.is_boolean()) {
      if (val.get<bool>()) spec.cache = cache_spec{};
      return true;
    }
    if (!expect(val, json::value_t::object, p, "true, false or an object")) return false;
    cache_spec c;
    bool ok = true;
    for (const auto& [k, x] : val.items()) {
      auto kp = child_path(p, k);
      if (k == "by" || k == "version") {
        if (auto t = string(x, kp))
          (k == "by" ? c.by : c.version) = *t;
        else
          ok = false;
      } else {
        out.push_back({kp, "unknown key \"" + k + "\" in cache (by, version)"});
        ok = false;
      }
    }
    spec.cache = std::move(c);
    return ok;
  }

  // {"NAME": "value", ...}: a task's env (templates) or an agent's.
  bool parse_env(const json& val, const std::string& p, std::map<std::string, std::string>& env) {
    if (!expect(val, json::value_t::object, p, "an object of strings")) return false;
    bool ok = true;
    for (const auto& [name, v] : val.items()) {
      if (name.empty() || name.find('=') != std::string::npos) {
        out.push_back({child_path(p, name), "invalid environment variable name"});
        ok = false;
      } else if (auto t = string(v, child_path(p, name))) {
        env[name] = *t;
      } else {
        ok = false;
      }
    }
    return ok;
  }

  // {"id", "command", "model", "env"}: one agent of a task's chain.
  std::optional<agent_spec> parse_agent(const json& val, const std::string& p) {
    if (!expect(val, json::value_t::object, p, "an object (id, command, model, env)"))
      return std::nullopt;
    agent_spec a;
    bool ok = true;
    for (const char* need : {"id", "command"})
      if (!val.contains(need)) {
        out.push_back({p, std::string{"an agent needs \""} + need + "\""});
        ok = false;
      }
    for (const auto& [k, x] : val.items()) {
      auto kp = child_path(p, k);
      if (k == "id" || k == "model") {
        if (auto t = string(x, kp))
          (k == "id" ? a.id : a.model) = *t;
        else
          ok = false;
      } else if (k == "command") {
        if (!expect(x, json::value_t::array, kp, "an array of strings (argv)")) {
          ok = false;
          continue;
        }
        for (std::size_t i = 0; i < x.size(); ++i) {
          if (auto t = string(x[i], index_path(kp, i)))
            a.command.push_back(*t);
          else
            ok = false;
        }
      } else if (k == "env") {
        ok = parse_env(x, kp, a.env) && ok;
      } else {
        out.push_back({kp, "unknown key \"" + k + "\" in an agent (id, command, model, env)"});
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return a;
  }

  // "agent": one agent object, or an array of them (a fallback chain).
  bool parse_agents(const json& val, const std::string& p, task_spec& spec) {
    if (val.is_object()) {
      auto a = parse_agent(val, p);
      if (a) spec.agents.push_back(std::move(*a));
      return a.has_value();
    }
    if (!expect(val, json::value_t::array, p, "an agent object or an array of them")) return false;
    bool ok = true;
    for (std::size_t i = 0; i < val.size(); ++i) {
      auto a = parse_agent(val[i], index_path(p, i));
      if (a)
        spec.agents.push_back(std::move(*a));
      else
        ok = false;
    }
    return ok;
  }

  // {"path": "<template>", "branch": "<template>", "base": "<ref>"}.
  bool parse_worktree(const json& val, const std::string& p, task_spec& spec) {
    if (!expect(val, json::value_t::object, p, "an object (path, branch, base)")) return false;
    worktree_spec w;
    bool ok = true;
    if (!val.contains("path")) {
      out.push_back({p, "a worktree needs \"path\""});
      ok = false;
    }
    for (const auto& [k, x] : val.items()) {
      auto kp = child_path(p, k);
      if (k == "path" || k == "branch" || k == "base") {
        if (auto t = string(x, kp))
          (k == "path" ? w.path : k == "branch" ? w.branch : w.base) = *t;
        else
          ok = false;
      } else {
        out.push_back({kp, "unknown key \"" + k + "\" in worktree (path, branch, base)"});
        ok = false;
      }
    }
    spec.worktree = std::make_shared<const worktree_spec>(std::move(w));
    return ok;
  }

  // {"needs_approval": true} or {"needs_approval": {"title", "summary", "on_deny"}}.
  bool parse_gate(const json& val, const std::string& p, task_spec& spec) {
    if (val.is_boolean()) {
      if (val.get<bool>()) spec.approval = approval_spec{};
      return true;
    }
    if (!expect(val, json::value_t::object, p, "true, false or an object")) return false;
    approval_spec a;
    bool ok = true;
    for (const auto& [k, x] : val.items()) {
      auto kp = child_path(p, k);
      if (k == "title" || k == "summary") {
        if (auto t = string(x, kp))
          (k == "title" ? a.title : a.summary) = *t;
        else
          ok = false;
      } else if (k == "on_deny") {
        if (auto d = deny(x, kp, false))
          a.on_deny = *d;
        else
          ok = false;
      } else {
        out.push_back({kp, "unknown key \"" + k + "\" in needs_approval"});
        ok = false;
      }
    }
    spec.approval = a;
    return ok;
  }

  // A task, or a wait (approval, timer, signal): a leaf of the plan.
  std::optional<node> parse_task(const json& v, const std::string& path, const std::string& kind) {
    node n;
    n.kind = node_kind::task;
    auto spec = std::make_shared<task_spec>();
    bool ok = true;
    if (auto id = string(v.at(kind), child_path(path, kind)))
      n.id = *id;
    else
      ok = false;
    bool wait = kind != "task";
    if (kind == "approval") {
      spec->kind = task_kind::approval;
      spec->approval = approval_spec{};
    } else if (kind == "timer") {
      spec->kind = task_kind::timer;
    } else if (kind == "signal") {
      spec->kind = task_kind::signal;
    }

    int bodies = 0;
    for (const char* b : {"run", "value", "compute", "agent"})
      bodies += v.contains(b) ? 1 : 0;
    if (!wait && bodies != 1) {
      out.push_back({path, bodies == 0 ? "task needs one of run, value, compute or agent"
                                       : "task has more than one of run, value, compute, agent"});
      ok = false;
    }
    if (!wait && v.contains("agent") != v.contains("prompt")) {
      out.push_back({path, v.contains("agent")
                               ? "an agent task needs \"prompt\""
                               : "\"prompt\" belongs to agent tasks (with \"agent\")"});
      ok = false;
    }
    if (kind == "approval" && !v.contains("title")) {
      out.push_back({path, "an approval needs \"title\""});
      ok = false;
    }
    if (kind == "timer" && v.contains("duration_ms") == v.contains("until")) {
      out.push_back({path, "a timer needs one of \"duration_ms\" or \"until\""});
      ok = false;
    }
    if (kind == "signal" && !v.contains("name")) {
      out.push_back({path, "a signal needs \"name\""});
      ok = false;
    }

    for (const auto& [k, val] : v.items()) {
      auto p = child_path(path, k);
      if (k == kind) continue;
      if (wait) {
        if (parse_wait_key(kind, k, val, p, *spec, ok)) continue;
        if (!wait_option(kind, k)) {
          out.push_back({p, "unknown key \"" + k + "\" in a" +
                                std::string{kind == "approval" ? "n " : " "} + kind + " node"});
          ok = false;
          continue;
        }
      }
      if (k == "run") {
        spec->kind = task_kind::command;
        if (val.is_string()) {
          spec->use_shell = true;
          spec->shell = val.get<std::string>();
        } else if (val.is_array()) {
          for (std::size_t i = 0; i < val.size(); ++i) {
            if (auto s = string(val[i], index_path(p, i)))
              spec->argv.push_back(*s);
            else
              ok = false;
          }
        } else {
          out.push_back(
              {p, "must be a string (shell) or an array of strings (argv), got " + type_name(val)});
          ok = false;
        }
      } else if (k == "value") {
        spec->kind = task_kind::value;
        spec->value = val;
      } else if (k == "compute") {
        spec->kind = task_kind::compute;
        if (auto s = string(val, p)) {
          if (s->empty()) {
            out.push_back({p, "compute function name must not be empty"});
            ok = false;
          }
          spec->compute_name = *s;
        } else {
          ok = false;
        }
      } else if (k == "agent") {
        spec->kind = task_kind::agent;
        ok = parse_agents(val, p, *spec) && ok;
      } else if (k == "prompt") {
        if (auto s = string(val, p))
          spec->prompt = *s;
        else
          ok = false;
      } else if (k == "worktree") {
        ok = parse_worktree(val, p, *spec) && ok;
      } else if (k == "needs_approval") {
        ok = parse_gate(val, p, *spec) && ok;
      } else if (k == "cache") {
        ok = parse_cache(val, p, *spec) && ok;
      } else if (k == "output") {
        if (auto s = string(val, p))
          spec->output = *s;
        else
          ok = false;
      } else if (k == "output_schema") {
        if (expect(val, json::value_t::object, p, "an object (a schema)"))
          spec->output_schema = val;
        else
          ok = false;
      } else if (k == "needs") {
        if (!expect(val, json::value_t::array, p, "an array of task ids")) {
          ok = false;
          continue;
        }
        for (std::size_t i = 0; i < val.size(); ++i) {
          if (auto s = string(val[i], index_path(p, i)))
            spec->needs.push_back(*s);
          else
            ok = false;
        }
      } else if (k == "retries") {
        if (auto i = integer(val, p))
          spec->retries = *i;
        else
          ok = false;
      } else if (k == "retry") {
        ok = parse_retry(val, p, *spec) && ok;
      } else if (k == "timeout_ms") {
        if (auto i = integer(val, p))
          spec->timeout_ms = *i;
        else
          ok = false;
      } else if (k == "heartbeat_timeout_ms") {
        if (auto i = integer(val, p))
          spec->heartbeat_timeout_ms = *i;
        else
          ok = false;
      } else if (k == "skip_if") {
        spec->skip_if = val;
      } else if (k == "continue_on_fail") {
        if (expect(val, json::value_t::boolean, p, "a boolean"))
          spec->continue_on_fail = val.get<bool>();
        else
          ok = false;
      } else if (k == "direct") {
        if (expect(val, json::value_t::boolean, p, "a boolean"))
          spec->direct = val.get<bool>();
        else
          ok = false;
      } else if (k == "label") {
        if (auto s = string(val, p))
          spec->label = *s;
        else
          ok = false;
      } else if (k == "env") {
        ok = parse_env(val, p, spec->env) && ok;
      } else if (k == "cwd") {
        if (auto s = string(val, p))
          spec->cwd = *s;
        else
          ok = false;
      } else {
        out.push_back({p, "unknown key \"" + k + "\" in a task"});
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    n.task = std::move(spec);
    return n;
  }

  bool parse_retry(const json& v, const std::string& path, task_spec& spec) {
    if (!expect(v, json::value_t::object, path, "an object")) return false;
    retry_policy rp;
    bool ok = true;
    for (const auto& [k, val] : v.items()) {
      auto p = child_path(path, k);
      if (k == "initial_ms" || k == "max_ms") {
        if (auto i = integer(val, p))
          (k == "initial_ms" ? rp.initial_ms : rp.max_ms) = *i;
        else
          ok = false;
      } else if (k == "backoff" || k == "jitter") {
        if (auto d = number(val, p))
          (k == "backoff" ? rp.backoff : rp.jitter) = *d;
        else
          ok = false;
      } else {
        out.push_back({p, "unknown key \"" + k + "\" in retry"});
        ok = false;
      }
    }
    spec.retry = rp;
    return ok;
  }

  std::optional<workflow> parse(const json& doc) {
    if (!doc.is_object()) {
      out.push_back({"", "a workflow must be a JSON object, got " + type_name(doc)});
      return std::nullopt;
    }
    workflow wf;
    bool ok = true;
    for (const auto& [k, val] : doc.items()) {
      if (k == "name") {
        if (auto s = string(val, k))
          wf.name = *s;
        else
          ok = false;
      } else if (k == "description" || k == "version") {
        // informational only
      } else if (k == "max_concurrency") {
        if (auto i = integer(val, k))
          wf.max_concurrency = *i;
        else
          ok = false;
      } else if (k == "input") {
        if (expect(val, json::value_t::object, k, "an object (a schema)"))
          wf.input_schema = val;
        else
          ok = false;
      } else if (k == "outputs") {
        if (!expect(val, json::value_t::object, k, "an object of schemas")) {
          ok = false;
          continue;
        }
        for (const auto& [name, schema] : val.items()) {
          if (expect(schema, json::value_t::object, child_path(k, name), "an object (a schema)"))
            wf.output_schemas[name] = schema;
          else
            ok = false;
        }
      } else if (k == "root") {
        continue;
      } else {
        out.push_back({k, "unknown top-level key \"" + k + "\""});
        ok = false;
      }
    }
    auto root = doc.find("root");
    if (root == doc.end()) {
      out.push_back({"root", "a workflow needs a root node"});
      return std::nullopt;
    }
    auto r = parse_node(*root, "root");
    if (!r || !ok) return std::nullopt;
    wf.root = std::move(*r);
    return wf;
  }
};

} // namespace

parse_result parse_workflow(const json& doc) {
  parse_result res;
  // Everything below recurses over the document: a deep one (built in C++;
  // files are refused while they are read) must not reach it.
  if (auto err = util::check_depth(doc, limits::max_workflow_depth, errc::invalid_workflow,
                                   "workflow")) {
    res.errors.push_back(
        {document_path(err->details.value("path", std::string{"$"})),
         "nesting depth " + std::to_string(err->details.value("actual", std::size_t{0})) +
             " exceeds the limit of " + std::to_string(limits::max_workflow_depth)});
    return res;
  }
  parser p{res.errors};
  auto wf = p.parse(doc);
  if (!wf) return res;
  auto ps = validate_workflow(*wf);
  if (!ps.empty()) {
    res.errors = std::move(ps);
    return res;
  }
  res.hash = util::sha256_hex(doc.dump());
  res.wf = std::move(wf);
  return res;
}

parse_result load_workflow_file(const std::string& path) {
  parse_result res;
  if (path.size() > limits::max_workflow_path_bytes) {
    res.errors.push_back({"", "workflow path is " + std::to_string(path.size()) +
                                  " bytes; the limit is " +
                                  std::to_string(limits::max_workflow_path_bytes)});
    return res;
  }
  auto file = util::read_regular_file(path, limits::max_workflow_bytes);
  if (file.too_large) {
    res.errors.push_back({"", "\"" + path + "\" is larger than the limit of " +
                                  std::to_string(limits::max_workflow_bytes) + " bytes"});
    return res;
  }
  if (!file.error.empty()) {
    res.errors.push_back({"", "cannot read workflow file \"" + path + "\": " + file.error});
    return res;
  }
  const std::string& text = file.text;
  util::json_parse_error err;
  auto doc = util::parse_json(text, {limits::max_workflow_depth, limits::max_workflow_bytes}, &err);
  if (!doc) {
    std::string where = document_path(err.path);
    if (err.what == util::json_problem::syntax)
      res.errors.push_back({where, "\"" + path + "\" is not valid JSON: " + err.message});
    else if (err.what == util::json_problem::too_large)
      res.errors.push_back({where, "\"" + path + "\" is larger than the limit of " +
                                       std::to_string(limits::max_workflow_bytes) + " bytes"});
    else // too deep, a duplicate key, a number out of range: at its path
      res.errors.push_back({where, err.message});
    return res;
  }
  return parse_workflow(*doc);
}

} // namespace smithers::spec
