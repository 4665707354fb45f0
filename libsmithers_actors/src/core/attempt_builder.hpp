// Turns a task of the plan into the job of one attempt: the request (plain
// data: templates expanded against committed outputs, needs, the previous
// attempt's checkpoint, schema, cwd, limits) and, for compute tasks, the
// callable of this process. Pure.
#pragma once

#include <functional>
#include <string_view>

#include "executors/task_job.hpp"

#include <smithers/workflow.hpp>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

namespace smithers::core {

using compute_registry = std::map<std::string, compute_fn>;

struct attempt_inputs {
  const std::string* run_id = nullptr;
  const std::shared_ptr<const json>* input = nullptr;
  const std::unordered_map<std::string, json>* outputs = nullptr; // latest per node id
  const json* checkpoint = nullptr;                              // or nullptr
  const std::string* base_cwd = nullptr;                         // where the run started
  std::size_t max_output_bytes = 0;
  /// {{outputs.<id>@N}}: that node's output in iteration N, or nullptr.
  std::function<const json*(std::string_view, std::int64_t)> output_at;
  /// Agents whose credentials failed in this run (docs/agents.md), or nullptr.
  const std::set<std::string>* disabled_agents = nullptr;
  /// The attempt's place in an agent chain: its number less the attempts
  /// that did not count (free re-dispatches, those before a run's retry);
  /// 0: its number.
  std::int64_t chain_turn = 0;
};

class attempt_builder {
public:
  /// `remote_computes`: a compute name this process lacks may be a
  /// worker's; the job carries the name alone (the dispatcher decides).
  attempt_builder(std::shared_ptr<const workflow> wf,
                  std::shared_ptr<const compute_registry> computes, bool remote_computes = false)
      : wf_(std::move(wf)), computes_(std::move(computes)), remote_computes_(remote_computes) {}

  /// The job of attempt `attempt` of `key`. Throws smithers_error for what
  /// makes the attempt fail before it runs (a template that cannot be
  /// expanded, an unknown compute function).
  std::shared_ptr<executors::task_job> build(const node_key& key, std::int64_t attempt,
                                             const std::shared_ptr<task_spec>& spec,
                                             const attempt_inputs& in);

  /// The schema a task's output must match: inline, or named in the
  /// workflow's output_schemas; null when none.
  std::shared_ptr<const json> schema_for(const std::shared_ptr<task_spec>& spec);

  /// The cache key of an attempt of a cached task: a hash of the workflow's
  /// name, the node id, the `by` value (default: what the task runs on —
  /// its command or compute function, env, cwd, the run's input and the
  /// outputs it needs), the version and the output schema.
  std::string cache_key(const node_key& key, const task_spec& spec,
                        const executors::task_request& req, const std::string& by_value) const;

  /// The entry of an agent chain attempt `attempt` asks: min(attempt,
  /// size) - 1, or the nearest one after it (else before it) that is not
  /// disabled; nullopt when every one is.
  static std::optional<std::size_t> pick_agent(const std::vector<agent_spec>& chain,
                                               std::int64_t attempt,
                                               const std::set<std::string>* disabled);

  /// Commands run where the run started (recorded with it, so every resume
  /// agrees); a task's relative cwd is under that directory.
  static std::string task_cwd(const std::string& base, const task_spec& spec);

private:
  std::shared_ptr<const workflow> wf_;
  std::shared_ptr<const compute_registry> computes_;
  bool remote_computes_ = false;
  std::unordered_map<std::string, std::shared_ptr<const json>> named_schemas_;
};

} // namespace smithers::core
