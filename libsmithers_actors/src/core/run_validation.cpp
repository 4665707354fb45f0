// Checks before a run is created or resumed. No CAF.
#include "core/run_validation.hpp"

#include "schema/schema.hpp"
#include "format/validate.hpp"
#include "store/rows.hpp"
#include "util/json_bounds.hpp"
#include "util/ids.hpp"

#include <smithers/limits.hpp>

#include <utility>
#include <vector>

namespace smithers {

namespace {

void collect_compute_names(const node& n, const std::string& path,
                           std::vector<std::pair<std::string, std::string>>& out) {
  if (n.is_task()) {
    if (n.task && n.task->kind == task_kind::compute && !n.task->compute)
      out.emplace_back(spec::child_path(path, "compute"), n.task->compute_name);
    return;
  }
  for (std::size_t i = 0; i < n.children.size(); ++i)
    collect_compute_names(n.children[i], spec::child_node_path(path, n.kind, i), out);
}

} // namespace

namespace core {

json problems_json(const spec::problems& ps) {
  json list = json::array();
  for (const auto& p : ps)
    list.push_back({{"path", p.path}, {"message", p.message}});
  return {{"problems", list}};
}

void check_workflow(const workflow& wf) {
  auto ps = spec::validate_workflow(wf);
  if (!ps.empty())
    throw smithers_error(errc::invalid_workflow, "invalid workflow: " + spec::join(ps),
                         problems_json(ps));
}

rendered_tree first_render(const std::shared_ptr<const workflow>& wf, const std::string& run_id,
                           const json& input,
                           const std::unordered_map<std::string, json>& outputs,
                           const std::unordered_set<node_key, node_key_hash>* ended,
                           const std::unordered_map<std::string, loop_state>* loops) {
  render_context rc{run_id, &input, &outputs, ended, loops};
  rendered_tree r;
  try {
    r = render(wf, rc);
  } catch (const smithers_error&) {
    throw;
  } catch (const std::exception& e) {
    throw smithers_error(errc::invalid_workflow,
                         std::string{"rendering the workflow failed: "} + e.what());
  }
  if (wf->dynamic()) {
    auto ps = spec::validate_tree(*wf, *r.source);
    if (!ps.empty())
      throw smithers_error(errc::invalid_workflow, "invalid workflow: " + spec::join(ps),
                           problems_json(ps));
  }
  return r;
}

void check_same_workflow(const store::run_row& run, const std::string& current_hash,
                         const std::string& vcs_revision, bool force) {
  json changed = json::array();
  std::string what;
  if (current_hash != run.workflow_hash) {
    changed.push_back(
        {{"field", "workflow_hash"}, {"recorded", run.workflow_hash}, {"current", current_hash}});
    what = "workflow hash";
  }
  if (!run.vcs_revision.empty() && vcs_revision != run.vcs_revision) {
    changed.push_back(
        {{"field", "vcs_revision"}, {"recorded", run.vcs_revision}, {"current", vcs_revision}});
    what += std::string{what.empty() ? "" : ", "} + "git revision " + run.vcs_revision + " -> " +
            (vcs_revision.empty() ? std::string{"none"} : vcs_revision);
  }
  if (!changed.empty() && !force)
    throw smithers_error(errc::resume_metadata_mismatch,
                         "run \"" + run.run_id + "\" started from a different workflow (changed: " +
                             what + "); --force resumes anyway",
                         {{"changed", changed}});
}

} // namespace core

void validate_run(const workflow& wf, const run_options& opts,
                  const std::function<bool(const std::string&)>& has_compute, bool check_input) {
  if (!opts.run_id.empty())
    if (auto err = util::check_new_run_id(opts.run_id)) throw smithers_error(*err);
  if (opts.max_concurrency &&
      (*opts.max_concurrency < 1 || *opts.max_concurrency > limits::max_option_value))
    throw smithers_error(errc::invalid_argument,
                         "max_concurrency must be a positive integer up to " +
                             std::to_string(limits::max_option_value) + ", got " +
                             std::to_string(*opts.max_concurrency));
  if (opts.max_output_bytes &&
      (*opts.max_output_bytes < 1 || *opts.max_output_bytes > limits::max_output_bytes_ceiling))
    throw smithers_error(errc::invalid_argument,
                         "max_output_bytes must be from 1 to " +
                             std::to_string(limits::max_output_bytes_ceiling) + ", got " +
                             std::to_string(*opts.max_output_bytes));
  if (check_input)
    if (auto err = util::check_input_bounds(opts.input)) throw smithers_error(*err);
  core::check_workflow(wf);
  if (check_input && !wf.input_schema.is_null()) {
    auto ips = spec::validate(wf.input_schema, opts.input);
    if (!ips.empty())
      throw smithers_error(errc::invalid_input,
                           "input does not match the workflow's input schema: " + spec::join(ips),
                           core::problems_json(ips));
  }
  if (!wf.dynamic()) {
    std::vector<std::pair<std::string, std::string>> names;
    collect_compute_names(wf.root, "root", names);
    spec::problems missing;
    for (const auto& [path, name] : names)
      if (!has_compute(name))
        missing.push_back({path, "no compute function named \"" + name + "\" is registered"});
    if (!missing.empty())
      throw smithers_error(errc::invalid_workflow, "invalid workflow: " + spec::join(missing),
                           core::problems_json(missing));
  }
}

} // namespace smithers
