#include "core/attempt_builder.hpp"

#include "expr/shell_template.hpp"
#include "expr/template.hpp"
#include "util/hash.hpp"

#include <smithers/limits.hpp>

#include <algorithm>

namespace smithers::core {

std::shared_ptr<const json> attempt_builder::schema_for(const std::shared_ptr<task_spec>& spec) {
  if (!spec->output_schema.is_null())
    return std::shared_ptr<const json>(spec, &spec->output_schema); // aliases the spec
  if (spec->output.empty()) return nullptr;
  auto& cached = named_schemas_[spec->output];
  if (!cached) {
    auto it = wf_->output_schemas.find(spec->output);
    if (it != wf_->output_schemas.end()) cached = std::make_shared<const json>(it->second);
  }
  return cached;
}

std::string attempt_builder::task_cwd(const std::string& base, const task_spec& spec) {
  if (spec.cwd.empty()) return base;
  if (spec.cwd[0] == '/' || base.empty()) return spec.cwd;
  return base + "/" + spec.cwd;
}

std::optional<std::size_t> attempt_builder::pick_agent(const std::vector<agent_spec>& chain,
                                                       std::int64_t attempt,
                                                       const std::set<std::string>* disabled) {
  if (chain.empty()) return std::nullopt;
  auto usable = [&](std::size_t i) { return !disabled || !disabled->count(chain[i].id); };
  std::size_t first = static_cast<std::size_t>(
      std::clamp<std::int64_t>(attempt, 1, static_cast<std::int64_t>(chain.size())) - 1);
  for (std::size_t i = first; i < chain.size(); ++i)
    if (usable(i)) return i;
  for (std::size_t i = first; i-- > 0;)
    if (usable(i)) return i;
  return std::nullopt;
}

std::shared_ptr<executors::task_job>
attempt_builder::build(const node_key& key, std::int64_t attempt,
                       const std::shared_ptr<task_spec>& spec, const attempt_inputs& in) {
  auto job = std::make_shared<executors::task_job>();
  executors::task_request& req = job->request;
  req.run_id = *in.run_id;
  req.key = key;
  req.attempt = attempt;
  req.kind = spec->kind;
  req.output_schema = schema_for(spec);
  req.timeout_ms = spec->timeout_ms;
  req.heartbeat_timeout_ms = spec->heartbeat_timeout_ms;
  req.max_output_bytes = in.max_output_bytes;
  if (spec->kind == task_kind::value) {
    req.value = spec->value;
    return job;
  }
  req.input = *in.input;
  for (const auto& need : spec->needs) {
    // Inside nested loops a need names its key's id ("fix@2"); its output
    // is the latest of that node (the one it needs, which has finished).
    std::string id{base_id(need)};
    auto it = in.outputs->find(id);
    if (it != in.outputs->end()) req.needs[id] = it->second;
  }
  if (in.checkpoint) req.last_heartbeat = *in.checkpoint;
  req.cwd = task_cwd(*in.base_cwd, *spec);
  spec::template_scope scope;
  scope.input = in.input->get();
  scope.outputs = in.outputs;
  scope.run_id = *in.run_id;
  scope.node_id = key.id;
  scope.iteration = key.iteration;
  scope.attempt = attempt;
  scope.output_at = in.output_at;
  if (!spec->locals.is_null()) scope.locals = &spec->locals; // a for_each element's
  if (spec->kind == task_kind::command) {
    // A script gets each value through a SMITHERS_TEMPLATE_<n> variable,
    // never spliced into its code; other arguments take values verbatim.
    if (spec->use_shell) {
      auto sh = spec::expand_shell(spec->shell, scope, "/bin/sh");
      req.argv = {"/bin/sh", "-c", std::move(sh.script)};
      req.env.merge(sh.env);
    } else {
      auto ex = spec::expand_argv(spec->argv, scope);
      req.argv = std::move(ex.argv);
      req.env.merge(ex.env);
    }
    for (const auto& [k, v] : spec->env) // names never start with SMITHERS_TEMPLATE_
      req.env[k] = spec::expand(v, scope, k.size() + 1);
  } else if (spec->kind == task_kind::agent) {
    auto pick =
        pick_agent(spec->agents, in.chain_turn > 0 ? in.chain_turn : attempt, in.disabled_agents);
    if (!pick) {
      json ids = json::array();
      for (const auto& a : spec->agents)
        ids.push_back(a.id);
      throw smithers_error(errc::agent_auth_failed,
                           "every agent of \"" + key.id +
                               "\" failed to authenticate earlier in this run; fix their "
                               "credentials and resume the run",
                           {{"agents", ids}});
    }
    const agent_spec& a = spec->agents[*pick];
    req.agent = executors::agent_call{a.id, a.command, a.model, a.env};
    // An agent often runs in a worktree far from the workflow: a relative
    // program path ("tools/agent") is under the run's directory.
    std::string& program = req.agent.command[0];
    if (program[0] != '/' && program.find('/') != std::string::npos && !in.base_cwd->empty())
      program = *in.base_cwd + "/" + program;
    req.prompt = spec::expand_text(spec->prompt, scope, limits::max_prompt_bytes, "the prompt");
    for (const auto& [k, v] : spec->env)
      req.env[k] = spec::expand(v, scope, k.size() + 1);
  } else if (spec->kind == task_kind::compute) {
    job->direct = spec->direct;
    if (spec->compute) {
      job->compute = spec->compute;
    } else {
      req.compute_name = spec->compute_name;
      auto it = computes_ ? computes_->find(spec->compute_name) : compute_registry::const_iterator{};
      bool here = computes_ && it != computes_->end();
      if (here)
        job->compute = it->second;
      else if (!remote_computes_)
        throw smithers_error(errc::invalid_workflow, "no compute function named \"" +
                                                         spec->compute_name + "\" is registered");
    }
  }
  if (spec->worktree) {
    req.worktree_path = spec::expand(spec->worktree->path, scope);
    if (req.worktree_path.empty()) // "" would mean: no worktree
      throw smithers_error(errc::worktree_create_failed,
                           "the worktree's path is empty once its templates are filled",
                           {{"path", spec->worktree->path}});
    req.worktree_branch = spec->worktree->branch.empty()
                              ? "smithers/" + key.id
                              : spec::expand(spec->worktree->branch, scope);
    req.worktree_base = spec->worktree->base;
  }
  if (spec->cache) {
    // `by` reads what any template reads; {{attempt}} in it would make
    // every attempt miss, which is what it says.
    std::string by = spec->cache->by.empty() ? std::string{} : spec::expand(spec->cache->by, scope);
    job->cache_key = cache_key(key, *spec, req, by);
  }
  return job;
}

std::string attempt_builder::cache_key(const node_key& key, const task_spec& spec,
                                       const executors::task_request& req,
                                       const std::string& by_value) const {
  json by;
  if (!spec.cache || spec.cache->by.empty()) {
    by = {{"kind", to_string(req.kind)},
          {"iteration", key.iteration}, // the task sees it (SMITHERS_ITERATION, iteration())
          {"argv", req.argv},
          {"env", req.env},
          {"cwd", req.cwd},
          {"compute", req.compute_name},
          {"input", req.input ? *req.input : json()},
          {"needs", req.needs}};
    if (req.kind == task_kind::agent) {
      // The whole chain, not the agent this attempt asks: any answer will do.
      json chain = json::array();
      for (const auto& a : spec.agents)
        chain.push_back({a.id, a.command, a.model, a.env});
      by["prompt"] = req.prompt;
      by["agents"] = std::move(chain);
    }
    if (!req.worktree_path.empty())
      by["worktree"] = {req.worktree_path, req.worktree_branch, req.worktree_base};
  } else {
    by = by_value;
  }
  json parts = json::array({"smithers-cache-1", wf_->name, key.id, std::move(by),
                            spec.cache ? spec.cache->version : std::string{},
                            req.output_schema ? *req.output_schema : json()});
  // CBOR keeps a string's bytes as they are (a run directory need not be
  // UTF-8): two keys differ whenever their parts do.
  auto bytes = json::to_cbor(parts);
  return util::sha256_hex(
      std::string_view{reinterpret_cast<const char*>(bytes.data()), bytes.size()});
}

} // namespace smithers::core
