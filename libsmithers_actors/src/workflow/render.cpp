#include "workflow/render.hpp"

#include "expr/predicate.hpp"
#include "expr/template.hpp"
#include "util/ids.hpp"
#include "util/hash.hpp"
#include "util/json_text.hpp"

#include <optional>
#include <unordered_set>

namespace smithers {

namespace {

// The canonical form is the text nlohmann's dump() gives for the tree as a
// JSON object (compact, keys sorted), written directly: building that
// object for a 100,000-task tree, dumping and freeing it cost ~7,000
// instructions a task at the start of every run. Keys are written in
// sorted order by hand; json values (a value, a schema, a predicate) go
// through util::append_json, which writes dump()'s bytes.
class canonical_writer {
public:
  explicit canonical_writer(std::string& out) : out_(out) {}

  void tree(const node& n) {
    if (n.is_task() && n.task) {
      task(n);
      return;
    }
    if (n.kind == node_kind::branch) {
      branch(n);
      return;
    }
    if (n.kind == node_kind::for_each) {
      for_each(n);
      return;
    }
    if (n.kind == node_kind::loop) {
      loop(n);
      return;
    }
    out_ += '{';
    if (n.max_concurrency) {
      out_ += R"("max_concurrency":)";
      util::append_json_int(out_, *n.max_concurrency);
      out_ += ',';
    }
    out_ += '"';
    out_ += to_string(n.kind);
    out_ += R"(":[)";
    for (std::size_t i = 0; i < n.children.size(); ++i) {
      if (i) out_ += ',';
      tree(n.children[i]);
    }
    out_ += "]}";
  }

private:
  // {"branch":id,"else":...,"if":...,"then":...}: keys sorted.
  void branch(const node& n) {
    out_ += R"({"branch":)";
    str(n.id);
    if (n.children.size() > 1) {
      out_ += R"(,"else":)";
      tree(n.children[1]);
    }
    out_ += R"(,"if":)";
    util::append_json(out_, n.condition);
    out_ += R"(,"then":)";
    if (n.children.empty())
      out_ += "null";
    else
      tree(n.children[0]);
    out_ += '}';
  }

  // {"as":..,"body":..,"for_each":id,"items":..[,"max_concurrency":N]}
  void for_each(const node& n) {
    out_ += R"({"as":)";
    str(n.item_name);
    out_ += R"(,"body":)";
    if (n.children.empty())
      out_ += "null";
    else
      tree(n.children[0]);
    out_ += R"(,"for_each":)";
    str(n.id);
    out_ += R"(,"items":)";
    str(n.items);
    if (n.max_concurrency) {
      out_ += R"(,"max_concurrency":)";
      num(*n.max_concurrency);
    }
    out_ += '}';
  }

  // {"body":..,["continue_as_new_every":K,]"done":b,"iteration":i,"loop":id,
  //  "max_iterations":M,"on_max_reached":"..","until":..}: a rendered loop
  // names its instance, iteration and whether it has ended.
  void loop(const node& n) {
    out_ += R"({"body":)";
    if (n.children.empty())
      out_ += "null";
    else
      tree(n.children[0]);
    if (n.continue_as_new_every) {
      out_ += R"(,"continue_as_new_every":)";
      num(*n.continue_as_new_every);
    }
    out_ += n.done ? R"(,"done":true)" : R"(,"done":false)";
    out_ += R"(,"iteration":)";
    num(n.iteration);
    out_ += R"(,"loop":)";
    str(n.id);
    out_ += R"(,"max_iterations":)";
    num(n.max_iterations);
    out_ += n.fail_on_max ? R"(,"on_max_reached":"fail")" : R"(,"on_max_reached":"return-last")";
    out_ += R"(,"until":)";
    util::append_json(out_, n.condition);
    out_ += '}';
  }

