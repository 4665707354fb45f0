// smithers validate / graph: check a workflow file and show its plan without
// running anything or touching a database.
#include "cli.hpp"

#include "format/parse.hpp"
#include "workflow/render.hpp"

#include <smithers/engine.hpp>
#include <smithers/limits.hpp>
#include <smithers/workflow.hpp>

#include <iostream>
#include <set>

namespace smithers::cli {

spec::parse_result load_workflow_or_throw(const std::string& path) {
  if (path.size() > limits::max_workflow_path_bytes)
    throw smithers_error(errc::invalid_argument,
                         "workflow path is " + std::to_string(path.size()) +
                             " bytes; the limit is " +
                             std::to_string(limits::max_workflow_path_bytes));
  auto parsed = spec::load_workflow_file(path);
  if (!parsed.wf) {
    json list = json::array();
    for (const auto& p : parsed.errors)
      list.push_back({{"path", p.path}, {"message", p.message}});
    throw smithers_error(errc::invalid_workflow, path + ": " + spec::join(parsed.errors),
                         {{"problems", list}});
  }
  return parsed;
}

namespace {

workflow load_or_throw(const std::string& path) {
  return std::move(*load_workflow_or_throw(path).wf);
}

std::size_t count_tasks(const node& n) {
  if (n.is_task()) return 1;
  std::size_t c = 0;
  for (const auto& k : n.children)
    c += count_tasks(k);
  return c;
}

std::string task_summary(const node& n) {
  const task_spec& t = *n.task;
  std::string s = "task " + n.id + " (" + to_string(t.kind);
  if (t.kind == task_kind::compute) s += " " + shown(t.compute_name);
  if (t.kind == task_kind::timer)
    s += t.duration_ms ? " " + std::to_string(*t.duration_ms) + " ms"
                       : " until " + shown(t.until_text);
  if (t.kind == task_kind::signal) {
    s += " \"" + shown(t.signal_name) + "\"";
    if (t.timeout_ms) s += ", timeout " + std::to_string(*t.timeout_ms) + " ms";
  }
  if (t.kind == task_kind::approval)
    s += " \"" + shown(t.approval->title) + "\", on deny " + to_string(t.approval->on_deny);
  s += ")";
  if (t.approval && t.kind != task_kind::approval)
    s += " needs approval (on deny " + std::string{to_string(t.approval->on_deny)} + ")";
  if (!t.needs.empty()) {
    s += " needs:";
    for (const auto& d : t.needs)
      s += " " + d;
  }
  if (t.retries) s += " retries:" + std::to_string(t.retries);
  if (!t.label.empty()) s += " \"" + shown(t.label) + "\"";
  return s;
}

// "review until {...} (max 5, then return-last)"
std::string loop_summary(const node& n) {
  std::string s = n.id;
  s += n.condition.is_null() ? " (no until)" : " until " + n.condition.dump();
  s += " (max " + std::to_string(n.max_iterations) + ", then " +
       (n.fail_on_max ? "fail" : "return-last");
  if (n.continue_as_new_every)
    s += ", continue as new every " + std::to_string(*n.continue_as_new_every);
  s += ")";
  return s;
}

void print_tree(const node& n, const std::string& prefix, bool last, bool root, std::ostream& out) {
  std::string line = n.is_task() ? task_summary(n) : to_string(n.kind);
  if (n.kind == node_kind::branch) line += " " + n.id + " if " + n.condition.dump();
  if (n.kind == node_kind::for_each) line += " " + n.id + " over " + n.items + " as " + n.item_name;
  if (n.kind == node_kind::loop) line += " " + loop_summary(n);
  if (n.max_concurrency) line += " (max_concurrency " + std::to_string(*n.max_concurrency) + ")";
  out << (root ? "" : prefix + (last ? "└─ " : "├─ ")) << line << "\n";
  std::string next = root ? "" : prefix + (last ? "   " : "│  ");
  for (std::size_t i = 0; i < n.children.size(); ++i) {
    bool is_last = i + 1 == n.children.size();
    if (n.kind == node_kind::branch) {
      // then / else, each with its subtree below it
      out << next << (is_last ? "└─ " : "├─ ") << (i == 0 ? "then" : "else") << "\n";
      print_tree(n.children[i], next + (is_last ? "   " : "│  "), true, false, out);
      continue;
    }
    print_tree(n.children[i], next, is_last, false, out);
  }
}

std::string dot_id(const std::string& id) {
  std::string s = "\"";
  for (char c : id) {
    if (c == '"' || c == '\\') s += '\\';
    s += c;
  }
  return s + "\"";
}

/// Task ids a subtree starts with and ends with, for ordering edges.
struct ends {
  std::vector<std::string> first;
  std::vector<std::string> last;
};

ends dot_node(const node& n, std::ostream& out, int& cluster, const std::string& indent);

/// A cluster whose children all start where it starts and end where it ends
/// (a parallel group, a for_each body, a branch's sides); `sub` labels put
/// each child in a dashed cluster of its own.
ends dot_cluster(const std::vector<node>& kids, const std::string& label, const char* style,
                 const std::vector<const char*>& sub, std::ostream& out, int& cluster,
                 const std::string& indent) {
  ends e;
  out << indent << "subgraph cluster_" << cluster++ << " {\n"
      << indent << "  label=" << dot_id(label) << "; style=" << style << ";\n";
  for (std::size_t i = 0; i < kids.size(); ++i) {
    std::string inner = indent + "  ";
    if (i < sub.size()) {
      out << inner << "subgraph cluster_" << cluster++ << " {\n"
          << inner << "  label=" << dot_id(sub[i]) << "; style=dashed;\n";
      inner += "  ";
    }
    auto ce = dot_node(kids[i], out, cluster, inner);
    if (i < sub.size()) out << indent << "  }\n";
    e.first.insert(e.first.end(), ce.first.begin(), ce.first.end());
    e.last.insert(e.last.end(), ce.last.begin(), ce.last.end());
  }
  out << indent << "}\n";
  return e;
}

ends dot_node(const node& n, std::ostream& out, int& cluster, const std::string& indent) {
  if (n.is_task()) {
    // "\n" is DOT's own line break inside a label, so it goes in unescaped.
    auto label = dot_id(n.id);
    label.insert(label.size() - 1, std::string{"\\n"} + to_string(n.task->kind));
    out << indent << dot_id(n.id) << " [label=" << label << "];\n";
    return {{n.id}, {n.id}};
  }
  ends e;
  if (n.kind == node_kind::branch)
    // then and else each in a cluster of their own: whichever runs starts
    // where the branch starts.
    return dot_cluster(n.children, "branch " + n.id + " if " + n.condition.dump(), "dotted",
                       {"then", "else"}, out, cluster, indent);
  if (n.kind == node_kind::for_each) // the body once, in a cluster that says it runs per item
    return dot_cluster(n.children, "for_each " + n.id + " over " + n.items + " as " + n.item_name,
                       "dotted", {}, out, cluster, indent);
  if (n.kind == node_kind::loop) {
    // The body once, in a cluster that says it repeats, and an edge back
    // from where it ends to where it starts.
    auto le = dot_cluster(n.children, "loop " + loop_summary(n), "dotted", {}, out, cluster, indent);
    for (const auto& a : le.last)
      for (const auto& b : le.first)
        out << indent << dot_id(a) << " -> " << dot_id(b)
            << " [style=dotted, constraint=false, label=\"next iteration\"];\n";
    return le;
  }
  if (n.kind == node_kind::parallel)
    return dot_cluster(n.children,
                       n.max_concurrency
                           ? "parallel (max " + std::to_string(*n.max_concurrency) + ")"
                           : std::string{"parallel"},
                       "dashed", {}, out, cluster, indent);
  // sequence: each child's ends lead to the next child's starts
  std::vector<std::string> prev;
  bool first_child = true;
  for (const auto& c : n.children) {
    auto ce = dot_node(c, out, cluster, indent);
    if (ce.first.empty() && ce.last.empty()) continue;
    for (const auto& a : prev)
      for (const auto& b : ce.first)
        out << indent << dot_id(a) << " -> " << dot_id(b) << ";\n";
    if (first_child) e.first = ce.first;
    first_child = false;
    prev = ce.last;
  }
  e.last = prev;
  return e;
}

void needs_edges(const node& n, std::ostream& out) {
  if (n.is_task()) {
    for (const auto& d : n.task->needs)
      out << "  " << dot_id(d) << " -> " << dot_id(n.id) << " [style=dashed, label=\"needs\"];\n";
    return;
  }
  for (const auto& c : n.children)
    needs_edges(c, out);
}

} // namespace

void add_workflow_commands(CLI::App& app, const globals& g, int& result) {
  struct validate_args {
    std::string path;
    std::string input;
  };
  auto va = std::make_shared<validate_args>();
  auto* validate = app.add_subcommand("validate", "check a workflow file (and an input)");
  validate->add_option("workflow", va->path, "workflow file (JSON)")->required();
  auto* vin = validate->add_option("--input", va->input,
                                   "also check this input: JSON, @file, or - for stdin");
  validate->callback([&g, &result, va, vin] {
    auto wf = load_or_throw(va->path);
    // What `run` would refuse, `validate` refuses too: compute names are
    // checked against the functions this CLI provides. Without --input the
    // input schema itself was checked (load_or_throw), not an empty input
    // against it.
    run_options opts;
    bool with_input = vin->count() > 0;
    if (with_input) opts.input = read_input(va->input);
    validate_run(wf, opts, is_builtin_compute, with_input);
    auto tasks = count_tasks(wf.root);
    if (g.json())
      std::cout << dump(json{{"valid", true},
                             {"name", wf.name},
                             {"tasks", tasks},
                             {"input_checked", with_input}})
                << std::endl;
    else
      std::cout << shown(va->path) << ": ok (workflow \"" << shown(wf.name) << "\", " << tasks
                << " task" << (tasks == 1 ? "" : "s") << (with_input ? ", input ok" : "") << ")\n";
    result = exit_finished;
  });

  struct graph_args {
    std::string path;
    std::string format;
  };
  auto ga = std::make_shared<graph_args>();
  auto* graph = app.add_subcommand("graph", "print a workflow's plan (--format dot: Graphviz)");
  graph->add_option("workflow", ga->path, "workflow file (JSON)")->required();
  // `--format dot` is accepted here as well as before the subcommand.
  graph->add_option("--format", ga->format, "text, json or dot")
      ->check(CLI::IsMember({"text", "json", "dot"}));
  graph->callback([&g, &result, ga] {
    auto wf = load_or_throw(ga->path);
    std::string format = ga->format.empty() ? g.format : ga->format;
    if (format == "dot") {
      std::cout << "digraph " << dot_id(wf.name) << " {\n  rankdir=LR;\n  node [shape=box];\n";
      int cluster = 0;
      dot_node(wf.root, std::cout, cluster, "  ");
      needs_edges(wf.root, std::cout);
      std::cout << "}\n";
    } else if (format == "json") {
      std::cout << dump(json{{"name", wf.name},
                             {"tasks", count_tasks(wf.root)},
                             {"tree", canonical_tree(wf.root)}},
                        2)
                << std::endl;
    } else {
      std::cout << "workflow " << shown(wf.name) << "\n";
      print_tree(wf.root, "", true, true, std::cout);
    }
    result = exit_finished;
  });
}

} // namespace smithers::cli
