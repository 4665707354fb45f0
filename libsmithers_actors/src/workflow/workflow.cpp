#include <smithers/workflow.hpp>

#include "util/json_bounds.hpp"

namespace smithers {

const char* to_string(node_kind k) {
  switch (k) {
  case node_kind::task:
    return "task";
  case node_kind::sequence:
    return "sequence";
  case node_kind::parallel:
    return "parallel";
  case node_kind::branch:
    return "branch";
  case node_kind::for_each:
    return "for_each";
  case node_kind::loop:
    return "loop";
  }
  return "?";
}

const char* to_string(task_kind k) {
  switch (k) {
  case task_kind::value:
    return "value";
  case task_kind::command:
    return "command";
  case task_kind::compute:
    return "compute";
  case task_kind::approval:
    return "approval";
  case task_kind::timer:
    return "timer";
  case task_kind::signal:
    return "signal";
  case task_kind::agent:
    return "agent";
  }
  return "?";
}

const char* to_string(deny_action a) {
  switch (a) {
  case deny_action::fail:
    return "fail";
  case deny_action::proceed:
    return "continue";
  case deny_action::skip:
    return "skip";
  }
  return "?";
}

task_spec& node::spec() {
  if (!task)
    throw smithers_error(errc::invalid_workflow,
                         std::string{"task options apply to task nodes, not to a "} +
                             to_string(kind));
  return *task;
}

node& node::needs(std::vector<std::string> ids) {
  spec().needs = std::move(ids);
  return *this;
}
node& node::retries(std::int64_t n) {
  spec().retries = n;
  return *this;
}
node& node::retry(retry_policy p) {
  spec().retry = p;
  return *this;
}
node& node::needs_approval(std::string title, deny_action on_deny) {
  spec().approval = approval_spec{std::move(title), "", on_deny};
  return *this;
}
node& node::cache(cache_spec c) {
  spec().cache = std::move(c);
  return *this;
}
node& node::worktree(worktree_spec w) {
  spec().worktree = std::make_shared<const worktree_spec>(std::move(w));
  return *this;
}
node& node::timeout_ms(std::int64_t ms) {
  spec().timeout_ms = ms;
  return *this;
}
node& node::heartbeat_timeout_ms(std::int64_t ms) {
  spec().heartbeat_timeout_ms = ms;
  return *this;
}
node& node::output(std::string key) {
  spec().output = std::move(key);
  return *this;
}
node& node::output_schema(json schema) {
  spec().output_schema = std::move(schema);
  return *this;
}
node& node::label(std::string text) {
  spec().label = std::move(text);
  return *this;
}
node& node::env(std::string name, std::string value_template) {
  spec().env[std::move(name)] = std::move(value_template);
  return *this;
}
node& node::cwd(std::string dir) {
  spec().cwd = std::move(dir);
  return *this;
}
node& node::direct(bool on) {
  spec().direct = on;
  return *this;
}
node& node::continue_on_fail(bool on) {
  spec().continue_on_fail = on;
  return *this;
}
node& node::skip_if(json predicate) {
  spec().skip_if = std::move(predicate);
  return *this;
}

node sequence(std::vector<node> children) {
  node n;
  n.kind = node_kind::sequence;
  n.children = std::move(children);
  return n;
}

node parallel(std::vector<node> children, std::optional<std::int64_t> max_concurrency) {
  node n;
  n.kind = node_kind::parallel;
  n.children = std::move(children);
  n.max_concurrency = max_concurrency;
  return n;
}

node branch(std::string id, json if_predicate, node then_node, std::optional<node> else_node) {
  node n;
  n.kind = node_kind::branch;
  n.id = std::move(id);
  n.condition = std::move(if_predicate);
  n.children.push_back(std::move(then_node));
  if (else_node) n.children.push_back(std::move(*else_node));
  return n;
}

node for_each(std::string id, std::string items_path, std::string as, node body,
              std::optional<std::int64_t> max_concurrency) {
  node n;
  n.kind = node_kind::for_each;
  n.id = std::move(id);
  n.items = std::move(items_path);
  n.item_name = std::move(as);
  n.max_concurrency = max_concurrency;
  n.children.push_back(std::move(body));
  return n;
}

node loop(std::string id, node body, json until, loop_options options) {
  node n;
  n.kind = node_kind::loop;
  n.id = std::move(id);
  n.condition = std::move(until);
  n.max_iterations = options.max_iterations;
  n.fail_on_max = options.fail_on_max;
  n.continue_as_new_every = options.continue_as_new_every;
  n.children.push_back(std::move(body));
  return n;
}

namespace {
node make_task(std::string id, task_spec spec) {
  node n;
  n.kind = node_kind::task;
  n.id = std::move(id);
  n.task = std::make_shared<task_spec>(std::move(spec));
  return n;
}
} // namespace

node value_task(std::string id, json value) {
  task_spec s;
  s.kind = task_kind::value;
  s.value = std::move(value);
  return make_task(std::move(id), std::move(s));
}

node command_task(std::string id, std::vector<std::string> argv) {
  task_spec s;
  s.kind = task_kind::command;
  s.argv = std::move(argv);
  return make_task(std::move(id), std::move(s));
}

node shell_task(std::string id, std::string command) {
  task_spec s;
  s.kind = task_kind::command;
  s.shell = std::move(command);
  s.use_shell = true;
  return make_task(std::move(id), std::move(s));
}

node compute_task(std::string id, compute_fn fn) {
  task_spec s;
  s.kind = task_kind::compute;
  s.compute = std::move(fn);
  return make_task(std::move(id), std::move(s));
}

node compute_task(std::string id, std::string registered_name) {
  task_spec s;
  s.kind = task_kind::compute;
  s.compute_name = std::move(registered_name);
  return make_task(std::move(id), std::move(s));
}

node agent_task(std::string id, std::vector<agent_spec> agents, std::string prompt) {
  task_spec s;
  s.kind = task_kind::agent;
  s.agents = std::move(agents);
  s.prompt = std::move(prompt);
  return make_task(std::move(id), std::move(s));
}

node approval(std::string id, std::string title, std::string summary, deny_action on_deny) {
  task_spec s;
  s.kind = task_kind::approval;
  s.approval = approval_spec{std::move(title), std::move(summary), on_deny};
  return make_task(std::move(id), std::move(s));
}

node timer(std::string id, std::int64_t duration_ms) {
  task_spec s;
  s.kind = task_kind::timer;
  s.duration_ms = duration_ms;
  return make_task(std::move(id), std::move(s));
}

node timer_until(std::string id, std::int64_t epoch_ms) {
  task_spec s;
  s.kind = task_kind::timer;
  s.until_ms = epoch_ms;
  return make_task(std::move(id), std::move(s));
}

node signal(std::string id, std::string name, std::optional<std::int64_t> timeout_ms) {
  task_spec s;
  s.kind = task_kind::signal;
  s.signal_name = std::move(name);
  s.timeout_ms = timeout_ms;
  return make_task(std::move(id), std::move(s));
}

const json& task_context::need(const std::string& node_id) const {
  auto it = in_.needs.find(node_id);
  if (it == in_.needs.end())
    throw smithers_error(errc::template_missing_value, "task \"" + in_.node_id +
                                                           "\" has no output of \"" + node_id +
                                                           "\" (is it listed in needs?)");
  return *it;
}

void task_context::heartbeat(json data) {
  if (auto err = util::check_heartbeat_data(data)) throw smithers_error(*err);
  if (in_.on_heartbeat) in_.on_heartbeat(std::move(data));
}

} // namespace smithers