  void task(const node& n) {
    const task_spec& t = *n.task;
    out_ += '{';
    first_ = true;
    if (t.kind == task_kind::agent) {
      key("agent");
      out_ += '[';
      for (std::size_t i = 0; i < t.agents.size(); ++i) {
        const agent_spec& a = t.agents[i];
        if (i) out_ += ',';
        out_ += R"({"command":)";
        strs(a.command);
        out_ += R"(,"env":)";
        strmap(a.env);
        out_ += R"(,"id":)";
        str(a.id);
        out_ += R"(,"model":)";
        str(a.model);
        out_ += '}';
      }
      out_ += ']';
    }
    if (t.approval) {
      key("approval");
      out_ += R"({"on_deny":)";
      str(to_string(t.approval->on_deny));
      out_ += R"(,"summary":)";
      str(t.approval->summary);
      out_ += R"(,"title":)";
      str(t.approval->title);
      out_ += '}';
    }
    if (t.cache) {
      key("cache");
      out_ += R"({"by":)";
      str(t.cache->by);
      out_ += R"(,"version":)";
      str(t.cache->version);
      out_ += '}';
    }
    if (t.kind == task_kind::compute) {
      key("compute");
      str(t.compute ? std::string{"<inline>"} : t.compute_name);
    }
    if (t.continue_on_fail) {
      key("continue_on_fail");
      out_ += "true";
    }
    if (!t.cwd.empty()) {
      key("cwd");
      str(t.cwd);
    }
    if (t.direct) {
      key("direct");
      out_ += "true";
    }
    if (t.duration_ms) {
      key("duration_ms");
      num(*t.duration_ms);
    }
    if (!t.env.empty()) {
      key("env");
      strmap(t.env);
    }
    if (t.heartbeat_timeout_ms) {
      key("heartbeat_timeout_ms");
      num(*t.heartbeat_timeout_ms);
    }
    if (!t.label.empty()) {
      key("label");
      str(t.label);
    }
    if (!t.locals.is_null()) {
      key("locals");
      util::append_json(out_, t.locals);
    }
    if (!t.needs.empty()) {
      key("needs");
      strs(t.needs);
    }
    if (!t.output.empty()) {
      key("output");
      str(t.output);
    }
    if (!t.output_schema.is_null()) {
      key("output_schema");
      util::append_json(out_, t.output_schema);
    }
    if (t.kind == task_kind::agent) {
      key("prompt");
      str(t.prompt);
    }
    if (t.retries) {
      key("retries");
      num(t.retries);
    }
    if (t.retry) {
      key("retry");
      out_ += R"({"backoff":)";
      util::append_json(out_, json(t.retry->backoff));
      out_ += R"(,"initial_ms":)";
      num(t.retry->initial_ms);
      out_ += R"(,"jitter":)";
      util::append_json(out_, json(t.retry->jitter));
      out_ += R"(,"max_ms":)";
      num(t.retry->max_ms);
      out_ += '}';
    }
    if (t.kind == task_kind::command) {
      key("run");
      if (t.use_shell)
        str(t.shell);
      else
        strs(t.argv);
    }
    if (t.kind == task_kind::signal) {
      key("signal");
      str(t.signal_name);
    }
    if (!t.skip_if.is_null()) {
      key("skip_if");
      util::append_json(out_, t.skip_if);
    }
    key("task");
    str(n.id);
    if (t.timeout_ms) {
      key("timeout_ms");
      num(*t.timeout_ms);
    }
    key("type");
    out_ += '"';
    out_ += to_string(t.kind);
    out_ += '"';
    if (t.until_ms) {
      key("until");
      num(*t.until_ms);
    }
    if (t.kind == task_kind::value) {
      key("value");
      util::append_json(out_, t.value);
    }
    if (t.worktree) {
      key("worktree");
      out_ += R"({"base":)";
      str(t.worktree->base);
      out_ += R"(,"branch":)";
      str(t.worktree->branch);
      out_ += R"(,"path":)";
      str(t.worktree->path);
      out_ += '}';
    }
    out_ += '}';
  }

