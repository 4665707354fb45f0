#include "format/validate.hpp"

#include "expr/predicate.hpp"
#include "expr/shell_template.hpp"
#include "expr/template.hpp"
#include "schema/schema.hpp"
#include "util/ids.hpp"

#include <smithers/limits.hpp>

#include <algorithm>
#include <cctype>
#include <unordered_map>
#include <unordered_set>

namespace smithers::spec {

std::string child_node_path(const std::string& parent, node_kind parent_kind, std::size_t i) {
  if (parent_kind == node_kind::branch) return child_path(parent, i == 0 ? "then" : "else");
  if (parent_kind == node_kind::for_each || parent_kind == node_kind::loop)
    return child_path(parent, "body");
  return index_path(child_path(parent, to_string(parent_kind)), i);
}

namespace {

bool out_of_range(std::int64_t v, bool allow_zero) {
  return v < (allow_zero ? 0 : 1) || v > limits::max_option_value;
}

std::string range_message(bool allow_zero) {
  // The upper bound keeps arithmetic on the option from overflowing.
  return std::string(allow_zero ? "must be an integer >= 0" : "must be a positive integer") +
         " and at most " + std::to_string(limits::max_option_value);
}

void check_positive(problems& out, const std::string& path, std::int64_t v, bool allow_zero) {
  if (out_of_range(v, allow_zero)) out.push_back({path, range_message(allow_zero)});
}

// Whether a schema can accept an object: task outputs are always objects.
bool allows_objects(const json& schema) {
  auto type = schema.find("type");
  if (type == schema.end()) return true;
  if (type->is_string()) return *type == "object";
  if (type->is_array())
    for (const auto& t : *type)
      if (t == "object") return true;
  return false;
}

constexpr const char* not_object_schema =
    "a task's output is a JSON object: the schema's type must be \"object\"";

// A node's place in the tree: the (group, child index) pairs from the root.
using trail = std::vector<std::pair<const node*, std::size_t>>;

std::string path_of(const trail& tr) {
  std::string path = "root";
  for (const auto& [group, i] : tr)
    path = child_node_path(path, group->kind, i);
  return path;
}

// Paths are built only for problems: a valid tree of 100,000 tasks would
// otherwise build (and hash) a path string per node and per checked option.
struct tree_checker {
  tree_checker(const workflow& w, problems& o) : wf(w), out(o) {}

  const workflow& wf;
  problems& out;

  struct task_entry {
    const node* n;
    trail where;
    std::vector<std::string> locals; // names of enclosing for_each variables
  };
  std::vector<task_entry> tasks;                    // tree order
  std::unordered_map<std::string, std::size_t> ids; // valid id -> its first task entry
  std::vector<std::pair<const node*, trail>> branches; // and for_each nodes
  std::vector<std::string> locals;                    // names in scope while collecting
  const std::vector<std::string>* cur_locals = nullptr; // of the task being checked

