#include "spec/validate.hpp"

#include "spec/predicate.hpp"
#include "spec/schema.hpp"
#include "spec/template.hpp"
#include "util/ids.hpp"

#include <smithers/limits.hpp>

#include <unordered_map>
#include <unordered_set>

namespace smithers::spec {

std::string child_node_path(const std::string& parent, node_kind parent_kind, std::size_t i) {
  return index_path(child_path(parent, to_string(parent_kind)), i);
}

namespace {

void check_positive(problems& out, const std::string& path, std::int64_t v, bool allow_zero) {
  if (v < (allow_zero ? 0 : 1) || v > limits::max_option_value)
    out.push_back({path, allow_zero ? "must be an integer >= 0" : "must be a positive integer"});
}

struct tree_checker {
  const workflow& wf;
  problems& out;
  std::unordered_map<std::string, std::string> task_paths; // id -> path of its node

  void collect(const node& n, const std::string& path) {
    if (n.is_task()) {
      if (!util::valid_node_id(n.id)) {
        out.push_back({child_path(path, "task"), "task id \"" + n.id + "\" must be 1-" +
                                                     std::to_string(util::max_node_id_length) +
                                                     " characters of [A-Za-z0-9_-]"});
      } else if (auto [it, fresh] = task_paths.emplace(n.id, path); !fresh) {
        out.push_back({child_path(path, "task"),
                       "duplicate task id \"" + n.id + "\" (also at " + it->second + ")"});
      }
      if (!n.task) out.push_back({path, "task node has no task"});
      return;
    }
    if (n.task) out.push_back({path, "only task nodes carry task options"});
    if (n.max_concurrency) {
      if (n.kind != node_kind::parallel)
        out.push_back(
            {child_path(path, "max_concurrency"), "only parallel groups have max_concurrency"});
      else
        check_positive(out, child_path(path, "max_concurrency"), *n.max_concurrency, false);
    }
    for (std::size_t i = 0; i < n.children.size(); ++i)
      collect(n.children[i], child_node_path(path, n.kind, i));
  }

  void check_output_refs(const std::vector<std::string>& refs, const std::string& path,
                         const std::string& self) {
    for (const auto& id : refs) {
      if (!task_paths.count(id))
        out.push_back({path, "refers to the output of \"" + id + "\", which is no task"});
      else if (id == self)
        out.push_back({path, "task \"" + self + "\" refers to its own output"});
    }
  }

  void check_template_text(const std::string& text, const std::string& path,
                           const std::string& self) {
    auto ps = check_template(text, path);
    out.insert(out.end(), ps.begin(), ps.end());
    if (ps.empty()) check_output_refs(template_output_refs(text), path, self);
  }

  void check_tasks(const node& n, const std::string& path) {
    if (!n.is_task()) {
      for (std::size_t i = 0; i < n.children.size(); ++i)
        check_tasks(n.children[i], child_node_path(path, n.kind, i));
      return;
    }
    if (!n.task) return;
    const task_spec& t = *n.task;
    switch (t.kind) {
    case task_kind::command:
      if (t.use_shell) {
        if (t.shell.empty()) out.push_back({child_path(path, "run"), "command must not be empty"});
        check_template_text(t.shell, child_path(path, "run"), n.id);
      } else {
        if (t.argv.empty())
          out.push_back({child_path(path, "run"), "argv must have at least one element"});
        for (std::size_t i = 0; i < t.argv.size(); ++i)
          check_template_text(t.argv[i], index_path(child_path(path, "run"), i), n.id);
        if (!t.argv.empty() && t.argv[0].empty())
          out.push_back({index_path(child_path(path, "run"), 0), "program must not be empty"});
      }
      break;
    case task_kind::compute:
      if (!t.compute && t.compute_name.empty())
        out.push_back({child_path(path, "compute"), "compute task needs a function or a name"});
      break;
    case task_kind::value:
      if (!t.value.is_object())
        out.push_back({child_path(path, "value"), "value must be a JSON object"});
      break;
    }
    for (const auto& [name, value] : t.env)
      check_template_text(value, child_path(child_path(path, "env"), name), n.id);
    if (!t.output.empty() && !wf.output_schemas.count(t.output))
      out.push_back({child_path(path, "output"),
                     "unknown output key \"" + t.output + "\" (not in the workflow's outputs)"});
    if (!t.output.empty() && !t.output_schema.is_null())
      out.push_back({path, "set either output or output_schema, not both"});
    if (!t.output_schema.is_null()) {
      auto ps = check_schema(t.output_schema, child_path(path, "output_schema"));
      out.insert(out.end(), ps.begin(), ps.end());
    }
    std::unordered_set<std::string> seen;
    for (std::size_t i = 0; i < t.needs.size(); ++i) {
      const auto& id = t.needs[i];
      auto p = index_path(child_path(path, "needs"), i);
      if (!seen.insert(id).second)
        out.push_back({p, "\"" + id + "\" is listed twice"});
      else if (id == n.id)
        out.push_back({p, "task \"" + id + "\" cannot need itself"});
      else if (!task_paths.count(id))
        out.push_back({p, "needs \"" + id + "\", which is no task in this workflow"});
    }
    check_positive(out, child_path(path, "retries"), t.retries, true);
    if (t.retry) {
      auto rp = child_path(path, "retry");
      check_positive(out, child_path(rp, "initial_ms"), t.retry->initial_ms, false);
      check_positive(out, child_path(rp, "max_ms"), t.retry->max_ms, false);
      if (!(t.retry->backoff >= 1.0 && t.retry->backoff <= 1000.0))
        out.push_back({child_path(rp, "backoff"), "must be a number from 1 to 1000"});
      if (!(t.retry->jitter >= 0.0 && t.retry->jitter <= 1.0))
        out.push_back({child_path(rp, "jitter"), "must be a number from 0 to 1"});
    }
    if (t.timeout_ms) check_positive(out, child_path(path, "timeout_ms"), *t.timeout_ms, false);
    if (t.heartbeat_timeout_ms)
      check_positive(out, child_path(path, "heartbeat_timeout_ms"), *t.heartbeat_timeout_ms, false);
    if (!t.skip_if.is_null()) {
      auto ps = check_predicate(t.skip_if, child_path(path, "skip_if"));
      out.insert(out.end(), ps.begin(), ps.end());
      if (ps.empty())
        check_output_refs(predicate_output_refs(t.skip_if), child_path(path, "skip_if"), n.id);
    }
  }