  void key(const char* k) {
    if (!first_) out_ += ',';
    first_ = false;
    out_ += '"';
    out_ += k;
    out_ += R"(":)";
  }
  void str(const std::string& s) { util::append_json_string(out_, s); }
  void num(std::int64_t v) { util::append_json_int(out_, v); }
  void strmap(const std::map<std::string, std::string>& m) { // sorted
    out_ += '{';
    bool first = true;
    for (const auto& [name, value] : m) {
      if (!first) out_ += ',';
      first = false;
      str(name);
      out_ += ':';
      str(value);
    }
    out_ += '}';
  }
  void strs(const std::vector<std::string>& v) {
    out_ += '[';
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i) out_ += ',';
      str(v[i]);
    }
    out_ += ']';
  }

  std::string& out_;
  bool first_ = true;
};

} // namespace

std::string canonical_text(const node& root) {
  std::string out;
  canonical_writer{out}.tree(root);
  return out;
}

json canonical_tree(const node& root) {
  return json::parse(canonical_text(root));
}

namespace {

// Whether a tree has control flow, and which nodes it reads.
bool scan_control(const node& n, std::unordered_set<std::string>& reads, bool& reads_any) {
  bool found = false;
  // Iterative: deep trees must not overflow the stack.
  std::vector<const node*> stack{&n};
  while (!stack.empty()) {
    const node* cur = stack.back();
    stack.pop_back();
    if (cur->kind == node_kind::branch) {
      found = true;
      for (auto& id : spec::predicate_output_refs(cur->condition)) {
        if (spec::has_template(id)) reads_any = true;
        reads.insert(std::move(id));
      }
    } else if (cur->kind == node_kind::loop) {
      found = true; // its `until` is the run core's to evaluate, not render's
    } else if (cur->kind == node_kind::for_each) {
      found = true;
      std::string_view path = cur->items;
      if (path.rfind("outputs.", 0) == 0) {
        auto rest = path.substr(8);
        reads.emplace(rest.substr(0, rest.find('.')));
      }
    }
    for (const auto& c : cur->children)
      stack.push_back(&c);
  }
  return found;
}

// Where a render is inside loops: the enclosing loops, outermost first.
struct scope_entry {
  const node* loop;     // in the source
  std::int64_t iteration;
};

// "@a@b" for iterations {a, b}: how ids carry the iterations of enclosing
// loops (docs/workflow-format.md, "Iterations").
void append_iterations(std::string& id, const std::vector<std::int64_t>& its, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    id += '@';
    id += std::to_string(its[i]);
  }
}

// Decides control flow: a branch becomes a sequence of the child it chose
// (empty when it chose nothing); a for_each a parallel group of one body per
// item; a loop stays a loop node (the scheduler's) holding its body at the
// current iteration, whose tasks are keyed by it. An undecided branch or
// for_each stays without children: the scheduler never counts it done, so
// what comes after it waits.
class expander {
public:
  expander(const node& source, const render_context& ctx, std::vector<std::string>& undecided)
      : ctx_(ctx), undecided_(undecided) {
    index_loops(source);
  }

  node expand(const node& n) {
    if (n.kind == node_kind::branch) return decide(n);
    if (n.kind == node_kind::for_each) return fan_out(n);
    if (n.kind == node_kind::loop) return iterate(n);
    if (n.is_task()) {
      if (!locals_ && scope_.empty() && !reads_nested_loops(n)) return n;
      return placed(n);
    }
    node out;
    out.kind = n.kind;
    out.id = n.id;
    out.iteration = n.iteration;
    out.max_concurrency = n.max_concurrency;
    out.children.reserve(n.children.size());
    for (const auto& c : n.children)
      out.children.push_back(expand(c));
    return out;
  }

private:
  // Which loops hold each task (by its id as written): what a read of it
  // from elsewhere resolves against. Tasks outside loops are not listed.
  void index_loops(const node& root) {
    std::vector<const node*> loops;
    struct item {
      const node* n;
      std::size_t depth; // loops above it
    };
    std::vector<item> stack{{&root, 0}};
    while (!stack.empty()) {
      item it = stack.back();
      stack.pop_back();
      loops.resize(it.depth);
      if (it.n->is_task()) {
        if (!loops.empty()) loop_paths_[it.n->id] = loops;
        continue;
      }
      std::size_t depth = it.depth;
      if (it.n->kind == node_kind::loop) {
        loops.push_back(it.n);
        ++depth;
      }
      for (const auto& c : it.n->children)
        stack.push_back({&c, depth});
    }
  }

