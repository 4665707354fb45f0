#include "workflow/render.hpp"

#include "util/hash.hpp"
#include "util/json_text.hpp"

namespace smithers {

namespace {

json task_json(const node& n) {
  const task_spec& t = *n.task;
  json j = {{"task", n.id}, {"type", to_string(t.kind)}};
  switch (t.kind) {
  case task_kind::value:
    j["value"] = t.value;
    break;
  case task_kind::command:
    if (t.use_shell)
      j["run"] = t.shell;
    else
      j["run"] = t.argv;
    break;
  case task_kind::compute:
    j["compute"] = t.compute ? std::string{"<inline>"} : t.compute_name;
    break;
  }
  if (!t.needs.empty()) j["needs"] = t.needs;
  if (!t.output.empty()) j["output"] = t.output;
  if (!t.output_schema.is_null()) j["output_schema"] = t.output_schema;
  if (t.retries) j["retries"] = t.retries;
  if (t.retry)
    j["retry"] = {{"initial_ms", t.retry->initial_ms},
                  {"backoff", t.retry->backoff},
                  {"max_ms", t.retry->max_ms},
                  {"jitter", t.retry->jitter}};
  if (t.timeout_ms) j["timeout_ms"] = *t.timeout_ms;
  if (t.heartbeat_timeout_ms) j["heartbeat_timeout_ms"] = *t.heartbeat_timeout_ms;
  if (!t.skip_if.is_null()) j["skip_if"] = t.skip_if;
  if (t.continue_on_fail) j["continue_on_fail"] = true;
  if (!t.label.empty()) j["label"] = t.label;
  if (!t.env.empty()) j["env"] = t.env;
  if (!t.cwd.empty()) j["cwd"] = t.cwd;
  return j;
}

} // namespace

json canonical_tree(const node& n) {
  if (n.is_task() && n.task) return task_json(n);
  json kids = json::array();
  for (const auto& c : n.children)
    kids.push_back(canonical_tree(c));
  json j = {{to_string(n.kind), std::move(kids)}};
  if (n.max_concurrency) j["max_concurrency"] = *n.max_concurrency;
  return j;
}

rendered_tree render(const workflow& wf, const render_context& ctx) {
  rendered_tree r;
  r.root = wf.dynamic() ? wf.build(ctx) : wf.root;
  // json_text: dump()'s bytes (the hash must not change), without its cost.
  r.canonical = std::make_shared<const std::string>(util::json_text(canonical_tree(r.root)));
  r.hash = util::sha256_hex(*r.canonical);
  return r;
}

} // namespace smithers
