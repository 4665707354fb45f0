// Workflows as data: a tree of nodes, built in C++ or parsed from a JSON file
// (see docs/workflow-format.md). No CAF, no SQLite: this header is cheap to
// include everywhere.
#pragma once

#include <smithers/errors.hpp>
#include <smithers/node_key.hpp>
#include <smithers/task.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace smithers {

/// Groups (sequence, parallel) and tasks are what runs; a branch, a
/// for_each and a loop are control flow, decided at every render
/// (docs/workflow-format.md).
enum class node_kind { task, sequence, parallel, branch, for_each, loop };
/// approval, timer and signal are waits: the run core resolves them
/// itself, when a decision, a deadline or a signal arrives (docs/waiting.md).
/// An agent task is a command-line AI agent asked a prompt (docs/agents.md).
enum class task_kind { value, command, compute, approval, timer, signal, agent };

const char* to_string(node_kind k);
const char* to_string(task_kind k);

/// approval, timer, signal: nothing runs, the node waits.
inline bool is_wait(task_kind k) {
  return k == task_kind::approval || k == task_kind::timer || k == task_kind::signal;
}

/// Backoff between attempts: initial_ms * backoff^(n-1), capped at max_ms,
/// +/- jitter (a fraction, 0..1).
struct retry_policy {
  std::int64_t initial_ms = 1000;
  double backoff = 2.0;
  std::int64_t max_ms = 60000;
  double jitter = 0.0;
};

/// What a denied approval does (on_deny).
enum class deny_action {
  fail,    // the node fails with APPROVAL_DENIED (default)
  proceed, // "continue": the node finishes with {"approved": false, ...}
  skip,    // the node is skipped, and so is what needs it
};

const char* to_string(deny_action a);

/// An approval node's request, or a task's needs_approval gate.
struct approval_spec {
  std::string title;
  std::string summary;
  deny_action on_deny = deny_action::fail;
};

/// A task's output cache (docs/workflow-format.md, "Caching"): a finished
/// output is reused by any later attempt, in any run of the same workflow
/// in the same database, whose key is the same.
struct cache_spec {
  /// A template whose value keys the entry; empty: the task's resolved
  /// command (or compute function and input), env and needed outputs.
  std::string by;
  std::string version; // part of the key: change it to start afresh
};

/// One command-line AI agent (docs/agents.md). Its command is literal but
/// for `{{prompt}}` (the prompt goes there instead of stdin) and
/// `{{model}}`; its env is literal too.
struct agent_spec {
  std::string id;                         // names it in events, attempts and auth failures
  std::vector<std::string> command;       // argv
  std::string model;                      // "" when none
  std::map<std::string, std::string> env; // on top of the task's env
};

/// A git worktree a command or agent task runs in (docs/agents.md,
/// "Worktrees"): created from the repository in the task's cwd, or reused.
struct worktree_spec {
  std::string path;   // template; a relative one is under the repository
  std::string branch; // template; "" : smithers/<node id>
  std::string base;   // ref the branch starts from; "" : HEAD
};