  // Calls f(id) for each node a task's templates read; stops when f says so.
  template <class F> static bool for_each_output_ref(const task_spec& t, F&& f) {
    auto refs = [&](const std::string& text) {
      if (!spec::has_template(text)) return false;
      for (const auto& ref : spec::template_output_refs(text))
        if (f(ref)) return true;
      return false;
    };
    if (t.use_shell && refs(t.shell)) return true;
    for (const auto& a : t.argv)
      if (refs(a)) return true;
    for (const auto& [name, value] : t.env)
      if (refs(value)) return true;
    if (t.kind == task_kind::agent && refs(t.prompt)) return true;
    if (t.worktree && (refs(t.worktree->path) || refs(t.worktree->branch))) return true;
    return false;
  }

  // Whether a task outside loops needs or reads a node inside nested loops,
  // whose id holds the outer iterations (placed()).
  bool reads_nested_loops(const node& n) const {
    if (loop_paths_.empty() || !n.task) return false;
    auto nested = [&](const std::string& ref) {
      auto it = loop_paths_.find(ref);
      return it != loop_paths_.end() && it->second.size() > 1;
    };
    for (const auto& need : n.task->needs)
      if (nested(need)) return true;
    return for_each_output_ref(*n.task, nested);
  }

  std::string expanded_id(const std::string& text) const {
    if (!locals_ || !spec::has_template(text)) return text;
    spec::template_scope scope;
    scope.input = ctx_.input;
    scope.run_id = ctx_.run_id;
    scope.locals = locals_;
    std::string id = spec::expand(text, scope);
    if (!util::valid_node_id(id))
      throw smithers_error(errc::invalid_input,
                           "id \"" + text + "\" gives \"" + id + "\" for item " +
                               locals_->dump() + ", which is not 1-" +
                               std::to_string(util::max_node_id_length) +
                               " characters of [A-Za-z0-9_-]",
                           {{"id", text}});
    return id;
  }

  // A loop's instance: its id with the iterations of the loops around it.
  std::string instance_id(const std::string& id, const std::vector<std::int64_t>& its) const {
    std::string out = id;
    append_iterations(out, its, its.size());
    return out;
  }

  // The key a read of task `text` (as written; `id` expanded) names from
  // here: in loops this node is inside too, their current iteration; in
  // others, their last one — nullopt while such a loop goes on, when
  // `settled` (what the task gives is not final yet).
  std::optional<node_key> resolve(const std::string& text, const std::string& id,
                                  bool settled) const {
    auto it = loop_paths_.find(text);
    if (it == loop_paths_.end()) return node_key{id, 0};
    std::vector<std::int64_t> its;
    bool shared = true;
    for (std::size_t j = 0; j < it->second.size(); ++j) {
      const node* l = it->second[j];
      shared = shared && j < scope_.size() && scope_[j].loop == l;
      if (shared) {
        its.push_back(scope_[j].iteration);
        continue;
      }
      loop_state st = ctx_.loop(instance_id(expanded_id(l->id), its));
      if (settled && !st.done) return std::nullopt;
      its.push_back(st.iteration);
    }
    node_key k{id, its.back()};
    append_iterations(k.id, its, its.size() - 1);
    return k;
  }

  bool has_ended(const std::string& text) const {
    auto k = resolve(text, expanded_id(text), true);
    return k && ctx_.ended && ctx_.ended->count(*k);
  }

