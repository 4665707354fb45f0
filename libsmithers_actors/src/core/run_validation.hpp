// Checks a run must pass before it is created or resumed: validate_run
// (public, engine.hpp), the first render of its workflow, and a resume's
// comparison with what the run was started from. No CAF: this file builds
// into smithers_core, so the unit tests link it.
#pragma once

#include "schema/problem.hpp"
#include "workflow/render.hpp"

#include <smithers/engine.hpp>

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace smithers::store {
struct run_row;
}

namespace smithers::core {

/// {"problems": [{"path", "message"}, ...]}: the details of an
/// INVALID_WORKFLOW or INVALID_INPUT error.
json problems_json(const spec::problems& ps);

/// INVALID_WORKFLOW unless the workflow passes spec::validate_workflow.
void check_workflow(const workflow& wf);

/// Renders a run's workflow for the first time (a dynamic one is rendered
/// here so a broken build function is refused before the run exists, and
/// its tree is validated); INVALID_WORKFLOW when that fails. `ended`: keys
/// of nodes that have ended, and `loops`: loop states (a resume's), for
/// control flow.
rendered_tree first_render(const std::shared_ptr<const workflow>& wf, const std::string& run_id,
                           const json& input,
                           const std::unordered_map<std::string, json>& outputs,
                           const std::unordered_set<node_key, node_key_hash>* ended = nullptr,
                           const std::unordered_map<std::string, loop_state>* loops = nullptr);

/// RESUME_METADATA_MISMATCH (unless `force`) when the workflow's hash or
/// the git revision differs from what the run recorded when it started.
void check_same_workflow(const store::run_row& run, const std::string& current_hash,
                         const std::string& vcs_revision, bool force);

} // namespace smithers::core
