#include "workflow/render.hpp"

#include "expr/predicate.hpp"
#include "expr/template.hpp"
#include "util/ids.hpp"
#include "util/hash.hpp"
#include "util/json_text.hpp"

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

  void task(const node& n) {
    const task_spec& t = *n.task;
    out_ += '{';
    first_ = true;
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
    if (!t.env.empty()) {
      key("env");
      out_ += '{';
      bool first = true;
      for (const auto& [name, value] : t.env) { // a std::map: sorted
        if (!first) out_ += ',';
        first = false;
        str(name);
        out_ += ':';
        str(value);
      }
      out_ += '}';
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
    if (t.kind == task_kind::value) {
      key("value");
      util::append_json(out_, t.value);
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
bool scan_control(const node& n, std::unordered_set<std::string>& reads) {
  bool found = false;
  // Iterative: deep trees must not overflow the stack.
  std::vector<const node*> stack{&n};
  while (!stack.empty()) {
    const node* cur = stack.back();
    stack.pop_back();
    if (cur->kind == node_kind::branch) {
      found = true;
      for (auto& id : spec::predicate_output_refs(cur->condition))
        reads.insert(std::move(id));
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

// Decides control flow: a branch becomes a sequence of the child it chose
// (empty when it chose nothing). An undecided branch stays a branch without
// children: the scheduler never counts it done, so what comes after it
// waits.
class expander {
public:
  expander(const render_context& ctx, std::vector<std::string>& undecided)
      : ctx_(ctx), undecided_(undecided) {}

  node expand(const node& n) {
    if (n.kind == node_kind::branch) return decide(n);
    if (n.kind == node_kind::for_each) return fan_out(n);
    if (n.is_task()) {
      if (!locals_) return n;
      return with_locals(n);
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
      if (!ctx_.ended || !ctx_.ended->count(id)) return waiting(n);
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

  // A task in a for_each body: its id (and the ids it needs) with the
  // element's values, its templates left for the attempt (with the locals).
  node with_locals(const node& n) {
    spec::template_scope scope;
    scope.input = ctx_.input;
    scope.outputs = ctx_.outputs;
    scope.run_id = ctx_.run_id;
    scope.locals = locals_;
    node out = n;
    auto expand_id = [&](const std::string& text) {
      std::string id = spec::expand(text, scope);
      if (!util::valid_node_id(id))
        throw smithers_error(errc::invalid_input,
                             "id \"" + text + "\" gives \"" + id + "\" for item " +
                                 locals_->dump() + ", which is not 1-" +
                                 std::to_string(util::max_node_id_length) +
                                 " characters of [A-Za-z0-9_-]",
                             {{"id", text}});
      return id;
    };
    out.id = expand_id(n.id);
    auto spec2 = std::make_shared<task_spec>(*n.task);
    spec2->locals = *locals_;
    for (auto& need : spec2->needs)
      if (spec::has_template(need)) need = expand_id(need);
    out.task = std::move(spec2);
    return out;
  }

  node decide(const node& n) {
    // Undecided while a node it reads has not ended (docs/workflow-format.md).
    for (const auto& id : spec::predicate_output_refs(n.condition))
      if (!ctx_.ended || !ctx_.ended->count(id)) return waiting(n);
    node out = sequence({});
    static const json no_input = json::object();
    static const std::unordered_map<std::string, json> no_outputs;
    bool holds = spec::evaluate(n.condition, ctx_.input ? *ctx_.input : no_input,
                                ctx_.outputs ? *ctx_.outputs : no_outputs);
    std::size_t chosen = holds ? 0 : 1;
    if (chosen < n.children.size()) out.children.push_back(expand(n.children[chosen]));
    return out;
  }

  const render_context& ctx_;
  std::vector<std::string>& undecided_;
  const json* locals_ = nullptr; // inside a for_each body: the element's variables
};

// Ids a fan-out gave more than once (two elements alike where the id
// template reads only part of them) would be two nodes with one key.
void check_unique_ids(const node& root) {
  std::unordered_set<std::string> seen;
  std::vector<const node*> stack{&root};
  while (!stack.empty()) {
    const node* cur = stack.back();
    stack.pop_back();
    if (cur->is_task() && !seen.insert(cur->id).second)
      throw smithers_error(errc::invalid_input,
                           "two nodes get the id \"" + cur->id +
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
  r.control = scan_control(*r.source, r.control_reads);
  if (r.control) {
    r.root = std::make_shared<const node>(expander{ctx, r.undecided}.expand(*r.source));
    check_unique_ids(*r.root);
  } else
    r.root = r.source;
  r.canonical = std::make_shared<const std::string>(canonical_text(*r.root));
  r.hash = util::sha256_hex(*r.canonical);
  return r;
}

} // namespace smithers