  // A predicate inside a for_each body may read the body's tasks by their
  // templated ids ("try-{{x}}.ok"): it reads this item's.
  // Deeper than a predicate may nest is left as it is: validation refuses it.
  json localized(const json& p, std::size_t depth = 1) const {
    if (!locals_ || !p.is_object() || depth > spec::max_predicate_depth) return p;
    json out = p;
    if (auto it = out.find("output"); it != out.end() && it->is_string()) {
      const auto& path = it->get_ref<const std::string&>();
      auto dot = spec::output_id_end(path);
      std::string id = path.substr(0, dot);
      if (spec::has_template(id))
        *it = expanded_id(id) + (dot == std::string::npos ? "" : path.substr(dot));
    }
    for (const char* k : {"all", "any"})
      if (auto it = out.find(k); it != out.end() && it->is_array())
        for (auto& c : *it)
          c = localized(c, depth + 1);
    if (auto it = out.find("not"); it != out.end()) *it = localized(*it, depth + 1);
    return out;
  }

  // Undecided: stays in the tree without children, so the scheduler waits.
  node waiting(const node& n) {
    undecided_.push_back(n.id);
    node w;
    w.kind = n.kind;
    w.id = n.id;
    w.condition = n.condition;
    w.items = n.items;
    w.item_name = n.item_name;
    return w;
  }

  // The body at the loop's current iteration (its state from the context:
  // iteration 0 until the run core starts it).
  node iterate(const node& n) {
    std::vector<std::int64_t> its;
    for (const auto& e : scope_)
      its.push_back(e.iteration);
    std::string inst = instance_id(expanded_id(n.id), its);
    loop_state st = ctx_.loop(inst);
    node out;
    out.kind = node_kind::loop;
    out.id = inst;
    out.iteration = st.iteration;
    out.done = st.done;
    out.condition = localized(n.condition);
    out.max_iterations = n.max_iterations;
    out.fail_on_max = n.fail_on_max;
    out.continue_as_new_every = n.continue_as_new_every;
    scope_.push_back({&n, st.iteration});
    if (!n.children.empty()) out.children.push_back(expand(n.children[0]));
    scope_.pop_back();
    return out;
  }

  // The body once per element of the items array, in a parallel group.
  node fan_out(const node& n) {
    static const json no_input = json::object();
    std::string_view path = n.items;
    const json* items = nullptr;
    bool known_root = true; // an input or output path (validation allows no other)
    if (path.rfind("input.", 0) == 0) {
      items = spec::find_path(ctx_.input ? *ctx_.input : no_input, path.substr(6));
    } else if (path.rfind("outputs.", 0) == 0) {
      auto rest = path.substr(8);
      auto dot = rest.find('.');
      std::string id{rest.substr(0, dot)};
      if (!has_ended(id)) return waiting(n);
      if (ctx_.outputs) {
        auto it = ctx_.outputs->find(id);
        if (it != ctx_.outputs->end())
          items = dot == std::string_view::npos ? &it->second
                                                : spec::find_path(it->second, rest.substr(dot + 1));
      }
    } else {
      known_root = false;
    }
    if (!items)
      throw smithers_error(errc::invalid_input,
                           "for_each \"" + n.id + "\": items \"" + n.items + "\" " +
                               (known_root ? "does not exist" : "is not an input or output path"),
                           {{"for_each", n.id}, {"path", n.items}});
    if (!items->is_array())
      throw smithers_error(errc::invalid_input,
                           "for_each \"" + n.id + "\": items \"" + n.items +
                               "\" is not an array (" + std::string(items->type_name()) + ")",
                           {{"for_each", n.id}, {"path", n.items}});
    node out = parallel({}, n.max_concurrency);
    out.id = n.id;
    out.children.reserve(items->size());
    const json* outer = locals_;
    for (std::size_t i = 0; i < items->size(); ++i) {
      json locals = outer ? *outer : json::object();
      locals[n.item_name] = (*items)[i];
      locals[n.item_name + "_index"] = i;
      locals_ = &locals;
      if (!n.children.empty()) out.children.push_back(expand(n.children[0]));
    }
    locals_ = outer;
    return out;
  }