  // A task that needs a task placed after it in a sequence can never start:
  // the sequence waits for it before starting the other. Found through the
  // lowest common ancestor of the two, via each task's (group, index) trail.
  void check_order(const node& root) {
    std::unordered_map<std::string, std::vector<std::pair<const node*, std::size_t>>> trails;
    std::vector<std::pair<const node*, std::size_t>> trail;
    collect_trails(root, trail, trails);
    check_order_in(root, trails);
  }

  void collect_trails(
      const node& n, std::vector<std::pair<const node*, std::size_t>>& trail,
      std::unordered_map<std::string, std::vector<std::pair<const node*, std::size_t>>>& out) {
    if (n.is_task()) {
      out.emplace(n.id, trail);
      return;
    }
    for (std::size_t i = 0; i < n.children.size(); ++i) {
      trail.emplace_back(&n, i);
      collect_trails(n.children[i], trail, out);
      trail.pop_back();
    }
  }

  void check_order_in(
      const node& n,
      const std::unordered_map<std::string, std::vector<std::pair<const node*, std::size_t>>>&
          trails) {
    if (!n.is_task()) {
      for (const auto& c : n.children)
        check_order_in(c, trails);
      return;
    }
    if (!n.task) return;
    const auto& mine = trails.at(n.id);
    for (std::size_t k = 0; k < n.task->needs.size(); ++k) {
      auto it = trails.find(n.task->needs[k]);
      if (it == trails.end()) continue;
      const auto& theirs = it->second;
      std::size_t d = 0;
      while (d < mine.size() && d < theirs.size() && mine[d].first == theirs[d].first &&
             mine[d].second == theirs[d].second)
        ++d;
      if (d < mine.size() && d < theirs.size() && mine[d].first == theirs[d].first &&
          mine[d].first->kind == node_kind::sequence && mine[d].second < theirs[d].second)
        out.push_back({index_path(child_path(task_paths.at(n.id), "needs"), k),
                       "task \"" + n.id + "\" needs \"" + n.task->needs[k] +
                           "\", which comes after it in a sequence: it could never start"});
    }
  }

  // A cycle through `needs` can never start: report it where it closes.
  void check_cycles(const node& root) {
    std::unordered_map<std::string, const task_spec*> specs;
    collect_specs(root, specs);
    std::unordered_map<std::string, int> color; // 0 new, 1 on stack, 2 done
    for (const auto& [id, _] : specs)
      if (color[id] == 0 && has_cycle(id, specs, color)) return;
  }

  void collect_specs(const node& n, std::unordered_map<std::string, const task_spec*>& specs) {
    if (n.is_task() && n.task) specs.emplace(n.id, n.task.get());
    for (const auto& c : n.children)
      collect_specs(c, specs);
  }

  bool has_cycle(const std::string& id,
                 const std::unordered_map<std::string, const task_spec*>& specs,
                 std::unordered_map<std::string, int>& color) {
    // Iterative DFS: deep chains of needs must not overflow the stack.
    std::vector<std::pair<std::string, std::size_t>> stack{{id, 0}};
    color[id] = 1;
    while (!stack.empty()) {
      auto& [cur, next] = stack.back();
      auto it = specs.find(cur);
      const auto& needs = it->second->needs;
      if (next == needs.size()) {
        color[cur] = 2;
        stack.pop_back();
        continue;
      }
      const std::string dep = needs[next++];
      if (!specs.count(dep)) continue;
      int& c = color[dep];
      if (c == 1) {
        out.push_back(
            {task_paths[cur], "needs form a cycle through \"" + dep + "\" and \"" + cur + "\""});
        return true;
      }
      if (c == 0) {
        c = 1;
        stack.emplace_back(dep, 0);
      }
    }
    return false;
  }
};

} // namespace

problems validate_tree(const workflow& wf, const node& root) {
  problems out;
  tree_checker tc{wf, out, {}};
  tc.collect(root, "root");
  tc.check_tasks(root, "root");
  if (out.empty()) tc.check_order(root);
  if (out.empty()) tc.check_cycles(root);
  return out;
}

problems validate_workflow(const workflow& wf) {
  problems out;
  if (!wf.input_schema.is_null()) {
    auto ps = check_schema(wf.input_schema, "input");
    out.insert(out.end(), ps.begin(), ps.end());
  }
  for (const auto& [key, schema] : wf.output_schemas) {
    auto ps = check_schema(schema, child_path("outputs", key));
    out.insert(out.end(), ps.begin(), ps.end());
  }
  if (wf.max_concurrency) check_positive(out, "max_concurrency", *wf.max_concurrency, false);
  if (!wf.dynamic()) {
    auto ps = validate_tree(wf, wf.root);
    out.insert(out.end(), ps.begin(), ps.end());
  }
  return out;
}

} // namespace smithers::spec