/// Everything a task node says about how to run it.
struct task_spec {
  task_kind kind = task_kind::value;
  json value;                     // value: the output
  std::vector<std::string> argv;  // command as argv (templates per argument)
  std::string shell;              // command as a `/bin/sh -c` string
  bool use_shell = false;         // which of argv / shell is set
  std::string compute_name;       // compute: a registered function...
  compute_fn compute;             // ...or an inline C++ callable
  std::string output;             // key into workflow::output_schemas
  json output_schema;             // inline schema (null when none)
  std::vector<std::string> needs; // ids whose outputs this task reads
  std::int64_t retries = 0;       // extra attempts
  std::optional<retry_policy> retry;
  std::optional<std::int64_t> timeout_ms;
  std::optional<std::int64_t> heartbeat_timeout_ms;
  json skip_if; // predicate, null when none
  bool continue_on_fail = false;
  /// compute: called by the run itself, on its own thread, with no hand-off
  /// to the pool — for short functions that never block; a timeout or a
  /// cancel is only seen once the call returns (docs/workflow-format.md).
  bool direct = false;
  std::string label;
  std::map<std::string, std::string> env; // values are templates
  std::string cwd;
  json locals; // set by render inside a for_each: {"<as>": item, "<as>_index": i}
  /// Set by render inside nested loops: the id under which a node this task
  /// reads with {{outputs.X@N}} is kept in the task's own iterations
  /// ("fix" -> "fix@2" in iteration 2 of the outer loop).
  std::map<std::string, std::string> output_ids;
  /// approval: its request; any other kind: a gate before its first
  /// attempt (needs_approval).
  std::optional<approval_spec> approval;
  std::optional<std::int64_t> duration_ms; // timer: from when it mounts...
  std::optional<std::int64_t> until_ms;    // ...or at this time (epoch ms)
  std::string until_text;                  // timer: `until` as written
  std::string signal_name;                 // signal: what it waits for (timeout_ms: how long)
  std::optional<cache_spec> cache;         // command, compute and agent tasks
  std::vector<agent_spec> agents;          // agent: one, or a fallback chain
  std::string prompt;                      // agent: a template
  // command and agent tasks; shared: rare, and a plan holds a spec per task
  std::shared_ptr<const worktree_spec> worktree;
};

/// One node of a workflow tree. Tasks carry a task_spec; groups carry children.
/// Setters apply to task nodes and return *this so builders chain:
///   compute_task("b", fn).needs({"a"}).retries(2)
class node {
public:
  node() = default;

  node_kind kind = node_kind::sequence;
  std::string id;                  // required for tasks, optional for groups
  std::int64_t iteration = 0;      // the loop iteration it was rendered in (0 outside loops)
  std::shared_ptr<task_spec> task; // set for tasks (shared: trees copy cheaply)
  std::vector<node> children;
  std::optional<std::int64_t> max_concurrency; // parallel groups only
  json condition; // branch: the `if` predicate (children: then[, else]); loop: `until`
  std::string items;     // for_each: path of the array ("input.files", "outputs.list.items")
  std::string item_name; // for_each: the item's name in templates (`as`); children: the body
  // loop (children: the body):
  std::int64_t max_iterations = 5;
  bool fail_on_max = false; // on_max_reached "fail" (else "return-last")
  std::optional<std::int64_t> continue_as_new_every;
  // A loop in a rendered tree: `id` is its instance's ("inner@2" inside
  // iteration 2 of an outer loop), `iteration` its current one, and
  // whether it has ended.
  bool done = false;

  bool is_task() const { return kind == node_kind::task; }

  node& needs(std::vector<std::string> ids);
  node& retries(std::int64_t n);
  node& retry(retry_policy p);
  node& timeout_ms(std::int64_t ms);
  node& heartbeat_timeout_ms(std::int64_t ms);
  node& output(std::string key);
  node& output_schema(json schema);
  node& label(std::string text);
  node& env(std::string name, std::string value_template);
  node& cwd(std::string dir);
  node& continue_on_fail(bool on = true);
  /// A compute task called directly by its run (task_spec::direct).
  node& direct(bool on = true);
  node& skip_if(json predicate);
  /// A gate before the first attempt: the task waits in waiting-approval
  /// until approved (engine::approve); denied, it fails (or is skipped).
  node& needs_approval(std::string title = "", deny_action on_deny = deny_action::fail);
  /// Reuse a finished output whose cache key is the same (cache_spec).
  node& cache(cache_spec c = {});
  /// Run in a git worktree of the repository in the task's cwd.
  node& worktree(worktree_spec w);

private:
  task_spec& spec();
};

// Builders.
node sequence(std::vector<node> children);
node parallel(std::vector<node> children, std::optional<std::int64_t> max_concurrency = {});
node value_task(std::string id, json value);
node command_task(std::string id, std::vector<std::string> argv);
node shell_task(std::string id, std::string command);
node compute_task(std::string id, compute_fn fn);
node compute_task(std::string id, std::string registered_name);
/// Asks `prompt` (a template) of the first agent; attempt k asks entry
/// min(k, size) - 1 of the chain (docs/agents.md).
node agent_task(std::string id, std::vector<agent_spec> agents, std::string prompt);
/// Runs `then_node` if the predicate holds on committed outputs (and the
/// input), else `else_node` if given. Undecided — nothing mounted — while a
/// node the predicate reads has not ended.
node branch(std::string id, json if_predicate, node then_node,
            std::optional<node> else_node = std::nullopt);