  // A task inside a for_each body or a loop: its id (and the ids it needs)
  // with the element's values and the loops' iterations; its templates are
  // left for the attempt (with the locals).
  node placed(const node& n) {
    node out = n;
    std::shared_ptr<task_spec> spec; // copied only when something changes
    auto own_spec = [&]() -> task_spec& {
      if (!spec) spec = std::make_shared<task_spec>(*n.task);
      return *spec;
    };
    if (locals_) {
      out.id = expanded_id(n.id);
      own_spec().locals = *locals_;
      if (!n.task->skip_if.is_null()) own_spec().skip_if = localized(n.task->skip_if);
    }
    if (!scope_.empty()) {
      auto k = *resolve(n.id, out.id, false);
      out.id = std::move(k.id);
      out.iteration = k.iteration;
    }
    // {{outputs.X@N}}: which X, in the loops X and this task share (and,
    // for loops this task comes after, their last iteration).
    for_each_output_ref(*n.task, [&](const std::string& ref) {
      if (!loop_paths_.count(ref)) return false;
      auto k = resolve(ref, ref, false);
      if (k && k->id != ref) own_spec().output_ids[ref] = k->id;
      return false;
    });
    for (std::size_t i = 0; i < n.task->needs.size(); ++i) {
      const std::string& text = n.task->needs[i];
      std::string id = expanded_id(text);
      if (auto k = resolve(text, id, false)) id = std::move(k->id);
      if (id != text) own_spec().needs[i] = std::move(id);
    }
    if (spec) out.task = std::move(spec);
    return out;
  }

  node decide(const node& n) {
    // Undecided while a node it reads has not ended (docs/workflow-format.md).
    for (const auto& id : spec::predicate_output_refs(n.condition))
      if (!has_ended(id)) return waiting(n);
    node out = sequence({});
    static const json no_input = json::object();
    static const std::unordered_map<std::string, json> no_outputs;
    bool holds = spec::evaluate(localized(n.condition), ctx_.input ? *ctx_.input : no_input,
                                ctx_.outputs ? *ctx_.outputs : no_outputs);
    std::size_t chosen = holds ? 0 : 1;
    if (chosen < n.children.size()) out.children.push_back(expand(n.children[chosen]));
    return out;
  }

  const render_context& ctx_;
  std::vector<std::string>& undecided_;
  const json* locals_ = nullptr; // inside a for_each body: the element's variables
  std::vector<scope_entry> scope_;
  std::unordered_map<std::string, std::vector<const node*>> loop_paths_;
};

// Ids a fan-out gave more than once (two elements alike where the id
// template reads only part of them) would be two nodes with one key.
void check_unique_ids(const node& root) {
  std::unordered_set<std::string> seen;
  std::vector<const node*> stack{&root};
  while (!stack.empty()) {
    const node* cur = stack.back();
    stack.pop_back();
    if ((cur->is_task() || cur->kind == node_kind::loop) && !seen.insert(cur->id).second)
      throw smithers_error(errc::invalid_input,
                           std::string{"two "} + (cur->is_task() ? "nodes" : "loops") +
                               " get the id \"" + cur->id +
                               "\": a for_each's ids must differ for every item",
                           {{"id", cur->id}});
    for (const auto& c : cur->children)
      stack.push_back(&c);
  }
}

} // namespace

rendered_tree render(const std::shared_ptr<const workflow>& wf, const render_context& ctx) {
  rendered_tree r;
  // A static root lives as long as the workflow: aliased, not copied (a
  // 100,000-task tree is a pass of cache misses to copy and one to free).
  r.source = wf->dynamic() ? std::make_shared<const node>(wf->build(ctx))
                           : std::shared_ptr<const node>(wf, &wf->root);
  r.control = scan_control(*r.source, r.control_reads, r.reads_any);
  if (r.control) {
    r.root = std::make_shared<const node>(expander{*r.source, ctx, r.undecided}.expand(*r.source));
    check_unique_ids(*r.root);
  } else
    r.root = r.source;
  r.canonical = std::make_shared<const std::string>(canonical_text(*r.root));
  r.hash = util::sha256_hex(*r.canonical);
  return r;
}

} // namespace smithers