  static bool valid_name(const std::string& s) {
    if (s.empty() || s.size() > 64 || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
    for (char c : s)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
    for (const char* root : {"input", "outputs", "iteration", "run_id", "node_id", "attempt"})
      if (s == root) return false;
    return true;
  }

  void collect_for_each(const node& n, trail& where) {
    branches.emplace_back(&n, where);
    std::string path = path_of(where);
    if (!util::valid_node_id(n.id))
      out.push_back({child_path(path, "for_each"),
                     "for_each id \"" + n.id + "\" must be 1-" +
                         std::to_string(util::max_node_id_length) + " characters of [A-Za-z0-9_-]"});
    if (n.items.rfind("input.", 0) != 0 && n.items.rfind("outputs.", 0) != 0)
      out.push_back({child_path(path, "items"),
                     "must be a path starting with \"input.\" or \"outputs.<task id>\""});
    if (!valid_name(n.item_name))
      out.push_back({child_path(path, "as"),
                     "must be a name of letters, digits and _ (not starting with a digit, at most "
                     "64 characters) other than input, outputs, iteration, run_id, node_id and "
                     "attempt"});
    if (n.max_concurrency && out_of_range(*n.max_concurrency, false))
      out.push_back({child_path(path, "max_concurrency"), range_message(false)});
    if (n.children.size() != 1) {
      out.push_back({path, "a for_each has exactly one body node"});
      return;
    }
    locals.push_back(n.item_name);
    locals.push_back(n.item_name + "_index");
    where.emplace_back(&n, 0);
    collect(n.children[0], where);
    where.pop_back();
    locals.resize(locals.size() - 2);
  }

  void collect_loop(const node& n, trail& where) {
    branches.emplace_back(&n, where);
    std::string path = path_of(where);
    if (!locals.empty()) {
      // Inside a for_each each item's loop needs its own id (and state).
      if (!has_template(n.id))
        out.push_back({child_path(path, "loop"),
                       "loop id \"" + n.id + "\" is inside a for_each: it must use {{" +
                           locals[locals.size() - 2] + "...}} or {{" + locals.back() +
                           "}} so that each item's loop has its own id"});
      else
        for (const auto& p : check_template(n.id, child_path(path, "loop"), locals))
          out.push_back(p);
    } else if (!util::valid_node_id(n.id)) {
      out.push_back({child_path(path, "loop"),
                     "loop id \"" + n.id + "\" must be 1-" +
                         std::to_string(util::max_node_id_length) + " characters of [A-Za-z0-9_-]"});
    }
    if (out_of_range(n.max_iterations, false) || n.max_iterations > limits::max_loop_iterations)
      out.push_back({child_path(path, "max_iterations"),
                     "must be a positive integer and at most " +
                         std::to_string(limits::max_loop_iterations)});
    if (n.continue_as_new_every && out_of_range(*n.continue_as_new_every, false))
      out.push_back({child_path(path, "continue_as_new_every"), range_message(false)});
    if (n.children.size() != 1) {
      out.push_back({path, "a loop has exactly one body node"});
      return;
    }
    where.emplace_back(&n, 0);
    collect(n.children[0], where);
    where.pop_back();
  }

  void collect(const node& n, trail& where) {
    if (n.kind == node_kind::for_each) {
      collect_for_each(n, where);
      return;
    }
    if (n.kind == node_kind::loop) {
      collect_loop(n, where);
      return;
    }
    if (n.kind == node_kind::branch) {
      branches.emplace_back(&n, where);
      if (!util::valid_node_id(n.id))
        out.push_back({child_path(path_of(where), "branch"),
                       "branch id \"" + n.id + "\" must be 1-" +
                           std::to_string(util::max_node_id_length) + " characters of [A-Za-z0-9_-]"});
      if (n.children.empty() || n.children.size() > 2)
        out.push_back({path_of(where), "a branch has a `then` node and at most an `else` node"});
      if (n.condition.is_null())
        out.push_back({child_path(path_of(where), "if"), "a branch needs an `if` predicate"});
    }
    if (n.is_task()) {
      tasks.push_back({&n, where, locals});
      if (!locals.empty()) {
        // Inside a for_each: the id is a template of the item (checked with
        // the task's other templates; what it gives, at render).
        if (!has_template(n.id))
          out.push_back({child_path(path_of(where), "task"),
                         "task id \"" + n.id + "\" is inside a for_each: it must use {{" +
                             locals[locals.size() - 2] + "...}} or {{" + locals.back() +
                             "}} so that each item's task has its own id"});
        else
          for (const auto& p : check_template(n.id, child_path(path_of(where), "task"), locals))
            out.push_back(p);
        if (auto [it, fresh] = ids.emplace(n.id, tasks.size() - 1); !fresh)
          out.push_back({child_path(path_of(where), "task"),
                         "duplicate task id \"" + n.id + "\" (also at " +
                             path_of(tasks[it->second].where) + ")"});
      } else if (!util::valid_node_id(n.id)) {
        out.push_back(
            {child_path(path_of(where), "task"), "task id \"" + n.id + "\" must be 1-" +
                                                     std::to_string(util::max_node_id_length) +
                                                     " characters of [A-Za-z0-9_-]"});
      } else if (auto [it, fresh] = ids.emplace(n.id, tasks.size() - 1); !fresh) {
        out.push_back(
            {child_path(path_of(where), "task"), "duplicate task id \"" + n.id + "\" (also at " +
                                                     path_of(tasks[it->second].where) + ")"});
      }
      if (!n.task) out.push_back({path_of(where), "task node has no task"});
      return;
    }
    if (n.task) out.push_back({path_of(where), "only task nodes carry task options"});
    if (n.max_concurrency) {
      if (n.kind != node_kind::parallel)
        out.push_back({child_path(path_of(where), "max_concurrency"),
                       "only parallel groups have max_concurrency"});
      else if (out_of_range(*n.max_concurrency, false))
        out.push_back({child_path(path_of(where), "max_concurrency"), range_message(false)});
    }
    for (std::size_t i = 0; i < n.children.size(); ++i) {
      where.emplace_back(&n, i);
      collect(n.children[i], where);
      where.pop_back();
    }
  }

  void check_output_refs(const std::vector<std::string>& refs, const std::string& path,
                         const std::string& self) {
    for (const auto& id : refs) {
      if (!ids.count(id))
        out.push_back({path, "refers to the output of \"" + id + "\", which is no task"});
      else if (id == self)
        out.push_back({path, "task \"" + self + "\" refers to its own output"});
    }
  }

  // False when the text has a syntax problem (reported).
  bool check_template_text(const std::string& text, const std::string& path,
                           const std::string& self) {
    static const std::vector<std::string> none;
    auto ps = check_template(text, path, cur_locals ? *cur_locals : none);
    out.insert(out.end(), ps.begin(), ps.end());
    if (ps.empty()) check_output_refs(template_output_refs(text), path, self);
    return ps.empty();
  }

  // A script of `program`: its templates must stand where a variable
  // reference is safe.
  void check_script(const std::string& text, const std::string& path, const std::string& self,
                    std::string_view program) {
    if (!check_template_text(text, path, self)) return;
    auto ps = check_shell_template(text, path, program);
    out.insert(out.end(), ps.begin(), ps.end());
  }

  // What execve cannot pass: a NUL byte ends the string there, and Linux
  // refuses one string of more than limits::max_arg_string_bytes.
  // `prefix_bytes`: what precedes the text in the final string ("NAME=").
  void check_exec_string(std::string_view text, const std::string& path,
                         std::size_t prefix_bytes = 0) {
    if (text.find('\0') != std::string_view::npos)
      out.push_back(
          {path, "contains a NUL byte, which no argument or environment variable can hold"});
    else if (prefix_bytes + text.size() >= limits::max_arg_string_bytes)
      out.push_back({path, "is " + std::to_string(prefix_bytes + text.size()) +
                               " bytes; one argument or environment variable holds at most " +
                               std::to_string(limits::max_arg_string_bytes - 1) +
                               " (pass large data on stdin)"});
  }

  // An agent chain: ids name agents in events and auth failures; commands
  // are literal but for {{prompt}} and {{model}}.
  void check_agents(const task_spec& t, const std::string& path, const std::string& self) {
    auto ap = child_path(path, "agent");
    if (t.agents.empty()) out.push_back({ap, "an agent chain needs at least one agent"});
    for (std::size_t i = 0; i < t.agents.size(); ++i) {
      const agent_spec& a = t.agents[i];
      auto p = t.agents.size() == 1 ? ap : index_path(ap, i);
      if (!util::valid_agent_id(a.id))
        out.push_back({child_path(p, "id"), "an agent id is 1-" +
                                                std::to_string(util::max_node_id_length) +
                                                " characters of [A-Za-z0-9._-]"});
      if (a.command.empty() || a.command[0].empty())
        out.push_back({child_path(p, "command"), "an agent's command needs a program"});
      for (std::size_t j = 0; j < a.command.size(); ++j) {
        auto cp = index_path(child_path(p, "command"), j);
        check_exec_string(a.command[j], cp);
        if (auto bad = agent_command_template(a.command[j]))
          out.push_back(
              {cp, "an agent's command takes {{prompt}} and {{model}} only, not {{" + *bad + "}}"});
        else if (has_template(a.command[j]) && is_shell_script_arg(a.command, j))
          // A prompt is text from anywhere: never code.
          out.push_back({cp, "a shell script cannot take {{prompt}} or {{model}}: pass the "
                             "prompt on stdin, or as an argument after the script (\"$1\")"});
      }
      if (auto opt = check_shell_options(a.command); opt.index)
        out.push_back({index_path(child_path(p, "command"), opt.index), opt.message});
      check_exec_string(a.model, child_path(p, "model"));
      for (const auto& [name, value] : a.env) {
        if (name.find('\0') != std::string::npos) {
          out.push_back({child_path(p, "env"), "an environment variable name contains a NUL "
                                               "byte, which no environment variable can hold"});
          continue;
        }
        check_exec_string(value, child_path(child_path(p, "env"), name), name.size() + 1);
      }
    }
    if (t.prompt.find('\0') != std::string::npos)
      out.push_back({child_path(path, "prompt"), "contains a NUL byte"});
    else
      check_template_text(t.prompt, child_path(path, "prompt"), self);
  }

  void check_worktree(const task_spec& t, const std::string& path, const std::string& self) {
    if (t.kind != task_kind::command && t.kind != task_kind::agent) {
      out.push_back({path, std::string{"only command and agent tasks run in a worktree (a "} +
                               to_string(t.kind) + " runs no process)"});
      return;
    }
    const worktree_spec& w = *t.worktree;
    if (w.path.empty()) out.push_back({child_path(path, "path"), "must not be empty"});
    for (auto [key, text] :
         {std::pair{"path", &w.path}, std::pair{"branch", &w.branch}, std::pair{"base", &w.base}}) {
      auto p = child_path(path, key);
      if (text->find('\0') != std::string::npos)
        out.push_back({p, "contains a NUL byte"});
      else if (key != std::string_view{"base"})
        check_template_text(*text, p, self);
    }
    if (!w.base.empty() && (w.base[0] == '-' || has_template(w.base)))
      out.push_back({child_path(path, "base"), "must be a git ref (a branch, tag or commit), "
                                               "not an option or a template"});
  }

  void check_task(const task_entry& e) {
    const node& n = *e.n;
    const task_spec& t = *n.task;
    std::string base; // the task's path, once something needs it
    auto path = [&]() -> const std::string& {
      if (base.empty()) base = path_of(e.where);
      return base;
    };
    auto range = [&](const char* key, std::int64_t v, bool allow_zero) {
      if (out_of_range(v, allow_zero))
        out.push_back({child_path(path(), key), range_message(allow_zero)});
    };
    switch (t.kind) {
    case task_kind::command:
      if (t.use_shell) {
        if (t.shell.empty())
          out.push_back({child_path(path(), "run"), "command must not be empty"});
        check_exec_string(t.shell, child_path(path(), "run"));
        check_script(t.shell, child_path(path(), "run"), n.id, "/bin/sh");
      } else {
        if (t.argv.empty())
          out.push_back({child_path(path(), "run"), "argv must have at least one element"});
        // With a template among a shell's options, which argument is its
        // script is not known: that refusal stands alone.
        auto options = check_shell_options(t.argv);
        if (options.index)
          out.push_back({index_path(child_path(path(), "run"), options.index), options.message});
        for (std::size_t i = 0; i < t.argv.size(); ++i) {
          auto p = index_path(child_path(path(), "run"), i);
          check_exec_string(t.argv[i], p);
          if (!options.index && is_shell_script_arg(t.argv, i))
            check_script(t.argv[i], p, n.id, t.argv[0]);
          else
            check_template_text(t.argv[i], p, n.id);
        }
        if (!t.argv.empty() && t.argv[0].empty())
          out.push_back({index_path(child_path(path(), "run"), 0), "program must not be empty"});
      }
      if (t.cwd.find('\0') != std::string::npos)
        out.push_back({child_path(path(), "cwd"), "contains a NUL byte, which no path can hold"});
      break;
    case task_kind::agent:
      check_agents(t, path(), n.id);
      break;
    case task_kind::compute:
      if (!t.compute && t.compute_name.empty())
        out.push_back({child_path(path(), "compute"), "compute task needs a function or a name"});
      break;
    case task_kind::value:
      if (!t.value.is_object())
        out.push_back({child_path(path(), "value"), "value must be a JSON object"});
      break;
    case task_kind::approval:
      break;
    case task_kind::timer:
      if (t.duration_ms) range("duration_ms", *t.duration_ms, false);
      if (!t.duration_ms && !t.until_ms)
        out.push_back({path(), "a timer needs duration_ms or until"});
      break;
    case task_kind::signal:
      if (auto why = util::check_signal_name(t.signal_name))
        out.push_back({child_path(path(), "name"), *why});
      break;
    }
    if (t.approval && t.approval->title.empty() && t.kind == task_kind::approval)
      out.push_back({child_path(path(), "title"), "an approval's title must not be empty"});
    if (t.cache && t.kind != task_kind::command && t.kind != task_kind::compute &&
        t.kind != task_kind::agent)
      out.push_back({child_path(path(), "cache"),
                     std::string{"only command, compute and agent tasks are cached (a "} +
                         to_string(t.kind) + " has nothing to run)"});
    if (t.direct && t.kind != task_kind::compute)
      out.push_back(
          {child_path(path(), "direct"), std::string{"only compute tasks are called directly (a "} +
                                             to_string(t.kind) + " is not a function)"});
    if (t.worktree) check_worktree(t, child_path(path(), "worktree"), n.id);
    if (t.approval && t.kind != task_kind::approval && t.approval->on_deny == deny_action::proceed)
      out.push_back({child_path(path(), "needs_approval"),
                     "on_deny \"continue\" applies to approval nodes; a gate fails or skips"});
    for (const auto& [name, value] : t.env) {
      if (name.find('\0') != std::string::npos) {
        // The name cannot go into the path: it would carry the NUL along.
        out.push_back({child_path(path(), "env"), "an environment variable name contains a NUL "
                                                  "byte, which no environment variable can hold"});
        continue;
      }
      auto p = child_path(child_path(path(), "env"), name);
      if (name.compare(0, shell_template_prefix.size(), shell_template_prefix) == 0)
        out.push_back({p, "environment variable names starting with " +
                              std::string(shell_template_prefix) +
                              " are reserved: they carry template values into shell scripts"});
      check_exec_string(value, p, name.size() + 1);
      check_template_text(value, p, n.id);
    }
    if (t.cache && !t.cache->by.empty())
      check_template_text(t.cache->by, child_path(child_path(path(), "cache"), "by"), n.id);
    if (!t.output.empty() && !wf.output_schemas.count(t.output))
      out.push_back({child_path(path(), "output"),
                     "unknown output key \"" + t.output + "\" (not in the workflow's outputs)"});
    if (!t.output.empty() && !t.output_schema.is_null())
      out.push_back({path(), "set either output or output_schema, not both"});
    if (!t.output_schema.is_null()) {
      auto ps = check_schema(t.output_schema, child_path(path(), "output_schema"));
      out.insert(out.end(), ps.begin(), ps.end());
    }
    // Most tasks need a few others: a set only for long lists (a join of a
    // large fan-out), so a valid tree does not build one per task.
    std::unordered_set<std::string> seen;
    bool use_set = t.needs.size() > 8;
    for (std::size_t i = 0; i < t.needs.size(); ++i) {
      const auto& id = t.needs[i];
      auto where = [&] { return index_path(child_path(path(), "needs"), i); };
      auto before = t.needs.begin() + static_cast<std::ptrdiff_t>(i);
      bool twice =
          use_set ? !seen.insert(id).second : std::find(t.needs.begin(), before, id) != before;
      if (twice)
        out.push_back({where(), "\"" + id + "\" is listed twice"});
      else if (id == n.id)
        out.push_back({where(), "task \"" + id + "\" cannot need itself"});
      else if (!ids.count(id))
        out.push_back({where(), "needs \"" + id + "\", which is no task in this workflow"});
    }
    range("retries", t.retries, true);
    if (t.retry) {
      auto rp = child_path(path(), "retry");
      check_positive(out, child_path(rp, "initial_ms"), t.retry->initial_ms, false);
      check_positive(out, child_path(rp, "max_ms"), t.retry->max_ms, false);
      if (!(t.retry->backoff >= 1.0 && t.retry->backoff <= 1000.0))
        out.push_back({child_path(rp, "backoff"), "must be a number from 1 to 1000"});
      if (!(t.retry->jitter >= 0.0 && t.retry->jitter <= 1.0))
        out.push_back({child_path(rp, "jitter"), "must be a number from 0 to 1"});
    }
    if (t.timeout_ms) range("timeout_ms", *t.timeout_ms, false);
    if (t.heartbeat_timeout_ms) range("heartbeat_timeout_ms", *t.heartbeat_timeout_ms, false);
    if (!t.skip_if.is_null()) {
      auto ps = check_predicate(t.skip_if, child_path(path(), "skip_if"));
      out.insert(out.end(), ps.begin(), ps.end());
      if (ps.empty())
        check_output_refs(predicate_output_refs(t.skip_if), child_path(path(), "skip_if"), n.id);
    }
  }

  void check_tasks() {
    for (const auto& e : tasks)
      if (e.n->task) {
        cur_locals = &e.locals;
        check_task(e);
        check_output_contract(e);
      }
    cur_locals = nullptr;
    check_branches();
  }

  // A branch's, for_each's or loop's id is unique among all nodes; a
  // branch's and a loop's predicate and a for_each's items read tasks.
  void check_branches() {
    std::unordered_map<std::string, std::string> seen; // id -> path
    for (const auto& [n, where] : branches) {
      std::string path = path_of(where);
      const char* kind = to_string(n->kind);
      if (ids.count(n->id))
        out.push_back({child_path(path, kind), std::string{kind} + " id \"" + n->id +
                                                   "\" is also a task id (at " +
                                                   path_of(tasks[ids.at(n->id)].where) + ")"});
      else if (auto [it, fresh] = seen.emplace(n->id, path); !fresh)
        out.push_back({child_path(path, kind), "duplicate " + std::string{kind} + " id \"" +
                                                   n->id + "\" (also at " + it->second + ")"});
      if (n->kind == node_kind::for_each) {
        if (n->items.rfind("outputs.", 0) == 0) {
          std::string rest = n->items.substr(8);
          std::string id = rest.substr(0, rest.find('.'));
          check_output_refs({id}, child_path(path, "items"), "");
        }
        continue;
      }
      if (n->condition.is_null()) continue;
      const char* key = n->kind == node_kind::loop ? "until" : "if";
      auto ps = check_predicate(n->condition, child_path(path, key));
      out.insert(out.end(), ps.begin(), ps.end());
      if (ps.empty())
        check_output_refs(predicate_output_refs(n->condition), child_path(path, key), "");
    }
  }

  // What is certain before any run about a task's output: a value task whose
  // value its own schema refuses would fail every run; a schema that no
  // object can satisfy would fail every attempt (outputs are objects).
  void check_output_contract(const task_entry& e) {
    const task_spec& t = *e.n->task;
    const json* schema = nullptr;
    std::string where;
    if (!t.output_schema.is_null()) {
      schema = &t.output_schema;
      where = "output_schema";
    } else if (auto it = wf.output_schemas.find(t.output); !t.output.empty() &&
                                                           it != wf.output_schemas.end()) {
      schema = &it->second;
      where = "output";
    }
    if (!schema || !check_schema(*schema, "").empty()) return; // reported elsewhere
    if (!t.output_schema.is_null() && !allows_objects(*schema))
      out.push_back(
          {child_path(child_path(path_of(e.where), "output_schema"), "type"), not_object_schema});
    if (t.kind != task_kind::value || !t.value.is_object()) return;
    auto ps = validate(*schema, t.value, "$", 5);
    if (ps.empty()) return;
    for (const auto& p : ps)
      out.push_back({child_path(path_of(e.where), "value"),
                     "the value does not match its " +
                         std::string{where == "output" ? "output schema \"" + t.output + "\""
                                                       : "output_schema"} +
                         " (" + p.path + ": " + p.message + "): every run would fail"});
  }


  // A task that needs a task placed after it in a sequence can never start:
  // the sequence waits for it before starting the other. Found through the
  // lowest common ancestor of the two, via each task's (group, index) trail.
  // The same holds for an output a template or skip_if reads: it could never
  // be there when the task starts. Runs only on a tree without other
  // problems: every id is valid and unique.
  void check_order() {
    for (const auto& e : tasks) {
      const task_spec& t = *e.n->task;
      const trail& mine = e.where;
      auto later = [&](const std::string& id) {
        auto it = ids.find(id);
        if (it == ids.end()) return false;
        const trail& theirs = tasks[it->second].where;
        std::size_t d = 0;
        while (d < mine.size() && d < theirs.size() && mine[d] == theirs[d])
          ++d;
        return d < mine.size() && d < theirs.size() && mine[d].first == theirs[d].first &&
               mine[d].first->kind == node_kind::sequence && mine[d].second < theirs[d].second;
      };
      // A task inside a branch or for_each that does not hold this one
      // exists only once that node is decided: this one must come after it
      // in a sequence, or it could start before the other is even mounted
      // (and read nothing). Returns that node, or nullptr.
      auto undecided_before = [&](const std::string& id) -> const node* {
        auto it = ids.find(id);
        if (it == ids.end()) return nullptr;
        const trail& theirs = tasks[it->second].where;
        for (std::size_t k = 0; k < theirs.size(); ++k) {
          const node* c = theirs[k].first;
          if (c->kind != node_kind::branch && c->kind != node_kind::for_each &&
              c->kind != node_kind::loop)
            continue;
          if (k < mine.size() && mine[k] == theirs[k]) continue; // this task is inside it too
          // c's place: theirs[0..k). Does it come before this task in a sequence?
          std::size_t d = 0;
          while (d < k && d < mine.size() && mine[d] == theirs[d])
            ++d;
          bool before = d < k && d < mine.size() && mine[d].first == theirs[d].first &&
                        mine[d].first->kind == node_kind::sequence &&
                        theirs[d].second < mine[d].second;
          if (!before) return c;
        }
        return nullptr;
      };
      auto inside_message = [&](const std::string& id, const node* c) {
        return "\"" + id + "\" is inside " + to_string(c->kind) + " \"" + c->id +
               "\", which may not be decided when task \"" + e.n->id +
               "\" starts: put the task inside it, or after it in a sequence";
      };
      for (std::size_t k = 0; k < t.needs.size(); ++k) {
        if (later(t.needs[k]))
          out.push_back({index_path(child_path(path_of(mine), "needs"), k),
                         "task \"" + e.n->id + "\" needs \"" + t.needs[k] +
                             "\", which comes after it in a sequence: it could never start"});
        else if (const node* c = undecided_before(t.needs[k]))
          out.push_back({index_path(child_path(path_of(mine), "needs"), k),
                         inside_message(t.needs[k], c)});
      }
      auto check_refs = [&](const std::vector<std::string>& refs, const std::string& where) {
        for (const auto& id : refs) {
          if (later(id))
            out.push_back({where, "task \"" + e.n->id + "\" reads the output of \"" + id +
                                      "\", which comes after it in a sequence: it could never "
                                      "be there when the task starts"});
          else if (const node* c = undecided_before(id))
            out.push_back({where, inside_message(id, c)});
        }
      };
      if (t.kind == task_kind::command) {
        if (t.use_shell) check_refs(template_output_refs(t.shell), child_path(path_of(mine), "run"));
        for (std::size_t i = 0; i < t.argv.size(); ++i)
          check_refs(template_output_refs(t.argv[i]),
                     index_path(child_path(path_of(mine), "run"), i));
      }
      for (const auto& [name, value] : t.env)
        check_refs(template_output_refs(value),
                   child_path(child_path(path_of(mine), "env"), name));
      if (t.kind == task_kind::agent)
        check_refs(template_output_refs(t.prompt), child_path(path_of(mine), "prompt"));
      if (t.worktree) {
        auto wp = child_path(path_of(mine), "worktree");
        check_refs(template_output_refs(t.worktree->path), child_path(wp, "path"));
        check_refs(template_output_refs(t.worktree->branch), child_path(wp, "branch"));
      }
      if (!t.skip_if.is_null())
        check_refs(predicate_output_refs(t.skip_if), child_path(path_of(mine), "skip_if"));
      if (t.cache && !t.cache->by.empty())
        check_refs(template_output_refs(t.cache->by),
                   child_path(child_path(path_of(mine), "cache"), "by"));
    }
  }

  // A cycle through `needs` can never start: report it where it closes.
  void check_cycles() {
    std::vector<char> color(tasks.size(), 0); // 0 new, 1 on stack, 2 done
    for (std::size_t i = 0; i < tasks.size(); ++i)
      if (color[i] == 0 && has_cycle(i, color)) return;
  }

  bool has_cycle(std::size_t start, std::vector<char>& color) {
    // Iterative DFS: deep chains of needs must not overflow the stack.
    std::vector<std::pair<std::size_t, std::size_t>> stack{{start, 0}};
    color[start] = 1;
    while (!stack.empty()) {
      auto& [cur, next] = stack.back();
      const auto& needs = tasks[cur].n->task->needs;
      if (next == needs.size()) {
        color[cur] = 2;
        stack.pop_back();
        continue;
      }
      std::size_t dep = ids.at(needs[next++]);
      if (color[dep] == 1) {
        out.push_back({path_of(tasks[cur].where), "needs form a cycle through \"" +
                                                      tasks[dep].n->id + "\" and \"" +
                                                      tasks[cur].n->id + "\""});
        return true;
      }
      if (color[dep] == 0) {
        color[dep] = 1;
        stack.emplace_back(dep, 0);
      }
    }
    return false;
  }
};

} // namespace

problems validate_tree(const workflow& wf, const node& root) {
  problems out;
  tree_checker tc{wf, out};
  trail where;
  tc.collect(root, where);
  tc.check_tasks();
  if (out.empty()) tc.check_order();
  if (out.empty()) tc.check_cycles();
  return out;
}

problems validate_workflow(const workflow& wf) {
  problems out;
  if (!wf.input_schema.is_null()) {
    auto ps = check_schema(wf.input_schema, "input");
    out.insert(out.end(), ps.begin(), ps.end());
    if (ps.empty() && !allows_objects(wf.input_schema))
      out.push_back({"input.type", "a run's input is a JSON object: the schema's type must be "
                                   "\"object\" (no input could ever pass it)"});
  }
  for (const auto& [key, schema] : wf.output_schemas) {
    auto ps = check_schema(schema, child_path("outputs", key));
    out.insert(out.end(), ps.begin(), ps.end());
    if (ps.empty() && !allows_objects(schema))
      out.push_back({child_path(child_path("outputs", key), "type"), not_object_schema});
  }
  if (wf.max_concurrency) check_positive(out, "max_concurrency", *wf.max_concurrency, false);
  if (!wf.dynamic()) {
    auto ps = validate_tree(wf, wf.root);
    out.insert(out.end(), ps.begin(), ps.end());
  }
  return out;
}

} // namespace smithers::spec