/// Runs `body` once per element of the array at `items_path`, in parallel
/// (at most max_concurrency tasks in flight when given); in the body,
/// `{{<as>...}}` and `{{<as>_index}}` name the element and its index, and
/// task ids must use them so that each element's tasks have their own ids.
/// Undecided — nothing mounted — until the array exists.
node for_each(std::string id, std::string items_path, std::string as, node body,
              std::optional<std::int64_t> max_concurrency = std::nullopt);

/// Waits in waiting-approval until engine::approve or deny (or `smithers
/// approve|deny`); its output is {"approved", "by", "note", "decided_ms"}.
node approval(std::string id, std::string title, std::string summary = "",
              deny_action on_deny = deny_action::fail);
/// Waits `duration_ms` from when it mounts (durably: the deadline is stored);
/// its output is {"deadline_ms", "fired_ms"}.
node timer(std::string id, std::int64_t duration_ms);
/// Waits until `epoch_ms` (milliseconds since the Unix epoch).
node timer_until(std::string id, std::int64_t epoch_ms);
/// Waits for the signal `name` (engine::signal, `smithers signal`); its
/// payload becomes the output. With timeout_ms: SIGNAL_TIMEOUT after that long.
node signal(std::string id, std::string name,
            std::optional<std::int64_t> timeout_ms = std::nullopt);

/// How a loop ends (docs/workflow-format.md, "loop").
struct loop_options {
  std::int64_t max_iterations = 5;
  /// After max_iterations without `until` holding: fail the run with
  /// LOOP_MAX_REACHED (true), or end the loop normally ("return-last").
  bool fail_on_max = false;
  /// End the run `continued` every N iterations and go on in a new run.
  std::optional<std::int64_t> continue_as_new_every;
};

/// Runs `body` again and again: after each iteration's body has ended,
/// `until` (a predicate; null: never) is evaluated on the committed
/// outputs, and the loop ends when it holds or after max_iterations. The
/// body's nodes are keyed (id, iteration); a loop nested in another one has
/// its own iterations per outer iteration.
node loop(std::string id, node body, json until, loop_options options = {});

/// A loop's state, as renders see it.
struct loop_state {
  std::int64_t iteration = 0; // the current (or, once done, the last) iteration
  bool done = false;
};

/// What a workflow's build function sees when it is rendered.
struct render_context {
  std::string run_id;
  const json* input = nullptr;
  const std::unordered_map<std::string, json>* outputs = nullptr; // node id -> output
  /// Keys of nodes that have ended (finished, failed or skipped); a branch
  /// whose predicate reads a node not in it is undecided. Null: none has.
  const std::unordered_set<node_key, node_key_hash>* ended = nullptr;
  /// Loop states by loop instance ("review", or "inner@2" for a loop inside
  /// iteration 2 of another); a loop not in it is at iteration 0.
  const std::unordered_map<std::string, loop_state>* loops = nullptr;

  /// A loop's state (iteration 0, not done, if it has not started).
  loop_state loop(const std::string& loop_id) const {
    if (!loops) return {};
    auto it = loops->find(loop_id);
    return it == loops->end() ? loop_state{} : it->second;
  }

  /// The output of a finished node, or nullptr.
  const json* output(const std::string& node_id) const {
    if (!outputs) return nullptr;
    auto it = outputs->find(node_id);
    return it == outputs->end() ? nullptr : &it->second;
  }
};

/// A workflow: a static tree, or a function of the run's state that is
/// re-rendered after every batch of state changes.
struct workflow {
  std::string name = "workflow";
  json input_schema;                          // null: any JSON object
  std::map<std::string, json> output_schemas; // named schemas for task `output`
  std::optional<std::int64_t> max_concurrency;
  node root; // used when build is empty
  std::function<node(const render_context&)> build;

  bool dynamic() const { return static_cast<bool>(build); }
};

} // namespace smithers
